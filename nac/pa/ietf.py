"""IETF standard PA-TNC attributes 0-12 (RFC 5792 §4.2) and their registries.

Section numbers are RFC 5792's.  Text fields are UTF-8 without NUL; values
outside a registry the RFC closes (operational status, forwarding, boolean
attributes) are refused as Invalid Parameter like strongSwan does, open
registries (assessment results, error codes) keep unknown values as ints.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, NamedTuple

from nac.pa.message import (
    ATTRIBUTE_HEADER_SIZE,
    MESSAGE_HEADER_SIZE,
    PA_TNC_VERSION,
    AttributeReader,
    PaAttribute,
    PaTncError,
    PaTncErrorCode,
    PaVendor,
    RawValueAttribute,
    data8,
    data32,
    enum_or_int,
    register_attribute,
    utf8,
)

__all__ = [
    "AssessmentResult",
    "AssessmentResultCode",
    "AttributeRequest",
    "FactoryDefaultPasswordEnabled",
    "ForwardingEnabled",
    "ForwardingStatus",
    "IetfAttributeType",
    "InstalledPackages",
    "NumericVersion",
    "OperationalResult",
    "OperationalStatus",
    "OperationalStatusCode",
    "PaTncErrorAttribute",
    "PortEntry",
    "PortFilter",
    "ProductInformation",
    "RemediationInstructions",
    "RemediationParametersType",
    "StringVersion",
    "Testing",
]


class IetfAttributeType(IntEnum):
    """IETF PA-TNC attribute types (RFC 5792 §7.2; 13-21 from RFC 8412 §10)."""

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
    SWIMA_REQUEST = 13
    SOFTWARE_IDENTIFIER_INVENTORY = 14
    SOFTWARE_IDENTIFIER_EVENTS = 15
    SOFTWARE_INVENTORY = 16
    SOFTWARE_EVENTS = 17
    SUBSCRIPTION_STATUS_REQUEST = 18
    SUBSCRIPTION_STATUS_RESPONSE = 19
    SOURCE_METADATA_REQUEST = 20
    SOURCE_METADATA_RESPONSE = 21


T = IetfAttributeType

_U32 = struct.Struct(">I")
_NUMERIC_VERSION = struct.Struct(">IIIHH")
_OP_STATUS = struct.Struct(">BB2x")
_PORT_ENTRY = struct.Struct(">BBH")
_TWO_U32 = struct.Struct(">II")
_last_use_ok = re.compile(rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z").fullmatch


def _wrong_size(value: bytes, size: int, offset: int, name: str) -> PaTncError:
    """A fixed-size value of another size: the Attribute Length field is at fault."""
    return PaTncError.invalid_parameter(
        offset - ATTRIBUTE_HEADER_SIZE + 8,
        f"{name} value is {len(value)} bytes, must be {size}",
    )


@dataclass(frozen=True, slots=True)
class _Ietf(PaAttribute):
    VENDOR: ClassVar[int] = PaVendor.IETF


@register_attribute
@dataclass(frozen=True, slots=True)
class Testing(RawValueAttribute):
    """Testing (type 0, §4.2): opaque content for tests, never sent in production."""

    VENDOR: ClassVar[int] = PaVendor.IETF
    TYPE: ClassVar[int] = T.TESTING
    NAME: ClassVar[str] = "Testing"


@register_attribute
@dataclass(frozen=True, slots=True)
class AttributeRequest(_Ietf):
    """Attribute Request (§4.2.1): the (vendor ID, attribute type) pairs wanted.

    Each entry is Reserved (8 bits) + Vendor ID (24) + Attribute Type (32).
    """

    TYPE: ClassVar[int] = T.ATTRIBUTE_REQUEST
    NAME: ClassVar[str] = "Attribute Request"

    requested: tuple[tuple[int, int], ...] = ()

    def encode_value(self) -> bytes:
        return b"".join(_TWO_U32.pack(vendor & 0xFFFFFF, attr_type) for vendor, attr_type in self.requested)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if not value or len(value) % 8:
            raise PaTncError.invalid_parameter(
                offset - 4, f"Attribute Request value is {len(value)} bytes, not a non-zero multiple of 8"
            )
        requested = tuple((v & 0xFFFFFF, t) for v, t in _TWO_U32.iter_unpack(value))
        return cls._new(requested, noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class ProductInformation(_Ietf):
    """Product Information (§4.2.2): Product Vendor ID (SMI PEN), Product ID, Product Name."""

    TYPE: ClassVar[int] = T.PRODUCT_INFORMATION
    NAME: ClassVar[str] = "Product Information"

    vendor_id: int = 0
    product_id: int = 0
    name: str = ""

    def encode_value(self) -> bytes:
        return self.vendor_id.to_bytes(3, "big") + self.product_id.to_bytes(2, "big") + self.name.encode()

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) < 5:
            raise PaTncError.invalid_parameter(offset, "Product Information: vendor and product ID truncated")
        vendor_id = value[0] << 16 | value[1] << 8 | value[2]
        product_id = value[3] << 8 | value[4]
        if vendor_id == 0 and product_id != 0:
            # Product IDs are scoped by their vendor; IETF (0) assigns none
            raise PaTncError.invalid_parameter(offset + 3, "Product Information: Product ID must be 0 "
                                                           "with Product Vendor ID 0")
        return cls._new(vendor_id, product_id, utf8(value[5:], offset + 5, "Product Name"), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class NumericVersion(_Ietf):
    """Numeric Version (§4.2.3): major, minor, build, service pack major/minor."""

    TYPE: ClassVar[int] = T.NUMERIC_VERSION
    NAME: ClassVar[str] = "Numeric Version"

    major: int = 0
    minor: int = 0
    build_number: int = 0
    service_pack_major: int = 0
    service_pack_minor: int = 0

    def encode_value(self) -> bytes:
        return _NUMERIC_VERSION.pack(
            self.major, self.minor, self.build_number, self.service_pack_major, self.service_pack_minor
        )

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) != 16:
            raise _wrong_size(value, 16, offset, "Numeric Version")
        return cls._new(*_NUMERIC_VERSION.unpack(value), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class StringVersion(_Ietf):
    """String Version (§4.2.4): product version, internal build and configuration
    version numbers, each an 8-bit length and UTF-8 text."""

    TYPE: ClassVar[int] = T.STRING_VERSION
    NAME: ClassVar[str] = "String Version"

    version: str = ""
    build_number: str = ""
    configuration: str = ""

    def encode_value(self) -> bytes:
        return (
            data8(self.version.encode(), "Product Version Number")
            + data8(self.build_number.encode(), "Internal Build Number")
            + data8(self.configuration.encode(), "Configuration Version Number")
        )

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        total = len(value)
        if total >= 3:
            end1 = 1 + value[0]
            if end1 < total:
                end2 = end1 + 1 + value[end1]
                if end2 < total and end2 + 1 + value[end2] == total:
                    return cls._new(
                        utf8(value[1:end1], offset + 1, "Product Version Number"),
                        utf8(value[end1 + 1:end2], offset + end1 + 1, "Internal Build Number"),
                        utf8(value[end2 + 1:], offset + end2 + 1, "Configuration Version Number"),
                        noskip,
                    )
        # malformed: the reader names the field that does not fit
        r = AttributeReader(value, offset, "String Version")
        version = r.text8("Product Version Number")
        build_number = r.text8("Internal Build Number")
        configuration = r.text8("Configuration Version Number")
        r.end()
        return cls._new(version, build_number, configuration, noskip)


class OperationalStatusCode(IntEnum):
    """Status field of Operational Status (§4.2.5)."""

    UNKNOWN = 0
    NOT_INSTALLED = 1
    INSTALLED_NOT_OPERATIONAL = 2
    OPERATIONAL = 3


class OperationalResult(IntEnum):
    """Result field of Operational Status (§4.2.5)."""

    UNKNOWN = 0
    SUCCESSFUL = 1
    ERRORED = 2
    UNSUCCESSFUL = 3


_OP_STATUS_CODES = tuple(OperationalStatusCode)
_OP_RESULTS = tuple(OperationalResult)

#: Last Use value meaning "never used / unknown" (§4.2.5).
NEVER_USED = "0000-00-00T00:00:00Z"


@register_attribute
@dataclass(frozen=True, slots=True)
class OperationalStatus(_Ietf):
    """Operational Status (§4.2.5): status, result of the last use, and the
    time of last use as an RFC 3339 string ``YYYY-MM-DDTHH:MM:SSZ``."""

    TYPE: ClassVar[int] = T.OPERATIONAL_STATUS
    NAME: ClassVar[str] = "Operational Status"

    status: OperationalStatusCode = OperationalStatusCode.UNKNOWN
    result: OperationalResult = OperationalResult.UNKNOWN
    last_use: str = NEVER_USED

    def encode_value(self) -> bytes:
        stamp = self.last_use.encode("ascii")
        if len(stamp) != 20:
            raise ValueError(f"Last Use must be 20 characters (YYYY-MM-DDTHH:MM:SSZ): {self.last_use!r}")
        return _OP_STATUS.pack(self.status, self.result) + stamp

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) != 24:
            raise _wrong_size(value, 24, offset, "Operational Status")
        status, result = value[0], value[1]
        if status > 3:
            raise PaTncError.invalid_parameter(offset, f"Operational Status: unknown status {status}")
        if result > 3:
            raise PaTncError.invalid_parameter(offset + 1, f"Operational Status: unknown result {result}")
        stamp = value[4:]
        if not _last_use_ok(stamp):
            raise PaTncError.invalid_parameter(offset + 4, "Operational Status: Last Use is not YYYY-MM-DDTHH:MM:SSZ")
        return cls._new(_OP_STATUS_CODES[status], _OP_RESULTS[result], stamp.decode("ascii"), noskip)


class PortEntry(NamedTuple):
    """One Port Filter entry: IP protocol number (6 TCP, 17 UDP), port, blocked?"""

    protocol: int
    port: int
    blocked: bool = False


_new_tuple = tuple.__new__


@register_attribute
@dataclass(frozen=True, slots=True)
class PortFilter(_Ietf):
    """Port Filter (§4.2.6): Reserved (7 bits) + B flag, Protocol, Port Number per entry.

    strongSwan's Scanner IMC sends it with NOSKIP, hence the default.
    """

    TYPE: ClassVar[int] = T.PORT_FILTER
    NAME: ClassVar[str] = "Port Filter"

    entries: tuple[PortEntry, ...] = ()
    noskip: bool = field(default=True, kw_only=True)

    def encode_value(self) -> bytes:
        pack = _PORT_ENTRY.pack
        return b"".join(pack(1 if e.blocked else 0, e.protocol, e.port) for e in self.entries)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) % 4:
            raise PaTncError.invalid_parameter(
                offset - 4, f"Port Filter value is {len(value)} bytes, not a multiple of 4"
            )
        # tuple.__new__ skips PortEntry.__new__, a Python-level call per entry
        entries = [_new_tuple(PortEntry, (protocol, port, flags & 1 == 1))
                   for flags, protocol, port in _PORT_ENTRY.iter_unpack(value)]
        return cls._new(tuple(entries), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class InstalledPackages(_Ietf):
    """Installed Packages (§4.2.7).

    Reserved (16 bits), Package Count (16), then per package an 8-bit length
    and name and an 8-bit length and version.  ``packages`` holds
    (name, version) pairs.
    """

    TYPE: ClassVar[int] = T.INSTALLED_PACKAGES
    NAME: ClassVar[str] = "Installed Packages"

    packages: tuple[tuple[str, str], ...] = ()
    _value: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _digest: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def encode_value(self) -> bytes:
        # a collector sends the same list in assessment after assessment
        if self._value is None:
            _set_installed_value(self, self._encode())
        return self._value

    @property
    def digest(self) -> bytes:
        """A digest of the list as it is encoded (names and versions with
        their lengths, so it names the list exactly): what a verifier can
        remember a verdict on the list by."""
        if self._digest is None:
            _set_installed_digest(self, _packages_digest(self.encode_value()))
        return self._digest

    def _encode(self) -> bytes:
        if len(self.packages) > 0xFFFF:
            raise ValueError(f"{len(self.packages)} packages, at most 65535 fit in one attribute")
        out = bytearray(4)
        out[2:4] = len(self.packages).to_bytes(2, "big")
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
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        # Hosts installed from one image send the same list again and again:
        # the same bytes parse to the same packages, so the last lists seen
        # are looked up by digest instead of walked again.
        digest = _packages_digest(value)
        packages = _PARSED_LISTS.get(digest)
        if packages is None:
            packages = cls._walk(value, offset)
            _PARSED_LISTS[digest] = packages
            while len(_PARSED_LISTS) > PARSED_LISTS_KEPT:
                del _PARSED_LISTS[next(iter(_PARSED_LISTS))]
        attribute = cls._new(packages, noskip)
        _set_installed_digest(attribute, digest)
        return attribute

    @staticmethod
    def _walk(value: bytes, offset: int) -> tuple[tuple[str, str], ...]:
        # ~750 entries from a Debian endpoint: one tight loop, checks after it
        total = len(value)
        if total < 4:
            raise PaTncError.invalid_parameter(offset, "Installed Packages: header truncated")
        count = value[2] << 8 | value[3]
        packages: list[tuple[str, str]] = []
        append = packages.append
        pos = 4
        # Package lists are nearly always ASCII: then slicing one string
        # decoded as latin-1 (one character per byte, so the same offsets)
        # gives the same texts as decoding each name and version, for less.
        ascii_only = value[4:].isascii()
        source = value.decode("latin-1") if ascii_only else value
        try:
            for _ in range(count):
                end = pos + 1 + value[pos]
                vend = end + 1 + value[end]
                if vend > total:
                    break
                name, version = source[pos + 1:end], source[end + 1:vend]
                append((name, version) if ascii_only else (name.decode(), version.decode()))
                pos = vend
        except (IndexError, UnicodeDecodeError):
            pass
        # zero bytes past the header are length bytes of empty texts, or NULs in a text
        zeros = value.count(0, 4)
        if (len(packages) != count or pos != total
                or zeros and zeros != sum(not name for name, _ in packages) + sum(not v for _, v in packages)):
            # something is off: walk again field by field to name it
            r = AttributeReader(value, offset, "Installed Packages")
            r.pos = 4
            for index in range(count):
                r.text8(f"name of package {index + 1} of {count}")
                r.text8(f"version of package {index + 1} of {count}")
            r.end()
        return tuple(packages)


#: Installed Packages lists remembered by the digest of their bytes (each
#: entry holds one host's list: a few hundred KB for thousands of packages).
PARSED_LISTS_KEPT = 32
_PARSED_LISTS: dict[bytes, tuple[tuple[str, str], ...]] = {}


def _packages_digest(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=16).digest()


_set_installed_digest = InstalledPackages._digest.__set__  # type: ignore[attr-defined]
_set_installed_value = InstalledPackages._value.__set__  # type: ignore[attr-defined]


@register_attribute
@dataclass(frozen=True, slots=True)
class PaTncErrorAttribute(_Ietf):
    """PA-TNC Error (§4.2.8): Reserved (8) + Error Code Vendor ID (24), Error
    Code (32), Error Information.

    For IETF codes 1-3 the information is the first 8 bytes of the refused
    message (``message_header``) followed by, for Invalid Parameter, the
    ``offset`` of the bad field; for Version Not Supported ``max_version``,
    ``min_version`` and 16 reserved bits; for Attribute Type Not Supported
    the refused attribute's Flags + Vendor ID and Attribute Type
    (``attribute_header``, 8 bytes).  Any other information, and anything
    after those fields, stays in ``information``.  The SWIMA error codes
    (RFC 8412 §5.16) are read through ``request_id`` / ``description``.
    """

    TYPE: ClassVar[int] = T.PA_TNC_ERROR
    NAME: ClassVar[str] = "PA-TNC Error"

    error_vendor: int = PaVendor.IETF
    error_code: PaTncErrorCode | int = PaTncErrorCode.INVALID_PARAMETER
    message_header: bytes = b""
    offset: int | None = None
    max_version: int | None = None
    min_version: int | None = None
    attribute_header: bytes | None = None
    information: bytes = b""

    # -- constructors, one per IETF error code --------------------------------

    @classmethod
    def invalid_parameter(cls, message_header: bytes, offset: int) -> PaTncErrorAttribute:
        return cls(PaVendor.IETF, PaTncErrorCode.INVALID_PARAMETER, _header8(message_header), offset=offset)

    @classmethod
    def version_not_supported(
        cls, message_header: bytes, max_version: int = PA_TNC_VERSION, min_version: int = PA_TNC_VERSION
    ) -> PaTncErrorAttribute:
        return cls(
            PaVendor.IETF, PaTncErrorCode.VERSION_NOT_SUPPORTED, _header8(message_header),
            max_version=max_version, min_version=min_version,
        )

    @classmethod
    def attribute_type_not_supported(cls, message_header: bytes, attribute_header: bytes) -> PaTncErrorAttribute:
        """``attribute_header``: the refused attribute's header (its first 8 bytes are kept)."""
        if len(attribute_header) < 8:
            raise ValueError("attribute header must hold at least Flags, Vendor ID and Attribute Type")
        return cls(
            PaVendor.IETF, PaTncErrorCode.ATTRIBUTE_TYPE_NOT_SUPPORTED, _header8(message_header),
            attribute_header=bytes(attribute_header[:8]),
        )

    @classmethod
    def swima_error(
        cls,
        code: PaTncErrorCode | int,
        request_id: int,
        description: str = "",
        *,
        max_allowed_size: int | None = None,
    ) -> PaTncErrorAttribute:
        """A SWIMA error (RFC 8412 §5.16): Request ID copy, [max size,] description."""
        info = _U32.pack(request_id)
        if code == PaTncErrorCode.SWIMA_RESPONSE_TOO_LARGE_ERROR:
            info += _U32.pack(max_allowed_size or 0)
        return cls(PaVendor.IETF, code, information=info + description.encode())

    # -- views ----------------------------------------------------------------

    @property
    def is_pa_tnc_message_error(self) -> bool:
        """IETF codes 1-3, about a whole PA-TNC message (what strongSwan treats as fatal)."""
        return self.error_vendor == PaVendor.IETF and 1 <= self.error_code <= 3

    @property
    def unsupported_vendor(self) -> int | None:
        return None if self.attribute_header is None else int.from_bytes(self.attribute_header[1:4], "big")

    @property
    def unsupported_type(self) -> int | None:
        return None if self.attribute_header is None else int.from_bytes(self.attribute_header[4:8], "big")

    @property
    def unsupported_flags(self) -> int | None:
        return None if self.attribute_header is None else self.attribute_header[0]

    @property
    def _swima(self) -> bool:
        return self.error_vendor == PaVendor.IETF and self.error_code in (4, 5, 6, 8)

    @property
    def request_id(self) -> int | None:
        """SWIMA errors: the Request ID of the refused SWIMA Request."""
        if self._swima and len(self.information) >= 4:
            return _U32.unpack_from(self.information)[0]
        return None

    @property
    def max_allowed_size(self) -> int | None:
        """SWIMA Response Too Large: the largest response the endpoint may send."""
        if self.error_code == PaTncErrorCode.SWIMA_RESPONSE_TOO_LARGE_ERROR and len(self.information) >= 8:
            return _U32.unpack_from(self.information, 4)[0]
        return None

    @property
    def description(self) -> str | None:
        """SWIMA errors: the human-readable description."""
        if not self._swima:
            return None
        start = 8 if self.error_code == PaTncErrorCode.SWIMA_RESPONSE_TOO_LARGE_ERROR else 4
        return self.information[start:].decode("utf-8", "replace")

    # -- wire -----------------------------------------------------------------

    def encode_value(self) -> bytes:
        head = _TWO_U32.pack(self.error_vendor & 0xFFFFFF, self.error_code)
        if not self.is_pa_tnc_message_error:
            return head + self.information
        header = _header8(self.message_header)
        if self.error_code == PaTncErrorCode.INVALID_PARAMETER:
            detail = _U32.pack(self.offset or 0)
        elif self.error_code == PaTncErrorCode.VERSION_NOT_SUPPORTED:
            detail = bytes((
                PA_TNC_VERSION if self.max_version is None else self.max_version,
                PA_TNC_VERSION if self.min_version is None else self.min_version,
                0, 0,
            ))
        else:
            detail = (self.attribute_header or b"")[:8].ljust(8, b"\0")
        return head + header + detail + self.information

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, "PA-TNC Error")
        vendor = r.u32("Error Code Vendor ID") & 0xFFFFFF
        code = r.u32("Error Code")
        if vendor == PaVendor.IETF:
            code = enum_or_int(PaTncErrorCode, code)
        if not (vendor == PaVendor.IETF and 1 <= code <= 3):
            return cls._new(vendor, code, b"", None, None, None, None, r.rest(), noskip)
        header = r.raw(MESSAGE_HEADER_SIZE, "message header copy")
        error_offset = max_version = min_version = attribute_header = None
        if code == PaTncErrorCode.INVALID_PARAMETER:
            error_offset = r.u32("Offset")
        elif code == PaTncErrorCode.VERSION_NOT_SUPPORTED:
            max_version, min_version = r.u8("Max Version"), r.u8("Min Version")
            r.raw(2, "Reserved")
        else:
            attribute_header = r.raw(8, "attribute header copy")
        return cls._new(vendor, code, header, error_offset, max_version, min_version, attribute_header,
                        r.rest(), noskip)


def _header8(header: bytes) -> bytes:
    return bytes(header[:MESSAGE_HEADER_SIZE]).ljust(MESSAGE_HEADER_SIZE, b"\0")


class AssessmentResultCode(IntEnum):
    """Assessment Result values (§4.2.9, the IF-IMV evaluation results)."""

    COMPLIANT = 0
    NON_COMPLIANT_MINOR = 1
    NON_COMPLIANT_MAJOR = 2
    ERROR = 3
    DONT_KNOW = 4


@register_attribute
@dataclass(frozen=True, slots=True)
class AssessmentResult(_Ietf):
    """Assessment Result (§4.2.9): one IMV's verdict, a 32-bit result code."""

    TYPE: ClassVar[int] = T.ASSESSMENT_RESULT
    NAME: ClassVar[str] = "Assessment Result"

    result: AssessmentResultCode | int = AssessmentResultCode.DONT_KNOW

    def encode_value(self) -> bytes:
        return _U32.pack(self.result)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) != 4:
            raise _wrong_size(value, 4, offset, "Assessment Result")
        return cls._new(enum_or_int(AssessmentResultCode, _U32.unpack(value)[0]), noskip)


class RemediationParametersType(IntEnum):
    """IETF Remediation Parameters Types (RFC 5793 §4.8, used by §4.2.10)."""

    URI = 1
    STRING = 2


@register_attribute
@dataclass(frozen=True, slots=True)
class RemediationInstructions(_Ietf):
    """Remediation Instructions (§4.2.10): Reserved (8) + Remediation
    Parameters Vendor ID (24), Remediation Parameters Type (32), parameters.

    IETF URI fills ``uri``; IETF String (32-bit length, UTF-8 text, 8-bit
    length, language code) fills ``string`` and ``language``; any other
    type keeps its raw ``parameters``.
    """

    TYPE: ClassVar[int] = T.REMEDIATION_INSTRUCTIONS
    NAME: ClassVar[str] = "Remediation Instructions"

    parameters_vendor: int = PaVendor.IETF
    parameters_type: int = RemediationParametersType.STRING
    uri: str | None = None
    string: str | None = None
    language: str = ""
    parameters: bytes = b""

    @classmethod
    def for_uri(cls, uri: str) -> RemediationInstructions:
        return cls(PaVendor.IETF, RemediationParametersType.URI, uri=uri)

    @classmethod
    def for_string(cls, string: str, language: str = "") -> RemediationInstructions:
        return cls(PaVendor.IETF, RemediationParametersType.STRING, string=string, language=language)

    def encode_value(self) -> bytes:
        head = _TWO_U32.pack(self.parameters_vendor & 0xFFFFFF, self.parameters_type)
        if self.parameters_vendor == PaVendor.IETF:
            if self.parameters_type == RemediationParametersType.URI and self.uri is not None:
                return head + self.uri.encode()
            if self.parameters_type == RemediationParametersType.STRING and self.string is not None:
                return head + data32(self.string.encode()) + data8(self.language.encode(), "Lang Code")
        return head + self.parameters

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, "Remediation Instructions")
        vendor = r.u32("Remediation Parameters Vendor ID") & 0xFFFFFF
        rp_type = enum_or_int(RemediationParametersType, r.u32("Remediation Parameters Type"))
        if vendor == PaVendor.IETF and rp_type == RemediationParametersType.URI:
            return cls._new(vendor, rp_type, r.text_rest("Remediation URI"), None, "", b"", noskip)
        if vendor == PaVendor.IETF and rp_type == RemediationParametersType.STRING:
            string = r.text32("Remediation String")
            language = r.text8("Lang Code")
            r.end()
            return cls._new(vendor, rp_type, None, string, language, b"", noskip)
        return cls._new(vendor, rp_type, None, None, "", r.rest(), noskip)


class ForwardingStatus(IntEnum):
    """Forwarding Enabled values (§4.2.11)."""

    DISABLED = 0
    ENABLED = 1
    UNKNOWN = 2


_FORWARDING = tuple(ForwardingStatus)


@register_attribute
@dataclass(frozen=True, slots=True)
class ForwardingEnabled(_Ietf):
    """Forwarding Enabled (§4.2.11): whether the endpoint forwards IP traffic."""

    TYPE: ClassVar[int] = T.FORWARDING_ENABLED
    NAME: ClassVar[str] = "Forwarding Enabled"

    status: ForwardingStatus = ForwardingStatus.UNKNOWN

    def encode_value(self) -> bytes:
        return _U32.pack(self.status)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) != 4:
            raise _wrong_size(value, 4, offset, "Forwarding Enabled")
        status = int.from_bytes(value, "big")
        if status > 2:
            raise PaTncError.invalid_parameter(offset, f"Forwarding Enabled: unknown value {status}")
        return cls._new(_FORWARDING[status], noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class FactoryDefaultPasswordEnabled(_Ietf):
    """Factory Default Password Enabled (§4.2.12): 32-bit boolean (0 or 1)."""

    TYPE: ClassVar[int] = T.FACTORY_DEFAULT_PASSWORD_ENABLED
    NAME: ClassVar[str] = "Factory Default Password Enabled"

    enabled: bool = False

    def encode_value(self) -> bytes:
        return _U32.pack(1 if self.enabled else 0)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) != 4:
            raise _wrong_size(value, 4, offset, "Factory Default Password Enabled")
        enabled = int.from_bytes(value, "big")
        if enabled > 1:
            raise PaTncError.invalid_parameter(offset, f"Factory Default Password Enabled: {enabled} is not 0 or 1")
        return cls._new(enabled == 1, noskip)
