"""The HTTP API end to end: the real ``twistd nac`` with ``transports =
pt-tls, http`` over TLS (Twisted's Agent, the demo CA), against SQLite and
PostgreSQL; real PT-TLS assessments by nac's client decide by the group
policy the API sets.  Every protection has a test that fails without it:
tokens, roles, body size, page size, request rate.

The ``http`` transport is installed for the server's processes as a
distribution would leave it (a .dist-info on PYTHONPATH), so the tests do
not depend on how nac is installed."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from twisted.internet import defer, reactor, ssl
from twisted.trial import unittest
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, readBody
from twisted.web.http_headers import Headers
from twisted.internet.defer import succeed
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from tests.nacserver import REPO, NacServer, free_port, private_postgres_schema, repo_env
from tests.postgres import PostgresUnavailable, postgres_url


def install_http(directory: Path) -> Path:
    """The worktree's ``http`` transport entry point, as an installed
    distribution's .dist-info on a path (nac's own entry points may come
    from another checkout's installation)."""
    info = directory / "nac_http_transport-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nac-http-transport\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[nac.transports]\nhttp = transports.http.plugin:transport\n")
    return directory


@implementer(IBodyProducer)
class Body:
    def __init__(self, data: bytes):
        self.data, self.length = data, len(data)

    def startProducing(self, consumer):
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self):
        pass

    def stopProducing(self):
        pass


class HttpApiServer:
    """A nac server with PT-TLS, the HTTP API and the scanner IMV; tokens
    ``admin``, ``reader`` and ``collector``."""

    sections: dict = {}
    #: other sections of the server's configuration
    other_sections: dict = {}

    def db_url(self) -> str | None:
        return None

    def setUp(self):
        self.base = base = Path(self.mktemp()).resolve()
        base.mkdir(parents=True)
        self.env = repo_env()
        self.env["PYTHONPATH"] = f"{install_http(base / 'site')}{os.pathsep}{self.env['PYTHONPATH']}"
        self.http_port = free_port()
        # a port this test holds open on the host: the endpoints' scanner collectors report it
        self.listener = socket.socket()
        self.listener.bind(("0.0.0.0", 0))  # loopback-only ports are not reported
        self.listener.listen()
        self.addCleanup(self.listener.close)
        self.open_port = self.listener.getsockname()[1]
        nac = {"transports": "pt-tls, http", "imvs": "scanner"}
        if self.db_url():
            nac["db"] = self.db_url()
        sections = {"nac": nac, "http": {"listen": "127.0.0.1", "port": self.http_port, **self.sections},
                    # the configuration's (default group's) port policy: nothing forbidden
                    "imv:scanner": {"closed_port_policy": "no"}, **self.other_sections}
        (base / "nac").mkdir()
        self.server = NacServer(sections, workdir=str(base / "nac"), env={"PYTHONPATH": self.env["PYTHONPATH"]})
        self.admin("init")
        self.tokens = {}
        for name, role in (("admin", "admin"), ("reader", "read"), ("collector", "collector")):
            self.tokens[name] = self.admin("--json", "token", "add", name, "--role", role)["token"]
        for user in ("carol", "dave"):
            self.admin("user", "add", user, "--password", "pw-" + user)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.server.wait_listening(self.http_port)
        ca = ssl.Certificate.loadPEM(self.server.ca.read_bytes())
        self.agent = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=ca))

    def admin(self, *args):
        done = subprocess.run([sys.executable, "-m", "nac.admin", "--config", str(self.server.config), *args],
                              env=self.env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"nac-admin {args} failed: {done.stderr}")
        return json.loads(done.stdout) if "--json" in args else done.stdout

    @defer.inlineCallbacks
    def call(self, method: str, path: str, body=None, token: str | None = "admin", raw: bytes | None = None,
             headers: dict | None = None):
        """(status, decoded JSON or text) of one request."""
        sent = {b"content-type": [b"application/json"]}
        if token is not None:
            sent[b"authorization"] = [b"Bearer " + self.tokens.get(token, token).encode()]
        for key, value in (headers or {}).items():
            sent[key.encode()] = [value.encode()]
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        response = yield self.agent.request(method.encode(), f"https://127.0.0.1:{self.http_port}{path}".encode(),
                                            Headers(sent), Body(data) if data is not None else None)
        text = yield readBody(response)
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = text.decode(errors="replace")
        return response.code, decoded

    def assess(self, user: str) -> str:
        done = self.server.client("--client", user, "--secret", "pw-" + user, "--collectors", "scanner", "--json")
        self.assertEqual(done.returncode, 0, done.stderr + self.server.log_text()[-3000:])
        return json.loads(done.stdout)["recommendation"]

    def add_devices(self, count: int) -> list[str]:
        """``count`` devices written straight into the database; every device id, in id order."""
        url = self.db_url() or f"sqlite:///{self.server.state_dir / 'nac.db'}"
        engine = sa.create_engine(url)
        try:
            with engine.begin() as c:
                for n in range(count):
                    c.exec_driver_sql(
                        "INSERT INTO devices (device_id, first_seen, last_seen, trusted, description) "
                        f"VALUES ('device-{n}', '2026-01-01 00:00:00', '2026-01-01 00:00:00', false, '')")
                return [row[0] for row in c.exec_driver_sql("SELECT device_id FROM devices ORDER BY id")]
        finally:
            engine.dispose()

    def add_accounting(self, session: str = "acct-1", status_type: int = 1) -> int:
        """An accounting session recorded straight into the database, as the RADIUS accounting server does."""
        from nac.db.accounting import AccountingRecord, record_accounting
        from nac.db import PolicyDb, make_engine
        db = PolicyDb(make_engine(self.db_url() or f"sqlite:///{self.server.state_dir / 'nac.db'}"))
        try:
            return db.write(record_accounting, AccountingRecord(
                nas="sw1", nas_address="192.0.2.10", named=True, status_type=status_type, acct_session_id=session,
                user_name="carol", calling_station_id="02-00-00-00-00-01", nas_port=3, input_octets=2 ** 33))
        finally:
            db.engine.dispose()


class HttpApiMixin(HttpApiServer):
    """The group policy through the API, and a test per protection, which
    the ``sections`` of each test case set."""

    # -- the group policy through the API --------------------------------------------------------

    @defer.inlineCallbacks
    def test_a_group_policy_isolates_one_endpoint_and_a_change_applies_to_the_next_assessment(self):
        status, group = yield self.call("POST", "/api/groups", {"name": "lab", "identities": ["dave"]})
        self.assertEqual(status, 201, group)
        status, policy = yield self.call("POST", "/api/policies", {
            "name": "test port closed", "type": "blocked-tcp-ports", "argument": str(self.open_port),
            "rec_fail": "isolate"})
        self.assertEqual(status, 201, policy)
        status, enforcement = yield self.call("POST", "/api/enforcements", {"policy": policy["id"],
                                                                            "group": group["id"]})
        self.assertEqual(status, 201, enforcement)
        # the same run: dave's group forbids the port, carol is in the default group (nothing forbidden)
        self.assertEqual(self.assess("dave"), "Quarantined")
        self.assertEqual(self.assess("carol"), "Access Allowed")
        # another port forbidden: dave passes at the next assessment, no restart
        status, _ = yield self.call("PATCH", f"/api/policies/{policy['id']}", {"argument": str(self.open_port + 1)
                                                                             if self.open_port < 65535 else "1"})
        self.assertEqual(status, 200)
        self.assertEqual(self.assess("dave"), "Access Allowed")
        # and back, blocking this time
        yield self.call("PATCH", f"/api/enforcements/{enforcement['id']}", {"rec_fail": "block"})
        yield self.call("PATCH", f"/api/policies/{policy['id']}", {"argument": str(self.open_port)})
        self.assertEqual(self.assess("dave"), "Access Denied")
        # the sessions say so, newest first, and the audit log names who changed what
        status, sessions = yield self.call("GET", "/api/sessions?identity=dave", token="reader")
        self.assertEqual([s["access"] for s in sessions["items"]], ["denied", "allowed", "isolate"])
        status, audit = yield self.call("GET", "/api/audit", token="reader")
        self.assertEqual([(e["actor"], e["action"], e["resource"]) for e in audit["items"]][:2],
                         [("token:admin", "update", "policy"), ("token:admin", "update", "enforcement")])
        self.assertEqual(audit["total"], 6)

    @defer.inlineCallbacks
    def test_attestation_keys_and_results(self):
        import hashlib

        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from nac.db.attestation import record_attestation
        from nac.ifimv import EvaluationResult

        public = ec.generate_private_key(ec.SECP256R1()).public_key()
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        keyid = hashlib.sha1(der).hexdigest()  # strongSwan's key ID: SHA-1 of the SubjectPublicKeyInfo
        (self.base / "aik.pem").write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                                                serialization.PublicFormat.SubjectPublicKeyInfo))
        [device] = self.add_devices(1)
        self.admin("attest", "aik", "add", str(self.base / "aik.pem"), "--device", device)
        status, aiks = yield self.call("GET", "/api/attestation/aiks", token="reader")
        self.assertEqual(status, 200)
        self.assertEqual([(a["keyid"], a["trusted"], a["device"]) for a in aiks["items"]], [(keyid, False, device)])
        # only an admin trusts a key, and the audit log says who did
        status, body = yield self.call("PATCH", f"/api/attestation/aiks/{keyid}", {"trusted": True}, token="reader")
        self.assertEqual(status, 403, body)
        status, body = yield self.call("PATCH", f"/api/attestation/aiks/{keyid}", {"trusted": "yes"})
        self.assertEqual((status, body["error"]["field"]), (400, "trusted"))
        status, body = yield self.call("PATCH", f"/api/attestation/aiks/{'0' * 40}", {"trusted": True})
        self.assertEqual(status, 404, body)
        status, body = yield self.call("PATCH", f"/api/attestation/aiks/{keyid}", {"trusted": True})
        self.assertEqual((status, body["trusted"]), (200, True))
        self.assertIn(f"{keyid}  yes ", self.admin("attest", "aik", "list"))
        status, audit = yield self.call("GET", "/api/audit", token="reader")
        self.assertEqual((audit["items"][0]["action"], audit["items"][0]["resource"], audit["items"][0]["target"]),
                         ("update", "aik", keyid))
        # results, newest first, of one key or one device
        url = self.db_url() or f"sqlite:///{self.server.state_dir / 'nac.db'}"
        engine = sa.create_engine(url)
        try:
            with engine.begin() as c:
                record_attestation(c, keyid, None, EvaluationResult.COMPLIANT, "quote verified", {"pcrs": [10]})
                record_attestation(c, keyid, None, EvaluationResult.NONCOMPLIANT_MAJOR, "PCR 10 differs", None)
                record_attestation(c, None, None, EvaluationResult.ERROR, "no AIK", None)
        finally:
            engine.dispose()
        status, results = yield self.call("GET", f"/api/attestation/results?aik={keyid}", token="reader")
        self.assertEqual([(r["summary"], r["evaluation"]) for r in results["items"]],
                         [("PCR 10 differs", "non-compliant major"), ("quote verified", "compliant")])
        status, results = yield self.call("GET", f"/api/attestation/results?device={device}&limit=1")
        self.assertEqual([r["summary"] for r in results["items"]], ["PCR 10 differs"])
        status, results = yield self.call("GET", "/api/attestation/results")
        self.assertEqual(len(results["items"]), 3)

    # -- protections ------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_tokens_are_required_and_checked(self):
        status, body = yield self.call("GET", "/api/groups", token=None)
        self.assertEqual((status, body["error"]["code"]), (401, "unauthorized"))
        status, body = yield self.call("GET", "/api/groups", token="nac_not-a-token")
        self.assertEqual(status, 401)
        status, body = yield self.call("GET", "/api/groups", token="reader")
        self.assertEqual((status, [g["name"] for g in body["items"]]), (200, ["default"]))
        self.admin("token", "revoke", "reader")
        status, _ = yield self.call("GET", "/api/groups", token="reader")
        self.assertEqual(status, 401)

    @defer.inlineCallbacks
    def test_a_read_only_token_cannot_write(self):
        for method, path, body in (("POST", "/api/groups", {"name": "x"}),
                                   ("PATCH", "/api/settings", {"default_group": "default"}),
                                   ("POST", "/api/policies", {"name": "p", "type": "default-password"}),
                                   ("POST", "/api/swid/add-tags/", {"data": ["<x/>"]})):
            status, answer = yield self.call(method, path, body, token="reader")
            self.assertEqual((status, answer["error"]["code"]), (403, "forbidden"), path)
        # a collector token may post measurements, nothing else
        status, _ = yield self.call("POST", "/api/groups", {"name": "x"}, token="collector")
        self.assertEqual(status, 403)
        status, _ = yield self.call("GET", "/api/groups", token="collector")
        self.assertEqual(status, 403)
        status, groups = yield self.call("GET", "/api/groups")
        self.assertEqual([g["name"] for g in groups["items"]], ["default"])

    @defer.inlineCallbacks
    def test_bad_values_are_400_naming_the_field(self):
        status, body = yield self.call("POST", "/api/groups", {"name": "g", "vlan_isolate": 5000})
        self.assertEqual((status, body["error"]["field"]), (400, "vlan_isolate"))
        status, body = yield self.call("POST", "/api/policies", {"name": "p", "type": "open-tcp-ports",
                                                                 "argument": "22 99999"})
        self.assertEqual((status, body["error"]["field"]), (400, "argument"))
        status, body = yield self.call("POST", "/api/groups", raw=b"{not json")
        self.assertEqual((status, body["error"]["field"]), (400, "body"))
        status, body = yield self.call("GET", "/api/sessions?since=yesterday")
        self.assertEqual((status, body["error"]["field"]), (400, "since"))

    @defer.inlineCallbacks
    def test_request_bodies_are_limited(self):
        limit = 4096
        status, body = yield self.call("POST", "/api/groups", raw=json.dumps(
            {"name": "big", "description": "x" * (limit + 1)}).encode())
        self.assertEqual((status, body["error"]["code"]), (413, "too_large"))
        small = json.dumps({"name": "small", "description": "x" * 100}).encode()
        self.assertLessEqual(len(small), limit)
        status, _ = yield self.call("POST", "/api/groups", raw=small)
        self.assertEqual(status, 201)

    @defer.inlineCallbacks
    def test_pages_are_limited_and_exact(self):
        # the API pages devices in id order
        expected = self.add_devices(7)
        status, page = yield self.call("GET", "/api/devices?limit=3&offset=2", token="reader")
        self.assertEqual((status, page["total"]), (200, 7))
        self.assertEqual([d["device_id"] for d in page["items"]], expected[2:5])
        status, body = yield self.call("GET", "/api/devices?limit=51", token="reader")
        self.assertEqual((status, body["error"]["field"]), (400, "limit"))
        status, page = yield self.call("GET", "/api/devices?limit=50", token="reader")
        self.assertEqual(len(page["items"]), 7)


class SqliteHttpApiTests(HttpApiMixin, unittest.TestCase):
    timeout = 180
    sections = {"max_body_size": 4096, "max_page_size": 50, "rate_limit": 1, "rate_burst": 5}

    def setUp(self):
        if self._testMethodName in ("test_a_group_policy_isolates_one_endpoint_and_a_change_applies_to_the_next_"
                                    "assessment", "test_attestation_keys_and_results"):
            self.sections = {**self.sections, "rate_limit": 50, "rate_burst": 100}
        super().setUp()

    # the rate limit does not touch the database: tested on SQLite only
    @defer.inlineCallbacks
    def test_requests_per_token_are_limited(self):
        codes = []
        for _ in range(8):
            status, _ = yield self.call("GET", "/api/settings", token="reader")
            codes.append(status)
        # a burst of 5, then at most 1 a second more: the last ones wait
        self.assertEqual(codes[:5], [200] * 5)
        self.assertIn(429, codes[5:])
        # another token has its own bucket
        status, _ = yield self.call("GET", "/api/settings", token="admin")
        self.assertEqual(status, 200)


class PostgresHttpApiTests(HttpApiMixin, unittest.TestCase):
    timeout = 180
    sections = {"max_body_size": 4096, "max_page_size": 50, "rate_limit": 50, "rate_burst": 100}

    def db_url(self):
        if not hasattr(self, "_url"):
            try:
                base = postgres_url()
            except PostgresUnavailable as why:
                raise unittest.SkipTest(str(why))
            self._url, drop = private_postgres_schema(base, "nac_http")
            self.addCleanup(drop)
        return self._url

    @defer.inlineCallbacks
    def test_a_policy_changed_through_the_api_applies_in_another_nac_on_the_database(self):
        # a second nac (PT-TLS only, its own state directory and demo CA) on the same PostgreSQL
        (self.base / "second").mkdir()
        second = NacServer({"nac": {"transports": "pt-tls", "imvs": "scanner", "db": self.db_url(),
                                    "instance": "second"},
                            "imv:scanner": {"closed_port_policy": "no"}},
                           workdir=str(self.base / "second"))
        second.start()
        self.addCleanup(second.stop)

        def assess_there(user: str) -> str:
            done = second.client("--client", user, "--secret", "pw-" + user, "--collectors", "scanner", "--json")
            self.assertEqual(done.returncode, 0, done.stderr + second.log_text()[-3000:])
            return json.loads(done.stdout)["recommendation"]

        self.assertEqual(assess_there("dave"), "Access Allowed")
        status, group = yield self.call("POST", "/api/groups", {"name": "lab", "identities": ["dave"]})
        self.assertEqual(status, 201, group)
        status, policy = yield self.call("POST", "/api/policies", {
            "name": "test port closed", "type": "blocked-tcp-ports", "argument": str(self.open_port),
            "rec_fail": "isolate"})
        self.assertEqual(status, 201, policy)
        status, _ = yield self.call("POST", "/api/enforcements", {"policy": policy["id"], "group": group["id"]})
        self.assertEqual(status, 201)
        # no restart, no signal: the other process reads the change at its next assessment
        self.assertEqual(assess_there("dave"), "Quarantined")
        self.assertEqual(assess_there("carol"), "Access Allowed")
        status, _ = yield self.call("PATCH", f"/api/policies/{policy['id']}", {"rec_fail": "block"})
        self.assertEqual(status, 200)
        self.assertEqual(assess_there("dave"), "Access Denied")
        status, sessions = yield self.call("GET", "/api/sessions?identity=dave", token="reader")
        self.assertEqual([s["access"] for s in sessions["items"]], ["denied", "isolate", "allowed"])


class SchemaAndCollectorTests(HttpApiServer, unittest.TestCase):
    """The OpenAPI document against the running server (schemathesis), and
    sw-collector's requests as strongTNC's API code reads them (there is no
    capture of sw-collector's bytes in tests/data/vectors: the bodies are
    the JSON its REST client posts, per strongTNC's views)."""

    timeout = 600
    sections = {"max_body_size": 1024 * 1024, "max_page_size": 100, "rate_limit": 0}

    def test_schemathesis_finds_no_server_error_and_no_response_outside_the_schema(self):
        if shutil.which("schemathesis") is None:
            import importlib.util
            if importlib.util.find_spec("schemathesis") is None:
                raise unittest.SkipTest("schemathesis is not installed (pip install '.[test]')")
        # a device and a session for the operations on one (reached through the document's links)
        self.add_devices(1)
        self.add_accounting()
        self.assertEqual(self.assess("carol"), "Access Allowed")
        command = [shutil.which("schemathesis") or "schemathesis", "run",
                   f"https://127.0.0.1:{self.http_port}/api/openapi.json",
                   "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,"
                               "content_type_conformance",
                   "-H", f"Authorization: Bearer {self.tokens['admin']}", "--tls-verify", str(self.server.ca),
                   "-n", "15", "--phases", "examples,coverage,fuzzing,stateful", "--request-timeout", "20"]
        # in a directory of the test's: schemathesis keeps a cache (.schemathesis/) where it runs
        done = subprocess.run(command, capture_output=True, text=True, timeout=540, env=self.env, cwd=self.base)
        self.assertEqual(done.returncode, 0, done.stdout[-6000:] + done.stderr[-2000:]
                         + self.server.log_text()[-3000:])

    @defer.inlineCallbacks
    def test_accounting_sessions_are_listed_read_only(self):
        row = self.add_accounting("acct-open")
        self.add_accounting("acct-done")
        self.add_accounting("acct-done", status_type=2)
        status, body = yield self.call("GET", "/api/accounting", token="reader")
        self.assertEqual(status, 200, body)
        self.assertEqual((body["total"], [i["acct_session_id"] for i in body["items"]]),
                         (2, ["acct-done", "acct-open"]))
        status, body = yield self.call("GET", "/api/accounting?open=true&nas=sw1", token="reader")
        [item] = body["items"]
        self.assertEqual((item["id"], item["status"], item["nas_port"], item["input_octets"], item["user_name"]),
                         (row, "started", 3, 2 ** 33, "carol"))
        self.assertTrue(item["started"].endswith("Z") or "+" in item["started"], item["started"])
        status, body = yield self.call("GET", "/api/accounting?open=maybe", token="reader")
        self.assertEqual((status, body["error"]["field"]), (400, "open"))
        status, _ = yield self.call("POST", "/api/accounting", {}, token="admin")
        self.assertIn(status, (404, 405))
        status, _ = yield self.call("GET", "/api/accounting", token=None)
        self.assertEqual(status, 401)

    @defer.inlineCallbacks
    def test_sw_collector_uploads_with_strongtncs_shapes_and_basic_auth(self):
        tag = ('<?xml version="1.0" encoding="UTF-8"?>\n<SoftwareIdentity xmlns="http://standards.iso.org/iso/'
               '19770/-2/2015/schema.xsd" name="bash" tagId="Debian_12-x86_64-bash-5.2.15-2+b8" '
               'version="5.2.15-2+b8" versionScheme="alphanumeric"><Entity name="strongSwan Project" '
               'regid="strongswan.org" role="tagCreator"/></SoftwareIdentity>')
        software_id = "strongswan.org__Debian_12-x86_64-bash-5.2.15-2+b8"
        basic = "Basic " + base64.b64encode(f"collector:{self.tokens['collector']}".encode()).decode()
        # no credentials: refused
        status, _ = yield self.call("POST", "/api/swid/add-tags/", {"data": [tag]}, token=None)
        self.assertEqual(status, 401)
        self.assertEqual(self.assess("carol"), "Access Allowed")  # a session to report on
        status, sessions = yield self.call("GET", "/api/sessions", token="reader")
        sid = sessions["items"][0]["id"]
        status, body = yield self.call("POST", f"/api/sessions/{sid}/swid-measurement/", {"data": [software_id]},
                                       token=None, headers={"Authorization": basic})
        self.assertEqual((status, body), (412, [software_id]))
        status, body = yield self.call("POST", "/api/swid/add-tags/", {}, token=None,
                                       headers={"Authorization": basic})
        self.assertEqual((status, body), (400, {"detail": 'Missing "data" parameter'}))
        status, body = yield self.call("POST", "/api/swid/add-tags/", {"data": ["<not xml"]}, token=None,
                                       headers={"Authorization": basic})
        self.assertEqual((status, body), (400, {"detail": "Invalid XML"}))
        status, body = yield self.call("POST", "/api/swid/add-tags/", {"data": [tag]}, token=None,
                                       headers={"Authorization": basic})
        self.assertEqual((status, body), (200, {"detail": "Added 1 SWID tags, replaced 0 SWID tags."}))
        status, body = yield self.call("POST", f"/api/sessions/{sid}/swid-measurement/", {"data": [software_id]},
                                       token=None, headers={"Authorization": basic})
        self.assertEqual((status, body), (200, []))
        status, body = yield self.call("POST", "/api/sessions/999999/swid-events/", {
            "epoch": 1, "lastEid": 2, "events": [{"eid": 2, "timestamp": "2026-12-14T08:00:00Z", "recordId": 1,
                                                  "sourceId": 1, "action": 1, "softwareId": software_id}]},
            token=None, headers={"Authorization": basic})
        self.assertEqual((status, body), (404, {"detail": 'Session with id "999999" not found'}))
        status, tags = yield self.call("GET", f"/api/swid-tags?software_id={software_id.replace('+', '%2B')}",
                                       token="reader")
        self.assertEqual([t["has_tag"] for t in tags["items"]], [True])
