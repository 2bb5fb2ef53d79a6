"""Ephemeral Diffie-Hellman over the IKEv2 groups (IANA "Transform Type 4"
numbers): MODP groups 14-18 (RFC 3526), ECP groups 19-21 (RFC 5903: public
value x | y, shared secret x) and Curve25519/Curve448 (31/32, RFC 8031), with
the public value checks of RFC 7296 §3.4 / RFC 6989.

IKEv2 (``transports.ikev2.crypto``) and the PTS D-H nonce exchange of
attestation (``nac.pts.nonce``) both use it: it knows neither protocol.
Private values never appear in a repr or an exception message.
"""

from __future__ import annotations

import secrets
from enum import IntEnum

from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["DiffieHellman", "Group", "InvalidPublicValue", "SUPPORTED_GROUPS", "group_name", "modp_prime"]


class Group(IntEnum):
    """The Diffie-Hellman groups nac implements, by their IKEv2 numbers."""

    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    MODP_6144 = 17
    MODP_8192 = 18
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    CURVE25519 = 31
    CURVE448 = 32


class InvalidPublicValue(ValueError):
    """A peer's public value of the wrong length, or not an element of the group."""


_MODP_PRIMES = {
    # 2048-bit MODP group (RFC 3526 §3)
    2048: int(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
        16,
    ),
    # 3072-bit MODP group (RFC 3526 §4)
    3072: int(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
        16,
    ),
    # 4096-bit MODP group (RFC 3526 §5)
    4096: int(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
        "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
        "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
        "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
        16,
    ),
    # 6144-bit MODP group (RFC 3526 §6)
    6144: int(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
        "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
        "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
        "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C93402849236C3FAB4D27C7026"
        "C1D4DCB2602646DEC9751E763DBA37BDF8FF9406AD9E530EE5DB382F413001AE"
        "B06A53ED9027D831179727B0865A8918DA3EDBEBCF9B14ED44CE6CBACED4BB1B"
        "DB7F1447E6CC254B332051512BD7AF426FB8F401378CD2BF5983CA01C64B92EC"
        "F032EA15D1721D03F482D7CE6E74FEF6D55E702F46980C82B5A84031900B1C9E"
        "59E7C97FBEC7E8F323A97A7E36CC88BE0F1D45B7FF585AC54BD407B22B4154AA"
        "CC8F6D7EBF48E1D814CC5ED20F8037E0A79715EEF29BE32806A1D58BB7C5DA76"
        "F550AA3D8A1FBFF0EB19CCB1A313D55CDA56C9EC2EF29632387FE8D76E3C0468"
        "043E8F663F4860EE12BF2D5B0B7474D6E694F91E6DCC4024FFFFFFFFFFFFFFFF",
        16,
    ),
    # 8192-bit MODP group (RFC 3526 §7)
    8192: int(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
        "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
        "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
        "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C93402849236C3FAB4D27C7026"
        "C1D4DCB2602646DEC9751E763DBA37BDF8FF9406AD9E530EE5DB382F413001AE"
        "B06A53ED9027D831179727B0865A8918DA3EDBEBCF9B14ED44CE6CBACED4BB1B"
        "DB7F1447E6CC254B332051512BD7AF426FB8F401378CD2BF5983CA01C64B92EC"
        "F032EA15D1721D03F482D7CE6E74FEF6D55E702F46980C82B5A84031900B1C9E"
        "59E7C97FBEC7E8F323A97A7E36CC88BE0F1D45B7FF585AC54BD407B22B4154AA"
        "CC8F6D7EBF48E1D814CC5ED20F8037E0A79715EEF29BE32806A1D58BB7C5DA76"
        "F550AA3D8A1FBFF0EB19CCB1A313D55CDA56C9EC2EF29632387FE8D76E3C0468"
        "043E8F663F4860EE12BF2D5B0B7474D6E694F91E6DBE115974A3926F12FEE5E4"
        "38777CB6A932DF8CD8BEC4D073B931BA3BC832B68D9DD300741FA7BF8AFC47ED"
        "2576F6936BA424663AAB639C5AE4F5683423B4742BF1C978238F16CBE39D652D"
        "E3FDB8BEFC848AD922222E04A4037C0713EB57A81A23F0C73473FC646CEA306B"
        "4BCBC8862F8385DDFA9D4B7FA2C087E879683303ED5BDD3A062B3CF5B3A278A6"
        "6D2A13F83F44F82DDF310EE074AB6A364597E899A0255DC164F31CC50846851D"
        "F9AB48195DED7EA1B1D510BD7EE74D73FAF36BC31ECFA268359046F4EB879F92"
        "4009438B481C6CD7889A002ED5EE382BC9190DA6FC026E479558E4475677E9AA"
        "9E3050E2765694DFC81F56E880B96E7160C980DD98EDD3DFFFFFFFFFFFFFFFFF",
        16,
    ),
}
_MODP_GROUPS = {
    Group.MODP_2048: 2048, Group.MODP_3072: 3072, Group.MODP_4096: 4096,
    Group.MODP_6144: 6144, Group.MODP_8192: 8192,
}
# private exponent bits: twice the group's security strength (NIST SP 800-57)
_MODP_EXPONENT_BITS = {2048: 256, 3072: 256, 4096: 320, 6144: 384, 8192: 416}
_ECP_CURVES = {Group.ECP_256: ec.SECP256R1, Group.ECP_384: ec.SECP384R1, Group.ECP_521: ec.SECP521R1}
_ECP_SIZES = {Group.ECP_256: 32, Group.ECP_384: 48, Group.ECP_521: 66}
_MONTGOMERY = {Group.CURVE25519: (x25519.X25519PrivateKey, x25519.X25519PublicKey, 32),
               Group.CURVE448: (x448.X448PrivateKey, x448.X448PublicKey, 56)}

SUPPORTED_GROUPS = frozenset({*_MODP_GROUPS, *_ECP_CURVES, *_MONTGOMERY})


class DiffieHellman:
    """One side's ephemeral key of a Diffie-Hellman exchange.

    ``public_value`` is what goes on the wire (IKEv2's Key Exchange Data,
    PTS's D-H public value), ``shared_secret(peer)`` g^xy (MODP: padded to
    the prime length; ECP: the x coordinate; Curve25519/448: the X25519/X448
    output).
    """

    __slots__ = ("group", "public_value", "_private")

    def __init__(self, group: int, public_value: bytes, private) -> None:
        self.group = group
        self.public_value = public_value
        self._private = private

    def __repr__(self) -> str:
        return f"DiffieHellman({group_name(self.group)})"

    @classmethod
    def generate(cls, group: int) -> DiffieHellman:
        """A new key pair; ``ValueError`` for a group nac does not implement."""
        if group in _MODP_GROUPS:
            bits = _MODP_EXPONENT_BITS[_MODP_GROUPS[group]]
            return cls.from_private(group, (secrets.randbits(bits) | (1 << (bits - 1))).to_bytes(bits // 8, "big"))
        if group in _ECP_CURVES:
            return cls._ecp(group, ec.generate_private_key(_ECP_CURVES[group]()))
        if group in _MONTGOMERY:
            private_class = _MONTGOMERY[group][0]
            key = private_class.generate()
            return cls(group, key.public_key().public_bytes_raw(), key)
        raise ValueError(f"DH group {group_name(group)} not supported")

    @classmethod
    def from_private(cls, group: int, private: bytes) -> DiffieHellman:
        """A key pair from a known private value (exponent, scalar or raw
        key), for test vectors and recorded exchanges."""
        if group in _MODP_GROUPS:
            prime = _MODP_PRIMES[_MODP_GROUPS[group]]
            exponent = int.from_bytes(private, "big")
            return cls(group, pow(2, exponent, prime).to_bytes(_MODP_GROUPS[group] // 8, "big"), exponent)
        if group in _ECP_CURVES:
            return cls._ecp(group, ec.derive_private_key(int.from_bytes(private, "big"), _ECP_CURVES[group]()))
        if group in _MONTGOMERY:
            key = _MONTGOMERY[group][0].from_private_bytes(private)
            return cls(group, key.public_key().public_bytes_raw(), key)
        raise ValueError(f"DH group {group_name(group)} not supported")

    @classmethod
    def _ecp(cls, group: int, key: ec.EllipticCurvePrivateKey) -> DiffieHellman:
        # RFC 5903 §7: the public value is x | y, without the SEC1 0x04 prefix
        return cls(group, key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)[1:], key)

    def private_bytes(self) -> bytes:
        """The private value, for recording a test exchange only."""
        if isinstance(self._private, int):
            return self._private.to_bytes((self._private.bit_length() + 7) // 8, "big")
        if isinstance(self._private, ec.EllipticCurvePrivateKey):
            return self._private.private_numbers().private_value.to_bytes(_ECP_SIZES[self.group], "big")
        return self._private.private_bytes_raw()

    def shared_secret(self, peer: bytes) -> bytes:
        """g^xy from the peer's public value; ``InvalidPublicValue``
        when the value has the wrong length or is not a valid group element."""
        if self.group in _MODP_GROUPS:
            size = _MODP_GROUPS[self.group] // 8
            prime = _MODP_PRIMES[_MODP_GROUPS[self.group]]
            if len(peer) != size:
                raise InvalidPublicValue(f"public value of {len(peer)} bytes, {size} expected")
            value = int.from_bytes(peer, "big")
            # RFC 6989 §2.1: 1 < y < p-1 suffices for these safe-prime groups
            if not 1 < value < prime - 1:
                raise InvalidPublicValue("public value out of range")
            return pow(value, self._private, prime).to_bytes(size, "big")
        if self.group in _ECP_CURVES:
            size = _ECP_SIZES[self.group]
            if len(peer) != 2 * size:
                raise InvalidPublicValue(f"public value of {len(peer)} bytes, {2 * size} expected")
            try:
                # checks that the point is on the curve (RFC 6989 §2.3)
                public = ec.EllipticCurvePublicKey.from_encoded_point(_ECP_CURVES[self.group](), b"\x04" + peer)
                return self._private.exchange(ec.ECDH(), public)
            except ValueError:
                raise InvalidPublicValue("public value is not a point on the curve") from None
        public_class, size = _MONTGOMERY[self.group][1:]
        if len(peer) != size:
            raise InvalidPublicValue(f"public value of {len(peer)} bytes, {size} expected")
        try:
            # OpenSSL refuses an all-zero result (a small-order point, RFC 8031 §2.3)
            return self._private.exchange(public_class.from_public_bytes(peer))
        except ValueError:
            raise InvalidPublicValue("public value gives an all-zero shared secret") from None


def modp_prime(group: int) -> int:
    """The prime of a MODP group nac implements (generator 2, RFC 3526)."""
    return _MODP_PRIMES[_MODP_GROUPS[group]]


def group_name(group: int) -> str:
    """The group's name (``ECP_256``), or its number when nac does not implement it."""
    return Group(group).name if group in Group._value2member_map_ else str(group)
