"""The OS and Scanner IMVs end to end: the real server (`twistd -n nac`)
with its embedded SQLite policy database, its package policy set with the
real `nac-admin`, and the real `nac-pt-tls-client` assessing this host.

Server, client and the ports they see live in a network namespace the
test creates, so the Scanner judges only the ports the test opens (the
host's own listeners are not in it) and nothing listens beyond it.  The
package policy is this host's own `dpkg-query -W` listing, so the host is
compliant until the test blacklists one of its packages.
"""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import time

from twisted.trial import unittest

from nac.client.collectors.os import read_os_info
from nac.db import PolicyDb, make_engine
from nac.ifimv import ActionRecommendation as A
from nac.ifimv import EvaluationResult as E
from tests.nacserver import NacServer, listen_in_netns, make_netns, netns_unavailable, private_postgres_schema
from tests.postgres import PostgresUnavailable, postgres_url

PASSWORD = "carol's e2e password"
#: the port the Scanner policy forbids (the example of the issue)
FORBIDDEN_PORT = 41963


def _netns_unavailable() -> str | None:
    why = netns_unavailable()
    if why is None and (shutil.which("dpkg-query") is None or read_os_info() is None):
        why = "not a Debian host: no dpkg-query or os-release"
    return why


class OsScannerEndToEndTests(unittest.TestCase):
    server: NacServer | None = None
    product: str = ""
    #: the server's database URL; empty: its embedded SQLite file
    db_url: str = ""

    @classmethod
    def database_url(cls) -> str:
        return ""

    def setUp(self):
        cls = type(self)
        if cls.server is not None:
            return
        why = _netns_unavailable()
        if why:
            raise unittest.SkipTest(why)
        netns = make_netns("nac-e2e-imvs")

        cls.db_url = cls.database_url()
        server = NacServer(netns=netns, sections={
            "nac": {"imvs": "imvs.os:OsImv, imvs.scanner:ScannerImv",
                    **({"db": cls.db_url} if cls.db_url else {})},
            # inside the namespace: reachable from nowhere else
            "pt-tls": {"listen": "0.0.0.0"},
            "imv:os": {"non_compliant_major": "isolate"},
            # strongSwan's open-port policy: only the listed port is forbidden
            "imv:scanner": {"closed_port_policy": "no", "tcp_ports": str(FORBIDDEN_PORT)},
        })
        if cls.db_url:
            server.admin("init")  # a server database's schema belongs to nac-admin
        # the server creates its SQLite database; nac-admin writes beside it
        cls.server = server.start()
        atexit.register(shutil.rmtree, server.dir, True)
        atexit.register(server.stop)
        server.admin("user", "add", "carol", "--password", PASSWORD)
        info = read_os_info()
        cls.product = f"{info.name} {info.version_string}"
        listing = server.dir / "dpkg-query.txt"
        listing.write_text(subprocess.run(["dpkg-query", "-W"], capture_output=True, text=True,
                                          check=True).stdout)
        server.admin("packages", "import", "--product", cls.product, str(listing))

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def assess(self) -> dict:
        done = self.server.client("--client", "carol", "--secret", PASSWORD, "--collectors", "os,scanner",
                                  "--json")
        self.assertEqual(done.returncode, 0, done.stderr + self.server.log_text()[-3000:])
        return json.loads(done.stdout)

    def db(self) -> PolicyDb:
        """The server's policy database, opened beside it."""
        db = PolicyDb(make_engine(self.db_url or f"sqlite:///{self.server.state_dir / 'nac.db'}"))
        self.addCleanup(db.engine.dispose)
        return db

    def newest_results(self) -> dict:
        """What the server recorded of the newest assessment (the decision
        is written just after the result is sent)."""
        db = self.db()
        for _ in range(100):
            [newest] = db.list_sessions(1)
            if newest.ended is not None:
                break
            time.sleep(0.05)
        session, results = db.session_results(newest.id)
        return {r.imv_name: r for r in results} | {"session": session}

    def listen_on(self, port: int) -> None:
        listen_in_netns(self, self.server.netns, port)

    def test_clean_host_is_allowed(self):
        result = self.assess()
        self.assertEqual((result["recommendation"], result["assessment"]), ("Access Allowed", "compliant"))
        self.assertEqual(result["reasons"], [])
        self.assertEqual(sorted((r["imc"], r["assessment"]) for r in result["imv_results"]),
                         [("OS", "compliant"), ("Scanner", "compliant")])
        recorded = self.newest_results()
        self.assertEqual((recorded["os"].recommendation, recorded["scanner"].recommendation),
                         (A.ALLOW, A.ALLOW))
        self.assertEqual(recorded["session"].access, "allowed")
        self.assertIsNotNone(recorded["session"].device)
        self.assertIn(self.product, [d.product for d in self.db().list_devices()])

    def test_forbidden_open_port_denies_access_with_reason_and_remediation(self):
        self.listen_on(FORBIDDEN_PORT)
        result = self.assess()
        self.assertEqual((result["recommendation"], result["assessment"]), ("Access Denied", "non-compliant minor"))
        self.assertEqual(result["reasons"], [{"text": "Open server ports were detected", "language": "en"}])
        [remediation] = result["remediation"]
        self.assertIn(f"<item>tcp/{FORBIDDEN_PORT}</item>", remediation["text"])
        self.assertTrue(remediation["text"].startswith('<?xml version="1.0" encoding="UTF-8"?>\n'
                                                       "<remediationinstructions>"))
        [scanner] = [r for r in result["imv_results"] if r["imc"] == "Scanner"]
        self.assertEqual((scanner["assessment"], scanner["remediation"]),
                         ("non-compliant minor", [remediation["text"]]))
        recorded = self.newest_results()
        self.assertEqual((recorded["scanner"].recommendation, recorded["scanner"].evaluation),
                         (A.NO_ACCESS, E.NONCOMPLIANT_MINOR))
        self.assertIn(f"tcp/{FORBIDDEN_PORT}", recorded["scanner"].remediation)
        self.assertEqual(recorded["os"].evaluation, E.COMPLIANT)
        self.assertIn(f"violating tcp ports: {FORBIDDEN_PORT}", self.server.log_text())

    def test_blacklisted_package_isolates_the_host(self):
        self.server.admin("packages", "blacklist", "bash", "--product", self.product)
        self.addCleanup(self.db().blacklist_package, self.product, "bash", blacklisted=False)
        result = self.assess()
        # [imv:os] non_compliant_major = isolate
        self.assertEqual((result["recommendation"], result["assessment"]),
                         ("Quarantined", "non-compliant major"))
        self.assertEqual([r["text"] for r in result["reasons"]],
                         ["Vulnerable or blacklisted software packages were found"])
        [remediation] = result["remediation"]
        self.assertIn("<title>Blacklisted Software Packages</title>", remediation["text"])
        self.assertIn("<item>bash</item>", remediation["text"])
        recorded = self.newest_results()
        self.assertEqual((recorded["os"].recommendation, recorded["session"].access), (A.ISOLATE, "isolate"))

    def test_without_collectors_there_is_no_recommendation(self):
        done = self.server.client("--client", "carol", "--secret", PASSWORD, "--collectors", "", "--json")
        self.assertEqual(done.returncode, 0, done.stderr)
        result = json.loads(done.stdout)
        # both IMVs asked once, nobody answered: no recommendation, which is Access Denied
        self.assertEqual((result["recommendation"], result["assessment"]), ("Access Denied", "don't know"))
        recorded = self.newest_results()
        self.assertEqual((recorded["os"].recommendation, recorded["scanner"].recommendation),
                         (A.NO_RECOMMENDATION, A.NO_RECOMMENDATION))


class PostgresOsScannerEndToEndTests(OsScannerEndToEndTests):
    """The same, with the server's policy database on PostgreSQL (a schema of
    its own in the tests' PostgreSQL database, see tests/postgres.py, reached
    through its Unix socket from inside the namespace)."""

    server = None

    @classmethod
    def database_url(cls) -> str:
        import sqlalchemy as sa

        try:
            base = postgres_url()
        except PostgresUnavailable as why:
            raise unittest.SkipTest(str(why))
        url = sa.make_url(base)
        if not url.query.get("host", "").startswith("/"):
            raise unittest.SkipTest("the server runs in a network namespace: NAC_TEST_POSTGRES_URL must "
                                    "reach PostgreSQL through its Unix socket (?host=/var/run/postgresql)")
        private, drop = private_postgres_schema(base, "nac_e2e")
        atexit.register(drop)
        return private
