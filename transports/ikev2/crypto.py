"""IKEv2 cryptography (RFC 7296 §2.6, §2.13-§2.17, §2.23, §3.14, RFC 5282,
RFC 7634, RFC 7427, RFC 4754) on top of ``cryptography``.

- Diffie-Hellman: ``DiffieHellman.generate(group)``, the groups of
  :mod:`nac.keyexchange` (MODP 14-18, ECP 19-21, Curve25519/448) with the
  public value checks of RFC 7296 §3.4 / RFC 6989, a refused public value
  being ``InvalidKeyExchangeData``.
- ``Prf``: prf and prf+ (§2.13).  ``derive_ike_sa_keys`` gives SKEYSEED and
  SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr (§2.14), ``rekey_ike_sa_keys``
  the keys of a rekeyed IKE SA (§2.18), ``derive_child_sa_keys`` KEYMAT
  (§2.17).
- ``SkCipher``: protection of the SK/SKF payload in one direction: AES-CBC
  with HMAC-SHA1/SHA2 truncated ICVs (§3.14), AES-GCM with 16-byte ICV
  (RFC 5282), ChaCha20-Poly1305 (RFC 7634).
- AUTH (§2.15, §2.16): ``signed_octets``, ``shared_key_auth`` (pre-shared
  key or EAP MSK), ``sign_auth``/``verify_auth`` for digital signatures
  (RFC 7427 method 14 with ECDSA, RSA PKCS#1 v1.5 and RSASSA-PSS, Ed25519;
  verification of RFC 4754 ECDSA methods 9-11 and RSA method 1 too).
- ``nat_detection_hash`` (§2.23) and ``CookieSecret`` (§2.6).

Secrets never appear in a repr or an exception message.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import struct
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from nac import keyexchange
from transports.ikev2.message import (
    AuthMethod,
    Authentication,
    IkeProtocolError,
    IntegrityCheckFailed,
    Notify,
    NotifyType,
    Proposal,
)
from transports.ikev2.transforms import (
    Algorithms,
    DhGroup,
    EncryptionAlgorithm,
    IntegrityAlgorithm,
    PseudorandomFunction,
    TransformType,
)

SUPPORTED_DH_GROUPS = keyexchange.SUPPORTED_GROUPS

__all__ = [
    "KEY_PAD",
    "SUPPORTED_DH_GROUPS",
    "SUPPORTED_ENCRYPTION",
    "SUPPORTED_INTEGRITY",
    "SUPPORTED_PRF",
    "AuthenticationFailed",
    "ChildSaKeys",
    "CookieSecret",
    "DiffieHellman",
    "HashAlgorithm",
    "IkeSaKeys",
    "InvalidKeyExchangeData",
    "Prf",
    "SkCipher",
    "child_key_sizes",
    "default_hash_for",
    "derive_child_sa_keys",
    "derive_ike_sa_keys",
    "ike_proposal_supported",
    "modp_prime",
    "nat_detection_hash",
    "new_nonce",
    "new_spi",
    "parse_signature_hash_algorithms",
    "rekey_ike_sa_keys",
    "shared_key_auth",
    "sign_auth",
    "signature_hash_algorithms_notify",
    "signed_octets",
    "verify_auth",
]


class InvalidKeyExchangeData(IkeProtocolError, keyexchange.InvalidPublicValue):
    """A KE public value that fails the checks of RFC 7296 §3.4 / RFC 6989.

    strongSwan answers it with NO_PROPOSAL_CHOSEN ("applying DH public value
    failed"), and so does nac.
    """

    notify = NotifyType.NO_PROPOSAL_CHOSEN


class AuthenticationFailed(IkeProtocolError):
    """An AUTH payload that does not verify (AUTHENTICATION_FAILED)."""

    notify = NotifyType.AUTHENTICATION_FAILED


def new_spi() -> bytes:
    """A fresh, never zero, 8-byte IKE SPI."""
    while True:
        spi = os.urandom(8)
        if spi != bytes(8):
            return spi


def new_nonce(size: int = 32) -> bytes:
    """A nonce (RFC 7296 §2.10): 32 random bytes by default, as strongSwan
    sends, at least half the key size of every PRF nac supports."""
    return os.urandom(size)


# -- Diffie-Hellman (§2.14, §3.4) ----------------------------------------------------

class DiffieHellman(keyexchange.DiffieHellman):
    """One side's ephemeral key of a Diffie-Hellman exchange
    (:class:`nac.keyexchange.DiffieHellman`) whose refused peer value is an
    IKE protocol error: ``InvalidKeyExchangeData``."""

    __slots__ = ()

    def shared_secret(self, peer: bytes) -> bytes:
        try:
            return super().shared_secret(peer)
        except keyexchange.InvalidPublicValue as err:
            raise InvalidKeyExchangeData(str(err)) from None


modp_prime = keyexchange.modp_prime


def _group_name(group: int) -> str:
    return DhGroup(group).name if group in DhGroup._value2member_map_ else str(group)


# -- PRF and key derivation (§2.13, §2.14, §2.17, §2.18) ---------------------------------

_PRF_HASHES = {
    PseudorandomFunction.PRF_HMAC_SHA1: ("sha1", 20),
    PseudorandomFunction.PRF_HMAC_SHA2_256: ("sha256", 32),
    PseudorandomFunction.PRF_HMAC_SHA2_384: ("sha384", 48),
    PseudorandomFunction.PRF_HMAC_SHA2_512: ("sha512", 64),
}
# integrity algorithm: (hash, key size, ICV size)
_INTEG_HMACS = {
    IntegrityAlgorithm.AUTH_HMAC_SHA1_96: ("sha1", 20, 12),
    IntegrityAlgorithm.AUTH_HMAC_SHA2_256_128: ("sha256", 32, 16),
    IntegrityAlgorithm.AUTH_HMAC_SHA2_384_192: ("sha384", 48, 24),
    IntegrityAlgorithm.AUTH_HMAC_SHA2_512_256: ("sha512", 64, 32),
}
_AES_KEY_BITS = (128, 192, 256)
# AEADs for SK: 4 bytes of salt follow the key in the keying material
# (RFC 5282 §7.1, RFC 7634 §2), the IV on the wire is 8 bytes
_SK_AEADS = {EncryptionAlgorithm.ENCR_AES_GCM_16, EncryptionAlgorithm.ENCR_CHACHA20_POLY1305}

SUPPORTED_PRF = frozenset(_PRF_HASHES)
SUPPORTED_INTEGRITY = frozenset(_INTEG_HMACS)
SUPPORTED_ENCRYPTION = frozenset({EncryptionAlgorithm.ENCR_AES_CBC, *_SK_AEADS})


class Prf:
    """A pseudorandom function (RFC 7296 §2.13); nac implements the HMAC ones."""

    __slots__ = ("prf_id", "hash_name", "size")

    def __init__(self, prf_id: int) -> None:
        if prf_id not in _PRF_HASHES:
            raise ValueError(f"PRF {prf_id} not supported")
        self.prf_id = prf_id
        self.hash_name, self.size = _PRF_HASHES[prf_id]

    def __repr__(self) -> str:
        return f"Prf({PseudorandomFunction(self.prf_id).name})"

    def __call__(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, self.hash_name)

    def plus(self, key: bytes, seed: bytes, length: int) -> bytes:
        """prf+ (K, S) = T1 | T2 | … with T1 = prf(K, S | 0x01) and
        Tn = prf(K, Tn-1 | S | n), cut to ``length`` bytes."""
        blocks = -(-length // self.size)
        if blocks > 255:
            raise ValueError("prf+ cannot produce more than 255 blocks")
        out = []
        previous = b""
        for n in range(1, blocks + 1):
            previous = hmac.digest(key, previous + seed + bytes([n]), self.hash_name)
            out.append(previous)
        return b"".join(out)[:length]


def _encryption_key_size(encryption: int, key_length: int | None) -> int:
    """Bytes of keying material an encryption transform takes (key and salt)."""
    bits = key_length or 0
    if encryption in (EncryptionAlgorithm.ENCR_AES_CBC, EncryptionAlgorithm.ENCR_CAMELLIA_CBC):
        if bits not in _AES_KEY_BITS:
            raise ValueError(f"key length {bits} invalid for {EncryptionAlgorithm(encryption).name}")
        return bits // 8
    if encryption in (EncryptionAlgorithm.ENCR_AES_GCM_8, EncryptionAlgorithm.ENCR_AES_GCM_12,
                      EncryptionAlgorithm.ENCR_AES_GCM_16, EncryptionAlgorithm.ENCR_AES_CTR,
                      EncryptionAlgorithm.ENCR_NULL_AUTH_AES_GMAC, EncryptionAlgorithm.ENCR_CAMELLIA_CTR):
        if bits not in _AES_KEY_BITS:
            raise ValueError(f"key length {bits} invalid for {EncryptionAlgorithm(encryption).name}")
        return bits // 8 + 4
    if encryption in (EncryptionAlgorithm.ENCR_AES_CCM_8, EncryptionAlgorithm.ENCR_AES_CCM_12,
                      EncryptionAlgorithm.ENCR_AES_CCM_16, EncryptionAlgorithm.ENCR_CAMELLIA_CCM_8,
                      EncryptionAlgorithm.ENCR_CAMELLIA_CCM_12, EncryptionAlgorithm.ENCR_CAMELLIA_CCM_16):
        if bits not in _AES_KEY_BITS:
            raise ValueError(f"key length {bits} invalid for {EncryptionAlgorithm(encryption).name}")
        return bits // 8 + 3
    if encryption == EncryptionAlgorithm.ENCR_CHACHA20_POLY1305:
        return 32 + 4
    if encryption == EncryptionAlgorithm.ENCR_3DES:
        return 24
    if encryption == EncryptionAlgorithm.ENCR_NULL:
        return 0
    raise ValueError(f"encryption algorithm {encryption} not supported")


_INTEG_KEY_SIZES = {
    IntegrityAlgorithm.AUTH_HMAC_MD5_96: 16, IntegrityAlgorithm.AUTH_HMAC_MD5_128: 16,
    IntegrityAlgorithm.AUTH_HMAC_SHA1_96: 20, IntegrityAlgorithm.AUTH_HMAC_SHA1_160: 20,
    IntegrityAlgorithm.AUTH_AES_XCBC_96: 16, IntegrityAlgorithm.AUTH_AES_CMAC_96: 16,
    IntegrityAlgorithm.AUTH_HMAC_SHA2_256_128: 32, IntegrityAlgorithm.AUTH_HMAC_SHA2_384_192: 48,
    IntegrityAlgorithm.AUTH_HMAC_SHA2_512_256: 64,
    # RFC 4543: GMAC keys carry a 4-byte salt like GCM
    IntegrityAlgorithm.AUTH_AES_128_GMAC: 20, IntegrityAlgorithm.AUTH_AES_192_GMAC: 28,
    IntegrityAlgorithm.AUTH_AES_256_GMAC: 36,
}


def child_key_sizes(algorithms: Algorithms) -> tuple[int, int]:
    """(encryption, integrity) keying material sizes of one direction of a
    Child SA; ``ValueError`` for an algorithm nac cannot key."""
    encryption = 0
    if algorithms.encryption is not None:
        encryption = _encryption_key_size(algorithms.encryption, algorithms.key_length)
    integrity = 0
    if algorithms.integrity is not None:
        if algorithms.integrity not in _INTEG_KEY_SIZES:
            raise ValueError(f"integrity algorithm {algorithms.integrity} not supported")
        integrity = _INTEG_KEY_SIZES[algorithms.integrity]
    return encryption, integrity


def ike_proposal_supported(proposal: Proposal) -> list[str]:
    """What in a configured IKE proposal nac cannot do (empty: all of it)."""
    problems = []
    for transform in proposal.transforms:
        kind, algorithm = transform.transform_type, transform.transform_id
        if kind == TransformType.ENCR and (algorithm not in SUPPORTED_ENCRYPTION or (
                algorithm != EncryptionAlgorithm.ENCR_CHACHA20_POLY1305
                and transform.key_length not in _AES_KEY_BITS)):
            problems.append(f"encryption {EncryptionAlgorithm(algorithm).name}")
        elif kind == TransformType.INTEG and algorithm not in SUPPORTED_INTEGRITY:
            problems.append(f"integrity {IntegrityAlgorithm(algorithm).name}")
        elif kind == TransformType.PRF and algorithm not in SUPPORTED_PRF:
            problems.append(f"PRF {PseudorandomFunction(algorithm).name}")
        elif kind == TransformType.DH and algorithm not in SUPPORTED_DH_GROUPS:
            problems.append(f"DH group {_group_name(algorithm)}")
    return problems


@dataclass(frozen=True, slots=True, repr=False)
class IkeSaKeys:
    """The keys of an IKE SA (RFC 7296 §2.14) and its two SK ciphers:
    ``initiator_sk`` protects what the original initiator sends (SK_ei/SK_ai),
    ``responder_sk`` what the responder sends (SK_er/SK_ar)."""

    algorithms: Algorithms
    prf: Prf
    skeyseed: bytes
    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes
    initiator_sk: SkCipher = field(compare=False)
    responder_sk: SkCipher = field(compare=False)

    def __repr__(self) -> str:
        return f"IkeSaKeys({self.algorithms})"


def _ike_keys(algorithms: Algorithms, prf: Prf, skeyseed: bytes, nonce_i: bytes, nonce_r: bytes,
              spi_i: bytes, spi_r: bytes) -> IkeSaKeys:
    if algorithms.encryption is None:
        raise ValueError("an IKE SA needs an encryption algorithm")
    encr_size = _encryption_key_size(algorithms.encryption, algorithms.key_length)
    integ_size = 0
    if not algorithms.aead:
        if algorithms.integrity not in _INTEG_HMACS:
            raise ValueError(f"integrity algorithm {algorithms.integrity} not supported")
        integ_size = _INTEG_HMACS[algorithms.integrity][1]
    sizes = (prf.size, integ_size, integ_size, encr_size, encr_size, prf.size, prf.size)
    material = prf.plus(skeyseed, nonce_i + nonce_r + spi_i + spi_r, sum(sizes))
    keys = []
    pos = 0
    for size in sizes:
        keys.append(material[pos:pos + size])
        pos += size
    sk_d, sk_ai, sk_ar, sk_ei, sk_er, sk_pi, sk_pr = keys
    return IkeSaKeys(
        algorithms, prf, skeyseed, sk_d, sk_ai, sk_ar, sk_ei, sk_er, sk_pi, sk_pr,
        SkCipher(algorithms.encryption, algorithms.key_length, algorithms.integrity, sk_ei, sk_ai),
        SkCipher(algorithms.encryption, algorithms.key_length, algorithms.integrity, sk_er, sk_ar),
    )


def derive_ike_sa_keys(algorithms: Algorithms, shared_secret: bytes, nonce_i: bytes, nonce_r: bytes,
                       spi_i: bytes, spi_r: bytes) -> IkeSaKeys:
    """SKEYSEED = prf(Ni | Nr, g^ir) and
    {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)."""
    if algorithms.prf is None:
        raise ValueError("an IKE SA needs a PRF")
    prf = Prf(algorithms.prf)
    return _ike_keys(algorithms, prf, prf(nonce_i + nonce_r, shared_secret), nonce_i, nonce_r, spi_i, spi_r)


def rekey_ike_sa_keys(old: IkeSaKeys, algorithms: Algorithms, shared_secret: bytes, nonce_i: bytes,
                      nonce_r: bytes, spi_i: bytes, spi_r: bytes) -> IkeSaKeys:
    """The keys of the IKE SA that replaces ``old`` (§2.18): SKEYSEED =
    prf(SK_d (old), g^ir (new) | Ni | Nr) with the old SA's PRF, then prf+
    of the new one over the new nonces and SPIs."""
    if algorithms.prf is None:
        raise ValueError("an IKE SA needs a PRF")
    skeyseed = old.prf(old.sk_d, shared_secret + nonce_i + nonce_r)
    return _ike_keys(algorithms, Prf(algorithms.prf), skeyseed, nonce_i, nonce_r, spi_i, spi_r)


@dataclass(frozen=True, slots=True, repr=False)
class ChildSaKeys:
    """KEYMAT of a Child SA (§2.17): ``*_i`` for the SA carrying traffic from
    the initiator to the responder, ``*_r`` for the other direction;
    encryption keys include the salt an AEAD or counter mode takes."""

    algorithms: Algorithms
    encryption_i: bytes
    integrity_i: bytes
    encryption_r: bytes
    integrity_r: bytes

    def __repr__(self) -> str:
        return f"ChildSaKeys({self.algorithms})"


def derive_child_sa_keys(prf: Prf, sk_d: bytes, algorithms: Algorithms, nonce_i: bytes, nonce_r: bytes,
                         shared_secret: bytes | None = None) -> ChildSaKeys:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), cut initiator-to-responder
    encryption and integrity keys first, then the other direction."""
    encryption, integrity = child_key_sizes(algorithms)
    seed = (shared_secret or b"") + nonce_i + nonce_r
    material = prf.plus(sk_d, seed, 2 * (encryption + integrity))
    a = encryption
    b = a + integrity
    c = b + encryption
    return ChildSaKeys(algorithms, material[:a], material[a:b], material[b:c], material[c:])


# -- SK payload protection (§3.14, RFC 5282, RFC 7634) ------------------------------------


class SkCipher:
    """Encryption and integrity protection of SK/SKF payloads in one direction.

    ``seal(aad, plaintext)`` returns IV | ciphertext | ICV for the bytes that
    follow the (SK or SKF) payload header; ``aad`` is the message from the
    IKE header up to that point, with the final lengths already in it.
    ``open`` reverses it or raises ``IntegrityCheckFailed``.
    """

    __slots__ = ("encryption", "iv_size", "block_size", "icv_size", "_key", "_integ_key", "_hash",
                 "_aead", "_salt", "_iv_mask", "_counter")

    def __init__(self, encryption: int, key_length: int | None, integrity: int | None,
                 encryption_key: bytes, integrity_key: bytes = b"") -> None:
        self.encryption = encryption
        self._key = encryption_key
        self._integ_key = integrity_key
        self._aead = None
        self._counter = 0
        if encryption == EncryptionAlgorithm.ENCR_AES_CBC:
            if key_length not in _AES_KEY_BITS or len(encryption_key) != key_length // 8:
                raise ValueError("AES-CBC key of the wrong size")
            if integrity not in _INTEG_HMACS:
                raise ValueError(f"integrity algorithm {integrity} not supported")
            self._hash, size, self.icv_size = _INTEG_HMACS[integrity]
            if len(integrity_key) != size:
                raise ValueError("integrity key of the wrong size")
            self.iv_size = self.block_size = 16
        elif encryption in _SK_AEADS:
            if encryption == EncryptionAlgorithm.ENCR_AES_GCM_16:
                if key_length not in _AES_KEY_BITS or len(encryption_key) != key_length // 8 + 4:
                    raise ValueError("AES-GCM key and salt of the wrong size")
                self._aead = AESGCM(encryption_key[:-4])
            else:
                if len(encryption_key) != 36:
                    raise ValueError("ChaCha20-Poly1305 key and salt of the wrong size")
                self._aead = ChaCha20Poly1305(encryption_key[:-4])
            self._salt = encryption_key[-4:]
            self.iv_size = 8
            self.icv_size = 16
            # no padding needed; the Pad Length octet is still there
            self.block_size = 1
            # IVs must never repeat under one key: a counter, offset randomly
            # so that two ciphers on the same key do not walk the same values
            self._iv_mask = int.from_bytes(os.urandom(8), "big")
        else:
            raise ValueError(f"encryption algorithm {encryption} not supported for SK payloads")

    def __repr__(self) -> str:
        return f"SkCipher({EncryptionAlgorithm(self.encryption).name})"

    def sealed_size(self, plaintext_length: int) -> int:
        """IV, encrypted plaintext with padding and Pad Length, and ICV."""
        padded = (plaintext_length // self.block_size + 1) * self.block_size
        return self.iv_size + padded + self.icv_size

    def max_plaintext(self, space: int) -> int:
        """The most plaintext that seals into ``space`` bytes (negative: none)."""
        room = space - self.iv_size - self.icv_size
        return room // self.block_size * self.block_size - 1

    def seal(self, aad: bytes, plaintext: bytes, iv: bytes | None = None) -> bytes:
        pad = self.block_size - 1 - len(plaintext) % self.block_size
        padded = plaintext + bytes(pad) + bytes([pad])
        if self._aead is not None:
            if iv is None:
                self._counter += 1
                iv = ((self._counter ^ self._iv_mask) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
            return iv + self._aead.encrypt(self._salt + iv, padded, aad)
        if iv is None:
            iv = os.urandom(16)
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        ciphertext = iv + encryptor.update(padded) + encryptor.finalize()
        return ciphertext + hmac.digest(self._integ_key, aad + ciphertext, self._hash)[:self.icv_size]

    def open(self, aad: bytes, sealed: bytes) -> bytes:
        body = len(sealed) - self.iv_size - self.icv_size
        if body < self.block_size or body % self.block_size:
            raise IntegrityCheckFailed(f"encrypted payload of {len(sealed)} bytes has an invalid length")
        iv = sealed[:self.iv_size]
        if self._aead is not None:
            try:
                padded = self._aead.decrypt(self._salt + iv, sealed[self.iv_size:], aad)
            except InvalidTag:
                raise IntegrityCheckFailed("integrity check of the encrypted payload failed") from None
        else:
            icv = sealed[-self.icv_size:]
            expected = hmac.digest(self._integ_key, aad + sealed[:-self.icv_size], self._hash)[:self.icv_size]
            if not hmac.compare_digest(icv, expected):
                raise IntegrityCheckFailed("integrity check of the encrypted payload failed")
            decryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
            padded = decryptor.update(sealed[self.iv_size:-self.icv_size]) + decryptor.finalize()
        pad = padded[-1]
        if pad + 1 > len(padded):
            raise IntegrityCheckFailed("encrypted payload has an invalid Pad Length")
        return padded[:-(pad + 1)]


# -- AUTH (§2.15, §2.16, RFC 7427, RFC 4754) ------------------------------------------------

KEY_PAD = b"Key Pad for IKEv2"


def signed_octets(message: bytes, peer_nonce: bytes, prf: Prf, sk_p: bytes, id_body: bytes) -> bytes:
    """InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload),
    ResponderSignedOctets = RealMessage2 | NonceIData | prf(SK_pr, RestOfRespIDPayload).

    ``message`` is the signer's IKE_SA_INIT message as sent, ``peer_nonce``
    the other side's nonce, ``id_body`` the signer's ID payload after its
    generic header (``IDi.build_body()``)."""
    return message + peer_nonce + prf(sk_p, id_body)


def shared_key_auth(prf: Prf, secret: bytes, octets: bytes) -> bytes:
    """AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>):
    the pre-shared key method, and EAP with the MSK (or SK_pi/SK_pr when the
    EAP method makes no key) as the shared secret (§2.16)."""
    return prf(prf(secret, KEY_PAD), octets)


class HashAlgorithm(IntEnum):
    """IKEv2 Hash Algorithms for SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4, RFC 8420)."""

    SHA1 = 1
    SHA2_256 = 2
    SHA2_384 = 3
    SHA2_512 = 4
    IDENTITY = 5


_HASHES = {
    HashAlgorithm.SHA1: hashes.SHA1, HashAlgorithm.SHA2_256: hashes.SHA256,
    HashAlgorithm.SHA2_384: hashes.SHA384, HashAlgorithm.SHA2_512: hashes.SHA512,
}
# DER contents of the OIDs (RFC 7427 Appendix A, RFC 4055, RFC 5480, RFC 8410)
_OID_SHA1 = bytes.fromhex("2b0e03021a")
_OID_HASH = {
    HashAlgorithm.SHA1: _OID_SHA1,
    HashAlgorithm.SHA2_256: bytes.fromhex("608648016503040201"),
    HashAlgorithm.SHA2_384: bytes.fromhex("608648016503040202"),
    HashAlgorithm.SHA2_512: bytes.fromhex("608648016503040203"),
}
_OID_RSA_PKCS1 = {
    HashAlgorithm.SHA1: bytes.fromhex("2a864886f70d010105"),
    HashAlgorithm.SHA2_256: bytes.fromhex("2a864886f70d01010b"),
    HashAlgorithm.SHA2_384: bytes.fromhex("2a864886f70d01010c"),
    HashAlgorithm.SHA2_512: bytes.fromhex("2a864886f70d01010d"),
}
_OID_ECDSA = {
    HashAlgorithm.SHA1: bytes.fromhex("2a8648ce3d0401"),
    HashAlgorithm.SHA2_256: bytes.fromhex("2a8648ce3d040302"),
    HashAlgorithm.SHA2_384: bytes.fromhex("2a8648ce3d040303"),
    HashAlgorithm.SHA2_512: bytes.fromhex("2a8648ce3d040304"),
}
_SIGNATURE_OIDS = {
    **{oid: ("ecdsa", algorithm) for algorithm, oid in _OID_ECDSA.items()},
    **{oid: ("pkcs1", algorithm) for algorithm, oid in _OID_RSA_PKCS1.items()},
}
_OID_RSASSA_PSS = bytes.fromhex("2a864886f70d01010a")
_OID_MGF1 = bytes.fromhex("2a864886f70d010108")
_OID_ED25519 = bytes.fromhex("2b6570")
_OID_ED448 = bytes.fromhex("2b6571")
_DER_NULL = b"\x05\x00"
# RFC 4754: the fixed hash and r|s size of the ECDSA methods
_RFC4754 = {
    AuthMethod.ECDSA_SHA256_P256: (ec.SECP256R1, hashes.SHA256, 32),
    AuthMethod.ECDSA_SHA384_P384: (ec.SECP384R1, hashes.SHA384, 48),
    AuthMethod.ECDSA_SHA512_P521: (ec.SECP521R1, hashes.SHA512, 66),
}


def _der(tag: int, content: bytes) -> bytes:
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    size = (len(content).bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + len(content).to_bytes(size, "big") + content


def _der_read(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start, end) of the DER element at ``pos``; ValueError if malformed."""
    if end - pos < 2:
        raise ValueError("truncated DER")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        if not 0 < size <= 2 or end - pos < size:
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos:pos + size], "big")
        pos += size
    if pos + length > end:
        raise ValueError("DER element overruns")
    return tag, pos, pos + length


def _algorithm_identifier(oid: bytes, parameters: bytes | None = None) -> bytes:
    return _der(0x30, _der(0x06, oid) + (parameters if parameters is not None else b""))


def _hash_identifier(hash_algorithm: HashAlgorithm) -> bytes:
    return _algorithm_identifier(_OID_HASH[hash_algorithm], _DER_NULL)


def _pss_identifier(hash_algorithm: HashAlgorithm, salt_length: int) -> bytes:
    # RFC 7427 Appendix A.4.3 / RFC 4055: hash, MGF1 with the same hash, salt length
    params = (_der(0xA0, _hash_identifier(hash_algorithm))
              + _der(0xA1, _algorithm_identifier(_OID_MGF1, _hash_identifier(hash_algorithm)))
              + _der(0xA2, _der(0x02, salt_length.to_bytes(1 if salt_length < 0x80 else 2, "big"))))
    return _algorithm_identifier(_OID_RSASSA_PSS, _der(0x30, params))


def _hash_by_oid(oid: bytes) -> HashAlgorithm:
    for algorithm, known in _OID_HASH.items():
        if oid == known:
            return algorithm
    raise ValueError("unknown hash algorithm")


def _parse_hash_identifier(data: bytes, start: int, end: int) -> HashAlgorithm:
    tag, pos, stop = _der_read(data, start, end)
    if tag != 0x30:
        raise ValueError("hash AlgorithmIdentifier is not a SEQUENCE")
    tag, oid_start, oid_end = _der_read(data, pos, stop)
    if tag != 0x06:
        raise ValueError("no OID")
    return _hash_by_oid(data[oid_start:oid_end])


def _parse_pss_params(data: bytes, start: int, end: int) -> tuple[HashAlgorithm, HashAlgorithm, int]:
    """(hash, MGF1 hash, salt length) with the RFC 4055 defaults (SHA-1, 20)."""
    hash_algorithm = mgf_hash = HashAlgorithm.SHA1
    salt = 20
    tag, pos, stop = _der_read(data, start, end)
    if tag != 0x30:
        raise ValueError("RSASSA-PSS-params is not a SEQUENCE")
    while pos < stop:
        tag, inner, pos = _der_read(data, pos, stop)
        if tag == 0xA0:
            hash_algorithm = _parse_hash_identifier(data, inner, pos)
        elif tag == 0xA1:
            kind, seq_start, seq_end = _der_read(data, inner, pos)
            if kind != 0x30:
                raise ValueError("maskGenAlgorithm is not a SEQUENCE")
            kind, oid_start, oid_end = _der_read(data, seq_start, seq_end)
            if kind != 0x06 or data[oid_start:oid_end] != _OID_MGF1:
                raise ValueError("mask generation function is not MGF1")
            mgf_hash = _parse_hash_identifier(data, oid_end, seq_end)
        elif tag == 0xA2:
            kind, int_start, int_end = _der_read(data, inner, pos)
            if kind != 0x02 or not 0 < int_end - int_start <= 2:
                raise ValueError("saltLength is not a small INTEGER")
            salt = int.from_bytes(data[int_start:int_end], "big")
        elif tag == 0xA3:
            kind, int_start, int_end = _der_read(data, inner, pos)
            if data[int_start:int_end] != b"\x01":
                raise ValueError("trailerField is not trailerFieldBC")
        else:
            raise ValueError("unknown RSASSA-PSS parameter")
    return hash_algorithm, mgf_hash, salt


def default_hash_for(key) -> HashAlgorithm:
    """The hash strongSwan signs with for a key: the curve's for ECDSA
    (P-256 SHA-256, P-384 SHA-384, P-521 SHA-512), SHA-256 for RSA."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return {256: HashAlgorithm.SHA2_256, 384: HashAlgorithm.SHA2_384}.get(key.curve.key_size,
                                                                              HashAlgorithm.SHA2_512)
    return HashAlgorithm.SHA2_256


def sign_auth(private_key, octets: bytes, *, hash_algorithm: HashAlgorithm | None = None,
              pss: bool = False) -> Authentication:
    """An AUTH payload with method 14, Digital Signature (RFC 7427 §3):
    ASN.1 length | AlgorithmIdentifier | signature, for an ECDSA, RSA
    (PKCS#1 v1.5, or RSASSA-PSS with ``pss``) or Ed25519/Ed448 key."""
    if isinstance(private_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        oid = _OID_ED25519 if isinstance(private_key, ed25519.Ed25519PrivateKey) else _OID_ED448
        identifier = _algorithm_identifier(oid)
        signature = private_key.sign(octets)
    else:
        hash_algorithm = hash_algorithm or default_hash_for(private_key)
        if hash_algorithm not in _HASHES:
            raise ValueError(f"cannot sign with hash {hash_algorithm!r}")
        digest = _HASHES[hash_algorithm]()
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            identifier = _algorithm_identifier(_OID_ECDSA[hash_algorithm])
            signature = private_key.sign(octets, ec.ECDSA(digest))
        elif isinstance(private_key, rsa.RSAPrivateKey):
            if pss:
                identifier = _pss_identifier(hash_algorithm, digest.digest_size)
                signature = private_key.sign(octets, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
            else:
                identifier = _algorithm_identifier(_OID_RSA_PKCS1[hash_algorithm], _DER_NULL)
                signature = private_key.sign(octets, padding.PKCS1v15(), digest)
        else:
            raise ValueError(f"cannot sign with a {type(private_key).__name__}")
    return Authentication(AuthMethod.DIGITAL_SIGNATURE, bytes([len(identifier)]) + identifier + signature)


_DEFAULT_HASHES = frozenset({HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512})


def verify_auth(public_key, auth: Authentication, octets: bytes, *,
                hash_algorithms: frozenset[int] = _DEFAULT_HASHES) -> HashAlgorithm | None:
    """Check a signature AUTH payload against ``public_key`` (from the
    peer's certificate).  Returns the hash used (None for EdDSA); raises
    ``AuthenticationFailed`` for a bad signature, a hash not in
    ``hash_algorithms``, a key that does not fit the method, or a method
    that is not a signature."""
    try:
        if auth.method == AuthMethod.DIGITAL_SIGNATURE:
            return _verify_rfc7427(public_key, auth.data, octets, hash_algorithms)
        if auth.method in _RFC4754:
            curve, digest, size = _RFC4754[auth.method]
            if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, curve):
                raise AuthenticationFailed(f"{AuthMethod(auth.method).name} AUTH with a key of another kind")
            if len(auth.data) != 2 * size:
                raise AuthenticationFailed("ECDSA signature of the wrong length")
            signature = encode_dss_signature(int.from_bytes(auth.data[:size], "big"),
                                             int.from_bytes(auth.data[size:], "big"))
            public_key.verify(signature, octets, ec.ECDSA(digest()))
            return None
        if auth.method == AuthMethod.RSA_DIGITAL_SIGNATURE:
            if HashAlgorithm.SHA1 not in hash_algorithms:
                raise AuthenticationFailed("RSA signature AUTH (SHA-1) not accepted")
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise AuthenticationFailed("RSA signature AUTH with a key of another kind")
            public_key.verify(auth.data, octets, padding.PKCS1v15(), hashes.SHA1())
            return HashAlgorithm.SHA1
    except InvalidSignature:
        raise AuthenticationFailed("signature AUTH does not verify") from None
    raise AuthenticationFailed(f"AUTH method {auth.method} is not a signature")


def _verify_rfc7427(public_key, data: bytes, octets: bytes, allowed: frozenset[int]) -> HashAlgorithm | None:
    if not data:
        raise AuthenticationFailed("empty signature AUTH")
    size = data[0]
    if 1 + size > len(data):
        raise AuthenticationFailed("AlgorithmIdentifier overruns the AUTH payload")
    signature = data[1 + size:]
    try:
        tag, pos, end = _der_read(data, 1, 1 + size)
        if tag != 0x30 or end != 1 + size:
            raise ValueError("AlgorithmIdentifier is not one SEQUENCE")
        tag, oid_start, oid_end = _der_read(data, pos, end)
        if tag != 0x06:
            raise ValueError("no algorithm OID")
        oid = data[oid_start:oid_end]
        if oid in (_OID_ED25519, _OID_ED448):
            kind = ed25519.Ed25519PublicKey if oid == _OID_ED25519 else ed448.Ed448PublicKey
            if not isinstance(public_key, kind):
                raise AuthenticationFailed("EdDSA AUTH with a key of another kind")
            public_key.verify(signature, octets)
            return None
        if oid == _OID_RSASSA_PSS:
            hash_algorithm, mgf_hash, salt = _parse_pss_params(data, oid_end, end)
            if mgf_hash not in allowed:
                raise AuthenticationFailed(f"MGF1 hash {mgf_hash.name} not accepted")
            scheme = padding.PSS(padding.MGF1(_HASHES[mgf_hash]()), salt)
        elif oid in _SIGNATURE_OIDS:
            kind, hash_algorithm = _SIGNATURE_OIDS[oid]
            scheme = ec.ECDSA if kind == "ecdsa" else padding.PKCS1v15()
        else:
            raise AuthenticationFailed("signature algorithm not supported")
    except ValueError as error:
        raise AuthenticationFailed(f"malformed AlgorithmIdentifier ({error})") from None
    if hash_algorithm not in allowed:
        raise AuthenticationFailed(f"hash {hash_algorithm.name} not accepted")
    digest = _HASHES[hash_algorithm]()
    if scheme is ec.ECDSA:
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise AuthenticationFailed("ECDSA AUTH with a key of another kind")
        public_key.verify(signature, octets, ec.ECDSA(digest))
    else:
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise AuthenticationFailed("RSA AUTH with a key of another kind")
        public_key.verify(signature, octets, scheme, digest)
    return hash_algorithm


def signature_hash_algorithms_notify(algorithms=(HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384,
                                                 HashAlgorithm.SHA2_512)) -> Notify:
    """SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4): the hashes nac verifies."""
    return Notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, b"".join(struct.pack(">H", a) for a in algorithms))


def parse_signature_hash_algorithms(data: bytes) -> tuple[int, ...]:
    """The hash algorithm IDs of a SIGNATURE_HASH_ALGORITHMS notify (an odd
    trailing byte is ignored)."""
    return tuple(struct.unpack_from(">H", data, i)[0] for i in range(0, len(data) - 1, 2))


# -- NAT detection (§2.23) and cookies (§2.6) ----------------------------------------------------


def _address_bytes(address) -> bytes:
    if isinstance(address, (bytes, bytearray)):
        return bytes(address)
    return ipaddress.ip_address(address).packed


def nat_detection_hash(spi_i: bytes, spi_r: bytes, address, port: int) -> bytes:
    """SHA1(SPIi | SPIr | IP | Port): the data of NAT_DETECTION_SOURCE_IP /
    NAT_DETECTION_DESTINATION_IP.  ``address`` as text, ipaddress object or
    packed bytes; SPIr is eight zero bytes in an IKE_SA_INIT request."""
    return hashlib.sha1(spi_i + spi_r + _address_bytes(address) + struct.pack(">H", port)).digest()


class CookieSecret:
    """The responder's stateless cookies (RFC 7296 §2.6):
    Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>).

    The hash is keyed BLAKE2s-128 (one call, cheap under a flood).  The
    secret is replaced every ``lifetime`` seconds; a cookie made with the
    previous secret is still accepted, so cookies stay valid for one to two
    lifetimes.  Time comes from the caller.
    """

    __slots__ = ("lifetime", "_random", "_version", "_secret", "_previous", "_rotated")

    def __init__(self, now: float, lifetime: float = 60.0, random=os.urandom) -> None:
        self.lifetime = lifetime
        self._random = random
        self._version = 0
        self._secret = random(32)
        self._previous = None
        self._rotated = now

    def __repr__(self) -> str:
        return f"CookieSecret(version={self._version})"

    def _rotate(self, now: float) -> None:
        elapsed = now - self._rotated
        if elapsed < self.lifetime:
            return
        self._previous = self._secret if elapsed < 2 * self.lifetime else None
        self._secret = self._random(32)
        self._version = (self._version + 1) & 0xFF
        self._rotated = now

    @staticmethod
    def _hash(secret: bytes, nonce_i: bytes, address: bytes, spi_i: bytes) -> bytes:
        return hashlib.blake2s(nonce_i + address + spi_i, key=secret, digest_size=16).digest()

    def cookie(self, nonce_i: bytes, address, spi_i: bytes, now: float) -> bytes:
        """The COOKIE notify data to send to an initiator."""
        self._rotate(now)
        return bytes([self._version]) + self._hash(self._secret, nonce_i, _address_bytes(address), spi_i)

    def verify(self, cookie: bytes, nonce_i: bytes, address, spi_i: bytes, now: float) -> bool:
        """Whether ``cookie`` is one this responder made for these values."""
        self._rotate(now)
        if len(cookie) != 17:
            return False
        if cookie[0] == self._version:
            secret = self._secret
        elif cookie[0] == (self._version - 1) & 0xFF and self._previous is not None:
            secret = self._previous
        else:
            return False
        return hmac.compare_digest(cookie[1:], self._hash(secret, nonce_i, _address_bytes(address), spi_i))
