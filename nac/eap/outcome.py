"""What an EAP server conversation tells the transport carrying it.

The contract between ``nac.eap`` (the EAP authenticator, RFC 3748) and the
transports that carry EAP: RADIUS (EAP-Message, RFC 3579) and IKEv2 (the EAP
payload, RFC 7296 §2.16).  The transport hands every EAP packet it receives
to :meth:`nac.interfaces.IEapSession.receive` and gets an :class:`EapOutcome`
back: a packet to send and whether the conversation goes on, succeeded or
failed.  Keys, the authenticated identity and the posture decision are on the
outcome once the conversation has ended in success.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EapStatus(enum.Enum):
    CONTINUE = "continue"
    """``packet`` is an EAP-Request; wait for the peer's next response."""
    SUCCESS = "success"
    """``packet`` is EAP-Success; ``msk``/``emsk`` are set."""
    FAILURE = "failure"
    """``packet`` is EAP-Failure; nothing else is granted."""
    DISCARD = "discard"
    """The packet was silently discarded (RFC 3748 §4.1: wrong identifier,
    not a response, malformed); ``packet`` is None, nothing changed."""


@dataclass(frozen=True, slots=True)
class EapOutcome:
    status: EapStatus
    packet: bytes | None = None
    msk: bytes | None = None
    emsk: bytes | None = None
    identity: str | None = None
    """The identity the peer authenticated as (inner identity for tunnelled
    methods), or the EAP-Response/Identity value before that."""
    decision: object | None = None
    """The nac.tnccs.assessment.Decision of the posture exchange run inside the
    conversation, or None when no posture exchange took place."""
    reason: str = ""
    """Why the conversation failed or was discarded, for the transport's log
    line (never contains secrets)."""

    @property
    def finished(self) -> bool:
        return self.status in (EapStatus.SUCCESS, EapStatus.FAILURE)
