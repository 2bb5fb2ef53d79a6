"""The values an assessment passes between a transport, the TNCS core and
its connections: who is assessed (:class:`PeerInfo`), what the transport can
carry (:class:`TransportLimits`), the outcome of a batch
(:class:`BatchOutcome`) and of the assessment (:class:`Decision`).

Plain immutable data: no behaviour beyond reading them, no imports from the
core or the connections, so that each of those can import this module."""

from __future__ import annotations

from dataclasses import dataclass, field

from nac.ifimv import ActionRecommendation, EvaluationResult
from nac.tnccs.imv_manager import Remediation
from nac.tnccs.recommendations import ImvVerdict


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Who is being assessed, as the transport authenticated it."""

    transport: str
    address: str
    port: int = 0
    identity: str | None = None
    auth_method: str = "none"
    nas: str | None = None
    """The short name of the NAS that relayed the endpoint (RADIUS), if it has one."""
    station: str | None = None
    """The endpoint as the NAS names it (RADIUS Calling-Station-Id), if it does."""


def address_of(peer: PeerInfo | None) -> str:
    """The address of ``peer``, which names it in a line about its input
    (``log_limit``, see :mod:`nac.log`); 'unknown' without one."""
    return str(getattr(peer, "address", None) or "unknown")


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """What the transport can carry (RFC 5793 §3.4 leaves this to the PT).

    The defaults are PT-TLS's; PT-EAP passes 32754 / 32722 as strongSwan does.
    """

    max_batch_size: int = 128 * 16384 - 16
    max_message_size: int = 128 * 16384 - 16 - 8 - 12 - 12


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one assessment."""

    recommendation: ActionRecommendation
    evaluation: EvaluationResult
    access: str
    """'allowed', 'isolate' or 'denied': what the transport enforces."""
    reasons: tuple[tuple[str, str], ...] = ()
    remediation: tuple[Remediation, ...] = ()
    imv_results: tuple[ImvVerdict, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.access == "allowed"


@dataclass(slots=True)
class BatchOutcome:
    """What the transport must do after handing a batch to the core."""

    batches: list[bytes] = field(default_factory=list)
    decision: Decision | None = None
    close: bool = False
    """True when the connection is over (CLOSE sent or received): send
    ``batches`` and then end the transport session."""
