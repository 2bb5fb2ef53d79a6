"""EAP packets (RFC 3748 §4): Request, Response, Success, Failure.

The codec only frames: method type-data stays bytes and is read by the
method modules.  Bytes beyond the Length field are link-layer padding and are
ignored (RFC 3748 §4.1); a Length beyond the bytes received, a Success or
Failure with data, or a Request/Response without a Type is an
:class:`EapError` carrying the offset of the bad field.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "EAP_HEADER_SIZE",
    "EXPANDED_NAK",
    "EapCode",
    "EapError",
    "EapPacket",
    "EapType",
    "MAX_EAP_PACKET",
    "nak_types",
    "next_identifier",
    "type_name",
]

EAP_HEADER_SIZE = 4
MAX_EAP_PACKET = 0xFFFF
_HEADER = struct.Struct(">BBH")


class EapCode(IntEnum):
    """EAP Code field (RFC 3748 §4)."""

    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4

    @property
    def short(self) -> str:
        """strongSwan's short names: REQ, RES, SUCC, FAIL."""
        return _SHORT_CODES[self]


_SHORT_CODES = {EapCode.REQUEST: "REQ", EapCode.RESPONSE: "RES",
                EapCode.SUCCESS: "SUCC", EapCode.FAILURE: "FAIL"}
_CODES = {int(c): c for c in EapCode}


class EapType(IntEnum):
    """EAP method types used here (IANA "Method Types", RFC 3748 §5)."""

    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    MD5_CHALLENGE = 4
    TTLS = 21
    MSCHAPV2 = 26
    TNC = 38
    PT_EAP = 54
    EXPANDED = 254

    @property
    def label(self) -> str:
        """Names as strongSwan logs them (EAP_MD5, EAP_TTLS, ...)."""
        return _LABELS[self]


_LABELS = {
    EapType.IDENTITY: "EAP_IDENTITY", EapType.NOTIFICATION: "EAP_NOTIFICATION",
    EapType.NAK: "EAP_NAK", EapType.MD5_CHALLENGE: "EAP_MD5", EapType.TTLS: "EAP_TTLS",
    EapType.MSCHAPV2: "EAP_MSCHAPV2", EapType.TNC: "EAP_TNC", EapType.PT_EAP: "EAP_PT_EAP",
    EapType.EXPANDED: "EAP_EXPANDED",
}
_TYPES = {int(t): t for t in EapType}

EXPANDED_NAK = (0, int(EapType.NAK))
"""(Vendor-Id, Vendor-Type) of the Expanded Nak (RFC 3748 §5.3.2)."""


def type_name(value: int | None) -> str:
    """A method type for log lines: its label, or the number when unknown."""
    if value is None:
        return "none"
    known = _TYPES.get(value)
    return known.label if known is not None else f"EAP_TYPE_{value}"


class EapError(Exception):
    """A malformed EAP packet; ``offset`` is where inside it the problem is."""

    def __init__(self, reason: str, offset: int = 0):
        super().__init__(f"{reason} (offset {offset})")
        self.reason = reason
        self.offset = offset


@dataclass(frozen=True, slots=True)
class EapPacket:
    """One EAP packet (RFC 3748 §4).

    ``type`` is the method type for Requests and Responses (None for Success
    and Failure); values outside :class:`EapType` are kept as plain ints.
    ``type_data`` is everything after the Type octet.
    """

    code: EapCode | int
    identifier: int
    type: EapType | int | None = None
    type_data: bytes = b""

    # -- constructors ----------------------------------------------------------

    @classmethod
    def request(cls, identifier: int, eap_type: EapType | int, type_data: bytes = b"") -> EapPacket:
        return cls(EapCode.REQUEST, identifier, eap_type, type_data)

    @classmethod
    def response(cls, identifier: int, eap_type: EapType | int, type_data: bytes = b"") -> EapPacket:
        return cls(EapCode.RESPONSE, identifier, eap_type, type_data)

    @classmethod
    def success(cls, identifier: int) -> EapPacket:
        return cls(EapCode.SUCCESS, identifier)

    @classmethod
    def failure(cls, identifier: int) -> EapPacket:
        return cls(EapCode.FAILURE, identifier)

    # -- wire -------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes, *, max_size: int = MAX_EAP_PACKET) -> EapPacket:
        """Decode one packet; raises :class:`EapError`."""
        size = len(data)
        if size < EAP_HEADER_SIZE:
            raise EapError(f"packet of {size} bytes is shorter than the EAP header", 0)
        code, identifier, length = _HEADER.unpack_from(data)
        if length < EAP_HEADER_SIZE:
            raise EapError(f"Length {length} is shorter than the EAP header", 2)
        if length > size:
            raise EapError(f"Length {length} exceeds the {size} bytes received", 2)
        if length > max_size:
            raise EapError(f"Length {length} exceeds the {max_size}-byte limit", 2)
        code = _CODES.get(code, code)
        if code in (EapCode.SUCCESS, EapCode.FAILURE):
            if length != EAP_HEADER_SIZE:
                raise EapError(f"{EapCode(code).name.title()} packet with {length - 4} data bytes", 4)
            return cls(code, identifier)
        if code not in (EapCode.REQUEST, EapCode.RESPONSE):
            raise EapError(f"unknown EAP code {code}", 0)
        if length < EAP_HEADER_SIZE + 1:
            raise EapError("Request/Response without a Type", 4)
        eap_type = data[4]
        return cls(code, identifier, _TYPES.get(eap_type, eap_type), bytes(data[5:length]))

    def build(self) -> bytes:
        if self.type is None:
            return _HEADER.pack(self.code, self.identifier, EAP_HEADER_SIZE)
        length = EAP_HEADER_SIZE + 1 + len(self.type_data)
        if length > MAX_EAP_PACKET:
            raise ValueError(f"EAP packet of {length} bytes exceeds the 16-bit Length field")
        return _HEADER.pack(self.code, self.identifier, length) + bytes((self.type,)) + self.type_data

    # -- reading ----------------------------------------------------------------

    @property
    def expanded_type(self) -> tuple[int, int] | None:
        """(Vendor-Id, Vendor-Type) of an Expanded Type packet (RFC 3748 §5.7)."""
        if self.type != EapType.EXPANDED or len(self.type_data) < 7:
            return None
        return (int.from_bytes(self.type_data[:3], "big"), int.from_bytes(self.type_data[3:7], "big"))

    @property
    def is_nak(self) -> bool:
        """A legacy Nak or an Expanded Nak."""
        return self.type == EapType.NAK or self.expanded_type == EXPANDED_NAK

    def describe(self) -> str:
        """'EAP/RES/MD5'-style summary, as strongSwan logs packets."""
        code = _CODES.get(self.code)
        short = code.short if code is not None else str(self.code)
        if self.type is None:
            return f"EAP/{short}"
        return f"EAP/{short}/{type_name(self.type).removeprefix('EAP_')}"


def nak_types(packet: EapPacket) -> tuple[int, ...]:
    """The method types a Nak proposes instead (RFC 3748 §5.3): from a legacy
    Nak the Type octets, from an Expanded Nak the IETF (vendor 0) entries.
    Type 0 ("no alternative") is left out."""
    if packet.type == EapType.NAK:
        return tuple(t for t in packet.type_data if t != 0)
    if packet.expanded_type == EXPANDED_NAK:
        # after the 7-byte expanded header come 8-byte (type, vendor, vendor-type) entries
        body = packet.type_data[7:]
        out = []
        for i in range(0, len(body) - 7, 8):
            vendor = int.from_bytes(body[i + 1:i + 4], "big")
            vtype = int.from_bytes(body[i + 4:i + 8], "big")
            if vendor == 0 and vtype != 0:
                out.append(vtype)
        return tuple(out)
    return ()


def next_identifier(identifier: int) -> int:
    """The Identifier after ``identifier`` (RFC 3748 §4: each new Request a new one)."""
    return (identifier + 1) & 0xFF
