"""The sans-IO RADIUS server (transports.radius.server) driven with real packets.

The EAP side is a real EAP-MD5 authenticator (RFC 3748 §5.4) written here
against the IEapSession contract; the NAS side builds its Access-Requests
with transports.radius.packet and the test checks every reply with an
independent computation of the authenticators and the MPPE keys.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from nac import log as nac_log
from nac.eap.outcome import EapOutcome, EapStatus
from nac.ifimv import ActionRecommendation, EvaluationResult
from nac.interfaces import IEapSession, IEnforcement
from nac.tnccs.assessment import Decision, PeerInfo
from tests.test_radius_packet import independent_mppe_decrypt
from transports.radius.enforcement import RadiusEnforcement
from transports.radius.packet import (
    Attribute,
    AttributeType as A,
    Code,
    RadiusPacket,
    Tagged,
    decode_value,
    eap_message_attributes,
    sign_request,
    verify_response,
)
from transports.radius.server import Forward, RadiusClient, RadiusServer, owner_of

SECRET = "nas-shared-s3cret"
PASSWORD = "carol's md5 password"
NAS = ("127.0.0.1", 40001)

EAP_REQUEST, EAP_RESPONSE, EAP_SUCCESS, EAP_FAILURE = 1, 2, 3, 4
EAP_IDENTITY, EAP_NAK, EAP_MD5 = 1, 3, 4


def eap(code: int, ident: int, data: bytes = b"") -> bytes:
    return bytes((code, ident)) + (4 + len(data)).to_bytes(2, "big") + data


@implementer(IEapSession)
class Md5Authenticator:
    """An EAP authenticator running EAP-MD5 (RFC 3748 §5.4) after the identity.

    It checks MD5(Identifier | password | challenge).  EAP-MD5 derives no
    keys; for the MPPE tests this authenticator derives an MSK from the
    challenge and response (SHA-512), which the test knows too.  ``hold``
    keeps outcomes back until :meth:`release`, as a slow EAP server would.
    """

    def __init__(self, peer: PeerInfo, passwords: dict[str, str], *, decision=None, hold=False, msk=True):
        self.peer = peer
        self.passwords = passwords
        self.decision = decision
        self.hold = hold
        self.with_msk = msk
        self.phase = "identity"
        self.identity: str | None = None
        self.ident = 0
        self.challenge = b""
        self.received: list[bytes] = []
        self.held: list[tuple[defer.Deferred, EapOutcome]] = []
        self.aborted: str | None = None
        self.msk: bytes | None = None

    def start(self) -> bytes:
        self.ident = os.urandom(1)[0]
        return eap(EAP_REQUEST, self.ident, bytes((EAP_IDENTITY,)))

    def receive(self, packet: bytes) -> defer.Deferred:
        outcome = self._outcome(packet)
        return outcome if isinstance(outcome, defer.Deferred) else defer.succeed(outcome)

    def _outcome(self, packet: bytes):
        """The outcome, or a Deferred of it while held."""
        self.received.append(packet)
        outcome = self._process(packet)
        if self.hold:
            d = defer.Deferred()
            self.held.append((d, outcome))
            return d
        return outcome

    def release(self) -> None:
        held, self.held = self.held, []
        for d, outcome in held:
            d.callback(outcome)

    def abort(self, reason: str) -> None:
        self.aborted = reason

    def _discard(self, reason: str) -> EapOutcome:
        return EapOutcome(EapStatus.DISCARD, reason=reason)

    def _process(self, packet: bytes) -> EapOutcome:
        if len(packet) < 5 or packet[0] != EAP_RESPONSE or int.from_bytes(packet[2:4], "big") != len(packet):
            return self._discard("not a well-formed EAP-Response")
        ident, etype = packet[1], packet[4]
        if self.phase == "identity":
            if etype != EAP_IDENTITY:
                return self._discard("expected EAP-Response/Identity")
            self.identity = packet[5:].decode("utf-8", "replace")
            self.ident = (ident + 1) % 256
            self.challenge = os.urandom(16)
            self.phase = "md5"
            return EapOutcome(EapStatus.CONTINUE, eap(EAP_REQUEST, self.ident,
                                                      bytes((EAP_MD5, 16)) + self.challenge),
                              identity=self.identity)
        if self.phase == "md5":
            if ident != self.ident:
                return self._discard("wrong EAP Identifier")
            if etype == EAP_NAK:
                self.phase = "done"
                return EapOutcome(EapStatus.FAILURE, eap(EAP_FAILURE, ident), reason="peer refused EAP-MD5")
            if etype != EAP_MD5 or len(packet) < 22 or packet[5] != 16:
                return self._discard("not an EAP-MD5 response")
            self.phase = "done"
            password = self.passwords.get(self.identity or "")
            response = packet[6:22]
            if password is None or not hmac.compare_digest(
                    response, hashlib.md5(bytes((ident,)) + password.encode() + self.challenge).digest()):
                return EapOutcome(EapStatus.FAILURE, eap(EAP_FAILURE, ident),
                                  reason="EAP-MD5 authentication failed")
            self.msk = hashlib.sha512(self.challenge + response).digest() if self.with_msk else None
            return EapOutcome(EapStatus.SUCCESS, eap(EAP_SUCCESS, ident), msk=self.msk,
                              identity=self.identity, decision=self.decision)
        return self._discard("conversation over")


class ImmediateMd5Authenticator(Md5Authenticator):
    """The same authenticator offering ``answer`` as nac's EAP server does:
    the outcome itself when it is ready at once, a Deferred when held."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.answered = 0

    def receive(self, packet: bytes) -> defer.Deferred:
        raise AssertionError("the RADIUS server should call answer()")

    def answer(self, packet: bytes):
        self.answered += 1
        return self._outcome(packet)


def md5_response(challenge_packet: bytes, password: str) -> bytes:
    """The peer's EAP-MD5 Response to an EAP-MD5 Request (RFC 3748 §5.4)."""
    ident, challenge = challenge_packet[1], challenge_packet[6:6 + challenge_packet[5]]
    value = hashlib.md5(bytes((ident,)) + password.encode() + challenge).digest()
    return eap(EAP_RESPONSE, ident, bytes((EAP_MD5, 16)) + value)


def decision(access: str) -> Decision:
    rec = {"allowed": ActionRecommendation.ALLOW, "isolate": ActionRecommendation.ISOLATE,
           "denied": ActionRecommendation.NO_ACCESS}[access]
    return Decision(rec, EvaluationResult.COMPLIANT, access)


class LogCapture:
    def __init__(self, test: unittest.TestCase):
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def text(self) -> str:
        return "\n".join(f"{formatEvent(e)} {e!r}" for e in self.events)


class Nas:
    """The NAS side: builds signed Access-Requests and checks the replies."""

    def __init__(self, test: unittest.TestCase, server: RadiusServer, secret: str = SECRET, addr=NAS):
        self.test = test
        self.server = server
        self.secret = secret.encode()
        self.addr = addr
        self.next_id = 0
        self.now = 1000.0

    def request(self, eap_packet: bytes | None, state: bytes | None = None, *, user: bytes = b"carol",
                extra=(), sign=True, code=Code.ACCESS_REQUEST, identifier=None,
                station: bytes | None = b"02-00-00-00-00-01") -> tuple[RadiusPacket, bytes]:
        attrs = [Attribute(A.USER_NAME, user), Attribute(A.NAS_IP_ADDRESS, bytes((127, 0, 0, 1)))]
        if station is not None:
            attrs.append(Attribute(A.CALLING_STATION_ID, station))
        if eap_packet is not None:
            attrs += eap_message_attributes(eap_packet)
        if state is not None:
            attrs.append(Attribute(A.STATE, state))
        attrs += extra
        if sign:
            attrs.append(Attribute(A.MESSAGE_AUTHENTICATOR, bytes(16)))
        if identifier is None:
            identifier, self.next_id = self.next_id, (self.next_id + 1) % 256
        packet = RadiusPacket(code, identifier, os.urandom(16), tuple(attrs))
        return packet, sign_request(packet, self.secret)

    def send(self, data: bytes, addr=None) -> defer.Deferred | None:
        return self.server.datagram_received(data, addr or self.addr, self.now)

    def exchange(self, request: tuple[RadiusPacket, bytes]) -> RadiusPacket:
        """Send and return the verified reply (which must come at once)."""
        packet, data = request
        d = self.send(data)
        self.test.assertIsNotNone(d, "the request was discarded")
        reply = self.test.successResultOf(d)
        self.test.assertIsNotNone(reply, "no reply")
        return self.verify(reply, packet)

    def verify(self, reply: bytes, request: RadiusPacket) -> RadiusPacket:
        parsed = verify_response(reply, request.authenticator, self.secret)
        # independent checks: Response Authenticator and Message-Authenticator (first attribute)
        self.test.assertEqual(reply[4:20], hashlib.md5(reply[:4] + request.authenticator + reply[20:]
                                                       + self.secret).digest())
        self.test.assertEqual(parsed.attributes[0].type, A.MESSAGE_AUTHENTICATOR)
        zeroed = reply[:4] + request.authenticator + reply[20:22] + bytes(16) + reply[38:]
        self.test.assertEqual(parsed.attributes[0].value, hmac.new(self.secret, zeroed, "md5").digest())
        self.test.assertEqual(parsed.identifier, request.identifier)
        return parsed


def decode_tagged(raw: bytes) -> Tagged:
    """A tagged integer attribute value (RFC 2868 §3.1): tag octet, 3-octet value."""
    return Tagged(raw[0], int.from_bytes(raw[1:4], "big"))


class ServerTestCase(unittest.TestCase):
    def setUp(self):
        self.sessions: list[Md5Authenticator] = []
        self.decision = decision("allowed")
        self.hold = False
        self.logs = LogCapture(self)

    def factory(self, peer: PeerInfo) -> Md5Authenticator:
        session = Md5Authenticator(peer, {"carol": PASSWORD}, decision=self.decision, hold=self.hold)
        self.sessions.append(session)
        return session

    def make_server(self, enforcement=None, **kwargs) -> RadiusServer:
        # old-style clients ([radius] clients), named by their addresses in the log
        clients = [RadiusClient(ipaddress.ip_network("127.0.0.0/8"), SECRET.encode()),
                   RadiusClient(ipaddress.ip_network("::1/128"), b"v6-secret")]
        self.server = RadiusServer(clients, self.factory, enforcement, **kwargs)
        self.nas = Nas(self, self.server)
        return self.server

    def identity(self, nas: Nas | None = None, user: str = "carol") -> tuple[RadiusPacket, RadiusPacket]:
        """Send EAP-Response/Identity; the verified Access-Challenge and its request."""
        nas = nas or self.nas
        request = nas.request(eap(EAP_RESPONSE, 7, bytes((EAP_IDENTITY,)) + user.encode()), user=user.encode())
        reply = nas.exchange(request)
        return request[0], reply

    def authenticate(self, password: str = PASSWORD) -> tuple[RadiusPacket, RadiusPacket]:
        """A whole EAP-MD5 conversation; the last request and the final reply."""
        _, challenge = self.identity()
        self.assertEqual(challenge.code, Code.ACCESS_CHALLENGE)
        request = self.nas.request(md5_response(challenge.eap_message(), password), challenge.get(A.STATE))
        return request[0], self.nas.exchange(request)

    def assert_logged(self, text: str) -> None:
        self.assertIn(text, "\n".join(formatEvent(e) for e in self.logs.events))


class EapConversationTests(ServerTestCase):
    def test_md5_conversation_ends_in_access_accept_with_keys_and_filter_id(self):
        self.make_server()
        request, accept = self.authenticate()
        self.assertEqual(accept.code, Code.ACCESS_ACCEPT)
        self.assertEqual(accept.eap_message()[0], EAP_SUCCESS)
        self.assertEqual(accept.value(A.USER_NAME), "carol")
        self.assertEqual(accept.value(A.FILTER_ID), "allow")
        self.assertFalse(accept.has(A.TUNNEL_TYPE))
        keys = {}
        for raw in accept.get_all(A.VENDOR_SPECIFIC):
            vsa = decode_value(A.VENDOR_SPECIFIC, raw)
            [sub] = vsa.subattributes()
            keys[(vsa.vendor_id, sub.type)] = independent_mppe_decrypt(sub.value, SECRET.encode(), request.authenticator)
        msk = self.sessions[0].msk
        self.assertEqual(keys, {(311, 17): msk[:32], (311, 16): msk[32:]})
        self.assertEqual(self.server.conversations, 0)
        self.assertEqual(self.sessions[0].peer, PeerInfo("radius", "127.0.0.1", 40001, None,
                                                         station="02-00-00-00-00-01"))
        self.assert_logged("sending RADIUS Access-Accept for 'carol' to client '127.0.0.1': "
                           "access allowed: Filter-Id 'allow'")
        counters = self.server.counters
        self.assertEqual((counters.access_requests, counters.access_challenges, counters.access_accepts),
                         (2, 1, 1))

    def test_challenge_carries_a_fresh_state_and_the_eap_request(self):
        self.make_server()
        _, first = self.identity()
        _, second = self.identity()
        for challenge in (first, second):
            self.assertEqual(len(challenge.get(A.STATE)), 16)
            packet = challenge.eap_message()
            self.assertEqual((packet[0], packet[4], packet[5]), (EAP_REQUEST, EAP_MD5, 16))
        self.assertNotEqual(first.get(A.STATE), second.get(A.STATE))
        self.assertEqual(self.server.conversations, 2)

    def test_wrong_password_gets_access_reject_with_eap_failure(self):
        self.make_server()
        _, reject = self.authenticate("wrong")
        self.assertEqual(reject.code, Code.ACCESS_REJECT)
        self.assertEqual(reject.eap_message()[0], EAP_FAILURE)
        self.assertFalse(reject.has(A.VENDOR_SPECIFIC) or reject.has(A.FILTER_ID))
        self.assertEqual(self.server.conversations, 0)
        self.assert_logged("EAP-MD5 authentication failed")

    def test_posture_denied_turns_eap_success_into_access_reject(self):
        self.decision = decision("denied")
        self.make_server()
        _, reject = self.authenticate()
        self.assertEqual(reject.code, Code.ACCESS_REJECT)
        failure = reject.eap_message()
        self.assertEqual((failure[0], len(failure)), (EAP_FAILURE, 4))
        self.assertFalse(reject.has(A.VENDOR_SPECIFIC))
        self.assert_logged("access denied by the posture assessment")

    def test_isolate_with_vlan_and_filter_id(self):
        self.decision = decision("isolate")
        self.make_server(RadiusEnforcement(vlan_allow="10", vlan_isolate="666", session_timeout=3600))
        _, accept = self.authenticate()
        self.assertEqual(accept.code, Code.ACCESS_ACCEPT)
        self.assertEqual(accept.value(A.FILTER_ID), "isolate")
        self.assertEqual(accept.value(A.TUNNEL_TYPE), Tagged(1, 13))
        self.assertEqual(accept.value(A.TUNNEL_MEDIUM_TYPE), Tagged(1, 6))
        self.assertEqual(accept.value(A.TUNNEL_PRIVATE_GROUP_ID), Tagged(1, "666"))
        self.assertEqual(accept.value(A.SESSION_TIMEOUT), 3600)

    def test_ipsec_gateways_get_tunnel_type_esp_beside_the_filter_id(self):
        # what strongSwan's tnc-pdp sends and its eap-radius needs before it
        # takes a Filter-Id as the client's group: 0b 07 'allow', 40 06 00 00 00 09
        for access, filter_id in (("allowed", b"allow"), ("isolate", b"isolate")):
            self.decision = decision(access)
            self.make_server(RadiusEnforcement(filter_id_tunnel_type="esp"))
            _, accept = self.authenticate()
            raw = accept.raw
            self.assertIn(bytes((11, 2 + len(filter_id))) + filter_id, raw)
            self.assertIn(bytes.fromhex("400600000009"), raw)
        # with a VLAN too: ESP untagged, the VLAN triple under its own tag
        self.make_server(RadiusEnforcement(filter_id_tunnel_type="esp", vlan_isolate="666"))
        _, accept = self.authenticate()
        self.assertEqual(sorted(v.value for v in (decode_tagged(a) for a in accept.get_all(A.TUNNEL_TYPE))),
                         [9, 13])
        self.assertIn(bytes.fromhex("40060100000d"), accept.raw)
        # and last: strongSwan's eap-radius reads the last Tunnel-Type only
        self.assertEqual(accept.get_all(A.TUNNEL_TYPE)[-1], bytes.fromhex("00000009"))
        # a switch or access point gets the Filter-Id alone, as before
        self.make_server(RadiusEnforcement())
        _, accept = self.authenticate()
        self.assertFalse(accept.has(A.TUNNEL_TYPE))
        self.assertRaises(ValueError, RadiusEnforcement, filter_id_tunnel_type="gre")

    def test_no_posture_exchange_is_a_plain_accept(self):
        self.decision = None
        self.make_server(RadiusEnforcement(vlan_allow="10"))
        _, accept = self.authenticate()
        self.assertEqual(accept.code, Code.ACCESS_ACCEPT)
        for attr in (A.FILTER_ID, A.TUNNEL_TYPE, A.TUNNEL_PRIVATE_GROUP_ID, A.SESSION_TIMEOUT):
            self.assertFalse(accept.has(attr))
        self.assertEqual(len(accept.get_all(A.VENDOR_SPECIFIC)), 2)

    def test_large_eap_request_is_split_and_reassembled(self):
        big = eap(EAP_REQUEST, 9, bytes((21,)) + os.urandom(1395))

        @implementer(IEapSession)
        class Big:
            def start(self):
                return b""

            def receive(self, packet):
                return defer.succeed(EapOutcome(EapStatus.CONTINUE, big))

            def abort(self, reason):
                pass

        self.make_server()
        self.server.eap_factory = lambda peer: Big()
        _, challenge = self.identity()
        self.assertEqual([len(v) for v in challenge.get_all(A.EAP_MESSAGE)], [253] * 5 + [135])
        self.assertEqual(challenge.eap_message(), big)

    def framed_mtu_limits(self, *framed_mtus: bytes) -> list[list[int]]:
        """Start one conversation per Framed-MTU value (raw); the request size
        limits each session was given."""
        limits: list[list[int]] = []

        class Sized(Md5Authenticator):
            def __init__(self, *args, **kw):
                super().__init__(*args, **kw)
                self.limits: list[int] = []
                limits.append(self.limits)

            def limit_request_size(self, size):
                self.limits.append(size)

        self.make_server()
        self.server.eap_factory = lambda peer: Sized(peer, {"carol": PASSWORD})
        for raw in framed_mtus:
            extra = () if raw is None else (Attribute(A.FRAMED_MTU, raw),)
            request = self.nas.request(eap(EAP_RESPONSE, 7, bytes((EAP_IDENTITY,)) + b"carol"), extra=extra)
            challenge = self.nas.exchange(request)
            self.assertEqual(challenge.code, Code.ACCESS_CHALLENGE)
            # later requests of the conversation do not change it
            later = self.nas.request(md5_response(challenge.eap_message(), PASSWORD), challenge.get(A.STATE),
                                     extra=(Attribute(A.FRAMED_MTU, (100).to_bytes(4, "big")),))
            self.assertEqual(self.nas.exchange(later).code, Code.ACCESS_ACCEPT)
        return limits

    def test_framed_mtu_less_the_8021x_header_bounds_the_eap_packets(self):
        # RFC 3580 §3.17: EAP packets as large as Framed-MTU minus the 4-byte 802.1X header
        limits = self.framed_mtu_limits((1400).to_bytes(4, "big"), (64).to_bytes(4, "big"), None)
        self.assertEqual(limits, [[1396], [60], []])

    def test_unusable_framed_mtu_is_ignored_with_a_log_line(self):
        clock = Clock()
        self.patch(nac_log.repeats, "clock", clock)
        for raw, line in (((63).to_bytes(4, "big"), "ignoring the Framed-MTU 63 from client '127.0.0.1': "
                                                    "outside 64-65535"),
                          ((65536).to_bytes(4, "big"), "ignoring the Framed-MTU 65536 from client '127.0.0.1': "
                                                       "outside 64-65535"),
                          (b"\x05\x78", "ignoring the Framed-MTU from client '127.0.0.1': Framed-MTU is 2 bytes, "
                                        "not a 4-byte integer")):
            self.assertEqual(self.framed_mtu_limits(raw), [[]])
            self.assert_logged(line)
            clock.advance(nac_log.repeats.interval)
        # a NAS sending them all the time: one line, then a count
        self.assertEqual(self.framed_mtu_limits(*[(63).to_bytes(4, "big")] * 3), [[]] * 3)
        clock.advance(nac_log.repeats.interval)
        nac_log.repeats.flush()
        lines = [formatEvent(e) for e in self.logs.events if "Framed-MTU" in formatEvent(e)]
        self.assertEqual(lines[-2:], ["ignoring the Framed-MTU 63 from client '127.0.0.1': outside 64-65535",
                                      "invalid Framed-MTU: … 2 more like this from 127.0.0.1 in the last "
                                      f"{nac_log.repeats.interval:g} s"])

    def test_sessions_without_a_size_limit_ignore_framed_mtu(self):
        self.make_server()
        request = self.nas.request(eap(EAP_RESPONSE, 7, bytes((EAP_IDENTITY,)) + b"carol"),
                                   extra=(Attribute(A.FRAMED_MTU, (1400).to_bytes(4, "big")),))
        self.assertEqual(self.nas.exchange(request).code, Code.ACCESS_CHALLENGE)

    def test_states_are_fresh_random_values(self):
        self.make_server()
        states = set()
        for _ in range(300):
            _, challenge = self.identity()
            state = challenge.get(A.STATE)
            self.assertEqual(len(state), 16)
            states.add(state)
        self.assertEqual(len(states), 300)

    def test_a_forked_child_draws_other_random_values(self):
        from nac.entropy import random_bytes as _urandom_pool
        _urandom_pool(16)  # the pool has a block in hand
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.write(write, _urandom_pool(16))
            finally:
                os._exit(0)
        os.close(write)
        child = os.read(read, 16)
        os.close(read)
        os.waitpid(pid, 0)
        self.assertEqual(len(child), 16)
        self.assertNotEqual(child, _urandom_pool(16))

    def test_outcomes_that_cannot_become_a_reply_end_the_conversation(self):
        for outcome, logged in (
                (EapOutcome(EapStatus.CONTINUE, eap(EAP_REQUEST, 2, bytes(4090))), "longer than 4096"),
                (EapOutcome(EapStatus.SUCCESS, eap(EAP_SUCCESS, 2), msk=bytes(16)), "internal error answering")):
            @implementer(IEapSession)
            class Odd:
                aborted = None

                def start(self):
                    return b""

                def receive(self, packet):
                    return defer.succeed(outcome)

                def abort(self, reason):
                    Odd.aborted = reason

            self.make_server()
            self.server.eap_factory = lambda peer: Odd()
            _, data = self.nas.request(eap(EAP_RESPONSE, 1, b"\x01carol"))
            self.assertIsNone(self.successResultOf(self.nas.send(data)))
            self.assertEqual(self.server.conversations, 0)
            self.assertIsNotNone(Odd.aborted)
            self.assert_logged(logged)
        self.flushLoggedErrors(ValueError)

    def test_proxy_state_is_copied_in_order(self):
        self.make_server()
        request = self.nas.request(eap(EAP_RESPONSE, 1, b"\x01carol"),
                                   extra=[Attribute(A.PROXY_STATE, b"one"), Attribute(A.PROXY_STATE, b"two")])
        reply = self.nas.exchange(request)
        self.assertEqual(reply.get_all(A.PROXY_STATE), [b"one", b"two"])

    def test_eap_discard_of_the_first_packet_ends_the_conversation_silently(self):
        self.make_server()
        _, data = self.nas.request(eap(EAP_RESPONSE, 1, bytes((EAP_MD5, 16)) + bytes(16)))
        self.assertIsNone(self.successResultOf(self.nas.send(data)))
        self.assertEqual(self.server.conversations, 0)
        self.assertEqual(self.sessions[0].aborted, "first EAP packet discarded")
        self.assert_logged("discarded by the EAP server: expected EAP-Response/Identity")

    def test_eap_discard_mid_conversation_keeps_it_and_allows_a_retransmission(self):
        self.make_server()
        _, challenge = self.identity()
        state = challenge.get(A.STATE)
        wrong_id = eap(EAP_RESPONSE, (challenge.eap_message()[1] + 1) % 256, bytes((EAP_MD5, 16)) + bytes(16))
        _, data = self.nas.request(wrong_id, state)
        self.assertIsNone(self.successResultOf(self.nas.send(data)))
        self.assertEqual(self.server.conversations, 1)
        # nothing cached for the discarded request: a good response still completes
        request = self.nas.request(md5_response(challenge.eap_message(), PASSWORD), state)
        self.assertEqual(self.nas.exchange(request).code, Code.ACCESS_ACCEPT)

    def test_a_failing_eap_session_costs_its_conversation_only(self):
        @implementer(IEapSession)
        class Broken:
            aborted = None

            def start(self):
                return b""

            def receive(self, packet):
                return defer.fail(RuntimeError("bug in the EAP server"))

            def abort(self, reason):
                Broken.aborted = reason

        self.make_server()
        self.server.eap_factory = lambda peer: Broken()
        _, data = self.nas.request(eap(EAP_RESPONSE, 1, b"\x01carol"))
        self.assertIsNone(self.successResultOf(self.nas.send(data)))
        self.assertEqual(self.server.conversations, 0)
        self.assertEqual(Broken.aborted, "internal error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        # the server goes on
        self.server.eap_factory = self.factory
        self.assertEqual(self.authenticate()[1].code, Code.ACCESS_ACCEPT)

    def test_ipv4_mapped_source_and_ipv6_client(self):
        self.make_server()
        nas = Nas(self, self.server, addr=("::ffff:127.0.0.2", 1812))
        self.assertEqual(self.identity(nas)[1].code, Code.ACCESS_CHALLENGE)
        self.assertEqual(self.sessions[-1].peer.address, "127.0.0.2")
        v6 = Nas(self, self.server, secret="v6-secret", addr=("::1", 1812))
        self.assertEqual(self.identity(v6)[1].code, Code.ACCESS_CHALLENGE)


class ImmediateAnswerTests(ServerTestCase):
    """Sessions that answer at once get their reply in the same call, no Deferred."""

    def factory(self, peer: PeerInfo) -> Md5Authenticator:
        session = ImmediateMd5Authenticator(peer, {"carol": PASSWORD}, decision=self.decision, hold=self.hold)
        self.sessions.append(session)
        return session

    def respond(self, request: tuple[RadiusPacket, bytes]):
        return self.server.respond(request[1], NAS, self.nas.now)

    def test_whole_conversation_answered_in_the_same_call(self):
        self.make_server()
        first = self.nas.request(eap(EAP_RESPONSE, 7, bytes((EAP_IDENTITY,)) + b"carol"))
        data = self.respond(first)
        self.assertIsInstance(data, bytes)
        challenge = self.nas.verify(data, first[0])
        self.assertEqual(challenge.code, Code.ACCESS_CHALLENGE)
        # a retransmission gets the same bytes, without a second answer
        self.assertEqual(self.respond(first), data)
        self.assertEqual(self.sessions[0].answered, 1)
        second = self.nas.request(md5_response(challenge.eap_message(), PASSWORD), challenge.get(A.STATE))
        accept = self.nas.verify(self.respond(second), second[0])
        self.assertEqual((accept.code, accept.eap_message()[0], accept.value(A.FILTER_ID)),
                         (Code.ACCESS_ACCEPT, EAP_SUCCESS, "allow"))
        self.assertEqual(self.server.conversations, 0)

    def test_datagram_received_still_answers_with_a_deferred(self):
        self.make_server()
        request, challenge = self.identity()
        self.assertEqual(challenge.code, Code.ACCESS_CHALLENGE)
        self.assertEqual(self.sessions[0].answered, 1)

    def test_held_answer_is_a_deferred_reply(self):
        self.hold = True
        self.make_server()
        first = self.nas.request(eap(EAP_RESPONSE, 7, bytes((EAP_IDENTITY,)) + b"carol"))
        d = self.respond(first)
        self.assertIsInstance(d, defer.Deferred)
        self.assertNoResult(d)
        self.assertIsNone(self.respond(first))  # retransmission while pending: discarded
        self.sessions[0].release()
        self.assertEqual(self.nas.verify(self.successResultOf(d), first[0]).code, Code.ACCESS_CHALLENGE)

    def test_discarded_first_packet_needs_no_reply(self):
        self.make_server()
        self.assertIsNone(self.respond(self.nas.request(eap(EAP_RESPONSE, 7, bytes((EAP_MD5, 16)) + bytes(16)))))
        self.assertEqual(self.server.conversations, 0)
        self.assert_logged("discarded by the EAP server")

    def test_answer_that_raises_ends_the_conversation(self):
        self.make_server()

        def broken(packet):
            raise RuntimeError("bug")

        request = self.nas.request(eap(EAP_RESPONSE, 7, bytes((EAP_IDENTITY,)) + b"carol"))
        self.server.eap_factory = lambda peer: type("Broken", (), {"answer": staticmethod(broken),
                                                                    "receive": None,
                                                                    "abort": lambda self, r: None})()
        self.assertIsNone(self.respond(request))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.server.conversations, 0)


class DuplicateDetectionTests(ServerTestCase):
    def test_retransmission_gets_the_cached_reply_without_a_second_receive(self):
        self.make_server()
        _, challenge = self.identity()
        request = self.nas.request(md5_response(challenge.eap_message(), PASSWORD), challenge.get(A.STATE))
        first = self.successResultOf(self.nas.send(request[1]))
        calls = len(self.sessions[0].received)
        again = self.successResultOf(self.nas.send(request[1]))
        self.assertEqual(again, first)
        self.assertEqual(len(self.sessions[0].received), calls)
        self.assertEqual(self.server.counters.dup_access_requests, 1)
        self.assertEqual(self.server.counters.access_accepts, 1)
        self.assert_logged("is a retransmission, sending the same reply again")

    def test_retransmission_while_pending_is_discarded_then_cached(self):
        self.hold = True
        self.make_server()
        packet, data = self.nas.request(eap(EAP_RESPONSE, 1, b"\x01carol"))
        d = self.nas.send(data)
        self.assertNoResult(d)
        self.assertIsNone(self.nas.send(data))
        self.assertEqual(len(self.sessions), 1)
        self.assertEqual(len(self.sessions[0].received), 1)
        self.assert_logged("ignoring RADIUS Access-Request 0x00 from client '127.0.0.1', already processing")
        self.sessions[0].release()
        reply = self.successResultOf(d)
        self.nas.verify(reply, packet)
        self.assertEqual(self.successResultOf(self.nas.send(data)), reply)
        self.assertEqual(len(self.sessions[0].received), 1)

    def test_new_request_of_a_pending_conversation_is_discarded(self):
        self.make_server()
        _, challenge = self.identity()
        self.sessions[0].hold = True
        state = challenge.get(A.STATE)
        response = md5_response(challenge.eap_message(), PASSWORD)
        d = self.nas.send(self.nas.request(response, state)[1])
        self.assertNoResult(d)
        # another Identifier, same State: not a retransmission, and the conversation is busy
        self.assertIsNone(self.nas.send(self.nas.request(response, state)[1]))
        self.assertEqual(len(self.sessions[0].received), 2)

    def test_same_identifier_with_another_authenticator_is_a_new_request(self):
        self.make_server()
        request = self.nas.request(eap(EAP_RESPONSE, 1, b"\x01carol"), identifier=5)
        self.nas.exchange(request)
        again = self.nas.request(eap(EAP_RESPONSE, 1, b"\x01carol"), identifier=5)
        self.nas.exchange(again)
        self.assertEqual(len(self.sessions), 2)

    def test_same_identifier_from_another_port_is_another_request(self):
        self.make_server()
        _, data = self.nas.request(eap(EAP_RESPONSE, 1, b"\x01carol"))
        self.successResultOf(self.nas.send(data))
        self.successResultOf(self.nas.send(data, ("127.0.0.1", 40002)))
        self.assertEqual(len(self.sessions), 2)

    def test_cached_replies_expire(self):
        self.make_server(duplicate_lifetime=5.0)
        request = self.nas.request(eap(EAP_RESPONSE, 1, b"\x01carol"))
        self.nas.exchange(request)
        self.server.expire(self.nas.now + 5.0)
        self.nas.now += 5.0
        self.nas.exchange(request)
        self.assertEqual(len(self.sessions), 2)


class DiscardTests(ServerTestCase):
    def assert_discarded(self, data: bytes, logged: str, addr=None) -> None:
        self.assertIsNone(self.nas.send(data, addr))
        self.assert_logged(logged)
        self.assertEqual(self.sessions, [])

    def test_unknown_client(self):
        self.make_server()
        _, data = self.nas.request(eap(EAP_RESPONSE, 1, b"\x01carol"))
        self.assert_discarded(data, "received RADIUS packet from unknown client 192.0.2.1[1645], discarded",
                              ("192.0.2.1", 1645))
        self.assertIsNone(self.nas.send(data, ("192.0.2.1", 1646)))
        self.assertEqual(self.server.counters.unknown_clients, 2)
        self.assertEqual(sum("unknown client" in formatEvent(e) for e in self.logs.events), 1)

    def test_bad_message_authenticator(self):
        self.make_server()
        _, data = Nas(self, self.server, secret="not the secret").request(eap(EAP_RESPONSE, 1, b"\x01carol"))
        self.assert_discarded(data, "bad Message-Authenticator (is the shared secret the same?)")
        self.assertEqual(self.server.counters.bad_authenticators, 1)

    def test_eap_message_without_message_authenticator(self):
        self.make_server()
        _, data = self.nas.request(eap(EAP_RESPONSE, 1, b"\x01carol"), sign=False)
        self.assert_discarded(data, "EAP-Message without Message-Authenticator")

    def test_eap_message_with_user_password(self):
        self.make_server()
        _, data = self.nas.request(eap(EAP_RESPONSE, 1, b"\x01carol"),
                                   extra=[Attribute(A.USER_PASSWORD, bytes(16))])
        self.assert_discarded(data, "EAP-Message together with User-Password")

    def test_malformed_packet(self):
        self.make_server()
        _, data = self.nas.request(eap(EAP_RESPONSE, 1, b"\x01carol"))
        self.assert_discarded(data[:21] + b"\x01" + data[22:], "received invalid RADIUS message from client "
                                                               "'127.0.0.1', ignored")
        nac_log.repeats.reset()  # another fault from the same NAS within the interval would only be counted
        self.assert_discarded(b"\x01\x00\x00", "shorter than the 20-byte header")

    def test_non_consecutive_eap_messages(self):
        self.make_server()
        attrs = [Attribute(A.EAP_MESSAGE, b"\x02\x01"), Attribute(A.USER_NAME, b"x"),
                 Attribute(A.EAP_MESSAGE, b"\x00\x06\x01c"), Attribute(A.MESSAGE_AUTHENTICATOR, bytes(16))]
        data = sign_request(RadiusPacket(Code.ACCESS_REQUEST, 1, os.urandom(16), tuple(attrs)), SECRET.encode())
        self.assert_discarded(data, "EAP-Message attributes are not consecutive")

    def test_unknown_state(self):
        self.make_server()
        _, data = self.nas.request(md5_response(eap(1, 2, b"\x04\x10" + bytes(16)), PASSWORD), os.urandom(16))
        self.assert_discarded(data, "carries an unknown State")

    def test_state_of_another_client_is_unknown(self):
        self.make_server()
        _, challenge = self.identity()
        other = Nas(self, self.server, secret="v6-secret", addr=("::1", 1812))
        _, data = other.request(md5_response(challenge.eap_message(), PASSWORD), challenge.get(A.STATE))
        self.assertIsNone(other.send(data))
        self.assert_logged("carries an unknown State")
        self.assertEqual(len(self.sessions[0].received), 1)

    def test_state_is_good_for_one_round_only(self):
        self.make_server()
        _, challenge = self.identity()
        state = challenge.get(A.STATE)
        request = self.nas.request(md5_response(challenge.eap_message(), PASSWORD), state)
        self.nas.exchange(request)
        # a new request (not a retransmission) replaying the used State
        _, data = self.nas.request(md5_response(challenge.eap_message(), PASSWORD), state)
        self.assertIsNone(self.nas.send(data))

    def test_accounting_and_replies_are_ignored(self):
        self.make_server()
        for code in (Code.ACCOUNTING_REQUEST, Code.ACCESS_ACCEPT, 99):
            _, data = self.nas.request(None, code=code)
            self.assertIsNone(self.nas.send(data))
        self.assert_logged("received RADIUS Accounting-Request from client '127.0.0.1', ignored")
        self.assertEqual(self.server.counters.unknown_types, 3)

    def test_server_goes_on_after_bad_packets(self):
        self.make_server()
        self.nas.send(b"\xff" * 50)
        self.nas.send(b"")
        self.assertEqual(self.authenticate()[1].code, Code.ACCESS_ACCEPT)

    @given(st.binary(max_size=200))
    @settings(max_examples=200, deadline=None)
    def test_random_datagrams_never_crash(self, data):
        server = RadiusServer([RadiusClient(ipaddress.ip_network("127.0.0.1/32"), b"k")], self.factory)
        result = server.datagram_received(data, ("127.0.0.1", 1), 0.0)
        if result is not None:
            self.successResultOf(result)

    @given(st.lists(st.tuples(st.integers(0, 255).filter(lambda t: t != 80), st.binary(max_size=60)), max_size=6),
           st.sampled_from([Code.ACCESS_REQUEST, Code.STATUS_SERVER]))
    @settings(max_examples=200, deadline=None)
    def test_random_signed_requests_never_crash(self, attrs, code):
        server = RadiusServer([RadiusClient(ipaddress.ip_network("127.0.0.1/32"), b"k")], self.factory)
        attrs = [Attribute(t, v) for t, v in attrs] + [Attribute(A.MESSAGE_AUTHENTICATOR, bytes(16))]
        data = sign_request(RadiusPacket(code, 1, os.urandom(16), tuple(attrs)), b"k")
        result = server.datagram_received(data, ("127.0.0.1", 1), 0.0)
        if result is not None:
            reply = self.successResultOf(result)
            if reply is not None:
                verify_response(reply, data[4:20], b"k")


class StatusAndPlainRequestTests(ServerTestCase):
    def test_status_server_is_answered_with_access_accept(self):
        self.make_server()
        request = self.nas.request(None, code=Code.STATUS_SERVER)
        reply = self.nas.exchange(request)
        self.assertEqual(reply.code, Code.ACCESS_ACCEPT)
        self.assertEqual([a.type for a in reply.attributes], [A.MESSAGE_AUTHENTICATOR])
        # RFC 5997: never cached; a second one is answered again
        self.assertEqual(self.nas.exchange(request).code, Code.ACCESS_ACCEPT)
        self.assertEqual(self.server.counters.status_servers, 2)

    def test_status_server_without_message_authenticator_is_discarded(self):
        self.make_server()
        _, data = self.nas.request(None, code=Code.STATUS_SERVER, sign=False)
        self.assertIsNone(self.nas.send(data))
        self.assert_logged("Status-Server without Message-Authenticator")

    def test_access_request_without_eap_gets_access_reject(self):
        self.make_server()
        request = self.nas.request(None, extra=[Attribute(A.USER_PASSWORD, os.urandom(16))], sign=False)
        reply = self.nas.exchange(request)
        self.assertEqual(reply.code, Code.ACCESS_REJECT)
        self.assertFalse(reply.has(A.EAP_MESSAGE))
        self.assert_logged("has no EAP-Message; only EAP authentication is offered, sending Access-Reject")
        # retransmission: the same reply from the cache
        self.assertEqual(self.nas.verify(self.successResultOf(self.nas.send(request[1])), request[0]), reply)


class LimitTests(ServerTestCase):
    def test_conversations_time_out(self):
        self.make_server(conversation_timeout=30.0)
        _, challenge = self.identity()
        self.server.expire(self.nas.now + 29.0)
        self.assertEqual(self.server.conversations, 1)
        self.server.expire(self.nas.now + 30.0)
        self.assertEqual(self.server.conversations, 0)
        self.assertEqual(self.sessions[0].aborted, "RADIUS conversation timed out")
        self.assert_logged("EAP conversation from client '127.0.0.1' for 'carol' timed out after 30 s")
        self.nas.now += 30.0
        _, data = self.nas.request(md5_response(challenge.eap_message(), PASSWORD), challenge.get(A.STATE))
        self.assertIsNone(self.nas.send(data))

    def test_a_request_keeps_the_conversation_alive(self):
        self.make_server(conversation_timeout=30.0)
        _, old = self.identity()
        self.nas.now += 20.0
        _, fresh = self.identity()
        self.server.expire(self.nas.now + 15.0)  # 35 s after the first, 15 s after the second
        self.assertEqual(self.server.conversations, 1)
        self.assertIsNotNone(self.sessions[0].aborted)
        self.assertIsNone(self.sessions[1].aborted)

    def test_pending_outcome_after_timeout_is_dropped(self):
        self.hold = True
        self.make_server(conversation_timeout=30.0)
        _, data = self.nas.request(eap(EAP_RESPONSE, 1, b"\x01carol"))
        d = self.nas.send(data)
        self.server.expire(self.nas.now + 31.0)
        self.sessions[0].release()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.server.conversations, 0)

    def flood(self, nas: Nas, count: int, *, station: bytes | None = None) -> int:
        """``count`` EAP-Response/Identity requests that go no further (the
        attack of issue 17: valid Message-Authenticators, one NAS); how many
        were answered."""
        answered = 0
        for i in range(count):
            packet = nas.request(eap(EAP_RESPONSE, 7, b"\x01mallory"), user=b"mallory",
                                 station=station or f"02-66-00-00-{i // 256:02x}-{i % 256:02x}".encode())
            d = nas.send(packet[1])
            answered += d is not None and self.successResultOf(d) is not None
        return answered

    def test_a_flood_of_new_conversations_never_locks_out_a_new_authentication(self):
        self.make_server(max_conversations=8)
        self.assertEqual(self.flood(self.nas, 100), 100)  # each made room by ending an older one
        self.assertLessEqual(self.server.conversations, 8)
        self.assertEqual(self.server.counters.conversations_evicted, 100 - 6)
        request, accept = self.authenticate()  # a real user in the middle of the flood
        self.assertEqual(accept.code, Code.ACCESS_ACCEPT)
        self.assert_logged("ending the unfinished EAP conversation from client '127.0.0.1' for 'mallory': "
                           "the client's share of conversations ([radius] max_conversations_per_nas) is taken")
        # one line for the flood, not one per conversation ended
        self.assertEqual(sum("ending the unfinished" in formatEvent(e) for e in self.logs.events), 1)
        # an ended conversation is aborted and its State is unknown from then on
        self.assertTrue(any(s.aborted == "made room for a newer conversation" for s in self.sessions))

    def test_a_flooding_nas_leaves_the_others_their_conversations(self):
        self.make_server(max_conversations=8)
        quiet = Nas(self, self.server, addr=("127.0.0.2", 1645))
        _, challenge = self.identity(quiet)
        self.flood(self.nas, 100)
        # the quiet NAS's conversation survived the flood and completes
        request = quiet.request(md5_response(challenge.eap_message(), PASSWORD), challenge.get(A.STATE))
        self.assertEqual(quiet.exchange(request).code, Code.ACCESS_ACCEPT)
        # and it can start new ones: room is taken from the NAS with the most
        for _ in range(2):
            self.identity(quiet)
        self.assertEqual(len(self.server._by_nas["127.0.0.2"]), 2)

    def test_one_endpoint_keeps_at_most_its_share(self):
        self.make_server(max_conversations_per_station=4)
        self.flood(self.nas, 10, station=b"02-00-00-00-00-09")
        self.assertEqual(self.server.conversations, 4)
        # without a Calling-Station-Id nothing is counted per station: many
        # users share an outer identity ('anonymous')
        self.make_server(max_conversations_per_station=4)
        for _ in range(10):
            self.identity(user="anonymous")  # Nas.request always sends a Calling-Station-Id …
        self.assertEqual(self.server.conversations, 4)
        self.make_server(max_conversations_per_station=4)
        for _ in range(10):
            packet = self.nas.request(eap(EAP_RESPONSE, 7, b"\x01anonymous"), user=b"anonymous", station=None)
            self.assertIsNotNone(self.nas.send(packet[1]))
        self.assertEqual(self.server.conversations, 10)  # … unless it has none
        # the newest one is the one that goes on
        self.assertEqual([s.aborted for s in self.sessions[-4:]], [None] * 4)
        self.assert_logged("its station started another one")

    def test_idle_conversations_time_out(self):
        self.make_server()
        self.identity()
        self.nas.now += 31.0
        self.server.expire(self.nas.now)
        self.assertEqual((self.server.conversations, self.server._by_nas, self.server._by_station), (0, {}, {}))
        self.assertEqual(self.sessions[0].aborted, "RADIUS conversation timed out")

    def test_close_aborts_everything(self):
        self.make_server()
        self.identity()
        self.server.close()
        self.assertEqual(self.sessions[0].aborted, "server shutting down")
        self.assertIsNone(self.nas.send(self.nas.request(None, code=Code.STATUS_SERVER)[1]))


class SecretTests(ServerTestCase):
    def test_secrets_never_logged(self):
        nac_log.set_level("debug")
        self.addCleanup(nac_log.set_level, "info")
        self.make_server()
        self.authenticate()
        self.authenticate("wrong")
        self.nas.exchange(self.nas.request(None, code=Code.STATUS_SERVER))
        self.nas.exchange(self.nas.request(None, extra=[Attribute(A.USER_PASSWORD, bytes(16))], sign=False))
        wrong = Nas(self, self.server, secret="x" + SECRET)
        wrong.send(wrong.request(eap(EAP_RESPONSE, 1, b"\x01carol"))[1])
        self.nas.send(b"\x01\x00\x00\x10" + bytes(30))
        self.assertIn("debug", {e["log_level"].name for e in self.logs.events})
        text = self.logs.text()
        for secret in (SECRET, PASSWORD, "x" + SECRET):
            self.assertNotIn(secret, text)
        self.assertNotIn(SECRET, repr(self.server.clients.clients))


class EnforcementTests(unittest.TestCase):
    def test_provides_the_interface(self):
        verifyObject(IEnforcement, RadiusEnforcement())

    def test_actions(self):
        e = RadiusEnforcement(filter_id_allow="allow", filter_id_isolate=None, vlan_allow=None,
                              vlan_isolate="guests", tunnel_tag=0)
        allowed = e.enforce(None, decision("allowed"))
        self.assertTrue(allowed.accept)
        self.assertEqual(allowed.attributes, (Attribute(A.FILTER_ID, b"allow"),))
        isolate = e.enforce(None, decision("isolate"))
        self.assertEqual(isolate.attributes, (Attribute(A.TUNNEL_TYPE, b"\x00\x00\x00\x0d"),
                                              Attribute(A.TUNNEL_MEDIUM_TYPE, b"\x00\x00\x00\x06"),
                                              Attribute(A.TUNNEL_PRIVATE_GROUP_ID, b"guests")))
        self.assertFalse(e.enforce(None, decision("denied")).accept)
        self.assertFalse(e.enforce(None, Decision(ActionRecommendation.ALLOW, EvaluationResult.COMPLIANT,
                                                  "something new")).accept)
        plain = e.enforce(None, None)
        self.assertEqual((plain.accept, plain.attributes), (True, ()))

    def test_from_config_section(self):
        from nac import config
        cfg = config.load(None, {("radius", "vlan_allow"): "10", ("radius", "filter_id_allow"): "",
                                 ("radius", "session_timeout"): "600"})
        e = RadiusEnforcement.from_config(cfg.section("radius"))
        self.assertEqual(e.enforce(None, decision("allowed")).attributes,
                         (Attribute(A.TUNNEL_TYPE, b"\x01\x00\x00\x0d"),
                          Attribute(A.TUNNEL_MEDIUM_TYPE, b"\x01\x00\x00\x06"),
                          Attribute(A.TUNNEL_PRIVATE_GROUP_ID, b"\x0110"),
                          Attribute(A.SESSION_TIMEOUT, (600).to_bytes(4, "big")),
                          # the default session_timeout_action = reauthenticate: RADIUS-Request (1)
                          Attribute(A.TERMINATION_ACTION, (1).to_bytes(4, "big"))))
        self.assertEqual(e.enforce(None, decision("isolate")).attributes[0], Attribute(A.FILTER_ID, b"isolate"))

    def test_session_timeout_with_termination_action_for_periodic_reassessment(self):
        reauth = RadiusEnforcement(session_timeout=900, session_timeout_action="reauthenticate")
        attrs = reauth.enforce(None, decision("isolate")).attributes
        self.assertEqual(attrs[-2:], (Attribute(A.SESSION_TIMEOUT, (900).to_bytes(4, "big")),
                                      Attribute(A.TERMINATION_ACTION, b"\0\0\0\1")))
        terminate = RadiusEnforcement(session_timeout=900)
        self.assertNotIn(A.TERMINATION_ACTION, [a.type for a in terminate.enforce(None, decision("isolate")).attributes])
        # no Session-Timeout, no Termination-Action
        none = RadiusEnforcement(session_timeout_action="reauthenticate")
        self.assertNotIn(A.TERMINATION_ACTION, [a.type for a in none.enforce(None, decision("allowed")).attributes])
        with self.assertRaises(ValueError):
            RadiusEnforcement(session_timeout_action="sometimes")
        # a group's own Session-Timeout comes with it too
        import types
        group = types.SimpleNamespace(filter_id_allow=None, filter_id_isolate=None, vlan_allow=None,
                                      vlan_isolate=None, session_timeout=300, groups=("lab",))
        attrs = none.enforce(None, types.SimpleNamespace(access="isolate", enforcement=group)).attributes
        self.assertEqual(attrs[-2:], (Attribute(A.SESSION_TIMEOUT, (300).to_bytes(4, "big")),
                                      Attribute(A.TERMINATION_ACTION, b"\0\0\0\1")))


class ProcessesTests(ServerTestCase):
    """A server that is one of several processes serving the port: each
    conversation belongs to one process, named by the first byte of its
    States; a request without State to the process its Request
    Authenticator selects."""

    def opening(self, owner: int, processes: int) -> tuple[RadiusPacket, bytes]:
        """An EAP-Response/Identity request that process ``owner`` serves."""
        while True:
            packet, data = self.nas.request(eap(EAP_RESPONSE, 7, bytes((EAP_IDENTITY,)) + b"carol"))
            if packet.authenticator[0] % processes == owner:
                return packet, data

    def respond(self, data: bytes, **kw):
        result = self.server.respond(data, self.nas.addr, self.nas.now, **kw)
        return self.successResultOf(result) if isinstance(result, defer.Deferred) else result

    def test_a_whole_conversation_stays_with_its_process(self):
        self.make_server(process=1, processes=3)
        packet, data = self.opening(1, 3)
        challenge = self.nas.verify(self.respond(data), packet)
        self.assertEqual(challenge.code, Code.ACCESS_CHALLENGE)
        state = challenge.get(A.STATE)
        self.assertEqual((len(state), state[0]), (16, 1))
        request = self.nas.request(md5_response(challenge.eap_message(), PASSWORD), state)
        accept = self.nas.verify(self.respond(request[1]), request[0])
        self.assertEqual(accept.code, Code.ACCESS_ACCEPT)
        self.assertEqual(self.server.counters.forwarded, 0)

    def test_requests_of_other_processes_are_forwarded_untouched(self):
        self.make_server(process=1, processes=3)
        packet, data = self.opening(2, 3)
        self.assertEqual(self.respond(data), Forward(2, True))
        # the same again (a retransmission) goes to the same process
        self.assertEqual(self.respond(data), Forward(2, True))
        other_state = bytes((0,)) + os.urandom(15)
        _, data = self.nas.request(eap(EAP_RESPONSE, 8, bytes((4,)) + bytes(17)), other_state)
        self.assertEqual(self.respond(data), Forward(0, False))
        # nothing started, cached or counted as an Access-Request here
        self.assertEqual((self.sessions, self.server.conversations, self.server.counters.access_requests,
                          self.server.counters.forwarded), ([], 0, 0, 3))
        self.assertEqual(self.server._replies, {})

    def test_a_forwarded_request_is_served_whatever_it_carries(self):
        self.make_server(process=1, processes=3)
        packet, data = self.opening(2, 3)
        # its owner could not be reached: this process serves it, and owns the conversation
        challenge = self.nas.verify(self.respond(data, forwarded=True), packet)
        self.assertEqual(challenge.get(A.STATE)[0], 1)
        # a State of another process that reaches this one is unknown here
        _, data = self.nas.request(eap(EAP_RESPONSE, 8, bytes((4,)) + bytes(17)), bytes((2,)) + bytes(15))
        self.assertIsNone(self.respond(data, forwarded=True))
        self.assert_logged("carries an unknown State")

    def test_a_request_its_process_cannot_take(self):
        self.make_server(process=0, processes=2)
        packet, data = self.opening(1, 2)
        forward = self.respond(data)
        # a new conversation is served here instead, and stays here
        reply = self.server.not_forwarded(forward, data, self.nas.addr, self.nas.now)
        reply = self.successResultOf(reply) if isinstance(reply, defer.Deferred) else reply
        self.assertEqual(self.nas.verify(reply, packet).get(A.STATE)[0], 0)
        # a request of process 1's conversation is dropped: the NAS sends it again
        _, data = self.nas.request(eap(EAP_RESPONSE, 8, bytes((4,)) + bytes(17)), bytes((1,)) + bytes(15))
        forward = self.respond(data)
        self.assertEqual(forward, Forward(1, False))
        self.assertIsNone(self.server.not_forwarded(forward, data, self.nas.addr, self.nas.now))
        self.assertEqual(self.server.counters.packets_dropped, 1)

    def test_a_state_naming_no_process_is_served_here_and_unknown(self):
        self.make_server(process=0, processes=2)
        for state in (bytes((2,)) + bytes(15), bytes((0,)) * 5):
            _, data = self.nas.request(eap(EAP_RESPONSE, 8, bytes((4,)) + bytes(17)), state)
            self.assertIsNone(self.respond(data))
        self.assertEqual(self.server.counters.forwarded, 0)
        self.assertEqual(self.server.counters.packets_dropped, 2)

    def test_status_server_is_answered_where_it_arrives(self):
        self.make_server(process=0, processes=2)
        for _ in range(8):
            packet, data = self.nas.request(None, code=Code.STATUS_SERVER)
            self.assertEqual(self.nas.verify(self.respond(data), packet).code, Code.ACCESS_ACCEPT)

    def test_new_conversations_are_spread_evenly(self):
        for processes in (2, 3, 4, 7):
            owners = [owner_of(RadiusPacket(Code.ACCESS_REQUEST, 0, bytes((first,)) + bytes(15), ()).build(),
                               processes) for first in range(256)]
            counts = [owners.count((k, True)) for k in range(processes)]
            self.assertLessEqual(max(counts) - min(counts), 1, (processes, counts))

    def test_the_owner_is_read_from_the_attribute_headers_only(self):
        self.make_server(process=0, processes=3)
        state = bytes((2,)) + bytes(15)
        packet, data = self.nas.request(eap(EAP_RESPONSE, 8, bytes((4,)) + bytes(17)), state,
                                        extra=[Attribute(A.PROXY_STATE, b"p" * 200)] * 3)
        self.assertEqual(owner_of(data, 3), (2, False))
        self.assertEqual(owner_of(data + bytes(30), 3), (2, False))  # padding after Length
        self.assertEqual(owner_of(data, 2), (None, False))  # no such process
        # malformed: no owner, so the receiving process parses it and says why it is dropped
        for bad in (data[:19], data[:-1], data[:20] + b"\x18\x01" + data[22:],
                    data[:2] + (len(data) + 1).to_bytes(2, "big") + data[4:]):
            self.assertEqual(owner_of(bad, 3), (None, False))
        short_state = self.nas.request(None, b"\x01\x02")[1]
        self.assertEqual(owner_of(short_state, 3), (None, False))

    def test_a_malformed_request_is_dropped_where_it_arrives(self):
        self.make_server(process=0, processes=2)
        _, data = self.nas.request(eap(EAP_RESPONSE, 8, bytes((4,)) + bytes(17)), bytes((1,)) + bytes(15))
        self.assertIsNone(self.respond(data[:-3]))
        self.assertEqual((self.server.counters.forwarded, self.server.counters.malformed_packets), (0, 1))
        self.assert_logged("received invalid RADIUS message from client '127.0.0.1'")

    def test_process_numbers_fit_a_state_byte(self):
        for process, processes in ((0, 0), (2, 2), (-1, 2), (0, 257)):
            with self.assertRaises(ValueError):
                self.make_server(process=process, processes=processes)
        # one process: States are wholly random
        self.make_server()
        firsts = {self.identity()[1].get(A.STATE)[0] for _ in range(64)}
        self.assertGreater(len(firsts), 1)
