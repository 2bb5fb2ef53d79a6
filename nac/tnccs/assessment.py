"""The values an assessment passes between a transport, the TNCS core and
its connections: who is assessed (:class:`PeerInfo`), what the transport can
carry (:class:`TransportLimits`), the outcome of a batch
(:class:`BatchOutcome`) and of the assessment (:class:`Decision`, with
the :class:`GroupEnforcement` of the endpoint's groups; :class:`RelayedDecision`,
what of it a worker process hands the main process: :mod:`nac.processes`).

Plain immutable data: no behaviour beyond reading them, no imports from the
core or the connections, so that each of those can import this module."""

from __future__ import annotations

import ipaddress
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

    def to_json(self) -> dict:
        """The fields as JSON values (traffic selectors as CIDR strings);
        :meth:`from_json` reads them back."""
        data = {"groups": list(self.groups)}
        for name in _TEXT_FIELDS + ("session_timeout",):
            data[name] = getattr(self, name)
        for name in _TS_FIELDS:
            value = getattr(self, name)
            data[name] = None if value is None else [str(net) for net in value]
        return data

    @classmethod
    def from_json(cls, data) -> "GroupEnforcement":
        """The :meth:`to_json` form read back; ValueError naming the first
        field that is missing, unknown or of the wrong type."""
        if not isinstance(data, dict):
            raise ValueError("enforcement: not an object")
        unknown = sorted(set(data) - set(_ALL_FIELDS))
        if unknown:
            raise ValueError(f"enforcement: unknown field {unknown[0]!r}")
        groups = data.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ValueError("enforcement.groups: not a list of names")
        values: dict = {"groups": tuple(groups)}
        for name in _TEXT_FIELDS:
            value = data.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > 253):
                raise ValueError(f"enforcement.{name}: not a text of at most 253 characters")
            values[name] = value
        timeout = data.get("session_timeout")
        if timeout is not None and (type(timeout) is not int or not 0 <= timeout < 2 ** 32):
            raise ValueError("enforcement.session_timeout: not a number of seconds")
        values["session_timeout"] = timeout
        for name in _TS_FIELDS:
            value = data.get(name)
            if value is not None:
                if not isinstance(value, list) or not all(isinstance(net, str) for net in value):
                    raise ValueError(f"enforcement.{name}: not a list of networks")
                value = tuple(ipaddress.ip_network(net) for net in value)  # ValueError names the bad one
            values[name] = value
        return cls(**values)


_TEXT_FIELDS = ("filter_id_allow", "filter_id_isolate", "vlan_allow", "vlan_isolate")
_TS_FIELDS = ("allow_ts", "isolate_ts")
_ALL_FIELDS = ("groups", *_TEXT_FIELDS, *_TS_FIELDS, "session_timeout")


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


#: the values of :attr:`Decision.access`
ACCESS = ("allowed", "isolate", "denied")


@dataclass(frozen=True, slots=True)
class RelayedDecision:
    """What the main process learns of a decision a worker process made and
    committed: the access and the group enforcement (what the listeners of
    the store's decisions, RADIUS CoA, use; the rest is in the database)."""

    access: str
    enforcement: GroupEnforcement | None = None

    def to_json(self) -> dict:
        return {"access": self.access,
                "enforcement": None if self.enforcement is None else self.enforcement.to_json()}

    @classmethod
    def of(cls, decision) -> "RelayedDecision":
        return cls(decision.access, getattr(decision, "enforcement", None))

    @classmethod
    def from_json(cls, data) -> "RelayedDecision":
        """ValueError naming the field that is wrong."""
        if not isinstance(data, dict):
            raise ValueError("decision: not an object")
        if data.get("access") not in ACCESS:
            raise ValueError(f"decision.access: not one of {', '.join(ACCESS)}")
        enforcement = data.get("enforcement")
        return cls(data["access"], None if enforcement is None else GroupEnforcement.from_json(enforcement))


@dataclass(slots=True)
class BatchOutcome:
    """What the transport must do after handing a batch to the core."""

    batches: list[bytes] = field(default_factory=list)
    decision: Decision | None = None
    close: bool = False
    """True when the connection is over (CLOSE sent or received): send
    ``batches`` and then end the transport session."""
