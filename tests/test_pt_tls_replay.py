"""The PT-TLS load generator's replaying client (bench/pt_tls_replay.py).

Sessions are recorded live from the real server (``twistd -n nac`` with the
OS and Scanner IMVs) by nac's client, then replayed over new TLS sessions;
the server must record every replayed session as a complete assessment, and
a server that answers differently from the recording must be noticed.
"""

from __future__ import annotations

import atexit
import json
import subprocess
import sys

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from bench.pt_tls_replay import Replayer, Script, pa_message_ids
from nac.client.pt_tls import run_assessment
from nac.pa.message import PaMessage
from nac.pb.batch import PbBatch
from nac.pb.messages import PbPa
from tests.nacserver import REPO, NacServer, repo_env

PASSWORD = "dave's password"
IMVS = "imvs.os:OsImv,imvs.scanner:ScannerImv"


class ScriptTests(unittest.TestCase):
    """Which server bytes may differ from the recording."""

    FIRST = [("sending", b"hello"), ("received", b"\x00\x01\x02\x03"), ("sending", b"bye")]

    def test_bytes_that_differed_between_the_recordings_are_free(self):
        script = Script.from_sessions(self.FIRST, [("sending", b"hellO"), ("received", b"\x00\x09\x02\x03"),
                                                   ("sending", b"bye")])
        self.assertEqual(script.steps[0], (True, b"hello"))  # the client's bytes: the first recording's
        self.assertEqual(script.free, {1: frozenset({1})})
        self.assertIsNone(script.difference(1, b"\x00\x07\x02\x03"))
        self.assertEqual(script.difference(1, b"\x00\x07\x02\x04"), "byte 3 is 0x04, not 0x03")
        self.assertEqual(script.difference(1, b"\x00\x07\x02"), "3 bytes instead of 4")
        # a client step is never what the server sends
        self.assertIsNotNone(script.difference(0, b"hello"))

    def test_recordings_of_different_shape_cannot_be_replayed(self):
        with self.assertRaises(ValueError):
            Script.from_sessions(self.FIRST, self.FIRST[:2] + [("sending", b"byebye")])
        with self.assertRaises(ValueError):
            Script.from_sessions(self.FIRST, self.FIRST[:2])


class MachineLoadTests(unittest.TestCase):
    def test_busy_is_all_but_idle_and_iowait(self):
        from bench._measure import busy_percent, machine_cpu_ticks

        busy, total = machine_cpu_ticks()
        self.assertLessEqual(busy, total)
        self.assertEqual(busy_percent((100, 1000), (175, 1100)), 75.0)
        self.assertIsNone(busy_percent((100, 1000), (100, 1000)))  # no time passed
        self.assertIsNone(busy_percent(None, (100, 1000)))


class ReplayAgainstNacTests(unittest.TestCase):
    server: NacServer | None = None

    def setUp(self):
        cls = type(self)
        if cls.server is None:
            server = NacServer({"nac": {"imvs": IMVS}})
            server.admin("init")
            server.admin("user", "add", "dave", "--password", PASSWORD)
            cls.server = server.start()
            atexit.register(server.stop)

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def args(self) -> dict:
        return {"host": "127.0.0.1", "port": self.server.port, "server_name": "127.0.0.1",
                "cacert": str(self.server.ca), "client": "dave", "secret": PASSWORD, "cert": None,
                "key": None, "collectors": ["os", "scanner"], "timeout": 30.0}

    def session_count(self) -> int:
        return len(json.loads(self.server.admin("sessions", "list", "--limit", "10000", "--json")))

    @defer.inlineCallbacks
    def sessions(self):
        """Two live sessions' PT-TLS messages, as ``record`` keeps them."""
        sessions = []
        for _ in range(2):
            messages = []
            outcome = yield run_assessment(
                reactor, "127.0.0.1", self.server.port, cacert=self.server.ca, identity="dave",
                password=PASSWORD, collectors=["os", "scanner"],
                trace=lambda direction, message: messages.append((direction, message.build())))
            self.assertTrue(outcome.completed)
            sessions.append(messages)
        return sessions

    @defer.inlineCallbacks
    def recorded(self) -> Script:
        return Script.from_sessions(*(yield self.sessions()))

    @defer.inlineCallbacks
    def test_pa_message_identifiers_are_free_however_the_random_bytes_fell(self):
        first, second = yield self.sessions()
        # recordings whose identifiers happen to share bytes: here, all of them
        script = Script.from_sessions(first, first)
        found = 0
        for i, (direction, message) in enumerate(first):
            ids = pa_message_ids(message)
            if direction == "sending" or not ids:
                continue
            self.assertEqual(script.free[i], ids)
            # the offsets are those of the identifiers nac's codecs read
            batch = PbBatch.parse(message[16:])
            expected = {PaMessage.parse(pb.body).message_id for pb in batch.messages if isinstance(pb, PbPa)}
            starts = sorted(ids)[::4]
            self.assertEqual({int.from_bytes(message[k:k + 4], "big") for k in starts}, expected)
            found += len(expected)
        self.assertGreaterEqual(found, 2)  # the OS and Scanner IMVs' requests, at least
        self.assertEqual(pa_message_ids(first[0][1]), set())  # not a PB-TNC batch

    def replay(self, script: Script, count: int):
        def run():
            replayer = Replayer(self.args(), script, 2, float("inf"), count)
            replayer.run()
            return replayer
        return threads.deferToThread(run)

    @defer.inlineCallbacks
    def test_replayed_sessions_are_complete_assessments(self):
        script = yield self.recorded()
        # the IMVs' PA-TNC message identifiers are the server's own choice each time
        self.assertTrue(script.free)
        before = self.session_count()
        replayer = yield self.replay(script, 3)
        self.assertEqual((len(replayer.latencies), replayer.failures), (3, {}))
        sessions = json.loads(self.server.admin("sessions", "list", "--limit", "3", "--json"))
        self.assertEqual(self.session_count(), before + 3)
        for s in sessions:
            self.assertEqual((s["identity"], s["transport"]), ("dave", "pt-tls"))
            self.assertIsNotNone(s["ended"])
            self.assertIsNotNone(s["recommendation"])

    @defer.inlineCallbacks
    def test_a_server_answering_otherwise_is_noticed(self):
        script = yield self.recorded()
        # expect another assessment result than the server gives: one byte
        # the server did not choose freely, in its last message
        last = max(i for i, (sending, _) in enumerate(script.steps) if not sending)
        expected = bytearray(script.steps[last][1])
        fixed = max(k for k in range(len(expected)) if k not in script.free.get(last, ()))
        expected[fixed] ^= 0xFF
        steps = list(script.steps)
        steps[last] = (False, bytes(expected))
        replayer = yield self.replay(Script(tuple(steps), script.free), 2)
        self.assertEqual(replayer.latencies, [])
        reason = f"server message {last} differs from the recorded session"
        self.assertEqual(replayer.failures, {reason: 2})
        where, message = replayer.differences[reason]
        self.assertEqual(where, f"byte {fixed} is 0x{message[fixed]:02x}, not 0x{expected[fixed]:02x}")
        self.assertEqual(len(message), len(expected))

    def test_load_generator_replays_against_a_given_server(self):
        before = self.session_count()
        done = subprocess.run(
            [sys.executable, str(REPO / "bench" / "pt_tls_load.py"),
             "--server", f"127.0.0.1:{self.server.port}", "--server-pid", str(self.server.proc.pid),
             "--cacert", str(self.server.ca), "--client", "dave", "--secret", PASSWORD,
             "--concurrency", "1,8", "--count", "16", "--processes", "1", "--json"],
            env=repo_env(), capture_output=True, text=True, timeout=300)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        figures = json.loads(done.stdout)
        self.assertEqual(figures["client"], "replay")
        self.assertEqual([(lv["completed"], lv["failed"]) for lv in figures["levels"]], [(16, 0), (16, 0)])
        self.assertGreater(figures["levels"][1]["server_cpu_ms_per_assessment"], 0)
        for level in figures["levels"]:
            self.assertTrue(0 < level["machine_busy_pct"] <= 100, level)
        # two live sessions were recorded, then 32 replayed
        self.assertEqual(self.session_count(), before + 2 + 32)

    def test_load_generator_says_why_it_cannot_record(self):
        done = subprocess.run(
            [sys.executable, str(REPO / "bench" / "pt_tls_load.py"),
             "--server", f"127.0.0.1:{self.server.port}", "--cacert", str(self.server.ca),
             "--client", "dave", "--secret", "not the password", "--count", "1", "--concurrency", "1"],
            env=repo_env(), capture_output=True, text=True, timeout=300)
        self.assertEqual(done.returncode, 1)
        self.assertIn("cannot record a session to replay", done.stderr)
        self.assertIn("SASL authentication as 'dave' failed", done.stderr)

    def test_idle_connections_are_measured_up_to_the_servers_limit(self):
        def idle(server, n):
            return subprocess.run(
                [sys.executable, str(REPO / "bench" / "pt_tls_load.py"),
                 "--server", f"127.0.0.1:{server.port}", "--server-pid", str(server.proc.pid),
                 "--cacert", str(server.ca), "--client", "dave", "--secret", PASSWORD,
                 "--concurrency", "1", "--count", "1", "--idle", str(n), "--json"],
                env=repo_env(), capture_output=True, text=True, timeout=300)

        done = idle(self.server, 20)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        figures = json.loads(done.stdout)["idle"]
        self.assertEqual(figures["idle_connections"], 20)
        self.assertIn("kib_per_idle_connection", figures)
        small = NacServer({"pt-tls": {"max_connections": "5"}})
        small.admin("init")
        small.admin("user", "add", "dave", "--password", PASSWORD)
        small.start()
        self.addCleanup(small.stop)
        done = idle(small, 10)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("idle: the server refused connection 6 of 10", done.stderr)
        self.assertNotIn("Traceback", done.stderr)
        self.assertIn("refused a PT-TLS connection from 127.0.0.1: 5 connections is the limit "
                      "([pt-tls] max_connections)", small.log_text())

