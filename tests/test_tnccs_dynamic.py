"""Dynamic TNCCS protocol detection (TCG IF-TNCCS TLV Binding 2.0 §3.5, as
strongSwan's tnccs-dynamic): the first client batch decides between PB-TNC
and IF-TNCCS 1.1, real batches of both go through the one TnccsCore."""

from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nac.ifimv import ActionRecommendation as A, ConnectionState, EvaluationResult as E
from nac.interfaces import ITnccsConnection, ITnccsCore
from nac.pb.batch import BatchType, Direction, PbBatch
from nac.pb.messages import AccessRecommendation, PbAccessRecommendation, PbLanguagePreference
from nac.tnccs.assessment import PeerInfo
from nac.tnccs.core import TnccsCore
from nac.tnccs.dynamic import DynamicTnccsConnection, TnccsProtocol, detect_protocol
from nac.tnccs.imv_manager import ImvManager
from nac.tnccs.pb_server import PbTncServerConnection
from nac.tnccs.tnccs11 import (
    RecommendationType,
    Recipient,
    TnccsBatch,
    TnccsPreferredLanguage,
    TnccsRecommendation,
    Tnccs11ServerConnection,
)
from tests.posture import PT_EAP, VECTORS, CoreHarness, ScriptedImv
from tests.vectors import records

EAPOL_TEST_FIRST = VECTORS / "hostapd-tnccs11" / "hostapd-ttls-md5-tnc.jsonl"
PT_TLS_CLIENT = VECTORS / "strongswan-pt-tls" / "carol-sasl-open-ports-denied.jsonl"


def allowing_imv() -> ScriptedImv:
    """An IMV that allows whoever it is asked about (solicited: it has nothing to check)."""
    return ScriptedImv("allow", [(0, 1)], on_solicit=lambda c: c.provide_recommendation(A.ALLOW, E.COMPLIANT))


def first_record(path: Path, layer: str) -> bytes:
    for rec in records(str(path.relative_to(VECTORS))):
        if rec["dir"] == "c2s" and rec["layer"] == layer:
            return rec["text"].encode() if "text" in rec else bytes.fromhex(rec["hex"])
    raise AssertionError(f"no client {layer} record in {path}")


class DetectionTests(unittest.TestCase):
    def test_first_byte_decides(self):
        cases = {
            bytes.fromhex("0200000100000008"): TnccsProtocol.TNCCS_2_0,
            b"\x02": TnccsProtocol.TNCCS_2_0,
            b'<?xml version="1.0"?>': TnccsProtocol.TNCCS_1_1,
            b"<TNCCS-Batch": TnccsProtocol.TNCCS_1_1,
            b"\r\n <TNCCS-Batch": TnccsProtocol.TNCCS_1_1,
            b"\xef\xbb\xbf<?xml": TnccsProtocol.TNCCS_1_1,
            b"\x00\x07": TnccsProtocol.SOH,
            b"": TnccsProtocol.UNKNOWN,
            b"\x01\x00\x00\x00": TnccsProtocol.UNKNOWN,
            b"GET / HTTP/1.1": TnccsProtocol.UNKNOWN,
        }
        for data, protocol in cases.items():
            self.assertEqual(detect_protocol(data), protocol, data)


class Harness(CoreHarness):
    """A "dynamic" connection (the TNCCS protocol picked by the first batch)
    as RADIUS opens it; the tests parse the answers themselves."""

    transport = "radius"
    protocol = "dynamic"

    def __init__(self, testcase, imvs=()):
        super().__init__(testcase, list(imvs), PT_EAP)
        verifyObject(ITnccsCore, self.core)

    def parse(self, batch: bytes) -> bytes:
        return batch


class DynamicConnectionTests(unittest.TestCase):
    def test_eapol_test_first_batch_is_answered_in_tnccs_1_1(self):
        h = Harness(self, [allowing_imv()])
        self.assertIsInstance(h.conn, DynamicTnccsConnection)
        verifyObject(ITnccsConnection, h.conn)
        self.assertEqual((h.conn.protocol, h.conn.decision, h.conn.finished), (None, None, False))
        # no protocol yet: an empty message cannot be an acknowledgement
        self.assertIsNone(h.conn.receive_acknowledgement())

        out = h.send(first_record(EAPOL_TEST_FIRST, "tnccs-1.1"))
        self.assertEqual(h.conn.protocol, TnccsProtocol.TNCCS_1_1)
        self.assertIsInstance(h.conn.delegate, Tnccs11ServerConnection)
        self.assertEqual(h.conn.delegate.connection_id, h.conn.connection_id)
        (batch,) = [TnccsBatch.parse(b) for b in out.batches]
        self.assertEqual((batch.batch_id, batch.recipient, batch.messages),
                         (2, Recipient.TNCC, (TnccsRecommendation(RecommendationType.ALLOW),)))
        self.assertEqual((out.decision.access, out.close), ("allowed", True))
        self.assertEqual(h.conn.decision, out.decision)
        self.assertTrue(h.conn.finished)
        self.assertNotIn(h.conn.connection_id, h.core.connections)

    def test_whitespace_before_the_xml_declaration(self):
        h = Harness(self, [])
        batch = TnccsBatch(1, Recipient.TNCS, (TnccsPreferredLanguage("en"),)).build()
        out = h.send(b"\n  " + batch)
        self.assertEqual(h.conn.protocol, TnccsProtocol.TNCCS_1_1)
        self.assertEqual(TnccsBatch.parse(out.batches[0]).messages,
                         (TnccsRecommendation(RecommendationType.NONE),))

    def test_strongswan_client_first_batch_is_answered_in_pb_tnc(self):
        imv = allowing_imv()
        h = Harness(self, [imv])
        out = h.send(first_record(PT_TLS_CLIENT, "pb-tnc"))
        self.assertEqual(h.conn.protocol, TnccsProtocol.TNCCS_2_0)
        self.assertIsInstance(h.conn.delegate, PbTncServerConnection)
        # the IMV stays quiet: PB-TNC hands the turn back with an empty SDATA
        (batch,) = [PbBatch.parse(b) for b in out.batches]
        self.assertEqual((batch.batch_type, batch.messages), (BatchType.SDATA, ()))
        out = h.send(PbBatch(BatchType.CDATA, Direction.TO_SERVER).build())
        (batch,) = [PbBatch.parse(b) for b in out.batches]
        self.assertEqual((batch.batch_type, batch.direction), (BatchType.RESULT, Direction.TO_CLIENT))
        rec = [m for m in batch.messages if isinstance(m, PbAccessRecommendation)]
        self.assertEqual(rec[0].recommendation, AccessRecommendation.ALLOWED)
        self.assertEqual(h.conn.decision.access, "allowed")
        self.assertFalse(h.conn.finished)  # PB-TNC ends with the client's CLOSE
        out = h.send(PbBatch(BatchType.CLOSE, Direction.TO_SERVER).build())
        self.assertTrue(out.close)
        self.assertTrue(h.conn.finished)
        self.assertEqual(imv.states[-1], ConnectionState.DELETE)

    def test_built_pb_tnc_batch(self):
        h = Harness(self, [])
        out = h.send(PbBatch(BatchType.CDATA, Direction.TO_SERVER, (PbLanguagePreference(language="en"),)).build())
        self.assertEqual(h.conn.protocol, TnccsProtocol.TNCCS_2_0)
        self.assertEqual(PbBatch.parse(out.batches[0]).batch_type, BatchType.RESULT)

    def test_later_batches_keep_the_first_choice(self):
        h = Harness(self, [])
        h.send(PbBatch(BatchType.CDATA, Direction.TO_SERVER, (PbLanguagePreference(language="en"),)).build())
        # an XML batch now is a malformed PB-TNC batch, answered in PB-TNC
        out = h.send(TnccsBatch(1, Recipient.TNCS).build())
        (batch,) = [PbBatch.parse(b) for b in out.batches]
        self.assertEqual(batch.batch_type, BatchType.CLOSE)
        self.assertTrue(out.close)

    def test_unsupported_protocols_close_without_reply(self):
        for data in (b"\x00\x01soh", b"\x7fELF", b""):
            h = Harness(self, [])
            out = h.send(data)
            self.assertEqual((out.batches, out.close, out.decision), ([], True, None))
            self.assertTrue(h.conn.finished)
            self.assertIsNone(h.conn.delegate)
            self.assertNotIn(h.conn.connection_id, h.core.connections)
            # nothing more is processed
            self.assertEqual(h.send(TnccsBatch(1, Recipient.TNCS).build()).batches, [])

    def test_abort_before_and_after_detection(self):
        h = Harness(self, [])
        self.assertIn(h.conn.connection_id, h.core.connections)
        h.conn.abort("EAP conversation timed out")
        self.assertTrue(h.conn.finished)
        self.assertNotIn(h.conn.connection_id, h.core.connections)

        imv = allowing_imv()
        h = Harness(self, [imv])
        h.send(PbBatch(BatchType.CDATA, Direction.TO_SERVER).build())
        h.conn.abort("peer gone")
        self.assertTrue(h.conn.finished)
        self.assertEqual(imv.states[-1], ConnectionState.DELETE)


class OpenConnectionTests(unittest.TestCase):
    def test_protocols(self):
        core = TnccsCore(ImvManager([]))
        peer = PeerInfo("radius", "127.0.0.1")
        kinds = {name: type(core.open_connection(peer, protocol=name))
                 for name in ("pb-tnc", "tnccs-1.1", "dynamic")}
        self.assertEqual(kinds, {"pb-tnc": PbTncServerConnection, "tnccs-1.1": Tnccs11ServerConnection,
                                 "dynamic": DynamicTnccsConnection})
        self.assertIsInstance(core.open_connection(peer), PbTncServerConnection)
        self.assertEqual(len(core.connections), 4)
        self.assertRaises(ValueError, core.open_connection, peer, protocol="soh")
        self.assertEqual(len(core.connections), 4)
