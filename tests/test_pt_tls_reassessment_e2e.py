"""Re-assessment over PT-TLS with the real server (``twistd -n nac``, the OS
IMV, ``[pt-tls] reassess_interval``) and the real ``nac-pt-tls-client
--reassessments 1``: two decisions on one connection, two sessions in the
database, and a package blacklisted between them (``nac-admin``) changes the
second.  A client without ``--stay`` closes after its decision as before."""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import sys
import time

from twisted.trial import unittest

from tests.nacserver import NacServer, repo_env
from tests.radius_nas import host_product, import_host_packages

PASSWORD = "carol's password"
INTERVAL = 5.0
"""Seconds between a decision and the next assessment: room for nac-admin
to blacklist a package in between."""


class ReassessmentEndToEndTests(unittest.TestCase):
    server: NacServer | None = None

    def setUp(self):
        cls = type(self)
        product = host_product()
        if product is None:
            raise unittest.SkipTest("not a Debian host: no dpkg-query or os-release")
        if cls.server is None:
            server = NacServer({
                "nac": {"transports": "pt-tls", "imvs": "imvs.os:OsImv"},
                "imv:os": {"non_compliant_major": "isolate", "no_result": "allow"},
                "pt-tls": {"reassess_interval": INTERVAL},
            })
            server.admin("init")
            server.admin("user", "add", "carol", "--password", PASSWORD)
            cls.product = product
            import_host_packages(server, product)
            cls.server = server.start()
            atexit.register(server.stop)
            atexit.register(shutil.rmtree, server.dir, True)

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def sessions(self) -> list[dict]:
        return json.loads(self.server.admin("sessions", "list", "--limit", "1000", "--json"))

    def client(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "nac.client.cli", f"127.0.0.1:{self.server.port}",
                                 "--cacert", str(self.server.ca), "--client", "carol", "--secret", PASSWORD,
                                 "--collectors", "os", "--json", *args],
                                env=repo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def test_a_client_that_stays_is_assessed_again_and_sees_a_blacklisted_package(self):
        before = len(self.sessions())
        proc = self.client("--reassessments", "1")
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        first = json.loads(proc.stdout.readline() or "null")
        decided = time.monotonic()
        self.assertIsNotNone(first, proc.stderr.read() if proc.poll() is not None else "")
        self.assertEqual(first["recommendation"], "Access Allowed")
        # between the two: the OS IMV now finds a blacklisted package on this host
        self.server.admin("packages", "blacklist", "bash", "--product", self.product)
        self.addCleanup(self.server.admin, "packages", "blacklist", "bash", "--product", self.product, "--remove")
        self.assertLess(time.monotonic() - decided, INTERVAL, "nac-admin took longer than the interval")
        second = json.loads(proc.stdout.readline() or "null")
        self.assertIsNotNone(second, self.server.log_text()[-3000:])
        self.assertGreaterEqual(time.monotonic() - decided, INTERVAL - 0.5)
        self.assertEqual(second["recommendation"], "Quarantined")
        self.assertEqual(proc.wait(30), 0, proc.stderr.read())
        self.assertEqual(proc.stdout.read(), "")
        # two sessions of one connection, the second with the new decision
        new = self.sessions()[:len(self.sessions()) - before]
        self.assertEqual(len(new), 2, new)
        latest, earliest = new
        self.assertEqual(latest["connection_id"], earliest["connection_id"])
        self.assertEqual([s["access"] for s in (earliest, latest)], ["allowed", "isolate"])
        self.assertTrue(all(s["identity"] == "carol" and s["ended"] for s in new), new)
        log = self.server.log_text()
        self.assertIn("PB-TNC state transition from 'Decided' to 'Client Working'", log)
        self.assertIn(f"starting a new assessment of Connection ID {latest['connection_id']}", log)

    def test_a_client_that_does_not_stay_closes_after_its_decision(self):
        before = len(self.sessions())
        started = time.monotonic()
        proc = self.client()
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 0, err)
        self.assertLess(time.monotonic() - started, INTERVAL)
        self.assertIn("recommendation", json.loads(out))
        new = self.sessions()[:len(self.sessions()) - before]
        self.assertEqual(len(new), 1)
        self.assertNotIn(f"starting a new assessment of Connection ID {new[0]['connection_id']}",
                         self.server.log_text())
