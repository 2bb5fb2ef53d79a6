"""ITA-HSR attributes (PEN 0x00902a, strongSwan's own namespace; types from
strongSwan's ``ita_attr.h``).

strongSwan's OS IMC sends Device ID; Command and Dummy are the language of
its test IMC and IMV (PA subtype ITA-HSR/Test, :class:`ItaSubtype`), the
others belong to its attestation IMCs/IMVs.  Counts and lengths are
big-endian; strings are UTF-8 with a 16-bit length where they are lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, NamedTuple

from nac.pa.message import (
    ATTRIBUTE_HEADER_SIZE,
    AttributeReader,
    PaAttribute,
    PaVendor,
    RawValueAttribute,
    data16,
    register_attribute,
    utf8,
)

__all__ = [
    "DeviceId",
    "ItaAttributeType",
    "ItaCommand",
    "ItaDummy",
    "ItaEcho",
    "ItaGetSettings",
    "ItaGetSymlinks",
    "ItaSetting",
    "ItaSettings",
    "ItaStartAngel",
    "ItaStopAngel",
    "ItaSubtype",
    "ItaSymlink",
    "ItaSymlinks",
    "TestCommand",
]


class ItaSubtype(IntEnum):
    """ITA-HSR PA subtypes (strongSwan's ``pa_subtype_ita_t``)."""

    TEST = 0x01
    ECHO = 0x02


class TestCommand:
    """The words of the ITA Command attribute between strongSwan's test
    collector and verifier.  The collector sends what it was told to
    (``allow``, ``isolate``, ``block``, ``none``, ``retry``: the
    verifier's recommendation, or a handshake retry); the verifier sends
    ``repeat`` to ask for another round of measurements."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    ALLOW = "allow"
    ISOLATE = "isolate"
    BLOCK = "block"
    NONE = "none"
    RETRY = "retry"
    REPEAT = "repeat"


class ItaAttributeType(IntEnum):
    """ITA-HSR PA-TNC attribute types."""

    COMMAND = 1
    DUMMY = 2
    GET_SETTINGS = 3
    SETTINGS = 4
    START_ANGEL = 5
    STOP_ANGEL = 6
    ECHO = 7
    DEVICE_ID = 8
    GET_SYMLINKS = 9
    SYMLINKS = 10


T = ItaAttributeType


@dataclass(frozen=True, slots=True)
class _Ita(PaAttribute):
    VENDOR: ClassVar[int] = PaVendor.ITA_HSR


@dataclass(frozen=True, slots=True)
class _ItaString(_Ita):
    """A value that is one UTF-8 string without length prefix or NUL."""

    text: str = ""

    def encode_value(self) -> bytes:
        return self.text.encode()

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        return cls._new(utf8(value, offset, cls.NAME), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class ItaCommand(_ItaString):
    """Command (1): one word of the test collector and verifier
    (:class:`TestCommand`), the whole value, without NUL."""

    TYPE: ClassVar[int] = T.COMMAND
    NAME: ClassVar[str] = "Command"


@register_attribute
@dataclass(frozen=True, slots=True)
class ItaDummy(RawValueAttribute):
    """Dummy (2): padding of a chosen size, to test large messages; any
    content is accepted (strongSwan fills it with 0xdd)."""

    VENDOR: ClassVar[int] = PaVendor.ITA_HSR
    TYPE: ClassVar[int] = T.DUMMY
    NAME: ClassVar[str] = "Dummy"

    FILL: ClassVar[int] = 0xDD

    @classmethod
    def of_size(cls, size: int, *, noskip: bool = False) -> ItaDummy:
        """A Dummy of ``size`` bytes, filled as strongSwan fills it."""
        if size < 0:
            raise ValueError("a Dummy cannot be smaller than 0 bytes")
        return cls(bytes((cls.FILL,)) * size, noskip=noskip)

    @property
    def size(self) -> int:
        return len(self.value)


@register_attribute
@dataclass(frozen=True, slots=True)
class ItaGetSettings(_Ita):
    """Get Settings (3): Count (32 bits), then setting names (16-bit length each)."""

    TYPE: ClassVar[int] = T.GET_SETTINGS
    NAME: ClassVar[str] = "Get Settings"

    names: tuple[str, ...] = ()

    def encode_value(self) -> bytes:
        return len(self.names).to_bytes(4, "big") + b"".join(data16(n.encode(), "setting name") for n in self.names)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, "Get Settings")
        count = r.u32("Count")
        names = tuple(r.text16(f"setting name {i + 1} of {count}") for i in range(count))
        r.end()
        return cls._new(names, noskip)


class ItaSetting(NamedTuple):
    name: str
    value: str


@register_attribute
@dataclass(frozen=True, slots=True)
class ItaSettings(_Ita):
    """Settings (4): Count (32 bits), then (name, value) pairs, 16-bit length each."""

    TYPE: ClassVar[int] = T.SETTINGS
    NAME: ClassVar[str] = "Settings"

    settings: tuple[ItaSetting, ...] = ()

    def encode_value(self) -> bytes:
        return len(self.settings).to_bytes(4, "big") + b"".join(
            data16(s.name.encode(), "setting name") + data16(s.value.encode(), "setting value")
            for s in self.settings
        )

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, "Settings")
        count = r.u32("Count")
        settings = tuple(
            ItaSetting(r.text16(f"setting name {i + 1}"), r.text16(f"setting value {i + 1}")) for i in range(count)
        )
        r.end()
        return cls._new(settings, noskip)


@dataclass(frozen=True, slots=True)
class _ItaEmpty(_Ita):
    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        AttributeReader(value, offset, cls.NAME).end()
        return cls._new(noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class ItaStartAngel(_ItaEmpty):
    """Start Angel (5): empty; starts strongSwan's test "angel" process."""

    TYPE: ClassVar[int] = T.START_ANGEL
    NAME: ClassVar[str] = "Start Angel"


@register_attribute
@dataclass(frozen=True, slots=True)
class ItaStopAngel(_ItaEmpty):
    """Stop Angel (6): empty."""

    TYPE: ClassVar[int] = T.STOP_ANGEL
    NAME: ClassVar[str] = "Stop Angel"


@register_attribute
@dataclass(frozen=True, slots=True)
class ItaEcho(RawValueAttribute):
    """Echo (7): opaque bytes (strongSwan has no class for it)."""

    VENDOR: ClassVar[int] = PaVendor.ITA_HSR
    TYPE: ClassVar[int] = T.ECHO
    NAME: ClassVar[str] = "Echo"


@register_attribute
@dataclass(frozen=True, slots=True)
class DeviceId(_Ita):
    """Device ID (8): a string identifying the endpoint; strongSwan's OS IMC
    sends the machine-id (``/etc/machine-id``, 32 hex digits)."""

    TYPE: ClassVar[int] = T.DEVICE_ID
    NAME: ClassVar[str] = "Device ID"

    device_id: str = ""

    def encode_value(self) -> bytes:
        return self.device_id.encode()

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        return cls._new(utf8(value, offset, "Device ID"), noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class ItaGetSymlinks(_ItaString):
    """Get Symlinks (9): the directories to look for symbolic links in, one string."""

    TYPE: ClassVar[int] = T.GET_SYMLINKS
    NAME: ClassVar[str] = "Get Symlinks"


class ItaSymlink(NamedTuple):
    symlink: str
    target_directory: str


@register_attribute
@dataclass(frozen=True, slots=True)
class ItaSymlinks(_Ita):
    """Symlinks (10): Count (32 bits), then (symlink, directory) pairs, 16-bit length each."""

    TYPE: ClassVar[int] = T.SYMLINKS
    NAME: ClassVar[str] = "Symlinks"

    symlinks: tuple[ItaSymlink, ...] = ()

    def encode_value(self) -> bytes:
        return len(self.symlinks).to_bytes(4, "big") + b"".join(
            data16(s.symlink.encode(), "symlink") + data16(s.target_directory.encode(), "directory")
            for s in self.symlinks
        )

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, "Symlinks")
        count = r.u32("Count")
        symlinks = tuple(ItaSymlink(r.text16(f"symlink {i + 1}"), r.text16(f"directory {i + 1}")) for i in range(count))
        r.end()
        return cls._new(symlinks, noskip)
