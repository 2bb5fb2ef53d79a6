"""TPM 2.0 structures of a quote (TPM 2.0 Library Part 2: TPMS_ATTEST §10.12.12,
TPMS_QUOTE_INFO §10.12.4, TPML_PCR_SELECTION §10.9.7, TPMT_SIGNATURE §11.3.4)
and the check of a quote signature with the AIK's public key.

All TPM integers are big-endian.  A quote is the TPMS_ATTEST the TPM built
and signed::

    magic (TPM_GENERATED_VALUE ff544347) | type (TPM_ST_ATTEST_QUOTE 8018)
    | qualifiedSigner (TPM2B_NAME) | extraData (TPM2B_DATA: the nonce)
    | clockInfo (17) | firmwareVersion (8)
    | pcrSelect (TPML_PCR_SELECTION) | pcrDigest (TPM2B_DIGEST)

``pcrDigest`` is the hash (the signing scheme's) over the selected PCR
values, bank by bank in selection order, each bank's PCRs in ascending
order.  The signature is RSASSA-PKCS1-v1_5 or RSASSA-PSS over the whole
structure, or ECDSA (the PTS attribute carries r ‖ s).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from nac.pts.hashes import HashAlgorithm, by_tpm_alg

__all__ = [
    "Attest",
    "CLOCK_INFO_SIZE",
    "FIRMWARE_VERSION_SIZE",
    "MAX_PCR",
    "PcrSelection",
    "QuoteError",
    "Signature",
    "TPM_ALG_ECDSA",
    "TPM_ALG_RSAPSS",
    "TPM_ALG_RSASSA",
    "TPM_GENERATED_VALUE",
    "TPM_ST_ATTEST_QUOTE",
    "TpmFormatError",
    "hash_of_tpm_alg",
    "load_public_key",
    "pcr_digest",
    "verify_signature",
]

TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
TPM_ALG_RSASSA = 0x0014
TPM_ALG_RSAPSS = 0x0016
TPM_ALG_ECDSA = 0x0018
CLOCK_INFO_SIZE = 17
FIRMWARE_VERSION_SIZE = 8
#: PC Client TPMs have 24 PCRs; a selection bitmap of up to 8 bytes is read.
MAX_PCR = 63
_MAX_BANKS = 16


class TpmFormatError(ValueError):
    """A TPM structure that does not parse; ``offset`` is where it went wrong."""

    def __init__(self, reason: str, offset: int = 0) -> None:
        super().__init__(f"{reason} (at byte {offset})")
        self.reason = reason
        self.offset = offset


class QuoteError(Exception):
    """A quote that is not valid: ``reason`` says why, for the log and the endpoint."""


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int, what: str) -> bytes:
        if self.pos + size > len(self.data):
            raise TpmFormatError(f"{what} truncated", self.pos)
        self.pos += size
        return self.data[self.pos - size:self.pos]

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "big")

    def tpm2b(self, what: str) -> bytes:
        return self.take(self.u16(f"{what} size"), what)

    def end(self, what: str) -> None:
        if self.pos != len(self.data):
            raise TpmFormatError(f"{len(self.data) - self.pos} bytes after the {what}", self.pos)


def _tpm2b(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """TPML_PCR_SELECTION: per bank (TPM_ALG_ID) the PCRs selected, with
    the size of its bitmap (PC Client: 3 bytes, PCR 0-23)."""

    banks: tuple[tuple[int, tuple[int, ...]], ...]
    select_size: int = 3

    @classmethod
    def of(cls, alg_id: int, pcrs, select_size: int = 3) -> PcrSelection:
        return cls(((alg_id, tuple(sorted(set(pcrs)))),), select_size)

    @classmethod
    def read(cls, r: _Reader) -> PcrSelection:
        count = r.u32("TPML_PCR_SELECTION count")
        if count > _MAX_BANKS:
            raise TpmFormatError(f"{count} PCR banks selected", r.pos - 4)
        banks, size = [], 3
        for _ in range(count):
            alg_id = r.u16("hash")
            size = r.u8("sizeofSelect")
            if size > (MAX_PCR + 1) // 8:
                raise TpmFormatError(f"PCR selection of {size} bytes", r.pos - 1)
            bitmap = r.take(size, "pcrSelect")
            banks.append((alg_id, tuple(i for i in range(size * 8) if bitmap[i // 8] >> (i % 8) & 1)))
        return cls(tuple(banks), size)

    @classmethod
    def from_bytes(cls, data: bytes) -> PcrSelection:
        r = _Reader(data)
        selection = cls.read(r)
        r.end("PCR selection")
        return selection

    def to_bytes(self) -> bytes:
        parts = [len(self.banks).to_bytes(4, "big")]
        for alg_id, pcrs in self.banks:
            bitmap = bytearray(self.select_size)
            for pcr in pcrs:
                bitmap[pcr // 8] |= 1 << (pcr % 8)
            parts.append(struct.pack(">HB", alg_id, self.select_size) + bytes(bitmap))
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Attest:
    """TPMS_ATTEST of a quote (TPMS_QUOTE_INFO attested)."""

    qualified_signer: bytes
    extra_data: bytes
    clock_info: bytes
    firmware_version: bytes
    pcr_select: PcrSelection
    pcr_digest: bytes
    magic: int = TPM_GENERATED_VALUE
    type: int = TPM_ST_ATTEST_QUOTE

    @classmethod
    def from_bytes(cls, data: bytes) -> Attest:
        r = _Reader(data)
        magic, attest_type = r.u32("magic"), r.u16("type")
        signer, extra = r.tpm2b("qualifiedSigner"), r.tpm2b("extraData")
        clock, firmware = r.take(CLOCK_INFO_SIZE, "clockInfo"), r.take(FIRMWARE_VERSION_SIZE, "firmwareVersion")
        if attest_type != TPM_ST_ATTEST_QUOTE:
            raise TpmFormatError(f"attestation type 0x{attest_type:04x} is not a quote", 4)
        selection = PcrSelection.read(r)
        digest = r.tpm2b("pcrDigest")
        r.end("TPMS_ATTEST")
        return cls(signer, extra, clock, firmware, selection, digest, magic, attest_type)

    def to_bytes(self) -> bytes:
        return (struct.pack(">IH", self.magic, self.type) + _tpm2b(self.qualified_signer) + _tpm2b(self.extra_data)
                + self.clock_info + self.firmware_version + self.pcr_select.to_bytes() + _tpm2b(self.pcr_digest))


@dataclass(frozen=True, slots=True)
class Signature:
    """TPMT_SIGNATURE (what ``tpm2_quote -s`` writes): scheme, hash and the
    signature, as the PTS attribute carries it (RSA: the signature; ECDSA: r ‖ s)."""

    scheme: int
    hash_alg: int
    value: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> Signature:
        r = _Reader(data)
        scheme, hash_alg = r.u16("sigAlg"), r.u16("hash")
        if scheme in (TPM_ALG_RSASSA, TPM_ALG_RSAPSS):
            value = r.tpm2b("signature")
        elif scheme == TPM_ALG_ECDSA:
            value = r.tpm2b("signatureR") + r.tpm2b("signatureS")
        else:
            raise TpmFormatError(f"signature scheme 0x{scheme:04x} not supported", 0)
        r.end("TPMT_SIGNATURE")
        return cls(scheme, hash_alg, value)


def pcr_digest(hash_algorithm: HashAlgorithm, values) -> bytes:
    """The quote's pcrDigest over PCR values in selection order."""
    return hash_algorithm.hash(*values)


def load_public_key(data: bytes):
    """An AIK public key from DER or PEM SubjectPublicKeyInfo (RSA or EC);
    ``ValueError`` for anything else."""
    try:
        key = (serialization.load_pem_public_key(data) if data.lstrip().startswith(b"-----BEGIN")
               else serialization.load_der_public_key(data))
    except (ValueError, UnsupportedAlgorithm) as err:
        raise ValueError(f"not a public key: {err}") from None
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise ValueError(f"{type(key).__name__} cannot be an AIK")
    return key


_HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


def verify_signature(public_key, message: bytes, signature: bytes, hash_algorithm: HashAlgorithm) -> None:
    """Check a TPM signature over ``message`` (a TPMS_ATTEST) with the AIK.

    RSA keys: RSASSA-PKCS1-v1_5, else RSASSA-PSS (the TPM's salt is the
    digest's size; any salt is accepted).  EC keys: ECDSA with the signature
    as r ‖ s of equal halves.  ``QuoteError`` when it does not verify.
    """
    chosen = _HASHES[hash_algorithm.name]()
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            try:
                public_key.verify(signature, message, padding.PKCS1v15(), chosen)
            except InvalidSignature:
                public_key.verify(signature, message, padding.PSS(padding.MGF1(chosen), padding.PSS.AUTO), chosen)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            half = len(signature) // 2
            if not signature or len(signature) % 2:
                raise QuoteError(f"ECDSA signature of {len(signature)} bytes is not r ‖ s")
            der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
            public_key.verify(der, message, ec.ECDSA(chosen))
        else:
            raise QuoteError(f"{type(public_key).__name__} cannot verify a quote")
    except InvalidSignature:
        raise QuoteError(f"the quote signature does not verify with the AIK ({hash_algorithm})") from None


def hash_of_tpm_alg(alg_id: int) -> HashAlgorithm:
    """The hash of a TPM_ALG_ID nac computes, else ``QuoteError``."""
    algorithm = by_tpm_alg(alg_id)
    if algorithm is None:
        raise QuoteError(f"PCR bank 0x{alg_id:04x} is not one nac computes")
    return algorithm
