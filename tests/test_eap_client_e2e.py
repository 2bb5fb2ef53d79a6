"""The real `nac-eap-client` against the real server (`twistd -n nac`) over RADIUS.

One server per class, with its embedded SQLite policy database and a user
added by the real `nac-admin` (its password also sealed as the EAP secret,
for EAP-MD5 and EAP-MSCHAPv2).  Every test runs the client program as a
subprocess and checks what it printed, its exit status and what the server
logged or recorded.

The Scanner policy that forbids every open port runs in a network
namespace the test creates: there the only reachable listener is the one
the test opens (the host's own services are not in it), and the server and
client listen on the namespace's loopback only, which the Scanner
collector leaves out.
"""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from twisted.trial import unittest

from nac.certs import ensure_demo_pki, issue_certificate
from tests.nacserver import NacServer, free_port, listen_in_netns, make_netns, repo_env

PASSWORD = "carol's radius password"
SECRET = "nas-shared-secret"
FORBIDDEN_PORT = 41963


def radius_sections(port: int, **extra) -> dict:
    sections = {
        "nac": {"transports": "pt-tls,radius", "imvs": "imvs.scanner:ScannerImv"},
        "pt-tls": {"listen": "127.0.0.1", "workers": "1"},
        "radius": {"listen": "127.0.0.1", "port": port, "secret": SECRET, "clients": "127.0.0.1/32",
                   "vlan_allow": "10", "vlan_isolate": "20"},
        "eap": {"tnc": "pt-eap"},
    }
    for section, values in extra.items():
        sections.setdefault(section, {}).update(values)
    return sections


def eap_client_argv(port: int, ca, *args: str) -> list[str]:
    return [sys.executable, "-m", "nac.client.eap_cli", "--server", f"127.0.0.1:{port}", "--secret", SECRET,
            "--identity", "carol", "--cacert", str(ca), *args]


class EapClientEndToEndTests(unittest.TestCase):
    """Authentication and the allow decision, in the host's network namespace."""

    server: NacServer | None = None
    radius_port = 0

    def setUp(self):
        cls = type(self)
        if cls.server is None:
            cls.radius_port = free_port(socket.SOCK_DGRAM)
            # an open-port policy with no port listed: every host is compliant
            server = NacServer(radius_sections(cls.radius_port, **{"imv:scanner": {"closed_port_policy": "no"}}))
            cls.server = server.start()
            atexit.register(shutil.rmtree, server.dir, True)
            atexit.register(server.stop)
            server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def client(self, *args: str, password: str = PASSWORD, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(eap_client_argv(self.radius_port, self.server.ca, "--password", password, *args),
                              env=repo_env(), capture_output=True, text=True, timeout=timeout)

    def client_json(self, *args: str, **kw) -> dict:
        done = self.client(*args, "--json", **kw)
        self.assertEqual(done.returncode, 0, done.stderr + self.server.log_text()[-3000:])
        return json.loads(done.stdout)

    def test_each_inner_method_is_accepted_with_matching_mppe_keys_and_the_allow_enforcement(self):
        for inner in ("pap", "md5", "mschapv2"):
            result = self.client_json("--inner", inner, "--collectors", "os,scanner")
            self.assertEqual(set(result), {"recommendation", "assessment", "reasons", "remediation",
                                           "imv_results", "radius"}, inner)
            radius = result["radius"]
            self.assertEqual((radius["code"], radius["eap"], radius["mppe_keys_ok"]),
                             ("Access-Accept", "success", True), inner)
            attributes = radius["attributes"]
            self.assertEqual(attributes["Filter-Id"], "allow", inner)
            self.assertEqual((attributes["Tunnel-Type"], attributes["Tunnel-Medium-Type"],
                              attributes["Tunnel-Private-Group-Id"]), ("VLAN", "IEEE-802", "10"), inner)
            self.assertEqual(attributes["User-Name"], "carol")
            self.assertEqual((result["recommendation"], result["assessment"]), ("Access Allowed", "compliant"), inner)
            self.assertEqual([r["imc"] for r in result["imv_results"]], ["Scanner"], inner)
        log = self.server.log_text()
        for how in ("PAP", "EAP_MD5", "EAP_MSCHAPV2"):
            self.assertIn(f"EAP_TTLS phase2 authentication of 'carol' with {how} successful", log)
        self.assertIn("sending RADIUS Access-Accept for 'carol' to client '127.0.0.1': access allowed: "
                      "Filter-Id 'allow', VLAN '10'", log)

    def test_text_output(self):
        done = self.client("--collectors", "scanner")
        self.assertEqual(done.returncode, 0, done.stderr)
        for line in ("RADIUS Access-Accept after 8 round trips", "EAP EAP_TTLS: success", "  Filter-Id = allow",
                     "  Tunnel-Type:1 = VLAN", "MPPE keys OK", "access recommendation: Access Allowed"):
            self.assertIn(line, done.stdout)
        self.assertNotIn(PASSWORD, done.stdout + done.stderr)

    def test_assessment_is_recorded_for_the_radius_transport(self):
        self.client_json("--inner", "pap", "--collectors", "scanner")
        newest = json.loads(self.server.admin("sessions", "list", "--limit", "1", "--json"))[0]
        self.assertEqual((newest["identity"], newest["transport"], newest["auth_method"], newest["access"]),
                         ("carol", "radius", "eap-ttls/pap", "allowed"))

    def test_wrong_password_is_access_reject(self):
        for inner in ("pap", "md5"):
            result = self.client_json("--inner", inner, password="not carol's password")
            self.assertEqual((result["radius"]["code"], result["radius"]["eap"]), ("Access-Reject", "failure"))
            self.assertIsNone(result["recommendation"])  # no posture exchange before the authentication
            self.assertEqual(result["radius"]["attributes"], {})

    def test_endpoint_refusing_the_posture_exchange_is_rejected(self):
        result = self.client_json("--tnc", "none")
        self.assertEqual(result["radius"]["code"], "Access-Reject")
        self.assertIn("refused EAP_PT_EAP", self.server.log_text())

    def test_wrong_shared_secret_gets_no_reply(self):
        argv = eap_client_argv(self.radius_port, self.server.ca, "--password", PASSWORD, "--timeout", "3",
                               "--retransmit", "0.5")
        argv[argv.index(SECRET)] = "not the secret"
        done = subprocess.run(argv, env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 6, done.stderr)
        self.assertEqual(done.stdout, "")
        self.assertEqual(len(done.stderr.strip().splitlines()), 1)
        self.assertIn("nac-eap-client: no ", done.stderr)
        self.assertIn("bad Message-Authenticator", self.server.log_text())

    def test_server_certificate_from_another_ca_is_refused(self):
        other = ensure_demo_pki(self.server.dir / f"other-{uuid.uuid4().hex[:6]}")
        argv = eap_client_argv(self.radius_port, other.ca_cert, "--password", PASSWORD)
        done = subprocess.run(argv, env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 3, done.stdout + done.stderr)
        self.assertIn("certificate verify failed", done.stderr)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1)

    def test_server_name_mismatch_is_refused(self):
        done = self.client("--server-name", "radius.example.org")
        self.assertEqual(done.returncode, 3, done.stdout + done.stderr)
        self.assertIn("not for 'radius.example.org'", done.stderr)
        self.assertEqual(self.client("--server-name", "nac.test", "--collectors", "").returncode, 0)

    def test_no_server_is_a_one_line_error(self):
        port = free_port(socket.SOCK_DGRAM)
        done = subprocess.run(eap_client_argv(port, self.server.ca, "--password", PASSWORD, "--timeout", "5"),
                              env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 3, done.stderr)
        self.assertEqual(done.stderr, f"nac-eap-client: no RADIUS server at 127.0.0.1[{port}] (port unreachable)\n")

    def test_bad_arguments(self):
        done = self.client("--inner", "chap")
        self.assertEqual(done.returncode, 2)
        done = self.client("--collectors", "nonesuch")
        self.assertEqual(done.returncode, 2)
        done = subprocess.run(eap_client_argv(self.radius_port, "/nonexistent/ca.pem", "--password", PASSWORD),
                              env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 2)
        self.assertIn("/nonexistent/ca.pem", done.stderr)


class ServerNameTests(unittest.TestCase):
    """The EAP-TTLS server certificate must name the server: by default the
    host of ``--server``.  This server's names only radius.example.org,
    issued by its own CA, as a rogue server holding any certificate from
    the CA the client trusts would."""

    server: NacServer | None = None

    def setUp(self):
        cls = type(self)
        if cls.server is None:
            cls.radius_port = free_port(socket.SOCK_DGRAM)
            work = Path(tempfile.mkdtemp(prefix="nac-e2e-"))
            pki = ensure_demo_pki(work / "state")  # the server's own demo CA, made before it starts
            cert, key = work / "radius.pem", work / "radius.key"
            issue_certificate(pki.ca_cert, pki.ca_key, "radius.example.org", cert, key, client=False,
                              san_dns=["radius.example.org"])
            server = NacServer(radius_sections(cls.radius_port, eap={"cert": cert, "key": key},
                                               **{"imv:scanner": {"closed_port_policy": "no"}}), workdir=str(work))
            cls.server = server.start()
            atexit.register(shutil.rmtree, server.dir, True)
            atexit.register(server.stop)
            server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")

    def client(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(eap_client_argv(self.radius_port, self.server.ca, "--password", PASSWORD,
                                              "--collectors", "scanner", "--inner", "pap", *args),
                              env=repo_env(), capture_output=True, text=True, timeout=60)

    def test_by_default_the_certificate_must_name_the_server_host(self):
        done = self.client()
        self.assertEqual(done.returncode, 3, done.stdout + done.stderr)
        self.assertIn("the server certificate is not for '127.0.0.1'", done.stderr)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1)
        # it never saw the password: the tunnel ended before phase 2
        self.assertNotIn("phase2 authentication of 'carol'", self.server.log_text())

    def test_the_name_it_carries_is_accepted(self):
        done = self.client("--server-name", "radius.example.org")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("access recommendation: Access Allowed", done.stdout)

    def test_the_check_can_be_turned_off_but_not_with_a_name(self):
        done = self.client("--no-server-name-check")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertEqual(self.client("--no-server-name-check", "--server-name", "x").returncode, 2)


# -- the Scanner policy, in a network namespace -----------------------------------------------------


class OpenPortPolicyTests(unittest.TestCase):
    """A closed-port Scanner policy with no port allowed: an open port is a
    minor violation, isolated by one server and denied by the other."""

    netns: str | None = None
    servers: dict = {}

    def setUp(self):
        cls = type(self)
        if cls.netns is None:
            netns = make_netns("nac-e2e-eap")
            cls.netns = netns
            servers = {}
            for name, minor in (("isolate", "isolate"), ("deny", "no-access")):
                port = free_port(socket.SOCK_DGRAM)
                server = NacServer(radius_sections(port, **{"imv:scanner": {
                    "closed_port_policy": "yes", "non_compliant_minor": minor}}), netns=netns)
                server.radius_port = port
                server.start()
                atexit.register(shutil.rmtree, server.dir, True)
                atexit.register(server.stop)
                server.admin("user", "add", "carol", "--password", PASSWORD)
                servers[name] = server
            cls.servers = servers

    def tearDown(self):
        for server in self.servers.values():
            self.assertTrue(server.alive(), server.log_text()[-4000:])

    def assess(self, name: str) -> dict:
        server = self.servers[name]
        argv = eap_client_argv(server.radius_port, server.ca, "--password", PASSWORD, "--inner", "pap",
                               "--collectors", "os,scanner", "--json")
        done = subprocess.run(server.in_netns(argv), env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr + server.log_text()[-3000:])
        return json.loads(done.stdout)

    def listen_on(self, port: int) -> None:
        listen_in_netns(self, self.netns, port)

    def test_no_open_port_is_allowed(self):
        result = self.assess("deny")
        self.assertEqual((result["radius"]["code"], result["recommendation"]), ("Access-Accept", "Access Allowed"))
        self.assertEqual(result["radius"]["attributes"]["Filter-Id"], "allow")

    def test_forbidden_open_port_is_isolated_with_the_reason(self):
        self.listen_on(FORBIDDEN_PORT)
        result = self.assess("isolate")
        radius = result["radius"]
        self.assertEqual((radius["code"], radius["mppe_keys_ok"]), ("Access-Accept", True))
        self.assertEqual(radius["attributes"]["Filter-Id"], "isolate")
        self.assertEqual(radius["attributes"]["Tunnel-Private-Group-Id"], "20")
        self.assertEqual((result["recommendation"], result["assessment"]), ("Quarantined", "non-compliant minor"))
        self.assertIn("Open server ports were detected", [r["text"] for r in result["reasons"]])
        scanner = [r for r in result["imv_results"] if r["imc"] == "Scanner"][0]
        self.assertIn(f"tcp/{FORBIDDEN_PORT}", " ".join(scanner["remediation"]))

    def test_forbidden_open_port_is_rejected_by_the_no_access_policy(self):
        self.listen_on(FORBIDDEN_PORT)
        result = self.assess("deny")
        self.assertEqual((result["radius"]["code"], result["radius"]["eap"]), ("Access-Reject", "failure"))
        self.assertEqual(result["radius"]["attributes"], {})
        self.assertEqual(result["recommendation"], "Access Denied")
        self.assertIn("Open server ports were detected", [r["text"] for r in result["reasons"]])
        self.assertIn("sending RADIUS Access-Reject for 'carol'", self.servers["deny"].log_text())
