"""A policy change alone moves an admitted endpoint (issue 21): the real
server (`twistd -n nac`), nac's own EAP client (PT-EAP with the OS
collector: this host's packages) admitted through a NAS, FreeRADIUS's
`radclient` sending the NAS's accounting Start, and a NAS Dynamic
Authorization Server built on the project's codec (tests/test_radius_coa_e2e).

Then a package of this host is blacklisted with `nac-admin` and nothing
else happens (no assessment): the server notices the change, judges the
device again with the package list it kept, records the new decision as a
'reevaluation' session and sends the NAS a CoA-Request with the isolate
Filter-Id within a second.  Taking the blacklist back sends the allow one.
A device whose accounting session has stopped gets nothing.

Debian's eapol_test carries no IMC that reports packages (its TNC client
loads IF-IMC libraries listed in /etc/tnc_config, and Debian ships none),
so the endpoint here is nac's client, which sends this host's real dpkg
package list.
"""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import subprocess
import time

from twisted.trial import unittest

from tests.nacserver import NacServer, free_port, repo_env
from tests.radius_nas import NasListener, accounting, admit_host, host_product, import_host_packages
from transports.radius.packet import Code

SECRET = "reevaluate-e2e-secret"
PASSWORD = "T7qp2"


class PolicyChangeCoaTests(unittest.TestCase):
    server: NacServer | None = None
    nas: NasListener | None = None
    product: str | None = None

    def setUp(self):
        cls = type(self)
        if shutil.which("radclient") is None:
            raise unittest.SkipTest("radclient is not installed (Debian package freeradius-utils)")
        product = host_product()
        if product is None:
            raise unittest.SkipTest("not a Debian host: no dpkg-query or os-release")
        if cls.server is None:
            cls.nas = NasListener(SECRET.encode())
            cls.radius_port = free_port(socket.SOCK_DGRAM)
            cls.acct_port = free_port(socket.SOCK_DGRAM)
            server = NacServer({
                "nac": {"transports": "pt-tls,radius", "imvs": "imvs.os:OsImv", "reevaluate_interval": "0.2"},
                "imv:os": {"non_compliant_major": "isolate", "no_result": "allow"},
                "radius": {"listen": "127.0.0.1", "port": cls.radius_port, "acct_port": cls.acct_port,
                           "coa_timeout": "0.3", "coa_attempts": "3"},
                "radius-client:sw1": {"address": "127.0.0.1", "secret": SECRET, "coa_port": cls.nas.port},
                "eap": {"tnc": "eap-tnc"},
            }, ready="RADIUS accounting server listening")
            server.admin("init")
            server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
            cls.product = product
            import_host_packages(server, product)
            cls.server = server.start()
            atexit.register(cls.nas.stop)
            atexit.register(server.stop)
            atexit.register(shutil.rmtree, server.dir, True)
        self.nas.drop = 0

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])
        self.assertNotIn(SECRET, self.server.log_text())
        self.assertNotIn(PASSWORD, self.server.log_text())

    # -- helpers -----------------------------------------------------------------------------

    def admit(self, station: str) -> None:
        admitted = admit_host(self.radius_port, SECRET, "carol", PASSWORD, station, self.server.ca, repo_env())
        self.assertEqual(admitted["radius"]["attributes"]["Filter-Id"], "allow")

    def accounting(self, status: str, session: str, station: str) -> None:
        accounting(self.acct_port, SECRET, status, session, station, nas_port=7)

    def row(self, session: str) -> dict:
        rows = json.loads(self.server.admin("accounting", "list", "--json", "--limit", "100"))
        [row] = [r for r in rows if r["acct_session_id"] == session]
        return row

    def blacklist(self, name: str, *extra: str) -> float:
        self.server.admin("packages", "blacklist", name, "--product", self.product, *extra)
        return time.monotonic()

    def coa_for(self, session: str, before: int, timeout: float = 5.0):
        """The first request the NAS received after ``before`` for ``session``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, _data, packet in self.nas.received[before:]:
                if packet.value(44) == session:
                    return at, packet
            time.sleep(0.02)
        self.fail(f"no CoA for {session}\n" + self.server.log_text()[-3000:])

    def sessions(self) -> list[dict]:
        return json.loads(self.server.admin("sessions", "list", "--json", "--limit", "50"))

    def installed(self) -> list[str]:
        names = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\\n"], capture_output=True, text=True,
                               check=True).stdout.split()
        return sorted(set(names))

    # -- tests -------------------------------------------------------------------------------

    def test_a_blacklisted_package_alone_isolates_the_admitted_device(self):
        station = "02-00-00-00-01-01"
        self.admit(station)
        self.accounting("Start", "reeval-1", station)
        self.assertIsNotNone(self.row("reeval-1")["device"], "the accounting session is not linked to the device")
        package = "bash" if "bash" in self.installed() else self.installed()[0]

        before = len(self.nas.received)
        changed = self.blacklist(package)
        at, packet = self.coa_for("reeval-1", before)
        self.assertLess(at - changed, 1.0, "the CoA came more than a second after the blacklist")
        self.assertEqual((packet.code, packet.value(11), packet.value(31), packet.value(1)),
                         (Code.COA_REQUEST, "isolate", station, "carol"))
        self.assertTrue(packet.has_message_authenticator)
        for _ in range(50):
            if self.row("reeval-1")["coa_result"] == "CoA-ACK":
                break
            time.sleep(0.1)
        self.assertEqual((self.row("reeval-1")["coa_action"], self.row("reeval-1")["coa_result"]),
                         ("coa", "CoA-ACK"))
        newest = self.sessions()[0]
        self.assertEqual((newest["transport"], newest["access"]), ("reevaluation", "isolate"))
        self.assertIn("decision changed from allowed to isolate after a policy change", self.server.log_text())

        # taken back: allowed again, the NAS told so
        before = len(self.nas.received)
        changed = self.blacklist(package, "--remove")
        at, packet = self.coa_for("reeval-1", before)
        self.assertLess(at - changed, 1.0)
        self.assertEqual((packet.code, packet.value(11)), (Code.COA_REQUEST, "allow"))
        self.assertEqual((self.sessions()[0]["transport"], self.sessions()[0]["access"]),
                         ("reevaluation", "allowed"))
        self.accounting("Stop", "reeval-1", station)

    def test_a_stopped_session_is_not_told(self):
        station = "02-00-00-00-01-02"
        self.admit(station)
        self.accounting("Start", "reeval-2", station)
        self.accounting("Stop", "reeval-2", station)
        sessions = len(self.sessions())
        before = len(self.nas.received)
        package = "coreutils" if "coreutils" in self.installed() else self.installed()[-1]
        self.blacklist(package)
        try:
            # the change is seen within 0.2 s; give it ample time to (wrongly) act
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                self.assertEqual([p.value(44) for _, _, p in self.nas.received[before:]], [])
                time.sleep(0.1)
            self.assertEqual(len(self.sessions()), sessions, "a decision was recorded for a device no NAS holds")
        finally:
            self.blacklist(package, "--remove")
