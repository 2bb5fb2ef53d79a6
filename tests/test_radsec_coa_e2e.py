"""RFC 5176 CoA over RadSec (RFC 6614) from the real server (`twistd -n nac`)
to a NAS written here with Python's ssl module:

* nac's own EAP client (PT-EAP, OS collector) is admitted through NAS sw1
  over UDP; sw1 then connects over RadSec with its client certificate and
  sends the accounting Start for the same Calling-Station-Id on that
  connection;
* a package of this host is blacklisted and the host assessed again over
  PT-TLS: the server sends the CoA-Request on sw1's TLS connection — its
  Request Authenticator and Message-Authenticator recomputed here with
  hashlib/hmac and the secret "radsec" — the NAS ACKs, nac records CoA-ACK;
* the blacklisting is lifted, the host assessed again: the NAS does not
  answer; nothing is sent again on the connection and "no answer" is
  recorded after one timeout;
* the NAS closes its connection; the next change goes to its UDP
  coa_port (sw1 also has an address and a secret), ACKed there;
* `nac-admin coa` refuses, in one line, a session of a RadSec-only NAS.
"""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from tests import radsec_wire as wire
from tests.nacserver import NacServer, free_port, repo_env
from tests.radius_nas import NasListener, admit_host, host_product, import_host_packages
from tests.test_radsec_coa import answer, attributes, request_valid
from tests.test_radsec_e2e import nas_certificate
from transports.radius.packet import Code
from transports.radius.radsec import RadsecStream

SECRET = "radsec-coa-e2e-secret"
PASSWORD = "K8FW9"
HOST_STATION = "02-00-00-00-00-43"
FILTER_ID, ACCT_SESSION_ID, CALLING_STATION_ID, EVENT_TIMESTAMP = 11, 44, 31, 55


class RadsecNas:
    """A NAS's RadSec connection: requests out, packets in."""

    def __init__(self, ctx: ssl.SSLContext, port: int):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = ctx.wrap_socket(raw, server_hostname="nac.test")
        self.stream = RadsecStream()
        self.packets: list[bytes] = []

    def read(self, timeout: float) -> bytes | None:
        """The next packet from the server, or None after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not self.packets:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.conn.settimeout(left)
            try:
                data = self.conn.recv(4096)
            except (socket.timeout, TimeoutError):
                return None
            if not data:
                raise ConnectionError("the server closed the connection")
            self.packets += self.stream.receive_data(data)
        return self.packets.pop(0)

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def close(self) -> None:
        self.conn.close()


class RadsecCoaE2eTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if host_product() is None:
            raise unittest.SkipTest("not a Debian host: no dpkg-query or os-release")
        cls.dir = Path(tempfile.mkdtemp(prefix="nac-radsec-coa-"))
        atexit.register(shutil.rmtree, cls.dir, True)
        cls.sw1_cert, cls.sw1_key = nas_certificate(cls.dir / "nas-pki", "sw1.example.org")
        cls.sw3_cert, cls.sw3_key = nas_certificate(cls.dir / "nas-pki", "sw3.example.org")
        cls.udp_nas = NasListener(SECRET.encode())
        atexit.register(cls.udp_nas.stop)
        cls.radius_port = free_port(socket.SOCK_DGRAM)
        cls.radsec_port = free_port()
        (cls.dir / "server").mkdir()
        server = NacServer({
            # no re-evaluation after a policy change: its CoA would race the assessment's, and time
            # out (2.1 s) before the test reads it while the assessment runs
            "nac": {"transports": "pt-tls,radius", "imvs": "imvs.os:OsImv", "reevaluate_interval": "0"},
            "imv:os": {"non_compliant_major": "isolate", "no_result": "allow"},
            "radius": {"listen": "127.0.0.1", "port": cls.radius_port, "radsec_port": cls.radsec_port,
                       "radsec_listen": "127.0.0.1", "radsec_ca": cls.dir / "nas-pki" / "ca.pem",
                       "coa_timeout": "0.3", "coa_attempts": "3"},
            "radius-client:sw1": {"address": "127.0.0.1", "secret": SECRET, "coa_port": cls.udp_nas.port,
                                  "radsec_name": "sw1.example.org"},
            "radius-client:sw3": {"radsec_name": "sw3.example.org"},
            "eap": {"tnc": "eap-tnc"},
        }, workdir=str(cls.dir / "server"), ready="RADIUS accounting server listening")
        server.admin("init")
        server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
        server.start()
        atexit.register(server.stop)
        try:
            server.wait_listening(cls.radsec_port)
        except Exception:
            server.stop()
            raise
        cls.server = server

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def context(self, cert: Path, key: Path) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(self.server.ca))
        ctx.check_hostname = False  # the demo server certificate names nac.test
        ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def accounting_start(self, nas: RadsecNas, identifier: int, session: bytes, station: bytes) -> None:
        start = wire.accounting_start(identifier, session, station=station)
        nas.send(start)
        reply = nas.read(10)
        self.assertIsNotNone(reply, self.server.log_text()[-3000:])
        self.assertEqual(reply[0], wire.ACCOUNTING_RESPONSE)
        self.assertTrue(wire.response_valid(reply, start))

    def accounting(self, session: str) -> dict:
        rows = json.loads(self.server.admin("accounting", "list", "--json", "--limit", "100"))
        [row] = [r for r in rows if r["acct_session_id"] == session]
        return row

    def wait_recorded(self, session: str, result: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            row = self.accounting(session)
            if row["coa_result"] == result or time.monotonic() > deadline:
                self.assertEqual(row["coa_result"], result, self.server.log_text()[-3000:])
                return row
            time.sleep(0.1)

    def assess(self, expected: str) -> None:
        done = self.server.client("--client", "carol", "--secret", PASSWORD, "--collectors", "os", "--json")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(json.loads(done.stdout)["recommendation"], expected)

    def test_coa_on_the_radsec_connection_then_no_answer_then_udp_after_it_closed(self):
        product = host_product()
        import_host_packages(self.server, product)
        admit_host(self.radius_port, SECRET, "carol", PASSWORD, HOST_STATION, self.server.ca, repo_env())

        nas = RadsecNas(self.context(self.sw1_cert, self.sw1_key), self.radsec_port)
        self.addCleanup(nas.close)
        self.accounting_start(nas, 1, b"rs-1", HOST_STATION.encode())
        row = self.accounting("rs-1")
        self.assertEqual(row["nas"], "sw1")
        self.assertIsNotNone(row["device"], "the accounting session is not linked to the device")

        # 1. a decision change: CoA-Request on the connection, ACKed
        self.server.admin("packages", "blacklist", "bash", "--product", product)
        self.assess("Quarantined")
        request = nas.read(5)
        self.assertIsNotNone(request, self.server.log_text()[-3000:])
        self.assertEqual(request[0], Code.COA_REQUEST)
        self.assertTrue(request_valid(request), "not signed with the secret 'radsec'")
        self.assertFalse(request_valid(request, SECRET.encode()))
        attrs = attributes(request)
        self.assertEqual((attrs[FILTER_ID], attrs[ACCT_SESSION_ID], attrs[CALLING_STATION_ID]),
                         (b"isolate", b"rs-1", HOST_STATION.encode()))
        self.assertIn(EVENT_TIMESTAMP, attrs)
        nas.send(answer(request, Code.COA_ACK))
        self.wait_recorded("rs-1", "CoA-ACK")
        self.assertEqual(self.udp_nas.received, [], "the NAS's RadSec connection was open")

        # 2. the NAS does not answer: one try, one timeout (0.3 + 0.6 + 1.2 s), recorded
        self.server.admin("packages", "blacklist", "bash", "--product", product, "--remove")
        self.assess("Access Allowed")
        request = nas.read(5)
        self.assertIsNotNone(request, self.server.log_text()[-3000:])
        self.assertEqual((request[0], attributes(request)[FILTER_ID]), (Code.COA_REQUEST, b"allow"))
        self.assertIsNone(nas.read(3.0), "a request on a RadSec connection is not sent again")
        self.wait_recorded("rs-1", "no answer within 2.1 s on the RadSec connection")

        # 3. the connection is gone: the NAS's UDP coa_port, with its UDP secret
        nas.close()
        time.sleep(0.5)  # the server sees the connection end
        self.server.admin("packages", "blacklist", "bash", "--product", product)
        self.assess("Quarantined")
        [(_, _, packet)] = self.udp_nas.wait(1)
        self.assertEqual((packet.code, packet.value(FILTER_ID), packet.value(ACCT_SESSION_ID)),
                         (Code.COA_REQUEST, "isolate", "rs-1"))
        self.wait_recorded("rs-1", "CoA-ACK")
        self.assertIn("client 'sw1' has no open RadSec connection: sending over UDP", self.server.log_text())

    def test_nac_admin_refuses_a_radsec_only_nas_in_one_line(self):
        nas = RadsecNas(self.context(self.sw3_cert, self.sw3_key), self.radsec_port)
        self.addCleanup(nas.close)
        self.accounting_start(nas, 9, b"rs-3", b"02-00-00-00-00-99")
        row = self.accounting("rs-3")
        self.assertEqual(row["nas"], "sw3")
        done = subprocess.run([sys.executable, "-m", "nac.admin", "--config", str(self.server.config), "coa",
                               str(row["id"]), "--access", "isolate"], env=repo_env(), capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(done.returncode, 1)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
        self.assertIn("NAS 'sw3' is reached over RadSec only", done.stderr)
        self.assertIsNone(self.accounting("rs-3")["coa_result"])
