"""IF-M segments from endpoints through the TNCS core and the OS IMV,
against ``[nac] segment_memory`` (all connections), ``segment_memory_per_connection``
and ``segment_timeout``: what does not fit, or comes too late, is answered
with a PA-TNC Error attribute (Invalid Parameter, naming the base attribute
as 0xffffffff + its ID) in the next batch and logged once per peer; an
ended connection gives its bytes back.  Budgets are small here, the sizes
chosen so that the arithmetic is plain."""

from __future__ import annotations

import struct

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from imvs.os import OsImv
from nac import log as nac_log
from nac.pa import PaMessage
from nac.pa.ietf import PaTncErrorAttribute
from nac.pa.tcg import NextSegment, SegmentEnvelope
from nac.pb.batch import BatchType, Direction, PbBatch
from nac.pb.messages import PbPa
from nac.tnccs.assessment import PeerInfo, TransportLimits
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvManager

# an Installed Packages attribute (IETF 0x07) of 100,012 bytes, cut by hand
VALUE = b"\x00\x00\x00\x00" + bytes(99_996)
DATA = struct.pack(">III", 0x00000000, 7, 12 + len(VALUE)) + VALUE
LIMITS = TransportLimits(max_batch_size=1024 * 1024, max_message_size=1024 * 1024 - 32)


def envelope(base_id: int, start: int, end: int) -> SegmentEnvelope:
    return SegmentEnvelope(base_id, DATA[start:end], more=end < len(DATA), start=start == 0)


class SegmentBudgetTests(unittest.TestCase):
    def setUp(self):
        self.now = 5000.0
        manager = ImvManager()
        manager.add(OsImv())
        self.core = TnccsCore(manager, segment_memory=100_000, segment_memory_per_connection=64_000,
                              segment_timeout=30.0, clock=lambda: self.now)
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def connect(self, address: str):
        return self.core.open_connection(PeerInfo("pt-tls", address, identity="carol"), LIMITS)

    def send(self, conn, *envelopes: SegmentEnvelope) -> list:
        """One CDATA batch with a PA-TNC message of ``envelopes`` for the OS
        IMV; the segmentation attributes the IMV answered with."""
        body = PaMessage(7, envelopes).build()
        batch = PbBatch(BatchType.CDATA, Direction.TO_SERVER,
                        (PbPa(pa_vendor=0, pa_subtype=1, collector_id=1, validator_id=0xFFFF, body=body),)).build()
        outcome = self.successResultOf(conn.receive_batch(batch))
        answers = []
        for reply in outcome.batches:
            for message in PbBatch.parse(reply).messages:
                if isinstance(message, PbPa):
                    answers += [a for a in PaMessage.parse(message.body).attributes
                                if isinstance(a, (PaTncErrorAttribute, NextSegment))]
        return answers

    def refused(self, answers: list, base_id: int) -> None:
        errors = [a for a in answers if isinstance(a, PaTncErrorAttribute)]
        self.assertEqual([(e.error_code, e.message_header) for e in errors],
                         [(1, b"\xff\xff\xff\xff" + base_id.to_bytes(4, "big"))], answers)

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events if "segment" in (formatEvent(e) or "")]

    def test_per_connection_and_process_budgets(self):
        a, b, c = self.connect("192.0.2.1"), self.connect("192.0.2.2"), self.connect("192.0.2.3")
        self.assertIn(NextSegment(1), self.send(a, envelope(1, 0, 40_000)))
        self.assertIn(NextSegment(1), self.send(b, envelope(1, 0, 40_000)))
        # 40,000 + 40,000 + 40,000 > 100,000 for the process
        self.refused(self.send(c, envelope(1, 0, 40_000)), 1)
        self.assertIn("exceeds the 100000-byte [nac] segment_memory", self.lines()[-1])
        self.assertEqual(self.core.reassembly.held, 80_000)
        # 40,000 + 30,000 > 64,000 for connection a: its attribute is dropped
        self.refused(self.send(a, envelope(1, 40_000, 70_000)), 1)
        self.assertIn("exceeds the 64000-byte [nac] segment_memory_per_connection", self.lines()[-1])
        self.assertEqual(self.core.reassembly.held, 40_000)
        self.assertIn(NextSegment(1), self.send(c, envelope(1, 0, 40_000)))
        # connection b ends: its 40,000 bytes are free again
        b.abort("test")
        self.assertEqual(self.core.reassembly.held, 40_000)
        d = self.connect("192.0.2.4")
        self.assertIn(NextSegment(5), self.send(d, envelope(5, 0, 40_000)))
        for conn in (a, c, d):
            conn.abort("test")
        self.assertEqual(self.core.reassembly.held, 0)

    def test_a_segmented_attribute_too_slow_is_dropped(self):
        a = self.connect("192.0.2.1")
        self.assertIn(NextSegment(1), self.send(a, envelope(1, 0, 30_000)))
        self.now += 29.0
        self.assertIn(NextSegment(1), self.send(a, envelope(1, 30_000, 60_000)))
        self.now += 1.0
        self.refused(self.send(a, envelope(1, 60_000, 90_000)), 1)
        self.assertIn("was not complete within 30 s (60000 of 100012 bytes received)", self.lines()[-1])
        self.assertEqual(self.core.reassembly.held, 0)

    def test_refusals_are_logged_once_per_peer(self):
        a = self.connect("192.0.2.1")
        for first in range(1, 51, 10):  # five batches of ten segments too large for the connection
            answers = self.send(a, *(envelope(base_id, 0, 64_001) for base_id in range(first, first + 10)))
            self.assertEqual(sum(isinstance(x, PaTncErrorAttribute) for x in answers), 10)
        nac_log.repeats.flush(everything=True)
        self.assertEqual(len(self.lines()), 2, self.lines())
        self.assertIn("invalid IF-M segment: … 49 more like this from 192.0.2.1", self.lines()[-1])
