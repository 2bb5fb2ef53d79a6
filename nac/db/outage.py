"""The policy database away: which errors pass, what callers see, what the log says.

* :func:`conflict` and :func:`transient` sort a database error: a deadlock
  or serialization failure (SQLSTATE 40P01 / 40001) is worth running the
  transaction again at once; a lost connection, a server restarting or
  refusing connections, a locked SQLite file, a pool checkout timeout is
  worth trying again later; anything else (a constraint, a bug) is not.
* :class:`StoreUnavailable` is what callers of the store get for a
  transient failure, with a one-line ``kind`` and no SQL, parameters or
  traceback; :class:`QueueFull` when the writes waiting for the database
  reached their bound.
* :class:`DatabaseHealth` turns a stream of failures into one log line per
  failure kind per interval ("database unavailable: OperationalError: …
  (412 writes queued)") and one when the database is back ("database back
  after 15.2 s, 412 queued writes done").

The store (:mod:`nac.db.store`) uses these; callers that log a store
failure use :func:`log_store_failure`, which keeps an expected outage out of
the log (the store has said it once) and logs anything else with its
traceback.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Callable

import sqlalchemy as sa

from nac.log import Logger

__all__ = [
    "DatabaseHealth",
    "QueueFull",
    "StoreUnavailable",
    "conflict",
    "describe",
    "log_store_failure",
    "transient",
    "unavailable",
]

log = Logger(namespace="nac.db")

#: SQLSTATEs of a transaction the server rolled back to let another one go
#: on: running it again is the remedy (PostgreSQL manual, "Serialization
#: Failure Handling").
CONFLICT_SQLSTATES = {"40P01": "deadlock detected", "40001": "serialization failure"}
#: SQLSTATE classes that say the server cannot do the work now: connection
#: exception, insufficient resources, operator intervention (shutdown,
#: starting up), system error; and transaction rollback.
_TRANSIENT_CLASSES = ("08", "53", "57", "58", "40")
#: What SQLite says when another connection holds the lock it needs, or its
#: file cannot be reached for the moment.
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database is busy",
                     "disk i/o error", "unable to open database file")


class StoreUnavailable(Exception):
    """The policy database cannot do this now: unreachable, restarting,
    locked by another process, or slower than the store waits for.

    ``kind`` is one line naming the failure (``OperationalError: connection
    refused``) without SQL or parameters; callers treat the operation as
    not done (a check that cannot be made never allows)."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


class QueueFull(StoreUnavailable):
    """The writes waiting for the database reached ``[nac] db_queue``: this
    one is dropped."""


def _original(error: BaseException) -> BaseException:
    """The driver's exception behind a SQLAlchemy wrapper."""
    return getattr(error, "orig", None) or error


def _sqlstate(error: BaseException) -> str | None:
    original = _original(error)
    return getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)


def conflict(error: BaseException) -> bool:
    """A deadlock or serialization failure: the transaction was rolled back
    so that another could go on, and may run again at once."""
    return _sqlstate(error) in CONFLICT_SQLSTATES


def transient(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot do the work *now* (and
    nothing of the transaction was kept), so that the same work may
    succeed later: :func:`conflict`, a lost or refused connection, a server
    shutting down or starting up, a locked SQLite database."""
    if isinstance(error, StoreUnavailable):
        return True
    if isinstance(error, sa.exc.TimeoutError):  # no pooled connection free in time
        return True
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    original = _original(error)
    state = _sqlstate(error)
    if state:
        return state[:2] in _TRANSIENT_CLASSES
    if isinstance(original, sqlite3.OperationalError):
        text = str(original).lower()
        return any(marker in text for marker in _SQLITE_TRANSIENT)
    try:
        import psycopg
    except ImportError:  # pragma: no cover - PostgreSQL support not installed
        return False
    # a connection lost or never made carries no SQLSTATE
    return isinstance(original, (psycopg.OperationalError, psycopg.InterfaceError))


def describe(error: BaseException) -> str:
    """One line naming a database failure for the log: the driver's
    exception class and the first line of its message (never SQLAlchemy's,
    which shows the statement and its parameters)."""
    if isinstance(error, StoreUnavailable):
        return error.kind
    original = _original(error)
    text = str(original).strip().splitlines()
    first = " ".join(text[0].split()) if text else ""
    if len(first) > 160:
        first = first[:157] + "..."
    name = type(original).__name__
    return f"{name}: {first}" if first else name


def unavailable(error: BaseException) -> StoreUnavailable:
    """The :class:`StoreUnavailable` callers see for a transient ``error``."""
    return error if isinstance(error, StoreUnavailable) else StoreUnavailable(describe(error))


def log_store_failure(logger: Logger, failure, message: str, **fields) -> None:
    """Log that a store operation failed: an outage (:class:`StoreUnavailable`)
    at debug level only, the store having said so once per interval; any
    other failure with its traceback, as the bug it is."""
    if failure.check(StoreUnavailable):
        logger.debug(message + ": {error}", error=failure.value.kind, **fields)
    else:
        logger.failure(message, failure, **fields)


class DatabaseHealth:
    """What the log says about the database being away, at most once per
    failure kind per ``interval`` seconds.

    Everything that talks to the database reports here: :meth:`failed` for
    a transient failure, :meth:`succeeded` for work done.  The first
    failure logs "database unavailable: KIND (N writes queued)" at once,
    the same kind again only ``interval`` seconds later ("database still
    unavailable after …"); once the database works again and the writes
    that waited for it are committed, "database back after S s, N queued
    writes done".  ``queued()`` says how many writes wait now;
    ``clock()`` is the time in seconds (the reactor's ``seconds``).
    """

    MAX_KINDS = 64
    """Failure kinds remembered at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, interval: float = 10.0,
                 queued: Callable[[], int] = lambda: 0, logger: Logger = log):
        self.clock = clock
        self.interval = interval
        self.queued = queued
        self.log = logger
        self.down_since: float | None = None
        """When the current outage began (None: the database works)."""
        self.back_at: float | None = None
        """When work first succeeded again, while the queued writes drain."""
        self.done = 0
        """Queued writes committed since the outage began."""
        self.dropped = 0
        """Writes dropped since the outage began (the queue was full)."""
        self._said: dict[str, float] = {}
        self.outages = 0
        """Outages seen so far (for tests and figures)."""

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, error: BaseException | str) -> None:
        """A transient failure of ``error`` (an exception or a kind).  Its
        kind, for the interval, is the driver's exception class and SQLSTATE
        (or the part of a kind before its colon): messages that differ in an
        address or a number are one kind, logged with the first message."""
        kind = error if isinstance(error, str) else describe(error)
        if isinstance(error, (str, StoreUnavailable)):
            key = kind.split(":", 1)[0]
        else:
            key = f"{type(_original(error)).__name__} {_sqlstate(error) or ''}"
        now = self.clock()
        if self.down_since is None:
            self.down_since = now
            self.done = self.dropped = 0
            self._said.clear()
            self.outages += 1
        self.back_at = None
        said = self._said.get(key)
        if said is not None and now - said < self.interval:
            return
        if said is None and len(self._said) >= self.MAX_KINDS:
            del self._said[min(self._said, key=self._said.__getitem__)]
        self._said[key] = now
        if said is None and len(self._said) == 1:
            self.log.error("database unavailable: {kind} ({queued} writes queued)", kind=kind,
                           queued=self.queued())
        else:
            self.log.error("database still unavailable after {seconds:.1f} s: {kind} ({queued} writes "
                           "queued)", kind=kind, seconds=now - self.down_since, queued=self.queued())

    def queue_full(self, limit: int) -> None:
        """A write was dropped: ``limit`` writes wait already."""
        self.dropped += 1
        self.failed(f"QueueFull: {limit} writes wait for the database ([nac] db_queue); new ones are "
                    f"dropped until it is back")

    def succeeded(self, committed: int = 0) -> None:
        """Work was done; ``committed`` queued writes among it."""
        if self.down_since is None:
            return
        if self.back_at is None:
            self.back_at = self.clock()
        self.done += committed
        if self.queued():
            return  # still draining what waited
        dropped = f", {self.dropped} dropped" if self.dropped else ""
        self.log.info("database back after {seconds:.1f} s, {done} queued writes done{dropped}",
                      seconds=self.back_at - self.down_since, done=self.done, dropped=dropped)
        self.down_since = self.back_at = None
        self._said.clear()
