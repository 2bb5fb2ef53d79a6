"""PB-TNC messages (RFC 5793 §4.2-§4.11) and the typed PB-TNC error.

Every message is a small immutable value with a ``parse_value``/``build``
pair that round-trips byte for byte.  ``parse_value`` gets the message value
as ``bytes`` (what follows the 12-byte message header) and the absolute offset of that
value inside the batch, so a malformed field is reported with the batch
offset RFC 5793 §4.9 asks the PB-Error to carry.

The PA message carried by PB-PA stays raw bytes here; ``nac.pa`` parses it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import IntEnum, IntFlag
from typing import Any, ClassVar

from nac.tnc_tlv import NOSKIP, TLV_HEADER, build_tlv

__all__ = [
    "ANY_POSTURE_ID",
    "AccessRecommendation",
    "AssessmentResult",
    "ItaMessageType",
    "ItaMutualCapability",
    "MESSAGE_HEADER_SIZE",
    "MutualProtocol",
    "PaSubtype",
    "PbAccessRecommendation",
    "PbAssessmentResult",
    "PbError",
    "PbErrorCode",
    "PbExperimental",
    "PbLanguagePreference",
    "PbMessage",
    "PbMessageType",
    "PbPa",
    "PbReasonString",
    "PbRemediationParameters",
    "PbTncError",
    "PbVendor",
    "RemediationParametersType",
    "UnknownPbMessage",
    "message_class",
    "parse_message_value",
    "vendor_name",
]

#: Flags (8) + PB-TNC Vendor ID (24), Message Type (32), Message Length (32).
MESSAGE_HEADER_SIZE = 12
#: PEN 0xffffff and type 0xffffffff are reserved and never valid (§4.2, §4.5).
RESERVED_VENDOR = 0xFFFFFF
RESERVED_TYPE = 0xFFFFFFFF
#: Posture Collector / Validator Identifier meaning "unknown / any" (§4.5).
ANY_POSTURE_ID = 0xFFFF
PB_TNC_VERSION = 2

_HEADER = TLV_HEADER
_U32 = struct.Struct(">I")
_U16U16 = struct.Struct(">HH")
_PA_HEADER = struct.Struct(">IIHH")
_ERROR_HEADER = struct.Struct(">IHH")
_VERSIONS = struct.Struct(">BBBB")
_RP_HEADER = struct.Struct(">II")


class PbVendor(IntEnum):
    """SMI Private Enterprise Numbers used as PB-TNC vendor IDs."""

    IETF = 0x000000
    PWG = 0x002935
    TCG = 0x005597
    ITA_HSR = 0x00902A


_VENDOR_NAMES = {
    PbVendor.IETF: "IETF",
    PbVendor.PWG: "PWG",
    PbVendor.TCG: "TCG",
    PbVendor.ITA_HSR: "ITA-HSR",
}


def vendor_name(vendor: int) -> str:
    """The name strongSwan logs for a vendor ID, or the hex PEN."""
    return _VENDOR_NAMES.get(vendor, f"0x{vendor:06x}")


class PbMessageType(IntEnum):
    """IETF PB-TNC message types (RFC 5793 §4.3, IANA registry)."""

    EXPERIMENTAL = 0
    PA = 1
    ASSESSMENT_RESULT = 2
    ACCESS_RECOMMENDATION = 3
    REMEDIATION_PARAMETERS = 4
    ERROR = 5
    LANGUAGE_PREFERENCE = 6
    REASON_STRING = 7


class ItaMessageType(IntEnum):
    """PB-TNC message types in the ITA-HSR namespace (strongSwan)."""

    NOSKIP_TEST = 0
    MUTUAL_CAPABILITY = 1


class PaSubtype(IntEnum):
    """IETF PA Subtypes (RFC 5792 §7.2, RFC 8412), carried in PB-PA."""

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


_PA_SUBTYPE_NAMES = {
    PaSubtype.TESTING: "Testing",
    PaSubtype.OPERATING_SYSTEM: "Operating System",
    PaSubtype.ANTI_VIRUS: "Anti-Virus",
    PaSubtype.ANTI_SPYWARE: "Anti-Spyware",
    PaSubtype.ANTI_MALWARE: "Anti-Malware",
    PaSubtype.FIREWALL: "Firewall",
    PaSubtype.IDPS: "IDPS",
    PaSubtype.VPN: "VPN",
    PaSubtype.NEA_CLIENT: "NEA Client",
    PaSubtype.SWIMA: "SWIMA",
}


class AssessmentResult(IntEnum):
    """PB-Assessment-Result values (RFC 5793 §4.6, = IF-IMV evaluation results)."""

    COMPLIANT = 0
    NON_COMPLIANT_MINOR = 1
    NON_COMPLIANT_MAJOR = 2
    ERROR = 3
    DONT_KNOW = 4


class AccessRecommendation(IntEnum):
    """PB-Access-Recommendation codes (RFC 5793 §4.7)."""

    ALLOWED = 1
    DENIED = 2
    QUARANTINED = 3


class RemediationParametersType(IntEnum):
    """IETF Remediation Parameters Types (RFC 5793 §4.8)."""

    URI = 1
    STRING = 2


class PbErrorCode(IntEnum):
    """IETF PB-TNC error codes (RFC 5793 §4.9)."""

    UNEXPECTED_BATCH_TYPE = 0
    INVALID_PARAMETER = 1
    LOCAL_ERROR = 2
    UNSUPPORTED_MANDATORY_MESSAGE = 3
    VERSION_NOT_SUPPORTED = 4


_ASSESSMENT_RESULTS = {int(v): v for v in AssessmentResult}
_RECOMMENDATIONS = {int(v): v for v in AccessRecommendation}


class MutualProtocol(IntFlag):
    """Protocol bits of the ITA-HSR PB-Mutual-Capability message."""

    HALF_DUPLEX = 1 << 31
    FULL_DUPLEX = 1 << 30


_ERROR_CODE_NAMES = {
    PbErrorCode.UNEXPECTED_BATCH_TYPE: "Unexpected Batch Type",
    PbErrorCode.INVALID_PARAMETER: "Invalid Parameter",
    PbErrorCode.LOCAL_ERROR: "Local Error",
    PbErrorCode.UNSUPPORTED_MANDATORY_MESSAGE: "Unsupported Mandatory Message",
    PbErrorCode.VERSION_NOT_SUPPORTED: "Version Not Supported",
}


class PbTncError(Exception):
    """A PB-TNC protocol error, as RFC 5793 §4.9 lets a peer report it.

    Raised by every decoder in ``nac.pb`` on malformed input (and only this).
    ``offset`` is the byte offset inside the batch that failed; ``to_message``
    gives the PB-Error to send back (in a CLOSE batch when ``fatal``).
    """

    def __init__(
        self,
        code: PbErrorCode | int,
        reason: str = "",
        *,
        offset: int | None = None,
        fatal: bool = True,
        vendor: int = PbVendor.IETF,
        bad_version: int | None = None,
        max_version: int | None = None,
        min_version: int | None = None,
        message_vendor: int | None = None,
        message_type: int | None = None,
    ) -> None:
        if vendor == PbVendor.IETF and code in PbErrorCode._value2member_map_:
            code = PbErrorCode(code)
        self.code = code
        self.reason = reason
        self.offset = offset
        self.fatal = fatal
        self.vendor = vendor
        self.bad_version = bad_version
        self.max_version = max_version
        self.min_version = min_version
        # The offending message's type, for logs (the wire carries its offset).
        self.message_vendor = message_vendor
        self.message_type = message_type
        super().__init__(code, reason, offset)

    def __reduce__(self):
        # keyword-only parameters: rebuild from the attributes, not from args
        return (type(self), (self.code, self.reason), self.__dict__.copy())

    def __str__(self) -> str:
        if self.vendor == PbVendor.IETF and isinstance(self.code, PbErrorCode):
            what = _ERROR_CODE_NAMES[self.code]
        else:
            what = f"error {vendor_name(self.vendor)}/{self.code}"
        text = f"PB-TNC {'fatal ' if self.fatal else ''}{what}"
        if self.reason:
            text += f": {self.reason}"
        if self.offset is not None:
            text += f" at byte offset {self.offset}"
        if self.bad_version is not None:
            text += f" (version {self.bad_version}, supported {self.min_version}..{self.max_version})"
        return text

    def to_message(self) -> PbError:
        """The PB-Error message reporting this error to the peer."""
        return PbError(
            fatal=self.fatal,
            vendor=self.vendor,
            code=self.code,
            offset=self.offset if self.bad_version is None else None,
            bad_version=self.bad_version,
            max_version=self.max_version,
            min_version=self.min_version,
        )

    # -- factories, one per IETF error code ---------------------------------

    @classmethod
    def invalid_parameter(cls, offset: int, reason: str = "", *, fatal: bool = True) -> PbTncError:
        return cls(PbErrorCode.INVALID_PARAMETER, reason, offset=offset, fatal=fatal)

    @classmethod
    def version_not_supported(cls, bad_version: int) -> PbTncError:
        # §4.1: always fatal, answered in a version-2 CLOSE batch.
        return cls(
            PbErrorCode.VERSION_NOT_SUPPORTED,
            "unsupported PB-TNC batch version",
            offset=0,
            bad_version=bad_version,
            max_version=PB_TNC_VERSION,
            min_version=PB_TNC_VERSION,
        )

    @classmethod
    def unsupported_mandatory_message(
        cls, offset: int, message_vendor: int, message_type: int
    ) -> PbTncError:
        # §4.9: the Error Parameters carry the offset of the offending message.
        return cls(
            PbErrorCode.UNSUPPORTED_MANDATORY_MESSAGE,
            f"NOSKIP message 0x{message_vendor:06x}/0x{message_type:08x} not supported",
            offset=offset,
            message_vendor=message_vendor,
            message_type=message_type,
        )

    @classmethod
    def unexpected_batch_type(cls, reason: str = "") -> PbTncError:
        return cls(PbErrorCode.UNEXPECTED_BATCH_TYPE, reason)

    @classmethod
    def local_error(cls, reason: str = "", *, fatal: bool = True) -> PbTncError:
        return cls(PbErrorCode.LOCAL_ERROR, reason, fatal=fatal)


# --------------------------------------------------------------------------
# Message base and registry


@dataclass(frozen=True, slots=True)
class PbMessage:
    """Common part of every PB-TNC message (RFC 5793 §4.2).

    Subclasses set ``VENDOR``/``TYPE``/``NAME`` and implement
    ``encode_value()`` (the message value without header) and
    ``parse_value``.  ``noskip`` is kept as received so that parse → build
    is byte-identical; left out, it takes the type's ``DEFAULT_NOSKIP``.
    """

    VENDOR: ClassVar[int]
    TYPE: ClassVar[int]
    NAME: ClassVar[str]
    #: NOSKIP value strongSwan sends and RFC 5793 requires for this type.
    DEFAULT_NOSKIP: ClassVar[bool] = False
    #: Only allowed in a RESULT batch (§4.6-§4.8, §4.11).
    RESULT_ONLY: ClassVar[bool] = False
    # Whether every value that parses encodes back to the very same bytes:
    # false where the value has reserved bits (encode_value writes zeros), or
    # may have, for types not checked.  A parsed batch made only of such
    # messages keeps its bytes for build() (see PbBatch.parse).
    _REBUILDS_EXACTLY: ClassVar[bool] = False

    # Subclasses whose type is sent with NOSKIP redeclare this field with
    # default True (a field default, not __post_init__, keeps parsing fast).
    noskip: bool = field(default=False, kw_only=True)

    # message type of this instance (UnknownPbMessage overrides both)
    @property
    def msg_vendor(self) -> int:
        return self.VENDOR

    @property
    def msg_type(self) -> int:
        return self.TYPE

    @property
    def full_name(self) -> str:
        """strongSwan's spelling, e.g. ``IETF/PB-PA``."""
        return f"{vendor_name(self.msg_vendor)}/{self.NAME}"

    def encode_value(self) -> bytes:
        raise NotImplementedError

    def build(self) -> bytes:
        """The whole message: 12-byte header followed by the value."""
        return build_tlv(self.noskip, self.msg_vendor, self.msg_type, self.encode_value())

    @property
    def size(self) -> int:
        """Bytes this message takes in a batch (header included)."""
        return MESSAGE_HEADER_SIZE + len(self.encode_value())

    @classmethod
    def parse_value(cls, value: bytes, *, noskip: bool, offset: int = MESSAGE_HEADER_SIZE) -> PbMessage:
        raise NotImplementedError


def fast_constructor(cls: type) -> Callable[..., Any]:
    """A positional constructor for a frozen slotted dataclass, for parsers.

    The generated frozen ``__init__`` sets each slot through
    ``object.__setattr__`` and keyword handling; on the batch hot path that is
    the largest cost, so parsers build values by calling the slot descriptors
    directly.  Arguments come in field order, ``noskip`` last; no defaults.
    """
    names = [f.name for f in fields(cls) if f.name != "noskip"]
    if "noskip" in {f.name for f in fields(cls)}:
        names.append("noskip")
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def make({', '.join(names)}):", "    obj = _new(_cls)"]
    for name in names:
        namespace[f"_set_{name}"] = getattr(cls, name).__set__
        lines.append(f"    _set_{name}(obj, {name})")
    lines.append("    return obj")
    exec("\n".join(lines), namespace)  # same technique dataclasses uses for __init__
    return namespace["make"]


_REGISTRY: dict[tuple[int, int], type[PbMessage]] = {}


def _register(cls: type[PbMessage]) -> type[PbMessage]:
    _REGISTRY[(cls.VENDOR, cls.TYPE)] = cls
    return cls


def message_class(vendor: int, msg_type: int) -> type[PbMessage] | None:
    """The class parsing ``vendor``/``msg_type``, or None when unknown."""
    return _REGISTRY.get((vendor, msg_type))


def parse_message_value(
    vendor: int, msg_type: int, value: bytes, *, noskip: bool, offset: int = MESSAGE_HEADER_SIZE
) -> PbMessage:
    """Parse a message value by type; unknown types give ``UnknownPbMessage``."""
    value = bytes(value)
    cls = _REGISTRY.get((vendor, msg_type))
    if cls is None:
        return UnknownPbMessage(vendor, msg_type, value, noskip=noskip)
    return cls.parse_value(value, noskip=noskip, offset=offset)


def _need(value: bytes, size: int, offset: int, name: str, *, exact: bool = False) -> None:
    n = len(value)
    if n < size or (exact and n != size):
        raise PbTncError.invalid_parameter(
            offset - MESSAGE_HEADER_SIZE + 8,  # the Message Length field
            f"{name} value is {n} bytes, must be {'exactly' if exact else 'at least'} {size}",
        )


def _text(raw: bytes, offset: int, what: str) -> str:
    """UTF-8 text without NUL (RFC 5793 §4.8, §4.10, §4.11)."""
    nul = raw.find(b"\0")
    if nul >= 0:
        raise PbTncError.invalid_parameter(offset + nul, f"NUL character in {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PbTncError.invalid_parameter(offset + exc.start, f"{what} is not valid UTF-8") from None


# --------------------------------------------------------------------------
# IETF messages


@_register
@dataclass(frozen=True, slots=True)
class PbExperimental(PbMessage):
    """PB-Experimental (RFC 5793 §4.4): opaque test payload.

    A NOSKIP PB-Experimental must be refused as an Unsupported Mandatory
    Message (see ``PbBatch.first_unsupported_noskip``).
    """

    VENDOR = PbVendor.IETF
    TYPE = PbMessageType.EXPERIMENTAL
    NAME = "PB-Experimental"
    _REBUILDS_EXACTLY = True  # no reserved field

    body: bytes = b""

    def encode_value(self) -> bytes:
        return self.body

    @classmethod
    def parse_value(cls, value, *, noskip, offset=MESSAGE_HEADER_SIZE):
        return cls(value, noskip=noskip)


@_register
@dataclass(frozen=True, slots=True)
class PbPa(PbMessage):
    """PB-PA (RFC 5793 §4.5): one PA-TNC message for an IMC/IMV pair.

    ``body`` is the raw PA-TNC message (RFC 5792), parsed by ``nac.pa``.
    ``collector_id``/``validator_id`` of 0xffff mean "unknown / any".
    """

    VENDOR = PbVendor.IETF
    TYPE = PbMessageType.PA
    NAME = "PB-PA"
    DEFAULT_NOSKIP = True
    noskip: bool = field(default=True, kw_only=True)

    pa_vendor: int
    pa_subtype: int
    collector_id: int
    validator_id: int
    body: bytes
    exclusive: bool = False

    @property
    def subtype_name(self) -> str:
        """strongSwan's spelling of the PA subtype, e.g. ``IETF/Operating System``."""
        if self.pa_vendor == PbVendor.IETF and self.pa_subtype in _PA_SUBTYPE_NAMES:
            return f"IETF/{_PA_SUBTYPE_NAMES[self.pa_subtype]}"
        return f"{vendor_name(self.pa_vendor)}/0x{self.pa_subtype:08x}"

    def encode_value(self) -> bytes:
        return (
            _PA_HEADER.pack(
                (NOSKIP << 24 if self.exclusive else 0) | self.pa_vendor,
                self.pa_subtype,
                self.collector_id,
                self.validator_id,
            )
            + self.body
        )

    @classmethod
    def parse_value(cls, value, *, noskip, offset=MESSAGE_HEADER_SIZE):
        if len(value) < 12:
            _need(value, 12, offset, "PB-PA")
        first, subtype, collector, validator = _PA_HEADER.unpack_from(value)
        pa_vendor = first & 0xFFFFFF
        if pa_vendor == RESERVED_VENDOR or subtype == RESERVED_TYPE:
            raise pb_pa_header_error(pa_vendor, subtype, offset)
        return make_pa(pa_vendor, subtype, collector, validator, value[12:], first >= 0x80000000, noskip)


def pb_pa_header_error(pa_vendor: int, subtype: int, offset: int) -> PbTncError:
    """The error for a PB-PA header naming a reserved vendor or subtype (§4.5)."""
    if pa_vendor == RESERVED_VENDOR:
        return PbTncError.invalid_parameter(offset + 1, "PA Message Vendor ID 0xffffff is reserved")
    return PbTncError.invalid_parameter(offset + 4, "PA Subtype 0xffffffff is reserved")


@_register
@dataclass(frozen=True, slots=True)
class PbAssessmentResult(PbMessage):
    """PB-Assessment-Result (RFC 5793 §4.6), RESULT batches only."""

    VENDOR = PbVendor.IETF
    TYPE = PbMessageType.ASSESSMENT_RESULT
    NAME = "PB-Assessment-Result"
    _REBUILDS_EXACTLY = True  # no reserved field
    DEFAULT_NOSKIP = True
    noskip: bool = field(default=True, kw_only=True)
    RESULT_ONLY = True

    result: AssessmentResult

    def encode_value(self) -> bytes:
        return _U32.pack(self.result)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=MESSAGE_HEADER_SIZE):
        _need(value, 4, offset, "PB-Assessment-Result", exact=True)
        (code,) = _U32.unpack_from(value)
        result = _ASSESSMENT_RESULTS.get(code)
        if result is None:
            raise PbTncError.invalid_parameter(offset, f"invalid assessment result {code}")
        return _make_assessment_result(result, noskip)


@_register
@dataclass(frozen=True, slots=True)
class PbAccessRecommendation(PbMessage):
    """PB-Access-Recommendation (RFC 5793 §4.7), RESULT batches only."""

    VENDOR = PbVendor.IETF
    TYPE = PbMessageType.ACCESS_RECOMMENDATION
    NAME = "PB-Access-Recommendation"
    RESULT_ONLY = True

    recommendation: AccessRecommendation

    def encode_value(self) -> bytes:
        return _U16U16.pack(0, self.recommendation)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=MESSAGE_HEADER_SIZE):
        _need(value, 4, offset, "PB-Access-Recommendation", exact=True)
        _, code = _U16U16.unpack_from(value)
        recommendation = _RECOMMENDATIONS.get(code)
        if recommendation is None:
            raise PbTncError.invalid_parameter(offset + 2, f"invalid access recommendation {code}")
        return _make_access_recommendation(recommendation, noskip)


@_register
@dataclass(frozen=True, slots=True)
class PbRemediationParameters(PbMessage):
    """PB-Remediation-Parameters (RFC 5793 §4.8), RESULT batches only.

    IETF Remediation-URI fills ``uri``; IETF Remediation-String fills
    ``string`` and ``language``; any other type keeps its raw ``parameters``.
    """

    VENDOR = PbVendor.IETF
    TYPE = PbMessageType.REMEDIATION_PARAMETERS
    NAME = "PB-Remediation-Parameters"
    RESULT_ONLY = True

    rp_vendor: int
    rp_type: int
    uri: str | None = None
    string: str | None = None
    language: str = ""
    parameters: bytes = b""

    @classmethod
    def for_uri(cls, uri: str) -> PbRemediationParameters:
        return cls(PbVendor.IETF, RemediationParametersType.URI, uri=uri)

    @classmethod
    def for_string(cls, string: str, language: str = "") -> PbRemediationParameters:
        return cls(PbVendor.IETF, RemediationParametersType.STRING, string=string, language=language)

    def _parameters(self) -> bytes:
        if self.rp_vendor == PbVendor.IETF:
            if self.rp_type == RemediationParametersType.URI and self.uri is not None:
                return self.uri.encode("utf-8")
            if self.rp_type == RemediationParametersType.STRING and self.string is not None:
                text = self.string.encode("utf-8")
                lang = self.language.encode("utf-8")
                return _U32.pack(len(text)) + text + bytes((len(lang),)) + lang
        return self.parameters

    def encode_value(self) -> bytes:
        return _RP_HEADER.pack(self.rp_vendor, self.rp_type) + self._parameters()

    @classmethod
    def parse_value(cls, value, *, noskip, offset=MESSAGE_HEADER_SIZE):
        _need(value, 8, offset, "PB-Remediation-Parameters")
        rp_vendor, rp_type = _RP_HEADER.unpack_from(value)
        rp_vendor &= 0xFFFFFF  # top byte is Reserved
        params = value[8:]
        at = offset + 8
        if rp_vendor == PbVendor.IETF and rp_type == RemediationParametersType.URI:
            return cls(rp_vendor, rp_type, uri=_text(params, at, "Remediation-URI"), noskip=noskip)
        if rp_vendor == PbVendor.IETF and rp_type == RemediationParametersType.STRING:
            if len(params) < 4:
                raise PbTncError.invalid_parameter(at, "Remediation String Length truncated")
            (n,) = _U32.unpack_from(params)
            if 4 + n + 1 > len(params):
                raise PbTncError.invalid_parameter(at, "Remediation String overruns the message")
            lang_len = params[4 + n]
            if 5 + n + lang_len != len(params):
                raise PbTncError.invalid_parameter(at + 4 + n, "Lang Code Len does not match the message")
            return cls(
                rp_vendor, rp_type,
                string=_text(params[4:4 + n], at + 4, "Remediation String"),
                language=_text(params[5 + n:], at + 5 + n, "Remediation String Lang Code"),
                noskip=noskip,
            )
        return cls(rp_vendor, rp_type, parameters=params, noskip=noskip)


@_register
@dataclass(frozen=True, slots=True)
class PbError(PbMessage):
    """PB-Error (RFC 5793 §4.9).

    Error Parameters: Invalid Parameter and Unsupported Mandatory Message
    carry a 32-bit ``offset`` (of the bad field / the offending message);
    Version Not Supported carries bad/max/min version; Unexpected Batch Type
    and Local Error carry none.  strongSwan also sends a (zero) offset with
    the codes that have none, so a 4-byte parameter is read as an offset for
    any IETF code.  Anything else (other lengths, other vendors) is kept in
    ``parameters`` to round-trip.
    """

    VENDOR = PbVendor.IETF
    TYPE = PbMessageType.ERROR
    NAME = "PB-Error"
    DEFAULT_NOSKIP = True
    noskip: bool = field(default=True, kw_only=True)

    fatal: bool
    vendor: int
    code: int
    offset: int | None = None
    bad_version: int | None = None
    max_version: int | None = None
    min_version: int | None = None
    parameters: bytes = b""

    @property
    def code_name(self) -> str:
        if self.vendor == PbVendor.IETF and self.code in PbErrorCode._value2member_map_:
            return _ERROR_CODE_NAMES[PbErrorCode(self.code)]
        return f"{vendor_name(self.vendor)}/{self.code}"

    def to_exception(self) -> PbTncError:
        """The received error as a ``PbTncError`` (for logging / raising)."""
        return PbTncError(
            self.code, "received PB-Error", offset=self.offset, fatal=self.fatal, vendor=self.vendor,
            bad_version=self.bad_version, max_version=self.max_version, min_version=self.min_version,
        )

    def encode_value(self) -> bytes:
        head = _ERROR_HEADER.pack((0x80000000 if self.fatal else 0) | self.vendor, self.code, 0)
        if self.bad_version is not None:
            return head + _VERSIONS.pack(
                self.bad_version,
                PB_TNC_VERSION if self.max_version is None else self.max_version,
                PB_TNC_VERSION if self.min_version is None else self.min_version,
                0,
            )
        if self.offset is not None:
            return head + _U32.pack(self.offset)
        return head + self.parameters

    @classmethod
    def parse_value(cls, value, *, noskip, offset=MESSAGE_HEADER_SIZE):
        _need(value, 8, offset, "PB-Error")
        first, code, _reserved = _ERROR_HEADER.unpack_from(value)
        vendor = first & 0xFFFFFF
        fatal = bool(first & 0x80000000)
        params = value[8:]
        if vendor == PbVendor.IETF and code in PbErrorCode._value2member_map_:
            code = PbErrorCode(code)
        if vendor == PbVendor.IETF and len(params) == 4:
            if code == PbErrorCode.VERSION_NOT_SUPPORTED:
                bad, high, low, reserved = params
                if reserved == 0:
                    return cls(fatal, vendor, code, bad_version=bad, max_version=high,
                               min_version=low, noskip=noskip)
            else:
                return cls(fatal, vendor, code, offset=_U32.unpack(params)[0], noskip=noskip)
        return cls(fatal, vendor, code, parameters=params, noskip=noskip)


_LANG_PREFIX = b"Accept-Language: "


@_register
@dataclass(frozen=True, slots=True)
class PbLanguagePreference(PbMessage):
    """PB-Language-Preference (RFC 5793 §4.10).

    ``language`` is the header value after ``Accept-Language: `` (RFC 3282),
    e.g. ``"en"`` or ``"de, en;q=0.8"``.
    """

    VENDOR = PbVendor.IETF
    TYPE = PbMessageType.LANGUAGE_PREFERENCE
    NAME = "PB-Language-Preference"
    _REBUILDS_EXACTLY = True  # no reserved field

    language: str

    def encode_value(self) -> bytes:
        return _LANG_PREFIX + self.language.encode("utf-8")

    @classmethod
    def parse_value(cls, value, *, noskip, offset=MESSAGE_HEADER_SIZE):
        if not value.startswith(_LANG_PREFIX):
            raise PbTncError.invalid_parameter(offset, "Language Preference must start with 'Accept-Language: '")
        n = len(_LANG_PREFIX)
        return _make_language_preference(_text(value[n:], offset + n, "Language Preference"), noskip)


@_register
@dataclass(frozen=True, slots=True)
class PbReasonString(PbMessage):
    """PB-Reason-String (RFC 5793 §4.11), RESULT batches only."""

    VENDOR = PbVendor.IETF
    TYPE = PbMessageType.REASON_STRING
    NAME = "PB-Reason-String"
    _REBUILDS_EXACTLY = True  # no reserved field
    RESULT_ONLY = True

    reason: str
    language: str = ""

    def encode_value(self) -> bytes:
        text = self.reason.encode("utf-8")
        lang = self.language.encode("utf-8")
        return _U32.pack(len(text)) + text + bytes((len(lang),)) + lang

    @classmethod
    def parse_value(cls, value, *, noskip, offset=MESSAGE_HEADER_SIZE):
        _need(value, 5, offset, "PB-Reason-String")
        (n,) = _U32.unpack_from(value)
        if 4 + n + 1 > len(value):
            raise PbTncError.invalid_parameter(offset, "Reason String Length overruns the message")
        lang_len = value[4 + n]
        if 5 + n + lang_len != len(value):
            raise PbTncError.invalid_parameter(offset + 4 + n, "Lang Code Len does not match the message")
        return _make_reason_string(
            _text(value[4:4 + n], offset + 4, "Reason String"),
            _text(value[5 + n:], offset + 5 + n, "Reason String Language Code"),
            noskip,
        )


# --------------------------------------------------------------------------
# Vendor messages


@_register
@dataclass(frozen=True, slots=True)
class ItaMutualCapability(PbMessage):
    """ITA-HSR PB-Mutual-Capability (strongSwan): 32-bit protocol flags.

    A strongSwan client announces which mutual (half/full duplex) PB-TNC
    modes it supports; ``protocols`` holds ``MutualProtocol`` bits.
    """

    VENDOR = PbVendor.ITA_HSR
    TYPE = ItaMessageType.MUTUAL_CAPABILITY
    NAME = "PB-Mutual-Capability"
    _REBUILDS_EXACTLY = True  # no reserved field

    protocols: int

    def encode_value(self) -> bytes:
        return _U32.pack(self.protocols)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=MESSAGE_HEADER_SIZE):
        _need(value, 4, offset, "PB-Mutual-Capability", exact=True)
        return cls(_U32.unpack_from(value)[0], noskip=noskip)


@dataclass(frozen=True, slots=True)
class UnknownPbMessage(PbMessage):
    """A message type nac does not implement, kept raw so it round-trips."""

    NAME = "unknown"
    _REBUILDS_EXACTLY = True  # no reserved field

    VENDOR = None  # type: ignore[assignment]
    TYPE = None  # type: ignore[assignment]

    vendor: int
    type: int
    value: bytes = b""

    @property
    def msg_vendor(self) -> int:
        return self.vendor

    @property
    def msg_type(self) -> int:
        return self.type

    @property
    def full_name(self) -> str:
        return f"0x{self.vendor:06x}/0x{self.type:08x}"

    def encode_value(self) -> bytes:
        return self.value

    @classmethod
    def parse_value(cls, value, *, noskip, offset=MESSAGE_HEADER_SIZE):  # pragma: no cover - not registered
        raise TypeError("UnknownPbMessage needs vendor and type; use parse_message_value")


# Positional constructors for the parsers (see fast_constructor).
make_pa = fast_constructor(PbPa)
_make_assessment_result = fast_constructor(PbAssessmentResult)
_make_access_recommendation = fast_constructor(PbAccessRecommendation)
_make_language_preference = fast_constructor(PbLanguagePreference)
_make_reason_string = fast_constructor(PbReasonString)
make_unknown = fast_constructor(UnknownPbMessage)
