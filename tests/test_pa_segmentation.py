"""IF-M Segmentation: segment sizes as strongSwan computes them, a large
attribute split into Segment Envelopes and reassembled (also through the
wire), Next Segment / Cancel, and every way a peer can break the protocol
raising only PaTncError."""

from __future__ import annotations

import struct

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from nac.pa import PaMessage, PaTncError, PaTncErrorCode, UnknownAttribute
from nac.pa.ietf import InstalledPackages, NumericVersion
from nac.pa.segmentation import (
    ReassemblyBudget,
    Reassembler,
    Segmenter,
    contract_response,
    max_segment_size_for_batch,
    max_segment_size_for_message,
    needs_segmentation,
)
from nac.pa.tcg import (
    NO_LIMIT,
    MaxAttributeSizeRequest,
    MaxAttributeSizeResponse,
    NextSegment,
    SegmentEnvelope,
)
from tests.vectors import records


def captured_installed_packages() -> bytes:
    """The 19,121-byte Installed Packages attribute strongSwan's OS IMC sent."""
    for record in records("strongswan-pt-tls/carol-sasl-open-ports-denied.jsonl"):
        if record["layer"] != "pb-tnc":
            continue
        batch, pos = bytes.fromhex(record["hex"]), 8
        while pos < len(batch):
            (length,) = struct.unpack_from(">I", batch, pos + 8)
            body = batch[pos + 24:pos + length]  # PB message header 12 + PB-PA header 12
            for attribute in PaMessage.parse(body).attributes if batch[pos + 4:pos + 8] == b"\0\0\0\x01" else ():
                if isinstance(attribute, InstalledPackages):
                    return attribute.build()
            pos += length
    raise AssertionError("no Installed Packages attribute in the capture")


def packages(count: int) -> InstalledPackages:
    return InstalledPackages(tuple((f"package-{i}", f"1.{i}-1") for i in range(count)))


class SegmentSizeTests(unittest.TestCase):
    def test_segment_sizes_follow_strongswan(self):
        self.assertEqual(max_segment_size_for_batch(32754), 32698)
        self.assertEqual(max_segment_size_for_batch(65522), 65466)  # strongSwan's default batch size
        self.assertEqual(max_segment_size_for_message(45000), 44976)  # IF-TNCCS 1.1, seen in the capture
        self.assertEqual(max_segment_size_for_message(2097104), 2097080)  # PT-TLS, seen in the capture

    def test_when_to_segment(self):
        self.assertFalse(needs_segmentation(10**9, NO_LIMIT))
        self.assertFalse(needs_segmentation(12 + 104, 100))  # value fits where an envelope would
        self.assertTrue(needs_segmentation(12 + 105, 100))
        self.assertFalse(needs_segmentation(len(captured_installed_packages()), 32698))
        self.assertTrue(needs_segmentation(len(captured_installed_packages()), 8192 - 56))

    def test_contract_response_keeps_segments_within_our_messages(self):
        # strongSwan's OS IMV over PT-TLS asks for 2 MB segments; over PT-EAP's
        # 32,722-byte PA-TNC messages only 32,698 fit
        answer = contract_response(MaxAttributeSizeRequest(100_000_000, 2097080), 32722)
        self.assertEqual(answer, MaxAttributeSizeResponse(100_000_000, 32698))
        self.assertEqual(answer.build(), MaxAttributeSizeResponse(100_000_000, 32698, noskip=False).build())
        # smaller segments and "no segmentation" are accepted as asked
        self.assertEqual(contract_response(MaxAttributeSizeRequest(65536, 1000), 32722),
                         MaxAttributeSizeResponse(65536, 1000))
        self.assertEqual(contract_response(MaxAttributeSizeRequest(NO_LIMIT, NO_LIMIT), 32722),
                         MaxAttributeSizeResponse(NO_LIMIT, NO_LIMIT))


class SegmenterTests(unittest.TestCase):
    def test_captured_packages_split_and_reassembled(self):
        data = captured_installed_packages()
        size = max_segment_size_for_batch(8192)
        envelopes = list(Segmenter(data, base_attribute_id=1, max_segment_size=size))
        self.assertEqual([len(e.segment) for e in envelopes], [size, size, len(data) - 2 * size])
        self.assertEqual([(e.start, e.more) for e in envelopes], [(True, True), (False, True), (False, False)])
        self.assertEqual(envelopes[0].segment[:12], data[:12])  # the base attribute header, whole length
        self.assertEqual(b"".join(e.segment for e in envelopes), data)
        reassembler = Reassembler()
        self.assertEqual([reassembler.add(e) for e in envelopes[:-1]], [None, None])
        self.assertEqual(reassembler.add(envelopes[-1]).build(), data)
        self.assertEqual(reassembler.pending, ())

    def test_segments_fit_a_batch_of_the_announced_size(self):
        batch_limit = 32754
        attribute = packages(4000)
        for envelope in Segmenter(attribute, base_attribute_id=9, max_segment_size=max_segment_size_for_batch(
                batch_limit)):
            pa_message = PaMessage(1, (envelope,)).build()
            self.assertLessEqual(8 + 12 + 12 + len(pa_message), batch_limit)
        first = next(iter(Segmenter(attribute, base_attribute_id=9, max_segment_size=32698)))
        self.assertEqual(8 + 12 + 12 + len(PaMessage(1, (first,)).build()), batch_limit)

    def test_envelopes_through_the_wire(self):
        attribute = packages(300)
        reassembler = Reassembler()
        segmenter = Segmenter(attribute, base_attribute_id=0xABCDEF, max_segment_size=1000)
        envelope, result = segmenter.first_segment(), None
        while result is None:
            (received,) = PaMessage.parse(PaMessage(2, (envelope,)).build()).attributes
            self.assertEqual(received, envelope)
            result = reassembler.add(received)
            if result is None:
                (request,) = PaMessage.parse(PaMessage(3, (NextSegment(0xABCDEF),)).build()).attributes
                envelope = segmenter.on_next_segment(request)
        self.assertEqual(result, attribute)
        self.assertTrue(segmenter.done)
        self.assertIsNone(segmenter.on_next_segment(NextSegment(0xABCDEF)))

    def test_first_segment_sized_to_the_room_left(self):
        segmenter = Segmenter(packages(100), base_attribute_id=2, max_segment_size=1000)
        first = segmenter.first_segment(space=300)
        self.assertEqual(len(first.build()), 300)
        self.assertEqual(len(segmenter.next_segment().segment), 1000)
        with self.assertRaises(ValueError):
            Segmenter(packages(100), base_attribute_id=2, max_segment_size=1000).first_segment(space=27)

    def test_cancel_stops_the_sender(self):
        segmenter = Segmenter(packages(100), base_attribute_id=3, max_segment_size=100)
        segmenter.first_segment()
        self.assertIsNone(segmenter.on_next_segment(NextSegment(3, cancel=True)))
        self.assertTrue(segmenter.cancelled and segmenter.done)
        self.assertIsNone(segmenter.next_segment())
        with self.assertRaises(ValueError):
            segmenter.on_next_segment(NextSegment(4))

    def test_attributes_that_need_no_segmentation_are_refused(self):
        with self.assertRaises(ValueError):
            Segmenter(NumericVersion(12), base_attribute_id=1, max_segment_size=28)
        with self.assertRaises(ValueError):
            Segmenter(packages(10), base_attribute_id=1, max_segment_size=11)  # header never split
        with self.assertRaises(ValueError):
            Segmenter(packages(10), base_attribute_id=1 << 24, max_segment_size=20)

    def test_next_segment_cancel_flag_as_strongswan_sends_it(self):
        self.assertEqual(NextSegment(5, cancel=True).encode_value(), b"\x01\x00\x00\x05")
        self.assertEqual(NextSegment(5).encode_value(), b"\x00\x00\x00\x05")
        for flags in (0x01, 0x80):
            (parsed,) = PaMessage.parse(PaMessage(1, (NextSegment(5),)).build()[:20] + bytes((flags,)) +
                                        b"\x00\x00\x05").attributes
            self.assertTrue(parsed.cancel)

    def test_segment_envelope_flags(self):
        self.assertEqual(SegmentEnvelope(7, b"x", more=True, start=True).encode_value(), b"\xc0\x00\x00\x07x")
        self.assertEqual(SegmentEnvelope(7, b"x").encode_value(), b"\x00\x00\x00\x07x")


class ReassemblerErrorTests(unittest.TestCase):
    def setUp(self):
        self.data = packages(50).build()
        self.envelopes = list(Segmenter(self.data, base_attribute_id=4, max_segment_size=200))

    def refuse(self, reassembler: Reassembler, envelope: SegmentEnvelope) -> PaTncError:
        with self.assertRaises(PaTncError) as cm:
            reassembler.add(envelope)
        err = cm.exception
        self.assertEqual(err.code, PaTncErrorCode.INVALID_PARAMETER)
        # strongSwan's convention: 0xffffffff + Base Attribute ID stands for the message header
        self.assertEqual(err.message_header, b"\xff\xff\xff\xff" + envelope.base_attribute_id.to_bytes(4, "big"))
        return err

    def test_segment_for_an_unknown_base_attribute(self):
        self.assertEqual(self.refuse(Reassembler(), self.envelopes[1]).offset, 1)

    def test_reused_base_attribute_id_keeps_the_first(self):
        reassembler = Reassembler()
        reassembler.add(self.envelopes[0])
        self.refuse(reassembler, self.envelopes[0])
        self.assertEqual(reassembler.pending, (4,))
        for envelope in self.envelopes[1:-1]:
            reassembler.add(envelope)
        self.assertEqual(reassembler.add(self.envelopes[-1]).build(), self.data)

    def test_too_many_base_attributes_at_once(self):
        reassembler = Reassembler(max_pending=2)
        for base_id in (1, 2):
            reassembler.add(SegmentEnvelope(base_id, self.envelopes[0].segment, more=True, start=True))
        self.refuse(reassembler, SegmentEnvelope(3, self.envelopes[0].segment, more=True, start=True))
        self.assertEqual(reassembler.pending, (1, 2))
        self.assertEqual(reassembler.cancel(1), NextSegment(1, cancel=True))
        self.assertEqual(reassembler.pending, (2,))

    def test_base_attribute_larger_than_allowed(self):
        err = self.refuse(Reassembler(max_attribute_size=len(self.data) - 1), self.envelopes[0])
        self.assertEqual(err.offset, 8)
        self.assertIsNone(Reassembler(max_attribute_size=len(self.data)).add(self.envelopes[0]))

    def test_first_segment_without_a_whole_header(self):
        self.assertEqual(self.refuse(Reassembler(), SegmentEnvelope(4, b"\0" * 11, more=True, start=True)).offset, 0)
        short = struct.pack(">III", 0, 7, 11)
        self.assertEqual(self.refuse(Reassembler(), SegmentEnvelope(4, short, more=True, start=True)).offset, 8)

    def test_segments_beyond_the_announced_length(self):
        reassembler = Reassembler()
        for envelope in self.envelopes[:-1]:
            reassembler.add(envelope)
        last = self.envelopes[-1]
        err = self.refuse(reassembler, SegmentEnvelope(4, last.segment + b"x", more=False))
        self.assertEqual(err.offset, len(self.data))
        self.assertEqual(reassembler.pending, ())

    def test_last_segment_too_early(self):
        reassembler = Reassembler()
        reassembler.add(self.envelopes[0])
        self.assertEqual(self.refuse(reassembler, SegmentEnvelope(4, self.envelopes[1].segment)).offset, 8)

    def test_more_flag_after_the_last_byte(self):
        reassembler = Reassembler()
        for envelope in self.envelopes[:-1]:
            reassembler.add(envelope)
        self.refuse(reassembler, SegmentEnvelope(4, self.envelopes[-1].segment, more=True))

    def test_malformed_base_attribute_names_its_offset(self):
        value = b"\0\0\0\x02" + b"\x01a\x011" + b"\x05b"  # 2nd package name overruns
        data = struct.pack(">III", 0, 7, 12 + len(value)) + value
        reassembler = Reassembler()
        reassembler.add(SegmentEnvelope(4, data[:14], more=True, start=True))
        err = self.refuse(reassembler, SegmentEnvelope(4, data[14:]))
        self.assertEqual(err.offset, 12 + 8)
        self.assertEqual(err.attribute_header, data[:12])

    def test_unknown_base_attribute_type_is_returned_raw(self):
        data = struct.pack(">III", 0x80 << 24 | 0x00ABCD, 1, 12 + 300) + b"z" * 300
        reassembler = Reassembler()
        envelopes = list(Segmenter(data, base_attribute_id=8, max_segment_size=100))
        results = [reassembler.add(e) for e in envelopes]
        self.assertEqual(results[-1], UnknownAttribute(0x00ABCD, 1, b"z" * 300, noskip=True))


class ReassemblyBudgetTests(unittest.TestCase):
    """What unfinished attributes hold: per connection, within the process's
    budget, and for a limited time; given back when they complete, fail, are
    cancelled or dropped, and when the connection ends."""

    def setUp(self):
        self.now = 1000.0
        self.process = ReassemblyBudget(100_000, name="[nac] segment_memory", timeout=60.0, clock=lambda: self.now)
        self.value = bytes(range(256)) * 300  # 76,800 bytes
        self.data = struct.pack(">III", 0x00ABCD, 3, 12 + len(self.value)) + self.value

    def envelope(self, base_id: int, start: int, end: int) -> SegmentEnvelope:
        return SegmentEnvelope(base_id, self.data[start:end], more=end < len(self.data), start=start == 0)

    def connection(self, limit: int = 64_000) -> Reassembler:
        return Reassembler(max_attribute_size=1_000_000,
                           budget=self.process.child(limit, name="[nac] segment_memory_per_connection"))

    def refused(self, reassembler: Reassembler, envelope: SegmentEnvelope) -> str:
        with self.assertRaises(PaTncError) as cm:
            reassembler.add(envelope)
        err = cm.exception
        self.assertEqual((err.code, err.message_header),
                         (PaTncErrorCode.INVALID_PARAMETER, b"\xff" * 4 + envelope.base_attribute_id.to_bytes(4, "big")))
        self.assertNotIn(envelope.base_attribute_id, reassembler.pending)
        return str(err)

    def test_a_connection_holds_at_most_its_budget(self):
        conn = self.connection()
        self.assertIsNone(conn.add(self.envelope(1, 0, 40_000)))
        self.assertEqual((conn.budget.held, self.process.held), (40_000, 40_000))
        reason = self.refused(conn, self.envelope(1, 40_000, 70_000))  # 70,000 > 64,000
        self.assertIn("64000-byte [nac] segment_memory_per_connection", reason)
        self.assertEqual((conn.budget.held, self.process.held), (0, 0))
        # within the budget the whole attribute arrives, and gives its bytes back
        big = self.connection(limit=200_000)
        for start, end in ((0, 40_000), (40_000, 70_000)):
            self.assertIsNone(big.add(self.envelope(2, start, end)))
        self.assertEqual(self.process.held, 70_000)
        self.assertEqual(big.add(self.envelope(2, 70_000, len(self.data))).build(), self.data)
        self.assertEqual((big.budget.held, self.process.held), (0, 0))

    def test_all_connections_together_hold_at_most_the_process_budget(self):
        a, b, c = self.connection(), self.connection(), self.connection()
        a.add(self.envelope(1, 0, 40_000))
        b.add(self.envelope(1, 0, 40_000))
        reason = self.refused(c, self.envelope(1, 0, 40_000))  # 120,000 > 100,000
        self.assertIn("100000-byte [nac] segment_memory", reason)
        self.assertEqual(self.process.held, 80_000)
        # a connection that ends gives back what it held
        a.budget.close()
        self.assertEqual(self.process.held, 40_000)
        self.assertIsNone(c.add(self.envelope(1, 0, 40_000)))
        self.assertEqual(self.process.held, 80_000)
        a.clear()  # an IMV state dropped after its connection ended: nothing is given back twice
        self.assertEqual(self.process.held, 80_000)
        with self.assertRaises(PaTncError):  # nothing more is taken for an ended connection
            a.add(self.envelope(2, 0, 20_000))
        # cancelled, invalid and cleared attributes give their bytes back
        b.cancel(1)
        c.add(self.envelope(2, 0, 10_000))
        with self.assertRaises(PaTncError):
            c.add(SegmentEnvelope(2, b"x" * 20, more=False))  # ends too early
        c.clear()
        self.assertEqual(self.process.held, 0)

    def test_an_attribute_must_be_complete_within_the_timeout(self):
        conn = self.connection(limit=200_000)
        conn.add(self.envelope(1, 0, 30_000))
        self.now += 59.0
        conn.add(self.envelope(2, 0, 10_000))
        self.assertEqual(conn.expire(), {})
        self.assertIsNone(conn.add(self.envelope(1, 30_000, 60_000)))  # still in time
        self.now += 1.0
        expired = conn.expire()
        self.assertEqual(list(expired), [1])
        self.assertIn("not complete within 60 s (60000 of 76812 bytes received)", str(expired[1]))
        self.assertEqual(expired[1].message_header, b"\xff" * 4 + (1).to_bytes(4, "big"))
        self.assertEqual((conn.pending, self.process.held), ((2,), 10_000))
        self.now += 59.0
        self.assertEqual(list(conn.expire()), [2])
        self.assertEqual(self.process.held, 0)

    def test_without_a_budget_nothing_is_counted_or_expired(self):
        conn = Reassembler(max_attribute_size=1_000_000)
        conn.add(self.envelope(1, 0, 40_000))
        self.now += 10**6
        self.assertEqual(conn.expire(), {})
        self.assertEqual(self.process.held, 0)


class GeneratedTests(unittest.TestCase):
    @settings(max_examples=150, deadline=None)
    @given(st.binary(min_size=0, max_size=3000), st.integers(12, 500), st.integers(0, 0xFFFFFF))
    def test_any_attribute_survives_any_segment_size(self, value, max_segment_size, base_id):
        data = struct.pack(">III", 0x00ABCD, 3, 12 + len(value)) + value
        if len(data) <= max_segment_size:
            with self.assertRaises(ValueError):
                Segmenter(data, base_attribute_id=base_id, max_segment_size=max_segment_size)
            return
        envelopes = list(Segmenter(data, base_attribute_id=base_id, max_segment_size=max_segment_size))
        self.assertTrue(all(len(e.segment) <= max_segment_size for e in envelopes))
        reassembler = Reassembler()
        results = [reassembler.add(e) for e in envelopes]
        self.assertEqual(results[:-1], [None] * (len(envelopes) - 1))
        self.assertEqual(results[-1].build(), data)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.builds(SegmentEnvelope, st.integers(0, 3), st.binary(max_size=40), st.booleans(),
                              st.booleans()), max_size=12))
    def test_random_envelopes_raise_only_pa_tnc_error(self, envelopes):
        reassembler = Reassembler(max_attribute_size=200, max_pending=2)
        for envelope in envelopes:
            try:
                reassembler.add(envelope)
            except PaTncError:
                pass
            self.assertLessEqual(len(reassembler.pending), 2)
            self.assertTrue(all(reassembler.received(i) <= 200 for i in reassembler.pending))
