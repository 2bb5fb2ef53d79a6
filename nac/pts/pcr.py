"""PCR banks and their replay (TPM 2.0 Library Part 1 §17: PCR Extend is
``PCR := H(PCR ‖ digest)``).

At TPM2_Startup(CLEAR) a PC Client TPM's PCRs are all zeros, except PCR0,
whose last byte is the startup locality (a TPM started from locality 3 has
PCR0 = 00…03), and the dynamic PCRs 17-22, which start as all ones.
"""

from __future__ import annotations

from collections.abc import Iterable

from nac.pts.hashes import HashAlgorithm

__all__ = ["PcrBank", "initial_value"]

_DYNAMIC = range(17, 23)


def initial_value(hash_algorithm: HashAlgorithm, pcr: int, startup_locality: int = 0) -> bytes:
    if pcr == 0:
        return bytes(hash_algorithm.size - 1) + bytes((startup_locality & 0xFF,))
    if pcr in _DYNAMIC:
        return b"\xff" * hash_algorithm.size
    return bytes(hash_algorithm.size)


class PcrBank:
    """The PCRs of one hash algorithm, as a replay of measurements makes them."""

    __slots__ = ("hash_algorithm", "startup_locality", "values", "extends")

    def __init__(self, hash_algorithm: HashAlgorithm, startup_locality: int = 0) -> None:
        self.hash_algorithm = hash_algorithm
        self.startup_locality = startup_locality
        self.values: dict[int, bytes] = {}
        self.extends: dict[int, int] = {}
        """How many measurements each PCR got."""

    def value(self, pcr: int) -> bytes:
        found = self.values.get(pcr)
        return initial_value(self.hash_algorithm, pcr, self.startup_locality) if found is None else found

    def extend(self, pcr: int, digest: bytes) -> bytes:
        """Extend ``pcr`` by ``digest`` (which must be of the bank's size); the new value."""
        if len(digest) != self.hash_algorithm.size:
            raise ValueError(f"a {len(digest)}-byte digest cannot extend a {self.hash_algorithm} PCR")
        value = self.hash_algorithm.hash(self.value(pcr), digest)
        self.values[pcr] = value
        self.extends[pcr] = self.extends.get(pcr, 0) + 1
        return value

    def replayed(self, pcr: int, value: bytes, extends: int) -> None:
        """Take ``value`` as ``pcr``'s, reached by ``extends`` more measurements
        replayed outside the bank (by a verifier's loop that also judges them)."""
        if len(value) != self.hash_algorithm.size:
            raise ValueError(f"a {len(value)}-byte value cannot be a {self.hash_algorithm} PCR")
        self.values[pcr] = value
        self.extends[pcr] = self.extends.get(pcr, 0) + extends

    def values_of(self, pcrs: Iterable[int]) -> list[bytes]:
        return [self.value(pcr) for pcr in pcrs]
