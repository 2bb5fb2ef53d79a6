"""IETF PA-TNC attributes 0-12 (RFC 5792 §4.2)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from nac.pa.message import (
    MESSAGE_HEADER_SIZE,
    PaAttribute,
    PaTncErrorCode,
    PaVendor,
    Reader,
    ValueError_,
    register_attribute,
)


class IetfAttributeType(enum.IntEnum):
    TESTING = 0
    ATTRIBUTE_REQUEST = 1
    PRODUCT_INFORMATION = 2
    NUMERIC_VERSION = 3
    STRING_VERSION = 4
    OPERATIONAL_STATUS = 5
    PORT_FILTER = 6
    INSTALLED_PACKAGES = 7
    PA_TNC_ERROR = 8
    ASSESSMENT_RESULT = 9
    REMEDIATION_INSTRUCTIONS = 10
    FORWARDING_ENABLED = 11
    FACTORY_DEFAULT_PASSWORD_ENABLED = 12


T = IetfAttributeType


@dataclass(frozen=True, slots=True)
class _Ietf(PaAttribute):
    VENDOR: ClassVar[int] = PaVendor.IETF


@register_attribute
@dataclass(frozen=True, slots=True)
class Testing(_Ietf):
    """Testing (§4.2.1): free content for tests."""

    TYPE: ClassVar[int] = T.TESTING
    NAME: ClassVar[str] = "Testing"
    content: bytes = b""

    def encode_value(self) -> bytes:
        return self.content

    @classmethod
    def parse_value(cls, value, *, noskip):
        return cls(content=bytes(value), noskip=noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class AttributeRequest(_Ietf):
    """Attribute Request (§4.2.2): the (vendor, type) pairs wanted; each
    entry's reserved flags byte is kept."""

    TYPE: ClassVar[int] = T.ATTRIBUTE_REQUEST
    NAME: ClassVar[str] = "Attribute Request"
    requested: tuple[tuple[int, int], ...] = ()
    flags: tuple[int, ...] = ()

    def encode_value(self) -> bytes:
        flags = self.flags or (0,) * len(self.requested)
        return b"".join(struct.pack(">II", f << 24 | v, t) for f, (v, t) in zip(flags, self.requested))

    @classmethod
    def parse_value(cls, value, *, noskip):
        if len(value) % 8 or not value:
            raise ValueError_("length must be a non-zero multiple of 8")
        req, flags = [], []
        for i in range(0, len(value), 8):
            first, t = struct.unpack_from(">II", value, i)
            req.append((first & 0xFFFFFF, t))
            flags.append(first >> 24)
        return cls(requested=tuple(req), flags=tuple(flags) if any(flags) else (), noskip=noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class ProductInformation(_Ietf):
    """Product Information (§4.2.3)."""

    TYPE: ClassVar[int] = T.PRODUCT_INFORMATION
    NAME: ClassVar[str] = "Product Information"
    vendor_id: int = 0
    product_id: int = 0
    name: str = ""

    def encode_value(self) -> bytes:
        return self.vendor_id.to_bytes(3, "big") + self.product_id.to_bytes(2, "big") + self.name.encode()

    @classmethod
    def parse_value(cls, value, *, noskip):
        r = Reader(value)
        vendor, product = r.u24("Product Vendor ID"), r.u16("Product ID")
        return cls(vendor_id=vendor, product_id=product, name=r.text(r.remaining(), "Product Name"),
                   noskip=noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class NumericVersion(_Ietf):
    """Numeric Version (§4.2.4)."""

    TYPE: ClassVar[int] = T.NUMERIC_VERSION
    NAME: ClassVar[str] = "Numeric Version"
    major: int = 0
    minor: int = 0
    build_number: int = 0
    service_pack_major: int = 0
    service_pack_minor: int = 0

    def encode_value(self) -> bytes:
        return struct.pack(">IIIHH", self.major, self.minor, self.build_number,
                           self.service_pack_major, self.service_pack_minor)

    @classmethod
    def parse_value(cls, value, *, noskip):
        if len(value) != 16:
            raise ValueError_("length must be 16")
        return cls(*struct.unpack(">IIIHH", value), noskip=noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class StringVersion(_Ietf):
    """String Version (§4.2.5): three length-prefixed strings."""

    TYPE: ClassVar[int] = T.STRING_VERSION
    NAME: ClassVar[str] = "String Version"
    version: str = ""
    build_number: str = ""
    configuration: str = ""

    def encode_value(self) -> bytes:
        out = b""
        for s in (self.version, self.build_number, self.configuration):
            raw = s.encode()
            if len(raw) > 255:
                raise ValueError(f"string version field longer than 255 bytes: {s[:20]!r}...")
            out += bytes([len(raw)]) + raw
        return out

    @classmethod
    def parse_value(cls, value, *, noskip):
        r = Reader(value)
        fields = [r.text(r.u8("length"), "version string") for _ in range(3)]
        r.end()
        return cls(*fields, noskip=noskip)


class OperationalStatusCode(enum.IntEnum):
    UNKNOWN = 0
    NOT_INSTALLED = 1
    INSTALLED_NOT_OPERATIONAL = 2
    OPERATIONAL = 3


class OperationalResult(enum.IntEnum):
    UNKNOWN = 0
    SUCCESSFUL = 1
    ERRORED = 2
    UNSUCCESSFUL = 3


@register_attribute
@dataclass(frozen=True, slots=True)
class OperationalStatus(_Ietf):
    """Operational Status (§4.2.6); ``last_use`` is the RFC 3339 string
    ``YYYY-MM-DDTHH:MM:SSZ`` or ``0000-00-00T00:00:00Z`` for never."""

    TYPE: ClassVar[int] = T.OPERATIONAL_STATUS
    NAME: ClassVar[str] = "Operational Status"
    status: int = OperationalStatusCode.UNKNOWN
    result: int = OperationalResult.UNKNOWN
    last_use: str = "0000-00-00T00:00:00Z"
    reserved: int = 0

    def encode_value(self) -> bytes:
        stamp = self.last_use.encode("ascii")
        if len(stamp) != 20:
            raise ValueError(f"last use time must be 20 characters: {self.last_use!r}")
        return struct.pack(">BBH", self.status, self.result, self.reserved) + stamp

    @classmethod
    def parse_value(cls, value, *, noskip):
        if len(value) != 24:
            raise ValueError_("length must be 24")
        status, result, reserved = struct.unpack_from(">BBH", value)
        try:
            stamp = value[4:].decode("ascii")
        except UnicodeDecodeError:
            raise ValueError_("last use is not an RFC 3339 time", 4) from None
        status = OperationalStatusCode(status) if status in OperationalStatusCode._value2member_map_ else status
        result = OperationalResult(result) if result in OperationalResult._value2member_map_ else result
        return cls(status=status, result=result, last_use=stamp, reserved=reserved, noskip=noskip)


@dataclass(frozen=True, slots=True)
class PortEntry:
    protocol: int
    port: int
    blocked: bool = False
    flags: int = 0
    """the reserved bits of the entry's first byte, kept for round trips"""


@register_attribute
@dataclass(frozen=True, slots=True)
class PortFilter(_Ietf):
    """Port Filter (§4.2.7): (blocked, protocol, port) entries."""

    TYPE: ClassVar[int] = T.PORT_FILTER
    NAME: ClassVar[str] = "Port Filter"
    entries: tuple[PortEntry, ...] = ()

    def encode_value(self) -> bytes:
        return b"".join(struct.pack(">BBH", (e.flags & 0xFE) | int(e.blocked), e.protocol, e.port)
                        for e in self.entries)

    @classmethod
    def parse_value(cls, value, *, noskip):
        if len(value) % 4:
            raise ValueError_("length must be a multiple of 4")
        entries = tuple(PortEntry(protocol=p, port=port, blocked=bool(f & 1), flags=f & 0xFE)
                        for f, p, port in struct.iter_unpack(">BBH", value))
        return cls(entries=entries, noskip=noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class InstalledPackages(_Ietf):
    """Installed Packages (§4.2.8 in RFC 5792 numbering §4.2.7): a count and
    (name, version) pairs, each length-prefixed with one byte."""

    TYPE: ClassVar[int] = T.INSTALLED_PACKAGES
    NAME: ClassVar[str] = "Installed Packages"
    packages: tuple[tuple[str, str], ...] = ()
    reserved: int = 0

    def encode_value(self) -> bytes:
        out = bytearray(struct.pack(">HH", self.reserved, len(self.packages)))
        for name, version in self.packages:
            n, v = name.encode(), version.encode()
            if len(n) > 255 or len(v) > 255:
                raise ValueError(f"package name or version longer than 255 bytes: {name[:30]!r}")
            out.append(len(n))
            out += n
            out.append(len(v))
            out += v
        return bytes(out)

    @classmethod
    def parse_value(cls, value, *, noskip):
        # thousands of entries per endpoint: a tight loop instead of Reader calls
        if len(value) < 4:
            raise ValueError_("insufficient bytes for the Installed Packages header")
        reserved, count = struct.unpack_from(">HH", value)
        total, pos, packages = len(value), 4, []
        append = packages.append
        try:
            for _ in range(count):
                end = pos + 1 + value[pos]
                vend = end + 1 + value[end]
                if vend > total:
                    raise IndexError
                append((value[pos + 1:end].decode(), value[end + 1:vend].decode()))
                pos = vend
        except (IndexError, UnicodeDecodeError):
            raise ValueError_(f"package entry {len(packages) + 1} of {count} is truncated or not UTF-8",
                              pos) from None
        if pos != total:
            raise ValueError_(f"{total - pos} trailing bytes after {count} packages", pos)
        return cls(packages=tuple(packages), reserved=reserved, noskip=noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class PaTncErrorAttribute(_Ietf):
    """PA-TNC Error (§4.2.8).

    For the IETF codes 1-3 the information starts with the first 8 bytes of
    the offending message header and then carries the offset (Invalid
    Parameter), the max/min versions (Version Not Supported) or the header of
    the unsupported attribute (Attribute Type Not Supported).
    """

    TYPE: ClassVar[int] = T.PA_TNC_ERROR
    NAME: ClassVar[str] = "PA-TNC Error"
    DEFAULT_NOSKIP: ClassVar[bool] = True
    error_vendor: int = 0
    error_code: int = 0
    message_header: bytes = b""
    offset: int | None = None
    max_version: int | None = None
    min_version: int | None = None
    attribute_header: bytes | None = None
    information: bytes = b""
    """the raw information for other codes and vendors"""

    def encode_value(self) -> bytes:
        head = struct.pack(">II", self.error_vendor & 0xFFFFFF, self.error_code)
        if self.error_vendor == PaVendor.IETF and 1 <= self.error_code <= 3:
            mh = self.message_header
            if self.error_code == PaTncErrorCode.INVALID_PARAMETER:
                return head + mh + struct.pack(">I", self.offset or 0)
            if self.error_code == PaTncErrorCode.VERSION_NOT_SUPPORTED:
                return head + mh + struct.pack(">BBH", self.max_version or 1, self.min_version or 1, 0)
            return head + mh + (self.attribute_header or b"")[:12]
        return head + self.information

    @classmethod
    def parse_value(cls, value, *, noskip):
        r = Reader(value)
        vendor, code = r.u32("Error Code Vendor ID") & 0xFFFFFF, r.u32("Error Code")
        if vendor == PaVendor.IETF and 1 <= code <= 3:
            mh = r.raw(MESSAGE_HEADER_SIZE, "message header copy")
            if code == PaTncErrorCode.INVALID_PARAMETER:
                off = r.u32("Offset")
                r.end()
                return cls(error_vendor=vendor, error_code=code, message_header=mh, offset=off, noskip=noskip)
            if code == PaTncErrorCode.VERSION_NOT_SUPPORTED:
                mx, mn, reserved = r.u8(), r.u8(), r.u16()
                r.end()
                if reserved:
                    raise ValueError_("reserved field must be zero", 14)
                return cls(error_vendor=vendor, error_code=code, message_header=mh,
                           max_version=mx, min_version=mn, noskip=noskip)
            ah = r.raw(12, "attribute header copy")
            r.end()
            return cls(error_vendor=vendor, error_code=code, message_header=mh, attribute_header=ah,
                       noskip=noskip)
        return cls(error_vendor=vendor, error_code=code, information=r.rest(), noskip=noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class AssessmentResult(_Ietf):
    """Assessment Result (§4.2.10): an IF-IMV evaluation result."""

    TYPE: ClassVar[int] = T.ASSESSMENT_RESULT
    NAME: ClassVar[str] = "Assessment Result"
    result: int = 0

    def encode_value(self) -> bytes:
        return struct.pack(">I", self.result)

    @classmethod
    def parse_value(cls, value, *, noskip):
        if len(value) != 4:
            raise ValueError_("length must be 4")
        return cls(result=struct.unpack(">I", value)[0], noskip=noskip)


class RemediationParametersType(enum.IntEnum):
    URI = 1
    STRING = 2


@register_attribute
@dataclass(frozen=True, slots=True)
class RemediationInstructions(_Ietf):
    """Remediation Instructions (§4.2.11): a URI or a string with language."""

    TYPE: ClassVar[int] = T.REMEDIATION_INSTRUCTIONS
    NAME: ClassVar[str] = "Remediation Instructions"
    parameters_vendor: int = 0
    parameters_type: int = RemediationParametersType.STRING
    uri: str | None = None
    string: str | None = None
    language: str = ""
    parameters: bytes = b""

    def encode_value(self) -> bytes:
        head = struct.pack(">II", self.parameters_vendor & 0xFFFFFF, self.parameters_type)
        if self.parameters_vendor == 0 and self.parameters_type == RemediationParametersType.URI:
            return head + (self.uri or "").encode()
        if self.parameters_vendor == 0 and self.parameters_type == RemediationParametersType.STRING:
            s, lang = (self.string or "").encode(), self.language.encode()
            return head + struct.pack(">I", len(s)) + s + bytes([len(lang)]) + lang
        return head + self.parameters

    @classmethod
    def parse_value(cls, value, *, noskip):
        r = Reader(value)
        vendor, ptype = r.u32("Remediation Parameters Vendor ID") & 0xFFFFFF, r.u32("Remediation Parameters Type")
        if vendor == 0 and ptype == RemediationParametersType.URI:
            return cls(parameters_vendor=vendor, parameters_type=ptype,
                       uri=r.text(r.remaining(), "URI"), noskip=noskip)
        if vendor == 0 and ptype == RemediationParametersType.STRING:
            s = r.text(r.u32("Remediation String Length"), "Remediation String")
            lang = r.text(r.u8("Lang Code Length"), "Lang Code")
            r.end()
            return cls(parameters_vendor=vendor, parameters_type=ptype, string=s, language=lang,
                       noskip=noskip)
        return cls(parameters_vendor=vendor, parameters_type=ptype, parameters=r.rest(), noskip=noskip)


class ForwardingStatus(enum.IntEnum):
    DISABLED = 0
    ENABLED = 1
    UNKNOWN = 2


@register_attribute
@dataclass(frozen=True, slots=True)
class ForwardingEnabled(_Ietf):
    """Forwarding Enabled (§4.2.12)."""

    TYPE: ClassVar[int] = T.FORWARDING_ENABLED
    NAME: ClassVar[str] = "Forwarding Enabled"
    status: int = ForwardingStatus.UNKNOWN

    def encode_value(self) -> bytes:
        return struct.pack(">I", self.status)

    @classmethod
    def parse_value(cls, value, *, noskip):
        if len(value) != 4:
            raise ValueError_("length must be 4")
        (status,) = struct.unpack(">I", value)
        return cls(status=ForwardingStatus(status) if status <= 2 else status, noskip=noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class FactoryDefaultPasswordEnabled(_Ietf):
    """Factory Default Password Enabled (§4.2.13): 1 = yes, 0 = no."""

    TYPE: ClassVar[int] = T.FACTORY_DEFAULT_PASSWORD_ENABLED
    NAME: ClassVar[str] = "Factory Default Password Enabled"
    enabled: int = 0

    def encode_value(self) -> bytes:
        return struct.pack(">I", self.enabled)

    @classmethod
    def parse_value(cls, value, *, noskip):
        if len(value) != 4:
            raise ValueError_("length must be 4")
        return cls(enabled=struct.unpack(">I", value)[0], noskip=noskip)
