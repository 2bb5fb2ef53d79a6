"""The PTS D-H nonce exchange (PTS IF-M binding §3.8) and the secret
assessment value the TPM quotes over.

The verifier (initiator) offers D-H groups; the collector (responder)
picks one, sends its nonce, its public value and the hash algorithms it
offers; the verifier picks the hash, sends its own public value and nonce
(D-H Nonce Finish).  Both then hold::

    secret = H("1" ‖ initiator nonce ‖ responder nonce ‖ D-H shared secret)

with H the selected hash.  The collector passes the secret as the quote's
qualifying data, so a quote verifies only with the secret of this exchange:
that is what makes it fresh.  The shared secret is the ECDH x coordinate
(ECP groups) or g^xy padded to the prime's length (MODP), as strongSwan
computes it (its ``pts.c``), which the captured sessions confirm.

strongSwan offers and accepts ECP-256 (mandatory), ECP-384 and the MODP
groups; nac implements ECP-384, ECP-256 and MODP-2048 (the 1024- and
1536-bit groups are too weak to be worth the code) and prefers the
strongest both sides have.  Nonces are 17 to 255 bytes (the 8-bit length
field; strongSwan's minimum is 17).

Sans-IO: objects take attributes and give attributes; randomness comes
from ``random`` (``os.urandom`` unless a test passes another).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from nac import keyexchange
from nac.pa.ietf import PaTncErrorAttribute
from nac.pa.tcg_pts import (
    DhNonceFinish,
    DhNonceParametersRequest,
    DhNonceParametersResponse,
    PtsDhGroup,
    PtsHashAlgorithm,
    bad_nonce_length_error,
    dh_group_not_supported_error,
    hash_algorithm_not_supported_error,
)
from nac.pts.hashes import HashAlgorithm, by_pts, strongest

__all__ = [
    "GROUPS",
    "MAX_NONCE_LENGTH",
    "MIN_NONCE_LENGTH",
    "NonceError",
    "NonceInitiator",
    "NonceResponder",
    "SUPPORTED_GROUPS",
    "assessment_secret",
    "select_group",
]

MIN_NONCE_LENGTH = 17
MAX_NONCE_LENGTH = 255

#: The PTS D-H groups nac implements, strongest first, and their IKE numbers.
GROUPS: dict[PtsDhGroup, keyexchange.Group] = {
    PtsDhGroup.ECP_384: keyexchange.Group.ECP_384,
    PtsDhGroup.ECP_256: keyexchange.Group.ECP_256,
    PtsDhGroup.MODP_2048: keyexchange.Group.MODP_2048,
}
SUPPORTED_GROUPS = PtsDhGroup.ECP_384 | PtsDhGroup.ECP_256 | PtsDhGroup.MODP_2048

Random = Callable[[int], bytes]
#: Makes a key pair of an IKE group number (tests pass known private values).
KeyFactory = Callable[[int], keyexchange.DiffieHellman]


class NonceError(Exception):
    """The exchange cannot go on.  ``reply`` is the PTS error attribute the
    peer is owed (None when the peer broke the protocol rather than asked
    for something nac does not do)."""

    def __init__(self, reason: str, reply: PaTncErrorAttribute | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


def assessment_secret(hash_algorithm: HashAlgorithm, initiator_nonce: bytes, responder_nonce: bytes,
                      shared_secret: bytes) -> bytes:
    """H("1" ‖ initiator nonce ‖ responder nonce ‖ shared secret)."""
    return hash_algorithm.hash(b"1", initiator_nonce, responder_nonce, shared_secret)


def select_group(supported: PtsDhGroup | int, offered: PtsDhGroup | int) -> PtsDhGroup | None:
    """The strongest group both sides have (ECP-384, ECP-256, MODP-2048)."""
    for group in GROUPS:
        if int(supported) & group and int(offered) & group:
            return group
    return None


def _single(bits: int) -> bool:
    return bits != 0 and bits & (bits - 1) == 0


class NonceInitiator:
    """The verifier's side: :meth:`request`, then :meth:`finish` with the
    collector's response; ``secret`` and ``hash_algorithm`` are set once
    finished."""

    def __init__(self, groups: PtsDhGroup | int = SUPPORTED_GROUPS,
                 algorithms: PtsHashAlgorithm | int = PtsHashAlgorithm.SHA384 | PtsHashAlgorithm.SHA256,
                 min_nonce_length: int = MIN_NONCE_LENGTH, random: Random = os.urandom,
                 generate: KeyFactory = keyexchange.DiffieHellman.generate) -> None:
        self.groups = PtsDhGroup(int(groups) & int(SUPPORTED_GROUPS))
        self.algorithms = PtsHashAlgorithm(algorithms)
        self.min_nonce_length = max(MIN_NONCE_LENGTH, min_nonce_length)
        self.random = random
        self.generate = generate
        self.group: PtsDhGroup | None = None
        self.hash_algorithm: HashAlgorithm | None = None
        self.secret: bytes | None = None

    def request(self) -> DhNonceParametersRequest:
        return DhNonceParametersRequest(self.min_nonce_length, self.groups)

    def finish(self, response: DhNonceParametersResponse) -> DhNonceFinish:
        nonce_length = len(response.nonce)
        if nonce_length < self.min_nonce_length:
            raise NonceError(f"responder nonce of {nonce_length} bytes is shorter than {self.min_nonce_length}",
                             bad_nonce_length_error(self.min_nonce_length, MAX_NONCE_LENGTH))
        group = int(response.group)
        if not _single(group) or not group & self.groups:
            raise NonceError(f"collector selected D-H group 0x{group:04x}, not one offered",
                             dh_group_not_supported_error(self.groups))
        hash_algorithm = strongest(int(response.algorithms) & int(self.algorithms))
        if hash_algorithm is None:
            raise NonceError(f"no hash algorithm in common (offered 0x{int(response.algorithms):04x})",
                             hash_algorithm_not_supported_error(self.algorithms))
        key = self.generate(GROUPS[PtsDhGroup(group)])
        try:
            shared = key.shared_secret(response.public_value)
        except keyexchange.InvalidPublicValue as err:
            raise NonceError(f"responder D-H {err}") from None
        nonce = self.random(nonce_length)
        self.group, self.hash_algorithm = PtsDhGroup(group), hash_algorithm
        self.secret = assessment_secret(hash_algorithm, nonce, response.nonce, shared)
        return DhNonceFinish(hash_algorithm.pts, key.public_value, nonce)


class NonceResponder:
    """The collector's side: :meth:`respond` to the request, then
    :meth:`finish`, which returns the secret assessment value."""

    def __init__(self, groups: PtsDhGroup | int = SUPPORTED_GROUPS, nonce_length: int = 20,
                 random: Random = os.urandom, generate: KeyFactory = keyexchange.DiffieHellman.generate) -> None:
        self.groups = PtsDhGroup(int(groups) & int(SUPPORTED_GROUPS))
        self.nonce_length = nonce_length
        self.random = random
        self.generate = generate
        self.algorithms = PtsHashAlgorithm(0)
        self._key: keyexchange.DiffieHellman | None = None
        self._nonce = b""
        self.secret: bytes | None = None
        self.hash_algorithm: HashAlgorithm | None = None

    def respond(self, request: DhNonceParametersRequest,
                algorithms: PtsHashAlgorithm | int) -> DhNonceParametersResponse:
        """``algorithms``: the hash algorithms offered for the secret (strongSwan
        offers its measurement algorithm)."""
        length = max(self.nonce_length, MIN_NONCE_LENGTH, request.min_nonce_length)
        if length > MAX_NONCE_LENGTH:
            raise NonceError(f"verifier wants nonces of {request.min_nonce_length} bytes",
                             bad_nonce_length_error(MIN_NONCE_LENGTH, MAX_NONCE_LENGTH))
        group = select_group(self.groups, request.groups)
        if group is None:
            raise NonceError(f"no D-H group in common (offered 0x{int(request.groups):04x})",
                             dh_group_not_supported_error(self.groups))
        self._key = self.generate(GROUPS[group])
        self._nonce = self.random(length)
        self.algorithms = PtsHashAlgorithm(algorithms)
        return DhNonceParametersResponse(group, self.algorithms, self._nonce, self._key.public_value)

    def finish(self, finish: DhNonceFinish) -> bytes:
        if self._key is None:
            raise NonceError("D-H Nonce Finish before D-H Nonce Parameters Request")
        selected = int(finish.algorithm)
        hash_algorithm = by_pts(selected) if _single(selected) and selected & int(self.algorithms) else None
        if hash_algorithm is None:
            raise NonceError(f"verifier selected hash algorithm 0x{selected:04x}, not one offered",
                             hash_algorithm_not_supported_error(self.algorithms))
        if not MIN_NONCE_LENGTH <= len(finish.nonce) <= MAX_NONCE_LENGTH:
            raise NonceError(f"initiator nonce of {len(finish.nonce)} bytes",
                             bad_nonce_length_error(MIN_NONCE_LENGTH, MAX_NONCE_LENGTH))
        try:
            shared = self._key.shared_secret(finish.public_value)
        except keyexchange.InvalidPublicValue as err:
            raise NonceError(f"initiator D-H {err}") from None
        self.hash_algorithm = hash_algorithm
        self.secret = assessment_secret(hash_algorithm, finish.nonce, self._nonce, shared)
        return self.secret
