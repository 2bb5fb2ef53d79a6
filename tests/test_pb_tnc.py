"""PB-TNC (RFC 5793) batch and message codec: captured strongSwan batches,
every error path with its code and offset, and generated round trips."""

from __future__ import annotations

import dataclasses
import pickle
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from nac.pb import (
    AccessRecommendation,
    AssessmentResult,
    BatchType,
    Direction,
    ItaMutualCapability,
    MutualProtocol,
    PbAccessRecommendation,
    PbAssessmentResult,
    PbBatch,
    PbError,
    PbErrorCode,
    PbExperimental,
    PbLanguagePreference,
    PbMessage,
    PbPa,
    PbReasonString,
    PbRemediationParameters,
    PbTncError,
    PbVendor,
    RemediationParametersType,
    UnknownPbMessage,
)
from nac.pb.messages import message_class
from tests.vectors import layer_records


def pb_records() -> list[tuple[str, dict]]:
    """Every ``layer: pb-tnc`` record of every vector file, in wire order."""
    return list(layer_records("pb-tnc"))


def session(name: str) -> list[PbBatch]:
    return [PbBatch.parse(bytes.fromhex(r["hex"])) for f, r in pb_records() if f == name]


def batch_bytes(btype: int, body: bytes, *, version: int = 2, flags: int = 0) -> bytes:
    return struct.pack(">BBBBI", version, flags, 0, btype, 8 + len(body)) + body


def msg_bytes(vendor: int, msg_type: int, value: bytes, *, flags: int = 0, length: int | None = None) -> bytes:
    if length is None:
        length = 12 + len(value)
    return struct.pack(">III", (flags << 24) | vendor, msg_type, length) + value


class VectorTestCase(unittest.TestCase):
    def setUp(self):
        self.records = pb_records()
        self.assertGreater(len(self.records), 50)


class CapturedBatchTests(VectorTestCase):
    def test_every_captured_batch_rebuilds_byte_identically(self):
        for name, record in self.records:
            data = bytes.fromhex(record["hex"])
            batch = PbBatch.parse(data)
            self.assertEqual(batch.build(), data, f"{name}: {record.get('note')}")
            self.assertEqual(batch.size, len(data))
            self.assertEqual(PbBatch.parse(batch.build()), batch)
            for message in batch.messages:
                self.assertNotIsInstance(message, UnknownPbMessage)

    def test_direction_matches_the_capture(self):
        for name, record in self.records:
            batch = PbBatch.parse(bytes.fromhex(record["hex"]))
            expected = Direction.TO_SERVER if record["dir"] == "c2s" else Direction.TO_CLIENT
            self.assertEqual(batch.direction, expected, name)

    def test_assessment_flow_batch_types(self):
        for name in ("carol-sasl-open-ports-denied.jsonl", "carol-sasl-allowed.jsonl", "dave-cert-denied.jsonl"):
            self.assertEqual(
                [b.batch_type for b in session(name)],
                [BatchType.CDATA, BatchType.SDATA, BatchType.CDATA, BatchType.RESULT, BatchType.CLOSE],
                name,
            )

    def test_first_cdata_prefers_english_and_carries_three_pa_messages(self):
        first = session("carol-sasl-open-ports-denied.jsonl")[0]
        self.assertEqual(first.messages[0], PbLanguagePreference("en"))
        self.assertFalse(first.messages[0].noskip)
        pa = first.messages[1:]
        self.assertEqual([type(m) for m in pa], [PbPa] * 3)
        self.assertEqual([(m.pa_vendor, m.pa_subtype) for m in pa], [(0, 1), (0, 5), (0, 9)])  # OS, Firewall, SWIMA
        self.assertEqual([m.collector_id for m in pa], [1, 2, 3])
        self.assertTrue(all(m.validator_id == 0xFFFF and m.noskip and not m.exclusive for m in pa))
        self.assertEqual(first.message_offsets, (8, 39, 258, 318))
        # PA-TNC message header inside: version 1
        self.assertEqual(pa[0].body[0], 1)

    def test_server_replies_exclusively_to_a_collector(self):
        sdata = session("carol-sasl-open-ports-denied.jsonl")[1]
        self.assertEqual(sdata.direction, Direction.TO_CLIENT)
        self.assertTrue(sdata.messages[0].exclusive)
        self.assertEqual((sdata.messages[0].collector_id, sdata.messages[0].validator_id), (3, 3))

    def test_denied_result_batch(self):
        for name in ("carol-sasl-open-ports-denied.jsonl", "dave-cert-denied.jsonl", "carol-sasl-second-assessment.jsonl"):
            result = session(name)[3]
            self.assertEqual(result.batch_type, BatchType.RESULT)
            self.assertEqual(result.direction, Direction.TO_CLIENT)
            tail = result.messages[2:]
            self.assertEqual(tail[0], PbAssessmentResult(AssessmentResult.NON_COMPLIANT_MINOR))
            self.assertTrue(tail[0].noskip)
            self.assertEqual(tail[1], PbAccessRecommendation(AccessRecommendation.DENIED))
            self.assertEqual(tail[2], PbReasonString("Open server ports were detected", "en"))
            self.assertEqual(result.misplaced_result_messages(), ())

    def test_allowed_result_batch(self):
        result = session("carol-sasl-allowed.jsonl")[3]
        kinds = {type(m): m for m in result.messages}
        self.assertEqual(kinds[PbAssessmentResult].result, AssessmentResult.COMPLIANT)
        self.assertEqual(kinds[PbAccessRecommendation].recommendation, AccessRecommendation.ALLOWED)
        self.assertNotIn(PbReasonString, kinds)

    def test_close_batch_is_empty(self):
        close = session("carol-sasl-allowed.jsonl")[-1]
        self.assertEqual(close, PbBatch(BatchType.CLOSE, Direction.TO_SERVER, ()))
        self.assertEqual(close.build(), bytes.fromhex("0200000600000008"))

    def test_largest_batch_is_cdata_with_two_pa_messages(self):
        # of a session without SWIMA or attestation: the installed packages
        big = max((bytes.fromhex(r["hex"]) for f, r in self.records if f == "carol-sasl-allowed.jsonl"), key=len)
        self.assertEqual(len(big), 19344)
        batch = PbBatch.parse(big)
        self.assertEqual(batch.batch_type, BatchType.CDATA)
        self.assertEqual([len(m.body) for m in batch.messages], [19173 - 24, 163 - 24])

    def test_built_batch_equals_capture(self):
        captured = session("carol-sasl-open-ports-denied.jsonl")[3]
        rebuilt = PbBatch(
            BatchType.RESULT,
            Direction.TO_CLIENT,
            captured.messages[:2]
            + (
                PbAssessmentResult(AssessmentResult.NON_COMPLIANT_MINOR),
                PbAccessRecommendation(AccessRecommendation.DENIED),
                PbReasonString("Open server ports were detected", "en"),
            ),
        )
        self.assertEqual(rebuilt.build(), captured.build())
        self.assertEqual(rebuilt.offsets(), captured.message_offsets)


class HeaderErrorTests(unittest.TestCase):
    def assertPbError(self, data, code, offset, **kw):
        err = self.assertRaises(PbTncError, PbBatch.parse, data, **kw)
        self.assertEqual(err.code, code)
        self.assertEqual(err.offset, offset)
        self.assertTrue(err.fatal)
        self.assertIn(f"offset {offset}", str(err))
        return err

    def test_wrong_version_is_fatal_version_not_supported(self):
        err = self.assertPbError(batch_bytes(1, b"", version=1), PbErrorCode.VERSION_NOT_SUPPORTED, 0)
        self.assertEqual((err.bad_version, err.max_version, err.min_version), (1, 2, 2))
        message = err.to_message()
        self.assertEqual(message, PbError(True, 0, PbErrorCode.VERSION_NOT_SUPPORTED,
                                          bad_version=1, max_version=2, min_version=2))
        self.assertEqual(message.build(), bytes.fromhex("8000000000000005000000188000000000040000" "01020200"))

    def test_short_header(self):
        self.assertPbError(b"\x02\x00\x00", PbErrorCode.INVALID_PARAMETER, 0)
        self.assertPbError(b"", PbErrorCode.INVALID_PARAMETER, 0)

    def test_unknown_batch_type_points_at_b_type(self):
        for btype in (0, 7, 15):
            self.assertPbError(batch_bytes(btype, b""), PbErrorCode.INVALID_PARAMETER, 3)

    def test_reserved_header_bits_are_ignored(self):
        data = struct.pack(">BBBBI", 2, 0xFF, 0xFF, 0xF3, 8)
        self.assertEqual(PbBatch.parse_header(data), (2, Direction.TO_CLIENT, BatchType.RESULT, 8))

    def test_wrong_direction_points_at_d_bit(self):
        data = batch_bytes(BatchType.SDATA, b"", flags=0x80)
        self.assertPbError(data, PbErrorCode.INVALID_PARAMETER, 1, expect_direction=Direction.TO_SERVER)
        self.assertEqual(PbBatch.parse(data, expect_direction=Direction.TO_CLIENT).direction, Direction.TO_CLIENT)

    def test_batch_length_mismatch_points_at_length(self):
        good = batch_bytes(BatchType.CDATA, msg_bytes(0, 6, b"Accept-Language: en"))
        self.assertPbError(good[:-1], PbErrorCode.INVALID_PARAMETER, 4)
        self.assertPbError(good + b"\0", PbErrorCode.INVALID_PARAMETER, 4)

    def test_max_size(self):
        data = batch_bytes(BatchType.CDATA, msg_bytes(0, 0, b"x" * 100))
        self.assertPbError(data, PbErrorCode.INVALID_PARAMETER, 4, max_size=100)
        self.assertEqual(len(PbBatch.parse(data, max_size=len(data)).messages), 1)

    def test_too_many_messages_is_a_local_error(self):
        data = batch_bytes(BatchType.CDATA, msg_bytes(0, 0, b"") * 3)
        err = self.assertRaises(PbTncError, PbBatch.parse, data, max_messages=2)
        self.assertEqual(err.code, PbErrorCode.LOCAL_ERROR)
        self.assertEqual(len(PbBatch.parse(data, max_messages=3).messages), 3)


class MessageErrorTests(HeaderErrorTests):
    def test_truncated_message_header(self):
        data = batch_bytes(BatchType.CDATA, msg_bytes(0, 0, b"ab") + b"\x00" * 11)
        self.assertPbError(data, PbErrorCode.INVALID_PARAMETER, 8 + 14)

    def test_message_length_below_header(self):
        data = batch_bytes(BatchType.CDATA, msg_bytes(0, 0, b"", length=11))
        self.assertPbError(data, PbErrorCode.INVALID_PARAMETER, 8 + 8)

    def test_message_length_overruns_batch(self):
        first = msg_bytes(0, 6, b"Accept-Language: en")
        data = batch_bytes(BatchType.CDATA, first + msg_bytes(0, 0, b"abcd", length=17))
        self.assertPbError(data, PbErrorCode.INVALID_PARAMETER, 8 + len(first) + 8)

    def test_reserved_vendor_and_type(self):
        self.assertPbError(batch_bytes(1, msg_bytes(0xFFFFFF, 1, b"")), PbErrorCode.INVALID_PARAMETER, 9)
        self.assertPbError(batch_bytes(1, msg_bytes(0, 0xFFFFFFFF, b"")), PbErrorCode.INVALID_PARAMETER, 12)

    def test_fixed_size_message_with_wrong_length(self):
        # the offset is the Message Length field of the offending message
        data = batch_bytes(BatchType.RESULT, msg_bytes(0, 3, b"\x00\x00\x00\x01\x00"))
        self.assertPbError(data, PbErrorCode.INVALID_PARAMETER, 16)
        self.assertPbError(batch_bytes(3, msg_bytes(0, 1, b"\x00" * 11, flags=0x80)), PbErrorCode.INVALID_PARAMETER, 16)

    def test_invalid_codes_point_at_the_field(self):
        self.assertPbError(batch_bytes(3, msg_bytes(0, 3, b"\x00\x00\x00\x04")), PbErrorCode.INVALID_PARAMETER, 22)
        self.assertPbError(batch_bytes(3, msg_bytes(0, 2, b"\x00\x00\x00\x05")), PbErrorCode.INVALID_PARAMETER, 20)

    def test_reserved_pa_vendor_and_subtype(self):
        value = struct.pack(">IIHH", 0xFFFFFF, 1, 1, 0xFFFF)
        self.assertPbError(batch_bytes(1, msg_bytes(0, 1, value, flags=0x80)), PbErrorCode.INVALID_PARAMETER, 21)
        value = struct.pack(">IIHH", 0, 0xFFFFFFFF, 1, 0xFFFF)
        self.assertPbError(batch_bytes(1, msg_bytes(0, 1, value, flags=0x80)), PbErrorCode.INVALID_PARAMETER, 24)

    def test_language_preference_without_header_name(self):
        self.assertPbError(batch_bytes(1, msg_bytes(0, 6, b"en")), PbErrorCode.INVALID_PARAMETER, 20)

    def test_reason_string_errors(self):
        overrun = struct.pack(">I", 10) + b"short\x02en"
        self.assertPbError(batch_bytes(3, msg_bytes(0, 7, overrun)), PbErrorCode.INVALID_PARAMETER, 20)
        bad_lang_len = struct.pack(">I", 2) + b"ok\x05en"
        self.assertPbError(batch_bytes(3, msg_bytes(0, 7, bad_lang_len)), PbErrorCode.INVALID_PARAMETER, 26)
        not_utf8 = struct.pack(">I", 3) + b"a\xffb\x00"
        self.assertPbError(batch_bytes(3, msg_bytes(0, 7, not_utf8)), PbErrorCode.INVALID_PARAMETER, 25)
        nul = struct.pack(">I", 3) + b"ab\x00\x00"
        self.assertPbError(batch_bytes(3, msg_bytes(0, 7, nul)), PbErrorCode.INVALID_PARAMETER, 26)

    def test_remediation_string_errors(self):
        head = struct.pack(">II", 0, RemediationParametersType.STRING)
        self.assertPbError(batch_bytes(3, msg_bytes(0, 4, head + b"\x00\x00")), PbErrorCode.INVALID_PARAMETER, 28)
        self.assertPbError(batch_bytes(3, msg_bytes(0, 4, head + struct.pack(">I", 9) + b"ab\x00")),
                           PbErrorCode.INVALID_PARAMETER, 28)


class MessageTests(unittest.TestCase):
    def test_default_noskip_follows_strongswan(self):
        self.assertTrue(PbPa(0, 1, 1, 0xFFFF, b"").noskip)
        self.assertTrue(PbAssessmentResult(AssessmentResult.COMPLIANT).noskip)
        self.assertTrue(PbError(True, 0, PbErrorCode.LOCAL_ERROR).noskip)
        self.assertFalse(PbAccessRecommendation(AccessRecommendation.ALLOWED).noskip)
        self.assertFalse(PbReasonString("x").noskip)
        self.assertFalse(PbLanguagePreference("en").noskip)

    def test_names_and_sizes(self):
        msg = PbReasonString("Open server ports were detected", "en")
        self.assertEqual(msg.full_name, "IETF/PB-Reason-String")
        self.assertEqual(msg.size, len(msg.build()))
        self.assertEqual(ItaMutualCapability(0).full_name, "ITA-HSR/PB-Mutual-Capability")
        self.assertEqual(UnknownPbMessage(0x1234, 9, b"").full_name, "0x001234/0x00000009")
        self.assertIs(message_class(PbVendor.ITA_HSR, 1), ItaMutualCapability)

    def test_mutual_capability_layout(self):
        msg = ItaMutualCapability(MutualProtocol.HALF_DUPLEX)
        self.assertEqual(msg.build(), bytes.fromhex("00 00902a 00000001 00000010 80000000"))

    def test_remediation_parameters(self):
        uri = PbRemediationParameters.for_uri("https://remediation.example/fix")
        self.assertEqual(uri.build()[12:20], bytes.fromhex("00000000 00000001"))
        text = PbRemediationParameters.for_string("update your system", "en")
        for msg in (uri, text, PbRemediationParameters(0x5597, 7, parameters=b"\x01\x02")):
            batch = PbBatch(BatchType.RESULT, Direction.TO_CLIENT, (msg,))
            self.assertEqual(PbBatch.parse(batch.build()).messages, (msg,))

    def test_pb_error_parameters(self):
        invalid = PbError(True, 0, PbErrorCode.INVALID_PARAMETER, offset=16)
        self.assertEqual(invalid.build()[12:], bytes.fromhex("80000000 0001 0000 00000010"))
        self.assertEqual(invalid.code_name, "Invalid Parameter")
        empty = PbError(False, 0, PbErrorCode.UNEXPECTED_BATCH_TYPE)
        self.assertEqual(len(empty.build()), 20)
        vendor = PbError(False, 0x902A, 7, parameters=b"abc")
        for msg in (invalid, empty, vendor):
            self.assertEqual(PbBatch.parse(PbBatch(BatchType.CLOSE, Direction.TO_CLIENT, (msg,)).build()).messages,
                             (msg,))
        received = invalid.to_exception()
        self.assertEqual((received.code, received.offset), (PbErrorCode.INVALID_PARAMETER, 16))

    def test_strongswan_style_offset_for_codes_without_parameters(self):
        # strongSwan sends a zero offset even with Unexpected Batch Type
        value = bytes.fromhex("80000000 0000 0000 00000000")
        msg = PbBatch.parse(batch_bytes(6, msg_bytes(0, 5, value, flags=0x80))).messages[0]
        self.assertEqual((msg.code, msg.offset), (PbErrorCode.UNEXPECTED_BATCH_TYPE, 0))
        self.assertEqual(msg.build()[12:], value)

    def test_error_factories_map_to_pb_error(self):
        msg = PbTncError.invalid_parameter(22, "bad").to_message()
        self.assertEqual((msg.fatal, msg.vendor, msg.code, msg.offset), (True, 0, PbErrorCode.INVALID_PARAMETER, 22))
        msg = PbTncError.unexpected_batch_type().to_message()
        self.assertEqual((msg.code, msg.offset, msg.parameters), (PbErrorCode.UNEXPECTED_BATCH_TYPE, None, b""))
        self.assertIn("Local Error", str(PbTncError.local_error("out of memory")))


class StateMachineHelperTests(unittest.TestCase):
    def test_unknown_noskip_message_is_reported_with_its_offset(self):
        lang = msg_bytes(0, 6, b"Accept-Language: en")
        unknown_skip = msg_bytes(0x1234, 5, b"xx")
        unknown_noskip = msg_bytes(0x1234, 6, b"yy", flags=0x80)
        batch = PbBatch.parse(batch_bytes(1, lang + unknown_skip + unknown_noskip))
        offset = 8 + len(lang) + len(unknown_skip)
        pos, msg = batch.first_unsupported_noskip()
        self.assertEqual(pos, offset)
        self.assertEqual((msg.vendor, msg.type, msg.value), (0x1234, 6, b"yy"))
        error = batch.unsupported_noskip_error()
        self.assertEqual((error.code, error.offset, error.message_type), (PbErrorCode.UNSUPPORTED_MANDATORY_MESSAGE, offset, 6))
        self.assertEqual(error.to_message().build()[12:], struct.pack(">IHHI", 0x80000000, 3, 0, offset))

    def test_skippable_unknown_messages_are_kept(self):
        batch = PbBatch.parse(batch_bytes(1, msg_bytes(0x1234, 5, b"xx")))
        self.assertIsNone(batch.first_unsupported_noskip())
        self.assertIsNone(batch.unsupported_noskip_error())
        self.assertEqual(batch.messages[0].msg_vendor, 0x1234)

    def test_noskip_experimental_is_unsupported(self):
        batch = PbBatch(BatchType.CDATA, Direction.TO_SERVER, (PbExperimental(b"t", noskip=True),))
        self.assertEqual(batch.first_unsupported_noskip()[0], 8)

    def test_result_messages_outside_result_batch(self):
        msgs = (PbLanguagePreference("en"), PbAccessRecommendation(AccessRecommendation.ALLOWED))
        batch = PbBatch.parse(PbBatch(BatchType.CDATA, Direction.TO_SERVER, msgs).build())
        self.assertEqual(batch.misplaced_result_messages(), ((39, msgs[1]),))

    def test_fill_packs_messages_under_max_size(self):
        msgs = [PbPa(0, 1, 1, 0xFFFF, bytes(76)) for _ in range(5)]  # 100 bytes each
        batch, rest = PbBatch.fill(BatchType.SDATA, Direction.TO_CLIENT, msgs, 8 + 300)
        self.assertEqual((len(batch.messages), len(rest)), (3, 2))
        self.assertEqual(len(batch.build()), 308)
        self.assertTrue(PbBatch.fits(batch.size, msgs[0], 408))
        self.assertFalse(PbBatch.fits(batch.size, msgs[0], 407))
        empty, rest = PbBatch.fill(BatchType.SDATA, Direction.TO_CLIENT, msgs, 50)
        self.assertEqual((empty.messages, len(rest)), ((), 5))

    def test_parse_accepts_bytearray_and_memoryview(self):
        data = batch_bytes(6, b"")
        self.assertEqual(PbBatch.parse(bytearray(data)), PbBatch.parse(memoryview(data)))


def rebuilt(batch: PbBatch) -> bytes:
    """``batch`` encoded from its fields by a batch built locally (which keeps no bytes)."""
    return PbBatch(batch.batch_type, batch.direction, batch.messages, batch.version).build()


class ParsedBytesTests(unittest.TestCase):
    """A parsed batch may hand back the bytes it came from in build(), but only
    where encoding its fields gives those very bytes: reserved bits are still
    sent as zero (RFC 5793 §4.1, §4.2) and changed copies are encoded anew."""

    pa_body = bytes.fromhex("01000000 00000007")  # an empty PA-TNC message

    def assertRebuiltWithZeros(self, data: bytes, canonical: bytes):
        batch = PbBatch.parse(data)
        self.assertEqual(batch.build(), canonical)
        self.assertEqual(batch.build(), rebuilt(batch))
        self.assertEqual(batch.size, len(canonical))
        self.assertEqual(PbBatch.parse(canonical), batch)

    def test_reserved_bits_of_the_batch_header(self):
        body = msg_bytes(0, 6, b"Accept-Language: en")
        canonical = batch_bytes(BatchType.RESULT, body, flags=0x80)
        for byte, bits in ((1, 0x7F), (2, 0xFF), (3, 0xF0)):
            data = bytearray(canonical)
            data[byte] |= bits
            self.assertRebuiltWithZeros(bytes(data), canonical)

    def test_reserved_flag_bits_of_a_message_header(self):
        lang = b"Accept-Language: en"
        canonical = batch_bytes(1, msg_bytes(0, 6, lang) + msg_bytes(0x1234, 9, b"x", flags=0x80))
        noisy = batch_bytes(1, msg_bytes(0, 6, lang, flags=0x01) + msg_bytes(0x1234, 9, b"x", flags=0xC0))
        self.assertRebuiltWithZeros(noisy, canonical)

    def test_reserved_fields_inside_message_values(self):
        pa = struct.pack(">IIHH", 0x80000000, 1, 2, 0xFFFF) + self.pa_body
        recommendation = struct.pack(">HH", 0, AccessRecommendation.DENIED)
        remediation = struct.pack(">II", 0, 1) + b"https://fix.example/"
        error = struct.pack(">IHHI", 0x80000000, PbErrorCode.INVALID_PARAMETER, 0, 12)
        for msg_type, value, reserved in (
            (1, pa, {0: 0x7F}),  # PB-PA: seven flag bits after EXCL
            (3, recommendation, {0: 0xFF, 1: 0xFF}),
            (4, remediation, {0: 0xFF}),
            (5, error, {0: 0x7F, 6: 0xFF, 7: 0xFF}),
        ):
            with_bits = bytearray(value)
            for index, bits in reserved.items():
                with_bits[index] |= bits
            self.assertRebuiltWithZeros(batch_bytes(BatchType.RESULT, msg_bytes(0, msg_type, bytes(with_bits))),
                                        batch_bytes(BatchType.RESULT, msg_bytes(0, msg_type, value)))

    def test_changed_copies_are_encoded_from_their_fields(self):
        first = PbPa(0, 1, 1, 0xFFFF, self.pa_body)
        data = batch_bytes(1, first.build() + msg_bytes(0, 6, b"Accept-Language: en"))
        batch = PbBatch.parse(data)
        self.assertEqual(batch.build(), data)
        shorter = dataclasses.replace(batch, messages=batch.messages[:1])
        self.assertEqual(shorter.build(), batch_bytes(1, first.build()))
        self.assertEqual(shorter.size, 8 + first.size)
        self.assertEqual(dataclasses.replace(batch, direction=Direction.TO_CLIENT).build()[1], 0x80)

    def test_kept_bytes_are_neither_compared_nor_shown(self):
        data = batch_bytes(1, PbPa(0, 1, 1, 0xFFFF, self.pa_body).build())
        parsed = PbBatch.parse(data)
        local = PbBatch(BatchType.CDATA, Direction.TO_SERVER, parsed.messages)
        self.assertEqual(parsed, local)
        self.assertEqual(hash(parsed), hash(local))
        self.assertEqual(repr(parsed), repr(local))
        self.assertNotIn("_wire", repr(parsed))
        copy = pickle.loads(pickle.dumps(parsed))
        self.assertEqual((copy, copy.build()), (parsed, data))

    def test_captured_batches_are_what_their_fields_encode(self):
        for data in CAPTURED:
            self.assertEqual(rebuilt(PbBatch.parse(data)), data)


# --------------------------------------------------------------------------
# generated values

text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=40)
short_text = text.filter(lambda s: len(s.encode()) <= 255)
u8, u16, u24, u32 = (st.integers(0, 2**n - 1) for n in (8, 16, 24, 32))
noskip = st.booleans()

messages = st.one_of(
    st.builds(PbExperimental, st.binary(max_size=40), noskip=noskip),
    st.builds(PbPa, u24.filter(lambda v: v != 0xFFFFFF), u32.filter(lambda v: v != 0xFFFFFFFF), u16, u16,
              st.binary(max_size=64), exclusive=st.booleans(), noskip=noskip),
    st.builds(PbAssessmentResult, st.sampled_from(AssessmentResult), noskip=noskip),
    st.builds(PbAccessRecommendation, st.sampled_from(AccessRecommendation), noskip=noskip),
    st.builds(PbRemediationParameters.for_uri, text),
    st.builds(PbRemediationParameters.for_string, text, short_text),
    st.builds(PbRemediationParameters, u24.filter(lambda v: v != 0), u32, parameters=st.binary(max_size=20),
              noskip=noskip),
    st.builds(PbError, st.booleans(), st.just(0), st.sampled_from([0, 1, 2, 3]), offset=st.none() | u32,
              noskip=noskip),
    st.builds(PbError, st.booleans(), st.just(0), st.just(PbErrorCode.VERSION_NOT_SUPPORTED), bad_version=u8,
              max_version=u8, min_version=u8, noskip=noskip),
    st.builds(PbError, st.booleans(), u24.filter(lambda v: v != 0), u16, parameters=st.binary(max_size=12),
              noskip=noskip),
    st.builds(PbLanguagePreference, text, noskip=noskip),
    st.builds(PbReasonString, text, short_text, noskip=noskip),
    st.builds(ItaMutualCapability, u32, noskip=noskip),
    st.builds(UnknownPbMessage, st.sampled_from([0x1234, 0x5597, 0x902A]), st.integers(2, 100),
              st.binary(max_size=30), noskip=noskip),
)
batches = st.builds(PbBatch, st.sampled_from(BatchType), st.sampled_from(Direction),
                    st.lists(messages, max_size=6).map(tuple))


def _captured_batches() -> list[bytes]:
    try:
        return sorted({bytes.fromhex(r["hex"]) for _, r in pb_records()}, key=len)
    except OSError:
        return []


CAPTURED = _captured_batches() or [batch_bytes(6, b"")]


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, where, byte in edits:
        if not buf:
            break
        i = where % len(buf)
        if kind == 0:
            buf[i] = byte
        elif kind == 1:
            del buf[i:]
        elif kind == 2:
            buf.insert(i, byte)
        else:
            buf[i] ^= 1 << (byte % 8)
    return bytes(buf)


def _fix_length(data: bytes) -> bytes:
    """Make the batch length agree so the mutation reaches the messages."""
    if len(data) < 8:
        return data
    return data[:4] + struct.pack(">I", len(data)) + data[8:]


class GeneratedTests(unittest.TestCase):
    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(batches)
    def test_generated_batches_round_trip(self, batch):
        data = batch.build()
        parsed = PbBatch.parse(data)
        self.assertEqual(parsed, batch)
        self.assertEqual(parsed.build(), data)
        self.assertEqual(parsed.message_offsets, batch.offsets())
        self.assertEqual(batch.size, len(data))

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=64))
    def test_random_bytes_raise_only_pb_tnc_error(self, data):
        for candidate in (data, _fix_length(b"\x02\x00\x00\x01" + data[:4] + data[4:])):
            try:
                PbBatch.parse(candidate)
            except PbTncError:
                pass

    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(CAPTURED),
           st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**32), u8), min_size=1, max_size=4),
           st.booleans())
    def test_mutated_captures_raise_only_pb_tnc_error(self, data, edits, fix_length):
        mutated = _mutate(data, edits)
        if fix_length:
            mutated = _fix_length(mutated)
        try:
            batch = PbBatch.parse(mutated)
        except PbTncError as err:
            self.assertIsInstance(err.code, int)
            self.assertTrue(err.offset is None or 0 <= err.offset < max(len(mutated), 8))
        else:
            self.assertIsInstance(batch.build(), bytes)
            for message in batch.messages:
                self.assertIsInstance(message, PbMessage)

    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(CAPTURED),
           st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**32), u8), min_size=1, max_size=4))
    def test_mutated_captures_build_what_their_fields_encode(self, data, edits):
        # whatever parse keeps of the input, build() is the encoding of the fields
        try:
            batch = PbBatch.parse(_fix_length(_mutate(data, edits)))
        except PbTncError:
            return
        self.assertEqual(batch.build(), rebuilt(batch))
        self.assertEqual(batch.size, len(batch.build()))

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(batches, st.data())
    def test_reserved_bits_never_survive_a_rebuild(self, batch, data):
        canonical = batch.build()
        noisy = bytearray(canonical)
        noisy[1] |= data.draw(st.integers(0, 0x7F))
        noisy[2] |= data.draw(u8)
        noisy[3] |= data.draw(st.integers(0, 0xF)) << 4
        for pos, message in zip(batch.offsets(), batch.messages):
            noisy[pos] |= data.draw(st.integers(0, 0x7F))
            if isinstance(message, PbPa):
                noisy[pos + 12] |= data.draw(st.integers(0, 0x7F))
        parsed = PbBatch.parse(bytes(noisy))
        self.assertEqual(parsed, batch)
        self.assertEqual(parsed.build(), canonical)
