"""bench/radius_reference.py end to end: nac, hostapd and FreeRADIUS started
from the configurations it writes, each completing real EAP-TTLS
authentications from nac's client, and none of them left running."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from twisted.trial import unittest

from tests.nacserver import REPO, make_netns, netns_unavailable, repo_env

SCRIPT = REPO / "bench" / "radius_reference.py"
COUNT = 5


def _installed(program: str) -> bool:
    return (shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")) is not None


class RadiusReferenceTests(unittest.TestCase):
    def setUp(self):
        self.servers = ["nac"] + [p for p in ("hostapd", "freeradius") if _installed(p)]
        if len(self.servers) == 1:
            raise unittest.SkipTest("neither hostapd nor freeradius is installed (Debian packages hostapd, "
                                    "freeradius): nothing to compare nac with")

    def run_reference(self, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
        argv = [sys.executable, str(SCRIPT), "--servers", ",".join(self.servers), "--json", *args]
        # hostapd's RADIUS socket listens on the wildcard address: in a
        # namespace of the test's own when it can have one, that is loopback only
        if netns_unavailable() is None:
            argv = ["ip", "netns", "exec", make_netns("nac-radref"), *argv]
        done = subprocess.run(argv, env=repo_env(), capture_output=True, text=True, timeout=120)
        try:
            report = json.loads(done.stdout)
        except ValueError:
            self.fail(f"no JSON report (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        return done, report

    def assert_every_server_completes(self, tls_version: str):
        done, report = self.run_reference("--count", str(COUNT), "--concurrency", "1", "--tls-version", tls_version)
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        self.assertEqual((report["method"], report["tls_version"]), ("EAP-TTLS/MD5", tls_version))
        self.assertEqual([s["server"] for s in report["servers"]], self.servers)
        for server in report["servers"]:
            self.assertNotIn("skipped", server, server)
            [level] = server["levels"]
            self.assertEqual((level["completed"], level["failed"]), (COUNT, 0), (server["server"], level))
            # Identity, TLS handshake (3 or more), phase 2: every server needs several round trips
            self.assertGreaterEqual(level["round_trips"], 5, server["server"])
            self.assertIsNotNone(level["server_cpu_ms_per_authentication"], server["server"])
            # the processes are gone once the script returned
            self.assertFalse(os.path.exists(f"/proc/{server['pid']}"), server["server"])

    def test_every_server_completes_ttls_md5_authentications_at_tls_1_3(self):
        self.assert_every_server_completes("1.3")

    def test_every_server_completes_ttls_md5_authentications_at_tls_1_2(self):
        # the peer's groups (X25519:P-256) must still admit the P-256 certificate
        self.assert_every_server_completes("1.2")

    def test_a_missing_program_is_skipped_with_its_reason(self):
        # only hostapd and FreeRADIUS asked for, neither to be found: each
        # is reported as not installed, and having measured nothing fails
        missing = os.path.abspath(self.mktemp())
        argv = [sys.executable, str(SCRIPT), "--servers", "hostapd,freeradius", "--json", "--count", "1",
                "--concurrency", "1", "--hostapd", f"{missing}/hostapd", "--freeradius", f"{missing}/freeradius"]
        done = subprocess.run(argv, env=repo_env(), capture_output=True, text=True, timeout=60)
        report = json.loads(done.stdout)
        self.assertEqual(report["servers"], [
            {"server": "hostapd", "skipped": f"{missing}/hostapd is not installed (Debian package hostapd)"},
            {"server": "freeradius",
             "skipped": f"{missing}/freeradius is not installed (Debian package freeradius)"},
        ])
        self.assertIn("hostapd: skipped: ", done.stderr)
        self.assertEqual(done.returncode, 1)
