"""nac's RADIUS client (nac.client.radius) against nac's sans-IO RADIUS
server with the real EAP authenticator: Access-Requests as a NAS sends
them (State echoed, EAP-Message split, Message-Authenticator), replies
checked (forged, foreign or unsigned ones discarded), MS-MPPE keys against
the peer's MSK, enforcement attributes decoded, retransmission and timeouts
on a task.Clock, and one run over real UDP on 127.0.0.1."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from nac.client.pt_tls import AssessmentTimeout, ConnectionFailed
from nac.client.radius import (
    Failed,
    Finished,
    Ignored,
    RadiusClientProtocol,
    RadiusEapExchange,
    SendRequest,
    authenticate,
)
from nac.eap.peer import DEFAULT_FRAGMENT_SIZE, EapPeer, PeerStatus
from nac.eap.server import EapServerSession
from nac.eap.tnc import PtEap
from nac.ifimv import ActionRecommendation as A, EvaluationResult as E
from nac.pa import PaMessage
from nac.pa.ietf import ProductInformation
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvManager
from tests.nacserver import free_port
from tests.test_eap_peer import PeerMixin
from tests.test_eap_tnc import ProductImc, VerdictImv
from transports.radius.enforcement import RadiusEnforcement
from transports.radius.packet import (
    Attribute,
    AttributeType,
    Code,
    RadiusPacket,
    mppe_key_attributes,
    sign_response,
)
from transports.radius.server import RadiusClient, RadiusServer
from transports.radius.service import RadiusProtocol

SECRET = b"nas-to-nac s3cret"
NAS = ("127.0.0.1", 40123)


class RadiusMixin(PeerMixin):
    def radius_server(self, *, posture=None, enforcement=None, **settings_kw) -> RadiusServer:
        eap_settings = self.settings(posture=posture, **settings_kw)
        client = RadiusClient(ipaddress.ip_network("127.0.0.1/32"), SECRET)
        return RadiusServer([client], lambda peer: EapServerSession(peer, eap_settings), enforcement)

    def relay(self, server: RadiusServer, exchange: RadiusEapExchange, *, until_final=False):
        """Carry the exchange's requests to the server until the end; with
        ``until_final`` stop before handing the final reply to the exchange
        and return (the final reply, the request it answers)."""
        request = exchange.start()
        for _ in range(200):
            reply = self.successResultOf(server.datagram_received(request, NAS, 0.0))
            self.assertIsNotNone(reply, "the server discarded a request")
            if until_final and reply[0] in (Code.ACCESS_ACCEPT, Code.ACCESS_REJECT):
                return reply, request
            event = exchange.receive(reply)
            if isinstance(event, SendRequest):
                request = event.datagram
                continue
            return event
        raise AssertionError("no final reply")


class ExchangeTests(RadiusMixin, unittest.TestCase):
    def test_access_accept_with_mppe_keys_of_the_peers_msk(self):
        for inner in ("md5", "mschapv2", "pap"):
            peer = self.make_peer(inner=inner)
            event = self.relay(self.radius_server(), RadiusEapExchange(peer, SECRET))
            self.assertIsInstance(event, Finished, inner)
            result = event.result
            self.assertTrue(result.accepted, inner)
            self.assertIs(result.eap_status, PeerStatus.SUCCESS)
            self.assertIs(result.mppe_keys_ok, True, inner)
            self.assertEqual(result.mppe_text, "MPPE keys OK")
            self.assertEqual(result.attribute("User-Name"), "carol")
            self.assertEqual(result.attribute("MS-MPPE-Recv-Key"), "<hidden>")
            # no posture exchange: a plain Access-Accept
            self.assertIsNone(result.attribute("Filter-Id"))
            self.assertIsNone(result.posture)

    def test_requests_split_eap_echo_state_and_are_signed(self):
        server = self.radius_server()
        exchange = RadiusEapExchange(self.make_peer(), SECRET, nas_identifier="switch-3",
                                     calling_station_id="02-00-00-00-00-01")
        first = RadiusPacket.parse(exchange.start())
        self.assertTrue(first.message_authenticator_valid(SECRET))
        self.assertIsNone(first.get(AttributeType.STATE))
        self.assertEqual(first.value(AttributeType.USER_NAME), "carol")
        self.assertEqual(first.value(AttributeType.NAS_IDENTIFIER), "switch-3")
        self.assertEqual(first.value(AttributeType.CALLING_STATION_ID), "02-00-00-00-00-01")
        self.assertEqual(first.value(AttributeType.FRAMED_MTU), 1400)
        request, split = first.build(), False
        for _ in range(20):
            reply = self.successResultOf(server.datagram_received(request, NAS, 0.0))
            if reply[0] != Code.ACCESS_CHALLENGE:
                break
            state = RadiusPacket.parse(reply).get(AttributeType.STATE)
            event = exchange.receive(reply)
            packet = RadiusPacket.parse(event.datagram)
            self.assertEqual(packet.identifier, (RadiusPacket.parse(request).identifier + 1) & 0xFF)
            self.assertEqual(packet.get(AttributeType.STATE), state)
            parts = packet.get_all(AttributeType.EAP_MESSAGE)
            self.assertTrue(all(len(p) <= 253 for p in parts))
            split = split or len(parts) > 1
            self.assertTrue(packet.message_authenticator_valid(SECRET))
            request = event.datagram
        self.assertTrue(split, "no request needed more than one EAP-Message")
        self.assertIsInstance(exchange.receive(reply), Finished)

    def test_posture_decision_becomes_the_enforcement_attributes(self):
        core = TnccsCore(ImvManager([VerdictImv(A.ALLOW)]))
        server = self.radius_server(posture=lambda p: PtEap(core, p),
                                    enforcement=RadiusEnforcement(vlan_allow="10", session_timeout=3600))
        peer = self.make_peer(tnc="pt-eap", imcs=(ProductImc(),))
        result = self.relay(server, RadiusEapExchange(peer, SECRET)).result
        self.assertTrue(result.accepted)
        self.assertIs(result.mppe_keys_ok, True)
        shown = {a.name: (a.value, a.tag) for a in result.attributes}
        self.assertEqual(shown["Filter-Id"], ("allow", 0))
        self.assertEqual(shown["Tunnel-Type"], ("VLAN", 1))
        self.assertEqual(shown["Tunnel-Medium-Type"], ("IEEE-802", 1))
        self.assertEqual(shown["Tunnel-Private-Group-Id"], ("10", 1))
        self.assertEqual(shown["Session-Timeout"], (3600, 0))
        self.assertIn("Tunnel-Type:1 = VLAN", [a.text() for a in result.attributes])
        out = result.to_json()
        self.assertEqual(set(out), {"recommendation", "assessment", "reasons", "remediation", "imv_results",
                                    "radius"})
        self.assertEqual(out["recommendation"], "Access Allowed")
        self.assertEqual(out["radius"]["code"], "Access-Accept")
        self.assertEqual(out["radius"]["attributes"]["Filter-Id"], "allow")
        self.assertEqual(out["radius"]["attributes"]["Tunnel-Private-Group-Id"], "10")
        self.assertIs(out["radius"]["mppe_keys_ok"], True)

    def test_denied_endpoint_gets_access_reject_with_its_posture(self):
        core = TnccsCore(ImvManager([VerdictImv(A.NO_ACCESS, E.NONCOMPLIANT_MAJOR)]))
        server = self.radius_server(posture=lambda p: PtEap(core, p))
        peer = self.make_peer(tnc="pt-eap", imcs=(ProductImc(),))
        result = self.relay(server, RadiusEapExchange(peer, SECRET)).result
        self.assertEqual((result.code_name, result.eap_status), ("Access-Reject", PeerStatus.FAILURE))
        self.assertIsNone(result.mppe_keys_ok)
        self.assertIsNone(result.peer_error)
        self.assertEqual(result.to_json()["recommendation"], "Access Denied")

    def test_a_pdp_closing_the_tunnel_after_denying_gives_its_decision(self):
        """strongSwan's PDP denies with the PB-TNC result and then closes the
        TLS tunnel inside an Access-Challenge, without an Access-Reject
        (tests/data/vectors/strongswan-radius/r3-*): the decision that
        arrived is the outcome, not a TLS failure."""
        import nac.eap.server
        from nac.eap.method import MethodResult, MethodStep
        from nac.eap.ttls import TtlsServer

        class ClosingAfterDenial(TtlsServer):
            def _inner_step(self, step, method):
                if method is self._posture and step.result is MethodResult.FAILURE:
                    self.decision = method.decision
                    self._tunnel._conn.shutdown()  # close_notify, and nothing else
                    return MethodStep.send(self._channel.send(self._tunnel.data_to_send()))
                return super()._inner_step(step, method)

        self.patch(nac.eap.server, "TtlsServer", ClosingAfterDenial)
        core = TnccsCore(ImvManager([VerdictImv(A.NO_ACCESS, E.NONCOMPLIANT_MAJOR)]))
        server = self.radius_server(posture=lambda p: PtEap(core, p))
        peer = self.make_peer(tnc="pt-eap", imcs=(ProductImc(),))
        event = self.relay(server, RadiusEapExchange(peer, SECRET))
        self.assertIsInstance(event, Finished)
        result = event.result
        self.assertEqual((result.code_name, result.eap_status), ("Access-Challenge", PeerStatus.FAILURE))
        self.assertIsNone(result.peer_error)
        self.assertFalse(result.tls_error)
        self.assertEqual(result.reason, "the server closed the TLS tunnel after its decision (Access Denied)")
        self.assertEqual(result.posture.recommendation_label, "Access Denied")
        self.assertEqual(result.to_json()["recommendation"], "Access Denied")

    def test_wrong_password_gets_access_reject(self):
        result = self.relay(self.radius_server(), RadiusEapExchange(self.make_peer(password="no"), SECRET)).result
        self.assertEqual((result.code_name, result.eap_status), ("Access-Reject", PeerStatus.FAILURE))
        self.assertEqual(result.attributes, ())

    def test_replies_that_are_not_authentic_answers_are_ignored(self):
        server = self.radius_server()
        exchange = RadiusEapExchange(self.make_peer(), SECRET)
        request = exchange.start()
        reply = self.successResultOf(server.datagram_received(request, NAS, 0.0))
        parsed = RadiusPacket.parse(reply)
        authenticator = RadiusPacket.parse(request).authenticator
        unsigned = sign_response(RadiusPacket(parsed.code, parsed.identifier, b"",
                                              tuple(a for a in parsed.attributes if a.type != 80)),
                                 authenticator, SECRET)
        foreign = sign_response(RadiusPacket(parsed.code, parsed.identifier, b"", parsed.attributes),
                                authenticator, b"another secret")
        other_id = bytes((reply[0], (reply[1] + 1) & 0xFF)) + reply[2:]
        accounting = sign_response(RadiusPacket(Code.ACCOUNTING_RESPONSE, parsed.identifier, b"", ()),
                                   authenticator, SECRET)
        for bad, why in ((reply[:19], "too short"), (other_id, "Identifier"), (foreign, "shared secret"),
                         (unsigned, "no Message-Authenticator"), (accounting, "no answer"),
                         (reply[:-1], "invalid reply")):
            event = exchange.receive(bad)
            self.assertIsInstance(event, Ignored, why)
            self.assertIn(why, event.reason)
        self.assertIsInstance(exchange.receive(reply), SendRequest)

    def test_mppe_keys_that_are_not_the_peers_msk_are_a_mismatch(self):
        server = self.radius_server()
        exchange = RadiusEapExchange(self.make_peer(), SECRET)
        reply, request = self.relay(server, exchange, until_final=True)
        accept = RadiusPacket.parse(reply)
        authenticator = RadiusPacket.parse(request).authenticator
        keys = mppe_key_attributes(bytes(64), SECRET, authenticator, b"\x80\x01")
        forged = sign_response(RadiusPacket(Code.ACCESS_ACCEPT, accept.identifier, b"",
                                            tuple(a for a in accept.attributes if a.type != 26) + keys),
                               authenticator, SECRET)
        result = exchange.receive(forged).result
        self.assertIs(result.eap_status, PeerStatus.SUCCESS)
        self.assertIs(result.mppe_keys_ok, False)
        self.assertEqual(result.mppe_text, "MPPE keys mismatch")

    def test_eap_response_too_big_for_one_access_request_ends_the_exchange(self):
        class LongNameImc(ProductImc):
            def begin_handshake(self, connection):
                body = PaMessage(1, (ProductInformation(vendor_id=0, product_id=0, name="D" * 6000),)).build()
                connection.send_message(0, 1, body)

        core = TnccsCore(ImvManager([VerdictImv(A.ALLOW)]))
        for fragment_size, fits in ((4000, False), (3800, True)):
            exchange = RadiusEapExchange(self.make_peer(tnc="pt-eap", imcs=(LongNameImc(),),
                                                        fragment_size=fragment_size), SECRET)
            self.assertTrue(3800 < exchange.max_eap_size < 4096 - 20 - 18)
            event = self.relay(self.radius_server(posture=lambda p: PtEap(core, p)), exchange)
            if fits:
                self.assertTrue(event.result.accepted)
            else:
                self.assertIsInstance(event, Failed)
                self.assertIn("does not fit one Access-Request", event.reason)

    def eap_sizes(self, server: RadiusServer, exchange: RadiusEapExchange):
        """Relay a whole conversation; the sizes of the EAP packets each way and the result."""
        sent, received = [], []
        request = exchange.start()
        for _ in range(200):
            sent.append(len(RadiusPacket.parse(request).eap_message()))
            reply = self.successResultOf(server.datagram_received(request, NAS, 0.0))
            received.append(len(RadiusPacket.parse(reply).eap_message() or b""))
            event = exchange.receive(reply)
            if not isinstance(event, SendRequest):
                return sent, received, event
            request = event.datagram
        raise AssertionError("no final reply")

    def test_framed_mtu_bounds_the_servers_eap_packets(self):
        # RFC 3580 §3.17: EAP packets of at most Framed-MTU - 4 bytes reach the peer
        for framed_mtu, largest in ((300, 296), (700, 696)):
            exchange = RadiusEapExchange(self.make_peer(tls_version="1.3"), SECRET, framed_mtu=framed_mtu)
            _, received, event = self.eap_sizes(self.radius_server(fragment_size=1024), exchange)
            self.assertTrue(event.result.accepted, framed_mtu)
            self.assertIs(event.result.mppe_keys_ok, True)
            self.assertEqual(max(received), largest, framed_mtu)  # the TLS flight fills each fragment

    def test_framed_mtu_never_raises_the_configured_fragment_size(self):
        exchange = RadiusEapExchange(self.make_peer(tls_version="1.3"), SECRET, framed_mtu=9000)
        _, received, event = self.eap_sizes(self.radius_server(fragment_size=400), exchange)
        self.assertTrue(event.result.accepted)
        self.assertEqual(max(received), 400 + 5)  # type-data of fragment_size, after the 5-byte header

    def test_unusable_framed_mtu_is_ignored(self):
        for framed_mtu in (20, 70000):
            exchange = RadiusEapExchange(self.make_peer(tls_version="1.3"), SECRET, framed_mtu=framed_mtu)
            _, received, event = self.eap_sizes(self.radius_server(fragment_size=500), exchange)
            self.assertTrue(event.result.accepted, framed_mtu)
            self.assertEqual(max(received), 500 + 5, framed_mtu)

    def test_peer_fragments_fill_wpa_supplicants_fragment_size_by_default(self):
        class LargeImc(ProductImc):
            def begin_handshake(self, connection):
                body = PaMessage(1, (ProductInformation(vendor_id=0, product_id=0, name="D" * 5000),)).build()
                connection.send_message(0, 1, body)

        core = TnccsCore(ImvManager([VerdictImv(A.ALLOW)]))
        server = self.radius_server(posture=lambda p: PtEap(core, p))
        rounds = {}
        for fragment_size in (None, 1024):
            kw = {} if fragment_size is None else {"fragment_size": fragment_size}
            exchange = RadiusEapExchange(self.make_peer(tnc="pt-eap", imcs=(LargeImc(),), **kw), SECRET)
            sent, _, event = self.eap_sizes(server, exchange)
            self.assertTrue(event.result.accepted)
            rounds[fragment_size] = event.result.round_trips
            # EAP header (4), Type, and type-data of fragment_size
            self.assertEqual(max(sent), 5 + (fragment_size or DEFAULT_FRAGMENT_SIZE))
        self.assertEqual(DEFAULT_FRAGMENT_SIZE, 1398)
        self.assertLess(rounds[None], rounds[1024])

    def test_challenge_without_eap_ends_the_exchange(self):
        exchange = RadiusEapExchange(self.make_peer(), SECRET)
        request = RadiusPacket.parse(exchange.start())
        challenge = sign_response(RadiusPacket(Code.ACCESS_CHALLENGE, request.identifier, b"",
                                               (Attribute(80, bytes(16)),)), request.authenticator, SECRET)
        event = exchange.receive(challenge)
        self.assertIsInstance(event, Failed)
        self.assertIn("without EAP-Message", event.reason)
        self.assertIsInstance(exchange.receive(challenge), Ignored)

    @settings(max_examples=250, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=4), st.booleans())
    def test_random_datagrams_never_raise(self, datagrams, matching_id):
        if not hasattr(self, "_peer_settings"):
            self._peer_settings = self.peer_settings()
        exchange = RadiusEapExchange(EapPeer(self._peer_settings), SECRET, identifier=7)
        exchange.start()
        for data in datagrams:
            if matching_id and len(data) > 1:
                data = data[:1] + b"\x07" + data[2:]
            event = exchange.receive(data)
            self.assertIsInstance(event, (Ignored, Failed, Finished, SendRequest))


class FakeUdp:
    """The transport of a connected UDP socket: what was written."""

    def __init__(self):
        self.written: list[bytes] = []
        self.stopped = False

    def write(self, data, addr=None):
        self.written.append(data)

    def stopListening(self):
        self.stopped = True


class RetransmissionTests(RadiusMixin, unittest.TestCase):
    def protocol(self, **kw):
        clock = task.Clock()
        proto = RadiusClientProtocol(clock, "127.0.0.1[1812]", **kw)
        proto.transport = FakeUdp()
        return clock, proto

    def test_unanswered_request_is_repeated_with_backoff_then_times_out(self):
        clock, proto = self.protocol()
        d = proto.run(RadiusEapExchange(self.make_peer(), SECRET), timeout=300)
        sent = proto.transport.written
        for delay, count in ((1.9, 1), (0.1, 2), (4, 3), (8, 4), (15.9, 4), (0.1, 5)):
            clock.advance(delay)
            self.assertEqual(len(sent), count, delay)
        self.assertEqual(len(set(sent)), 1)  # same Identifier and Request Authenticator
        clock.advance(16)
        failure = self.failureResultOf(d, AssessmentTimeout)
        self.assertIn("after 5 transmissions", failure.getErrorMessage())
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(proto.retransmissions, 4)

    def test_a_reply_resets_the_retransmission_timer(self):
        clock, proto = self.protocol()
        server = self.radius_server()
        d = proto.run(RadiusEapExchange(self.make_peer(), SECRET), timeout=300)
        clock.advance(2)  # one retransmission: the server answers it from its duplicate cache
        first, again = proto.transport.written
        reply = self.successResultOf(server.datagram_received(first, NAS, 0.0))
        self.assertEqual(self.successResultOf(server.datagram_received(again, NAS, 0.5)), reply)
        proto.datagramReceived(reply, NAS)
        self.assertEqual(len(proto.transport.written), 3)
        clock.advance(1.9)
        self.assertEqual(len(proto.transport.written), 3)
        while not d.called:
            request = proto.transport.written[-1]
            proto.datagramReceived(self.successResultOf(server.datagram_received(request, NAS, 1.0)), NAS)
        self.assertTrue(self.successResultOf(d).accepted)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_overall_timeout(self):
        clock, proto = self.protocol(retransmit_interval=10, max_transmissions=100)
        d = proto.run(RadiusEapExchange(self.make_peer(), SECRET), timeout=25)
        clock.advance(25)
        self.assertIn("within 25 s", self.failureResultOf(d, AssessmentTimeout).getErrorMessage())

    def test_port_unreachable_fails_at_once(self):
        clock, proto = self.protocol()
        exchange = RadiusEapExchange(self.make_peer(), SECRET)
        d = proto.run(exchange, timeout=30)
        proto.connectionRefused()
        self.failureResultOf(d, ConnectionFailed)
        self.assertIs(exchange.peer.status, PeerStatus.FAILURE)
        self.assertEqual(clock.getDelayedCalls(), [])


class UdpTests(RadiusMixin, unittest.TestCase):
    """The Twisted edge over real sockets on 127.0.0.1."""

    @defer.inlineCallbacks
    def test_authenticate_over_loopback(self):
        server = self.radius_server()
        port = reactor.listenUDP(0, RadiusProtocol(server, reactor), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        result = yield authenticate(reactor, "127.0.0.1", port.getHost().port, SECRET, self.make_peer(),
                                    timeout=10)
        self.assertTrue(result.accepted)
        self.assertIs(result.mppe_keys_ok, True)

    @defer.inlineCallbacks
    def test_no_server_is_a_connection_failure(self):
        import socket

        port = free_port(socket.SOCK_DGRAM)
        peer = self.make_peer()
        with self.assertRaises(ConnectionFailed) as caught:
            yield authenticate(reactor, "127.0.0.1", port, SECRET, peer, timeout=5)
        self.assertIn("port unreachable", str(caught.exception))
        self.assertIs(peer.status, PeerStatus.FAILURE)
