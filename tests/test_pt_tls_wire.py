"""PT-TLS (RFC 6876) message codec and stream framer: strongSwan's captured
messages, every error path with its code and offset, and generated round trips."""

from __future__ import annotations

import pickle
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from transports.pt_tls.wire import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_ERROR_COPY,
    Experimental,
    PbTncBatch,
    PtTlsError,
    PtTlsErrorCode,
    PtTlsFramer,
    PtTlsMessage,
    PtTlsMessageType,
    PtTlsProtocolError,
    SaslAuthenticationData,
    SaslMechanisms,
    SaslMechanismSelection,
    SaslPlainError,
    SaslPlainResponse,
    SaslResult,
    SaslResultMessage,
    VersionRequest,
    VersionResponse,
    message_type_name,
)
from tests.vectors import layer_records

FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pt_tls_records() -> list[tuple[str, dict]]:
    """Every ``layer: pt-tls`` record of every vector file, in wire order."""
    return list(layer_records("pt-tls"))


def header(vendor: int, msg_type: int, length: int, message_id: int = 0, reserved: int = 0) -> bytes:
    return struct.pack(">IIII", (reserved << 24) | vendor, msg_type, length, message_id)


def message(vendor: int, msg_type: int, value: bytes, message_id: int = 0) -> bytes:
    return header(vendor, msg_type, 16 + len(value), message_id) + value


class CapturedStrongSwanMessagesTests(unittest.TestCase):
    def setUp(self):
        self.records = pt_tls_records()
        self.assertGreater(len(self.records), 50)

    def test_every_captured_message_parses_and_rebuilds_byte_identically(self):
        for name, record in self.records:
            data = bytes.fromhex(record["hex"])
            msg = PtTlsMessage.parse(data)
            self.assertEqual(msg.build(), data, f"{name}: {record['note']}")
            self.assertEqual(msg.length, len(data))
            typed = msg.decode()
            self.assertIsNotNone(typed, record["note"])
            self.assertEqual(typed.to_message(msg.message_id).build(), data, f"{name}: {record['note']}")
            self.assertIn(message_type_name(msg.vendor, msg.type).strip("'"), record["note"])

    def test_version_response_selects_version_1(self):
        data = bytes.fromhex("0000000000000002000000140000000000000001")
        msg = PtTlsMessage.parse(data)
        self.assertEqual((msg.vendor, msg.message_type, msg.message_id), (0, PtTlsMessageType.VERSION_RESPONSE, 0))
        self.assertEqual(msg.decode(), VersionResponse(1))

    def test_sasl_mechanisms_offer_plain_with_a_length_prefix(self):
        msg = PtTlsMessage.parse(bytes.fromhex("0000000000000003000000160000000105504c41494e"))
        self.assertEqual(msg.message_id, 1)
        self.assertEqual(msg.decode(), SaslMechanisms(("PLAIN",)))

    def test_empty_sasl_mechanisms_end_authentication(self):
        msg = PtTlsMessage.parse(bytes.fromhex("00000000000000030000001000000003"))
        self.assertEqual(msg.decode(), SaslMechanisms(()))
        self.assertEqual(msg.message_id, 3)

    def test_strongswan_sasl_result_is_one_octet(self):
        success = PtTlsMessage.parse(bytes.fromhex("0000000000000006000000110000000200")).decode()
        abort = PtTlsMessage.parse(bytes.fromhex("0000000000000006000000110000000202")).decode()
        self.assertEqual(success, SaslResultMessage(SaslResult.SUCCESS, b"", 1))
        self.assertEqual(abort, SaslResultMessage(SaslResult.ABORT, b"", 1))
        self.assertIs(abort.result, SaslResult.ABORT)

    def test_framer_splits_a_whole_captured_session_at_every_offset(self):
        stream = b"".join(bytes.fromhex(r["hex"]) for n, r in self.records if n == "carol-sasl-allowed.jsonl")
        expected = [PtTlsMessage.parse(bytes.fromhex(r["hex"]))
                    for n, r in self.records if n == "carol-sasl-allowed.jsonl"]
        for cut in range(len(stream) + 1):
            framer = PtTlsFramer()
            got = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
            self.assertEqual(got, expected)
            self.assertEqual(framer.buffered, 0)


class MessageTests(unittest.TestCase):
    def test_header_layout(self):
        msg = PtTlsMessage(0x005597, 0x11223344, 7, b"abc", reserved=0x80)
        self.assertEqual(msg.build(), bytes.fromhex("80005597" "11223344" "00000013" "00000007") + b"abc")
        self.assertEqual(PtTlsMessage.parse(msg.build()), msg)
        self.assertIsNone(msg.message_type)
        self.assertIsNone(msg.decode())

    def test_describe_uses_strongswan_wording(self):
        self.assertEqual(
            SaslResultMessage(SaslResult.SUCCESS).to_message(2).describe(),
            "PT-TLS message #2 of type 'SASL Result' (17 bytes)",
        )
        self.assertEqual(
            PtTlsMessage(0x005597, 9, 4).describe(),
            "PT-TLS message #4 of unknown type 0x005597/0x00000009 (16 bytes)",
        )

    def test_length_below_header_is_invalid_parameter_at_the_length_field(self):
        with self.assertRaises(PtTlsProtocolError) as caught:
            PtTlsMessage.parse(header(0, 7, 15))
        self.assertEqual(caught.exception.code, PtTlsErrorCode.INVALID_PARAMETER)
        self.assertEqual(caught.exception.offset, 8)
        self.assertEqual(caught.exception.header, header(0, 7, 15))

    def test_length_not_matching_the_data_is_invalid_parameter(self):
        with self.assertRaises(PtTlsProtocolError) as caught:
            PtTlsMessage.parse(header(0, 7, 20) + b"ab")
        self.assertEqual(caught.exception.code, PtTlsErrorCode.INVALID_PARAMETER)

    def test_short_header_is_malformed(self):
        with self.assertRaises(PtTlsProtocolError) as caught:
            PtTlsMessage.parse(b"\x00" * 15)
        self.assertEqual(caught.exception.code, PtTlsErrorCode.MALFORMED_MESSAGE)

    def test_reserved_message_type_is_invalid_parameter(self):
        with self.assertRaises(PtTlsProtocolError) as caught:
            PtTlsMessage.parse(header(0, 0xFFFFFFFF, 16))
        self.assertEqual((caught.exception.code, caught.exception.offset), (PtTlsErrorCode.INVALID_PARAMETER, 4))

    def test_out_of_range_fields_are_refused_when_building(self):
        for kwargs in ({"vendor": 1 << 24}, {"type": -1}, {"message_id": 1 << 32}, {"reserved": 256}):
            fields = {"vendor": 0, "type": 7, "message_id": 0, **kwargs}
            self.assertRaises(ValueError, PtTlsMessage, **fields)

    def test_value_never_in_repr(self):
        msg = SaslMechanismSelection("PLAIN", b"\x00carol\x00hunter2").to_message(1)
        self.assertNotIn("hunter2", repr(msg))
        self.assertNotIn("hunter2", repr(msg.decode()))

    def test_error_copy_is_at_most_1024_bytes(self):
        msg = PbTncBatch(b"x" * 5000).to_message(4)
        self.assertEqual(msg.error_copy(), msg.build()[:MAX_ERROR_COPY])
        short = PbTncBatch(b"xy").to_message(4)
        self.assertEqual(short.error_copy(), short.build())


class TypedValueTests(unittest.TestCase):
    def assertProtocolError(self, code, offset, func, *args):
        with self.assertRaises(PtTlsProtocolError) as caught:
            func(*args)
        self.assertEqual(caught.exception.code, code, str(caught.exception))
        self.assertEqual(caught.exception.offset, offset, str(caught.exception))
        return caught.exception

    def test_version_request_layout(self):
        self.assertEqual(VersionRequest(1, 3, 2).to_value(), bytes((0, 1, 3, 2)))
        self.assertEqual(VersionRequest.parse(bytes((0, 1, 1, 1))), VersionRequest(1, 1, 1))
        self.assertTrue(VersionRequest(1, 3, 2).accepts(1))
        self.assertFalse(VersionRequest(2, 3, 2).accepts(1))

    def test_fixed_length_values_of_another_length_are_invalid_parameter(self):
        # RFC 6876 §3.5: Version messages have a Message Length of 20
        self.assertProtocolError(PtTlsErrorCode.INVALID_PARAMETER, 8, VersionRequest.parse, b"\x00\x01\x01")
        self.assertProtocolError(PtTlsErrorCode.INVALID_PARAMETER, 8, VersionResponse.parse, b"\x00" * 5)

    def test_decode_attaches_the_offending_message(self):
        msg = PtTlsMessage(0, PtTlsMessageType.VERSION_REQUEST, 0, b"\x00\x01")
        error = self.assertProtocolError(PtTlsErrorCode.INVALID_PARAMETER, 8, msg.decode)
        self.assertEqual(error.original, msg.build())

    def test_sasl_mechanisms_errors(self):
        self.assertProtocolError(PtTlsErrorCode.MALFORMED_MESSAGE, 16, SaslMechanisms.parse, b"\x00")
        self.assertProtocolError(PtTlsErrorCode.MALFORMED_MESSAGE, 22, SaslMechanisms.parse, b"\x05PLAIN\x05PLA")
        self.assertProtocolError(PtTlsErrorCode.MALFORMED_MESSAGE, 17, SaslMechanisms.parse, b"\x02\xc3\xa9")

    def test_sasl_mechanisms_ignore_the_reserved_bits(self):
        self.assertEqual(SaslMechanisms.parse(b"\xe5PLAIN"), SaslMechanisms(("PLAIN",)))

    def test_mechanism_names_must_fit_the_five_bit_length(self):
        self.assertRaises(ValueError, SaslMechanisms(("X" * 32,)).to_value)
        self.assertRaises(ValueError, SaslMechanisms(("",)).to_value)
        self.assertRaises(ValueError, SaslMechanismSelection("PLAÎN").to_value)

    def test_mechanism_selection_with_and_without_initial_response(self):
        self.assertEqual(SaslMechanismSelection.parse(b"\x05PLAIN"), SaslMechanismSelection("PLAIN", None))
        self.assertEqual(
            SaslMechanismSelection.parse(b"\x05PLAIN\x00carol\x00pw"), SaslMechanismSelection("PLAIN", b"\x00carol\x00pw")
        )
        self.assertProtocolError(PtTlsErrorCode.MALFORMED_MESSAGE, 16, SaslMechanismSelection.parse, b"")
        self.assertProtocolError(PtTlsErrorCode.MALFORMED_MESSAGE, 16, SaslMechanismSelection.parse, b"\x09PLAIN")

    def test_sasl_result_accepts_the_rfc_two_octet_code(self):
        self.assertEqual(SaslResultMessage.parse(b"\x00\x02"), SaslResultMessage(SaslResult.ABORT, b"", 2))
        self.assertEqual(
            SaslResultMessage.parse(b"\x00\x00extra"), SaslResultMessage(SaslResult.SUCCESS, b"extra", 2)
        )
        self.assertEqual(SaslResultMessage(SaslResult.ABORT, code_width=2).to_value(), b"\x00\x02")
        self.assertEqual(SaslResultMessage(SaslResult.ABORT).to_value(), b"\x02")
        self.assertEqual(SaslResultMessage.parse(b"\x07").result, 7)
        self.assertProtocolError(PtTlsErrorCode.MALFORMED_MESSAGE, 16, SaslResultMessage.parse, b"")
        self.assertRaises(ValueError, SaslResultMessage, SaslResult.SUCCESS, b"data", 1)

    def test_pt_tls_error_layout(self):
        original = message(0, 7, b"batch", 9)
        value = PtTlsError(PtTlsErrorCode.INVALID_MESSAGE, 0, original)
        self.assertEqual(value.to_value(), bytes.fromhex("00000000" "00000004") + original)
        parsed = PtTlsError.parse(value.to_value())
        self.assertEqual(parsed, value)
        self.assertIs(parsed.code, PtTlsErrorCode.INVALID_MESSAGE)
        self.assertEqual(parsed.original_header, original[:16])
        self.assertTrue(parsed.fatal)
        self.assertFalse(PtTlsError(PtTlsErrorCode.TYPE_NOT_SUPPORTED).fatal)
        self.assertFalse(PtTlsError(PtTlsErrorCode.RESERVED).fatal)
        self.assertEqual(PtTlsError.parse(bytes.fromhex("00005597" "00000004")).code, 4)
        self.assertTrue(PtTlsError(4, 0x005597).fatal)
        self.assertProtocolError(PtTlsErrorCode.MALFORMED_MESSAGE, 16, PtTlsError.parse, b"\x00" * 7)

    def test_error_codes_are_the_rfc_registry(self):
        self.assertEqual(
            [(c.name, c.value) for c in PtTlsErrorCode],
            [("RESERVED", 0), ("MALFORMED_MESSAGE", 1), ("VERSION_NOT_SUPPORTED", 2), ("TYPE_NOT_SUPPORTED", 3),
             ("INVALID_MESSAGE", 4), ("SASL_MECHANISM_ERROR", 5), ("INVALID_PARAMETER", 6)],
        )

    def test_opaque_values_round_trip(self):
        for cls in (Experimental, SaslAuthenticationData, PbTncBatch):
            self.assertEqual(cls.parse(b"\x01\x02").to_value(), b"\x01\x02")


class ProtocolErrorTests(unittest.TestCase):
    def test_text_names_the_code_and_offset_but_never_the_bytes(self):
        error = PtTlsProtocolError(
            PtTlsErrorCode.INVALID_MESSAGE, "too early", offset=3, original=b"\x00carol\x00hunter2"
        )
        self.assertEqual(str(error), "PT-TLS Invalid Message: too early at byte offset 3")
        self.assertNotIn("hunter2", repr(error))
        self.assertNotIn("hunter2", repr(error.to_value()))

    def test_original_is_capped_at_1024_bytes(self):
        error = PtTlsProtocolError(1, "x", original=b"y" * 5000)
        self.assertEqual(len(error.original), MAX_ERROR_COPY)
        self.assertIs(error.code, PtTlsErrorCode.MALFORMED_MESSAGE)

    def test_pickles(self):
        error = PtTlsProtocolError(PtTlsErrorCode.INVALID_PARAMETER, "x", offset=8, original=b"h" * 16)
        copy = pickle.loads(pickle.dumps(error))
        self.assertEqual((copy.code, copy.offset, copy.header), (error.code, 8, b"h" * 16))


class SaslPlainResponseTests(unittest.TestCase):
    def test_strongswan_client_response(self):
        creds = SaslPlainResponse.parse(b"\x00carol\x00hunter2")
        self.assertEqual((creds.authzid, creds.authcid, creds.password), (None, "carol", "hunter2"))
        self.assertEqual(creds.identity, "carol")
        self.assertEqual(creds.build(), b"\x00carol\x00hunter2")
        self.assertNotIn("hunter2", repr(creds))

    def test_the_authcid_is_the_identity_whatever_the_authzid(self):
        creds = SaslPlainResponse.parse("admin\x00carol\x00pässword".encode())
        self.assertEqual((creds.authzid, creds.identity, creds.password), ("admin", "carol", "pässword"))

    def test_bad_responses_never_quote_the_password(self):
        for data in (b"carol\x00hunter2", b"\x00\x00hunter2", b"\x00carol\x00", b"\x00carol\x00hunter2\x00x",
                     b"\x00carol\x00hunter2\xff", b"\x00carol\x00" + b"hunter2" * 40):
            with self.assertRaises(SaslPlainError) as caught:
                SaslPlainResponse.parse(data)
            self.assertNotIn("hunter2", str(caught.exception))

    @FAST
    @given(st.binary(max_size=80))
    def test_random_bytes_raise_only_sasl_plain_error(self, data):
        try:
            SaslPlainResponse.parse(data)
        except SaslPlainError:
            pass


class FramerTests(unittest.TestCase):
    def test_a_large_message_arriving_in_small_chunks(self):
        msg = PbTncBatch(bytes(range(256)) * 80).to_message(4)  # 20 KB
        data = msg.build()
        framer = PtTlsFramer()
        got = []
        for pos in range(0, len(data), 1000):
            got += framer.feed(data[pos:pos + 1000])
            if pos + 1000 < len(data):
                self.assertEqual(got, [])
        self.assertEqual(got, [msg])

    def test_the_largest_message_in_tls_record_sized_chunks(self):
        msg = PbTncBatch(b"\xab" * (DEFAULT_MAX_MESSAGE_SIZE - 16)).to_message(0)
        data = msg.build()
        framer = PtTlsFramer()
        got = []
        for pos in range(0, len(data), 1024):
            got += framer.feed(data[pos:pos + 1024])
        self.assertEqual(got, [msg])

    def test_several_messages_in_one_chunk(self):
        msgs = [PbTncBatch(b"a").to_message(1), VersionResponse().to_message(2), SaslMechanisms().to_message(3)]
        self.assertEqual(PtTlsFramer().feed(b"".join(m.build() for m in msgs)), msgs)

    def test_oversize_announcement_is_refused_from_the_header_alone(self):
        framer = PtTlsFramer(max_message_size=4096)
        hdr = header(0, 7, 4097, 5)
        self.assertEqual(framer.feed(hdr[:10]), [])
        with self.assertRaises(PtTlsProtocolError) as caught:
            framer.feed(hdr[10:])
        self.assertEqual(caught.exception.code, PtTlsErrorCode.INVALID_PARAMETER)
        self.assertEqual(caught.exception.offset, 8)
        self.assertEqual(caught.exception.header, hdr)
        self.assertIn("4097", str(caught.exception))
        self.assertEqual(framer.buffered, 0)

    def test_a_message_of_exactly_the_maximum_is_accepted(self):
        framer = PtTlsFramer(max_message_size=4096)
        msg = PbTncBatch(b"z" * 4080).to_message(0)
        self.assertEqual(framer.feed(msg.build()), [msg])

    def test_errors_are_sticky_and_keep_earlier_messages(self):
        framer = PtTlsFramer()
        good = VersionResponse().to_message(0)
        with self.assertRaises(PtTlsProtocolError) as caught:
            framer.feed(good.build() + header(0, 7, 3))
        self.assertEqual(caught.exception.decoded, (good,))
        self.assertEqual(caught.exception.code, PtTlsErrorCode.INVALID_PARAMETER)
        with self.assertRaises(PtTlsProtocolError):
            framer.feed(good.build())

    def test_maximum_below_the_header_is_refused(self):
        self.assertRaises(ValueError, PtTlsFramer, 15)

    @FAST
    @given(st.binary(max_size=200), st.lists(st.integers(1, 40), min_size=1, max_size=10))
    def test_random_bytes_raise_only_protocol_errors(self, data, cuts):
        framer = PtTlsFramer(max_message_size=128)
        pos = 0
        try:
            for cut in cuts + [len(data)]:
                for msg in framer.feed(data[pos:pos + cut]):
                    if msg.vendor == 0:
                        msg.decode()
                pos += cut
        except PtTlsProtocolError as exc:
            self.assertIsInstance(exc.code, int)
            str(exc)


# -- generated round trips ---------------------------------------------------

u8 = st.integers(0, 0xFF)
mechanism_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=20)
typed_values = st.one_of(
    st.builds(Experimental, st.binary(max_size=40)),
    st.builds(VersionRequest, u8, u8, u8, u8),
    st.builds(VersionResponse, u8, st.integers(0, 0xFFFFFF)),
    st.builds(SaslMechanisms, st.lists(mechanism_names, max_size=5).map(tuple)),
    st.builds(SaslMechanismSelection, mechanism_names, st.one_of(st.none(), st.binary(min_size=1, max_size=40))),
    st.builds(SaslAuthenticationData, st.binary(max_size=40)),
    st.builds(SaslResultMessage, u8),
    st.builds(SaslResultMessage, st.integers(0, 0xFFFF), st.binary(max_size=20), st.just(2)),
    st.builds(PbTncBatch, st.binary(max_size=200)),
    st.builds(PtTlsError, st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFF), st.binary(max_size=60), u8),
)
raw_messages = st.builds(
    PtTlsMessage,
    st.integers(0, 0xFFFFFF),
    st.integers(0, 0xFFFFFFFE),
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=100),
    u8,
)


class GeneratedRoundTripTests(unittest.TestCase):
    @FAST
    @given(typed_values, st.integers(0, 0xFFFFFFFF))
    def test_typed_values_round_trip(self, value, message_id):
        data = value.to_message(message_id).build()
        msg = PtTlsMessage.parse(data)
        self.assertEqual(msg.message_id, message_id)
        self.assertEqual(msg.decode(), value)
        self.assertEqual(msg.decode().to_message(message_id).build(), data)

    @FAST
    @given(st.lists(raw_messages, max_size=6), st.integers(1, 50))
    def test_message_streams_round_trip_through_the_framer(self, msgs, chunk):
        data = b"".join(m.build() for m in msgs)
        framer = PtTlsFramer()
        got = []
        for pos in range(0, len(data), chunk):
            got += framer.feed(data[pos:pos + chunk])
        self.assertEqual(got, msgs)

    @FAST
    @given(st.sampled_from(sorted(PtTlsMessageType)), st.binary(max_size=40))
    def test_random_values_raise_only_protocol_errors(self, msg_type, value):
        try:
            PtTlsMessage(0, msg_type, 0, value).decode()
        except PtTlsProtocolError as exc:
            self.assertIn(exc.code, (PtTlsErrorCode.MALFORMED_MESSAGE, PtTlsErrorCode.INVALID_PARAMETER))
