"""PWG attributes (PEN 0x002935): Hardcopy Device health assessment, the
TNC binding of the PWG HCD attributes (PWG 5110.4 HCD-TNC, abstract
attributes in IEEE-ISTO 5110.1).  Types, PA subtypes and encodings as
strongSwan's ``pwg_attr.h`` and ``imc-hcd`` put them on the wire.

A printer reports per PA subtype, one per Printer MIB subunit (System,
Console, Marker, Finisher, Interface, Scanner …).  Values are of five
kinds: a UTF-8 string without length prefix or NUL (names, versions as
text, time source …), a 32-bit boolean (0 or 1), a 16-octet numeric
version (major, minor, build: 32 bits each; service pack major and minor:
16 bits each), an opaque octet string (certification and configuration
state), and three with an IETF layout under the PWG vendor ID: Vendor SMI
Code (8 reserved bits, 24-bit PEN), Forwarding Enabled (as RFC 5792
§4.2.11) and Firewall Setting (as the Port Filter, §4.2.6).

Software (firmware, resident and user applications) is reported as
quadruples: Name, Patches, String Version, Version, one quadruple per
installed item, in that order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, NamedTuple

from nac.pa.ietf import ForwardingStatus, PortEntry
from nac.pa.message import (
    ATTRIBUTE_HEADER_SIZE,
    PaAttribute,
    PaTncError,
    PaVendor,
    register_attribute,
    utf8,
)

__all__ = [
    "AttributesNaturalLanguage",
    "CertificationState",
    "ConfigurationState",
    "DefaultPasswordEnabled",
    "FirewallSetting",
    "FirmwareName",
    "FirmwarePatches",
    "FirmwareStringVersion",
    "FirmwareVersion",
    "HcdForwardingEnabled",
    "MachineTypeModel",
    "PstnFaxEnabled",
    "PwgAttributeType",
    "PwgSubtype",
    "ResidentApplicationName",
    "ResidentApplicationPatches",
    "ResidentApplicationStringVersion",
    "ResidentApplicationVersion",
    "SoftwareVersion",
    "TimeSource",
    "UserApplicationEnabled",
    "UserApplicationName",
    "UserApplicationPatches",
    "UserApplicationPersistenceEnabled",
    "UserApplicationStringVersion",
    "UserApplicationVersion",
    "VendorName",
    "VendorSmiCode",
    "attribute_key",
]


class PwgSubtype(IntEnum):
    """PWG PA subtypes: the HCD subunits (strongSwan's ``pa_subtype_pwg_t``)."""

    HCD_TESTING = 0x00
    HCD_OTHER = 0x01
    HCD_UNKNOWN = 0x02
    HCD_CONSOLE = 0x04
    HCD_SYSTEM = 0x05
    HCD_COVER = 0x06
    HCD_INPUT_TRAY = 0x08
    HCD_OUTPUT_TRAY = 0x09
    HCD_MARKER = 0x0A
    HCD_MEDIA_PATH = 0x0D
    HCD_CHANNEL = 0x0E
    HCD_INTERPRETER = 0x0F
    HCD_FINISHER = 0x1E
    HCD_INTERFACE = 0x28
    HCD_SCANNER = 0x32

    @property
    def section(self) -> str:
        """The subunit's lower-case name ('system', 'input_tray'), as configurations spell it."""
        return self.name[4:].lower()


class PwgAttributeType(IntEnum):
    """PWG HCD PA-TNC attribute types (strongSwan's ``pwg_attr_t``)."""

    ATTRIBUTES_NATURAL_LANGUAGE = 1
    MACHINE_TYPE_MODEL = 2
    VENDOR_NAME = 3
    VENDOR_SMI_CODE = 4
    DEFAULT_PASSWORD_ENABLED = 20
    FIREWALL_SETTING = 21
    FORWARDING_ENABLED = 22
    PSTN_FAX_ENABLED = 40
    TIME_SOURCE = 50
    FIRMWARE_NAME = 60
    FIRMWARE_PATCHES = 61
    FIRMWARE_STRING_VERSION = 62
    FIRMWARE_VERSION = 63
    RESIDENT_APPLICATION_NAME = 80
    RESIDENT_APPLICATION_PATCHES = 81
    RESIDENT_APPLICATION_STRING_VERSION = 82
    RESIDENT_APPLICATION_VERSION = 83
    USER_APPLICATION_NAME = 100
    USER_APPLICATION_PATCHES = 101
    USER_APPLICATION_STRING_VERSION = 102
    USER_APPLICATION_VERSION = 103
    USER_APPLICATION_ENABLED = 104
    USER_APPLICATION_PERSISTENCE_ENABLED = 105
    CERTIFICATION_STATE = 200
    CONFIGURATION_STATE = 201


T = PwgAttributeType


def attribute_key(attr_type: PwgAttributeType) -> str:
    """The attribute's name in configurations: 'default_password_enabled'."""
    return attr_type.name.lower()


_U32 = struct.Struct(">I")
_VERSION = struct.Struct(">IIIHH")
_PORT_ENTRY = struct.Struct(">BBH")


def _wrong_size(value: bytes, size: int, offset: int, name: str) -> PaTncError:
    """A fixed-size value of another size: the Attribute Length field is at fault."""
    return PaTncError.invalid_parameter(offset - ATTRIBUTE_HEADER_SIZE + 8,
                                        f"{name} value is {len(value)} bytes, must be {size}")


@dataclass(frozen=True, slots=True)
class _Pwg(PaAttribute):
    VENDOR: ClassVar[int] = PaVendor.PWG


# -- strings ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PwgString(_Pwg):
    """A value that is one UTF-8 string without length prefix or NUL."""

    text: str = ""

    def encode_value(self) -> bytes:
        return self.text.encode()

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        return cls._new(utf8(value, offset, cls.NAME), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class AttributesNaturalLanguage(_PwgString):
    """AttributesNaturalLanguage (1): the RFC 5646 language tag of the subunit's texts."""

    TYPE: ClassVar[int] = T.ATTRIBUTES_NATURAL_LANGUAGE
    NAME: ClassVar[str] = "HCD AttributesNaturalLanguage"


@register_attribute
@dataclass(frozen=True, slots=True)
class MachineTypeModel(_PwgString):
    """MachineTypeModel (2): the device's type and model."""

    TYPE: ClassVar[int] = T.MACHINE_TYPE_MODEL
    NAME: ClassVar[str] = "HCD MachineTypeModel"


@register_attribute
@dataclass(frozen=True, slots=True)
class VendorName(_PwgString):
    """VendorName (3): the manufacturer."""

    TYPE: ClassVar[int] = T.VENDOR_NAME
    NAME: ClassVar[str] = "HCD VendorName"


@register_attribute
@dataclass(frozen=True, slots=True)
class TimeSource(_PwgString):
    """TimeSource (50): the host name of the device's network time server."""

    TYPE: ClassVar[int] = T.TIME_SOURCE
    NAME: ClassVar[str] = "HCD TimeSource"


@register_attribute
@dataclass(frozen=True, slots=True)
class FirmwareName(_PwgString):
    """FirmwareName (60): opens a firmware quadruple."""

    TYPE: ClassVar[int] = T.FIRMWARE_NAME
    NAME: ClassVar[str] = "HCD FirmwareName"


@register_attribute
@dataclass(frozen=True, slots=True)
class FirmwarePatches(_PwgString):
    """FirmwarePatches (61): the patches applied, one per line."""

    TYPE: ClassVar[int] = T.FIRMWARE_PATCHES
    NAME: ClassVar[str] = "HCD FirmwarePatches"


@register_attribute
@dataclass(frozen=True, slots=True)
class FirmwareStringVersion(_PwgString):
    TYPE: ClassVar[int] = T.FIRMWARE_STRING_VERSION
    NAME: ClassVar[str] = "HCD FirmwareStringVersion"


@register_attribute
@dataclass(frozen=True, slots=True)
class ResidentApplicationName(_PwgString):
    """ResidentApplicationName (80): opens a resident application quadruple."""

    TYPE: ClassVar[int] = T.RESIDENT_APPLICATION_NAME
    NAME: ClassVar[str] = "HCD ResidentApplicationName"


@register_attribute
@dataclass(frozen=True, slots=True)
class ResidentApplicationPatches(_PwgString):
    TYPE: ClassVar[int] = T.RESIDENT_APPLICATION_PATCHES
    NAME: ClassVar[str] = "HCD ResidentApplicationPatches"


@register_attribute
@dataclass(frozen=True, slots=True)
class ResidentApplicationStringVersion(_PwgString):
    TYPE: ClassVar[int] = T.RESIDENT_APPLICATION_STRING_VERSION
    NAME: ClassVar[str] = "HCD ResidentApplicationStringVersion"


@register_attribute
@dataclass(frozen=True, slots=True)
class UserApplicationName(_PwgString):
    """UserApplicationName (100): opens a user application quadruple."""

    TYPE: ClassVar[int] = T.USER_APPLICATION_NAME
    NAME: ClassVar[str] = "HCD UserApplicationName"


@register_attribute
@dataclass(frozen=True, slots=True)
class UserApplicationPatches(_PwgString):
    TYPE: ClassVar[int] = T.USER_APPLICATION_PATCHES
    NAME: ClassVar[str] = "HCD UserApplicationPatches"


@register_attribute
@dataclass(frozen=True, slots=True)
class UserApplicationStringVersion(_PwgString):
    TYPE: ClassVar[int] = T.USER_APPLICATION_STRING_VERSION
    NAME: ClassVar[str] = "HCD UserApplicationStringVersion"


# -- booleans --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PwgBoolean(_Pwg):
    """A 32-bit boolean: 0 or 1, anything else is refused (as strongSwan)."""

    enabled: bool = False

    def encode_value(self) -> bytes:
        return _U32.pack(1 if self.enabled else 0)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) != 4:
            raise _wrong_size(value, 4, offset, cls.NAME)
        status = int.from_bytes(value, "big")
        if status > 1:
            raise PaTncError.invalid_parameter(offset, f"{cls.NAME}: {status} is not 0 or 1")
        return cls._new(status == 1, noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class DefaultPasswordEnabled(_PwgBoolean):
    """DefaultPasswordEnabled (20): the factory default administrator password still works."""

    TYPE: ClassVar[int] = T.DEFAULT_PASSWORD_ENABLED
    NAME: ClassVar[str] = "HCD DefaultPasswordEnabled"


@register_attribute
@dataclass(frozen=True, slots=True)
class PstnFaxEnabled(_PwgBoolean):
    """PSTNFaxEnabled (40): a telephone-network fax interface is installed and enabled."""

    TYPE: ClassVar[int] = T.PSTN_FAX_ENABLED
    NAME: ClassVar[str] = "HCD PSTNFaxEnabled"


@register_attribute
@dataclass(frozen=True, slots=True)
class UserApplicationEnabled(_PwgBoolean):
    """UserApplicationEnabled (104): users may download and run applications."""

    TYPE: ClassVar[int] = T.USER_APPLICATION_ENABLED
    NAME: ClassVar[str] = "HCD UserApplicationEnabled"


@register_attribute
@dataclass(frozen=True, slots=True)
class UserApplicationPersistenceEnabled(_PwgBoolean):
    """UserApplicationPersistenceEnabled (105): such applications outlive the job."""

    TYPE: ClassVar[int] = T.USER_APPLICATION_PERSISTENCE_ENABLED
    NAME: ClassVar[str] = "HCD UserApplicationPersistenceEnabled"


# -- numeric versions ------------------------------------------------------------------------


class SoftwareVersion(NamedTuple):
    """The 16-octet numeric version of firmware and applications."""

    major: int = 0
    minor: int = 0
    build: int = 0
    service_pack_major: int = 0
    service_pack_minor: int = 0

    def __str__(self) -> str:
        return ".".join(str(part) for part in self)


@dataclass(frozen=True, slots=True)
class _PwgVersion(_Pwg):
    """Major, Minor, Build (32 bits each), Service Pack Major and Minor (16 bits each)."""

    version: SoftwareVersion = SoftwareVersion()

    def encode_value(self) -> bytes:
        return _VERSION.pack(*self.version)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) != _VERSION.size:
            raise _wrong_size(value, _VERSION.size, offset, cls.NAME)
        return cls._new(SoftwareVersion(*_VERSION.unpack(value)), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class FirmwareVersion(_PwgVersion):
    TYPE: ClassVar[int] = T.FIRMWARE_VERSION
    NAME: ClassVar[str] = "HCD FirmwareVersion"


@register_attribute
@dataclass(frozen=True, slots=True)
class ResidentApplicationVersion(_PwgVersion):
    TYPE: ClassVar[int] = T.RESIDENT_APPLICATION_VERSION
    NAME: ClassVar[str] = "HCD ResidentApplicationVersion"


@register_attribute
@dataclass(frozen=True, slots=True)
class UserApplicationVersion(_PwgVersion):
    TYPE: ClassVar[int] = T.USER_APPLICATION_VERSION
    NAME: ClassVar[str] = "HCD UserApplicationVersion"


# -- opaque states ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PwgOctets(_Pwg):
    """An opaque octet string of any length."""

    value: bytes = b""

    def encode_value(self) -> bytes:
        return self.value

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        return cls._new(bytes(value), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class CertificationState(_PwgOctets):
    """CertificationState (200): vendor-defined record of the device's certified state."""

    TYPE: ClassVar[int] = T.CERTIFICATION_STATE
    NAME: ClassVar[str] = "HCD CertificationState"


@register_attribute
@dataclass(frozen=True, slots=True)
class ConfigurationState(_PwgOctets):
    """ConfigurationState (201): vendor-defined record of the device's configuration."""

    TYPE: ClassVar[int] = T.CONFIGURATION_STATE
    NAME: ClassVar[str] = "HCD ConfigurationState"


# -- IETF layouts under the PWG vendor ID ------------------------------------------------------


@register_attribute
@dataclass(frozen=True, slots=True)
class VendorSmiCode(_Pwg):
    """VendorSMICode (4): Reserved (8 bits) + the manufacturer's SMI PEN (24 bits)."""

    TYPE: ClassVar[int] = T.VENDOR_SMI_CODE
    NAME: ClassVar[str] = "HCD VendorSMICode"

    code: int = 0

    def encode_value(self) -> bytes:
        return _U32.pack(self.code & 0xFFFFFF)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) != 4:
            raise _wrong_size(value, 4, offset, cls.NAME)
        # the reserved octet is ignored on receipt (RFC 5792 §4.1 habit)
        return cls._new(int.from_bytes(value, "big") & 0xFFFFFF, noskip)


_FORWARDING = tuple(ForwardingStatus)


@register_attribute
@dataclass(frozen=True, slots=True)
class HcdForwardingEnabled(_Pwg):
    """ForwardingEnabled (22): whether the device forwards IP traffic
    between its interfaces; the values of RFC 5792 §4.2.11."""

    TYPE: ClassVar[int] = T.FORWARDING_ENABLED
    NAME: ClassVar[str] = "HCD ForwardingEnabled"

    status: ForwardingStatus = ForwardingStatus.UNKNOWN

    def encode_value(self) -> bytes:
        return _U32.pack(self.status)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) != 4:
            raise _wrong_size(value, 4, offset, cls.NAME)
        status = int.from_bytes(value, "big")
        if status > 2:
            raise PaTncError.invalid_parameter(offset, f"{cls.NAME}: unknown value {status}")
        return cls._new(_FORWARDING[status], noskip)


_new_tuple = tuple.__new__


@register_attribute
@dataclass(frozen=True, slots=True)
class FirewallSetting(_Pwg):
    """FirewallSetting (21): the device's open and blocked ports, entries as
    in the Port Filter (RFC 5792 §4.2.6): Reserved (7 bits) + B flag,
    Protocol, Port Number."""

    TYPE: ClassVar[int] = T.FIREWALL_SETTING
    NAME: ClassVar[str] = "HCD FirewallSetting"

    entries: tuple[PortEntry, ...] = ()

    def encode_value(self) -> bytes:
        pack = _PORT_ENTRY.pack
        return b"".join(pack(1 if e.blocked else 0, e.protocol, e.port) for e in self.entries)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        if len(value) % 4:
            raise PaTncError.invalid_parameter(offset - 4, f"{cls.NAME} value is {len(value)} bytes, "
                                                           "not a multiple of 4")
        entries = tuple(_new_tuple(PortEntry, (protocol, port, flags & 1 == 1))
                        for flags, protocol, port in _PORT_ENTRY.iter_unpack(value))
        return cls._new(entries, noskip)
