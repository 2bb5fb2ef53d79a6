"""The posture methods inside EAP-TTLS: PT-EAP with nac's own PB-TNC client
and a real TNCS core with a small real IMV; EAP-TNC with the IF-TNCCS 1.1
batch wpa_supplicant's eapol_test sent to hostapd (the hostapd-tnccs11
vectors), in the inner sequence hostapd produced, fragmented at the
vectors' size too.  Allowed and isolated endpoints end in EAP-Success with
the decision, denied ones in EAP-Failure, as strongSwan's eap-tnc ends
them."""

from __future__ import annotations


from twisted.trial import unittest
from zope.interface import implementer

from nac.client.imc import IImc
from nac.eap.fragments import EAP_TNC, FragmentChannel
from nac.eap.outcome import EapStatus
from nac.eap.tnc import EapTnc, PtEap
from nac.ifimv import ActionRecommendation as A, ConnectionState, EvaluationResult as E
from nac.interfaces import IImv
from nac.pa import PaMessage
from nac.pa.ietf import ProductInformation
from nac.pb import BatchType, PbBatch
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvManager
from tests.test_eap_ttls import PkiMixin, converse
from tests.vectors import records as vector_records

IETF, OS = 0, 1


def records(name: str) -> list[dict]:
    return vector_records(f"hostapd-tnccs11/{name}")


@implementer(IImv)
class VerdictImv:
    """Recommends ``rec`` once the OS collector has spoken, or when solicited."""

    name = "verdict"
    subscriptions = ((IETF, OS),)

    def __init__(self, rec=A.ALLOW, ev=E.COMPLIANT):
        self.rec, self.ev = rec, ev
        self.states, self.received, self.peers = [], [], []

    def notify_connection_change(self, connection, state):
        self.states.append(state)
        if state is ConnectionState.CREATE:
            self.peers.append(connection.peer)

    def receive_message(self, connection, message):
        self.received.append(message)
        connection.provide_recommendation(self.rec, self.ev)

    def batch_ending(self, connection):
        pass

    def solicit_recommendation(self, connection):
        connection.provide_recommendation(self.rec, self.ev)


@implementer(IImv)
class AskingImv(VerdictImv):
    """Asks the endpoint's OS collector something (as the SWIMA IMV asks for
    an inventory) and decides only when solicited."""

    def receive_message(self, connection, message):
        self.received.append(message)
        connection.send_message(IETF, OS, PaMessage(7, (ProductInformation(0, 0, "asking"),)).build())


@implementer(IImc)
class ProductImc:
    """An OS collector that reports its product at the start of the handshake."""

    name = "OS"
    subscriptions = ((IETF, OS),)

    def __init__(self):
        self.states = []

    def notify_connection_change(self, connection, state):
        self.states.append(state)

    def begin_handshake(self, connection):
        body = PaMessage(1, (ProductInformation(vendor_id=0, product_id=0, name="Debian 12 x86_64"),)).build()
        connection.send_message(IETF, OS, body)

    def receive_message(self, connection, message):
        pass

    def batch_ending(self, connection):
        pass


class Tnccs11Peer:
    """EAP-TNC client end as wpa_supplicant's: the captured IF-TNCCS 1.1 batch,
    then an empty acknowledgement of the server's batch."""

    def __init__(self, first_batch: bytes, fragment_size: int = 65530):
        self.first = first_batch
        self.channel = FragmentChannel(EAP_TNC, fragment_size=fragment_size, max_message_size=1 << 20)
        self.received: list[bytes] = []

    def respond(self, eap_type: int, data: bytes) -> bytes:
        assert eap_type == 38, eap_type
        if data[0] & 0x20:
            return self.channel.send(self.first)
        received = self.channel.receive(data)
        if received.send is not None:  # an ACK or our next fragment
            return received.send
        self.received.append(received.message)
        return b"\x01"


class PtEapTests(PkiMixin, unittest.TestCase):
    def run_posture(self, rec, ev=E.COMPLIANT, *, tls_version="1.3", fragment_size=1024,
                    posture_fragment_size=None):
        imv = VerdictImv(rec, ev)
        core = TnccsCore(ImvManager([imv]))
        session = self.session(posture=lambda peer: PtEap(core, peer, fragment_size=posture_fragment_size),
                               fragment_size=fragment_size)
        # nac's own PT-EAP peer (nac.eap.peer.PtEapPeer) with its PB-TNC client
        peer = self.peer(tls_version=tls_version, tnc="pt-eap", imcs=(ProductImc(),), fragment_size=fragment_size)
        outcome, rounds = converse(self, session, peer)
        return outcome, peer, peer.peer.posture, imv, core

    def test_allowed_endpoint_succeeds_with_the_decision(self):
        outcome, peer, posture, imv, core = self.run_posture(A.ALLOW)
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual(peer.result, "success")
        self.assertEqual(outcome.decision.access, "allowed")
        self.assertEqual((outcome.msk, outcome.emsk), peer.keys())
        self.assertEqual(outcome.identity, "carol")
        # the IMV saw the collector's measurement, for the authenticated identity
        self.assertEqual(len(imv.received), 1)
        self.assertEqual((imv.peers[0].identity, imv.peers[0].auth_method, imv.peers[0].transport),
                         ("carol", "eap-ttls/md5", "radius"))
        self.assertEqual(imv.states[-1], ConnectionState.DELETE)
        self.assertEqual(core.connections, {})
        # the client got the RESULT and closed: its last PT-EAP message (code,
        # id, length, type, flags, then the batch) is a CLOSE batch
        self.assertEqual(posture.recommendation_label, "Access Allowed")
        self.assertEqual(PbBatch.parse(peer.inner_packets[-1][1][6:]).batch_type, BatchType.CLOSE)
        # inner: Identity, MD5, MD5, PT-EAP Start, CDATA, RESULT, CLOSE, then the outer Success
        self.assertEqual([(d, p[4]) for d, p in peer.inner_packets],
                         [("c2s", 1), ("s2c", 4), ("c2s", 4), ("s2c", 54), ("c2s", 54), ("s2c", 54),
                          ("c2s", 54)])

    def test_isolated_endpoint_succeeds_with_isolate(self):
        outcome, peer, posture, _, _ = self.run_posture(A.ISOLATE, E.NONCOMPLIANT_MINOR, tls_version="1.2")
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual(outcome.decision.access, "isolate")
        self.assertEqual(posture.recommendation_label, "Quarantined")

    def test_denied_endpoint_fails_with_the_decision(self):
        outcome, peer, posture, imv, core = self.run_posture(A.NO_ACCESS, E.NONCOMPLIANT_MAJOR)
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertEqual(peer.result, "failure")
        self.assertEqual(outcome.decision.access, "denied")
        self.assertIsNone(outcome.msk)
        self.assertEqual(posture.recommendation_label, "Access Denied")
        self.assertEqual(core.connections, {})

    def test_fragmented_posture_messages(self):
        outcome, peer, posture, imv, _ = self.run_posture(A.ALLOW, fragment_size=150, posture_fragment_size=40)
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        flags = [p[5] for d, p in peer.inner_packets if d == "s2c" and p[4] == 54]
        self.assertIn(0x41, flags)  # M-fragments of the RESULT batch, PT-EAP has no L flag
        self.assertEqual(len(imv.received), 1)

    def test_peer_without_tnc_is_refused(self):
        core = TnccsCore(ImvManager([VerdictImv()]))
        session = self.session(posture=lambda peer: PtEap(core, peer))
        outcome, _ = converse(self, session, self.peer())  # the peer Naks PT-EAP
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertIn("refused", outcome.reason)
        self.assertEqual(core.connections, {})

    def test_abort_releases_the_tnccs_connection(self):
        core = TnccsCore(ImvManager([VerdictImv()]))
        session = self.session(posture=lambda peer: PtEap(core, peer))
        peer = self.peer(tnc="pt-eap", imcs=(ProductImc(),))
        request = session.start()
        while not core.connections:
            request = self.successResultOf(session.receive(peer.respond(request))).packet
        session.abort("timeout")
        self.assertEqual(core.connections, {})
        out = self.successResultOf(session.receive(peer.respond(request)))
        self.assertEqual(out.status, EapStatus.DISCARD)


class EapTncTests(PkiMixin, unittest.TestCase):
    def client_batch(self) -> bytes:
        first = [r for r in records("hostapd-ttls-md5-tnc.jsonl") if r["dir"] == "c2s"][0]
        return first["text"].encode()

    def test_eapol_test_tnccs11_exchange_has_hostapds_sequence(self):
        imv = VerdictImv(A.ALLOW)
        core = TnccsCore(ImvManager([imv]))
        posture = Tnccs11Peer(self.client_batch())
        session = self.session(posture=lambda peer: EapTnc(core, peer), inner_methods=("md5",))
        peer = self.peer(tls_version="1.2", posture=posture)
        outcome, _ = converse(self, session, peer)
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual(outcome.decision.access, "allowed")
        ours = [(d, p[0], p[4], p[5:6]) for d, p in peer.inner_packets]
        captured = [(r["dir"], *bytes.fromhex(r["hex"])[0:1], bytes.fromhex(r["hex"])[4],
                     bytes.fromhex(r["hex"])[5:6]) for r in records("hostapd-ttls-md5-tnc.phase2-eap.jsonl")]
        # same packets in the same order with the same flags (MD5 value-size, TNC S/version)
        self.assertEqual(ours, captured)
        start = [p for d, p in peer.inner_packets if d == "s2c" and p[4] == 38][0]
        self.assertEqual(start[2:], bytes.fromhex("00062621"))
        # our IF-TNCCS 1.1 recommendation batch, with the standard recipient
        (batch,) = posture.received
        self.assertIn(b'Recipient="TNCC"', batch)
        self.assertIn(b'<TNCCS-Recommendation type="allow">', batch)

    def test_an_empty_acknowledgement_before_the_decision_gets_the_recommendation(self):
        """strongSwan's client answers a batch its collectors cannot serve
        with an empty EAP-TNC response (02 id 00 06 26 01): the TNCS decides
        then and sends the recommendation in the next batch."""
        imv = AskingImv(A.ISOLATE, E.NONCOMPLIANT_MINOR)
        core = TnccsCore(ImvManager([imv]))
        # the first batch of eapol_test with strongSwan's OS and Scanner IMCs
        first = [r for r in vector_records("strongswan-radius/r1-eapol-imcs-allowed.jsonl")
                 if r["layer"] == "tnccs-1.1"][0]
        posture = Tnccs11Peer(first["text"].encode())
        session = self.session(posture=lambda peer: EapTnc(core, peer), inner_methods=("md5",))
        peer = self.peer(tls_version="1.2", posture=posture)
        outcome, _ = converse(self, session, peer)
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual(outcome.decision.access, "isolate")
        acks = [p for d, p in peer.inner_packets if d == "c2s" and p[4] == 38 and len(p) == 6]
        self.assertEqual([p[2:] for p in acks], [bytes.fromhex("00062601")] * 2)
        asked, decided = posture.received
        self.assertIn(b'BatchId="2"', asked)
        self.assertIn(b"<IMC-IMV-Message>", asked)
        self.assertNotIn(b"TNCCS-Recommendation", asked)
        # the empty turn took no BatchId: the client numbers only what it sends
        self.assertIn(b'BatchId="3"', decided)
        self.assertIn(b'<TNCCS-Recommendation type="isolate">', decided)
        self.assertEqual(core.connections, {})

    def test_an_empty_message_opening_the_exchange_fails(self):
        core = TnccsCore(ImvManager([VerdictImv()]))
        posture = Tnccs11Peer(b"")
        session = self.session(posture=lambda peer: EapTnc(core, peer))
        outcome, _ = converse(self, session, self.peer(posture=posture))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertIsNone(outcome.decision)
        self.assertEqual(core.connections, {})

    def test_tnccs11_denied_ends_in_failure(self):
        core = TnccsCore(ImvManager([VerdictImv(A.NO_ACCESS, E.NONCOMPLIANT_MAJOR)]))
        posture = Tnccs11Peer(self.client_batch())
        session = self.session(posture=lambda peer: EapTnc(core, peer))
        outcome, _ = converse(self, session, self.peer(posture=posture))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertEqual(outcome.decision.access, "denied")
        self.assertIn(b'type="none"', posture.received[0])

    def test_frag150_exchange(self):
        """fragment_size=150 on both ends as in the capture: the client's batch
        arrives in L/M fragments, ours leaves in hostapd's fragment layout."""
        core = TnccsCore(ImvManager([VerdictImv(A.ALLOW)]))
        posture = Tnccs11Peer(self.client_batch(), fragment_size=150)
        # hostapd: inner TNC fragments of fragment_size - 98 type-data bytes
        session = self.session(posture=lambda peer: EapTnc(core, peer, fragment_size=150 - 98),
                               fragment_size=150)
        peer = self.peer(tls_version="1.2", posture=posture, fragment_size=150)
        outcome, _ = converse(self, session, peer)
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        ours = [(d, p[5]) for d, p in peer.inner_packets if p[4] == 38]
        captured = [(r["dir"], bytes.fromhex(r["hex"])[5])
                    for r in records("hostapd-ttls-md5-tnc-frag150.phase2-eap.jsonl")
                    if bytes.fromhex(r["hex"])[4] == 38]
        # the client half is identical; our batch differs in length, so compare the pattern
        self.assertEqual(ours[:7], captured[:7])
        server = [f for d, f in ours[6:] if d == "s2c"]
        self.assertEqual((server[0], set(server[1:-1]), server[-1]), (0xC1, {0x41}, 0x01))
        self.assertEqual({f for d, f in ours[6:] if d == "c2s"}, {0x01})
        self.assertEqual([d for d, f in ours[6:]], ["s2c", "c2s"] * len(server))
        sizes = [len(p) for d, p in peer.inner_packets if d == "s2c" and p[4] == 38]
        self.assertLessEqual(max(sizes), 5 + 52)

    def test_hostapd_fragment_layout_is_reproduced_byte_for_byte(self):
        """hostapd's own batch through our fragmenter gives hostapd's fragments."""
        frames = [bytes.fromhex(r["hex"]) for r in records("hostapd-ttls-md5-tnc-frag150.phase2-eap.jsonl")]
        tnc = [(f[0], f[5:]) for f in frames if f[4] == 38]
        server_batch = [r for r in records("hostapd-ttls-md5-tnc.jsonl") if r["dir"] == "s2c"][0]["text"]
        server_frags = [td for code, td in tnc if code == 1 and len(td) > 1]
        channel = FragmentChannel(EAP_TNC, fragment_size=52, max_message_size=65535)
        ours = [channel.send(server_batch.encode())]
        while channel.sending:
            ours.append(channel.receive(b"\x01").send)
        self.assertEqual(ours, server_frags)
        # and the client's fragments reassemble to its unfragmented batch, with ACKs as hostapd's
        channel = FragmentChannel(EAP_TNC, fragment_size=52, max_message_size=65535)
        client_frags = [td for code, td in tnc if code == 2 and len(td) > 1]
        replies = [channel.receive(td) for td in client_frags]
        self.assertEqual([r.send for r in replies[:-1]], [b"\x01", b"\x01"])
        self.assertEqual(replies[-1].message, self.client_batch())
