"""Diameter AVPs as EAP-TTLS carries them in its tunnel (RFC 5281 §10).

Each AVP: Code (4), Flags (V 0x80 vendor-specific, M 0x40 mandatory), Length
(3, header and data without padding), Vendor-ID (4, when V), Data, then zero
padding to a multiple of four.  The codes are RADIUS attribute numbers
(RFC 5281 §10.2); the Microsoft ones (vendor 311) come from RFC 2548.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Iterable

__all__ = [
    "Avp",
    "AvpCode",
    "AvpError",
    "AvpFlags",
    "MicrosoftAvpCode",
    "VENDOR_MICROSOFT",
    "build_avps",
    "parse_avps",
]

VENDOR_MICROSOFT = 311
_HEADER = struct.Struct(">IB3s")
_VENDOR = struct.Struct(">I")
MAX_AVP_LENGTH = 0xFFFFFF


class AvpCode(IntEnum):
    """RADIUS attribute numbers used as AVP codes in EAP-TTLS phase 2."""

    USER_NAME = 1
    USER_PASSWORD = 2
    CHAP_PASSWORD = 3
    REPLY_MESSAGE = 18
    EAP_MESSAGE = 79


class MicrosoftAvpCode(IntEnum):
    """Microsoft vendor-specific attributes (RFC 2548 §2)."""

    MS_CHAP_RESPONSE = 1
    MS_CHAP_ERROR = 2
    MS_CHAP_CHALLENGE = 11
    MS_CHAP2_RESPONSE = 25
    MS_CHAP2_SUCCESS = 26


class AvpFlags(IntFlag):
    VENDOR = 0x80
    MANDATORY = 0x40
    PROTECTED = 0x20


class AvpError(Exception):
    """Malformed AVP data; ``offset`` is where in the decrypted data it is."""

    def __init__(self, reason: str, offset: int = 0):
        super().__init__(f"{reason} (offset {offset})")
        self.reason = reason
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Avp:
    """One AVP.  ``vendor_id`` is None for IETF (RADIUS) attributes."""

    code: int
    data: bytes
    vendor_id: int | None = None
    mandatory: bool = True
    flags: int = field(default=0, compare=False)
    """The flag bits as received (reserved bits kept), 0 when built locally."""

    @property
    def header_size(self) -> int:
        return 12 if self.vendor_id is not None else 8

    @property
    def known(self) -> AvpCode | MicrosoftAvpCode | None:
        """The registry value of the code, or None when nac does not know it."""
        table = _IETF if self.vendor_id is None else _MICROSOFT if self.vendor_id == VENDOR_MICROSOFT else {}
        return table.get(self.code)

    def build(self) -> bytes:
        length = self.header_size + len(self.data)
        if length > MAX_AVP_LENGTH:
            raise ValueError(f"AVP of {length} bytes exceeds the 24-bit Length field")
        flags = self.flags & ~(AvpFlags.VENDOR | AvpFlags.MANDATORY)
        flags |= AvpFlags.MANDATORY if self.mandatory else 0
        head = b""
        if self.vendor_id is not None:
            flags |= AvpFlags.VENDOR
            head = _VENDOR.pack(self.vendor_id)
        return (_HEADER.pack(self.code, flags, length.to_bytes(3, "big")) + head + self.data
                + b"\x00" * (-length % 4))


_IETF = {int(c): c for c in AvpCode}
_MICROSOFT = {int(c): c for c in MicrosoftAvpCode}


def parse_avps(data: bytes, *, max_count: int = 64) -> tuple[Avp, ...]:
    """Decode a sequence of AVPs; raises :class:`AvpError`.

    The padding after the last AVP may be missing (RFC 5281 §10.1 lets the
    final AVP's padding be absent in practice; hostapd accepts that too).
    """
    out: list[Avp] = []
    offset, size = 0, len(data)
    while offset < size:
        if len(out) >= max_count:
            raise AvpError(f"more than {max_count} AVPs", offset)
        if size - offset < 8:
            raise AvpError(f"{size - offset} bytes left, too short for an AVP header", offset)
        code, flags, raw_length = _HEADER.unpack_from(data, offset)
        length = int.from_bytes(raw_length, "big")
        vendor_id = None
        header = 8
        if flags & AvpFlags.VENDOR:
            header = 12
            if size - offset < 12:
                raise AvpError("AVP with the V flag has no Vendor-ID", offset + 8)
            (vendor_id,) = _VENDOR.unpack_from(data, offset + 8)
        if length < header:
            raise AvpError(f"AVP Length {length} is shorter than its {header}-byte header", offset + 5)
        if length > size - offset:
            raise AvpError(f"AVP Length {length} exceeds the {size - offset} bytes left", offset + 5)
        out.append(Avp(code, bytes(data[offset + header:offset + length]), vendor_id,
                       bool(flags & AvpFlags.MANDATORY), flags))
        offset += length + (-length % 4)
    return tuple(out)


def build_avps(avps: Iterable[Avp]) -> bytes:
    return b"".join(avp.build() for avp in avps)
