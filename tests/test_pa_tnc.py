"""PA-TNC messages and attributes: captured strongSwan bytes parse and
rebuild identically; generated values round-trip; random bytes raise only
PaTncError."""

from __future__ import annotations

import base64
import json
import os
import re
import struct
from pathlib import Path

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from nac.pa import PaMessage, PaTncError, PaTncErrorCode, UnknownAttribute, pa_error_reply
from nac.pa.ietf import (
    AssessmentResult,
    AttributeRequest,
    FactoryDefaultPasswordEnabled,
    ForwardingEnabled,
    InstalledPackages,
    NumericVersion,
    OperationalStatus,
    PaTncErrorAttribute,
    PortEntry,
    PortFilter,
    ProductInformation,
    RemediationInstructions,
    StringVersion,
    Testing as IetfTesting,
)
from nac.pa.ita import DeviceId
from nac.pa.swima import SwimaRequest
from nac.pa.tcg import MaxAttributeSizeRequest, MaxAttributeSizeResponse, NextSegment, SegmentEnvelope
from nac.pb import PbBatch, PbPa

VECTORS = Path(os.environ.get("NAC_VECTORS") or Path(__file__).resolve().parents[2] / "shared" / "vectors")


def captured_pa_messages() -> list[tuple[str, bytes]]:
    out = []
    for path in sorted(VECTORS.glob("*/*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec["layer"] == "pb-tnc":
                for m in PbBatch.parse(bytes.fromhex(rec["hex"])).messages:
                    if isinstance(m, PbPa):
                        out.append((path.name, m.body))
            elif rec["layer"] == "tnccs-1.1":
                for b64 in re.findall(r"<Base64>\s*([^<]*?)\s*</Base64>", rec["text"] or ""):
                    out.append((path.name, base64.b64decode(b64)))
    return out


class CapturedTests(unittest.TestCase):
    def setUp(self):
        if not VECTORS.exists():
            raise unittest.SkipTest(f"vectors not found at {VECTORS}")
        self.messages = captured_pa_messages()

    def test_every_captured_message_round_trips(self):
        self.assertGreater(len(self.messages), 40)
        for name, body in self.messages:
            msg = PaMessage.parse(body)
            self.assertEqual(msg.build(), body, name)
            self.assertEqual(msg.unsupported_noskip(), (), name)

    def test_tnccs11_messages_are_included(self):
        self.assertTrue(any(name.startswith("eapol_test-strongswan") for name, _ in self.messages))

    def test_decoded_values_of_the_strongswan_client(self):
        attrs = [a for _, body in self.messages for a in PaMessage.parse(body).attributes]
        by_type = {}
        for a in attrs:
            by_type.setdefault(type(a), []).append(a)
        self.assertEqual(by_type[ProductInformation][0].name, "Debian")
        self.assertEqual(by_type[StringVersion][0].version, "12 x86_64")
        self.assertEqual(by_type[NumericVersion][0].major, 12)
        self.assertEqual(by_type[DeviceId][0].device_id, "3d1219c7c4c5404aaa1f6d2a48adfda4")
        ports = {(e.protocol, e.port) for e in by_type[PortFilter][0].entries}
        self.assertIn((6, 271), ports)
        self.assertGreater(len(by_type[InstalledPackages][0].packages), 700)
        packages = dict(by_type[InstalledPackages][0].packages)
        self.assertEqual(packages["adduser"], "3.134")
        self.assertEqual(by_type[MaxAttributeSizeRequest][0].max_segment_size, 2097080)
        self.assertEqual(by_type[AttributeRequest][0].requested, ((0, 7),))
        self.assertTrue(any(r.string and r.string.startswith("<?xml") for r in by_type[RemediationInstructions]))
        self.assertEqual(by_type[SwimaRequest][0].earliest_eid, 1)


texts = st.text(max_size=40)
u32 = st.integers(0, 2**32 - 1)

ATTRIBUTES = st.one_of(
    st.builds(IetfTesting, content=st.binary(max_size=30)),
    st.builds(AttributeRequest, requested=st.lists(st.tuples(st.integers(0, 2**24 - 1), u32), min_size=1,
                                                   max_size=5).map(tuple)),
    st.builds(ProductInformation, vendor_id=st.integers(0, 2**24 - 1), product_id=st.integers(0, 65535),
              name=texts),
    st.builds(NumericVersion, major=u32, minor=u32, build_number=u32,
              service_pack_major=st.integers(0, 65535), service_pack_minor=st.integers(0, 65535)),
    st.builds(StringVersion, version=texts, build_number=texts, configuration=texts),
    st.builds(OperationalStatus, status=st.integers(0, 3), result=st.integers(0, 3),
              last_use=st.just("2026-11-22T18:08:41Z")),
    st.builds(PortFilter, entries=st.lists(st.builds(PortEntry, protocol=st.integers(0, 255),
                                                     port=st.integers(0, 65535), blocked=st.booleans()),
                                           max_size=8).map(tuple)),
    st.builds(InstalledPackages, packages=st.lists(st.tuples(texts, texts), max_size=8).map(tuple)),
    st.builds(AssessmentResult, result=st.integers(0, 4)),
    st.builds(RemediationInstructions, string=texts, language=st.sampled_from(["en", "de"])),
    st.builds(RemediationInstructions, parameters_type=st.just(1), uri=texts),
    st.builds(ForwardingEnabled, status=st.integers(0, 2)),
    st.builds(FactoryDefaultPasswordEnabled, enabled=st.integers(0, 1)),
    st.builds(DeviceId, device_id=texts),
    st.builds(SegmentEnvelope, base_attribute_id=st.integers(0, 2**24 - 1), segment=st.binary(max_size=40),
              more=st.booleans()),
    st.builds(NextSegment, base_attribute_id=st.integers(0, 2**24 - 1), cancel=st.booleans()),
    st.builds(MaxAttributeSizeResponse, max_attribute_size=u32, max_segment_size=u32),
    st.builds(SwimaRequest, request_id=u32, earliest_eid=u32, identifiers=st.lists(texts, max_size=3).map(tuple)),
    st.builds(UnknownAttribute, vendor=st.integers(1, 2**24 - 1), type=u32, value=st.binary(max_size=20)),
)


class GeneratedTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(ATTRIBUTES, max_size=6), u32)
    def test_round_trip(self, attributes, message_id):
        msg = PaMessage(message_id=message_id, attributes=tuple(attributes))
        data = msg.build()
        self.assertEqual(PaMessage.parse(data), msg)
        self.assertEqual(PaMessage.parse(data).build(), data)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200))
    def test_random_bytes_raise_only_pa_tnc_error(self, data):
        try:
            PaMessage.parse(b"\x01\x00\x00\x00\x00\x00\x00\x01" + data)
        except PaTncError:
            pass

    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def test_mutated_captures_raise_only_pa_tnc_error(self, data):
        if not VECTORS.exists():
            return
        messages = _captures()
        body = bytearray(data.draw(st.sampled_from(messages)))
        for _ in range(data.draw(st.integers(1, 4))):
            pos = data.draw(st.integers(0, len(body) - 1))
            body[pos] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(body)))
        try:
            PaMessage.parse(bytes(body[:cut]))
        except PaTncError:
            pass


_CACHE: list = []


def _captures():
    if not _CACHE:
        _CACHE.extend(body for _, body in captured_pa_messages()[:30])
    return _CACHE


class ErrorTests(unittest.TestCase):
    def test_wrong_version(self):
        with self.assertRaises(PaTncError) as cm:
            PaMessage.parse(b"\x02\x00\x00\x00\x00\x00\x00\x07")
        self.assertEqual(cm.exception.code, PaTncErrorCode.VERSION_NOT_SUPPORTED)
        reply = PaMessage.parse(pa_error_reply(cm.exception))
        (err,) = reply.attributes
        self.assertEqual((err.error_code, err.message_header, err.max_version), (2, b"\x02" + b"\0" * 6 + b"\x07", 1))

    def test_attribute_length_overrun_names_the_offset(self):
        data = struct.pack(">B3xI", 1, 5) + struct.pack(">III", 0, 2, 100) + b"xx"
        with self.assertRaises(PaTncError) as cm:
            PaMessage.parse(data)
        self.assertEqual((cm.exception.code, cm.exception.offset), (PaTncErrorCode.INVALID_PARAMETER, 16))

    def test_malformed_known_attribute_names_its_offset(self):
        data = struct.pack(">B3xI", 1, 5) + struct.pack(">III", 0, 3, 12 + 3) + b"abc"  # numeric version
        with self.assertRaises(PaTncError) as cm:
            PaMessage.parse(data)
        self.assertEqual(cm.exception.offset, 20)
        reply = PaMessage.parse(pa_error_reply(cm.exception))
        self.assertEqual(reply.attributes[0].offset, 20)

    def test_unsupported_noskip_attribute_error_copies_its_header(self):
        data = struct.pack(">B3xI", 1, 5) + struct.pack(">III", 0x80 << 24 | 0xABCD, 9, 12)
        msg = PaMessage.parse(data)
        (bad,) = msg.unsupported_noskip()
        reply = PaMessage.parse(pa_error_reply(msg, unsupported=(bad,), raw=data))
        (err,) = reply.attributes
        self.assertIsInstance(err, PaTncErrorAttribute)
        self.assertEqual((err.error_code, err.attribute_header, err.message_header),
                         (PaTncErrorCode.ATTRIBUTE_TYPE_NOT_SUPPORTED, data[8:20], data[:8]))

    def test_describe_uses_strongswan_naming(self):
        self.assertEqual(ProductInformation().describe(), "'IETF/Product Information' 0x000000/0x00000002")
        self.assertEqual(DeviceId().describe(), "'ITA-HSR/Device ID' 0x00902a/0x00000008")
