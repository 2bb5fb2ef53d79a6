"""Several nac instances on one database: each session names its instance
and process, a process closes at start what it left open when it died,
sessions that end without a decision say so, and log lines name the
instance ([nac] instance)."""

from __future__ import annotations

import io
import json
import socket

import sqlalchemy as sa
from twisted.internet import defer
from twisted.logger import LogLevel
from twisted.trial import unittest

from nac import config
from nac.db import models as m
from nac.db.engine import make_engine
from nac.db.store import PolicyDb, PolicyStore, record_session_start
from nac.log import ClassicFileObserver, JsonLineObserver
from nac.tap import instance_tagged
from tests.test_admin import AdminMixin
from tests.test_config import ConfigFileMixin
from tests.test_db import DatabaseMixin, PostgresBackend, SqliteBackend, decision, peer


class InstanceTestsMixin(DatabaseMixin):
    def store(self, instance, process=0) -> PolicyStore:
        store = PolicyStore(self.engine, instance=instance, process=process)
        store.start()
        self.addCleanup(store.stop)
        return store

    def rows(self) -> dict[int, tuple]:
        sessions = m.AssessmentSession.__table__
        with self.engine.connect() as connection:
            return {row.id: (row.instance, row.process, row.access, row.ended is not None, row.reason)
                    for row in connection.execute(sa.select(sessions))}

    @defer.inlineCallbacks
    def test_sessions_name_the_instance_and_process(self):
        store = self.store("nac-b", 2)
        sid = yield store.session_started(peer(), 7)
        info, _ = store.db.session_results(sid)
        self.assertEqual((info.instance, info.process, info.connection_id), ("nac-b", 2, 7))

    @defer.inlineCallbacks
    def test_a_process_closes_what_it_left_open_and_nothing_else(self):
        db = PolicyDb(self.engine)  # the sessions of the runs before

        def opened(instance, process):
            return db.write(record_session_start, peer(), 1, instance, process)

        a0, a1, a2, b0 = opened("nac-a", 0), opened("nac-a", 1), opened("nac-a", 2), opened("nac-b", 0)
        decided = opened("nac-a", 1)
        db.session_decided(decided, decision())
        # worker 1 of nac-a restarts: only its own are closed
        worker = self.store("nac-a", 1)
        yield worker.writes.idle()
        rows = self.rows()
        self.assertEqual(rows[a1][2:4], (m.INTERRUPTED, True))
        self.assertIn("nac instance 'nac-a' (process 1) stopped before the assessment ended", rows[a1][4])
        self.assertEqual([rows[sid][2:4] for sid in (a0, a2, b0)], [(None, False)] * 3)
        self.assertEqual(rows[decided][2], "isolate")
        # the main process of nac-a starts: the rest of nac-a's, every process
        old = yield worker.session_started(peer(), 1001)
        main = self.store("nac-a", 0)
        yield main.writes.idle()
        rows = self.rows()
        self.assertEqual([rows[sid][2] for sid in (a0, a2)], [m.INTERRUPTED] * 2)
        self.assertEqual(rows[b0][2:4], (None, False))
        self.assertEqual(rows[decided][2], "isolate")
        # (a worker's session from before is closed too: workers start again with their main process)
        self.assertEqual(rows[old][2], m.INTERRUPTED)

    def test_sessions_begun_after_the_process_started_are_not_orphans(self):
        """The closing waits in the queue while the database is away; the
        sessions of this run (its workers') that reach the database first stay open."""
        db = PolicyDb(self.engine)
        before = db.write(record_session_start, peer(), 1, "nac-a", 1)
        started = m.utcnow()
        after = db.write(record_session_start, peer(), 2, "nac-a", 1)
        self.assertEqual(db.close_orphans("nac-a", None, "restarted", started), 1)
        rows = self.rows()
        self.assertEqual((rows[before][2], rows[after][2]), (m.INTERRUPTED, None))

    @defer.inlineCallbacks
    def test_a_session_ended_without_decision_is_aborted_a_decided_one_stays(self):
        store = self.store("nac-a")
        yield store.writes.idle()
        undecided = yield store.session_started(peer(), 1)
        decided = yield store.session_started(peer(), 2)
        yield store.session_decided(decided, decision())
        self.assertTrue((yield store.session_aborted(undecided, "PT-TLS connection from 192.0.2.7 closed")))
        self.assertFalse((yield store.session_aborted(decided, "PT-TLS connection from 192.0.2.7 closed")))
        rows = self.rows()
        self.assertEqual(rows[undecided][2:], (m.ABORTED, True, "PT-TLS connection from 192.0.2.7 closed"))
        self.assertEqual(rows[decided][2], "isolate")


class SqliteInstanceTests(SqliteBackend, InstanceTestsMixin, unittest.TestCase):
    pass


class PostgresInstanceTests(PostgresBackend, InstanceTestsMixin, unittest.TestCase):
    pass


class AdminInstanceTests(SqliteBackend, AdminMixin, unittest.TestCase):
    def test_sessions_list_shows_instance_and_connection_id(self):
        self.ok("init")
        engine = make_engine(self.url)
        self.addCleanup(engine.dispose)
        sid = PolicyDb(engine).write(record_session_start, peer(identity="bob"), 4711, "nac-b", 1)
        lines = self.ok("sessions", "list").splitlines()
        self.assertEqual(lines[0].split()[-3:], ["INSTANCE", "CONNECTION", "ID"])
        self.assertEqual(lines[1].split()[0], str(sid))
        self.assertEqual(lines[1].split()[-2:], ["nac-b", "4711"])
        [listed] = json.loads(self.ok("--json", "sessions", "list"))
        self.assertEqual((listed["instance"], listed["process"], listed["connection_id"]), ("nac-b", 1, 4711))
        shown = self.ok("results", "show", str(sid))
        self.assertIn("instance: nac-b\nprocess: 1\nconnection id: 4711\n", shown)


class InstanceConfigTests(ConfigFileMixin, unittest.TestCase):
    def test_the_default_is_the_host_name(self):
        cfg = config.load(None)
        self.assertEqual(cfg.get("nac", "instance"), config.default_instance())
        self.assertFalse(cfg.instance_named)
        self.assertRegex(config.default_instance(), r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
        self.patch(socket, "gethostname", lambda: "_odd host/name")
        self.assertEqual(config.default_instance(), "odd-host-name")
        self.patch(socket, "gethostname", lambda: "")
        self.assertEqual(config.default_instance(), "nac")

    def test_a_named_instance_and_a_bad_name(self):
        cfg = config.load(self.write("[nac]\ninstance = nac-a.example\n"))
        self.assertEqual((cfg.get("nac", "instance"), cfg.instance_named), ("nac-a.example", True))
        path = self.write("[nac]\ninstance = nac a\n")
        message = self.assertProblem(path, None, f"{path}: [nac] instance: ", "is not an instance name")
        self.assertEqual(len(message.splitlines()), 1)
        self.assertProblem(self.write("[nac]\ndb_timeout = 0\n"), None, "[nac] db_timeout: ")
        self.assertProblem(self.write("[nac]\ndb_queue = 0\n"), None, "[nac] db_queue: ")


class InstanceLogTests(unittest.TestCase):
    def event(self, **kw):
        return {"log_format": "final recommendation for Connection ID {cid}", "cid": 5,
                "log_namespace": "nac.tnccs", "log_level": LogLevel.info, "log_time": 0.0, **kw}

    def test_text_lines_name_a_named_instance_json_lines_always_carry_it(self):
        out = io.StringIO()
        instance_tagged(ClassicFileObserver(out), "nac-a", True)(self.event())
        instance_tagged(ClassicFileObserver(out), "nac-a", True)(
            self.event(log_system="nac.radius#info worker 1"))
        lines = out.getvalue().splitlines()
        self.assertTrue(lines[0].endswith(" [nac-a nac.tnccs#info] final recommendation for Connection ID 5"),
                        lines[0])
        self.assertIn(" [nac-a nac.radius#info worker 1] ", lines[1])
        plain = io.StringIO()
        instance_tagged(ClassicFileObserver(plain), "host", False)(self.event())
        self.assertTrue(plain.getvalue().rstrip().endswith(" [nac.tnccs#info] final recommendation for "
                                                           "Connection ID 5"), plain.getvalue())
        out = io.StringIO()
        event = self.event()
        instance_tagged(JsonLineObserver(out), "nac-a", False)(event)
        record = json.loads(out.getvalue())
        self.assertEqual((record["instance"], record["connection_id"] if "connection_id" in record else
                          record["cid"], record["system"]), ("nac-a", 5, "nac.tnccs#info"))
        self.assertNotIn("instance", event)  # other observers see the event as it was


class BuildStoreTests(ConfigFileMixin, unittest.TestCase):
    def test_the_store_of_a_process_knows_its_instance_process_and_bounds(self):
        from nac.server import build_store

        state = self.mktemp()
        cfg = config.load(self.write(f"[nac]\nstate_dir = {state}\ninstance = nac-c\ndb_wait = 0.5\n"
                                     "db_timeout = 3\ndb_queue = 77\n"))
        store = build_store(cfg, process=3)
        self.addCleanup(store.db.engine.dispose)
        self.addCleanup(store.stop)
        self.assertEqual((store.instance, store.process, store.wait, store.timeout, store.writes.max_queued),
                         ("nac-c", 3, 0.5, 3.0, 77))
        with store.db.engine.connect() as connection:
            self.assertEqual(connection.exec_driver_sql("PRAGMA busy_timeout").scalar(), 3000)
