"""What a peer that has not authenticated can make nac do with passwords, for
every transport that checks one: SASL PLAIN on PT-TLS, and EAP-TTLS/PAP,
EAP-MD5 and EAP-MSCHAPv2 (inner or outer) on RADIUS and IKEv2.

* :class:`FailureThrottle` (sans-IO: the time is passed in) counts failed
  logins per source and per user name: a growing delay before the next check
  for a source that failed, a temporary lock-out of a source that failed too
  often, and a lock-out of a user name *for the sources that failed for it*.
* :class:`PasswordChecks` bounds the slow password checks (scrypt, about 60 ms
  and 16 MiB each) of one process: how many wait or run, how many one source
  may have, taken in turn from each source, a waiting check dropped when its
  connection goes.
* :class:`Logins` is both together, one per process, shared by its
  transports (:func:`logins_for`); it logs one line per lock-out.

This module knows no transport and no database: it is handed the check
(``PolicyStore.check_password``) and the source of each attempt
(:class:`LoginSource`, :func:`address_source`).  Its settings are the
``[auth]`` section of the configuration.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from nac.escape import printable
from nac.log import Logger

__all__ = [
    "Admission",
    "CheckDropped",
    "FailureThrottle",
    "LockOut",
    "LoginOutcome",
    "LoginSource",
    "Logins",
    "PasswordChecks",
    "address_source",
    "logins_for",
]

log = Logger(namespace="nac.auth")

#: Sources and user names remembered at most (the least recently failed go first).
MAX_TRACKED = 65536
#: Sources remembered per user name that failed for it.
MAX_SOURCES_PER_USER = 1024


def address_source(address: str) -> str:
    """The source an address counts as: an IPv4 address itself, an IPv6
    address its /64 (one host usually holds a whole /64 and can pick any
    address in it)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True)
class LoginSource:
    """Where a login attempt comes from.

    ``key`` names it (an address, its /64, a NAS and Calling-Station-Id);
    ``individual`` is False for a relay that carries many endpoints (a RADIUS
    NAS that names no station): such a source is never delayed or locked out
    as a whole, it only counts towards the user names that failed through it.
    """

    key: str
    individual: bool = True

    def __str__(self) -> str:
        return printable(self.key)


class LoginOutcome(enum.Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    """The password was checked and is wrong (or the user unknown or disabled)."""
    LOCKED_OUT = "locked out"
    """Refused without a check: the source, or the user name for this source, is locked out."""
    BUSY = "busy"
    """Refused without a check: no room for another password check."""


# -- failed logins (sans-IO) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Admission:
    """May a login from a source for a user name be checked now?"""

    refused: str | None = None
    """Why not (``"source"``: the source is locked out; ``"user"``: the user
    name is locked out for this source), None if it may."""
    delay: float = 0.0
    """Seconds to wait before checking (the source failed before)."""


@dataclass(frozen=True, slots=True)
class LockOut:
    """A lock-out that has just begun (one log line each)."""

    kind: str
    """``"source"`` or ``"user"``."""
    name: str
    failures: int
    sources: int
    duration: float


class _Record:
    __slots__ = ("failures", "last_failure", "locked_until", "sources")

    def __init__(self) -> None:
        self.failures = 0
        self.last_failure = 0.0
        self.locked_until = 0.0
        self.sources: OrderedDict[str, float] | None = None


class FailureThrottle:
    """Failed logins per source and per user name, and what they cost.

    A source (:class:`LoginSource` that is ``individual``) that failed ``n``
    times waits ``failure_delay * 2**(n-1)`` seconds (at most
    ``max_failure_delay``) after its last failure before its next password
    is checked; at ``max_failures_per_source`` failures it is locked out for
    ``lockout`` seconds: its logins are refused unchecked, whatever the user
    name.  A user name that failed ``max_failures_per_user`` times, from any
    sources, is locked out for ``lockout`` seconds *only for the sources that
    failed for it* (and those that fail for it meanwhile): a guesser on
    other addresses cannot lock the real user out of the addresses it logs
    in from, and each new address it tries gets one guess.  A success clears
    the user name's failure of that source, not the source's own count (a
    valid account must not buy more guesses at others).  Failures older than
    ``failure_window`` seconds are forgotten; a lock-out that ran out starts
    the count again.
    """

    def __init__(self, *, failure_delay: float = 1.0, max_failure_delay: float = 4.0,
                 max_failures_per_source: int = 10, max_failures_per_user: int = 10,
                 lockout: float = 300.0, failure_window: float = 900.0, max_tracked: int = MAX_TRACKED):
        self.failure_delay = failure_delay
        self.max_failure_delay = max_failure_delay
        self.max_failures_per_source = max_failures_per_source
        self.max_failures_per_user = max_failures_per_user
        self.lockout = lockout
        self.failure_window = failure_window
        self.max_tracked = max_tracked
        self._sources: OrderedDict[str, _Record] = OrderedDict()
        self._users: OrderedDict[str, _Record] = OrderedDict()

    def delay_after(self, failures: int) -> float:
        """The wait owed after ``failures`` failures."""
        if failures <= 0:
            return 0.0
        return min(self.max_failure_delay, self.failure_delay * 2.0 ** min(failures - 1, 60))

    def admit(self, source: LoginSource, user: str, now: float) -> Admission:
        """Whether a login of ``user`` from ``source`` may be checked, and after what wait."""
        delay = 0.0
        if source.individual:
            record = self._current(self._sources, source.key, now)
            if record is not None:
                if record.locked_until > now:
                    return Admission("source")
                if record.failures:
                    delay = max(0.0, record.last_failure + self.delay_after(record.failures) - now)
        record = self._current(self._users, user, now)
        if record is not None and record.locked_until > now and source.key in record.sources:
            return Admission("user")
        return Admission(None, delay)

    def failed(self, source: LoginSource, user: str, now: float) -> list[LockOut]:
        """Count a failed login; the lock-outs it starts."""
        started = []
        if source.individual:
            record = self._record(self._sources, source.key, now)
            if record.locked_until <= now:  # a check that ran while it was locked out counts for nothing more
                record.failures += 1
                record.last_failure = now
                if record.failures >= self.max_failures_per_source:
                    record.locked_until = now + self.lockout
                    started.append(LockOut("source", source.key, record.failures, 1, self.lockout))
        record = self._record(self._users, user, now)
        record.failures += 1
        record.last_failure = now
        sources = record.sources
        sources[source.key] = now
        sources.move_to_end(source.key)
        while len(sources) > MAX_SOURCES_PER_USER:
            sources.popitem(last=False)
        if record.locked_until <= now and record.failures >= self.max_failures_per_user:
            record.locked_until = now + self.lockout
            started.append(LockOut("user", user, record.failures, len(sources), self.lockout))
        return started

    def succeeded(self, source: LoginSource, user: str, now: float) -> None:
        """A login of ``user`` from ``source`` succeeded."""
        record = self._current(self._users, user, now)
        if record is not None:
            record.sources.pop(source.key, None)

    def locked_out(self, now: float) -> tuple[int, int]:
        """(sources, user names) locked out now, for figures and tests."""
        return (sum(1 for r in self._sources.values() if r.locked_until > now),
                sum(1 for r in self._users.values() if r.locked_until > now))

    # -- records ------------------------------------------------------------------------------

    def _current(self, table: OrderedDict, key: str, now: float) -> _Record | None:
        record = table.get(key)
        if record is None:
            return None
        if record.locked_until and record.locked_until <= now:
            # the lock-out ran out: a fresh start
            record.failures = 0
            record.locked_until = 0.0
            if record.sources is not None:
                record.sources.clear()
        if record.failures and now - record.last_failure >= self.failure_window:
            record.failures = 0
        sources = record.sources
        if sources:
            horizon = now - self.failure_window
            while sources and next(iter(sources.values())) <= horizon:
                sources.popitem(last=False)
        if not record.failures and not record.locked_until and not sources:
            del table[key]
            return None
        return record

    def _record(self, table: OrderedDict, key: str, now: float) -> _Record:
        record = self._current(table, key, now)
        if record is None:
            record = table[key] = _Record()
            if table is self._users:
                record.sources = OrderedDict()
            while len(table) > self.max_tracked:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        return record


# -- the password checks of one process -----------------------------------------------------


class CheckDropped(Exception):
    """A waiting password check was dropped to make room for another source's."""


class _Ticket:
    __slots__ = ("source", "args", "deferred", "state")

    def __init__(self, source: str):
        self.source = source
        self.args: tuple = ()
        self.deferred: defer.Deferred | None = None
        self.state = "reserved"  # reserved, queued, running, done


class PasswordChecks:
    """The slow password checks of one process, bounded.

    ``reserve(source)`` takes a place (None when there is none: at most
    ``max_pending`` places in all and ``max_pending_per_source`` per source);
    ``start(ticket, *args)`` queues ``check(*args)``; at most
    ``concurrency`` checks run at once (the threads that run them), taken in
    turn from each source that has one waiting, so that a source with many
    cannot keep another's waiting.  ``release(ticket)`` gives a place back
    before its check ran (its connection went away): a queued check is
    dropped, a running one finishes and its place is freed then.  When every
    place is taken, a source takes the oldest waiting check of the source
    with the most waiting, when that has at least two more than it holds
    itself (the dropped check's Deferred fails with :class:`CheckDropped`).
    """

    def __init__(self, check: Callable[..., "defer.Deferred | bool"], *, max_pending: int = 64,
                 max_pending_per_source: int = 16, concurrency: int = 2):
        self._check = check
        self.max_pending = max_pending
        self.max_pending_per_source = max_pending_per_source
        self.concurrency = concurrency
        self._queues: OrderedDict[str, deque[_Ticket]] = OrderedDict()
        self._held: dict[str, int] = {}
        self._served_last: str | None = None
        self.pending = 0
        """Places taken: reserved, queued and running checks."""
        self.running = 0
        self.dropped = 0
        """Queued checks dropped (their connection went, or room was made)."""

    def held(self, source: str) -> int:
        return self._held.get(source, 0)

    def reserve(self, source: str) -> _Ticket | None:
        mine = self._held.get(source, 0)
        if mine >= self.max_pending_per_source:
            return None
        if self.pending >= self.max_pending and not self._make_room(mine):
            return None
        self.pending += 1
        self._held[source] = mine + 1
        return _Ticket(source)

    def start(self, ticket: _Ticket, *args) -> defer.Deferred:
        """Queue the check of a reserved ticket; its Deferred fires with the check's result."""
        if ticket.state != "reserved":
            raise RuntimeError(f"a {ticket.state} password check cannot start")
        ticket.args = args
        ticket.deferred = defer.Deferred()
        ticket.state = "queued"
        queue = self._queues.get(ticket.source)
        if queue is None:
            queue = self._queues[ticket.source] = deque()
            # a new source's turn comes before that of the source served last
            if self._served_last in self._queues:
                self._queues.move_to_end(self._served_last)
        queue.append(ticket)
        self._pump()
        return ticket.deferred

    def release(self, ticket: _Ticket) -> None:
        """The attempt went away: drop its check unless it is running."""
        if ticket.state == "queued":
            self._unqueue(ticket)
            self.dropped += 1
        if ticket.state in ("reserved", "queued"):
            self._free(ticket)

    # -- internals ----------------------------------------------------------------------------

    def _make_room(self, mine: int) -> bool:
        if not self._queues:
            return False
        busiest = max(self._queues, key=lambda source: len(self._queues[source]))
        # a difference of one would only swap one source's check for another's
        if len(self._queues[busiest]) <= mine + 1:
            return False
        victim = self._queues[busiest][0]
        self._unqueue(victim)
        self._free(victim)
        self.dropped += 1
        victim.deferred.errback(CheckDropped())
        return True

    def _unqueue(self, ticket: _Ticket) -> None:
        queue = self._queues.get(ticket.source)
        if queue is not None:
            try:
                queue.remove(ticket)
            except ValueError:
                pass
            if not queue:
                del self._queues[ticket.source]
        ticket.args = ()

    def _free(self, ticket: _Ticket) -> None:
        ticket.state = "done"
        self.pending -= 1
        left = self._held.get(ticket.source, 0) - 1
        if left > 0:
            self._held[ticket.source] = left
        else:
            self._held.pop(ticket.source, None)

    def _pump(self) -> None:
        queues = self._queues
        while self.running < self.concurrency and queues:
            source, queue = next(iter(queues.items()))
            ticket = queue.popleft()
            self._served_last = source
            if queue:
                queues.move_to_end(source)  # the next check comes from the next source
            else:
                del queues[source]
            args, ticket.args = ticket.args, ()
            ticket.state = "running"
            self.running += 1
            d = defer.maybeDeferred(self._check, *args)
            d.addBoth(self._finished, ticket)

    def _finished(self, result, ticket: _Ticket) -> None:
        self.running -= 1
        self._free(ticket)
        self._pump()
        if isinstance(result, Failure):
            ticket.deferred.errback(result)
        else:
            ticket.deferred.callback(result)


# -- both, for the transports ---------------------------------------------------------------


class Logins:
    """The login checks of one process (see the module docstring).

    ``check_password(source, user, password)`` (SASL PLAIN, EAP-TTLS/PAP)
    fires with a :class:`LoginOutcome`; cancelling it drops the check if it
    has not started.  Methods that check a password themselves (EAP-MD5,
    MSCHAPv2: no slow hash) call :meth:`admit`, wait what it says
    (:meth:`wait`) and report with :meth:`record`.

    A user name that logged in from a source within ``known_for`` seconds
    is *known* there: its next check from that source goes straight to the
    check, past the queue of :class:`PasswordChecks` and any wait owed by
    the source's other failures (one such check at a time per source and
    user name; a wrong password ends it).  Returning endpoints, whose
    passwords the policy store has usually remembered, so never wait behind
    a flood of checks from anyone; lock-outs still apply.
    """

    def __init__(self, check: Callable[[str, str], "defer.Deferred | bool"], *,
                 throttle: FailureThrottle | None = None, checks: PasswordChecks | None = None,
                 clock=None, known_for: float = 3600.0, max_known: int = MAX_TRACKED):
        self.throttle = throttle if throttle is not None else FailureThrottle()
        self.checks = checks if checks is not None else PasswordChecks(check)
        self._check = check
        self._clock = clock
        self.known_for = known_for
        self.max_known = max_known
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._known_checking: set[tuple[str, str]] = set()

    @property
    def clock(self):
        if self._clock is None:
            from twisted.internet import reactor
            self._clock = reactor
        return self._clock

    def admit(self, source: LoginSource, user: str) -> Admission:
        return self.throttle.admit(source, user, self.clock.seconds())

    def wait(self, seconds: float) -> defer.Deferred:
        """A Deferred firing after ``seconds``; cancel it to stop waiting."""
        return defer.deferLater(self.clock, seconds, lambda: None)

    def record(self, source: LoginSource, user: str, ok: bool) -> None:
        now = self.clock.seconds()
        key = (source.key, user)
        if ok:
            self.throttle.succeeded(source, user, now)
            self._known[key] = now + self.known_for
            self._known.move_to_end(key)
            while len(self._known) > self.max_known:
                self._known.popitem(last=False)
            return
        self._known.pop(key, None)
        for lock in self.throttle.failed(source, user, now):
            if lock.kind == "source":
                log.warn("locking out {source} for {seconds:g} s: {failures} failed logins",
                         source=printable(lock.name), seconds=lock.duration, failures=lock.failures)
            else:
                log.warn("user name '{user}' had {failures} failed logins from {sources} sources: locked "
                         "out for {seconds:g} s for those sources (others may still log in)",
                         user=printable(lock.name), failures=lock.failures, sources=lock.sources,
                         seconds=lock.duration)

    def known(self, source: LoginSource, user: str) -> bool:
        """Whether ``user`` logged in from ``source`` within ``known_for`` seconds."""
        until = self._known.get((source.key, user))
        if until is None:
            return False
        if until <= self.clock.seconds():
            del self._known[(source.key, user)]
            return False
        return True

    def check_password(self, source: LoginSource, user: str, password: str) -> defer.Deferred:
        admission = self.admit(source, user)
        if admission.refused is not None:
            return defer.succeed(LoginOutcome.LOCKED_OUT)
        key = (source.key, user)
        if key not in self._known_checking and self.known(source, user):
            return self._check_known(key, source, user, password)
        ticket = self.checks.reserve(source.key)
        if ticket is None:
            return defer.succeed(LoginOutcome.BUSY)
        waiting: list = []

        def cancel(_):
            for call in waiting:
                if call.active():
                    call.cancel()
            self.checks.release(ticket)

        outcome = defer.Deferred(cancel)

        def answer(value) -> None:
            if not outcome.called:
                outcome.callback(value)

        def checked(ok) -> None:
            self.record(source, user, bool(ok))
            answer(LoginOutcome.ACCEPTED if ok else LoginOutcome.REJECTED)

        def check_failed(failure) -> None:
            if failure.check(CheckDropped):
                answer(LoginOutcome.BUSY)
            elif not outcome.called:
                outcome.errback(failure)

        def run() -> None:
            waiting.clear()
            # the source may have been locked out while this one waited
            if self.admit(source, user).refused is not None:
                self.checks.release(ticket)
                answer(LoginOutcome.LOCKED_OUT)
                return
            self.checks.start(ticket, user, password).addCallbacks(checked, check_failed)

        if admission.delay > 0:
            waiting.append(self.clock.callLater(admission.delay, run))
        else:
            run()
        return outcome

    def _check_known(self, key: tuple[str, str], source: LoginSource, user: str, password: str):
        self._known_checking.add(key)
        d = defer.maybeDeferred(self._check, user, password)

        def checked(ok):
            self._known_checking.discard(key)
            self.record(source, user, bool(ok))
            return LoginOutcome.ACCEPTED if ok else LoginOutcome.REJECTED

        def check_failed(failure):
            self._known_checking.discard(key)
            return failure

        return d.addCallbacks(checked, check_failed)


_BY_STORE: "weakref.WeakKeyDictionary[object, Logins]" = weakref.WeakKeyDictionary()


def settings(cfg) -> dict:
    """The keyword arguments of :class:`FailureThrottle` and
    :class:`PasswordChecks` from the ``[auth]`` section."""
    sec = cfg.section("auth")
    return {
        "throttle": dict(failure_delay=sec["failure_delay"], max_failure_delay=sec["max_failure_delay"],
                         max_failures_per_source=sec["max_failures_per_source"],
                         max_failures_per_user=sec["max_failures_per_user"],
                         lockout=sec["lockout"], failure_window=sec["failure_window"]),
        "checks": dict(max_pending=sec["max_password_checks"],
                       max_pending_per_source=sec["max_password_checks_per_source"]),
    }


def logins_for(cfg, store=None, check_password=None, clock=None) -> Logins:
    """The :class:`Logins` of this process for ``store`` (one per store, so
    that PT-TLS and EAP share it), or a new one around ``check_password``
    (``check(name, password)`` firing True or False) when it is given."""
    if check_password is None and store is not None:
        try:
            return _BY_STORE[store]
        except (KeyError, TypeError):
            pass
    check = check_password if check_password is not None else getattr(store, "check_password", None)
    if check is None:
        check = _no_password_database
    conf = settings(cfg)
    threads = getattr(getattr(store, "auth_pool", None), "max", 2) if check_password is None else 2
    logins = Logins(check, throttle=FailureThrottle(**conf["throttle"]),
                    checks=PasswordChecks(check, concurrency=checks_at_once(cfg, threads), **conf["checks"]),
                    clock=clock)
    if check_password is None and store is not None:
        try:
            _BY_STORE[store] = logins
        except TypeError:
            pass
    return logins


def checks_at_once(cfg, threads: int) -> int:
    """How many password checks one process runs at once: as many as the
    store has ``threads`` for, but no more than its share of the CPUs among
    nac's processes, so that a flood of checks in every process cannot take
    the CPUs their reactors need (scrypt leaves the interpreter lock)."""
    from nac import plugins

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    processes = 1
    for name in cfg.transports:
        try:
            processes = max(processes, plugins.transport_plugin(name).processes(cfg))
        except Exception:  # a plugin without processes(): it runs in the main process
            continue
    return max(1, min(threads, cpus // processes))


def _no_password_database(name: str, password: str):
    log.warn("password of '{name}' refused: no user database is configured", name=printable(name))
    return defer.succeed(False)
