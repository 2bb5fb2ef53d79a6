"""TCG PTS attributes (PEN 0x005597) of the TCG Attestation PTS Protocol:
Binding to TNC IF-M (version 1.0, §3), as strongSwan 6 puts them on the wire,
its TPM 2.0 extension of Simple Evidence Final included.

Carried in PA-TNC messages of PA subtype TCG/PTS (:data:`PTS_SUBTYPE`).  The
verifier (IMV) asks, the collector (IMC) answers:

=====================================  =====================================
verifier                               collector
=====================================  =====================================
Request PTS Protocol Capabilities      PTS Protocol Capabilities
PTS Measurement Algorithm Request      PTS Measurement Algorithm (Selection)
D-H Nonce Parameters Request           D-H Nonce Parameters Response
D-H Nonce Finish
Get TPM Version Information            TPM Version Information
Get Attestation Identity Key           Attestation Identity Key
Request Functional Component Evidence  Simple Component Evidence (one per
Generate Attestation Evidence          measurement), Simple Evidence Final
Request File Measurement               File Measurement
Request File Metadata                  Unix-Style File Metadata
=====================================  =====================================

PTS errors are IETF PA-TNC Error attributes whose error code vendor is TCG
(:class:`PtsErrorCode`, :func:`pts_error`).  All integers are big-endian.
This module only reads and writes the attributes; what they mean for an
attestation is ``nac.pts`` (the cryptography) and the attestation IMV's.
"""

from __future__ import annotations

import datetime
import functools
import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import ClassVar, NamedTuple

from nac.pa.ietf import PaTncErrorAttribute
from nac.pa.message import (
    ATTRIBUTE_HEADER_SIZE,
    AttributeReader,
    PaAttribute,
    PaTncError,
    PaVendor,
    data16,
    data32,
    enum_or_int,
    register_attribute,
)
from nac.pa.tcg import TcgAttributeType

__all__ = [
    "AttestationIdentityKey",
    "ComponentName",
    "ComponentQualifier",
    "ComponentRequest",
    "ComponentRequestFlag",
    "ComponentType",
    "ComponentValidation",
    "DhNonceFinish",
    "DhNonceParametersRequest",
    "DhNonceParametersResponse",
    "FileMeasurement",
    "FileMeasurementEntry",
    "GenerateAttestationEvidence",
    "GetAttestationIdentityKey",
    "GetTpmVersionInfo",
    "ItaComponent",
    "MEASUREMENT_TIME_SIZE",
    "MEASUREMENT_TYPE_HASH",
    "PTS_SUBTYPE",
    "PcrTransform",
    "PtsCapability",
    "PtsDhGroup",
    "PtsErrorCode",
    "PtsFileType",
    "PtsHashAlgorithm",
    "PtsMeasurementAlgorithmRequest",
    "PtsMeasurementAlgorithmSelection",
    "PtsProtocolCapabilities",
    "QuoteMode",
    "RequestFileMeasurement",
    "RequestFileMetadata",
    "RequestFunctionalComponentEvidence",
    "RequestPtsProtocolCapabilities",
    "SimpleComponentEvidence",
    "SimpleEvidenceFinal",
    "TcgComponent",
    "TpmVersionInfo",
    "UNDEFINED_MEASUREMENT_TIME",
    "UnixFileMetadata",
    "UnixFileMetadataEntry",
    "bad_nonce_length_error",
    "dh_group_not_supported_error",
    "hash_algorithm_not_supported_error",
    "is_pts_error",
    "pts_error",
]

#: PA subtype of PTS messages in the TCG vendor namespace (vendor 0x005597).
PTS_SUBTYPE = 1

_T = TcgAttributeType
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_HALVES = struct.Struct(">HH")


# -- registries ---------------------------------------------------------------------------


class PtsCapability(IntFlag):
    """PTS Protocol Capabilities flags (§3.7), the low five bits of 32."""

    XML_EVIDENCE = 0x01  # X
    TRUSTED_PLATFORM = 0x02  # T: TPM-based evidence
    DH_NONCE = 0x04  # D: D-H nonce negotiation
    VERIFICATION = 0x08  # V: local verification of evidence
    CURRENT = 0x10  # C: current (in-memory) evidence

    @property
    def letters(self) -> str:
        """strongSwan's log form, e.g. ``.VDT.`` (C, V, D, T, X)."""
        return "".join(letter if self & bit else "." for letter, bit in (
            ("C", 0x10), ("V", 0x08), ("D", 0x04), ("T", 0x02), ("X", 0x01)))


_CAPABILITY_BITS = 0x1F


class PtsHashAlgorithm(IntFlag):
    """PTS Measurement Algorithms (§3.9.1): the 16-bit Hash Algorithm Set.

    Bits nac does not know are kept (IntFlag keeps them), so a set offered
    by a newer peer round-trips."""

    SHA512 = 0x1000
    SHA384 = 0x2000
    SHA256 = 0x4000
    SHA1 = 0x8000


class PtsDhGroup(IntFlag):
    """PTS D-H Group Set (§3.8.1): IKE group numbers as bits of 16."""

    ECP_384 = 0x0800  # IKE group 20
    ECP_256 = 0x1000  # IKE group 19, the mandatory one
    MODP_2048 = 0x2000  # IKE group 14
    MODP_1536 = 0x4000  # IKE group 5
    MODP_1024 = 0x8000  # IKE group 2


class PcrTransform(IntEnum):
    """How a measurement was fitted to the PCR's size (§3.15.1)."""

    NONE = 0
    MATCH = 1
    SHORT = 2  # the hash was shorter than the PCR: padded
    LONG = 3  # the hash was longer than the PCR: truncated


class ComponentValidation(IntEnum):
    """Simple Component Evidence validation result: bits 0x60 of the flags."""

    NONE = 0x00
    UNABLE = 0x20
    FAILED = 0x40
    PASSED = 0x60


class QuoteMode(IntEnum):
    """What Simple Evidence Final carries: bits 0xd0 of its flags.

    ``TPM2`` (0x10) is strongSwan's extension for a TPM 2.0 quote: the
    TPMS_ATTEST fields next to the PCR digest."""

    NONE = 0x00
    TPM2 = 0x10
    QUOTE_INFO = 0x40
    QUOTE_INFO2 = 0x80
    QUOTE_INFO2_CAP_VERSION = 0xC0


_QUOTE_MODE_BITS = 0xD0
_EVIDENCE_SIGNATURE = 0x20


class ComponentRequestFlag(IntFlag):
    """Flags of one component in Request Functional Component Evidence (§3.14.1)."""

    PCR = 0x10  # include PCR before/after values
    CURRENT = 0x20  # current evidence
    VERIFY = 0x40  # local verification
    TRANSITIVE_TRUST_CHAIN = 0x80


class PtsFileType(IntEnum):
    """File types of Unix-Style File Metadata (§3.17.3)."""

    OTHER = 0
    FIFO = 1
    CHARACTER_SPECIAL = 2
    DIRECTORY = 4
    BLOCK_SPECIAL = 6
    REGULAR = 8
    SYMBOLIC_LINK = 10
    SOCKET = 12


class PtsErrorCode(IntEnum):
    """TCG PTS error codes (§3.21), carried in a PA-TNC Error attribute
    whose Error Code Vendor ID is TCG."""

    RESERVED = 0
    HASH_ALGORITHM_NOT_SUPPORTED = 1
    INVALID_PATH = 2
    FILE_NOT_FOUND = 3
    REGISTRY_NOT_SUPPORTED = 4
    REGISTRY_KEY_NOT_FOUND = 5
    DH_GROUP_NOT_SUPPORTED = 6
    BAD_NONCE_LENGTH = 7
    INVALID_NAME_FAMILY = 8
    TPM_VERSION_NOT_SUPPORTED = 9
    INVALID_DELIMITER = 10
    OPERATION_NOT_SUPPORTED = 11
    REFERENCE_MANIFEST_ERROR = 12
    UNABLE_LOCAL_VALIDATION = 13
    UNABLE_CURRENT_EVIDENCE = 14
    UNABLE_TRANSITIVE_TRUST_CHAIN = 15
    UNABLE_DETERMINE_PCR = 16


# -- errors ---------------------------------------------------------------------------------


def pts_error(code: PtsErrorCode | int, information: bytes = b"") -> PaTncErrorAttribute:
    """A PTS error: an IETF PA-TNC Error attribute with the TCG as error code vendor."""
    return PaTncErrorAttribute(PaVendor.TCG, code, information=information)


def hash_algorithm_not_supported_error(supported: PtsHashAlgorithm | int) -> PaTncErrorAttribute:
    """Hash Algorithm Not Supported: 16 reserved bits and the supported set."""
    return pts_error(PtsErrorCode.HASH_ALGORITHM_NOT_SUPPORTED, _HALVES.pack(0, int(supported)))


def dh_group_not_supported_error(supported: PtsDhGroup | int) -> PaTncErrorAttribute:
    """D-H Group Not Supported: 16 reserved bits and the supported groups."""
    return pts_error(PtsErrorCode.DH_GROUP_NOT_SUPPORTED, _HALVES.pack(0, int(supported)))


def bad_nonce_length_error(minimum: int, maximum: int) -> PaTncErrorAttribute:
    """DH-PN Nonce Not Acceptable: the acceptable nonce lengths (16 bits each)."""
    return pts_error(PtsErrorCode.BAD_NONCE_LENGTH, _HALVES.pack(minimum, maximum))


def is_pts_error(attribute: PaAttribute) -> bool:
    """Whether ``attribute`` is a PA-TNC Error carrying a TCG PTS error code."""
    return isinstance(attribute, PaTncErrorAttribute) and attribute.error_vendor == PaVendor.TCG


# -- component functional names (§5) ----------------------------------------------------------


class ComponentQualifier(IntFlag):
    """The flags among the six qualifier bits of a functional name (§5.2;
    the ITA-HSR namespace uses the same layout): K(ernel), S(ub-component);
    the low four bits are a :class:`ComponentType`."""

    KERNEL = 0x20
    SUB_COMPONENT = 0x10


class ComponentType(IntEnum):
    """The type in the low four qualifier bits (§5.2)."""

    UNKNOWN = 0x0
    TRUSTED_PLATFORM = 0x1
    OPERATING_SYSTEM = 0x2
    GRAPHICAL_USER_INTERFACE = 0x3
    APPLICATION = 0x4
    NETWORKING = 0x5
    LIBRARY = 0x6
    TNC_DEFINED = 0x7
    ALL = 0xF


class ItaComponent(IntEnum):
    """Functional names in the ITA-HSR namespace (strongSwan's ``ita_comp_func_name.h``)."""

    IGNORE = 0
    TRUSTED_GRUB = 1
    TBOOT = 2
    IMA = 3  # Linux IMA; with qualifier K+Trusted Platform it names the BIOS log


class TcgComponent(IntEnum):
    """Functional names in the TCG namespace (§5.3)."""

    IGNORE = 0
    CRTM = 1
    BIOS = 2
    PLATFORM_EXTENSIONS = 3
    MOTHERBOARD_FIRMWARE = 4
    INITIAL_PROGRAM_LOADER = 5
    OPTION_ROMS = 6


@dataclass(frozen=True, slots=True)
class ComponentName:
    """Component Functional Name (§5.1): Vendor ID (24 bits), Family (2 bits,
    0 = binary enumeration), Qualifier (6 bits), Name (32 bits)."""

    vendor: int
    name: int
    qualifier: int = 0
    family: int = 0

    SIZE: ClassVar[int] = 8

    def to_bytes(self) -> bytes:
        return (self.vendor.to_bytes(3, "big") + bytes(((self.family & 3) << 6 | (self.qualifier & 0x3F),))
                + self.name.to_bytes(4, "big"))

    @classmethod
    def read(cls, r: AttributeReader) -> ComponentName:
        vendor = r.u24("Component Functional Name Vendor ID")
        family_qualifier = r.u8("Family and Qualifier")
        return cls(vendor, r.u32("Component Functional Name"), family_qualifier & 0x3F, family_qualifier >> 6)

    def describe(self) -> str:
        """e.g. ``ITA-HSR/IMA [K.] Trusted Platform``."""
        if self.vendor == PaVendor.ITA_HSR:
            names, space = ItaComponent, "ITA-HSR"
        elif self.vendor == PaVendor.TCG:
            names, space = TcgComponent, "TCG"
        else:
            return f"0x{self.vendor:06x}/0x{self.name:08x} qualifier 0x{self.qualifier:02x}"
        name = enum_or_int(names, self.name)
        flags = ("K" if self.qualifier & 0x20 else ".") + ("S" if self.qualifier & 0x10 else ".")
        kind = enum_or_int(ComponentType, self.qualifier & 0xF)
        label = name.name if isinstance(name, IntEnum) else f"0x{self.name:08x}"
        kind_label = kind.name.replace("_", " ").title() if isinstance(kind, IntEnum) else hex(kind)
        return f"{space}/{label} [{flags}] {kind_label}"


# -- attributes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pts(PaAttribute):
    VENDOR: ClassVar[int] = PaVendor.TCG


@dataclass(frozen=True, slots=True)
class _Reserved4(_Pts):
    """An attribute whose value is 32 reserved bits (a bare request)."""

    noskip: bool = field(default=True, kw_only=True)

    def encode_value(self) -> bytes:
        return bytes(4)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        _fixed(cls, value, 4, offset)
        return cls._new(noskip)


def _fixed(cls, value: bytes, size: int, offset: int) -> None:
    if len(value) != size:
        # the attribute's length field (4 bytes before the value) is what is wrong
        raise PaTncError.invalid_parameter(offset - 4, f"{cls.NAME} value is {len(value)} bytes, must be {size}")


@dataclass(frozen=True, slots=True)
class _Capabilities(_Pts):
    capabilities: PtsCapability = PtsCapability(0)

    def encode_value(self) -> bytes:
        return _U32.pack(int(self.capabilities) & _CAPABILITY_BITS)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        _fixed(cls, value, 4, offset)
        return cls._new(PtsCapability(_U32.unpack(value)[0] & _CAPABILITY_BITS), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class RequestPtsProtocolCapabilities(_Capabilities):
    """Request PTS Protocol Capabilities (§3.7): the verifier's capabilities."""

    TYPE: ClassVar[int] = _T.PTS_REQUEST_PROTOCOL_CAPABILITIES
    NAME: ClassVar[str] = "Request PTS Protocol Capabilities"

    noskip: bool = field(default=True, kw_only=True)


@register_attribute
@dataclass(frozen=True, slots=True)
class PtsProtocolCapabilities(_Capabilities):
    """PTS Protocol Capabilities (§3.7): the collector's capabilities."""

    TYPE: ClassVar[int] = _T.PTS_PROTOCOL_CAPABILITIES
    NAME: ClassVar[str] = "PTS Protocol Capabilities"


@dataclass(frozen=True, slots=True)
class _Algorithms(_Pts):
    """16 reserved bits + Hash Algorithm Set (§3.9)."""

    algorithms: PtsHashAlgorithm = PtsHashAlgorithm(0)

    def encode_value(self) -> bytes:
        return _HALVES.pack(0, int(self.algorithms))

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        _fixed(cls, value, 4, offset)
        return cls._new(PtsHashAlgorithm(_HALVES.unpack(value)[1]), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class PtsMeasurementAlgorithmRequest(_Algorithms):
    """PTS Measurement Algorithm Request (§3.9.1): the hash algorithms the verifier accepts."""

    TYPE: ClassVar[int] = _T.PTS_MEASUREMENT_ALGORITHMS
    NAME: ClassVar[str] = "PTS Measurement Algorithm Request"

    noskip: bool = field(default=True, kw_only=True)


@register_attribute
@dataclass(frozen=True, slots=True)
class PtsMeasurementAlgorithmSelection(_Algorithms):
    """PTS Measurement Algorithm Selection (§3.9.2): the one the collector measures with."""

    TYPE: ClassVar[int] = _T.PTS_MEASUREMENT_ALGORITHM_SELECTION
    NAME: ClassVar[str] = "PTS Measurement Algorithm"


@register_attribute
@dataclass(frozen=True, slots=True)
class DhNonceParametersRequest(_Pts):
    """D-H Nonce Parameters Request (§3.8.1): Reserved (8), Minimum Nonce
    Length (8; 0: no minimum of the verifier's), D-H Group Set (16)."""

    TYPE: ClassVar[int] = _T.PTS_DH_NONCE_PARAMETERS_REQUEST
    NAME: ClassVar[str] = "DH Nonce Parameters Request"

    min_nonce_length: int = 0
    groups: PtsDhGroup = PtsDhGroup(0)
    noskip: bool = field(default=True, kw_only=True)

    def encode_value(self) -> bytes:
        return bytes((0, self.min_nonce_length)) + _U16.pack(int(self.groups))

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        _fixed(cls, value, 4, offset)
        return cls._new(value[1], PtsDhGroup(_U16.unpack_from(value, 2)[0]), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class DhNonceParametersResponse(_Pts):
    """D-H Nonce Parameters Response (§3.8.2): Reserved (24), Nonce Length
    (8), Selected D-H Group (16), Hash Algorithm Set (16), the responder's
    nonce, then its D-H public value (the rest)."""

    TYPE: ClassVar[int] = _T.PTS_DH_NONCE_PARAMETERS_RESPONSE
    NAME: ClassVar[str] = "DH Nonce Parameters Response"

    group: PtsDhGroup = PtsDhGroup(0)
    algorithms: PtsHashAlgorithm = PtsHashAlgorithm(0)
    nonce: bytes = b""
    public_value: bytes = b""

    def encode_value(self) -> bytes:
        if len(self.nonce) > 0xFF:
            raise ValueError(f"nonce of {len(self.nonce)} bytes, at most 255 fit")
        return (bytes((0, 0, 0, len(self.nonce))) + _HALVES.pack(int(self.group), int(self.algorithms))
                + self.nonce + self.public_value)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, cls.NAME)
        r.raw(3, "Reserved")
        nonce_length = r.u8("Nonce Length")
        group, algorithms = r.u16("Selected D-H Group"), r.u16("Hash Algorithm Set")
        nonce = r.raw(nonce_length, "D-H Responder Nonce")
        return cls._new(PtsDhGroup(group), PtsHashAlgorithm(algorithms), nonce, r.rest(), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class DhNonceFinish(_Pts):
    """D-H Nonce Finish (§3.8.3): Reserved (8), Nonce Length (8), Selected
    Hash Algorithm (16), the initiator's D-H public value, then its nonce
    (the last Nonce Length bytes)."""

    TYPE: ClassVar[int] = _T.PTS_DH_NONCE_FINISH
    NAME: ClassVar[str] = "DH Nonce Finish"

    algorithm: PtsHashAlgorithm = PtsHashAlgorithm(0)
    public_value: bytes = b""
    nonce: bytes = b""
    noskip: bool = field(default=True, kw_only=True)

    def encode_value(self) -> bytes:
        if len(self.nonce) > 0xFF:
            raise ValueError(f"nonce of {len(self.nonce)} bytes, at most 255 fit")
        return bytes((0, len(self.nonce))) + _U16.pack(int(self.algorithm)) + self.public_value + self.nonce

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, cls.NAME)
        r.u8("Reserved")
        at = r.offset
        nonce_length = r.u8("Nonce Length")
        algorithm = r.u16("Selected Hash Algorithm")
        if nonce_length > r.remaining:
            raise r.fail(f"Nonce Length {nonce_length} overruns the value ({r.remaining} bytes left)", at)
        public_value = r.raw(r.remaining - nonce_length, "D-H Initiator Public Value")
        return cls._new(PtsHashAlgorithm(algorithm), public_value, r.rest(), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class GetTpmVersionInfo(_Reserved4):
    """Get TPM Version Information (§3.10): 32 reserved bits."""

    TYPE: ClassVar[int] = _T.PTS_GET_TPM_VERSION_INFO
    NAME: ClassVar[str] = "Get TPM Version Information"


#: TPM_CAP_VERSION_INFO's tag (TPM 1.2) and strongSwan's tag for its TPM 2.0 layout.
_TPM12_VERSION_TAG = 0x0030
_TPM20_VERSION_TAG = 0x0200


@register_attribute
@dataclass(frozen=True, slots=True)
class TpmVersionInfo(_Pts):
    """TPM Version Information (§3.11): TPM 1.2's TPM_CAP_VERSION_INFO, or
    strongSwan's TPM 2.0 layout: tag 0x0200, reserved (8), startup locality
    (8), revision (32, ×100), year (32), vendor (4 characters)."""

    TYPE: ClassVar[int] = _T.PTS_TPM_VERSION_INFO
    NAME: ClassVar[str] = "TPM Version Information"

    info: bytes = b""

    def encode_value(self) -> bytes:
        return self.info

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        return cls._new(value, noskip)

    @classmethod
    def tpm2(cls, startup_locality: int, revision: int, year: int, vendor: bytes) -> TpmVersionInfo:
        """strongSwan's TPM 2.0 layout (``revision`` e.g. 164 for 1.64)."""
        return cls(struct.pack(">HBBII4s", _TPM20_VERSION_TAG, 0, startup_locality, revision, year, vendor))

    @property
    def tpm_version(self) -> str | None:
        """``"2.0"``, ``"1.2"`` or None when the tag is unknown."""
        tag = _U16.unpack_from(self.info)[0] if len(self.info) >= 2 else None
        return {_TPM20_VERSION_TAG: "2.0", _TPM12_VERSION_TAG: "1.2"}.get(tag)

    @property
    def startup_locality(self) -> int | None:
        """The TPM 2.0 startup locality (what PCR0 starts with), when given."""
        if self.tpm_version == "2.0" and len(self.info) >= 4:
            return self.info[3]
        return None

    @property
    def vendor(self) -> str:
        """The TPM manufacturer of the TPM 2.0 layout ('IBM'), else ''."""
        if self.tpm_version == "2.0" and len(self.info) >= 16:
            return self.info[12:16].rstrip(b"\0").decode("ascii", "replace")
        return ""


@register_attribute
@dataclass(frozen=True, slots=True)
class GetAttestationIdentityKey(_Reserved4):
    """Get Attestation Identity Key (§3.12): 32 reserved bits."""

    TYPE: ClassVar[int] = _T.PTS_GET_AIK
    NAME: ClassVar[str] = "Get Attestation Identity Key"


_NAKED_KEY = 0x80


@register_attribute
@dataclass(frozen=True, slots=True)
class AttestationIdentityKey(_Pts):
    """Attestation Identity Key (§3.13): Flags (8; 0x80 = a naked public
    key, else an X.509 certificate), then the key or certificate (DER or PEM,
    as strongSwan accepts both)."""

    TYPE: ClassVar[int] = _T.PTS_AIK
    NAME: ClassVar[str] = "Attestation Identity Key"

    key: bytes = b""
    naked: bool = True
    flags: int = 0
    """The other flag bits as received (reserved)."""

    def encode_value(self) -> bytes:
        return bytes(((_NAKED_KEY if self.naked else 0) | (self.flags & 0x7F),)) + self.key

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, cls.NAME)
        flags = r.u8("Flags")
        return cls._new(r.rest(), bool(flags & _NAKED_KEY), flags & 0x7F, noskip)


class ComponentRequest(NamedTuple):
    """One component of Request Functional Component Evidence."""

    name: ComponentName
    flags: ComponentRequestFlag = ComponentRequestFlag(0)
    depth: int = 0
    """Sub-component depth (24 bits): 0 = the component only."""


@register_attribute
@dataclass(frozen=True, slots=True)
class RequestFunctionalComponentEvidence(_Pts):
    """Request Functional Component Evidence (§3.14.1): per component Flags
    (8), Sub-component Depth (24) and its Component Functional Name (64)."""

    TYPE: ClassVar[int] = _T.PTS_REQUEST_FUNCTIONAL_COMPONENT_EVIDENCE
    NAME: ClassVar[str] = "Request Functional Component Evidence"

    components: tuple[ComponentRequest, ...] = ()
    noskip: bool = field(default=True, kw_only=True)

    def encode_value(self) -> bytes:
        return b"".join(bytes((int(c.flags) & 0xFF,)) + c.depth.to_bytes(3, "big") + c.name.to_bytes()
                        for c in self.components)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, cls.NAME)
        if not value:
            raise r.fail("no component")
        components = []
        while r.remaining:
            flags, depth = r.u8("Flags"), r.u24("Sub-component Depth")
            components.append(ComponentRequest(ComponentName.read(r), ComponentRequestFlag(flags), depth))
        return cls._new(tuple(components), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class GenerateAttestationEvidence(_Reserved4):
    """Generate Attestation Evidence (§3.14.2): 32 reserved bits; asks for
    the Simple Evidence Final (the quote) over what was requested."""

    TYPE: ClassVar[int] = _T.PTS_GENERATE_ATTESTATION_EVIDENCE
    NAME: ClassVar[str] = "Generate Attestation Evidence"


#: Measurement Type of Simple Component Evidence: a hash (the only one defined).
MEASUREMENT_TYPE_HASH = 0x80
#: Measurement Date/Time is 20 ASCII characters, e.g. ``2026-12-07T12:04:47Z``.
MEASUREMENT_TIME_SIZE = 20
UNDEFINED_MEASUREMENT_TIME = "0000-00-00T00:00:00Z"
_PCR_INFO = 0x80
_VALIDATION_BITS = 0x60
#: The fixed fields of Simple Component Evidence, read at once (an IMA list
#: sends thousands): Flags ‖ Sub-Component Depth, Vendor ID ‖ Family and
#: Qualifier, Component Functional Name, Measurement Type ‖ PCR, Hash
#: Algorithm, PCR Transform, Reserved, Measurement Date/Time.
_EVIDENCE_HEAD = struct.Struct(">IIIIHBB20s")
#: Parsed evidence shares these values (frozen, few distinct ones).
_component_name = functools.lru_cache(maxsize=64)(ComponentName)
_pts_hash_algorithm = functools.lru_cache(maxsize=32)(PtsHashAlgorithm)
_component_validation = functools.lru_cache(maxsize=8)(ComponentValidation)


@register_attribute
@dataclass(frozen=True, slots=True)
class SimpleComponentEvidence(_Pts):
    """Simple Component Evidence (§3.15.1): one measurement of a component.

    Flags (8: PCR info 0x80, validation 0x60), Sub-Component Depth (24),
    Component Functional Name (64), Measurement Type (8, 0x80 = hash),
    Extended into PCR (24), Hash Algorithm (16), PCR Transform (8),
    Reserved (8), Measurement Date/Time (20 ASCII), then the Verification
    Policy URI (16-bit length) when validation is failed or passed, the PCR
    before and after values (one 16-bit length for both) when PCR info is
    set, and the measurement (the rest).

    strongSwan sends one per BIOS event (the event's digest) and per IMA
    entry (the template hash, with policy URI ``<algorithm>:<file name>``).
    """

    TYPE: ClassVar[int] = _T.PTS_SIMPLE_COMPONENT_EVIDENCE
    NAME: ClassVar[str] = "Simple Component Evidence"

    component: ComponentName = ComponentName(0, 0)
    pcr: int = 0
    measurement: bytes = b""
    hash_algorithm: PtsHashAlgorithm = PtsHashAlgorithm(0)
    transform: PcrTransform | int = PcrTransform.NONE
    measurement_time: str = UNDEFINED_MEASUREMENT_TIME
    depth: int = 0
    validation: ComponentValidation = ComponentValidation.NONE
    policy_uri: str = ""
    """Present on the wire only with validation failed or passed."""
    pcr_before: bytes | None = None
    pcr_after: bytes | None = None
    measurement_type: int = MEASUREMENT_TYPE_HASH

    @property
    def has_policy_uri(self) -> bool:
        return self.validation in (ComponentValidation.FAILED, ComponentValidation.PASSED)

    @property
    def measured_at(self) -> datetime.datetime | None:
        """The measurement time, None when undefined or not a UTC time stamp."""
        try:
            return datetime.datetime.strptime(self.measurement_time, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            return None

    def encode_value(self) -> bytes:
        has_pcr = self.pcr_before is not None
        time = self.measurement_time.encode("ascii")
        if len(time) != MEASUREMENT_TIME_SIZE:
            raise ValueError(f"measurement time must be {MEASUREMENT_TIME_SIZE} characters")
        parts = [
            bytes(((_PCR_INFO if has_pcr else 0) | int(self.validation),)), self.depth.to_bytes(3, "big"),
            self.component.to_bytes(), bytes((self.measurement_type,)), self.pcr.to_bytes(3, "big"),
            _U16.pack(int(self.hash_algorithm)), bytes((int(self.transform), 0)), time,
        ]
        if self.has_policy_uri:
            parts.append(data16(self.policy_uri.encode(), "policy URI"))
        if has_pcr:
            before, after = self.pcr_before, self.pcr_after or b""
            if len(before) != len(after):
                raise ValueError("PCR before and after values must be of one length")
            parts += [data16(before, "PCR value"), after]
        parts.append(self.measurement)
        return b"".join(parts)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, cls.NAME)
        if len(value) < _EVIDENCE_HEAD.size:
            # field by field: the error names the one cut short
            r.u8("Flags"), r.u24("Sub-Component Depth"), ComponentName.read(r), r.u8("Measurement Type")
            r.u24("Extended into PCR"), r.u16("Hash Algorithm"), r.u8("PCR Transform"), r.u8("Reserved")
            r.raw(MEASUREMENT_TIME_SIZE, "Measurement Date/Time")
        head, named_by, name, type_pcr, algorithm, transform, _, raw_time = _EVIDENCE_HEAD.unpack_from(value)
        if not (raw_time.isascii() and raw_time.decode("ascii").isprintable()):
            raise r.fail("Measurement Date/Time is not printable ASCII", offset + _EVIDENCE_HEAD.size
                         - MEASUREMENT_TIME_SIZE)
        r.pos = _EVIDENCE_HEAD.size
        flags, depth = head >> 24, head & 0xFFFFFF
        family_qualifier = named_by & 0xFF
        component = _component_name(named_by >> 8, name, family_qualifier & 0x3F, family_qualifier >> 6)
        measurement_type, pcr = type_pcr >> 24, type_pcr & 0xFFFFFF
        algorithm = _pts_hash_algorithm(algorithm)
        transform = enum_or_int(PcrTransform, transform)
        validation = _component_validation(flags & _VALIDATION_BITS)
        policy_uri = ""
        if validation in (ComponentValidation.FAILED, ComponentValidation.PASSED):
            policy_uri = r.text16("Verification Policy URI")
        before = after = None
        if flags & _PCR_INFO:
            size = r.u16("PCR Length")
            before, after = r.raw(size, "PCR Before Value"), r.raw(size, "PCR After Value")
        return cls._new(component, pcr, r.rest(), algorithm, transform, raw_time.decode("ascii"), depth,
                        validation, policy_uri, before, after, measurement_type, noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class SimpleEvidenceFinal(_Pts):
    """Simple Evidence Final (§3.15.2 with strongSwan's TPM 2.0 extension).

    Flags (8: quote mode 0xd0, evidence signature 0x20), Reserved (8),
    Composite Hash Algorithm (16, always present: for a TPM 2.0 quote the
    hash of the PCR digest and of the signature); with a quote the PCR
    composite (32-bit length: TPM 1.2's TPM_PCR_COMPOSITE, or a TPM 2.0
    quote's pcrDigest); for ``QuoteMode.TPM2`` the TPMS_ATTEST fields
    qualifiedSigner (the TPM2B_NAME's content), clockInfo (17 bytes),
    firmwareVersion (8) and the TPML_PCR_SELECTION, each with a 16-bit
    length; then the quote signature (32-bit length: the RSA signature, or
    ECDSA r ‖ s) and, when flagged, the evidence signature (the rest).
    """

    TYPE: ClassVar[int] = _T.PTS_SIMPLE_EVIDENCE_FINAL
    NAME: ClassVar[str] = "Simple Evidence Final"

    quote_mode: QuoteMode = QuoteMode.NONE
    composite_algorithm: PtsHashAlgorithm = PtsHashAlgorithm(0)
    pcr_composite: bytes = b""
    qualified_signer: bytes = b""
    clock_info: bytes = b""
    firmware_version: bytes = b""
    pcr_selection: bytes = b""
    quote_signature: bytes = b""
    evidence_signature: bytes | None = None

    def encode_value(self) -> bytes:
        flags = int(self.quote_mode) | (_EVIDENCE_SIGNATURE if self.evidence_signature is not None else 0)
        parts = [bytes((flags, 0)), _U16.pack(int(self.composite_algorithm))]
        if self.quote_mode is not QuoteMode.NONE:
            parts.append(data32(self.pcr_composite))
        if self.quote_mode is QuoteMode.TPM2:
            parts += [data16(self.qualified_signer, "qualified signer"), data16(self.clock_info, "clock info"),
                      data16(self.firmware_version, "firmware version"), data16(self.pcr_selection, "PCR selection")]
        if self.quote_mode is not QuoteMode.NONE:
            parts.append(data32(self.quote_signature))
        if self.evidence_signature is not None:
            parts.append(self.evidence_signature)
        return b"".join(parts)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, cls.NAME)
        at = r.offset
        flags = r.u8("Flags")
        mode = QuoteMode._value2member_map_.get(flags & _QUOTE_MODE_BITS)
        if mode is None:
            raise r.fail(f"unknown quote flags 0x{flags & _QUOTE_MODE_BITS:02x}", at)
        r.u8("Reserved")
        algorithm = PtsHashAlgorithm(r.u16("Composite Hash Algorithm"))
        composite = signer = clock = firmware = selection = signature = b""
        if mode is not QuoteMode.NONE:
            composite = r.data32("TPM PCR Composite")
        if mode is QuoteMode.TPM2:
            signer = r.data16("TPM Qualified Signer")
            clock = r.data16("TPM Clock Info")
            firmware = r.data16("TPM Version Info")
            selection = r.data16("TPM PCR Selection")
        if mode is not QuoteMode.NONE:
            signature = r.data32("TPM Quote Signature")
        evidence_signature = r.rest() if flags & _EVIDENCE_SIGNATURE else None
        r.end()
        return cls._new(mode, algorithm, composite, signer, clock, firmware, selection, signature,
                        evidence_signature, noskip)


#: Pathname delimiter '/' as Request File Measurement carries it (32 bits).
SLASH = 0x2F
_DIRECTORY = 0x80


@register_attribute
@dataclass(frozen=True, slots=True)
class RequestFileMeasurement(_Pts):
    """Request File Measurement (§3.19.1): Flags (8; 0x80 = every file of a
    directory), Reserved (8), Request ID (16), Delimiter (32), then the fully
    qualified pathname (UTF-8, the rest)."""

    TYPE: ClassVar[int] = _T.PTS_REQUEST_FILE_MEASUREMENT
    NAME: ClassVar[str] = "Request File Measurement"

    request_id: int = 0
    path: str = ""
    directory: bool = False
    delimiter: int = SLASH
    noskip: bool = field(default=True, kw_only=True)

    def encode_value(self) -> bytes:
        return (bytes((_DIRECTORY if self.directory else 0, 0)) + _U16.pack(self.request_id)
                + _U32.pack(self.delimiter) + self.path.encode())

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, cls.NAME)
        flags = r.u8("Flags")
        r.u8("Reserved")
        request_id, delimiter = r.u16("Request ID"), r.u32("Delimiter")
        return cls._new(request_id, r.text_rest("pathname"), bool(flags & _DIRECTORY), delimiter, noskip)


class FileMeasurementEntry(NamedTuple):
    measurement: bytes
    filename: str


@register_attribute
@dataclass(frozen=True, slots=True)
class FileMeasurement(_Pts):
    """File Measurement (§3.19.2): Number of Files (64), Request ID (16),
    Measurement Length (16), then per file the measurement and its name
    (16-bit length)."""

    TYPE: ClassVar[int] = _T.PTS_FILE_MEASUREMENT
    NAME: ClassVar[str] = "File Measurement"

    request_id: int = 0
    measurement_size: int = 0
    entries: tuple[FileMeasurementEntry, ...] = ()

    def encode_value(self) -> bytes:
        parts = [struct.pack(">QHH", len(self.entries), self.request_id, self.measurement_size)]
        for entry in self.entries:
            if len(entry.measurement) != self.measurement_size:
                raise ValueError(f"measurement of {entry.filename!r} is not {self.measurement_size} bytes")
            parts += [entry.measurement, data16(entry.filename.encode(), "file name")]
        return b"".join(parts)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, cls.NAME)
        at = r.offset
        count = int.from_bytes(r.raw(8, "Number of Files"), "big")
        request_id, size = r.u16("Request ID"), r.u16("Measurement Length")
        if count * (size + 2) > r.remaining:
            raise r.fail(f"{count} files do not fit the value", at)
        entries = tuple(FileMeasurementEntry(r.raw(size, f"measurement {i + 1}"), r.text16(f"file name {i + 1}"))
                        for i in range(count))
        r.end()
        return cls._new(request_id, size, entries, noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class RequestFileMetadata(_Pts):
    """Request File Metadata (§3.17.1): Flags (8; 0x80 = directory
    contents), Delimiter (8), Reserved (16), then the pathname (the rest)."""

    TYPE: ClassVar[int] = _T.PTS_REQUEST_FILE_METADATA
    NAME: ClassVar[str] = "Request File Metadata"

    path: str = ""
    directory: bool = False
    delimiter: int = SLASH
    noskip: bool = field(default=True, kw_only=True)

    def encode_value(self) -> bytes:
        return bytes((_DIRECTORY if self.directory else 0, self.delimiter, 0, 0)) + self.path.encode()

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, cls.NAME)
        flags, delimiter = r.u8("Flags"), r.u8("Delimiter")
        r.u16("Reserved")
        return cls._new(r.text_rest("pathname"), bool(flags & _DIRECTORY), delimiter, noskip)


class UnixFileMetadataEntry(NamedTuple):
    """One file of Unix-Style File Metadata; times are seconds since the epoch."""

    filename: str
    type: PtsFileType | int = PtsFileType.REGULAR
    size: int = 0
    created: int = 0
    modified: int = 0
    accessed: int = 0
    owner: int = 0
    group: int = 0


_FILE_METADATA = struct.Struct(">HBBQQQQQQ")


@register_attribute
@dataclass(frozen=True, slots=True)
class UnixFileMetadata(_Pts):
    """Unix-Style File Metadata (§3.17.3): Number of Files (64), then per
    file: metadata length (16, this fixed part of 52 bytes and the name
    included), type (8), reserved (8), size, create, modify and access time,
    owner and group ID (64 each), file name (the rest of its length)."""

    TYPE: ClassVar[int] = _T.PTS_UNIX_FILE_METADATA
    NAME: ClassVar[str] = "Unix-Style File Metadata"

    entries: tuple[UnixFileMetadataEntry, ...] = ()

    def encode_value(self) -> bytes:
        parts = [len(self.entries).to_bytes(8, "big")]
        for e in self.entries:
            name = e.filename.encode()
            if _FILE_METADATA.size + len(name) > 0xFFFF:
                raise ValueError(f"file name of {len(name)} bytes does not fit")
            parts += [_FILE_METADATA.pack(_FILE_METADATA.size + len(name), int(e.type), 0, e.size, e.created,
                                          e.modified, e.accessed, e.owner, e.group), name]
        return b"".join(parts)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, cls.NAME)
        at = r.offset
        count = int.from_bytes(r.raw(8, "Number of Files"), "big")
        if count * _FILE_METADATA.size > r.remaining:
            raise r.fail(f"{count} files do not fit the value", at)
        entries = []
        for i in range(count):
            at = r.offset
            length, kind, _, *numbers = _FILE_METADATA.unpack(r.raw(_FILE_METADATA.size, f"file {i + 1} metadata"))
            if length < _FILE_METADATA.size:
                raise r.fail(f"file {i + 1} metadata length {length} is shorter than its fixed part", at)
            name_at = r.offset
            name = r.text(r.raw(length - _FILE_METADATA.size, f"file {i + 1} name"), f"file {i + 1} name", name_at)
            entries.append(UnixFileMetadataEntry(name, enum_or_int(PtsFileType, kind), *numbers))
        r.end()
        return cls._new(tuple(entries), noskip)
