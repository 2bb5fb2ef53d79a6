"""The TNCS core: one per process, shared by every transport."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterator

from zope.interface import implementer

from nac.log import Logger
from nac.ifimv import ActionRecommendation, EvaluationResult, RecommendationPolicy
from nac.interfaces import ITnccsCore
from nac.tnccs.imv_manager import ImvManager, Remediation
from nac.tnccs.recommendations import ImvVerdict

log = Logger(namespace="nac.tnccs")


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Who is being assessed, as the transport authenticated it."""

    transport: str
    address: str
    port: int = 0
    identity: str | None = None
    auth_method: str = "none"


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


@implementer(ITnccsCore)
class TnccsCore:
    """Holds the IMVs and the assessment policy; opens connections."""

    def __init__(self, imvs: ImvManager | None = None, *,
                 policy: RecommendationPolicy = RecommendationPolicy.DEFAULT,
                 languages: tuple[str, ...] = ("en",), max_rounds: int = 10,
                 store=None, connection_ids: tuple[int, int] | Iterator[int] = (1, 1)):
        """``connection_ids`` is (first, step) of the Connection IDs this
        core hands out, or an iterator of them, so that the cores of several
        processes serving one database never share one (process k of n uses
        (k + 1, n))."""
        if isinstance(connection_ids, tuple):
            first, step = connection_ids
            if first < 1 or step < 1:
                raise ValueError(f"connection_ids must be positive (first, step), not {connection_ids!r}")
            ids: Iterator[int] = itertools.count(first, step)
        else:
            ids = iter(connection_ids)
        self.imvs = imvs if imvs is not None else ImvManager()
        self.policy = policy
        self.languages = tuple(languages) or ("en",)
        self.max_rounds = max_rounds
        self.store = store
        self.connection_ids = connection_ids
        self._ids = ids
        self.connections: dict[int, object] = {}

    def open_connection(self, peer: PeerInfo, limits: TransportLimits | None = None,
                        protocol: str = "pb-tnc"):
        """A new ITnccsConnection speaking ``protocol``: 'pb-tnc' (RFC 5793),
        'tnccs-1.1' (TCG XML IF-TNCCS 1.1) or 'dynamic' (decided by the
        client's first batch, for EAP-TNC)."""
        from nac.tnccs.dynamic import DynamicTnccsConnection
        from nac.tnccs.pb_server import PbTncServerConnection
        from nac.tnccs.tnccs11 import Tnccs11ServerConnection
        factories = {"pb-tnc": PbTncServerConnection, "tnccs-1.1": Tnccs11ServerConnection,
                     "dynamic": DynamicTnccsConnection}
        try:
            factory = factories[protocol]
        except KeyError:
            raise ValueError(f"unknown TNCCS protocol {protocol!r}; "
                             f"expected one of {', '.join(factories)}") from None
        connection_id = next(self._ids)
        conn = factory(self, connection_id, peer, limits or TransportLimits())
        self.connections[connection_id] = conn
        return conn

    def connection_closed(self, connection_id: int) -> None:
        self.connections.pop(connection_id, None)
