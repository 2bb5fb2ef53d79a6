"""The hash algorithms of attestation, known by four names: hashlib's (which
IMA also writes, ``sha256``), the TPM's TPM_ALG_ID (TPM 2.0 Part 2 §6.3),
the PTS Measurement Algorithm bit (PTS IF-M binding §3.9.1) and the size of
a digest (what a TCG event log needs to step over a digest it cannot use).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from nac.pa.tcg_pts import PtsHashAlgorithm

__all__ = [
    "DIGEST_SIZES",
    "HashAlgorithm",
    "SHA1",
    "SHA256",
    "SHA384",
    "SHA512",
    "by_name",
    "by_pts",
    "by_tpm_alg",
    "strongest",
]


@dataclass(frozen=True, slots=True)
class HashAlgorithm:
    name: str
    """hashlib's and IMA's name: ``sha256``."""
    size: int
    tpm_alg: int
    """TPM_ALG_ID."""
    pts: PtsHashAlgorithm

    def hash(self, *parts: bytes) -> bytes:
        h = hashlib.new(self.name)
        for part in parts:
            h.update(part)
        return h.digest()

    def new(self):
        return hashlib.new(self.name)

    @property
    def constructor(self):
        """hashlib's constructor (``hashlib.sha256``), quicker than ``hashlib.new(name)`` in a loop."""
        return _CONSTRUCTORS[self.name]

    def __str__(self) -> str:
        return self.name.upper().replace("SHA", "SHA-")


SHA1 = HashAlgorithm("sha1", 20, 0x0004, PtsHashAlgorithm.SHA1)
SHA256 = HashAlgorithm("sha256", 32, 0x000B, PtsHashAlgorithm.SHA256)
SHA384 = HashAlgorithm("sha384", 48, 0x000C, PtsHashAlgorithm.SHA384)
SHA512 = HashAlgorithm("sha512", 64, 0x000D, PtsHashAlgorithm.SHA512)

_ALL = (SHA1, SHA256, SHA384, SHA512)
_CONSTRUCTORS = {h.name: getattr(hashlib, h.name) for h in _ALL}
_BY_TPM = {h.tpm_alg: h for h in _ALL}
_BY_PTS = {int(h.pts): h for h in _ALL}
_BY_NAME = {h.name: h for h in _ALL}

#: Digest sizes by TPM_ALG_ID, also of algorithms nac does not verify with
#: (SM3_256, SHA3): a crypto-agile event log without its Spec ID header
#: names none.
DIGEST_SIZES = {0x0004: 20, 0x000B: 32, 0x000C: 48, 0x000D: 64, 0x0012: 32, 0x0027: 32, 0x0028: 48, 0x0029: 64}


def by_tpm_alg(alg_id: int) -> HashAlgorithm | None:
    return _BY_TPM.get(alg_id)


def by_pts(bit: int) -> HashAlgorithm | None:
    """The algorithm of one PTS Measurement Algorithm bit."""
    return _BY_PTS.get(int(bit))


def by_name(name: str) -> HashAlgorithm | None:
    """``sha256`` (IMA's and hashlib's spelling), case-insensitive; ``sha-256`` too."""
    return _BY_NAME.get(name.lower().replace("-", "").replace("_", ""))


def strongest(algorithms: PtsHashAlgorithm | int) -> HashAlgorithm | None:
    """The strongest algorithm of a PTS Hash Algorithm Set (SHA-512 first), as strongSwan selects."""
    for algorithm in (SHA512, SHA384, SHA256, SHA1):
        if int(algorithms) & algorithm.pts:
            return algorithm
    return None
