"""TCG attributes (PEN 0x005597) of IF-M Segmentation (TCG IF-M Segmentation
Specification), as strongSwan 6 puts them on the wire.

A receiver states the largest attribute and segment it accepts (Max
Attribute Size Request/Response, strongSwan's "segmentation contract"); a
sender splits a larger attribute into Segment Envelopes and sends each next
one when asked with Next Segment.  ``nac.pa.segmentation`` drives that.
Other TCG attribute types (SCAP, SWID) only have names here, for logs,
and parse as :class:`~nac.pa.message.UnknownAttribute`; the PTS attributes
of attestation are in :mod:`nac.pa.tcg_pts`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import ClassVar

from nac.pa.message import (
    ATTRIBUTE_HEADER_SIZE,
    AttributeReader,
    PaAttribute,
    PaTncError,
    PaVendor,
    register_attribute,
    register_attribute_names,
)

__all__ = [
    "NO_LIMIT",
    "MaxAttributeSizeRequest",
    "MaxAttributeSizeResponse",
    "NextSegment",
    "SEGMENT_ENVELOPE_HEADER_SIZE",
    "SegmentEnvelope",
    "SegmentEnvelopeFlag",
    "TcgAttributeType",
]


class TcgAttributeType(IntEnum):
    """TCG PA-TNC attribute types nac names (strongSwan's tcg_attr.h)."""

    SCAP_REFERENCES = 0x00000001
    SCAP_CAPABILITIES_AND_INVENTORY = 0x00000002
    SCAP_CONTENT = 0x00000003
    SCAP_ASSESSMENT = 0x00000004
    SCAP_RESULTS = 0x00000005
    SCAP_SUMMARY_RESULTS = 0x00000006
    SWID_REQUEST = 0x00000011
    SWID_TAG_IDENTIFIER_INVENTORY = 0x00000012
    SWID_TAG_IDENTIFIER_EVENTS = 0x00000013
    SWID_TAG_INVENTORY = 0x00000014
    SWID_TAG_EVENTS = 0x00000015
    SWID_SUBSCRIPTION_STATUS_REQUEST = 0x00000016
    SWID_SUBSCRIPTION_STATUS_RESPONSE = 0x00000017
    MAX_ATTRIBUTE_SIZE_REQUEST = 0x00000021
    MAX_ATTRIBUTE_SIZE_RESPONSE = 0x00000022
    SEGMENT_ENVELOPE = 0x00000023
    NEXT_SEGMENT = 0x00000024
    CANCEL = 0x00000025
    OVERSIZED_MESSAGE = 0x00000026
    CONTRACT_EXEMPTION = 0x00000027
    PTS_REQUEST_PROTOCOL_CAPABILITIES = 0x01000000
    PTS_PROTOCOL_CAPABILITIES = 0x02000000
    PTS_DH_NONCE_PARAMETERS_REQUEST = 0x03000000
    PTS_DH_NONCE_PARAMETERS_RESPONSE = 0x04000000
    PTS_DH_NONCE_FINISH = 0x05000000
    PTS_MEASUREMENT_ALGORITHMS = 0x06000000
    PTS_MEASUREMENT_ALGORITHM_SELECTION = 0x07000000
    PTS_GET_TPM_VERSION_INFO = 0x08000000
    PTS_TPM_VERSION_INFO = 0x09000000
    PTS_GET_AIK = 0x0D000000
    PTS_AIK = 0x0E000000
    PTS_REQUEST_FUNCTIONAL_COMPONENT_EVIDENCE = 0x00100000
    PTS_GENERATE_ATTESTATION_EVIDENCE = 0x00200000
    PTS_SIMPLE_COMPONENT_EVIDENCE = 0x00300000
    PTS_SIMPLE_EVIDENCE_FINAL = 0x00400000
    PTS_VERIFICATION_RESULT = 0x00500000
    PTS_INTEGRITY_REPORT = 0x00600000
    PTS_REQUEST_FILE_METADATA = 0x00700000
    PTS_WINDOWS_FILE_METADATA = 0x00800000
    PTS_UNIX_FILE_METADATA = 0x00900000
    PTS_REQUEST_REGISTRY_VALUE = 0x00A00000
    PTS_REGISTRY_VALUE = 0x00B00000
    PTS_REQUEST_FILE_MEASUREMENT = 0x00C00000
    PTS_FILE_MEASUREMENT = 0x00D00000
    PTS_REQUEST_INTEGRITY_MEASUREMENT_LOG = 0x00E00000
    PTS_INTEGRITY_MEASUREMENT_LOG = 0x00F00000


_T = TcgAttributeType

register_attribute_names(PaVendor.TCG, {
    _T.SCAP_REFERENCES: "SCAP References",
    _T.SCAP_CAPABILITIES_AND_INVENTORY: "SCAP Capabilities and Inventory",
    _T.SCAP_CONTENT: "SCAP Content",
    _T.SCAP_ASSESSMENT: "SCAP Assessment",
    _T.SCAP_RESULTS: "SCAP Results",
    _T.SCAP_SUMMARY_RESULTS: "SCAP Summary Results",
    _T.SWID_REQUEST: "SWID Request",
    _T.SWID_TAG_IDENTIFIER_INVENTORY: "SWID Tag Identifier Inventory",
    _T.SWID_TAG_IDENTIFIER_EVENTS: "SWID Tag Identifier Events",
    _T.SWID_TAG_INVENTORY: "SWID Tag Inventory",
    _T.SWID_TAG_EVENTS: "SWID Tag Events",
    _T.SWID_SUBSCRIPTION_STATUS_REQUEST: "SWID Subscription Status Request",
    _T.SWID_SUBSCRIPTION_STATUS_RESPONSE: "SWID Subscription Status Response",
    _T.CANCEL: "Cancel",
    _T.OVERSIZED_MESSAGE: "Oversized Message",
    _T.CONTRACT_EXEMPTION: "Contract Exemption",
    _T.PTS_REQUEST_PROTOCOL_CAPABILITIES: "Request PTS Protocol Capabilities",
    _T.PTS_PROTOCOL_CAPABILITIES: "PTS Protocol Capabilities",
    _T.PTS_DH_NONCE_PARAMETERS_REQUEST: "DH Nonce Parameters Request",
    _T.PTS_DH_NONCE_PARAMETERS_RESPONSE: "DH Nonce Parameters Response",
    _T.PTS_DH_NONCE_FINISH: "DH Nonce Finish",
    _T.PTS_MEASUREMENT_ALGORITHMS: "PTS Measurement Algorithm Request",
    _T.PTS_MEASUREMENT_ALGORITHM_SELECTION: "PTS Measurement Algorithm",
    _T.PTS_GET_TPM_VERSION_INFO: "Get TPM Version Information",
    _T.PTS_TPM_VERSION_INFO: "TPM Version Information",
    _T.PTS_GET_AIK: "Get Attestation Identity Key",
    _T.PTS_AIK: "Attestation Identity Key",
    _T.PTS_REQUEST_FUNCTIONAL_COMPONENT_EVIDENCE: "Request Functional Component Evidence",
    _T.PTS_GENERATE_ATTESTATION_EVIDENCE: "Generate Attestation Evidence",
    _T.PTS_SIMPLE_COMPONENT_EVIDENCE: "Simple Component Evidence",
    _T.PTS_SIMPLE_EVIDENCE_FINAL: "Simple Evidence Final",
    _T.PTS_VERIFICATION_RESULT: "Verification Result",
    _T.PTS_INTEGRITY_REPORT: "Integrity Report",
    _T.PTS_REQUEST_FILE_METADATA: "Request File Metadata",
    _T.PTS_WINDOWS_FILE_METADATA: "Windows-Style File Metadata",
    _T.PTS_UNIX_FILE_METADATA: "Unix-Style File Metadata",
    _T.PTS_REQUEST_REGISTRY_VALUE: "Request Registry Value",
    _T.PTS_REGISTRY_VALUE: "Registry Value",
    _T.PTS_REQUEST_FILE_MEASUREMENT: "Request File Measurement",
    _T.PTS_FILE_MEASUREMENT: "File Measurement",
    _T.PTS_REQUEST_INTEGRITY_MEASUREMENT_LOG: "Request Integrity Measurement Log",
    _T.PTS_INTEGRITY_MEASUREMENT_LOG: "Integrity Measurement Log",
})

#: Max Attribute Size / Max Segment Size meaning "no limit" / "no segmentation".
NO_LIMIT = 0xFFFFFFFF
#: Flags (8 bits) + Base Attribute ID (24 bits) in front of every segment.
SEGMENT_ENVELOPE_HEADER_SIZE = 4

_SIZES = struct.Struct(">II")


class SegmentEnvelopeFlag(IntFlag):
    """Flags of a Segment Envelope; the low six bits are reserved."""

    MORE = 0x80  # more segments of this base attribute follow
    START = 0x40  # first segment: it begins with the base attribute's header


# strongSwan 6 writes Next Segment's Cancel flag as 0x01 and tests only that
# bit; 0x80 (the bit the other flags here use) is accepted as well.
_CANCEL_SENT = 0x01
_CANCEL_ACCEPTED = 0x81


@dataclass(frozen=True, slots=True)
class _MaxAttributeSize(PaAttribute):
    """Max Attribute Size (32 bits) and Max Segment Size (32 bits).

    ``max_attribute_size``: the largest attribute the sender accepts, whole
    or reassembled; ``max_segment_size``: the largest segment (the data of a
    Segment Envelope after its 4-byte header).  0xffffffff means no limit /
    no segmentation: strongSwan's "no message size limit".
    """

    VENDOR: ClassVar[int] = PaVendor.TCG

    max_attribute_size: int = NO_LIMIT
    max_segment_size: int = NO_LIMIT

    @property
    def segmentation(self) -> bool:
        return self.max_segment_size != NO_LIMIT

    def encode_value(self) -> bytes:
        return _SIZES.pack(self.max_attribute_size, self.max_segment_size)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) != 8:
            raise PaTncError.invalid_parameter(offset - 4, f"{cls.NAME} value is {len(value)} bytes, must be 8")
        return cls._new(*_SIZES.unpack(value), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class MaxAttributeSizeRequest(_MaxAttributeSize):
    """Max Attribute Size Request (TCG 0x21): proposes a segmentation contract."""

    TYPE: ClassVar[int] = TcgAttributeType.MAX_ATTRIBUTE_SIZE_REQUEST
    NAME: ClassVar[str] = "Segmentation Contract Request"


@register_attribute
@dataclass(frozen=True, slots=True)
class MaxAttributeSizeResponse(_MaxAttributeSize):
    """Max Attribute Size Response (TCG 0x22): the contract the responder accepts."""

    TYPE: ClassVar[int] = TcgAttributeType.MAX_ATTRIBUTE_SIZE_RESPONSE
    NAME: ClassVar[str] = "Segmentation Contract Response"


@register_attribute
@dataclass(frozen=True, slots=True)
class SegmentEnvelope(PaAttribute):
    """Segment Envelope (TCG 0x23): Flags (MORE 0x80, START 0x40) + Base
    Attribute ID (24 bits), then one segment of the base attribute.

    The START segment begins with the base attribute's 12-byte header, whose
    length is that of the whole base attribute; later segments carry only
    value bytes.  Every segment but the last has MORE set.
    """

    VENDOR: ClassVar[int] = PaVendor.TCG
    TYPE: ClassVar[int] = TcgAttributeType.SEGMENT_ENVELOPE
    NAME: ClassVar[str] = "Segment Envelope"

    base_attribute_id: int = 0
    segment: bytes = b""
    more: bool = False
    start: bool = False

    @property
    def flags(self) -> SegmentEnvelopeFlag:
        return (SegmentEnvelopeFlag.MORE if self.more else SegmentEnvelopeFlag(0)) | (
            SegmentEnvelopeFlag.START if self.start else SegmentEnvelopeFlag(0)
        )

    def encode_value(self) -> bytes:
        return bytes((self.flags,)) + self.base_attribute_id.to_bytes(3, "big") + self.segment

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, "Segment Envelope")
        flags, base_attribute_id = r.u8("Flags"), r.u24("Base Attribute ID")
        return cls._new(base_attribute_id, r.rest(), bool(flags & 0x80), bool(flags & 0x40), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class NextSegment(PaAttribute):
    """Next Segment (TCG 0x24): Flags (Cancel) + Base Attribute ID (24 bits):
    asks for the next segment of a base attribute, or gives it up."""

    VENDOR: ClassVar[int] = PaVendor.TCG
    TYPE: ClassVar[int] = TcgAttributeType.NEXT_SEGMENT
    NAME: ClassVar[str] = "Next Segment"

    base_attribute_id: int = 0
    cancel: bool = False

    def encode_value(self) -> bytes:
        return bytes((_CANCEL_SENT if self.cancel else 0,)) + self.base_attribute_id.to_bytes(3, "big")

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) != 4:
            raise PaTncError.invalid_parameter(offset - 4, f"Next Segment value is {len(value)} bytes, must be 4")
        return cls._new(int.from_bytes(value[1:], "big"), bool(value[0] & _CANCEL_ACCEPTED), noskip)
