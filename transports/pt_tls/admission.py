"""Which PT-TLS connections the server takes before they authenticate, and
how it reports the ones it turns away (sans-IO: connections are opaque
objects, the time is passed in).

A connection counts as unauthenticated from its TCP accept until the
client's authentication (TLS certificate or SASL PLAIN, RFC 6876 §3.3)
completes.  Such connections have a budget of their own, per source address
and in total, beside ``max_connections``: a client that opens connections
and never authenticates crowds out only itself, never the authenticated
sessions nor the clients of other addresses.  Nothing here knows TLS,
sockets or timers: :mod:`transports.pt_tls.service` acts on the answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

__all__ = ["Admitted", "Refused", "RefusalTally", "UnauthenticatedBudget"]


@dataclass(frozen=True, slots=True)
class Admitted:
    """Take the connection; first close ``evicted`` (an older unauthenticated
    connection of the busiest source), if any, which no longer counts."""

    evicted: object | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Close the connection at once: ``limit`` (``"per-source"`` or
    ``"total"``) is taken."""

    limit: str


class UnauthenticatedBudget:
    """Unauthenticated connections: at most ``per_source`` of one source and
    ``total`` in all.

    When all are taken, a connection from a source that holds at least two
    fewer than the busiest source still gets in, in place of the busiest
    source's oldest (the one closest to its own timeout anyway); a source at
    its own limit is refused.  From ``busy_fraction`` of ``total`` on the budget is
    :attr:`busy`: the service then gives unauthenticated connections less
    time.
    """

    def __init__(self, total: int, per_source: int, busy_fraction: float = 0.75):
        self.total = total
        self.per_source = per_source
        self.busy_level = max(1, int(total * busy_fraction))
        # source -> its connections, oldest first (dicts keep insertion order)
        self._by_source: dict[Hashable, dict[object, None]] = {}
        self._source_of: dict[object, Hashable] = {}

    def __len__(self) -> int:
        return len(self._source_of)

    def __contains__(self, connection) -> bool:
        return connection in self._source_of

    @property
    def busy(self) -> bool:
        return len(self._source_of) >= self.busy_level

    def held(self, source) -> int:
        """Unauthenticated connections of ``source``."""
        return len(self._by_source.get(source, ()))

    def connections(self) -> list:
        """Every unauthenticated connection, oldest first."""
        return list(self._source_of)

    def admit(self, source, connection) -> Admitted | Refused:
        mine = self.held(source)
        if mine >= self.per_source:
            return Refused("per-source")
        evicted = None
        if len(self._source_of) >= self.total:
            busiest = max(self._by_source, key=lambda s: len(self._by_source[s]))
            # a difference of one would only swap one source's connection for
            # another's, each costing a new TLS connection
            if len(self._by_source[busiest]) <= mine + 1:
                return Refused("total")
            evicted = next(iter(self._by_source[busiest]))
            self.release(evicted)
        self._by_source.setdefault(source, {})[connection] = None
        self._source_of[connection] = source
        return Admitted(evicted)

    def release(self, connection) -> None:
        """``connection`` authenticated or closed: it no longer counts."""
        source = self._source_of.pop(connection, None)
        if source is None:
            return
        group = self._by_source[source]
        del group[connection]
        if not group:
            del self._by_source[source]


class RefusalTally:
    """One log line per key (a source and a kind of refusal) and interval.

    :meth:`count` says to log the first refusal of a quiet key at once; the
    ones after it within ``interval`` are counted, and :meth:`due` hands out
    their number once the interval is over (the caller asks at
    :meth:`next_due`).  At most ``max_keys`` keys are kept apart: beyond,
    refusals count under ``overflow_key``.
    """

    def __init__(self, interval: float = 10.0, max_keys: int = 4096, overflow_key: Hashable = "*"):
        self.interval = interval
        self.max_keys = max_keys
        self.overflow_key = overflow_key
        # key -> [time of its last line, refusals since]
        self._keys: dict[Hashable, list] = {}

    def count(self, key: Hashable, now: float) -> bool:
        """Count one refusal; True to log this one now."""
        entry = self._keys.get(key)
        if entry is None and len(self._keys) >= self.max_keys:
            key = self.overflow_key
            entry = self._keys.get(key)
        if entry is None or (entry[1] == 0 and now - entry[0] >= self.interval):
            self._keys[key] = [now, 0]
            return True
        entry[1] += 1
        return False

    def next_due(self) -> float | None:
        """When :meth:`due` next has something, or None."""
        times = [entry[0] for entry in self._keys.values() if entry[1]]
        return min(times) + self.interval if times else None

    def due(self, now: float, *, flush: bool = False) -> list[tuple[Hashable, int, float]]:
        """(key, refusals, seconds they span) for each key whose interval is
        over (with ``flush``, for each key with refusals not yet told, as when
        the server stops); forgets keys quiet for an interval."""
        out = []
        for key, entry in list(self._keys.items()):
            if now - entry[0] < self.interval and not (flush and entry[1]):
                continue
            if entry[1]:
                out.append((key, entry[1], now - entry[0]))
                entry[0], entry[1] = now, 0
            else:
                del self._keys[key]
        return out
