"""The TNCS core: one per process, shared by every transport.

It holds the IMVs and the assessment policy and opens connections, picking
each one's class from :data:`CONNECTION_CLASSES` by TNCCS protocol name
(PB-TNC's taking part in mutual PB-TNC when the core has a client for it,
:mod:`nac.tnccs.mutual`).  It knows nothing of transports; the values it
exchanges with them are in :mod:`nac.tnccs.assessment`."""

from __future__ import annotations

import itertools
import time
from typing import Callable, Iterator

from zope.interface import implementer

from nac.ifimv import RecommendationPolicy
from nac.interfaces import ITnccsCore
from nac.log import Logger
from nac.pa.segmentation import (
    DEFAULT_SEGMENT_MEMORY,
    DEFAULT_SEGMENT_MEMORY_PER_CONNECTION,
    DEFAULT_SEGMENT_TIMEOUT,
    ReassemblyBudget,
)
from nac.tnccs.assessment import PeerInfo, TransportLimits
from nac.tnccs.dynamic import DynamicTnccsConnection
from nac.tnccs.imv_manager import ImvManager
from nac.tnccs.mutual import MutualPbTncServerConnection
from nac.tnccs.pb_server import PbTncServerConnection
from nac.tnccs.tnccs11 import Tnccs11ServerConnection

log = Logger(namespace="nac.tnccs")

#: TNCCS protocol name -> the connection class speaking it (an
#: ITnccsConnection made with (core, connection id, peer, limits))
CONNECTION_CLASSES: dict[str, type] = {
    "pb-tnc": PbTncServerConnection,        # RFC 5793
    "tnccs-1.1": Tnccs11ServerConnection,   # TCG IF-TNCCS 1.1 (XML)
    "dynamic": DynamicTnccsConnection,      # decided by the client's first batch (EAP-TNC)
}


@implementer(ITnccsCore)
class TnccsCore:
    """Holds the IMVs and the assessment policy; opens connections."""

    def __init__(self, imvs: ImvManager | None = None, *,
                 policy: RecommendationPolicy = RecommendationPolicy.DEFAULT,
                 languages: tuple[str, ...] = ("en",), max_rounds: int = 10,
                 store=None, connection_ids: tuple[int, int] | Iterator[int] = (1, 1),
                 connection_classes: dict[str, type] | None = None,
                 segment_memory: int = DEFAULT_SEGMENT_MEMORY,
                 segment_memory_per_connection: int = DEFAULT_SEGMENT_MEMORY_PER_CONNECTION,
                 segment_timeout: float | None = DEFAULT_SEGMENT_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic, mutual=None):
        """``connection_ids`` is (first, step) of the Connection IDs this
        core hands out, or an iterator of them, so that the cores of several
        processes serving one database never share one (process k of n uses
        (k + 1, n)).  ``connection_classes`` replaces
        :data:`CONNECTION_CLASSES`.  ``segment_memory`` bounds the bytes
        of unfinished IF-M segmented attributes of all connections,
        ``segment_memory_per_connection`` those of one, and
        ``segment_timeout`` (seconds on ``clock``) how long one may take
        (:class:`~nac.pa.segmentation.ReassemblyBudget`).  ``mutual``, an
        :class:`nac.interfaces.IMutualClientFactory`, makes PB-TNC
        connections take part in mutual PB-TNC when a client asks (None:
        they never do, the default)."""
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
        self.policy_source = None
        """The group policy (an nac.interfaces.IPolicySource) or None."""
        self.connection_ids = connection_ids
        self._ids = ids
        self.connections: dict[int, object] = {}
        self.connection_classes = dict(CONNECTION_CLASSES if connection_classes is None else connection_classes)
        self.reassembly = ReassemblyBudget(segment_memory, name="[nac] segment_memory", timeout=segment_timeout,
                                           clock=clock)
        self.segment_memory_per_connection = segment_memory_per_connection
        self.mutual = mutual
        if mutual is not None and connection_classes is None:
            self.connection_classes["pb-tnc"] = MutualPbTncServerConnection

    def reassembly_budget(self) -> ReassemblyBudget:
        """A new connection's budget for unfinished segmented attributes."""
        return self.reassembly.child(self.segment_memory_per_connection,
                                     name="[nac] segment_memory_per_connection")

    def open_connection(self, peer: PeerInfo, limits: TransportLimits | None = None,
                        protocol: str = "pb-tnc"):
        """A new ITnccsConnection speaking ``protocol``, a name of
        :attr:`connection_classes`: 'pb-tnc' (RFC 5793), 'tnccs-1.1' (TCG
        XML IF-TNCCS 1.1) or 'dynamic' (decided by the client's first batch,
        for EAP-TNC)."""
        try:
            factory = self.connection_classes[protocol]
        except KeyError:
            raise ValueError(f"unknown TNCCS protocol {protocol!r}; "
                             f"expected one of {', '.join(self.connection_classes)}") from None
        connection_id = next(self._ids)
        conn = factory(self, connection_id, peer, limits or TransportLimits())
        self.connections[connection_id] = conn
        return conn

    def new_connection_id(self) -> int:
        """A Connection ID of this core's for work that is no TNCCS
        connection (a device judged again after a policy change)."""
        return next(self._ids)

    def connection_closed(self, connection_id: int) -> None:
        self.connections.pop(connection_id, None)
