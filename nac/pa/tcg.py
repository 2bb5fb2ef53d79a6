"""TCG attributes for IF-M segmentation (TCG IF-M Segmentation Specification):
a receiver announces how large attributes and segments may be; a sender
splits a large attribute into Segment Envelopes and sends the next one on a
Next Segment request."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar

from nac.pa.message import PaAttribute, PaVendor, Reader, ValueError_, register_attribute


class TcgAttributeType(enum.IntEnum):
    MAX_ATTRIBUTE_SIZE_REQUEST = 0x21
    MAX_ATTRIBUTE_SIZE_RESPONSE = 0x22
    SEGMENT_ENVELOPE = 0x23
    NEXT_SEGMENT = 0x24


SEGMENT_MORE = 0x80
NEXT_SEGMENT_CANCEL = 0x80
UNLIMITED = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class _MaxSize(PaAttribute):
    VENDOR: ClassVar[int] = PaVendor.TCG
    DEFAULT_NOSKIP: ClassVar[bool] = True
    max_attribute_size: int = UNLIMITED
    max_segment_size: int = UNLIMITED

    def encode_value(self) -> bytes:
        return struct.pack(">II", self.max_attribute_size, self.max_segment_size)

    @classmethod
    def parse_value(cls, value, *, noskip):
        if len(value) != 8:
            raise ValueError_("length must be 8")
        a, s = struct.unpack(">II", value)
        return cls(max_attribute_size=a, max_segment_size=s, noskip=noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class MaxAttributeSizeRequest(_MaxSize):
    TYPE: ClassVar[int] = TcgAttributeType.MAX_ATTRIBUTE_SIZE_REQUEST
    NAME: ClassVar[str] = "Max Attribute Size Request"


@register_attribute
@dataclass(frozen=True, slots=True)
class MaxAttributeSizeResponse(_MaxSize):
    TYPE: ClassVar[int] = TcgAttributeType.MAX_ATTRIBUTE_SIZE_RESPONSE
    NAME: ClassVar[str] = "Max Attribute Size Response"


@register_attribute
@dataclass(frozen=True, slots=True)
class SegmentEnvelope(PaAttribute):
    """Segment Envelope: flags (MORE), a 24-bit base attribute id, and a
    segment of the base attribute's bytes (the first segment starts with its
    12-byte header)."""

    VENDOR: ClassVar[int] = PaVendor.TCG
    TYPE: ClassVar[int] = TcgAttributeType.SEGMENT_ENVELOPE
    NAME: ClassVar[str] = "Segmentation Envelope"
    DEFAULT_NOSKIP: ClassVar[bool] = True
    base_attribute_id: int = 0
    segment: bytes = b""
    more: bool = False

    def encode_value(self) -> bytes:
        return bytes([SEGMENT_MORE if self.more else 0]) + self.base_attribute_id.to_bytes(3, "big") + self.segment

    @classmethod
    def parse_value(cls, value, *, noskip):
        r = Reader(value)
        flags, base = r.u8("Flags"), r.u24("Base Attribute ID")
        return cls(base_attribute_id=base, segment=r.rest(), more=bool(flags & SEGMENT_MORE), noskip=noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class NextSegment(PaAttribute):
    """Next Segment: ask for the next segment of a base attribute, or cancel."""

    VENDOR: ClassVar[int] = PaVendor.TCG
    TYPE: ClassVar[int] = TcgAttributeType.NEXT_SEGMENT
    NAME: ClassVar[str] = "Next Segment"
    DEFAULT_NOSKIP: ClassVar[bool] = True
    base_attribute_id: int = 0
    cancel: bool = False

    def encode_value(self) -> bytes:
        return bytes([NEXT_SEGMENT_CANCEL if self.cancel else 0]) + self.base_attribute_id.to_bytes(3, "big")

    @classmethod
    def parse_value(cls, value, *, noskip):
        if len(value) != 4:
            raise ValueError_("length must be 4")
        return cls(base_attribute_id=int.from_bytes(value[1:], "big"),
                   cancel=bool(value[0] & NEXT_SEGMENT_CANCEL), noskip=noskip)
