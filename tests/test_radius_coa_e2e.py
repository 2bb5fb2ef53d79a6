"""RFC 5176 CoA and Disconnect from the real server (`twistd -n nac`) to a
test NAS built on the project's RADIUS codec (its Dynamic Authorization
Server on a loopback port), after real programs set the scene:

* eapol_test (wpa_supplicant, IF-TNCCS 1.1) is admitted through the NAS;
  FreeRADIUS's `radclient` sends the NAS's accounting Start for the same
  Calling-Station-Id; `nac-admin coa --access isolate` makes the NAS receive
  a CoA-Request with the isolate Filter-Id and the session's identification;
  a lost CoA is retransmitted (the same bytes) and acknowledged; a NAS that
  never answers gets every try and the failure is recorded;
* nac's own EAP client (PT-EAP, OS collector) is admitted through the NAS,
  the accounting Start arrives, then a package of this host is blacklisted
  with `nac-admin` and the host assessed again over PT-TLS: the server
  itself sends the NAS a CoA-Request with the isolate attributes within a
  second or so, and records the CoA-ACK.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import time

from twisted.trial import unittest

from tests.nacserver import NacServer, free_port, repo_env
from tests.radius_nas import NasListener, accounting, admit_host, host_product, import_host_packages
from transports.radius.packet import Code

SECRET = "coa-e2e-secret"
PASSWORD = "K8FW9"
EAPOL_STATION = "02-00-00-00-00-01"  # eapol_test's Calling-Station-Id (its default own address)
HOST_STATION = "02-00-00-00-00-42"


class CoaE2eTests(unittest.TestCase):
    server: NacServer | None = None
    nas: NasListener | None = None

    def setUp(self):
        cls = type(self)
        if shutil.which("radclient") is None:
            raise unittest.SkipTest("radclient is not installed (Debian package freeradius-utils)")
        if cls.server is None:
            cls.nas = NasListener(SECRET.encode())
            cls.radius_port = free_port(socket.SOCK_DGRAM)
            cls.acct_port = free_port(socket.SOCK_DGRAM)
            server = NacServer({
                "nac": {"transports": "pt-tls,radius", "imvs": "imvs.os:OsImv",
                        # the CoA here follows a re-assessment, not the policy change itself
                        "reevaluate_interval": "0"},
                "imv:os": {"non_compliant_major": "isolate", "no_result": "allow"},
                "radius": {"listen": "127.0.0.1", "port": cls.radius_port, "acct_port": cls.acct_port,
                           "coa_timeout": "0.3", "coa_attempts": "3"},
                "radius-client:sw1": {"address": "127.0.0.1", "secret": SECRET, "coa_port": cls.nas.port},
                "eap": {"tnc": "eap-tnc"},
            }, ready="RADIUS accounting server listening")
            server.admin("init")
            server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
            cls.server = server.start()
            atexit.register(cls.nas.stop)
            atexit.register(server.stop)
            atexit.register(shutil.rmtree, server.dir, True)
        self.nas.drop = 0

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])
        self.assertNotIn(SECRET, self.server.log_text())

    # -- helpers -----------------------------------------------------------------------------

    def accounting_start(self, session: str, station: str, user: str = "carol") -> None:
        accounting(self.acct_port, SECRET, "Start", session, station, user=user)

    def accounting(self, session: str) -> dict:
        rows = json.loads(self.server.admin("accounting", "list", "--json", "--limit", "100"))
        [row] = [r for r in rows if r["acct_session_id"] == session]
        return row

    def admin(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nac.admin", "--config", str(self.server.config), *args],
                              env=repo_env(), capture_output=True, text=True, timeout=60)

    def eapol_test(self) -> str:
        if shutil.which("eapol_test") is None:
            raise unittest.SkipTest("eapol_test is not installed (Debian package eapoltest)")
        if not os.path.exists("/etc/tnc_config"):
            raise unittest.SkipTest("eapol_test's TNC client needs /etc/tnc_config (tests/run.sh creates it)")
        conf = self.server.dir / "eapol_test.conf"
        conf.write_text('network={\n  key_mgmt=WPA-EAP\n  eap=TTLS\n  identity="carol"\n'
                        f'  password="{PASSWORD}"\n  ca_cert="{self.server.ca}"\n  phase2="autheap=MD5"\n}}\n')
        done = subprocess.run(["eapol_test", "-c", str(conf), "-a", "127.0.0.1", "-p", str(self.radius_port),
                               "-s", SECRET, "-r", "0", "-t", "20"], capture_output=True, text=True, timeout=60)
        out = done.stdout + done.stderr
        self.assertEqual(done.returncode, 0, out[-2000:] + self.server.log_text()[-3000:])
        self.assertIn("TNC: TNCCS-Recommendation: 'allow'", out)
        return out

    # -- tests -------------------------------------------------------------------------------

    def test_eapol_session_isolated_by_nac_admin_coa(self):
        self.eapol_test()
        self.accounting_start("eapol-1", EAPOL_STATION)
        row = self.accounting("eapol-1")
        self.assertIsNotNone(row["assessment_id"], "not linked to eapol_test's assessment by its station")
        before = len(self.nas.received)
        done = self.admin("coa", str(row["id"]), "--access", "isolate")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("CoA-ACK", done.stdout)
        _, data, packet = self.nas.wait(before + 1)[before]
        self.assertEqual(packet.code, Code.COA_REQUEST)
        self.assertEqual((packet.value(11), packet.value(44), packet.value(31), packet.value(1)),
                         ("isolate", "eapol-1", EAPOL_STATION, "carol"))
        self.assertIsNotNone(packet.get(55))  # Event-Timestamp
        self.assertTrue(packet.has_message_authenticator)
        row = self.accounting("eapol-1")
        self.assertEqual((row["coa_action"], row["coa_result"]), ("coa", "CoA-ACK"))

    def test_lost_coa_is_retransmitted(self):
        self.accounting_start("lost-1", "02-00-00-00-00-77")
        row = self.accounting("lost-1")
        before = len(self.nas.received)
        self.nas.drop = 1
        done = self.admin("coa", str(row["id"]), "--access", "allowed")
        self.assertEqual(done.returncode, 0, done.stderr)
        received = self.nas.wait(before + 2)[before:]
        self.assertEqual(len(received), 2)
        self.assertEqual(received[0][1], received[1][1], "a retransmission is the same datagram")
        self.assertGreaterEqual(received[1][0] - received[0][0], 0.25)
        self.assertEqual(self.accounting("lost-1")["coa_result"], "CoA-ACK after 2 tries")

    def test_unanswered_disconnect_is_recorded_as_failed(self):
        self.accounting_start("dead-1", "02-00-00-00-00-78")
        row = self.accounting("dead-1")
        before = len(self.nas.received)
        self.nas.drop = 100
        done = self.admin("disconnect", str(row["id"]))
        self.assertEqual(done.returncode, 1)
        self.assertIn("no answer after 3 tries", done.stderr)
        received = self.nas.wait(before + 3)[before:]
        self.assertEqual([p.code for _, _, p in received], [Code.DISCONNECT_REQUEST] * 3)
        # doubling waits: 0.3 s, then 0.6 s
        self.assertGreaterEqual(received[2][0] - received[1][0], received[1][0] - received[0][0] + 0.2)
        row = self.accounting("dead-1")
        self.assertEqual((row["coa_action"], row["coa_result"], row["status"]),
                         ("disconnect", "no answer after 3 tries", "started"))

    def test_blacklisted_package_after_admission_sends_a_coa(self):
        product = host_product()
        if product is None:
            raise unittest.SkipTest("not a Debian host: no dpkg-query or os-release")
        import_host_packages(self.server, product)
        admitted = admit_host(self.radius_port, SECRET, "carol", PASSWORD, HOST_STATION, self.server.ca, repo_env())
        self.assertEqual(admitted["radius"]["attributes"]["Filter-Id"], "allow")
        self.accounting_start("host-1", HOST_STATION)
        row = self.accounting("host-1")
        self.assertIsNotNone(row["device"], "the accounting session is not linked to the device")
        before = len(self.nas.received)
        self.server.admin("packages", "blacklist", "bash", "--product", product)
        done = self.server.client("--client", "carol", "--secret", PASSWORD, "--collectors", "os", "--json")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(json.loads(done.stdout)["recommendation"], "Quarantined")
        decided = time.monotonic()
        received = self.nas.wait(before + 1, timeout=5)
        self.assertGreater(len(received), before, self.server.log_text()[-3000:])
        at, _, packet = received[before]
        self.assertLess(at - decided, 2.0)
        self.assertEqual((packet.code, packet.value(11), packet.value(44), packet.value(31)),
                         (Code.COA_REQUEST, "isolate", "host-1", HOST_STATION))
        for _ in range(50):
            if self.accounting("host-1")["coa_result"]:
                break
            time.sleep(0.1)
        self.assertEqual(self.accounting("host-1")["coa_result"], "CoA-ACK")
        self.assertIn("sending CoA-Request to client 'sw1' for accounting session 'host-1'", self.server.log_text())
