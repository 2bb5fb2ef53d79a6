"""The policy database away or contended (nac.db.outage, nac.db.store).

* which errors pass and which do not, and what the log says of them: one
  line per failure kind and interval, none with a traceback;
* the write queue keeps what the database cannot take now and commits it
  once it is back, in order, within a bound;
* several instances on one PostgreSQL database lock device rows in one
  order, and a deadlocked transaction runs again whole;
* a SQLite database another process keeps locked delays no decision and
  loses no write; a stopped PostgreSQL server (tests/postgres.py) neither;
* lookups that cannot be made fail closed (the login, the EAP secret).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import sqlalchemy as sa
from twisted.internet import defer, reactor, task, threads
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from nac.db import models as m
from nac.db.engine import make_engine, upgrade
from nac.db.outage import DatabaseHealth, QueueFull, StoreUnavailable, conflict, describe, transient
from nac.db.store import (
    PolicyDb,
    PolicyStore,
    StoreError,
    WriteQueue,
    record_device,
    record_measurement,
)
from nac.log import Logger
from tests.nacserver import private_postgres_schema
from tests.postgres import PostgresUnavailable, private_cluster
from tests.posture import MACHINE_ID, ImvHarness, run_assessment
from tests.test_db import DatabaseMixin, PostgresBackend, SqliteBackend, peer


def wrapped(error: BaseException, statement: str = "UPDATE devices SET last_seen=%(b_seen)s") -> sa.exc.DBAPIError:
    """``error`` as SQLAlchemy raises a driver's exception."""
    return sa.exc.DBAPIError.instance(statement, {"b_seen": "2026-12-14", "password": "hunter2"}, error,
                                      psycopg.Error if isinstance(error, psycopg.Error) else sqlite3.Error)


def refused() -> sa.exc.DBAPIError:
    return wrapped(psycopg.OperationalError(
        'connection failed: connection to server on socket "/tmp/x/.s.PGSQL.5432" failed: Connection refused\n'
        "\tIs the server running locally and accepting connections on that socket?"))


class Recorder:
    """A Logger whose events are kept, rendered: ``lines`` (text) and ``events``."""

    def __init__(self):
        self.events = []
        self.logger = Logger(namespace="nac.db", observer=self.events.append)

    @property
    def lines(self) -> list[str]:
        return [formatEvent(event) for event in self.events]


# -- which errors pass ------------------------------------------------------------------------------


class ClassificationTests(unittest.TestCase):
    def test_deadlocks_and_serialization_failures_are_conflicts(self):
        for error in (psycopg.errors.DeadlockDetected("deadlock detected"),
                      psycopg.errors.SerializationFailure("could not serialize access")):
            self.assertTrue(conflict(wrapped(error)), error)
            self.assertTrue(transient(wrapped(error)), error)
        self.assertFalse(conflict(refused()))

    def test_lost_connections_restarts_and_locks_are_transient(self):
        for error in (refused(),
                      wrapped(psycopg.errors.AdminShutdown("terminating connection due to administrator command")),
                      wrapped(psycopg.errors.CannotConnectNow("the database system is starting up")),
                      wrapped(psycopg.errors.TooManyConnections("sorry, too many clients already")),
                      wrapped(sqlite3.OperationalError("database is locked")),
                      sa.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
                      StoreUnavailable("TimeoutError: no answer within 5 s")):
            self.assertTrue(transient(error), error)

    def test_bad_writes_and_bugs_are_not(self):
        for error in (wrapped(sqlite3.IntegrityError("UNIQUE constraint failed: users.name")),
                      wrapped(psycopg.errors.UniqueViolation("duplicate key value")),
                      wrapped(sqlite3.OperationalError("no such table: sessions")),
                      wrapped(psycopg.errors.UndefinedTable('relation "sessions" does not exist')),
                      StoreError("device id must not be empty"), ValueError("a bug")):
            self.assertFalse(transient(error), error)

    def test_the_description_is_the_drivers_first_line_without_statement_or_parameters(self):
        text = describe(refused())
        self.assertTrue(text.startswith("OperationalError: connection failed: connection to server"), text)
        self.assertNotIn("\n", text)
        self.assertNotIn("UPDATE", text)
        self.assertNotIn("hunter2", text)
        self.assertEqual(describe(StoreUnavailable("TimeoutError: no answer")), "TimeoutError: no answer")


class HealthTests(unittest.TestCase):
    def test_one_line_per_kind_and_interval_and_one_when_back(self):
        """7,000 failures over 15 s: a handful of lines, then one saying it is over."""
        now, queued = [0.0], [0]
        log = Recorder()
        health = DatabaseHealth(lambda: now[0], interval=10.0, queued=lambda: queued[0], logger=log.logger)
        starting = wrapped(psycopg.errors.CannotConnectNow("the database system is starting up"))
        for n in range(7000):
            now[0] = 100.0 + n * 15.2 / 7000
            queued[0] = n // 17
            health.failed(refused() if n < 6500 else starting)
        self.assertTrue(health.down)
        lines = log.lines
        self.assertEqual(len(lines), 3, lines)
        self.assertRegex(lines[0], r"^database unavailable: OperationalError: connection failed: .* "
                                   r"\(0 writes queued\)$")
        self.assertRegex(lines[1], r"^database still unavailable after 10\.0 s: OperationalError: connection "
                                   r"failed: .* \(\d+ writes queued\)$")
        self.assertRegex(lines[2], r"^database still unavailable after 14\.\d s: CannotConnectNow: the "
                                   r"database system is starting up \(\d+ writes queued\)$")
        self.assertFalse(any(event.get("log_failure") for event in log.events))
        # work succeeds again: nothing is said until what waited is committed
        queued[0] = 300
        health.succeeded(112)
        self.assertEqual(len(log.lines), 3)
        queued[0] = 0
        now[0] = 116.0
        health.succeeded(300)
        self.assertEqual(log.lines[3], "database back after 15.2 s, 412 queued writes done")
        self.assertFalse(health.down)
        health.succeeded(5)
        health.failed(refused())  # a new outage is told again at once
        self.assertEqual(len(log.lines), 5)
        self.assertEqual(health.outages, 2)

    def test_messages_that_differ_in_a_detail_are_one_kind(self):
        log = Recorder()
        health = DatabaseHealth(lambda: 0.0, logger=log.logger)
        for port in range(40000, 41000):
            health.failed(wrapped(psycopg.OperationalError(f"connection to 192.0.2.1 port {port} reset")))
            health.failed(StoreUnavailable(f"TimeoutError: no answer within {port} s"))
        self.assertEqual(len(log.lines), 2, log.lines[:5])
        self.assertIn("port 40000", log.lines[0])


# -- the write queue --------------------------------------------------------------------------------


class FlakyDb:
    """PolicyDb.write_batch on nothing: each write is ``fn(None, *args)``;
    while :attr:`down`, the database is unreachable."""

    def __init__(self):
        self.down = False
        self.batches = []

    def write_batch(self, writes):
        if self.down:
            raise refused()
        self.batches.append(len(writes))
        return [(True, fn(None, *args)) for fn, args in writes]


class WriteQueueTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.db = FlakyDb()
        self.log = Recorder()
        self.committed = []

    def queue(self, **kw) -> WriteQueue:
        holder = []
        health = DatabaseHealth(self.clock.seconds, queued=lambda: holder[0].queued, logger=self.log.logger)
        queue = WriteQueue(self.db, defer.maybeDeferred, call_later=self.clock.callLater, health=health, **kw)
        holder.append(queue)
        return queue

    def note(self, _connection, value):
        self.committed.append(value)
        return value

    def test_writes_wait_for_the_database_and_are_committed_in_order_once_it_is_back(self):
        queue = self.queue()
        self.db.down = True
        results = [queue.submit(self.note, n) for n in range(5)]
        got = []
        for d in results:
            d.addCallback(got.append)
        self.assertEqual((got, queue.queued), ([], 5))
        for _ in range(10):  # 0.1, 0.2, … 2 s apart, as long as it takes
            self.clock.advance(2.0)
        self.assertEqual((got, queue.queued), ([], 5))
        idle = queue.idle()
        self.db.down = False
        self.clock.advance(2.0)
        self.assertEqual(got, [0, 1, 2, 3, 4])
        self.assertEqual(self.committed, [0, 1, 2, 3, 4])
        self.assertTrue(idle.called)
        self.assertGreaterEqual(queue.postponed, 10)
        lines = self.log.lines
        self.assertTrue(lines[0].startswith("database unavailable: OperationalError: connection failed"), lines)
        self.assertRegex(lines[-1], r"^database back after 2\d\.\d s, 5 queued writes done$")
        self.assertLessEqual(len(lines), 4)

    def test_the_writes_a_batch_did_not_get_to_go_first_next_time(self):
        transient_error = refused()

        def write_batch(writes):
            # the database went away after the first write of the batch
            if not self.db.batches:
                self.db.batches.append(len(writes))
                fn, args = writes[0]
                return [(True, fn(None, *args))] + [(None, transient_error)] * (len(writes) - 1)
            return FlakyDb.write_batch(self.db, writes)

        self.db.write_batch = write_batch
        queue = self.queue(call_soon=lambda fn: self.clock.callLater(0, fn), max_batch=3)
        results = [queue.submit(self.note, n) for n in range(5)]
        self.clock.advance(0)
        self.assertEqual(self.committed, [0])
        self.clock.advance(0.1)
        self.clock.advance(0)
        self.assertEqual(self.committed, [0, 1, 2, 3, 4])
        self.assertEqual([d.result for d in results], [0, 1, 2, 3, 4])

    def test_what_waits_is_bounded(self):
        queue = self.queue(max_queued=3)
        self.db.down = True
        kept = [queue.submit(self.note, n) for n in range(3)]
        dropped = [queue.submit(self.note, n) for n in range(3, 6)]
        for d in dropped:
            self.failureResultOf(d, QueueFull)
        self.assertEqual(queue.queued, 3)
        full = [line for line in self.log.lines if "QueueFull" in line]
        self.assertEqual(len(full), 1, self.log.lines)
        self.assertIn("[nac] db_queue", full[0])
        self.db.down = False
        self.clock.advance(2.0)
        self.assertEqual([self.successResultOf(d) for d in kept], [0, 1, 2])
        self.assertRegex(self.log.lines[-1], r"^database back after \d\.\d s, 3 queued writes done, 3 dropped$")

    def test_stopping_while_the_database_is_away_says_what_is_lost(self):
        from nac.db import store as store_module

        lost_log = Recorder()
        self.patch(store_module, "log", lost_log.logger)
        queue = self.queue()
        self.db.down = True
        results = [queue.submit(self.note, n) for n in range(5)]
        queue.flush()  # the store stops: one last try
        for d in results:
            self.failureResultOf(d, StoreUnavailable)
        [line] = lost_log.lines
        self.assertRegex(line, r"^5 writes to the policy database are lost: it is unavailable "
                               r"\(OperationalError: connection failed: .*\) and nac is stopping$")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_write_that_is_wrong_fails_at_once(self):
        queue = self.queue()

        def bad(_connection):
            raise StoreError("device id must not be empty")

        self.db.write_batch = lambda writes: PolicyDb.write_batch(BatchRunner(), writes)
        self.failureResultOf(queue.submit(bad), StoreError)
        self.assertEqual(queue.queued, 0)


class BatchRunner(PolicyDb):
    """PolicyDb.write_batch's logic on no database: each write is ``fn(None, *args)``."""

    def __init__(self):
        super().__init__(engine=None)

    def write_batch_once(self, writes):
        return [(True, fn(None, *args)) for fn, args in writes]

    def _write_once(self, fn, *args):
        return fn(None, *args)


class WriteBatchTests(unittest.TestCase):
    def test_writes_after_the_database_went_away_are_handed_back_not_failed(self):
        """A bad write splits the batch; the database goes away during the
        writes that run one by one: those left are handed back, not failed."""
        db = BatchRunner()
        calls = []

        def bad(_connection):
            raise StoreError("product must not be empty")

        def fine(_connection, n):
            calls.append(n)
            return n

        def gone(_connection):
            calls.append("gone")
            raise refused()

        results = db.write_batch([(bad, ()), (fine, (1,)), (gone, ()), (fine, (2,))])
        self.assertEqual([ok for ok, _ in results], [False, True, None, None])
        results[0][1].trap(StoreError)
        self.assertEqual(results[1], (True, 1))
        self.assertTrue(transient(results[2][1]))
        self.assertEqual(calls, [1, "gone"])
        self.assertEqual(db.split_batches, 1)

    def test_a_deadlocked_batch_runs_again_as_a_whole(self):
        db = BatchRunner()
        db.CONFLICT_PAUSE = 0.001
        tries = []

        def deadlocked_twice(_connection):
            tries.append(1)
            if len(tries) <= 2:
                raise wrapped(psycopg.errors.DeadlockDetected("deadlock detected"))
            return "done"

        results = db.write_batch([(lambda _c: "first", ()), (deadlocked_twice, ()), (lambda _c: "last", ())])
        self.assertEqual(results, [(True, "first"), (True, "done"), (True, "last")])
        self.assertEqual((db.conflicts, db.split_batches), (2, 0))

    def test_a_database_unavailable_for_the_whole_batch_raises(self):
        db = BatchRunner()

        def gone(_connection):
            raise refused()

        with self.assertRaises(sa.exc.DBAPIError):
            db.write_batch([(gone, ()), (gone, ())])
        self.assertEqual(db.split_batches, 0)


# -- several instances on one PostgreSQL database ------------------------------------------------


class Rendezvous:
    """Two transactions meet: each waits until the other arrived too, or is
    waiting for a row lock (then it cannot arrive before this one goes on)."""

    def __init__(self, engine, testcase):
        self.engine = engine
        self.arrived = 0
        self.lock = threading.Lock()
        self.tc = testcase

    def meet(self, _connection) -> None:
        with self.lock:
            self.arrived += 1
        with self.engine.connect() as monitor:
            for _ in range(3000):
                with self.lock:
                    if self.arrived >= 2:
                        return
                waiting = monitor.scalar(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"))
                monitor.rollback()
                if waiting:
                    return
                time.sleep(0.01)


class PostgresContentionTests(PostgresBackend, DatabaseMixin, unittest.TestCase):
    """Two nac instances (PolicyDb on engines of their own) writing one database."""

    def setUp(self):
        super().setUp()
        self.other_engine = make_engine(self.url)
        self.addCleanup(self.other_engine.dispose)
        self.one, self.two = PolicyDb(self.engine), PolicyDb(self.other_engine)
        for db in (self.one, self.two):
            db.CONFLICT_PAUSE = 0.01

    def in_threads(self, *calls):
        return defer.gatherResults([threads.deferToThread(fn, *args) for fn, *args in calls])

    @defer.inlineCallbacks
    def test_batches_touching_devices_in_opposite_orders_do_not_deadlock(self):
        for devices in (("device-a", "device-b"), ("device-c", "device-d")):
            new = devices[0] == "device-c"  # the second round: devices neither instance has seen
            first = self.one.session_started(peer(), 1)
            second = self.two.session_started(peer(), 2)
            if not new:
                for device in devices:
                    self.one.device_seen(first, device, "Debian 12")
            meeting = Rendezvous(self.engine, self)
            a, b = devices
            one = [(record_device, (first, a, "Debian 12")), (meeting.meet, ()),
                   (record_device, (first, b, "Debian 12")), (record_measurement, (first, "os", "os", {}))]
            two = [(record_device, (second, b, "Debian 13")), (meeting.meet, ()),
                   (record_device, (second, a, "Debian 13")), (record_measurement, (second, "os", "os", {}))]
            results = yield self.in_threads((self.one.write_batch, one), (self.two.write_batch, two))
            for batch in results:
                self.assertEqual([ok for ok, _ in batch], [True] * 4)
            self.assertEqual((self.one.conflicts, self.two.conflicts), (0, 0), f"new devices: {new}")
            self.assertEqual((self.one.split_batches, self.two.split_batches), (0, 0))
        devices = {d.device_id: d.product for d in self.one.list_devices()}
        self.assertEqual(set(devices), {"device-a", "device-b", "device-c", "device-d"})

    @defer.inlineCallbacks
    def test_a_deadlocked_batch_runs_again_whole(self):
        # the batch looks for deadlocks 3 s into a lock wait: by then the
        # other client has closed the cycle, so the batch finds it and is
        # the one rolled back
        url = sa.make_url(self.url)
        options = " ".join(filter(None, [url.query.get("options"), "-cdeadlock_timeout=3s"]))
        engine = make_engine(url.update_query_dict({"options": options}))
        self.addCleanup(engine.dispose)
        try:
            engine.connect().close()
        except sa.exc.DBAPIError as exc:
            raise unittest.SkipTest(f"cannot set deadlock_timeout on this server: {describe(exc)}")
        self.one = PolicyDb(engine)
        self.one.CONFLICT_PAUSE = 0.01
        sid = self.one.session_started(peer(), 1)
        for device in ("device-a", "device-b"):
            self.one.device_seen(sid, device)
        # another client of the database locks device-b, then device-a: a deadlock
        # with the batch, which locks device-a and waits for device-b; the
        # other waits long before looking for deadlocks
        other = self.other_engine.connect()
        self.addCleanup(other.close)
        other.begin()
        try:
            other.exec_driver_sql("SET LOCAL deadlock_timeout = '60s'")
        except sa.exc.DBAPIError as exc:
            raise unittest.SkipTest(f"cannot set deadlock_timeout on this server: {describe(exc)}")
        lock = "SELECT id FROM devices WHERE device_id = '{}' FOR UPDATE"
        other.exec_driver_sql(lock.format("device-b"))
        batch = threads.deferToThread(self.one.write_batch, [
            (record_device, (sid, "device-a", "Debian 12")), (record_device, (sid, "device-b", "Debian 12")),
            (record_measurement, (sid, "os", "os", {"n": 1}))])
        yield threads.deferToThread(Rendezvous(self.engine, self).meet, None)  # the batch waits for device-b

        def second_lock():
            other.exec_driver_sql(lock.format("device-a"))  # waits until the batch is rolled back
            other.commit()

        yield threads.deferToThread(second_lock)
        results = yield batch
        self.assertEqual([ok for ok, _ in results], [True, True, True])
        self.assertEqual((self.one.conflicts, self.one.split_batches), (1, 0))
        [measurement] = self.one.run(lambda s: s.scalars(sa.select(m.Measurement)).all())
        self.assertEqual(measurement.payload, {"n": 1})


# -- a SQLite database another process keeps locked -------------------------------------------------


LOCK_HOLDER = textwrap.dedent("""
    import select, sqlite3, sys
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    select.select([sys.stdin], [], [], 60)  # until told, or for a minute
    db.execute("COMMIT")
    print("released", flush=True)
""")


class SqliteLockTests(SqliteBackend, DatabaseMixin, ImvHarness, unittest.TestCase):
    """Another process holds the write lock of the SQLite file (nac-admin, a
    backup): the assessment's decision comes without waiting for it and its
    writes are committed once it is released."""

    def setUp(self):
        super().setUp()
        # writers wait long for the lock; lookups are bounded shorter
        self.store = PolicyStore(make_engine(self.url, timeout=30.0), wait=0.2, timeout=5.0)
        self.store.start()
        self.addCleanup(self.store.stop)

    def hold_lock(self) -> subprocess.Popen:
        path = sa.make_url(self.url).database
        holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, path], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.addCleanup(holder.wait, 30)
        self.addCleanup(holder.stdin.close)
        self.assertEqual(holder.stdout.readline().strip(), "locked")
        return holder

    @defer.inlineCallbacks
    def test_the_decision_does_not_wait_for_the_lock_and_nothing_is_lost(self):
        from imvs.os import OsImv

        self.store.db.import_packages("Debian 12 x86_64", [("git", "1:2.39.5-0+deb12u2")])
        holder = self.hold_lock()
        before = self.store.inline_fallbacks
        result = yield run_assessment(self, [self.host().os_imc()], [OsImv()], store=self.store)
        # decided while the other process still holds the lock
        self.assertIsNone(holder.poll())
        self.assertTrue(result.outcome.completed)
        verdict = result.verdict("os")
        self.assertNotIn("could not be checked", verdict.reason)  # the package check read the database
        count = sa.select(sa.func.count()).select_from(m.AssessmentSession.__table__)
        self.assertEqual(self.store.db.read(lambda c: c.scalar(count)), 0)  # nothing committed yet
        self.assertGreater(self.store.inline_fallbacks, before)
        # a login reads the user's row meanwhile too
        self.assertFalse((yield self.store.check_password("nobody", "pw")))
        holder.stdin.write("release\n")
        holder.stdin.flush()
        self.assertEqual(holder.stdout.readline().strip(), "released")
        yield self.store.writes.idle()
        [session] = self.store.db.list_sessions()
        self.assertEqual((session.access, session.device), (result.decision.access, MACHINE_ID))

    @defer.inlineCallbacks
    def test_writes_the_lock_refused_are_committed_once_it_is_released(self):
        """nac's own wait for the lock ([nac] db_timeout) is shorter than the
        other process holds it: the writes are refused, kept and tried again."""
        store = PolicyStore(make_engine(self.url, timeout=0.05), inline=False, wait=0.2, timeout=5.0)
        store.start()
        self.addCleanup(store.stop)
        holder = self.hold_lock()
        started = [store.session_started(peer(identity=f"u{n}"), n) for n in range(3)]
        while store.writes.postponed < 6:  # refused twice
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertFalse(any(d.called for d in started))
        holder.stdin.write("release\n")
        holder.stdin.flush()
        self.assertEqual(holder.stdout.readline().strip(), "released")
        ids = yield defer.gatherResults(started)
        self.assertEqual(sorted(s.id for s in store.db.list_sessions()), sorted(ids))


# -- a PostgreSQL server that stops and starts again ------------------------------------------------


class PostgresRestartTests(ImvHarness, unittest.TestCase):
    """The tests' private PostgreSQL server, stopped while assessments go on."""

    def setUp(self):
        try:
            self.cluster = private_cluster()
        except PostgresUnavailable as why:
            raise unittest.SkipTest(str(why))
        url, drop = private_postgres_schema(self.cluster.url, "nac_outage")
        self.addCleanup(drop)
        self.addCleanup(self.cluster.ensure_running)
        upgrade(url)
        self.store = PolicyStore(make_engine(url, timeout=2.0), wait=0.1, timeout=2.0)
        self.store.start()
        self.addCleanup(self.store.stop)
        self.db = self.store.db
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def logged(self, namespace_prefix: str = "nac") -> list[dict]:
        return [e for e in self.events if str(e.get("log_namespace", "")).startswith(namespace_prefix)]

    @defer.inlineCallbacks
    def test_assessments_during_an_outage_are_decided_closed_and_recorded_once_it_is_over(self):
        from imvs.os import OsImv

        self.db.import_packages("Debian 12 x86_64", [("git", "1:2.39.5-0+deb12u2")])
        self.db.add_user("carol", "a password")
        first = yield run_assessment(self, [self.host().os_imc()], [OsImv()], store=self.store)
        yield self.store.writes.idle()
        self.cluster.stop()
        imv = OsImv()
        decided = []
        for _ in range(12):
            result = yield run_assessment(self, [self.host().os_imc()], [imv], store=self.store)
            decided.append(result.decision)
        # no package check could be made: never allowed
        self.assertEqual({d.access for d in decided}, {"denied"})
        self.assertEqual({v.reason for d in decided for v in d.imv_results},
                         {"The security policy could not be checked"})
        # nor can a login
        self.assertFalse((yield self.store.check_password("carol", "a password")))
        self.assertGreaterEqual(self.store.writes.queued, 12)
        errors = [e for e in self.logged() if e.get("log_level") is not None
                  and e["log_level"].name in ("error", "critical")]
        self.assertTrue(1 <= len(errors) <= 5, [formatEvent(e) for e in errors])
        self.assertTrue(formatEvent(errors[0]).startswith("database unavailable: "), formatEvent(errors[0]))
        self.assertEqual([e for e in self.events if e.get("log_failure") is not None], [])
        self.cluster.start()
        yield self.store.writes.idle()
        sessions = self.db.list_sessions(limit=100)
        self.assertEqual(len(sessions), 13)
        self.assertEqual([s.access for s in sessions], ["denied"] * 12 + [first.decision.access])
        self.assertTrue(all(s.device == MACHINE_ID for s in sessions))
        back = [formatEvent(e) for e in self.logged() if "database back after" in formatEvent(e)]
        self.assertEqual(len(back), 1, back)
        self.assertRegex(back[0], r"^database back after \d+\.\d s, \d+ queued writes done$")
        # and logins work again
        self.assertTrue((yield self.store.check_password("carol", "a password")))


class FailClosedLookupTests(SqliteBackend, DatabaseMixin, unittest.TestCase):
    """A user's row that cannot be read fails the login, quietly."""

    def setUp(self):
        super().setUp()
        self.store = PolicyStore(self.engine, inline=False, timeout=5.0)
        self.store.start()
        self.addCleanup(self.store.stop)
        self.store.db.add_user("carol", "a password", eap=False)

    def unreadable(self, *args):
        raise wrapped(sqlite3.OperationalError("unable to open database file"))

    @defer.inlineCallbacks
    def test_a_login_whose_user_cannot_be_read_fails(self):
        self.assertTrue((yield self.store.check_password("carol", "a password")))  # remembered now
        self.patch(self.store.db, "password_row", self.unreadable)
        self.patch(self.store.db, "eap_secret", self.unreadable)
        self.assertIs((yield self.store.check_password("carol", "a password")), False)
        self.assertIsNone((yield self.store.eap_secret("carol")))
        self.assertTrue(self.store.health.down)

    @defer.inlineCallbacks
    def test_a_lookup_that_takes_too_long_fails(self):
        self.store.timeout = 0.05
        release = threading.Event()
        self.addCleanup(release.set)

        def stuck(name):
            release.wait(30)
            return None

        self.patch(self.store.db, "password_row", stuck)
        yield self.assertFailure(self.store.read(lambda c: release.wait(30)), StoreUnavailable)
        self.assertIs((yield self.store.check_password("carol", "a password")), False)
