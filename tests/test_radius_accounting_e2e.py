"""RADIUS accounting against the real server (`twistd -n nac`): FreeRADIUS's
`radclient` sends Accounting-Request Start, Interim-Update and Stop, gets
Accounting-Responses it checks with the shared secret, and `nac-admin
accounting list` and /api/accounting show the session; a wrong secret gets
no answer and no record."""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import subprocess

from twisted.trial import unittest

from tests.nacserver import NacServer, free_port

SECRET = "accounting-e2e-secret"


def radclient(port: int, secret: str, command: str, attributes: str, retries: int = 1) -> subprocess.CompletedProcess:
    if shutil.which("radclient") is None:
        raise unittest.SkipTest("radclient is not installed (Debian package freeradius-utils)")
    return subprocess.run(["radclient", "-x", "-r", str(retries), "-t", "2", f"127.0.0.1:{port}", command, secret],
                          input=attributes, capture_output=True, text=True, timeout=30)


class AccountingE2eTests(unittest.TestCase):
    server: NacServer | None = None
    acct_port = 0

    def setUp(self):
        cls = type(self)
        if cls.server is None:
            cls.acct_port = free_port(socket.SOCK_DGRAM)
            server = NacServer({
                "nac": {"transports": "radius", "imvs": "imvs.scanner:ScannerImv"},
                # accounting in the main process beside a RADIUS worker process
                "radius": {"listen": "127.0.0.1", "port": free_port(socket.SOCK_DGRAM),
                           "acct_port": cls.acct_port, "workers": "2"},
                "radius-client:sw1": {"address": "127.0.0.1", "secret": SECRET},
            }, ready="all 1 RADIUS worker processes are accepting")
            server.admin("init")
            cls.server = server.start()
            atexit.register(server.stop)
            atexit.register(shutil.rmtree, server.dir, True)

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])
        self.assertNotIn(SECRET, self.server.log_text())

    def accounting(self, *args: str) -> list[dict]:
        return json.loads(self.server.admin("accounting", "list", "--json", *args))

    def session(self, acct_session_id: str, *args: str) -> list[dict]:
        return [r for r in self.accounting(*args) if r["acct_session_id"] == acct_session_id]

    def test_start_interim_stop_from_radclient(self):
        common = ('Acct-Session-Id = "e2e-0001"\nUser-Name = "carol"\nCalling-Station-Id = "02-00-00-00-00-01"\n'
                  'Called-Station-Id = "AP-1:corp"\nNAS-Port = 7\nNAS-Port-Id = "Gi1/0/7"\n'
                  'Framed-IP-Address = 10.1.2.3\n')
        done = radclient(self.acct_port, SECRET, "acct", "Acct-Status-Type = Start\n" + common)
        self.assertIn("Received Accounting-Response", done.stdout, done.stdout + done.stderr
                      + self.server.log_text()[-3000:])
        [row] = self.session("e2e-0001", "--nas", "sw1")
        self.assertEqual((row["acct_session_id"], row["status"], row["user_name"], row["calling_station_id"],
                          row["nas_port"], row["nas_port_id"], row["framed_ip_address"], row["nas_address"]),
                         ("e2e-0001", "started", "carol", "02-00-00-00-00-01", 7, "Gi1/0/7", "10.1.2.3", "127.0.0.1"))
        done = radclient(self.acct_port, SECRET, "acct", "Acct-Status-Type = Interim-Update\n" + common
                         + "Acct-Session-Time = 60\nAcct-Input-Octets = 1000\nAcct-Output-Octets = 2000\n")
        self.assertIn("Received Accounting-Response", done.stdout, done.stdout)
        [row] = self.session("e2e-0001", "--nas", "sw1")
        self.assertEqual((row["status"], row["session_time"], row["input_octets"], row["output_octets"]),
                         ("updated", 60, 1000, 2000))
        done = radclient(self.acct_port, SECRET, "acct", "Acct-Status-Type = Stop\n" + common
                         + "Acct-Session-Time = 120\nAcct-Input-Octets = 5\nAcct-Input-Gigawords = 1\n"
                           "Acct-Output-Octets = 4000\nAcct-Terminate-Cause = User-Request\n")
        self.assertIn("Received Accounting-Response", done.stdout, done.stdout)
        [row] = self.session("e2e-0001", "--nas", "sw1")
        self.assertEqual((row["status"], row["input_octets"], row["output_octets"], row["terminate_cause"]),
                         ("stopped", 2 ** 32 + 5, 4000, "User-Request"))
        self.assertIsNotNone(row["stopped"])
        self.assertEqual(self.session("e2e-0001", "--open"), [])
        text = self.server.admin("accounting", "list")
        self.assertIn("e2e-0001", text)
        self.assertIn("ACCT-SESSION-ID", text.splitlines()[0])

    def test_wrong_secret_gets_no_answer_and_no_record(self):
        done = radclient(self.acct_port, "not-the-secret", "acct",
                         'Acct-Status-Type = Start\nAcct-Session-Id = "e2e-forged"\nUser-Name = "mallory"\n')
        self.assertNotIn("Received", done.stdout, done.stdout)
        self.assertEqual([r for r in self.accounting() if r["acct_session_id"] == "e2e-forged"], [])
        self.assertIn("bad Request Authenticator", self.server.log_text())

    def test_accounting_on_closes_the_nas_sessions(self):
        done = radclient(self.acct_port, SECRET, "acct",
                         'Acct-Status-Type = Start\nAcct-Session-Id = "e2e-on-1"\nUser-Name = "dave"\n')
        self.assertIn("Received Accounting-Response", done.stdout, done.stdout)
        done = radclient(self.acct_port, SECRET, "acct", "Acct-Status-Type = Accounting-On\n")
        self.assertIn("Received Accounting-Response", done.stdout, done.stdout)
        [row] = [r for r in self.accounting() if r["acct_session_id"] == "e2e-on-1"]
        self.assertEqual((row["status"], row["terminate_cause"]), ("stopped", "NAS-Reboot"))
