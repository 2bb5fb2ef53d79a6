"""The real `nac-pt-tls-client` against the real server (`twistd -n nac`).

One server process for the class, with its embedded SQLite policy database
(created and migrated when the server starts) and a SASL user added by the
real `nac-admin`.  Every test runs the client program as a subprocess and
checks what it printed, its exit status, what the server logged and what it
recorded in the database.
"""

from __future__ import annotations

import atexit
import json
import subprocess
import sys

from twisted.internet import defer
from twisted.trial import unittest

from nac.certs import ensure_demo_pki, issue_certificate
from nac.client.pt_tls import ConnectionFailed, client_tls_options, run_assessment
from tests.nacserver import REPO, NacServer, free_port, repo_env

PASSWORD = "carol's password"


class PtTlsClientEndToEndTests(unittest.TestCase):
    server: NacServer | None = None

    def setUp(self):
        cls = type(self)
        if cls.server is None:
            # the hundred concurrent clients all come from 127.0.0.1
            server = NacServer({"pt-tls": {"max_unauthenticated_per_source": "256"},
                                "auth": {"max_password_checks": "256", "max_password_checks_per_source": "256"}})
            server.admin("init")
            server.admin("user", "add", "carol", "--password", PASSWORD)
            cls.server = server.start()
            atexit.register(server.stop)

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def sessions(self) -> list[dict]:
        return json.loads(self.server.admin("sessions", "list", "--limit", "1000", "--json"))

    def test_sasl_plain_assessment_completes_and_is_recorded(self):
        before = len(self.sessions())
        done = self.server.client("--client", "carol", "--secret", PASSWORD,
                                  "--collectors", "os,scanner", "--json")
        self.assertEqual(done.returncode, 0, done.stderr)
        result = json.loads(done.stdout)
        self.assertEqual(set(result), {"recommendation", "assessment", "reasons", "remediation", "imv_results"})
        # no IMVs configured: "no recommendation", which the server enforces as denied
        self.assertEqual(result["recommendation"], "Access Denied")
        log = self.server.log_text()
        # the milestones a strongSwan operator looks for
        for line in ("accepting PT-TLS stream from 127.0.0.1", "SASL PLAIN authentication successful",
                     "PB-TNC state transition from 'Init' to 'Server Working'",
                     "PB-TNC state transition from 'Server Working' to 'Decided'",
                     "PB-TNC state transition from 'Decided' to 'End'"):
            self.assertIn(line, log)
        # debug lines are not written at the default log level
        self.assertNotIn("#debug]", log)
        sessions = self.sessions()
        self.assertEqual(len(sessions), before + 1)
        newest = sessions[0]
        self.assertEqual((newest["identity"], newest["transport"], newest["auth_method"]),
                         ("carol", "pt-tls", "sasl-plain"))
        self.assertEqual(newest["peer_address"], "127.0.0.1")
        self.assertEqual(newest["access"], "denied")
        self.assertIsNotNone(newest["ended"])

    def test_text_output(self):
        done = self.server.client("--client", "carol", "--secret", PASSWORD, "--collectors", "os")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("access recommendation:", done.stdout)
        self.assertIn("assessment result:", done.stdout)

    def test_wrong_password_fails_before_any_assessment(self):
        before = len(self.sessions())
        done = self.server.client("--client", "carol", "--secret", "not the password")
        self.assertNotEqual(done.returncode, 0)
        self.assertEqual(done.stdout, "")
        lines = done.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, done.stderr)
        self.assertIn("SASL", lines[0])
        self.assertNotIn("not the password", done.stderr)
        self.assertEqual(len(self.sessions()), before)
        log = self.server.log_text()
        self.assertIn("SASL PLAIN authentication of 'carol'", log)
        self.assertNotIn("not the password", log)
        self.assertNotIn(PASSWORD, log)

    def test_unknown_user_fails(self):
        done = self.server.client("--client", "mallory", "--secret", PASSWORD)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("SASL", done.stderr)

    def test_client_certificate_skips_sasl(self):
        pki = ensure_demo_pki(self.server.state_dir)
        work = self.server.dir
        cert, key = issue_certificate(pki.ca_cert, pki.ca_key, "dave@nac.test",
                                      work / "dave-e2e.pem", work / "dave-e2e.key")
        done = self.server.client("--cert", str(cert), "--key", str(key), "--collectors", "os", "--json")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("skipping SASL, client already authenticated by TLS certificate",
                      self.server.log_text())
        newest = self.sessions()[0]
        self.assertEqual((newest["identity"], newest["auth_method"]), ("dave@nac.test", "certificate"))

    def test_server_certificate_from_another_ca_is_refused(self):
        other = self.mktemp()
        pki = ensure_demo_pki(__import__("pathlib").Path(other))
        done = subprocess.run([sys.executable, "-m", "nac.client.cli", f"127.0.0.1:{self.server.port}",
                               "--cacert", str(pki.ca_cert), "--client", "carol", "--secret", PASSWORD],
                              env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertNotEqual(done.returncode, 0)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)

    def test_server_certificate_for_another_name_is_refused(self):
        done = self.server.client("--client", "carol", "--secret", PASSWORD,
                                  "--server-name", "gateway.example.org")
        self.assertNotEqual(done.returncode, 0)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
        self.assertIn("does not match the expected server name", done.stderr)

    @defer.inlineCallbacks
    def test_server_name_is_checked_on_every_connection(self):
        """One set of client TLS options serves many connections (the load
        generator's way); the name check holds on each of them."""
        from twisted.internet import reactor
        for name in ("localhost", "127.0.0.1"):
            tls = client_tls_options(cacert=self.server.ca, server_name=name)
            for _ in range(2):
                outcome = yield run_assessment(reactor, "127.0.0.1", self.server.port, identity="carol",
                                               password=PASSWORD, collectors=["os"], tls_options=tls)
                self.assertTrue(outcome.completed)
        wrong = client_tls_options(cacert=self.server.ca, server_name="gateway.example.org")
        for _ in range(2):
            with self.assertRaises(ConnectionFailed) as raised:
                yield run_assessment(reactor, "127.0.0.1", self.server.port, identity="carol",
                                     password=PASSWORD, collectors=["os"], tls_options=wrong)
            self.assertIn("does not match the expected server name", str(raised.exception))

    def test_no_server_is_a_one_line_error(self):
        done = subprocess.run([sys.executable, "-m", "nac.client.cli", f"127.0.0.1:{free_port()}",
                               "--cacert", str(self.server.ca), "--client", "carol", "--secret", PASSWORD,
                               "--timeout", "5"],
                              env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertNotEqual(done.returncode, 0)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
        self.assertIn("connect", done.stderr)

    def test_hundred_concurrent_clients(self):
        """100 assessments in flight at once from nac's client library (the
        load generator in bench/), all completed; the server keeps serving."""
        before = len(self.sessions())
        done = subprocess.run(
            [sys.executable, str(REPO / "bench" / "pt_tls_load.py"), "--live",
             "--server", f"127.0.0.1:{self.server.port}", "--server-pid", str(self.server.proc.pid),
             "--cacert", str(self.server.ca), "--client", "carol", "--secret", PASSWORD,
             "--collectors", "os", "--concurrency", "100", "--count", "100", "--processes", "1",
             "--timeout", "60", "--json"],
            env=repo_env(), capture_output=True, text=True, timeout=300)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        level = json.loads(done.stdout)["levels"][0]
        self.assertEqual((level["completed"], level["failed"]), (100, 0), level)
        self.assertEqual(len(self.sessions()), before + 100)
