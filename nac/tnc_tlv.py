"""The 12-byte header PA-TNC attributes (RFC 5792 §4.2) and PB-TNC messages
(RFC 5793 §4.2) share: flags (NOSKIP 0x80) and a 24-bit vendor id in the
first word, then a 32-bit type and a 32-bit length counting the header."""

from __future__ import annotations

import struct

__all__ = ["NOSKIP", "TLV_HEADER", "TLV_HEADER_SIZE", "build_tlv"]

NOSKIP = 0x80
TLV_HEADER = struct.Struct(">III")
TLV_HEADER_SIZE = TLV_HEADER.size


def build_tlv(noskip: bool, vendor: int, type_: int, value: bytes) -> bytes:
    """Header and value of one attribute or message."""
    return TLV_HEADER.pack((NOSKIP << 24 if noskip else 0) | vendor, type_, TLV_HEADER_SIZE + len(value)) + value
