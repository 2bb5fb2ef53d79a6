"""PA-TNC messages and attributes (RFC 5792 §4).

A PA-TNC message is an 8-byte header (version 1, reserved, message id) and a
list of attributes, each with a 12-byte header: flags (NOSKIP 0x80), vendor
id (24 bits), type (32 bits), length including the header.  Attribute
classes register per (vendor, type); anything unknown parses to
:class:`UnknownAttribute` and round-trips byte for byte.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import ClassVar

PA_TNC_VERSION = 1
MESSAGE_HEADER_SIZE = 8
ATTRIBUTE_HEADER_SIZE = 12
NOSKIP = 0x80

_MSG_HEADER = struct.Struct(">B3xI")
_ATTR_HEADER = struct.Struct(">III")


class PaVendor(enum.IntEnum):
    """Private Enterprise Numbers of the attribute namespaces nac knows."""

    IETF = 0
    TCG = 0x005597
    ITA_HSR = 0x00902A
    PWG = 0x002935


_VENDOR_NAMES = {PaVendor.IETF: "IETF", PaVendor.TCG: "TCG", PaVendor.ITA_HSR: "ITA-HSR",
                 PaVendor.PWG: "PWG"}


def vendor_name(vendor: int) -> str:
    return _VENDOR_NAMES.get(vendor, f"0x{vendor:06x}")


class PaSubtype(enum.IntEnum):
    """IETF PA Subtypes (RFC 5792 §7.2, RFC 8412 for SWIMA)."""

    TESTING = 0
    OPERATING_SYSTEM = 1
    ANTI_VIRUS = 2
    ANTI_SPYWARE = 3
    ANTI_MALWARE = 4
    FIREWALL = 5
    IDPS = 6
    VPN = 7
    NEA_CLIENT = 8
    SWIMA = 9


class PaTncErrorCode(enum.IntEnum):
    """IETF PA-TNC error codes (RFC 5792 §4.2.8)."""

    RESERVED = 0
    INVALID_PARAMETER = 1
    VERSION_NOT_SUPPORTED = 2
    ATTRIBUTE_TYPE_NOT_SUPPORTED = 3


class PaTncError(Exception):
    """A PA-TNC message that cannot be accepted, with the offset that failed.

    ``message_header`` is the first 8 bytes of the offending message (what a
    PA-TNC Error attribute copies back); ``attribute_header`` the 12-byte
    header of the attribute at fault, when there is one.
    """

    def __init__(self, code: PaTncErrorCode, reason: str, *, offset: int = 0,
                 message_header: bytes = b"", attribute_header: bytes | None = None):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.offset = offset
        self.message_header = bytes(message_header[:MESSAGE_HEADER_SIZE]).ljust(MESSAGE_HEADER_SIZE, b"\0")
        self.attribute_header = attribute_header

    def __str__(self) -> str:
        return f"{self.reason} (PA-TNC {self.code.name.replace('_', ' ').title()} at offset {self.offset})"


class ValueError_(Exception):
    """Raised by attribute value parsers: what is wrong and where (relative
    to the attribute value); turned into PaTncError by PaMessage.parse."""

    def __init__(self, reason: str, at: int = 0):
        super().__init__(reason)
        self.at = at


@dataclass(frozen=True, slots=True)
class PaAttribute:
    """Base of every PA-TNC attribute."""

    VENDOR: ClassVar[int]
    TYPE: ClassVar[int]
    NAME: ClassVar[str]
    DEFAULT_NOSKIP: ClassVar[bool] = False

    noskip: bool = field(default=False, kw_only=True)

    @property
    def attr_vendor(self) -> int:
        return self.VENDOR

    @property
    def attr_type(self) -> int:
        return self.TYPE

    @property
    def full_name(self) -> str:
        return f"{vendor_name(self.attr_vendor)}/{self.NAME}"

    def describe(self) -> str:
        return f"'{self.full_name}' 0x{self.attr_vendor:06x}/0x{self.attr_type:08x}"

    def encode_value(self) -> bytes:
        raise NotImplementedError

    def build(self) -> bytes:
        value = self.encode_value()
        return _ATTR_HEADER.pack((NOSKIP << 24 if self.noskip else 0) | self.attr_vendor,
                                 self.attr_type, ATTRIBUTE_HEADER_SIZE + len(value)) + value

    @classmethod
    def parse_value(cls, value: bytes, *, noskip: bool):
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class UnknownAttribute(PaAttribute):
    """An attribute of a type nac does not know, kept as received."""

    NAME: ClassVar[str] = "Unknown"
    vendor: int = 0
    type: int = 0
    value: bytes = b""

    @property
    def attr_vendor(self) -> int:
        return self.vendor

    @property
    def attr_type(self) -> int:
        return self.type

    @property
    def full_name(self) -> str:
        return f"{vendor_name(self.vendor)}/0x{self.type:08x}"

    def encode_value(self) -> bytes:
        return self.value


ATTRIBUTE_REGISTRY: dict[tuple[int, int], type[PaAttribute]] = {}


def register_attribute(cls):
    ATTRIBUTE_REGISTRY[(int(cls.VENDOR), int(cls.TYPE))] = cls
    return cls


@dataclass(frozen=True, slots=True)
class PaMessage:
    """A PA-TNC message (RFC 5792 §4.1)."""

    message_id: int
    attributes: tuple[PaAttribute, ...] = ()
    version: int = PA_TNC_VERSION

    def build(self) -> bytes:
        return _MSG_HEADER.pack(self.version, self.message_id) + b"".join(a.build() for a in self.attributes)

    @classmethod
    def parse(cls, data: bytes, *, max_attributes: int = 10000) -> "PaMessage":
        if not isinstance(data, bytes):
            data = bytes(data)
        header = data[:MESSAGE_HEADER_SIZE]
        if len(data) < MESSAGE_HEADER_SIZE:
            raise PaTncError(PaTncErrorCode.INVALID_PARAMETER,
                             f"{len(data)} bytes insufficient to parse PA-TNC message header",
                             offset=0, message_header=header)
        version, message_id = _MSG_HEADER.unpack_from(data)
        if version != PA_TNC_VERSION:
            raise PaTncError(PaTncErrorCode.VERSION_NOT_SUPPORTED,
                             f"PA-TNC version {version} is not supported", offset=0, message_header=header)
        attributes = []
        pos, total = MESSAGE_HEADER_SIZE, len(data)
        while pos < total:
            if len(attributes) >= max_attributes:
                raise PaTncError(PaTncErrorCode.INVALID_PARAMETER,
                                 f"more than {max_attributes} attributes", offset=pos, message_header=header)
            if total - pos < ATTRIBUTE_HEADER_SIZE:
                raise PaTncError(PaTncErrorCode.INVALID_PARAMETER,
                                 "insufficient bytes for a PA-TNC attribute header", offset=pos,
                                 message_header=header)
            first, atype, length = _ATTR_HEADER.unpack_from(data, pos)
            if length < ATTRIBUTE_HEADER_SIZE or pos + length > total:
                raise PaTncError(PaTncErrorCode.INVALID_PARAMETER,
                                 f"PA-TNC attribute length {length} is invalid", offset=pos + 8,
                                 message_header=header,
                                 attribute_header=data[pos:pos + ATTRIBUTE_HEADER_SIZE])
            noskip = bool(first >> 24 & NOSKIP)
            vendor = first & 0xFFFFFF
            value = data[pos + ATTRIBUTE_HEADER_SIZE:pos + length]
            klass = ATTRIBUTE_REGISTRY.get((vendor, atype))
            if klass is None:
                attributes.append(UnknownAttribute(vendor=vendor, type=atype, value=value, noskip=noskip))
            else:
                try:
                    attr = klass.parse_value(value, noskip=noskip)
                except ValueError_ as exc:
                    raise PaTncError(PaTncErrorCode.INVALID_PARAMETER,
                                     f"invalid {vendor_name(vendor)}/{klass.NAME} attribute: {exc}",
                                     offset=pos + ATTRIBUTE_HEADER_SIZE + exc.at, message_header=header,
                                     attribute_header=data[pos:pos + ATTRIBUTE_HEADER_SIZE]) from None
                attributes.append(attr)
            pos += length
        return cls(message_id=message_id, attributes=tuple(attributes), version=version)

    def unsupported_noskip(self) -> tuple[UnknownAttribute, ...]:
        """Attributes the receiver must refuse: unknown type with NOSKIP set."""
        return tuple(a for a in self.attributes if isinstance(a, UnknownAttribute) and a.noskip)


class Reader:
    """Cursor over an attribute value; every shortfall raises ValueError_
    with the position, so decoders never leak IndexError or struct.error."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _need(self, n: int, what: str) -> int:
        if self.pos + n > len(self.data):
            raise ValueError_(f"{what}: needs {n} bytes, {len(self.data) - self.pos} left", self.pos)
        at = self.pos
        self.pos += n
        return at

    def u8(self, what: str = "field") -> int:
        return self.data[self._need(1, what)]

    def u16(self, what: str = "field") -> int:
        at = self._need(2, what)
        return int.from_bytes(self.data[at:at + 2], "big")

    def u24(self, what: str = "field") -> int:
        at = self._need(3, what)
        return int.from_bytes(self.data[at:at + 3], "big")

    def u32(self, what: str = "field") -> int:
        at = self._need(4, what)
        return int.from_bytes(self.data[at:at + 4], "big")

    def raw(self, n: int, what: str = "field") -> bytes:
        at = self._need(n, what)
        return self.data[at:at + n]

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out

    def text(self, n: int, what: str = "string") -> str:
        at = self.pos
        raw = self.raw(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError_(f"{what} is not UTF-8", at) from None

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def end(self, what: str = "attribute") -> None:
        if self.pos != len(self.data):
            raise ValueError_(f"{len(self.data) - self.pos} trailing bytes in {what}", self.pos)


def utf8(text: str, what: str = "string") -> bytes:
    return text.encode("utf-8")
