"""TCG PTS attributes (Attestation PTS Protocol: Binding to TNC IF-M) against
bytes laid out by hand from the specification's diagrams (§3.7–§3.19) and
strongSwan's TPM 2.0 extension, not from nac's encoder; against what
strongSwan's attestation IMC and IMV put on the wire (the captured sessions
in ``tests/data/vectors/strongswan-attestation``); and the refusals, each a
PA-TNC Invalid Parameter naming the byte that is wrong.

Round trips of generated values and random input for every class run in
test_pa_tnc.py with the strategies below (``PTS_GENERATORS``).
"""

from __future__ import annotations

import base64
import re
import struct

from hypothesis import strategies as st
from twisted.trial import unittest

from nac.pa import PaMessage, PaTncError, PaTncErrorCode, PaVendor, parse_attribute
from nac.pa.ietf import PaTncErrorAttribute
from nac.pa.tcg_pts import (
    AttestationIdentityKey,
    ComponentName,
    ComponentQualifier,
    ComponentRequest,
    ComponentRequestFlag,
    ComponentValidation,
    DhNonceFinish,
    DhNonceParametersRequest,
    DhNonceParametersResponse,
    FileMeasurement,
    FileMeasurementEntry,
    GenerateAttestationEvidence,
    GetAttestationIdentityKey,
    GetTpmVersionInfo,
    ItaComponent,
    PcrTransform,
    PtsCapability,
    PtsDhGroup,
    PtsErrorCode,
    PtsFileType,
    PtsHashAlgorithm,
    PtsMeasurementAlgorithmRequest,
    PtsMeasurementAlgorithmSelection,
    PtsProtocolCapabilities,
    QuoteMode,
    RequestFileMeasurement,
    RequestFileMetadata,
    RequestFunctionalComponentEvidence,
    RequestPtsProtocolCapabilities,
    SimpleComponentEvidence,
    SimpleEvidenceFinal,
    TcgComponent,
    TpmVersionInfo,
    UnixFileMetadata,
    UnixFileMetadataEntry,
    bad_nonce_length_error,
    dh_group_not_supported_error,
    hash_algorithm_not_supported_error,
    is_pts_error,
)
from tests.vectors import log_text, records, vector_path

H = bytes.fromhex
ATTESTATION = "strongswan-attestation"


def message(*attributes: bytes) -> bytes:
    """A PA-TNC message (version 1, message id 7) around hand-built attributes."""
    return H("01 000000 00000007") + b"".join(attributes)


def header(noskip: bool, attr_type: int, value: bytes) -> bytes:
    """Flags + TCG vendor, type, length (header included) — RFC 5792 §4.2."""
    return bytes((0x80 if noskip else 0,)) + H("005597") + struct.pack(">II", attr_type, 12 + len(value)) + value


# -- hand-built bytes ------------------------------------------------------------------------------

# ITA-HSR component "IMA" with qualifier K + Trusted Platform: 00902a | 21 | 00000003
BIOS_NAME = H("00902a 21 00000003")
IMA_NAME = H("00902a 22 00000003")
TIME = b"2026-12-07T12:04:47Z"

VECTORS = [
    # Request PTS Protocol Capabilities (0x01000000): 27 reserved bits, C V D T X = 0 1 1 1 0
    (header(True, 0x01000000, H("0000000e")),
     RequestPtsProtocolCapabilities(PtsCapability.VERIFICATION | PtsCapability.DH_NONCE
                                    | PtsCapability.TRUSTED_PLATFORM)),
    # PTS Protocol Capabilities (0x02000000): only T
    (header(False, 0x02000000, H("00000002")), PtsProtocolCapabilities(PtsCapability.TRUSTED_PLATFORM)),
    # Measurement Algorithm Request (0x06000000): reserved 16 bits, SHA-1 (bit 0 = 0x8000) | SHA-256 | SHA-384
    (header(True, 0x06000000, H("0000 e000")),
     PtsMeasurementAlgorithmRequest(PtsHashAlgorithm.SHA1 | PtsHashAlgorithm.SHA256 | PtsHashAlgorithm.SHA384)),
    # Measurement Algorithm Selection (0x07000000): SHA-256
    (header(False, 0x07000000, H("0000 4000")), PtsMeasurementAlgorithmSelection(PtsHashAlgorithm.SHA256)),
    # D-H Nonce Parameters Request (0x03000000): reserved, min nonce 20, groups ECP-256 (0x1000) | ECP-384 (0x0800)
    (header(True, 0x03000000, H("00 14 1800")),
     DhNonceParametersRequest(20, PtsDhGroup.ECP_256 | PtsDhGroup.ECP_384)),
    # D-H Nonce Parameters Response (0x04000000): reserved 24, nonce length 3, group MODP-2048 (0x2000),
    # hash set SHA-256, nonce 010203, public value aabb
    (header(False, 0x04000000, H("000000 03 2000 4000 010203 aabb")),
     DhNonceParametersResponse(PtsDhGroup.MODP_2048, PtsHashAlgorithm.SHA256, H("010203"), H("aabb"))),
    # D-H Nonce Finish (0x05000000): reserved, nonce length 2, SHA-384, public value ccddee, nonce 0405
    (header(True, 0x05000000, H("00 02 2000 ccddee 0405")),
     DhNonceFinish(PtsHashAlgorithm.SHA384, H("ccddee"), H("0405"))),
    # Get TPM Version Information (0x08000000), Get AIK (0x0D000000), Generate Attestation Evidence (0x00200000):
    # 32 reserved bits each
    (header(True, 0x08000000, bytes(4)), GetTpmVersionInfo()),
    (header(True, 0x0D000000, bytes(4)), GetAttestationIdentityKey()),
    (header(True, 0x00200000, bytes(4)), GenerateAttestationEvidence()),
    # TPM Version Information (0x09000000), strongSwan's TPM 2.0 layout: tag 0200, reserved, locality 3,
    # revision 164 (1.64), year 2021, "IBM\0"
    (header(False, 0x09000000, H("0200 00 03 000000a4 000007e5 49424d00")),
     TpmVersionInfo.tpm2(3, 164, 2021, b"IBM\0")),
    # Attestation Identity Key (0x0E000000): flags 0x80 (naked key), key bytes
    (header(False, 0x0E000000, H("80 3082")), AttestationIdentityKey(H("3082"))),
    # Request Functional Component Evidence (0x00100000): flags PCR (0x10), depth 0, BIOS name;
    # flags 0, depth 1, TCG (005597) family 0 qualifier 0x01 name BIOS (2)
    (header(True, 0x00100000, H("10 000000") + BIOS_NAME + H("00 000001 005597 01 00000002")),
     RequestFunctionalComponentEvidence((
         ComponentRequest(ComponentName(PaVendor.ITA_HSR, ItaComponent.IMA, 0x21), ComponentRequestFlag.PCR),
         ComponentRequest(ComponentName(PaVendor.TCG, TcgComponent.BIOS, 0x01), depth=1)))),
    # Simple Component Evidence (0x00300000), no options: flags 0, depth 0, name, type 0x80, PCR 4,
    # SHA-256 (4000), transform match (1), reserved, 20-byte time, measurement
    (header(False, 0x00300000, H("00 000000") + BIOS_NAME + H("80 000004 4000 01 00") + TIME + H("abcd")),
     SimpleComponentEvidence(ComponentName(PaVendor.ITA_HSR, ItaComponent.IMA, 0x21), 4, H("abcd"),
                             PtsHashAlgorithm.SHA256, PcrTransform.MATCH, TIME.decode())),
    # the same with PCR info (0x80) and validation passed (0x60): policy URI length 4 "a:/b",
    # PCR length 2, before 0000, after 1111, then the measurement
    (header(False, 0x00300000, H("e0 000000") + IMA_NAME + H("80 00000a 2000 01 00") + TIME
            + H("0004") + b"a:/b" + H("0002 0000 1111") + H("ef")),
     SimpleComponentEvidence(ComponentName(PaVendor.ITA_HSR, ItaComponent.IMA, 0x22), 10, H("ef"),
                             PtsHashAlgorithm.SHA384, PcrTransform.MATCH, TIME.decode(),
                             validation=ComponentValidation.PASSED, policy_uri="a:/b",
                             pcr_before=H("0000"), pcr_after=H("1111"))),
    # Simple Evidence Final (0x00400000), TPM 2.0 quote (flags 0x10): reserved, composite hash SHA-256,
    # PCR digest (32-bit length 2), qualified signer (16-bit length 1), clock info (1), firmware (1),
    # PCR selection (1), signature (32-bit length 2)
    (header(False, 0x00400000, H("10 00 4000 00000002 d1d2 0001 51 0001 c1 0001 f1 0001 05 00000002 5152")),
     SimpleEvidenceFinal(QuoteMode.TPM2, PtsHashAlgorithm.SHA256, H("d1d2"), H("51"), H("c1"), H("f1"),
                         H("05"), H("5152"))),
    # Simple Evidence Final without a quote, with an evidence signature (0x20): the rest of the value
    (header(False, 0x00400000, H("20 00 0000 eeee")),
     SimpleEvidenceFinal(QuoteMode.NONE, evidence_signature=H("eeee"))),
    # Request File Measurement (0x00C00000): flags directory (0x80), reserved, request id 7, delimiter '/', path
    (header(True, 0x00C00000, H("80 00 0007 0000002f") + b"/etc"),
     RequestFileMeasurement(7, "/etc", directory=True)),
    # File Measurement (0x00D00000): 2 files (64 bits), request id 7, measurement length 2, then each
    # measurement and a 16-bit-length name
    (header(False, 0x00D00000, H("0000000000000002 0007 0002 aaaa 0002") + b"/a" + H("bbbb 0003") + b"/bb"),
     FileMeasurement(7, 2, (FileMeasurementEntry(H("aaaa"), "/a"), FileMeasurementEntry(H("bbbb"), "/bb")))),
    # Request File Metadata (0x00700000): flags 0, delimiter '/', reserved 16, path
    (header(True, 0x00700000, H("00 2f 0000") + b"/etc/passwd"), RequestFileMetadata("/etc/passwd")),
    # Unix-Style File Metadata (0x00900000): 1 file; length 52 + 2, type regular (8), reserved,
    # size 5, created 1, modified 2, accessed 3, owner 0, group 4 (64 bits each), name "/x"
    (header(False, 0x00900000, H("0000000000000001 0036 08 00") + struct.pack(">QQQQQQ", 5, 1, 2, 3, 0, 4) + b"/x"),
     UnixFileMetadata((UnixFileMetadataEntry("/x", PtsFileType.REGULAR, 5, 1, 2, 3, 0, 4),))),
]


class HandBuiltBytesTests(unittest.TestCase):
    def test_built_as_written(self):
        for wire, attribute in VECTORS:
            self.assertEqual(attribute.build(), wire, attribute)

    def test_parsed_as_written(self):
        parsed = PaMessage.parse(message(*(wire for wire, _ in VECTORS)))
        self.assertEqual(parsed.attributes, tuple(attribute for _, attribute in VECTORS))

    def test_names_for_logs(self):
        self.assertEqual(VECTORS[0][1].describe(),
                         "'TCG/Request PTS Protocol Capabilities' 0x005597/0x01000000")
        self.assertEqual(PtsCapability(0x0E).letters, ".VDT.")
        name = ComponentName(PaVendor.ITA_HSR, ItaComponent.IMA, ComponentQualifier.KERNEL | 1)
        self.assertEqual(name.describe(), "ITA-HSR/IMA [K.] Trusted Platform")

    def test_unknown_values_are_kept(self):
        # a hash algorithm bit nac does not know, a transform and a file type of no name
        data = header(False, 0x07000000, H("0000 0800"))
        self.assertEqual(int(parse_attribute(data, 0)[0].algorithms), 0x0800)
        self.assertEqual(parse_attribute(data, 0)[0].build(), data)
        evidence = header(False, 0x00300000, H("00 000000") + BIOS_NAME + H("80 000004 4000 09 00") + TIME)
        self.assertEqual(parse_attribute(evidence, 0)[0].transform, 9)
        self.assertEqual(parse_attribute(evidence, 0)[0].build(), evidence)
        meta = header(False, 0x00900000, H("0000000000000001 0034 05 00") + bytes(48))
        self.assertEqual(parse_attribute(meta, 0)[0].entries[0].type, 5)

    def test_tpm_version_information(self):
        info = TpmVersionInfo.tpm2(3, 164, 2021, b"IBM\0")
        self.assertEqual((info.tpm_version, info.startup_locality, info.vendor), ("2.0", 3, "IBM"))
        # TPM 1.2: TPM_CAP_VERSION_INFO, tag 0x0030
        old = TpmVersionInfo(H("0030 01 02 0000 0000 00 49424d00 0000"))
        self.assertEqual((old.tpm_version, old.startup_locality), ("1.2", None))
        self.assertIsNone(TpmVersionInfo(b"").tpm_version)


class PtsErrorTests(unittest.TestCase):
    """PTS errors are PA-TNC Error attributes (IETF type 8) with the TCG as error code vendor."""

    def test_hash_algorithm_not_supported(self):
        # flags 0, vendor IETF, type 8, length 12 + 12; reserved 8 + TCG vendor, code 1, 16 reserved + set
        self.assertEqual(hash_algorithm_not_supported_error(PtsHashAlgorithm.SHA256).build(),
                         H("00 000000 00000008 00000018 00 005597 00000001 0000 4000"))

    def test_dh_group_and_nonce_length(self):
        self.assertEqual(dh_group_not_supported_error(PtsDhGroup.ECP_256).build()[12:],
                         H("00 005597 00000006 0000 1000"))
        self.assertEqual(bad_nonce_length_error(17, 255).build()[12:], H("00 005597 00000007 0011 00ff"))

    def test_parsed_back_as_pts_errors(self):
        attribute = parse_attribute(bad_nonce_length_error(17, 255).build(), 0)[0]
        self.assertIsInstance(attribute, PaTncErrorAttribute)
        self.assertTrue(is_pts_error(attribute))
        self.assertEqual((attribute.error_code, attribute.information), (PtsErrorCode.BAD_NONCE_LENGTH,
                                                                        H("0011 00ff")))
        self.assertFalse(is_pts_error(PaTncErrorAttribute.invalid_parameter(bytes(8), 3)))


class RefusalTests(unittest.TestCase):
    """Malformed values are PA-TNC Invalid Parameter errors at the byte that is wrong
    (offsets count from the start of the PA-TNC message: 8-byte header, then 12-byte attribute header)."""

    def refuse(self, attr_type: int, value: bytes) -> PaTncError:
        with self.assertRaises(PaTncError) as caught:
            PaMessage.parse(message(header(False, attr_type, value)))
        self.assertEqual(caught.exception.code, PaTncErrorCode.INVALID_PARAMETER)
        return caught.exception

    def test_fixed_size_attribute_of_other_size_names_its_length(self):
        self.assertEqual(self.refuse(0x01000000, H("000000")).offset, 8 + 8)
        self.assertEqual(self.refuse(0x08000000, bytes(5)).offset, 8 + 8)

    def test_nonce_length_overrunning_the_finish(self):
        # nonce length 9 with 3 bytes left: the Nonce Length field (value byte 1) is named
        self.assertEqual(self.refuse(0x05000000, H("00 09 2000 aabbcc")).offset, 20 + 1)

    def test_response_nonce_truncated(self):
        self.assertEqual(self.refuse(0x04000000, H("000000 10 1000 2000 aabb")).offset, 20 + 8)

    def test_unknown_quote_flags(self):
        self.assertEqual(self.refuse(0x00400000, H("50 00 4000")).offset, 20)

    def test_quote_fields_truncated(self):
        # TPM 2.0 mode, PCR digest length 0x100 with 2 bytes left: the length field at value byte 4
        self.assertEqual(self.refuse(0x00400000, H("10 00 4000 00000100 aabb")).offset, 20 + 4)

    def test_simple_evidence_final_trailing_bytes(self):
        self.assertEqual(self.refuse(0x00400000, H("00 00 0000 ff")).offset, 20 + 4)

    def test_measurement_time_must_be_ascii(self):
        bad_time = b"2026-12-07T12:04:47\xff"
        value = H("00 000000") + BIOS_NAME + H("80 000004 4000 01 00") + bad_time
        self.assertEqual(self.refuse(0x00300000, value).offset, 20 + 20)

    def test_evidence_truncated_before_its_time(self):
        self.assertEqual(self.refuse(0x00300000, H("00 000000") + BIOS_NAME + H("80 000004 4000 01 00")).offset,
                         20 + 20)

    def test_file_count_beyond_the_value(self):
        # 2**63 files cannot fit: refused at the count, without walking them
        self.assertEqual(self.refuse(0x00D00000, H("8000000000000000 0001 0020")).offset, 20)
        self.assertEqual(self.refuse(0x00900000, H("ffffffffffffffff")).offset, 20)

    def test_file_metadata_length_below_its_fixed_part(self):
        value = H("0000000000000001 0010 08 00") + bytes(48)
        self.assertEqual(self.refuse(0x00900000, value).offset, 20 + 8)

    def test_path_must_be_utf8(self):
        self.assertEqual(self.refuse(0x00C00000, H("00 00 0001 0000002f 2f ff")).offset, 20 + 9)

    def test_empty_component_request(self):
        self.refuse(0x00100000, b"")
        # the Family and Qualifier byte (value byte 7) is missing
        self.assertEqual(self.refuse(0x00100000, H("10 000000 00902a")).offset, 20 + 7)


# -- what strongSwan sent ----------------------------------------------------------------------------


def pts_attributes(session: str, direction: str) -> list:
    """The PTS attributes of one captured attestation session, in wire order."""
    found = []
    for record in records(f"{ATTESTATION}/{session}.jsonl"):
        if record["layer"] != "pb-tnc" or record["dir"] != direction:
            continue
        batch, pos = bytes.fromhex(record["hex"]), 8
        while pos < len(batch):
            vendor_type, length = struct.unpack_from(">QI", batch, pos)
            value = batch[pos + 12:pos + length]
            if vendor_type & 0xFFFFFFFF == 1 and value[1:4] == H("005597"):
                found.extend(PaMessage.parse(value[12:]).attributes)
            pos += length
    return found


def logged_bytes(text: str, label: str) -> bytes:
    """The hex dump strongSwan logs after ``label: => N bytes @ …``."""
    match = re.search(re.escape(label) + r": => (\d+) bytes @ \S+\n((?:\s+\d+: .*\n)+)", text)
    size = int(match.group(1))
    data = b"".join(bytes.fromhex(line.split(":", 1)[1][:49].replace(" ", "")) for line in match.group(2).splitlines())
    return data[:size]


class CapturedAttestationTests(unittest.TestCase):
    SESSION = "tpm2-bios-ima-allowed"

    def setUp(self):
        self.c2s = pts_attributes(self.SESSION, "c2s")
        self.s2c = pts_attributes(self.SESSION, "s2c")
        self.client_log = log_text(f"{ATTESTATION}/{self.SESSION}.client.log")

    def first(self, attributes, cls):
        return next(a for a in attributes if isinstance(a, cls))

    def test_negotiation(self):
        request = self.first(self.s2c, RequestPtsProtocolCapabilities)
        self.assertTrue(request.noskip)
        self.assertEqual(request.capabilities.letters, ".VDT.")
        self.assertEqual(self.first(self.c2s, PtsMeasurementAlgorithmSelection).algorithms, PtsHashAlgorithm.SHA384)
        dh_request = self.first(self.s2c, DhNonceParametersRequest)
        self.assertEqual((dh_request.min_nonce_length, int(dh_request.groups)), (0, 0xF000))

    def test_nonces_are_those_the_client_logged(self):
        response = self.first(self.c2s, DhNonceParametersResponse)
        finish = self.first(self.s2c, DhNonceFinish)
        self.assertEqual(response.group, PtsDhGroup.ECP_256)
        self.assertEqual(response.nonce, logged_bytes(self.client_log, "responder nonce"))
        self.assertEqual(finish.nonce, logged_bytes(self.client_log, "initiator nonce"))
        self.assertEqual((len(response.public_value), len(finish.public_value)), (64, 64))
        self.assertEqual(finish.algorithm, PtsHashAlgorithm.SHA384)

    def test_tpm_and_aik(self):
        version = self.first(self.c2s, TpmVersionInfo)
        self.assertEqual((version.tpm_version, version.startup_locality, version.vendor), ("2.0", 3, "IBM"))
        aik = self.first(self.c2s, AttestationIdentityKey)
        pem = vector_path(f"{ATTESTATION}/aik-pub.pem").read_text()
        der = base64.b64decode("".join(pem.strip().splitlines()[1:-1]))
        self.assertTrue(aik.naked)
        self.assertEqual(aik.key, der)

    def test_component_evidence(self):
        request = self.first(self.s2c, RequestFunctionalComponentEvidence)
        self.assertEqual([c.name for c in request.components],
                         [ComponentName(PaVendor.ITA_HSR, ItaComponent.IMA, 0x21),
                          ComponentName(PaVendor.ITA_HSR, ItaComponent.IMA, 0x22)])
        evidence = [a for a in self.c2s if isinstance(a, SimpleComponentEvidence)]
        bios = [e for e in evidence if e.component.qualifier == 0x21]
        ima = [e for e in evidence if e.component.qualifier == 0x22]
        self.assertEqual((len(bios), len(ima)), (17, 5))
        self.assertEqual({e.hash_algorithm for e in evidence}, {PtsHashAlgorithm.SHA384})
        self.assertTrue(all(len(e.measurement) == 48 and len(e.pcr_before) == 48 for e in evidence))
        self.assertEqual({e.pcr for e in ima}, {10})
        self.assertEqual([e.policy_uri for e in ima][:2], ["sha384:boot_aggregate", "sha256:/usr/bin/bash"])
        self.assertEqual(ima[0].validation, ComponentValidation.PASSED)
        self.assertIsNotNone(ima[0].measured_at)

    def test_quote(self):
        final = self.first(self.c2s, SimpleEvidenceFinal)
        self.assertEqual((final.quote_mode, final.composite_algorithm), (QuoteMode.TPM2, PtsHashAlgorithm.SHA256))
        self.assertEqual((len(final.pcr_composite), len(final.qualified_signer), len(final.clock_info),
                          len(final.firmware_version), len(final.quote_signature)), (32, 34, 17, 8, 256))
        # TPML_PCR_SELECTION: one bank, SHA-384 (000c), 3 bytes, PCR0-7 and PCR10
        self.assertEqual(final.pcr_selection, H("00000001 000c 03 ff0400"))
        self.assertIsNone(final.evidence_signature)


# -- strategies for test_pa_tnc.py ---------------------------------------------------------------

_u8 = st.integers(0, 0xFF)
_u16 = st.integers(0, 0xFFFF)
_u24 = st.integers(0, 0xFFFFFF)
_u32 = st.integers(0, 0xFFFFFFFF)
_u64 = st.integers(0, 2 ** 64 - 1)
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=24)
_noskip = st.booleans()
_algorithms = st.builds(PtsHashAlgorithm, _u16)
_names = st.builds(ComponentName, _u24, _u32, st.integers(0, 0x3F), st.integers(0, 3))
_times = st.sampled_from([TIME.decode(), "0000-00-00T00:00:00Z", "not a time, at all!!"])


def _tuples(strategy, max_size=4):
    return st.lists(strategy, max_size=max_size).map(tuple)


@st.composite
def _evidence(draw):
    validation = draw(st.sampled_from(ComponentValidation))
    uri = draw(_text) if validation in (ComponentValidation.FAILED, ComponentValidation.PASSED) else ""
    pcr = draw(st.one_of(st.none(), st.integers(0, 64)))
    before = after = None
    if pcr is not None:
        before, after = draw(st.binary(min_size=pcr, max_size=pcr)), draw(st.binary(min_size=pcr, max_size=pcr))
    return SimpleComponentEvidence(
        draw(_names), draw(_u24), draw(st.binary(max_size=64)), draw(_algorithms),
        draw(st.one_of(st.sampled_from(PcrTransform), _u8)), draw(_times), draw(_u24), validation, uri, before,
        after, draw(_u8), noskip=draw(_noskip))


@st.composite
def _file_measurements(draw):
    size = draw(st.integers(0, 64))
    entries = draw(_tuples(st.builds(FileMeasurementEntry, st.binary(min_size=size, max_size=size), _text)))
    return FileMeasurement(draw(_u16), size, entries, noskip=draw(_noskip))


@st.composite
def _final(draw):
    mode = draw(st.sampled_from(QuoteMode))
    blob = st.binary(max_size=40)
    quoted = mode is not QuoteMode.NONE
    tpm2 = mode is QuoteMode.TPM2
    return SimpleEvidenceFinal(
        mode, draw(_algorithms), draw(blob) if quoted else b"", *(draw(blob) if tpm2 else b"" for _ in range(4)),
        draw(blob) if quoted else b"", draw(st.one_of(st.none(), blob)), noskip=draw(_noskip))


_capabilities = st.builds(PtsCapability, st.integers(0, 0x1F))
_groups = st.builds(PtsDhGroup, _u16)
_nonce = st.binary(max_size=64)

PTS_GENERATORS = {
    RequestPtsProtocolCapabilities: st.builds(RequestPtsProtocolCapabilities, _capabilities, noskip=_noskip),
    PtsProtocolCapabilities: st.builds(PtsProtocolCapabilities, _capabilities, noskip=_noskip),
    PtsMeasurementAlgorithmRequest: st.builds(PtsMeasurementAlgorithmRequest, _algorithms, noskip=_noskip),
    PtsMeasurementAlgorithmSelection: st.builds(PtsMeasurementAlgorithmSelection, _algorithms, noskip=_noskip),
    DhNonceParametersRequest: st.builds(DhNonceParametersRequest, _u8, _groups, noskip=_noskip),
    DhNonceParametersResponse: st.builds(DhNonceParametersResponse, _groups, _algorithms, _nonce,
                                         st.binary(max_size=100), noskip=_noskip),
    DhNonceFinish: st.builds(DhNonceFinish, _algorithms, st.binary(max_size=100), _nonce, noskip=_noskip),
    GetTpmVersionInfo: st.builds(GetTpmVersionInfo, noskip=_noskip),
    TpmVersionInfo: st.builds(TpmVersionInfo, st.binary(max_size=30), noskip=_noskip),
    GetAttestationIdentityKey: st.builds(GetAttestationIdentityKey, noskip=_noskip),
    AttestationIdentityKey: st.builds(AttestationIdentityKey, st.binary(max_size=60), st.booleans(),
                                      st.integers(0, 0x7F), noskip=_noskip),
    RequestFunctionalComponentEvidence: st.builds(
        RequestFunctionalComponentEvidence,
        st.lists(st.builds(ComponentRequest, _names, st.builds(ComponentRequestFlag, _u8), _u24), min_size=1,
                 max_size=4).map(tuple), noskip=_noskip),
    GenerateAttestationEvidence: st.builds(GenerateAttestationEvidence, noskip=_noskip),
    SimpleComponentEvidence: _evidence(),
    SimpleEvidenceFinal: _final(),
    RequestFileMeasurement: st.builds(RequestFileMeasurement, _u16, _text, st.booleans(), _u32, noskip=_noskip),
    FileMeasurement: _file_measurements(),
    RequestFileMetadata: st.builds(RequestFileMetadata, _text, st.booleans(), _u8, noskip=_noskip),
    UnixFileMetadata: st.builds(UnixFileMetadata, _tuples(st.builds(
        UnixFileMetadataEntry, _text, st.one_of(st.sampled_from(PtsFileType), _u8), _u64, _u64, _u64, _u64, _u64,
        _u64)), noskip=_noskip),
}
