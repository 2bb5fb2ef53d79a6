"""The EAP peer (nac.eap.peer) against nac's own authenticator, in memory:
EAP-TTLS over TLS 1.2 and 1.3 with each inner method, the MSK both ends
derive, PT-EAP and EAP-TNC posture with a real TNCS core and IMV, outer
MD5 and MSCHAPv2, Naks, fragments of 150 bytes, servers that cannot be
trusted, premature Success, retransmitted requests, and random server
packets (never an exception)."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial import unittest

from nac.certs import ensure_demo_pki
from nac.client.pb_client import PbTncClient
from nac.eap.avp import AvpCode, parse_avps
from nac.eap.mschapv2 import MsChapV2OpCode, MsChapV2Packet
from nac.eap.outcome import EapStatus
from nac.eap.packet import EapCode, EapPacket, EapType, nak_types
from nac.eap.peer import (
    EapPeer,
    MsChapV2Peer,
    PeerSettings,
    PeerStatus,
    PtEapPeer,
    TtlsPeer,
    peer_context,
)
from nac.eap.server import EapServerSession, EapSettings
from nac.eap.tnc import EAP_TNC_LIMITS, EapTnc, PtEap
from nac.eap.ttls import TtlsServer
from nac.ifimv import ActionRecommendation as A, EvaluationResult as E
from nac.pb import BatchType, PbBatch
from nac.tnccs.assessment import PeerInfo
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvManager
from tests.test_eap_tnc import ProductImc, VerdictImv
from tests.test_eap_ttls import PASSWORDS, PkiMixin

RADIUS_PEER = PeerInfo("radius", "127.0.0.1", 1812)


def converse(testcase, session: EapServerSession, peer: EapPeer, *, nas_identity: bool = True,
             limit: int = 600):
    """Run a conversation as RADIUS does (the NAS sends the peer's Identity
    first) or as IKEv2 does (the server asks).  Returns (server outcome,
    last peer step, rounds, sizes of the server's packets, sizes of the peer's)."""
    server_sizes, peer_sizes = [], []
    if nas_identity:
        response = peer.identity_response(0)
    else:
        request = session.start()
        server_sizes.append(len(request))
        response = peer.receive(request).response
    for rounds in range(1, limit):
        peer_sizes.append(len(response))
        outcome = testcase.successResultOf(session.receive(response))
        step = peer.receive(outcome.packet) if outcome.packet else None
        if outcome.packet:
            server_sizes.append(len(outcome.packet))
        if outcome.status is not EapStatus.CONTINUE:
            return outcome, step, rounds, server_sizes, peer_sizes
        testcase.assertIs(step.status, PeerStatus.CONTINUE, step.reason)
        response = step.response
    raise AssertionError("the conversation did not end")


class PeerMixin(PkiMixin):
    def peer_settings(self, identity="carol", password=None, *, tls_version=None, ca=None, **kw) -> PeerSettings:
        low, high = (tls_version, tls_version) if tls_version else ("1.2", "1.3")
        context = peer_context(cacert=ca or self.pki.ca_cert, min_tls_version=low, max_tls_version=high)
        kw.setdefault("tnc", "none")
        return PeerSettings(identity=identity, password=PASSWORDS[identity] if password is None else password,
                            tls_context=context, **kw)

    def make_peer(self, *args, **kw) -> EapPeer:
        return EapPeer(self.peer_settings(*args, **kw))


class TtlsTests(PeerMixin, unittest.TestCase):
    def test_each_inner_method_over_tls12_and_tls13_gives_the_servers_keys(self):
        for tls_version in ("1.2", "1.3"):
            for inner in ("md5", "mschapv2", "pap", "ttls-mschapv2"):
                where = f"{inner} over TLS {tls_version}"
                trace = []
                peer = self.make_peer(tls_version=tls_version, inner=inner,
                                      trace=lambda d, p: trace.append((d, p[0], p[4:5])))
                outcome, step, _, _, _ = converse(self, self.session(), peer)
                self.assertEqual((outcome.status, step.status), (EapStatus.SUCCESS, PeerStatus.SUCCESS), where)
                self.assertEqual((peer.msk, peer.emsk), (outcome.msk, outcome.emsk), where)
                self.assertEqual(len(peer.msk), 64)
                self.assertEqual(outcome.identity, "carol")
                self.assertEqual(peer.method_label, "EAP_TTLS")
                self.assertIsNone(peer.posture)
                if inner in ("pap", "ttls-mschapv2"):
                    self.assertEqual(trace, [], where)  # AVPs, no inner EAP
                else:
                    self.assertEqual(trace[0], ("c2s", EapCode.RESPONSE, b"\x01"), where)

    def test_server_asking_for_the_identity_first(self):
        peer = self.make_peer(outer_identity="anonymous@nac.test")
        outcome, step, _, _, _ = converse(self, self.session(), peer, nas_identity=False)
        self.assertIs(step.status, PeerStatus.SUCCESS)
        self.assertEqual(outcome.identity, "carol")  # the inner identity authenticated

    def test_outer_identity_is_what_the_nas_sends(self):
        peer = self.make_peer(outer_identity="anonymous")
        packet = EapPacket.parse(peer.identity_response(7))
        self.assertEqual((packet.code, packet.identifier, packet.type, packet.type_data),
                         (EapCode.RESPONSE, 7, EapType.IDENTITY, b"anonymous"))

    def test_wrong_password_fails_for_each_inner_method(self):
        reasons = {}
        for inner in ("md5", "mschapv2", "pap", "ttls-mschapv2"):
            peer = self.make_peer(password="wrong", inner=inner)
            outcome, step, _, _, _ = converse(self, self.session(), peer)
            self.assertEqual((outcome.status, step.status), (EapStatus.FAILURE, PeerStatus.FAILURE), inner)
            self.assertIsNone(peer.msk)
            self.assertTrue(peer.finished)
            reasons[inner] = step.reason
        self.assertIn("E=691", reasons["mschapv2"])  # MSCHAPv2 tells why
        self.assertIn("E=691", reasons["ttls-mschapv2"])
        self.assertEqual(reasons["pap"], "the server sent EAP-Failure")

    def test_phase2_rides_with_the_tls13_finished(self):
        rounds = {}
        for with_finished in (True, False):
            peer = self.make_peer(tls_version="1.3", phase2_with_finished=with_finished)
            outcome, step, rounds[with_finished], _, _ = converse(self, self.session(), peer)
            self.assertIs(step.status, PeerStatus.SUCCESS)
            self.assertEqual(peer.msk, outcome.msk)
        self.assertEqual(rounds[True], rounds[False] - 1)

    def test_inner_nak_proposes_the_configured_method(self):
        trace = []
        peer = self.make_peer(inner="mschapv2", trace=lambda d, p: trace.append((d, p)))
        outcome, step, _, _, _ = converse(self, self.session(inner_methods=("md5", "mschapv2")), peer)
        self.assertIs(step.status, PeerStatus.SUCCESS)
        nak = EapPacket.parse(trace[2][1])
        self.assertEqual((trace[1][1][4], nak.type, nak_types(nak)), (EapType.MD5_CHALLENGE, EapType.NAK, (26,)))

    def test_pap_password_is_padded_to_sixteen_octets(self):
        for password, size in (("K8FW9", 16), ("x" * 16, 16), ("x" * 17, 32), ("", 16)):
            ttls = TtlsPeer(self.peer_settings(password=password, inner="pap"), os.urandom)
            avps = {a.code: a.data for a in parse_avps(ttls.phase2_start())}
            self.assertEqual(avps[AvpCode.USER_NAME], b"carol")
            self.assertEqual(len(avps[AvpCode.USER_PASSWORD]), size)
            self.assertEqual(avps[AvpCode.USER_PASSWORD].rstrip(b"\x00"), password.encode())

    def test_server_certificate_from_another_ca_is_refused_with_an_alert(self):
        other = ensure_demo_pki(Path(self.mktemp()))
        peer = self.make_peer(ca=other.ca_cert)
        outcome, step, _, _, _ = converse(self, self.session(), peer)
        self.assertEqual((outcome.status, step.status), (EapStatus.FAILURE, PeerStatus.FAILURE))
        # the alert told the server why
        self.assertIn("TLS", outcome.reason)
        self.assertTrue(peer.tls_error)
        self.assertIn("certificate verify failed", peer.error)
        self.assertIn("certificate verify failed", step.reason)

    def test_server_name_is_checked_when_given(self):
        peer = self.make_peer(server_name="nac.test")
        _, step, _, _, _ = converse(self, self.session(), peer)
        self.assertIs(step.status, PeerStatus.SUCCESS)
        # another name: the peer stops as soon as the handshake shows the certificate
        peer = self.make_peer(server_name="radius.example.org")
        session = self.session()
        response = peer.identity_response(0)
        while True:
            out = self.successResultOf(session.receive(response))
            step = peer.receive(out.packet)
            if step.status is not PeerStatus.CONTINUE:
                break
            response = step.response
        self.assertIs(step.status, PeerStatus.FAILURE)
        self.assertIn("not for 'radius.example.org'", step.reason)
        self.assertTrue(peer.tls_error)
        self.assertIsNone(peer.msk)

    def test_premature_success_is_refused(self):
        session = self.session()
        peer = self.make_peer()
        request = self.successResultOf(session.receive(peer.identity_response(0))).packet  # TTLS Start
        peer.receive(request)
        step = peer.receive(EapPacket.success(request[1]).build())
        self.assertIs(step.status, PeerStatus.FAILURE)
        self.assertIn("before EAP_TTLS completed", step.reason)
        self.assertIsNone(peer.msk)
        # and a Success before any method
        step = self.make_peer().receive(EapPacket.success(1).build())
        self.assertIs(step.status, PeerStatus.FAILURE)

    def test_retransmitted_request_gets_the_same_response_unprocessed(self):
        session = self.session()
        peer = self.make_peer()
        request = self.successResultOf(session.receive(peer.identity_response(0))).packet
        first = peer.receive(request)
        rounds = peer.rounds
        again = peer.receive(request)
        self.assertEqual(again, first)
        self.assertEqual(peer.rounds, rounds)
        response = first.response
        while True:
            out = self.successResultOf(session.receive(response))
            step = peer.receive(out.packet)
            if out.status is not EapStatus.CONTINUE:
                break
            response = step.response
        self.assertIs(step.status, PeerStatus.SUCCESS)

    def test_notification_identity_and_unknown_methods(self):
        peer = self.make_peer()
        step = peer.receive(EapPacket.request(3, EapType.NOTIFICATION, b"hello").build())
        self.assertEqual(EapPacket.parse(step.response), EapPacket.response(3, EapType.NOTIFICATION))
        step = peer.receive(EapPacket.request(4, EapType.IDENTITY).build())
        self.assertEqual(EapPacket.parse(step.response).type_data, b"carol")
        # a legacy Nak proposes EAP-TTLS
        nak = EapPacket.parse(peer.receive(EapPacket.request(5, EapType.MD5_CHALLENGE, b"\x01x").build()).response)
        self.assertEqual((nak.type, nak_types(nak)), (EapType.NAK, (21,)))
        # an Expanded Type request gets an Expanded Nak (RFC 3748 §5.3.2)
        expanded = peer.receive(EapPacket.request(6, EapType.EXPANDED, bytes(7)).build())
        packet = EapPacket.parse(expanded.response)
        self.assertTrue(packet.is_nak)
        self.assertEqual(nak_types(packet), (21,))
        # nothing of that changed the conversation
        self.assertIs(peer.status, PeerStatus.CONTINUE)

    def test_responses_and_garbage_are_discarded(self):
        peer = self.make_peer()
        for data in (b"", b"\x01\x02", EapPacket.response(1, EapType.IDENTITY, b"x").build(),
                     EapPacket.request(1, EapType.NAK, b"\x04").build(), b"\x09\x01\x00\x04"):
            self.assertIs(peer.receive(data).status, PeerStatus.DISCARD, data)
        self.assertIs(peer.status, PeerStatus.CONTINUE)

    def test_method_switch_after_an_answer_is_discarded(self):
        session = self.session()
        peer = self.make_peer()
        request = self.successResultOf(session.receive(peer.identity_response(0))).packet
        peer.receive(request)  # answered the TTLS Start
        step = peer.receive(EapPacket.request(request[1] + 1, EapType.MD5_CHALLENGE, b"\x01x").build())
        self.assertIs(step.status, PeerStatus.DISCARD)

    def test_unknown_settings_are_refused(self):
        for kw in ({"methods": ("peap",)}, {"inner": "chap"}, {"tnc": "soh"}, {"methods": ()}):
            with self.assertRaises(ValueError):
                self.make_peer(**kw)


class OuterMethodTests(PeerMixin, unittest.TestCase):
    def md5_session(self, methods):
        return EapServerSession(RADIUS_PEER, EapSettings(methods=methods, credentials=self.passwords.credentials))

    def test_outer_md5(self):
        peer = self.make_peer(methods=("md5",))
        outcome, step, rounds, _, _ = converse(self, self.md5_session(("md5",)), peer)
        self.assertEqual((outcome.status, step.status, rounds), (EapStatus.SUCCESS, PeerStatus.SUCCESS, 2))
        self.assertIsNone(peer.msk)

    def test_outer_mschapv2_msk_is_the_servers(self):
        peer = self.make_peer("dave", methods=("mschapv2",))
        outcome, step, rounds, _, _ = converse(self, self.md5_session(("mschapv2",)), peer)
        self.assertEqual((outcome.status, step.status, rounds), (EapStatus.SUCCESS, PeerStatus.SUCCESS, 3))
        self.assertEqual(peer.msk, outcome.msk)

    def test_outer_nak_moves_the_server_to_ttls(self):
        session = EapServerSession(RADIUS_PEER, self.settings(methods=("md5", "ttls")))
        peer = self.make_peer()
        outcome, step, _, _, _ = converse(self, session, peer)
        self.assertIs(step.status, PeerStatus.SUCCESS)
        self.assertEqual(peer.msk, outcome.msk)

    def test_wrong_authenticator_response_is_refused(self):
        method = MsChapV2Peer(self.peer_settings("dave"), os.urandom)
        challenge = MsChapV2Packet(MsChapV2OpCode.CHALLENGE, 9, b"\x10" + bytes(16) + b"nac").build()
        response = MsChapV2Packet.parse(method.process(EapPacket.request(1, EapType.MSCHAPV2, challenge)))
        self.assertEqual((response.opcode, response.mschapv2_id), (MsChapV2OpCode.RESPONSE, 9))
        success = MsChapV2Packet(MsChapV2OpCode.SUCCESS, 9, b"S=" + b"0" * 40 + b" M=OK").build()
        answer = method.process(EapPacket.request(2, EapType.MSCHAPV2, success))
        self.assertEqual(answer, bytes((MsChapV2OpCode.FAILURE,)))
        self.assertFalse(method.may_succeed)
        self.assertIn("authenticator response", method.failure)


class PostureTests(PeerMixin, unittest.TestCase):
    def run_posture(self, rec, ev=E.COMPLIANT, *, tnc="pt-eap", fragment_size=1024, posture_fragment_size=None):
        imv = VerdictImv(rec, ev)
        core = TnccsCore(ImvManager([imv]))
        method = {"pt-eap": PtEap, "eap-tnc": EapTnc}[tnc]
        session = self.session(posture=lambda p: method(core, p, fragment_size=posture_fragment_size),
                               fragment_size=fragment_size)
        peer = self.make_peer(tnc=tnc, imcs=(ProductImc(),), fragment_size=fragment_size,
                              posture_fragment_size=posture_fragment_size)
        outcome, step, rounds, server_sizes, peer_sizes = converse(self, session, peer)
        self.assertEqual(core.connections, {})
        return outcome, step, peer, imv, (server_sizes, peer_sizes)

    def test_allowed_endpoint(self):
        outcome, step, peer, imv, _ = self.run_posture(A.ALLOW)
        self.assertEqual((outcome.status, step.status), (EapStatus.SUCCESS, PeerStatus.SUCCESS))
        self.assertEqual(outcome.decision.access, "allowed")
        self.assertEqual(peer.msk, outcome.msk)
        self.assertEqual(peer.posture.recommendation_label, "Access Allowed")
        self.assertEqual(peer.posture.assessment_label, "compliant")
        self.assertEqual(len(imv.received), 1)
        self.assertEqual((imv.peers[0].identity, imv.peers[0].auth_method), ("carol", "eap-ttls/md5"))

    def test_isolated_endpoint_succeeds(self):
        outcome, step, peer, _, _ = self.run_posture(A.ISOLATE, E.NONCOMPLIANT_MINOR)
        self.assertIs(step.status, PeerStatus.SUCCESS)
        self.assertEqual(outcome.decision.access, "isolate")
        self.assertEqual(peer.posture.recommendation_label, "Quarantined")

    def test_denied_endpoint_fails_with_the_posture_result(self):
        outcome, step, peer, _, _ = self.run_posture(A.NO_ACCESS, E.NONCOMPLIANT_MAJOR)
        self.assertEqual((outcome.status, step.status), (EapStatus.FAILURE, PeerStatus.FAILURE))
        self.assertEqual(peer.posture.recommendation_label, "Access Denied")
        self.assertTrue(peer.posture.completed)
        self.assertIsNone(peer.msk)

    def test_eap_tnc_carries_pb_tnc(self):
        outcome, step, peer, imv, _ = self.run_posture(A.ALLOW, tnc="eap-tnc")
        self.assertIs(step.status, PeerStatus.SUCCESS)
        self.assertEqual(outcome.decision.access, "allowed")
        self.assertEqual(peer.posture.recommendation_label, "Access Allowed")

    def test_peer_without_tnc_naks_and_is_refused(self):
        core = TnccsCore(ImvManager([VerdictImv()]))
        session = self.session(posture=lambda p: PtEap(core, p))
        outcome, step, _, _, _ = converse(self, session, self.make_peer(tnc="none"))
        self.assertEqual((outcome.status, step.status), (EapStatus.FAILURE, PeerStatus.FAILURE))
        self.assertIn("refused", outcome.reason)

    def test_fragments_of_150_bytes_both_ways(self):
        outcome, step, peer, imv, (server_sizes, peer_sizes) = self.run_posture(
            A.ALLOW, fragment_size=150, posture_fragment_size=40)
        self.assertIs(step.status, PeerStatus.SUCCESS)
        self.assertEqual(peer.msk, outcome.msk)
        self.assertEqual(len(imv.received), 1)
        # EAP header (5 bytes) + at most 150 bytes of type-data, each way
        self.assertLessEqual(max(server_sizes), 155)
        self.assertLessEqual(max(peer_sizes), 155)
        self.assertGreater(len(peer_sizes), 20)

    def test_pt_eap_peer_answers_the_close_with_an_acknowledgement(self):
        client = PbTncClient([ProductImc()], max_batch_size=EAP_TNC_LIMITS.max_batch_size,
                             max_message_size=EAP_TNC_LIMITS.max_message_size)
        method = PtEapPeer(self.peer_settings(tnc="pt-eap"), os.urandom, client)
        first = method.process(EapPacket.request(1, EapType.PT_EAP, b"\x81"))
        self.assertEqual(PbBatch.parse(first[1:]).batch_type, BatchType.CDATA)
        close = PbBatch(batch_type=BatchType.CLOSE, direction=1, messages=()).build()
        self.assertEqual(method.process(EapPacket.request(2, EapType.PT_EAP, b"\x01" + close)), b"\x01")
        self.assertTrue(method.finished)
        self.assertFalse(method.posture.completed)
        with self.assertRaises(Exception):
            method.process(EapPacket.request(3, EapType.PT_EAP, b"\x81"))


class RandomServerTests(PeerMixin, unittest.TestCase):
    """Whatever the server sends, the peer answers with a PeerStep."""

    def shared(self):
        if not hasattr(self, "_settings"):
            self._settings = self.peer_settings(tnc="pt-eap", imcs=(ProductImc(),))
        return self._settings

    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(st.binary(max_size=120), min_size=1, max_size=6))
    def test_random_packets(self, packets):
        peer = EapPeer(self.shared())
        for data in packets:
            step = peer.receive(data)
            self.assertIsInstance(step.status, PeerStatus)

    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.sampled_from((21, 21, 4, 26, 1, 2, 3, 254, 54)), st.binary(max_size=80)),
                    min_size=1, max_size=6))
    def test_random_requests_after_the_ttls_start(self, requests):
        peer = EapPeer(self.shared())
        peer.receive(EapPacket.request(1, EapType.TTLS, b"\x20").build())
        for identifier, (eap_type, data) in enumerate(requests, 2):
            step = peer.receive(EapPacket.request(identifier, eap_type, data).build())
            self.assertIsInstance(step.status, PeerStatus)

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.binary(max_size=200), st.booleans())
    def test_random_phase2_data_from_a_real_tunnel(self, data, as_eap):
        """A server whose phase 2 answer is random bytes (or a random
        EAP-Message AVP) inside a genuine TLS tunnel."""
        from nac.eap.avp import Avp

        payload = Avp(AvpCode.EAP_MESSAGE, data).build() if as_eap else data

        class RandomServer(TtlsServer):
            def _phase2(self, _data):
                return self._tunnel_send(payload)

        if not hasattr(self, "_ttls"):
            self._ttls = self.settings().ttls
        server = RandomServer(self._ttls, RADIUS_PEER)
        peer = EapPeer(self.shared())
        identifier, type_data = 1, server.initiate()
        for _ in range(20):
            step = peer.receive(EapPacket.request(identifier, EapType.TTLS, type_data).build())
            self.assertIsInstance(step.status, PeerStatus)
            if step.status is not PeerStatus.CONTINUE:
                break
            result = self.successResultOf(server.process(EapPacket.parse(step.response)))
            if result.result.value != "continue":
                break
            identifier, type_data = identifier + 1, result.type_data

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(st.binary(max_size=100), min_size=1, max_size=5))
    def test_random_pt_eap_requests(self, blobs):
        method = PtEapPeer(self.shared(), os.urandom)
        method.process(EapPacket.request(1, EapType.PT_EAP, b"\x81"))
        for blob in blobs:
            try:
                out = method.process(EapPacket.request(2, EapType.PT_EAP, blob))
            except Exception as exc:
                self.assertEqual(type(exc).__name__, "PeerError")
                break
            self.assertIsInstance(out, bytes)


class PasswordsNeverLoggedTests(PeerMixin, unittest.TestCase):
    def test_no_password_or_msk_in_the_peers_log(self):
        from twisted.logger import formatEvent, globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        msks = []
        for inner, password in (("md5", None), ("mschapv2", None), ("pap", None), ("pap", "WrongPass7")):
            peer = self.make_peer(inner=inner, password=password)
            converse(self, self.session(), peer)
            msks.append(peer.msk)
        text = "\n".join(formatEvent(e) + repr(e) for e in events if e.get("log_namespace") == "nac.eap.peer")
        self.assertIn("carol", text)
        for secret in (PASSWORDS["carol"], "WrongPass7"):
            self.assertNotIn(secret, text)
        for msk in filter(None, msks):
            self.assertNotIn(msk.hex(), text)
