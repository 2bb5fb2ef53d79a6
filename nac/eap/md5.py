"""EAP-MD5-Challenge, server side (RFC 3748 §5.4, the CHAP computation of RFC 1994 §4.1).

The Request carries a random 16-byte challenge; the peer answers with
MD5(Identifier || secret || challenge).  Needs the user's cleartext secret.
No keys are derived, so alone it is only fit inside a tunnel (EAP-TTLS) or
for an IKEv2 gateway that authenticated itself with a certificate.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Callable

from twisted.internet import defer

from nac.eap.method import Credentials, EapMethod, MethodStep
from nac.eap.packet import EapError, EapPacket, EapType
from nac.log import Logger

__all__ = ["Md5Challenge", "Md5ChallengeData", "md5_response"]

log = Logger(namespace="nac.eap")

CHALLENGE_SIZE = 16


@dataclass(frozen=True, slots=True)
class Md5ChallengeData:
    """Type-data of an MD5-Challenge Request or Response (RFC 3748 §5.4):
    Value-Size, Value, Name."""

    value: bytes
    name: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> Md5ChallengeData:
        if not data:
            raise EapError("MD5-Challenge without Value-Size", 5)
        size = data[0]
        if size == 0:
            raise EapError("MD5-Challenge with an empty Value", 5)
        if 1 + size > len(data):
            raise EapError(f"MD5-Challenge Value-Size {size} exceeds the {len(data) - 1} bytes present", 5)
        return cls(bytes(data[1:1 + size]), bytes(data[1 + size:]))

    def build(self) -> bytes:
        if not 0 < len(self.value) < 256:
            raise ValueError("MD5-Challenge Value must be 1-255 bytes")
        return bytes((len(self.value),)) + self.value + self.name


def md5_response(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """The expected Value of the Response (RFC 1994 §4.1)."""
    return hashlib.md5(bytes((identifier,)) + secret + challenge).digest()


class Md5Challenge(EapMethod):
    """EAP-MD5-Challenge for the peer named ``identity`` (its EAP identity)."""

    TYPE = EapType.MD5_CHALLENGE
    CHECKS_CREDENTIALS = True

    def __init__(self, identity: str, credentials: Credentials, *,
                 random: Callable[[int], bytes] = os.urandom):
        super().__init__()
        self.peer_identity = identity
        self._credentials = credentials
        self._challenge = random(CHALLENGE_SIZE)
        self._done = False

    def initiate(self) -> bytes:
        return Md5ChallengeData(self._challenge).build()

    def process(self, response: EapPacket) -> defer.Deferred:
        if self._done:
            return defer.succeed(MethodStep.failure("EAP-MD5 response after the method ended"))
        self._done = True
        try:
            value = Md5ChallengeData.parse(response.type_data).value
        except EapError as err:
            return defer.succeed(MethodStep.failure(f"invalid EAP-MD5 response: {err}"))
        if len(value) != 16:
            return defer.succeed(MethodStep.failure(
                f"invalid EAP-MD5 response: Value of {len(value)} bytes, 16 expected"))
        d = defer.maybeDeferred(self._credentials, self.peer_identity)
        d.addCallback(self._verify, response.identifier, value)
        d.addErrback(self._lookup_failed)
        return d

    def _verify(self, secret: str | None, identifier: int, value: bytes) -> MethodStep:
        if secret is None:
            self.verdict = False
            log.info("no EAP key found for '{peer}'", peer=self.peer_identity)
            return MethodStep.failure(f"no EAP secret for '{self.peer_identity}'")
        expected = md5_response(identifier, secret.encode("utf-8"), self._challenge)
        if not hmac.compare_digest(expected, value):
            self.verdict = False
            log.info("EAP-MD5 verification failed for '{peer}'", peer=self.peer_identity)
            return MethodStep.failure("EAP-MD5 verification failed")
        self.verdict = True
        self.identity = self.peer_identity
        return MethodStep.success()

    def _lookup_failed(self, failure) -> MethodStep:
        log.failure("looking up the EAP secret of '{peer}' failed", failure, peer=self.peer_identity)
        return MethodStep.failure("EAP secret lookup failed")
