"""PA-TNC messages and attributes (RFC 5792 §4), the attribute registry and errors.

A PA-TNC message is an 8-byte header (Version 1, 24 reserved bits, Message
Identifier) followed by attributes.  Each attribute has a 12-byte header:
Flags (NOSKIP 0x80) + Vendor ID (24 bits), Attribute Type (32), Attribute
Length (32, header included), then its value.

Attribute classes live per vendor namespace (``ietf``, ``swima``, ``tcg``,
``ita``) and register themselves with :func:`register_attribute`; a type
nobody registered parses to :class:`UnknownAttribute`, which keeps its bytes.
Every decoder raises only :class:`PaTncError`, carrying the RFC 5792 §4.2.8
error code and the byte offset inside the PA-TNC message that failed.

Reserved fields are sent as zero and ignored on receipt (RFC 5792 §4.1), so
parse → build is byte-identical for every conformant message, and for any
input that parses, parse(build(parse(x))) == parse(x).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any, ClassVar, TypeVar

from nac.tnc_tlv import NOSKIP, TLV_HEADER, build_tlv

__all__ = [
    "ATTRIBUTE_HEADER_SIZE",
    "ATTRIBUTE_REGISTRY",
    "AttributeReader",
    "MESSAGE_HEADER_SIZE",
    "NOSKIP",
    "PA_TNC_VERSION",
    "PaAttribute",
    "PaMessage",
    "PaSubtype",
    "PaTncError",
    "PaTncErrorCode",
    "PaVendor",
    "RawValueAttribute",
    "UnknownAttribute",
    "attribute_type_name",
    "parse_attribute",
    "register_attribute",
    "register_attribute_names",
    "vendor_name",
]

PA_TNC_VERSION = 1
MESSAGE_HEADER_SIZE = 8
ATTRIBUTE_HEADER_SIZE = 12
#: PEN 0xffffff and attribute type 0xffffffff are reserved (RFC 5792 §4.2).
RESERVED_VENDOR = 0xFFFFFF
RESERVED_TYPE = 0xFFFFFFFF

_MESSAGE_HEADER = struct.Struct(">B3xI")
_ATTRIBUTE_HEADER = TLV_HEADER


class PaTncErrorCode(IntEnum):
    """IETF PA-TNC error codes (RFC 5792 §4.2.8; 4-8 from RFC 8412 §5.16)."""

    RESERVED = 0
    INVALID_PARAMETER = 1
    VERSION_NOT_SUPPORTED = 2
    ATTRIBUTE_TYPE_NOT_SUPPORTED = 3
    SWIMA_ERROR = 4
    SWIMA_SUBSCRIPTION_DENIED_ERROR = 5
    SWIMA_RESPONSE_TOO_LARGE_ERROR = 6
    SWIMA_SUBSCRIPTION_FULFILLMENT_ERROR = 7
    SWIMA_SUBSCRIPTION_ID_REUSE_ERROR = 8


ERROR_CODE_NAMES = {
    PaTncErrorCode.RESERVED: "Reserved",
    PaTncErrorCode.INVALID_PARAMETER: "Invalid Parameter",
    PaTncErrorCode.VERSION_NOT_SUPPORTED: "Version Not Supported",
    PaTncErrorCode.ATTRIBUTE_TYPE_NOT_SUPPORTED: "Attribute Type Not Supported",
    PaTncErrorCode.SWIMA_ERROR: "SWIMA Error",
    PaTncErrorCode.SWIMA_SUBSCRIPTION_DENIED_ERROR: "SWIMA Subscription Denied",
    PaTncErrorCode.SWIMA_RESPONSE_TOO_LARGE_ERROR: "SWIMA Response Too Large",
    PaTncErrorCode.SWIMA_SUBSCRIPTION_FULFILLMENT_ERROR: "SWIMA Subscription Fulfillment Error",
    PaTncErrorCode.SWIMA_SUBSCRIPTION_ID_REUSE_ERROR: "SWIMA Subscription ID Reuse",
}


class PaVendor(IntEnum):
    """SMI Private Enterprise Numbers used as PA-TNC attribute vendor IDs."""

    IETF = 0x000000
    PWG = 0x002935
    TCG = 0x005597
    ITA_HSR = 0x00902A


_VENDOR_NAMES = {
    PaVendor.IETF: "IETF",
    PaVendor.PWG: "PWG",
    PaVendor.TCG: "TCG",
    PaVendor.ITA_HSR: "ITA-HSR",
}


def vendor_name(vendor: int) -> str:
    """The name strongSwan logs for a vendor ID (``ITA-HSR``), or the hex PEN."""
    return _VENDOR_NAMES.get(vendor, f"0x{vendor:06x}")


class PaSubtype(IntEnum):
    """IETF PA Subtypes (RFC 5792 §7.2; SWIMA from RFC 8412 §10)."""

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


# --------------------------------------------------------------------------
# Errors


class PaTncError(Exception):
    """A PA-TNC protocol error (RFC 5792 §4.2.8), the only error decoders raise.

    ``offset`` is the byte offset inside the PA-TNC message that failed;
    ``message_header`` the first 8 bytes of that message and
    ``attribute_header`` the 12-byte header of the attribute concerned, if
    any: what the PA-TNC Error attribute echoes.  ``attribute_type`` is that
    attribute's (vendor, type), for logs and because RFC 5792 §4.2.8 forbids
    answering a malformed PA-TNC Error attribute with another one.
    :func:`nac.pa.errors.error_attribute` gives the IETF PA-TNC Error attribute to send back.
    """

    def __init__(
        self,
        code: PaTncErrorCode | int,
        reason: str = "",
        *,
        offset: int = 0,
        message_header: bytes = b"",
        attribute_header: bytes | None = None,
        attribute_type: tuple[int, int] | None = None,
    ) -> None:
        if code in PaTncErrorCode._value2member_map_:
            code = PaTncErrorCode(code)
        self.code = code
        self.reason = reason
        self.offset = offset
        self.message_header = message_header
        self.attribute_header = attribute_header
        self.attribute_type = attribute_type
        super().__init__(code, reason, offset)

    def __reduce__(self):
        # keyword-only parameters: rebuild from the attributes, not from args
        return (type(self), (self.code, self.reason), self.__dict__.copy())

    def __str__(self) -> str:
        what = ERROR_CODE_NAMES.get(self.code) or f"error {int(self.code)}"
        text = f"PA-TNC {what}"
        if self.reason:
            text += f": {self.reason}"
        return f"{text} at byte offset {self.offset}"

    @classmethod
    def invalid_parameter(cls, offset: int, reason: str) -> PaTncError:
        return cls(PaTncErrorCode.INVALID_PARAMETER, reason, offset=offset)

    @property
    def in_error_attribute(self) -> bool:
        """True when the malformed attribute is itself a PA-TNC Error (no reply due)."""
        return self.attribute_type == (PaVendor.IETF, 8)


# --------------------------------------------------------------------------
# Reading and writing attribute values


class AttributeReader:
    """Bounds-checked reads of an attribute value, failing as :class:`PaTncError`.

    ``offset`` is the absolute offset of ``data`` in the PA-TNC message, so
    every error names the byte where the field that does not fit starts.
    """

    __slots__ = ("data", "pos", "base", "what")

    def __init__(self, data: bytes, offset: int, what: str) -> None:
        self.data = data
        self.pos = 0
        self.base = offset
        self.what = what

    @property
    def offset(self) -> int:
        """Absolute offset of the next byte to read."""
        return self.base + self.pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def fail(self, reason: str, at: int | None = None) -> PaTncError:
        return PaTncError.invalid_parameter(self.offset if at is None else at, f"{self.what}: {reason}")

    def raw(self, size: int, name: str) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise self.fail(f"{name} truncated ({self.remaining} of {size} bytes)")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return chunk

    def u8(self, name: str) -> int:
        if self.pos >= len(self.data):
            raise self.fail(f"{name} truncated")
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self, name: str) -> int:
        return int.from_bytes(self.raw(2, name), "big")

    def u24(self, name: str) -> int:
        return int.from_bytes(self.raw(3, name), "big")

    def u32(self, name: str) -> int:
        return int.from_bytes(self.raw(4, name), "big")

    def _prefixed(self, width: int, name: str) -> bytes:
        at = self.pos
        size = int.from_bytes(self.raw(width, f"{name} length"), "big")
        if self.pos + size > len(self.data):
            # the length field is what is wrong: name it
            raise self.fail(f"{name} length {size} overruns the value ({self.remaining} bytes left)", self.base + at)
        self.pos += size
        return self.data[self.pos - size:self.pos]

    def data8(self, name: str) -> bytes:
        return self._prefixed(1, name)

    def data16(self, name: str) -> bytes:
        return self._prefixed(2, name)

    def data32(self, name: str) -> bytes:
        return self._prefixed(4, name)

    def text(self, raw: bytes, name: str, at: int) -> str:
        """``raw`` (found at ``at``) as UTF-8 text without NUL (RFC 5792 §4.2)."""
        return utf8(raw, at, f"{self.what}: {name}")

    def text_rest(self, name: str) -> str:
        at = self.offset
        return self.text(self.rest(), name, at)

    def text8(self, name: str) -> str:
        raw = self.data8(name)
        return self.text(raw, name, self.offset - len(raw))

    def text16(self, name: str) -> str:
        raw = self.data16(name)
        return self.text(raw, name, self.offset - len(raw))

    def text32(self, name: str) -> str:
        raw = self.data32(name)
        return self.text(raw, name, self.offset - len(raw))

    def end(self) -> None:
        """The value must be fully consumed."""
        if self.pos != len(self.data):
            raise self.fail(f"{self.remaining} unexpected bytes after the last field")


def utf8(raw: bytes, at: int, what: str) -> str:
    """``raw`` as UTF-8 text without NUL; ``at`` is its offset, for the error."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise PaTncError.invalid_parameter(at + exc.start, f"{what} is not valid UTF-8") from None
    if "\0" in text:
        raise PaTncError.invalid_parameter(at + raw.index(b"\0"), f"NUL character in {what}")
    return text


def data8(raw: bytes, what: str = "field") -> bytes:
    """``raw`` prefixed with its 8-bit length."""
    if len(raw) > 0xFF:
        raise ValueError(f"{what} is {len(raw)} bytes, at most 255 fit")
    return bytes((len(raw),)) + raw


def data16(raw: bytes, what: str = "field") -> bytes:
    """``raw`` prefixed with its 16-bit length."""
    if len(raw) > 0xFFFF:
        raise ValueError(f"{what} is {len(raw)} bytes, at most 65535 fit")
    return len(raw).to_bytes(2, "big") + raw


def data32(raw: bytes) -> bytes:
    """``raw`` prefixed with its 32-bit length."""
    return len(raw).to_bytes(4, "big") + raw


E = TypeVar("E", bound=IntEnum)


def enum_or_int(enum: type[E], value: int) -> E | int:
    """The registry member for ``value``, or the bare int when unassigned."""
    member = enum._value2member_map_.get(value)
    return value if member is None else member  # type: ignore[return-value]


def fast_constructor(cls: type) -> Callable[..., Any]:
    """A positional constructor for a frozen slotted dataclass, for parsers.

    The generated frozen ``__init__`` goes through ``object.__setattr__`` and
    keyword handling for every field; with thousands of attributes per
    second that dominates parsing, so parsers set the slots directly.
    Arguments come in field order with ``noskip`` last; no defaults.
    """
    names = [f.name for f in fields(cls) if f.init and f.name != "noskip"] + ["noskip"]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def make({', '.join(names)}):", "    obj = _new(_cls)"]
    for name in names:
        namespace[f"_set_{name}"] = getattr(cls, name).__set__
        lines.append(f"    _set_{name}(obj, {name})")
    for f in fields(cls):
        if not f.init:  # e.g. caches: their default
            namespace[f"_set_{f.name}"] = getattr(cls, f.name).__set__
            namespace[f"_default_{f.name}"] = f.default
            lines.append(f"    _set_{f.name}(obj, _default_{f.name})")
    lines.append("    return obj")
    exec("\n".join(lines), namespace)  # the technique dataclasses itself uses for __init__
    return namespace["make"]


# --------------------------------------------------------------------------
# Attributes and registry


A = TypeVar("A", bound="PaAttribute")

ATTRIBUTE_REGISTRY: dict[tuple[int, int], type[PaAttribute]] = {}
_TYPE_NAMES: dict[int, dict[int, str]] = {}


def register_attribute(cls: type[A]) -> type[A]:
    """Class decorator: ``cls`` parses attributes of its (VENDOR, TYPE).

    Apply it above ``@dataclass``; it also gives the class ``_new``, the
    positional fast constructor its ``parse_value`` uses.
    """
    key = (int(cls.VENDOR), int(cls.TYPE))
    known = ATTRIBUTE_REGISTRY.get(key)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise ValueError(f"attribute 0x{key[0]:06x}/0x{key[1]:08x} is already {known.__name__}")
    cls._new = staticmethod(fast_constructor(cls))  # type: ignore[attr-defined]
    ATTRIBUTE_REGISTRY[key] = cls
    _TYPE_NAMES.setdefault(key[0], {})[key[1]] = cls.NAME
    return cls


def register_attribute_names(vendor: int, names: Mapping[int, str]) -> None:
    """Names for logs of attribute types that have no class."""
    table = _TYPE_NAMES.setdefault(int(vendor), {})
    for attr_type, name in names.items():
        table.setdefault(int(attr_type), name)


def attribute_type_name(vendor: int, attr_type: int) -> str:
    """strongSwan's spelling, e.g. ``IETF/Product Information``."""
    name = _TYPE_NAMES.get(vendor, {}).get(attr_type)
    return f"{vendor_name(vendor)}/{name if name is not None else f'0x{attr_type:08x}'}"


@dataclass(frozen=True, slots=True)
class PaAttribute:
    """Common part of every PA-TNC attribute (RFC 5792 §4.2).

    Subclasses set ``VENDOR``/``TYPE``/``NAME`` and implement
    ``encode_value()`` (the value without header) and ``parse_value``.
    ``noskip`` is kept as received, so parse → build is byte-identical;
    classes that strongSwan sends with NOSKIP redeclare its default.
    """

    VENDOR: ClassVar[int]
    TYPE: ClassVar[int]
    NAME: ClassVar[str]

    noskip: bool = field(default=False, kw_only=True)

    # (vendor, type) of this instance; UnknownAttribute overrides both
    @property
    def attr_vendor(self) -> int:
        return self.VENDOR

    @property
    def attr_type(self) -> int:
        return self.TYPE

    @property
    def full_name(self) -> str:
        """e.g. ``IETF/Product Information``."""
        return f"{vendor_name(self.attr_vendor)}/{self.NAME}"

    def describe(self) -> str:
        """strongSwan's log form: ``'IETF/Product Information' 0x000000/0x00000002``."""
        return f"'{self.full_name}' 0x{self.attr_vendor:06x}/0x{self.attr_type:08x}"

    def encode_value(self) -> bytes:
        raise NotImplementedError

    def build(self) -> bytes:
        """The whole attribute: 12-byte header followed by the value."""
        return build_tlv(self.noskip, self.attr_vendor, self.attr_type, self.encode_value())

    @property
    def header(self) -> bytes:
        """The attribute's 12-byte header as built."""
        return self.build()[:ATTRIBUTE_HEADER_SIZE]

    @classmethod
    def parse_value(cls: type[A], value: bytes, *, noskip: bool, offset: int = ATTRIBUTE_HEADER_SIZE) -> A:
        """Parse an attribute value; ``offset`` is where it starts in the message."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class UnknownAttribute(PaAttribute):
    """An attribute of a type nobody registered, kept raw so it round-trips.

    With ``noskip`` set the receiver must refuse the message with Attribute
    Type Not Supported (RFC 5792 §4.2), see :meth:`PaMessage.unsupported_noskip`.
    """

    NAME: ClassVar[str] = "Unknown"

    vendor: int
    type: int
    value: bytes = b""

    @property
    def attr_vendor(self) -> int:
        return self.vendor

    @property
    def attr_type(self) -> int:
        return self.type

    @property
    def full_name(self) -> str:
        return attribute_type_name(self.vendor, self.type)

    def encode_value(self) -> bytes:
        return self.value


_new_unknown = fast_constructor(UnknownAttribute)


@dataclass(frozen=True, slots=True)
class RawValueAttribute(PaAttribute):
    """Base of known attributes whose value stays opaque bytes (tests, padding)."""

    value: bytes = b""

    def encode_value(self) -> bytes:
        return self.value

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        return cls._new(value, noskip)


def parse_attribute(data: bytes, pos: int) -> tuple[PaAttribute, int]:
    """Parse the attribute starting at ``pos``; returns it and the next position.

    Error offsets are relative to the start of ``data`` (the PA-TNC message).
    """
    if len(data) - pos < ATTRIBUTE_HEADER_SIZE:
        raise PaTncError.invalid_parameter(pos, "PA-TNC attribute header truncated")
    flags_vendor, attr_type, length = _ATTRIBUTE_HEADER.unpack_from(data, pos)
    vendor = flags_vendor & 0xFFFFFF
    try:
        if length < ATTRIBUTE_HEADER_SIZE:
            raise PaTncError.invalid_parameter(pos + 8, f"attribute length {length} is shorter than its header")
        end = pos + length
        if end > len(data):
            raise PaTncError.invalid_parameter(pos + 8, f"attribute length {length} overruns the message")
        if vendor == RESERVED_VENDOR:
            raise PaTncError.invalid_parameter(pos + 1, "reserved attribute vendor ID 0xffffff")
        if attr_type == RESERVED_TYPE:
            raise PaTncError.invalid_parameter(pos + 4, "reserved attribute type 0xffffffff")
        cls = ATTRIBUTE_REGISTRY.get((vendor, attr_type))
        value = data[pos + ATTRIBUTE_HEADER_SIZE:end]
        if cls is None:
            return _new_unknown(vendor, attr_type, value, flags_vendor >= 0x80000000), end
        return cls.parse_value(value, noskip=flags_vendor >= 0x80000000, offset=pos + ATTRIBUTE_HEADER_SIZE), end
    except PaTncError as err:
        err.attribute_header = data[pos:pos + ATTRIBUTE_HEADER_SIZE]
        err.attribute_type = (vendor, attr_type)
        raise


# --------------------------------------------------------------------------
# Message


@dataclass(frozen=True, slots=True)
class PaMessage:
    """A PA-TNC message (RFC 5792 §4.1): version, message identifier, attributes.

    A parsed message remembers the bytes it came from (it is immutable):
    ``build()`` returns exactly those, at no cost.
    """

    message_id: int
    attributes: tuple[PaAttribute, ...] = ()
    version: int = PA_TNC_VERSION
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def header(self) -> bytes:
        """The 8-byte PA-TNC message header (what PA-TNC errors echo)."""
        if self._wire is not None:
            return self._wire[:MESSAGE_HEADER_SIZE]
        return _MESSAGE_HEADER.pack(self.version, self.message_id)

    def build(self) -> bytes:
        if self._wire is not None:
            return self._wire
        return _MESSAGE_HEADER.pack(self.version, self.message_id) + b"".join(a.build() for a in self.attributes)

    @classmethod
    def parse(cls, data: bytes, *, max_attributes: int = 10000) -> PaMessage:
        """Parse a whole PA-TNC message; raises only :class:`PaTncError`."""
        if type(data) is not bytes:
            data = bytes(data)
        if len(data) < MESSAGE_HEADER_SIZE:
            raise PaTncError(
                PaTncErrorCode.INVALID_PARAMETER,
                f"PA-TNC message header truncated ({len(data)} bytes)",
                message_header=data.ljust(MESSAGE_HEADER_SIZE, b"\0"),
            )
        version, message_id = _MESSAGE_HEADER.unpack_from(data)
        if version != PA_TNC_VERSION:
            raise PaTncError(
                PaTncErrorCode.VERSION_NOT_SUPPORTED,
                f"PA-TNC version {version} not supported",
                message_header=data[:MESSAGE_HEADER_SIZE],
            )
        attributes: list[PaAttribute] = []
        append, lookup, unpack = attributes.append, ATTRIBUTE_REGISTRY.get, _ATTRIBUTE_HEADER.unpack_from
        pos, total = MESSAGE_HEADER_SIZE, len(data)
        try:
            while pos < total:
                # the common case inline (a PB-PA message is parsed per IMV round
                # trip); anything unusual goes through parse_attribute's checks
                if pos + ATTRIBUTE_HEADER_SIZE <= total and len(attributes) < max_attributes:
                    flags_vendor, attr_type, length = unpack(data, pos)
                    end = pos + length
                    vendor = flags_vendor & 0xFFFFFF
                    if (length >= ATTRIBUTE_HEADER_SIZE and end <= total
                            and vendor != RESERVED_VENDOR and attr_type != RESERVED_TYPE):
                        cls = lookup((vendor, attr_type))
                        value = data[pos + ATTRIBUTE_HEADER_SIZE:end]
                        if cls is None:
                            append(_new_unknown(vendor, attr_type, value, flags_vendor >= 0x80000000))
                        else:
                            try:
                                append(cls.parse_value(value, noskip=flags_vendor >= 0x80000000,
                                                       offset=pos + ATTRIBUTE_HEADER_SIZE))
                            except PaTncError as err:
                                err.attribute_header = data[pos:pos + ATTRIBUTE_HEADER_SIZE]
                                err.attribute_type = (vendor, attr_type)
                                raise
                        pos = end
                        continue
                if len(attributes) >= max_attributes:
                    raise PaTncError.invalid_parameter(pos, f"more than {max_attributes} attributes")
                attribute, pos = parse_attribute(data, pos)
                append(attribute)
        except PaTncError as err:
            err.message_header = data[:MESSAGE_HEADER_SIZE]
            raise
        return _new_message(message_id, tuple(attributes), version, data)

    def unsupported_noskip(self) -> tuple[UnknownAttribute, ...]:
        """Attributes of unknown type with NOSKIP: each needs a PA-TNC error (§4.2)."""
        return tuple(a for a in self.attributes if type(a) is UnknownAttribute and a.noskip)

    def find(self, cls: type[A]) -> tuple[A, ...]:
        """The attributes of class ``cls``, in message order."""
        return tuple(a for a in self.attributes if isinstance(a, cls))


def _new_message(message_id: int, attributes: tuple[PaAttribute, ...], version: int, wire: bytes) -> PaMessage:
    """A parsed message, without re-validation and with the bytes it came from (see fast_constructor)."""
    message = object.__new__(PaMessage)
    _set_message_id(message, message_id)
    _set_attributes(message, attributes)
    _set_version(message, version)
    _set_wire(message, wire)
    return message


_set_message_id = PaMessage.message_id.__set__  # type: ignore[attr-defined]
_set_attributes = PaMessage.attributes.__set__  # type: ignore[attr-defined]
_set_version = PaMessage.version.__set__  # type: ignore[attr-defined]
_set_wire = PaMessage._wire.__set__  # type: ignore[attr-defined]
