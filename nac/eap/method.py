"""What every server-side EAP method here looks like to its caller.

A method is a small sans-IO object for one conversation: :meth:`initiate`
gives the type-data of its first Request, :meth:`process` takes each
Response and says what comes next as a :class:`MethodStep`.  The caller (the
authenticator in :mod:`nac.eap.server`, or EAP-TTLS for its phase 2) owns
identifiers, Nak handling and the Success/Failure packets.

``process`` returns a Deferred because some steps wait for something
outside: the password store, or the TNCS core with its IMVs.  The other
methods answer with an already fired Deferred.  :meth:`EapMethod.respond`
is the same step without that Deferred when the answer is ready at once,
as it is for most packets of a conversation (fragment acknowledgements,
TLS flights): the authenticator calls it, so those packets cost no
Deferred chain.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, ClassVar

from twisted.internet import defer

from nac.eap.packet import EapPacket, EapType

__all__ = [
    "CheckPassword",
    "Credentials",
    "EapMethod",
    "MethodResult",
    "MethodStep",
    "as_deferred",
    "no_credentials",
]

Credentials = Callable[[str], "defer.Deferred[str | None]"]
"""``credentials(identity)``: fires with the user's cleartext EAP secret, or
None for an unknown or disabled user."""

CheckPassword = Callable[[str, str], "defer.Deferred[bool]"]
"""``check_password(identity, password)``: fires True for an enabled user
with that password (EAP-TTLS/PAP)."""


def no_credentials(identity: str) -> defer.Deferred:
    """The credential lookup used when no store provides EAP secrets."""
    return defer.succeed(None)


class MethodResult(enum.Enum):
    CONTINUE = "continue"
    """Send ``type_data`` in the next Request."""
    SUCCESS = "success"
    """The peer authenticated; the caller sends Success (or goes on)."""
    FAILURE = "failure"
    """Authentication failed; the caller sends Failure."""


@dataclass(frozen=True, slots=True)
class MethodStep:
    result: MethodResult
    type_data: bytes = b""
    reason: str = ""
    """Why the method failed, for the log line (never a secret)."""

    @classmethod
    def send(cls, type_data: bytes) -> MethodStep:
        return cls(MethodResult.CONTINUE, type_data)

    @classmethod
    def success(cls) -> MethodStep:
        return cls(MethodResult.SUCCESS)

    @classmethod
    def failure(cls, reason: str) -> MethodStep:
        return cls(MethodResult.FAILURE, reason=reason)


class EapMethod:
    """Base of the server side of one EAP method for one conversation."""

    TYPE: ClassVar[EapType]
    KEY_GENERATING: ClassVar[bool] = False
    CHECKS_CREDENTIALS: ClassVar[bool] = False
    """The method itself checks the peer's password, from its first Response
    (EAP-MD5, EAP-MSCHAPv2): its caller applies the failed-login throttle
    (:mod:`nac.eap.logins`) around that Response."""

    def __init__(self) -> None:
        self.identity: str | None = None
        """The identity the peer authenticated as, once SUCCESS."""
        self.verdict: bool | None = None
        """Whether the peer's credentials were right, once the method knows
        (it may still have messages to exchange)."""
        self.msk: bytes | None = None
        self.emsk: bytes | None = None
        self.decision = None
        """The posture decision, for methods that run one."""

    @property
    def label(self) -> str:
        return self.TYPE.label

    def initiate(self) -> bytes:
        """Type-data of the method's first Request."""
        raise NotImplementedError

    def process(self, response: EapPacket) -> defer.Deferred:
        """Handle one Response of this method's type; fires with a MethodStep."""
        raise NotImplementedError

    def respond(self, response: EapPacket) -> "MethodStep | defer.Deferred":
        """:meth:`process`, with a step that is ready at once returned as it
        is rather than in a fired Deferred."""
        return self.process(response)

    def abort(self, reason: str) -> None:
        """The conversation ends before the method did: release what it holds."""


def as_deferred(result: "MethodStep | defer.Deferred") -> defer.Deferred:
    """What :meth:`EapMethod.respond` returned, as :meth:`EapMethod.process` returns it."""
    return result if isinstance(result, defer.Deferred) else defer.succeed(result)
