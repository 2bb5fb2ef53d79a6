"""``twistd -n nac`` with ``[radius] workers = 2``: the main process reads the
RADIUS socket and hands a worker process the requests of its conversations
(transports.radius.relay); real clients see one server."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

from twisted.trial import unittest

from tests.nacserver import REPO, NacServer, free_port, repo_env
from tests.test_pt_tls_workers import children, wait_for

SECRET = "two-process-s3cret"
PASSWORD = "carol's password"
READY = "all 1 RADIUS worker processes are accepting"


def start_server(eap: dict) -> NacServer:
    port = free_port(socket.SOCK_DGRAM)
    server = NacServer({"nac": {"transports": "pt-tls,radius", "imvs": "imvs.os:OsImv"},
                        "radius": {"listen": "127.0.0.1", "port": port, "secret": SECRET,
                                   "clients": "127.0.0.1/32", "workers": "2"},
                        "eap": eap}, ready=READY)
    server.radius_port = port
    server.admin("init")
    server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
    server.start(timeout=60)
    return server


class TwoRadiusProcessesTests(unittest.TestCase):
    """One server with PT-EAP posture for the class."""

    server: NacServer | None = None

    def setUp(self):
        cls = type(self)
        if cls.server is None:
            cls.server = start_server({"tnc": "pt-eap"})
            atexit.register(cls.server.stop)

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def load(self, count: int, concurrency: int = 8) -> dict:
        done = subprocess.run(
            [sys.executable, str(REPO / "bench" / "radius_load.py"),
             "--server", f"127.0.0.1:{self.server.radius_port}", "--server-pid", str(self.server.proc.pid),
             "--secret", SECRET, "--cacert", str(self.server.ca), "--identity", "carol", "--password", PASSWORD,
             "--tnc", "pt-eap", "--concurrency", str(concurrency), "--count", str(count), "--timeout", "60",
             "--json"],
            env=repo_env(), capture_output=True, text=True, timeout=300)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr + self.server.log_text()[-3000:])
        level = json.loads(done.stdout)["levels"][0]
        self.assertEqual((level["completed"], level["failed"]), (count, 0), level)
        return level

    def accepts(self) -> tuple[int, int]:
        """Access-Accepts logged by (the main process, worker 1)."""
        log = self.server.log_text()
        return (len(re.findall(r"\[nac\.radius#info\] sending RADIUS Access-Accept", log)),
                len(re.findall(r"\[nac\.radius#info worker 1\] sending RADIUS Access-Accept", log)))

    def test_posture_conversations_are_shared_out_and_each_ends_once(self):
        before = self.accepts()
        level = self.load(60)
        main, worker = (after - first for after, first in zip(self.accepts(), before))
        self.assertEqual(main + worker, 60)
        # the Request Authenticator picks the process: about half each
        self.assertGreater(min(main, worker), 10, (main, worker))
        # every request reached its conversation's process: nothing lost, nothing repeated
        self.assertEqual(level["retransmissions"], 0)
        log = self.server.log_text()
        self.assertNotIn("unknown State", log)
        self.assertNotIn("cannot hand RADIUS requests", log)
        self.assertIn("worker 1] final recommendation is 'allow'", log)
        sessions = json.loads(self.server.admin("sessions", "list", "--limit", "100000", "--json"))
        ids = [s["id"] for s in sessions if s.get("transport") == "radius"]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertTrue({i % 2 for i in ids} == {0, 1}, ids)

    def test_a_killed_worker_is_started_again_and_serves(self):
        (old,) = children(self.server.proc.pid)
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: f"RADIUS worker 1 (pid {old}) died" in self.server.log_text(), 30, "the death")
        wait_for(lambda: len(re.findall(r"RADIUS worker 1 \(pid \d+\) accepting", self.server.log_text())) >= 2,
                 60, "the new worker")
        (new,) = children(self.server.proc.pid)
        self.assertNotEqual(new, old)
        before = self.accepts()
        self.load(20, concurrency=4)
        self.assertGreater(self.accepts()[1] - before[1], 0)


class EapolTestTwoProcessesTests(unittest.TestCase):
    def test_eapol_test_succeeds_whichever_process_serves_it(self):
        if shutil.which("eapol_test") is None:
            raise unittest.SkipTest("eapol_test is not installed (Debian package eapoltest)")
        server = start_server({"tnc": "none"})
        self.addCleanup(server.stop)
        work = self.mktemp()
        os.makedirs(work)
        conf = os.path.join(work, "eapol_test.conf")
        with open(conf, "w") as f:
            f.write("network={\n  key_mgmt=WPA-EAP\n  eap=TTLS\n  identity=\"carol\"\n"
                    f"  password=\"{PASSWORD}\"\n  ca_cert=\"{server.ca}\"\n  phase2=\"autheap=MD5\"\n}}\n")
        def both_served() -> bool:
            log = server.log_text()
            return ("[nac.radius#info worker 1] sending RADIUS Access-Accept" in log
                    and "[nac.radius#info] sending RADIUS Access-Accept" in log)

        # each run is a new conversation, and its Request Authenticator picks the process
        for _ in range(24):
            if both_served():
                break
            done = subprocess.run(["eapol_test", "-c", conf, "-a", "127.0.0.1", "-p", str(server.radius_port),
                                   "-s", SECRET, "-r", "0", "-t", "20"], capture_output=True, text=True, timeout=60)
            out = done.stdout + done.stderr
            self.assertEqual(done.returncode, 0, out[-2000:] + server.log_text()[-3000:])
            self.assertIn("MPPE keys OK: 1  mismatch: 0", out)
        self.assertTrue(both_served(), server.log_text()[-3000:])
        self.assertNotIn(SECRET, server.log_text())
