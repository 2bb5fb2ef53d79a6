"""The values an assessment passes between a transport, the TNCS core and
its connections: who is assessed (:class:`PeerInfo`), what the transport can
carry (:class:`TransportLimits`), the outcome of a batch
(:class:`BatchOutcome`) and of the assessment (:class:`Decision`, with
the :class:`GroupEnforcement` of the endpoint's groups).

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
class Endpoint:
    """Who is assessed, as far as the group policy goes (nac.policy)."""

    identity: str | None = None
    device_id: str | None = None
    """The ITA-HSR Device ID, once an IMV reported it."""
    product: str | None = None
    """The OS as the OS IMV names it ('Debian 12 x86_64')."""


@dataclass(frozen=True, slots=True)
class GroupEnforcement:
    """What the endpoint's groups tell the transports to enforce
    (:mod:`nac.policy`); a field left None is the transport's configuration."""

    groups: tuple[str, ...] = ()
    """The endpoint's groups, most specific first."""
    filter_id_allow: str | None = None
    filter_id_isolate: str | None = None
    vlan_allow: str | None = None
    vlan_isolate: str | None = None
    allow_ts: tuple | None = None
    """IKEv2 traffic selectors (ip_network values) of Access Allowed."""
    isolate_ts: tuple | None = None
    session_timeout: int | None = None


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
    enforcement: GroupEnforcement | None = None
    """The group policy's enforcement values (None: no group policy)."""

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
