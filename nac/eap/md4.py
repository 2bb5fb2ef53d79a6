"""MD4 (RFC 1320), for the MS-CHAPv2 NT password hash only.

OpenSSL 3 moved MD4 to its legacy provider, so ``hashlib.new("md4")`` is
usually unavailable; MS-CHAPv2 (RFC 2759 §8.3) still needs it.  The inputs
are short (a UTF-16 password, a 16-byte hash), so a plain implementation is
fast enough.  Not for any other use: MD4 is broken.
"""

from __future__ import annotations

import struct

__all__ = ["md4"]

_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<16I")

# RFC 1320 §3.4: the order in which rounds 2 and 3 read the block's words
_ROUND2 = (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)
_ROUND3 = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)


def _rotl(x: int, n: int) -> int:
    x &= _MASK
    return ((x << n) | (x >> (32 - n))) & _MASK


def md4(data: bytes) -> bytes:
    """The 16-byte MD4 digest of ``data``."""
    length_bits = (len(data) * 8) & 0xFFFFFFFFFFFFFFFF
    padded = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack("<Q", length_bits)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for offset in range(0, len(padded), 64):
        x = _WORDS.unpack_from(padded, offset)
        aa, bb, cc, dd = a, b, c, d
        for i in range(0, 16, 4):  # round 1: F(x,y,z) = xy | ~x z
            a = _rotl(a + ((b & c) | (~b & d)) + x[i], 3)
            d = _rotl(d + ((a & b) | (~a & c)) + x[i + 1], 7)
            c = _rotl(c + ((d & a) | (~d & b)) + x[i + 2], 11)
            b = _rotl(b + ((c & d) | (~c & a)) + x[i + 3], 19)
        for i in range(0, 16, 4):  # round 2: G(x,y,z) = xy | xz | yz
            k = _ROUND2
            a = _rotl(a + ((b & c) | (b & d) | (c & d)) + x[k[i]] + 0x5A827999, 3)
            d = _rotl(d + ((a & b) | (a & c) | (b & c)) + x[k[i + 1]] + 0x5A827999, 5)
            c = _rotl(c + ((d & a) | (d & b) | (a & b)) + x[k[i + 2]] + 0x5A827999, 9)
            b = _rotl(b + ((c & d) | (c & a) | (d & a)) + x[k[i + 3]] + 0x5A827999, 13)
        for i in range(0, 16, 4):  # round 3: H(x,y,z) = x ^ y ^ z
            k = _ROUND3
            a = _rotl(a + (b ^ c ^ d) + x[k[i]] + 0x6ED9EBA1, 3)
            d = _rotl(d + (a ^ b ^ c) + x[k[i + 1]] + 0x6ED9EBA1, 9)
            c = _rotl(c + (d ^ a ^ b) + x[k[i + 2]] + 0x6ED9EBA1, 11)
            b = _rotl(b + (c ^ d ^ a) + x[k[i + 3]] + 0x6ED9EBA1, 15)
        a, b, c, d = (a + aa) & _MASK, (b + bb) & _MASK, (c + cc) & _MASK, (d + dd) & _MASK
    return struct.pack("<4I", a, b, c, d)
