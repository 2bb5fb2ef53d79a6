"""PA-TNC (RFC 5792) codec: the PA-TNC messages strongSwan sent in the captured
sessions parse and rebuild byte for byte with the values they carry;
generated attributes of every family round-trip; malformed messages raise
only PaTncError, with the offset and the PA-TNC Error reply RFC 5792 §4.2.8
asks for."""

from __future__ import annotations

import base64
import re
import struct
from functools import lru_cache

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial import unittest

from nac.pa import (
    ATTRIBUTE_REGISTRY,
    PaMessage,
    PaTncError,
    PaTncErrorCode,
    PaVendor,
    UnknownAttribute,
    attribute_type_not_supported_error,
    pa_error_reply,
    parse_attribute,
)
from nac.pa.ietf import (
    AssessmentResult,
    AssessmentResultCode,
    AttributeRequest,
    FactoryDefaultPasswordEnabled,
    ForwardingEnabled,
    ForwardingStatus,
    InstalledPackages,
    NumericVersion,
    OperationalResult,
    OperationalStatus,
    OperationalStatusCode,
    PaTncErrorAttribute,
    PortEntry,
    PortFilter,
    ProductInformation,
    RemediationInstructions,
    RemediationParametersType,
    StringVersion,
)
from nac.pa.ietf import Testing as IetfTesting  # not collected as a test class
from nac.pa.ita import (
    DeviceId,
    ItaCommand,
    ItaDummy,
    ItaEcho,
    ItaGetSettings,
    ItaGetSymlinks,
    ItaSetting,
    ItaSettings,
    ItaStartAngel,
    ItaStopAngel,
    ItaSymlink,
    ItaSymlinks,
)
from nac.pa import pwg
from nac.pa.swima import (
    SoftwareEvents,
    SoftwareIdentifierEvents,
    SoftwareIdentifierInventory,
    SoftwareInventory,
    SourceMetadataRequest,
    SourceMetadataResponse,
    SubscriptionStatusRequest,
    SubscriptionStatusResponse,
    SwimaEvent,
    SwimaEventAction,
    SwimaRecord,
    SwimaRequest,
    SwimaRequestFlag,
)
from nac.pa.tcg import NO_LIMIT, MaxAttributeSizeRequest, MaxAttributeSizeResponse, NextSegment, SegmentEnvelope
from tests.test_pa_tcg_pts import PTS_GENERATORS
from tests.vectors import VECTORS, log_texts, record_files, records as vector_records


def pb_pa_bodies(batch: bytes) -> list[tuple[int, int, bytes]]:
    """(PA vendor, PA subtype, PA-TNC message) of every PB-PA message in a PB-TNC batch.

    Batch header 8 bytes; message header: flags 1, vendor 3, type 4, length 4
    (header included); PB-PA value: flags 1, PA vendor 3, PA subtype 4,
    collector 2, validator 2, then the PA-TNC message (RFC 5793 §4.1-§4.5).
    """
    found, pos = [], 8
    while pos < len(batch):
        vendor_type, length = struct.unpack_from(">Q I", batch, pos)
        if vendor_type >> 32 & 0xFFFFFF == 0 and vendor_type & 0xFFFFFFFF == 1:
            value = batch[pos + 12:pos + length]
            found.append((int.from_bytes(value[1:4], "big"), int.from_bytes(value[4:8], "big"), value[12:]))
        pos += length
    return found


def tnccs11_bodies(text: str) -> list[tuple[int, int, bytes]]:
    """(PA vendor, PA subtype, PA-TNC message) of every IMC-IMV-Message in an IF-TNCCS 1.1 batch."""
    found = []
    for message in re.findall(r"<IMC-IMV-Message>(.*?)</IMC-IMV-Message>", text, re.S):
        msg_type = int(re.search(r"<Type>\s*([0-9A-Fa-f]+)\s*</Type>", message).group(1), 16)
        body = re.search(r"<Base64>(.*?)</Base64>", message, re.S).group(1)
        found.append((msg_type >> 8, msg_type & 0xFF, base64.b64decode(body)))
    return found


@lru_cache(maxsize=1)
def captured() -> tuple[tuple[str, str, int, int, bytes], ...]:
    """(file, direction, PA vendor, PA subtype, PA-TNC message) in wire order."""
    out = []
    for path in record_files():
        for record in vector_records(str(path.relative_to(VECTORS))):
            if record["layer"] == "pb-tnc":
                bodies = pb_pa_bodies(bytes.fromhex(record["hex"]))
            elif record["layer"] == "tnccs-1.1":
                bodies = tnccs11_bodies(record.get("text") or "")
            else:
                continue
            out.extend((path.name, record["dir"], vendor, subtype, body) for vendor, subtype, body in bodies)
    return tuple(out)


def attributes_of(cls, file_prefix: str = "", direction: str | None = None) -> list:
    return [
        attribute
        for name, way, _, _, body in captured()
        if name.startswith(file_prefix) and direction in (None, way)
        for attribute in PaMessage.parse(body).attributes
        if isinstance(attribute, cls)
    ]


def is_pts(attribute) -> bool:
    """A TCG attribute of the PTS range (TCG Attestation PTS Protocol: Binding to TNC IF-M, 0x00100000…)."""
    return attribute.attr_vendor == 0x005597 and attribute.attr_type >= 0x00100000 or \
        attribute.attr_vendor == 0x005597 and 0x01000000 <= attribute.attr_type <= 0x0E000000


class CapturedMessageTests(unittest.TestCase):
    """What strongSwan's IMCs and IMVs put on the wire."""

    def test_every_captured_message_rebuilds_byte_for_byte(self):
        self.assertGreaterEqual(len(captured()), 48)
        for name, _, _, _, body in captured():
            message = PaMessage.parse(body)
            # a fresh message, so the encoders run (a parsed one returns its bytes)
            self.assertEqual(PaMessage(message.message_id, message.attributes, message.version).build(), body, name)
            self.assertEqual(message.build(), body)
            for attribute in message.attributes:
                self.assertFalse(isinstance(attribute, UnknownAttribute), f"{name}: {attribute.describe()}")
                self.assertEqual(parse_attribute(attribute.build(), 0)[0], attribute)

    def test_every_captured_attribute_is_understood_pts_included(self):
        attributes = [a for *_, body in captured() for a in PaMessage.parse(body).attributes]
        self.assertEqual({a.describe() for a in attributes if isinstance(a, UnknownAttribute)}, set())
        # the attestation sessions (TCG PTS with a TPM 2.0) are among them
        pts = {type(a).__name__ for a in attributes if is_pts(a)}
        self.assertGreaterEqual(pts, {"SimpleComponentEvidence", "SimpleEvidenceFinal",
                                      "RequestFunctionalComponentEvidence", "GenerateAttestationEvidence"})

    def test_messages_of_both_transports_are_included(self):
        files = {name for name, *_ in captured()}
        self.assertIn("eapol_test-strongswan-no-imcs.jsonl", files)  # IF-TNCCS 1.1 base64 bodies
        self.assertIn("carol-sasl-open-ports-denied.jsonl", files)  # PB-TNC over PT-TLS

    def test_describe_matches_what_strongswan_logs(self):
        logged = set()
        for _, text in log_texts():
            logged.update(re.findall(r"attribute type ('[^']*' 0x[0-9a-f]{6}/0x[0-9a-f]{8})", text))
        described = {a.describe() for _, _, _, _, body in captured() for a in PaMessage.parse(body).attributes}
        self.assertEqual(described - logged, set())
        self.assertIn("'TCG/Segmentation Contract Request' 0x005597/0x00000021", described)

    def test_operating_system_attributes(self):
        (product,) = attributes_of(ProductInformation, "carol-sasl-allowed")
        self.assertEqual((product.vendor_id, product.product_id, product.name), (0x002572, 0, "Debian"))
        self.assertEqual(product.full_name, "IETF/Product Information")
        (numeric,) = attributes_of(NumericVersion, "carol-sasl-allowed")
        self.assertEqual((numeric.major, numeric.minor, numeric.build_number), (12, 0, 0))
        (string,) = attributes_of(StringVersion, "carol-sasl-allowed")
        self.assertEqual((string.version, string.build_number, string.configuration), ("12 x86_64", "", ""))
        (status,) = attributes_of(OperationalStatus, "carol-sasl-allowed")
        self.assertEqual((status.status, status.result, status.last_use),
                         (OperationalStatusCode.OPERATIONAL, OperationalResult.SUCCESSFUL, "2026-11-22T18:08:41Z"))
        (forwarding,) = attributes_of(ForwardingEnabled, "carol-sasl-allowed")
        self.assertIs(forwarding.status, ForwardingStatus.DISABLED)
        (password,) = attributes_of(FactoryDefaultPasswordEnabled, "carol-sasl-allowed")
        self.assertIs(password.enabled, False)
        (device,) = attributes_of(DeviceId, "carol-sasl-allowed")
        self.assertEqual(device.device_id, "3d1219c7c4c5404aaa1f6d2a48adfda4")
        self.assertEqual(device.describe(), "'ITA-HSR/Device ID' 0x00902a/0x00000008")

    def test_port_filter_lists_the_open_server_ports_with_noskip(self):
        (ports,) = attributes_of(PortFilter, "dave-cert-denied")
        self.assertTrue(ports.noskip)
        self.assertEqual(ports.entries, (PortEntry(6, 271), PortEntry(17, 34164), PortEntry(17, 1812),
                                         PortEntry(17, 40078)))

    def test_installed_packages_of_the_endpoint(self):
        (packages,) = attributes_of(InstalledPackages, "carol-sasl-open-ports-denied")
        self.assertEqual(len(packages.packages), 753)
        self.assertEqual(packages.packages[0], ("adduser", "3.134"))
        self.assertEqual(packages.packages[-1], ("zstd", "1.5.4+dfsg2-5"))
        self.assertEqual(len(packages.build()), 19121)

    def test_server_asks_for_installed_packages_and_reports_results(self):
        (request,) = attributes_of(AttributeRequest, "carol-sasl-open-ports-denied")
        self.assertEqual(request.requested, ((PaVendor.IETF, 7),))
        results = [a.result for a in attributes_of(AssessmentResult, "carol-sasl-open-ports-denied")]
        self.assertEqual(results, [AssessmentResultCode.NON_COMPLIANT_MINOR,
                                   AssessmentResultCode.COMPLIANT, AssessmentResultCode.COMPLIANT])
        (remediation,) = attributes_of(RemediationInstructions, "carol-sasl-open-ports-denied")
        self.assertEqual((remediation.parameters_vendor, remediation.parameters_type, remediation.language),
                         (PaVendor.IETF, RemediationParametersType.STRING, "en"))
        self.assertTrue(remediation.string.startswith('<?xml version="1.0" encoding="UTF-8"?>'))
        self.assertIn("<item>tcp/271</item>", remediation.string)

    def test_segmentation_contracts(self):
        requests = attributes_of(MaxAttributeSizeRequest, "carol-sasl-allowed")
        responses = attributes_of(MaxAttributeSizeResponse, "carol-sasl-allowed")
        self.assertEqual({(a.max_attribute_size, a.max_segment_size) for a in requests + responses},
                         {(NO_LIMIT, 2097080)})
        (tnccs11,) = attributes_of(MaxAttributeSizeRequest, "eapol_test")
        self.assertEqual((tnccs11.max_attribute_size, tnccs11.max_segment_size), (NO_LIMIT, 44976))

    def test_swima_request_answered_by_identifier_inventory_and_error(self):
        (request,) = attributes_of(SwimaRequest, "carol-sasl-open-ports-denied")
        self.assertEqual((request.flags, request.request_id, request.earliest_eid, request.identifiers),
                         (SwimaRequestFlag.RESULT_TYPE, 24, 1, ()))
        self.assertTrue(request.identifiers_only)
        (inventory,) = attributes_of(SoftwareIdentifierInventory, "carol-sasl-open-ports-denied")
        self.assertEqual((inventory.request_id, inventory.eid_epoch, inventory.last_eid, inventory.records),
                         (24, 0x11223344, 1, ()))
        (error,) = attributes_of(PaTncErrorAttribute, "carol-sasl-open-ports-denied")
        self.assertEqual((error.error_vendor, error.error_code, error.request_id, error.description),
                         (PaVendor.IETF, PaTncErrorCode.SWIMA_ERROR, 24,
                          "failed to collect SW ID events, fallback to SW ID inventory"))
        self.assertFalse(error.is_pa_tnc_message_error)

    def test_tnccs11_server_requests(self):
        (request,) = attributes_of(AttributeRequest, "eapol_test")
        self.assertEqual(request.requested, ((0, 2), (0, 4), (0, 3), (0, 5), (0, 11), (0, 12), (PaVendor.ITA_HSR, 8)))
        self.assertEqual({a.result for a in attributes_of(AssessmentResult, "eapol_test")},
                         {AssessmentResultCode.ERROR})


class ErrorTests(unittest.TestCase):
    """Malformed messages: the code, the offset, and the PA-TNC Error reply."""

    HEADER = struct.pack(">B3xI", 1, 0x1234)

    def attribute(self, vendor: int, attr_type: int, value: bytes, *, noskip=False, length=None) -> bytes:
        length = 12 + len(value) if length is None else length
        return struct.pack(">III", (0x80 << 24 if noskip else 0) | vendor, attr_type, length) + value

    def refuse(self, data: bytes) -> PaTncError:
        with self.assertRaises(PaTncError) as cm:
            PaMessage.parse(data)
        self.assertEqual(cm.exception.message_header, data[:8].ljust(8, b"\0"))
        return cm.exception

    def reply(self, error: PaTncError) -> PaTncErrorAttribute:
        (attribute,) = PaMessage.parse(pa_error_reply(error)).attributes
        self.assertIsInstance(attribute, PaTncErrorAttribute)
        return attribute

    def test_truncated_header_is_invalid_parameter_at_offset_0(self):
        err = self.refuse(b"\x01\x00\x00")
        self.assertEqual((err.code, err.offset), (PaTncErrorCode.INVALID_PARAMETER, 0))
        self.assertIn("at byte offset 0", str(err))

    def test_other_version_is_refused_with_supported_versions(self):
        err = self.refuse(b"\x02\x00\x00\x00\x00\x00\x00\x07")
        self.assertEqual(err.code, PaTncErrorCode.VERSION_NOT_SUPPORTED)
        reply = self.reply(err)
        self.assertEqual((reply.error_code, reply.message_header, reply.max_version, reply.min_version),
                         (PaTncErrorCode.VERSION_NOT_SUPPORTED, b"\x02\0\0\0\0\0\0\x07", 1, 1))
        self.assertEqual(reply.encode_value()[16:], b"\x01\x01\x00\x00")

    def test_truncated_attribute_header(self):
        err = self.refuse(self.HEADER + b"\x00\x00\x00\x00\x00")
        self.assertEqual((err.offset, err.attribute_header), (8, None))

    def test_attribute_length_below_header_size_names_the_length_field(self):
        err = self.refuse(self.HEADER + self.attribute(0, 2, b"", length=11))
        self.assertEqual((err.code, err.offset, err.attribute_type), (PaTncErrorCode.INVALID_PARAMETER, 16, (0, 2)))

    def test_attribute_overrunning_the_message(self):
        data = self.HEADER + self.attribute(0, 2, b"xx", length=100)
        err = self.refuse(data)
        self.assertEqual((err.offset, err.attribute_header), (16, data[8:20]))
        reply = self.reply(err)
        self.assertEqual((reply.error_code, reply.offset, reply.message_header),
                         (PaTncErrorCode.INVALID_PARAMETER, 16, self.HEADER))

    def test_reserved_vendor_and_type(self):
        self.assertEqual(self.refuse(self.HEADER + self.attribute(0xFFFFFF, 1, b"")).offset, 9)
        self.assertEqual(self.refuse(self.HEADER + self.attribute(0x005597, 0xFFFFFFFF, b"")).offset, 12)

    def test_malformed_known_attribute_names_the_field(self):
        # second attribute: String Version whose second string overruns
        first = self.attribute(0, 11, b"\0\0\0\0")
        err = self.refuse(self.HEADER + first + self.attribute(0, 4, b"\x01a\x09bc\x00"))
        self.assertEqual(err.offset, 8 + 16 + 12 + 2)
        self.assertEqual(err.attribute_type, (0, 4))
        self.assertEqual(self.reply(err).offset, err.offset)

    def test_fixed_size_attribute_of_wrong_size_names_its_length_field(self):
        err = self.refuse(self.HEADER + self.attribute(0, 3, b"abc"))
        self.assertEqual(err.offset, 16)

    def test_closed_registries_refuse_unknown_values(self):
        stamp = b"2026-11-22T18:08:41Z"
        self.assertEqual(self.refuse(self.HEADER + self.attribute(0, 5, b"\x04\x01\0\0" + stamp)).offset, 20)
        self.assertEqual(self.refuse(self.HEADER + self.attribute(0, 5, b"\x03\x04\0\0" + stamp)).offset, 21)
        self.assertEqual(self.refuse(self.HEADER + self.attribute(0, 5, b"\x03\x01\0\0" + b"x" * 20)).offset, 24)
        self.refuse(self.HEADER + self.attribute(0, 11, b"\0\0\0\x03"))
        self.refuse(self.HEADER + self.attribute(0, 12, b"\0\0\0\x02"))
        self.refuse(self.HEADER + self.attribute(0, 2, b"\0\0\0\0\x05Debian"))  # product ID without vendor

    def test_text_must_be_utf8_without_nul(self):
        err = self.refuse(self.HEADER + self.attribute(0x00902A, 8, b"abc\xffdef"))
        self.assertEqual(err.offset, 20 + 3)
        err = self.refuse(self.HEADER + self.attribute(0x00902A, 8, b"abc\x00"))
        self.assertEqual(err.offset, 20 + 3)
        packages = b"\0\0\0\x02" + b"\x01a\x011" + b"\x02b\x00\x00"
        self.refuse(self.HEADER + self.attribute(0, 7, packages))

    def test_installed_packages_read_alike_in_ascii_and_utf8(self):
        # ASCII lists are read through one latin-1 string, others field by field
        for packages in ((("adduser", "3.134"), ("", ""), ("zstd", "1.5.4+dfsg2-5")),
                         (("bücher", "1.0"), ("日本", "ü"), ("adduser", ""))):
            value = InstalledPackages(packages).encode_value()
            (attribute,) = PaMessage.parse(self.HEADER + self.attribute(0, 7, value)).attributes
            self.assertEqual(attribute.packages, packages)
            self.assertTrue(all(type(text) is str for package in attribute.packages for text in package))
        for bad, at in ((b"\x03a\0b", 1), (b"\x03a\xffb", 1)):  # NUL in ASCII, invalid UTF-8
            value = b"\0\0\0\x01" + bad + b"\x011"
            err = self.refuse(self.HEADER + self.attribute(0, 7, value))
            self.assertEqual(err.offset, 20 + 4 + 1 + at)

    def test_a_package_list_seen_again_is_not_walked_again(self):
        import nac.pa.ietf as ietf

        value = InstalledPackages((("adduser", "3.134"), ("zstd", "1.5.4"))).encode_value()
        first, again = (PaMessage.parse(self.HEADER + self.attribute(0, 7, value)).attributes[0]
                        for _ in range(2))
        self.assertEqual(first, again)
        self.assertIs(first.packages, again.packages)
        self.assertEqual(first.digest, InstalledPackages(first.packages).digest)
        other = InstalledPackages((("adduser", "3.134"), ("zstd", "1.5.5"))).encode_value()
        self.assertNotEqual(PaMessage.parse(self.HEADER + self.attribute(0, 7, other)).attributes[0].digest,
                            first.digest)
        # a refused list is not remembered; the memory stays bounded
        self.patch(ietf, "PARSED_LISTS_KEPT", 3)
        for i in range(10):
            value = InstalledPackages(((f"p{i}", "1"),)).encode_value()
            PaMessage.parse(self.HEADER + self.attribute(0, 7, value))
            self.refuse(self.HEADER + self.attribute(0, 7, value[:-1]))
        self.assertLessEqual(len(ietf._PARSED_LISTS), 3)

    def test_port_filter_entries_are_port_entries_with_a_boolean_blocked(self):
        # only the low bit of the flags byte is the B flag; the others are Reserved
        value = bytes.fromhex("fe 06 0016 03 11 0035 01 06 0050")
        (attribute,) = PaMessage.parse(self.HEADER + self.attribute(0, 6, value)).attributes
        self.assertEqual(attribute.entries, (PortEntry(6, 22), PortEntry(17, 53, True), PortEntry(6, 80, True)))
        self.assertTrue(all(type(entry) is PortEntry for entry in attribute.entries))
        self.assertEqual([entry.blocked for entry in attribute.entries], [False, True, True])
        self.assertTrue(all(type(entry.blocked) is bool for entry in attribute.entries))
        self.assertEqual(attribute.entries[1]._asdict(), {"protocol": 17, "port": 53, "blocked": True})

    def test_installed_packages_count_must_match(self):
        value = b"\0\0\0\x03" + b"\x01a\x011" + b"\x01b\x012"
        err = self.refuse(self.HEADER + self.attribute(0, 7, value))
        self.assertEqual(err.offset, 20 + len(value))
        err = self.refuse(self.HEADER + self.attribute(0, 7, b"\0\0\0\x01" + b"\x01a\x011" + b"junk"))
        self.assertEqual(err.offset, 20 + 8)

    def test_too_many_attributes(self):
        data = self.HEADER + self.attribute(0, 9, b"\0\0\0\0") * 3
        self.assertEqual(len(PaMessage.parse(data, max_attributes=3).attributes), 3)
        self.assertEqual(self.refuse_with_limit(data, 2).offset, 8 + 2 * 16)

    def refuse_with_limit(self, data, limit):
        with self.assertRaises(PaTncError) as cm:
            PaMessage.parse(data, max_attributes=limit)
        return cm.exception

    def test_unknown_attribute_without_noskip_is_kept(self):
        data = self.HEADER + self.attribute(0x00ABCD, 77, b"??")
        message = PaMessage.parse(data)
        (attribute,) = message.attributes
        self.assertEqual((attribute.vendor, attribute.type, attribute.value, attribute.noskip),
                         (0x00ABCD, 77, b"??", False))
        self.assertEqual(message.unsupported_noskip(), ())
        self.assertEqual(attribute.describe(), "'0x00abcd/0x0000004d' 0x00abcd/0x0000004d")
        self.assertEqual(UnknownAttribute(PaVendor.TCG, 0x25).full_name, "TCG/Cancel")

    def test_unknown_noskip_attribute_gets_attribute_type_not_supported(self):
        data = self.HEADER + self.attribute(0, 9, b"\0\0\0\0") + self.attribute(0x00ABCD, 77, b"??", noskip=True)
        message = PaMessage.parse(data)
        (refused,) = message.unsupported_noskip()
        reply = PaMessage.parse(pa_error_reply(message, unsupported=(refused,), raw=data))
        (error,) = reply.attributes
        self.assertEqual((error.error_code, error.message_header, error.attribute_header),
                         (PaTncErrorCode.ATTRIBUTE_TYPE_NOT_SUPPORTED, self.HEADER, data[24:32]))
        self.assertEqual((error.unsupported_flags, error.unsupported_vendor, error.unsupported_type),
                         (0x80, 0x00ABCD, 77))
        # RFC 5792 §4.2.8: message header copy + Flags/Vendor ID + Attribute Type, 24-byte value
        self.assertEqual(len(error.encode_value()), 8 + 8 + 8)
        self.assertEqual(PaMessage.parse(pa_error_reply(message)).attributes, reply.attributes)
        self.assertEqual(attribute_type_not_supported_error(message.header, refused), error)

    def test_strongswan_error_attributes_parse(self):
        # the three IETF error layouts as strongSwan builds them (ietf_attr_pa_tnc_error.c)
        header = bytes.fromhex("01000000d1f44ce6")
        layouts = {
            1: header + b"\0\0\0\x14",
            2: header + b"\x01\x01\0\0",
            3: header + bytes.fromhex("8000abcd0000004d"),
        }
        for code, info in layouts.items():
            value = struct.pack(">II", 0, code) + info
            (error,) = PaMessage.parse(self.HEADER + self.attribute(0, 8, value)).attributes
            self.assertEqual((error.error_code, error.message_header), (code, header))
            self.assertEqual(error.encode_value(), value)
        value = struct.pack(">II", 0, 1) + header  # Invalid Parameter without its offset
        err = self.refuse(self.HEADER + self.attribute(0, 8, value))
        self.assertTrue(err.in_error_attribute)

    def test_swima_error_constructor(self):
        error = PaTncErrorAttribute.swima_error(PaTncErrorCode.SWIMA_RESPONSE_TOO_LARGE_ERROR, 7, "too big",
                                                max_allowed_size=65000)
        (parsed,) = PaMessage.parse(PaMessage(1, (error,)).build()).attributes
        self.assertEqual((parsed.request_id, parsed.max_allowed_size, parsed.description), (7, 65000, "too big"))

    def test_error_pickles(self):
        import pickle

        err = self.refuse(self.HEADER + self.attribute(0, 3, b"abc"))
        copy = pickle.loads(pickle.dumps(err))
        self.assertEqual((copy.code, copy.offset, copy.message_header, str(copy)),
                         (err.code, err.offset, err.message_header, str(err)))


# -- generated values --------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u24 = st.integers(0, 0xFFFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=24)
short_text = text.filter(lambda s: len(s.encode()) <= 255)
noskip = st.booleans()


def tuples(strategy, max_size=4):
    return st.lists(strategy, max_size=max_size).map(tuple)


records = st.builds(SwimaRecord, u32, text, text, u24, u8, u8, st.just(b""))
full_records = st.builds(SwimaRecord, u32, text, text, u24, u8, u8, st.binary(max_size=40))
stamps = st.sampled_from(["2026-11-22T18:08:41Z", "1970-01-01T00:00:00Z"])
actions = st.sampled_from(SwimaEventAction)
header8 = st.binary(min_size=8, max_size=8)

#: one strategy per attribute class; test_every_registered_class_is_generated keeps it complete
GENERATORS = {
    # IETF (RFC 5792)
    IetfTesting: st.builds(IetfTesting, st.binary(max_size=30), noskip=noskip),
    AttributeRequest: st.builds(AttributeRequest, st.lists(st.tuples(u24, u32), min_size=1, max_size=5).map(tuple),
                                noskip=noskip),
    ProductInformation: st.one_of(st.builds(ProductInformation, u24.filter(bool), u16, text, noskip=noskip),
                                  st.builds(ProductInformation, st.just(0), st.just(0), text, noskip=noskip)),
    NumericVersion: st.builds(NumericVersion, u32, u32, u32, u16, u16, noskip=noskip),
    StringVersion: st.builds(StringVersion, short_text, short_text, short_text, noskip=noskip),
    OperationalStatus: st.builds(OperationalStatus, st.sampled_from(OperationalStatusCode),
                                 st.sampled_from(OperationalResult),
                                 st.sampled_from(["0000-00-00T00:00:00Z", "2026-11-22T18:08:41Z"]), noskip=noskip),
    PortFilter: st.builds(PortFilter, tuples(st.builds(PortEntry, u8, u16, st.booleans())), noskip=noskip),
    InstalledPackages: st.builds(InstalledPackages, tuples(st.tuples(short_text, short_text), 8), noskip=noskip),
    PaTncErrorAttribute: st.one_of(
        st.builds(PaTncErrorAttribute.invalid_parameter, header8, u32),
        st.builds(PaTncErrorAttribute.version_not_supported, header8, u8, u8),
        st.builds(PaTncErrorAttribute.attribute_type_not_supported, header8, st.binary(min_size=8, max_size=12)),
        st.builds(PaTncErrorAttribute.swima_error, st.sampled_from([4, 5, 8]), u32, text),
        st.builds(PaTncErrorAttribute, st.integers(1, 0xFFFFFF), u32, information=st.binary(max_size=20)),
    ),
    AssessmentResult: st.builds(AssessmentResult, st.one_of(st.sampled_from(AssessmentResultCode), u32),
                                noskip=noskip),
    RemediationInstructions: st.one_of(
        st.builds(RemediationInstructions.for_uri, text),
        st.builds(RemediationInstructions.for_string, text, short_text),
        st.builds(RemediationInstructions, st.integers(1, 0xFFFFFE), u32, parameters=st.binary(max_size=20)),
    ),
    ForwardingEnabled: st.builds(ForwardingEnabled, st.sampled_from(ForwardingStatus), noskip=noskip),
    FactoryDefaultPasswordEnabled: st.builds(FactoryDefaultPasswordEnabled, st.booleans(), noskip=noskip),
    # SWIMA (RFC 8412)
    SwimaRequest: st.builds(SwimaRequest, u32, u32, tuples(text), st.sampled_from(SwimaRequestFlag), noskip=noskip),
    SoftwareIdentifierInventory: st.builds(SoftwareIdentifierInventory, u32, u32, u32, tuples(records), u8,
                                           noskip=noskip),
    SoftwareInventory: st.builds(SoftwareInventory, u32, u32, u32, tuples(full_records), u8, noskip=noskip),
    SoftwareIdentifierEvents: st.builds(SoftwareIdentifierEvents, u32, u32, u32, u32,
                                        tuples(st.builds(SwimaEvent, u32, stamps, actions, records)), u8,
                                        noskip=noskip),
    SoftwareEvents: st.builds(SoftwareEvents, u32, u32, u32, u32,
                              tuples(st.builds(SwimaEvent, u32, stamps, actions, full_records)), u8, noskip=noskip),
    SubscriptionStatusRequest: st.builds(SubscriptionStatusRequest, st.binary(max_size=20), noskip=noskip),
    SubscriptionStatusResponse: st.builds(SubscriptionStatusResponse, st.binary(max_size=20), noskip=noskip),
    SourceMetadataRequest: st.builds(SourceMetadataRequest, st.binary(max_size=20), noskip=noskip),
    SourceMetadataResponse: st.builds(SourceMetadataResponse, st.binary(max_size=20), noskip=noskip),
    # ITA-HSR
    ItaCommand: st.builds(ItaCommand, text, noskip=noskip),
    ItaDummy: st.builds(ItaDummy, st.binary(max_size=30), noskip=noskip),
    ItaGetSettings: st.builds(ItaGetSettings, tuples(text), noskip=noskip),
    ItaSettings: st.builds(ItaSettings, tuples(st.builds(ItaSetting, text, text)), noskip=noskip),
    ItaStartAngel: st.builds(ItaStartAngel, noskip=noskip),
    ItaStopAngel: st.builds(ItaStopAngel, noskip=noskip),
    ItaEcho: st.builds(ItaEcho, st.binary(max_size=30), noskip=noskip),
    DeviceId: st.builds(DeviceId, text, noskip=noskip),
    ItaGetSymlinks: st.builds(ItaGetSymlinks, text, noskip=noskip),
    ItaSymlinks: st.builds(ItaSymlinks, tuples(st.builds(ItaSymlink, text, text)), noskip=noskip),
    # PWG HCD
    **{cls: st.builds(cls, text, noskip=noskip) for cls in (
        pwg.AttributesNaturalLanguage, pwg.MachineTypeModel, pwg.VendorName, pwg.TimeSource,
        pwg.FirmwareName, pwg.FirmwarePatches, pwg.FirmwareStringVersion, pwg.ResidentApplicationName,
        pwg.ResidentApplicationPatches, pwg.ResidentApplicationStringVersion, pwg.UserApplicationName,
        pwg.UserApplicationPatches, pwg.UserApplicationStringVersion)},
    **{cls: st.builds(cls, st.booleans(), noskip=noskip) for cls in (
        pwg.DefaultPasswordEnabled, pwg.PstnFaxEnabled, pwg.UserApplicationEnabled,
        pwg.UserApplicationPersistenceEnabled)},
    **{cls: st.builds(cls, st.builds(pwg.SoftwareVersion, u32, u32, u32, u16, u16), noskip=noskip) for cls in (
        pwg.FirmwareVersion, pwg.ResidentApplicationVersion, pwg.UserApplicationVersion)},
    **{cls: st.builds(cls, st.binary(max_size=40), noskip=noskip) for cls in (
        pwg.CertificationState, pwg.ConfigurationState)},
    pwg.VendorSmiCode: st.builds(pwg.VendorSmiCode, u24, noskip=noskip),
    pwg.HcdForwardingEnabled: st.builds(pwg.HcdForwardingEnabled, st.sampled_from(ForwardingStatus), noskip=noskip),
    pwg.FirewallSetting: st.builds(pwg.FirewallSetting, tuples(st.builds(PortEntry, u8, u16, st.booleans())),
                                   noskip=noskip),
    # TCG IF-M Segmentation
    MaxAttributeSizeRequest: st.builds(MaxAttributeSizeRequest, u32, u32, noskip=noskip),
    MaxAttributeSizeResponse: st.builds(MaxAttributeSizeResponse, u32, u32, noskip=noskip),
    SegmentEnvelope: st.builds(SegmentEnvelope, u24, st.binary(max_size=40), st.booleans(), st.booleans(),
                               noskip=noskip),
    NextSegment: st.builds(NextSegment, u24, st.booleans(), noskip=noskip),
    # TCG PTS (Attestation PTS Protocol: Binding to TNC IF-M)
    **PTS_GENERATORS,
    # everything else
    UnknownAttribute: st.builds(UnknownAttribute,
                                u24.filter(lambda v: v not in (0, 0x002935, 0x005597, 0x00902A, 0xFFFFFF)),
                                st.integers(0, 0xFFFFFFFE), st.binary(max_size=20), noskip=noskip),
}


def family(module: str):
    return st.one_of(*[strategy for cls, strategy in GENERATORS.items() if cls.__module__ == module])


IETF_ATTRIBUTES = family("nac.pa.ietf")
SWIMA_ATTRIBUTES = family("nac.pa.swima")
ITA_ATTRIBUTES = family("nac.pa.ita")
PWG_ATTRIBUTES = family("nac.pa.pwg")
TCG_ATTRIBUTES = st.one_of(family("nac.pa.tcg"), family("nac.pa.message"))
PTS_ATTRIBUTES = family("nac.pa.tcg_pts")

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class RoundTripTests(unittest.TestCase):
    """build → parse gives the same value and build of that gives the same bytes."""

    def check(self, attributes, message_id):
        message = PaMessage(message_id, tuple(attributes))
        data = message.build()
        parsed = PaMessage.parse(data)
        self.assertEqual(parsed, message)
        self.assertEqual(PaMessage(parsed.message_id, parsed.attributes).build(), data)
        for attribute in attributes:
            self.assertEqual(parse_attribute(attribute.build(), 0)[0], attribute)

    @FAST
    @given(tuples(IETF_ATTRIBUTES, 5), u32)
    def test_ietf_attributes(self, attributes, message_id):
        self.check(attributes, message_id)

    @FAST
    @given(tuples(SWIMA_ATTRIBUTES, 3), u32)
    def test_swima_attributes(self, attributes, message_id):
        self.check(attributes, message_id)

    @FAST
    @given(tuples(ITA_ATTRIBUTES, 5), u32)
    def test_ita_attributes(self, attributes, message_id):
        self.check(attributes, message_id)

    @FAST
    @given(tuples(PWG_ATTRIBUTES, 5), u32)
    def test_pwg_attributes(self, attributes, message_id):
        self.check(attributes, message_id)

    @FAST
    @given(tuples(TCG_ATTRIBUTES, 5), u32)
    def test_tcg_and_unknown_attributes(self, attributes, message_id):
        self.check(attributes, message_id)

    @FAST
    @given(tuples(PTS_ATTRIBUTES, 5), u32)
    def test_tcg_pts_attributes(self, attributes, message_id):
        self.check(attributes, message_id)

    def test_every_registered_class_is_generated(self):
        self.assertEqual(set(ATTRIBUTE_REGISTRY.values()) - set(GENERATORS), set())

    def test_default_noskip_follows_strongswan(self):
        self.assertTrue(PortFilter().noskip)
        self.assertFalse(ProductInformation().noskip)
        self.assertFalse(PaTncErrorAttribute().noskip)


def mutations(data: st.DataObject, body: bytes) -> bytes:
    mutated = bytearray(body)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        mutated[pos] = data.draw(u8)
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(mutated)))
        mutated = mutated[:cut]
    return bytes(mutated)


def parse_or_error(test: unittest.TestCase, data: bytes) -> None:
    """Only PaTncError may come out, and what parses must re-parse to itself."""
    try:
        message = PaMessage.parse(data)
    except PaTncError as err:
        test.assertIsInstance(err.code, PaTncErrorCode)
        test.assertTrue(0 <= err.offset <= len(data), (err.offset, len(data)))
        test.assertEqual(len(err.message_header), 8)
        PaMessage.parse(pa_error_reply(err))
        return
    fresh = PaMessage(message.message_id, message.attributes, message.version).build()
    test.assertEqual(PaMessage.parse(fresh), message)


class NeverCrashTests(unittest.TestCase):
    @FAST
    @given(st.binary(max_size=120))
    def test_random_bytes(self, data):
        parse_or_error(self, data)

    @FAST
    @given(st.binary(max_size=120))
    def test_random_attributes_after_a_valid_header(self, data):
        parse_or_error(self, b"\x01\x00\x00\x00\x00\x00\x00\x01" + data)

    @FAST
    @given(st.sampled_from(sorted(ATTRIBUTE_REGISTRY)), st.binary(max_size=60), noskip)
    def test_random_values_of_every_known_type(self, key, value, flag):
        vendor, attr_type = key
        header = struct.pack(">III", (0x80 << 24 if flag else 0) | vendor, attr_type, 12 + len(value))
        parse_or_error(self, b"\x01\x00\x00\x00\x00\x00\x00\x01" + header + value)

    @FAST
    @given(st.data())
    def test_mutated_captured_messages(self, data):
        bodies = sorted({body for *_, body in captured() if len(body) < 4096})
        parse_or_error(self, mutations(data, data.draw(st.sampled_from(bodies))))

    @settings(max_examples=25, deadline=None)
    @given(st.data())
    def test_mutated_installed_packages(self, data):
        body = max((body for *_, body in captured()), key=len)
        parse_or_error(self, mutations(data, body))
