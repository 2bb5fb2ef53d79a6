"""CoA over RadSec (RFC 5176 on RFC 6614) from the real server (`twistd -n
nac`) run with worker processes: ``[pt-tls] workers = 3``, ``[radius]
workers = 2``, so process 0 (main) and 1 serve PT-TLS and RADIUS, process 2
PT-TLS only; RadSec connections live in the main process.

nac's EAP client is admitted through NAS sw1 over UDP; sw1 then connects
over RadSec (written here with Python's ssl module) and sends the
accounting Start of the same Calling-Station-Id.  The host is assessed
again over PT-TLS, with a package blacklisted and unblacklisted in turn,
until assessments made in worker processes are among them (the sessions
table says which process decided): every decision change arrives as a
CoA-Request on sw1's TLS connection and its CoA-ACK is recorded, whichever
process decided.  sw1 also has an address and a UDP coa_port, which a
worker that sent requests itself used to fall back to: nothing may arrive
there while the connection is open.
"""

from __future__ import annotations

import atexit
import re
import shutil
import socket
import sqlite3
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from tests.nacserver import NacServer, free_port, repo_env
from tests.radius_nas import NasListener, admit_host, host_product, import_host_packages
from tests.test_radsec_coa import answer, attributes, request_valid
from tests import test_radsec_coa_e2e as single
from tests.test_radsec_coa_e2e import HOST_STATION, PASSWORD, SECRET, RadsecNas
from tests.test_radsec_e2e import nas_certificate
from transports.radius.packet import Code

FILTER_ID, ACCT_SESSION_ID = 11, 44
#: most assessments made while waiting for both workers to have decided
MAX_ASSESSMENTS = 8


class RadsecCoaWorkersE2eTests(unittest.TestCase):
    # as in the one-process test (not imported by name: pytest would run its tests here too)
    context = single.RadsecCoaE2eTests.context
    accounting_start = single.RadsecCoaE2eTests.accounting_start
    assess = single.RadsecCoaE2eTests.assess

    @classmethod
    def setUpClass(cls):
        if host_product() is None:
            raise unittest.SkipTest("not a Debian host: no dpkg-query or os-release")
        cls.dir = Path(tempfile.mkdtemp(prefix="nac-radsec-coa-workers-"))
        atexit.register(shutil.rmtree, cls.dir, True)
        cls.sw1_cert, cls.sw1_key = nas_certificate(cls.dir / "nas-pki", "sw1.example.org")
        cls.udp_nas = NasListener(SECRET.encode())
        atexit.register(cls.udp_nas.stop)
        cls.radius_port = free_port(socket.SOCK_DGRAM)
        cls.radsec_port = free_port()
        (cls.dir / "server").mkdir()
        server = NacServer({
            # no re-evaluation after a policy change (the main process's): each decision is an assessment's
            "nac": {"transports": "pt-tls,radius", "imvs": "imvs.os:OsImv", "reevaluate_interval": "0"},
            "pt-tls": {"workers": "3"},
            "imv:os": {"non_compliant_major": "isolate", "no_result": "allow"},
            "radius": {"listen": "127.0.0.1", "port": cls.radius_port, "radsec_port": cls.radsec_port,
                       "radsec_listen": "127.0.0.1", "radsec_ca": cls.dir / "nas-pki" / "ca.pem",
                       "coa_timeout": "0.5", "coa_attempts": "3", "workers": "2"},
            "radius-client:sw1": {"address": "127.0.0.1", "secret": SECRET, "coa_port": cls.udp_nas.port,
                                  "radsec_name": "sw1.example.org"},
            "eap": {"tnc": "eap-tnc"},
        }, workdir=str(cls.dir / "server"), ready="all 2 nac worker processes are accepting")
        server.admin("init")
        server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
        server.start(timeout=30)
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

    def newest_session(self) -> tuple[int, str, int, str]:
        """(id, transport, process, access) of the newest assessment."""
        with sqlite3.connect(self.server.state_dir / "nac.db") as db:
            return db.execute("SELECT id, transport, process, access FROM sessions ORDER BY id DESC LIMIT 1").fetchone()

    def acks_recorded(self) -> int:
        return len(re.findall(r"CoA-Request for accounting session 'rw-1' of client 'sw1': CoA-ACK",
                              self.server.log_text()))

    def test_every_decision_change_reaches_the_radsec_connection_whichever_process_decided(self):
        product = host_product()
        import_host_packages(self.server, product)
        admit_host(self.radius_port, SECRET, "carol", PASSWORD, HOST_STATION, self.server.ca, repo_env())

        nas = RadsecNas(self.context(self.sw1_cert, self.sw1_key), self.radsec_port)
        self.addCleanup(nas.close)
        self.accounting_start(nas, 1, b"rw-1", HOST_STATION.encode())

        deciders: list[int] = []
        blacklisted = False
        while len(deciders) < MAX_ASSESSMENTS and not {1, 2} <= set(deciders):
            blacklisted = not blacklisted
            self.server.admin("packages", "blacklist", "bash", "--product", product,
                              *(() if blacklisted else ("--remove",)))
            self.assess("Quarantined" if blacklisted else "Access Allowed")
            sid, transport, process, access = self.newest_session()
            self.assertEqual((transport, access), ("pt-tls", "isolate" if blacklisted else "allowed"))
            deciders.append(process)
            request = nas.read(5)
            self.assertIsNotNone(request, f"no CoA-Request on the RadSec connection for session {sid}, decided in "
                                          f"process {process}:\n{self.server.log_text()[-3000:]}")
            self.assertEqual(request[0], Code.COA_REQUEST)
            self.assertTrue(request_valid(request), "not signed with the secret 'radsec'")
            attrs = attributes(request)
            self.assertEqual((attrs[FILTER_ID], attrs[ACCT_SESSION_ID]),
                             (b"isolate" if blacklisted else b"allow", b"rw-1"))
            before = self.acks_recorded()
            nas.send(answer(request, Code.COA_ACK))
            deadline = time.monotonic() + 5
            while self.acks_recorded() == before and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(self.acks_recorded(), before + 1, self.server.log_text()[-3000:])
        self.assertTrue({1, 2} & set(deciders), f"no assessment was served by a worker process: {deciders}")
        self.assertEqual(self.udp_nas.received, [], "the NAS's RadSec connection was open")
        log = self.server.log_text()
        self.assertNotIn("not reachable", log)
        self.assertNotIn("sent a decision nac cannot use", log)
