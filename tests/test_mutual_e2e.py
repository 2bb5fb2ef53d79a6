"""Mutual PB-TNC end to end: the real server (`twistd -n nac`, ``[nac]
mutual = yes``) and the real clients (`nac-pt-tls-client --mutual`,
`nac-eap-client --mutual`), each side judging the other's host (here both
are this host) in one PB-TNC connection, over PT-TLS and over RADIUS
(EAP-TTLS ▸ PT-EAP).  Also: clients that do not ask get what they always
got, and a server that does not take part is reported as such.

The server decides about the endpoint with the Scanner IMV under a policy
that accepts every open port (its verdict does not depend on this host);
the client judges the server's host with the OS IMV, whose verdict on this
host's IP forwarding setting the test reads itself.
"""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import subprocess
from pathlib import Path

from twisted.trial import unittest

from tests.nacserver import NacServer, free_port, repo_env
from tests.test_eap_client_e2e import eap_client_argv, radius_sections

PASSWORD = "carol's mutual password"


def verdict_on_this_host() -> tuple[str, str, str]:
    """What the OS IMV (default options, no policy database) says of this
    host: (assessment, IMV recommendation, access recommendation)."""
    forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    if forwarding == "0":
        return "compliant", "allow", "Access Allowed"
    return "non-compliant minor", "no access", "Access Denied"


class ServerPerClass(unittest.TestCase):
    """One server for the class, PT-TLS and RADIUS, ``[nac]`` as ``NAC`` says."""

    NAC: dict = {}
    server: NacServer | None = None
    radius_port = 0

    def setUp(self):
        cls = type(self)
        if cls.server is None:
            cls.radius_port = free_port(socket.SOCK_DGRAM)
            sections = radius_sections(cls.radius_port, nac=cls.NAC, **{"imv:scanner": {"closed_port_policy": "no"}})
            cls.server = NacServer(sections).start()
            atexit.register(shutil.rmtree, cls.server.dir, True)
            atexit.register(cls.server.stop)
            cls.server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")


class MutualEndToEndTests(ServerPerClass):
    NAC = {"mutual": "yes", "mutual_collectors": "os"}

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def pt_tls(self, *args: str) -> subprocess.CompletedProcess:
        done = self.server.client("--client", "carol", "--secret", PASSWORD, "--collectors", "scanner", *args)
        self.assertEqual(done.returncode, 0, done.stderr + self.server.log_text()[-3000:])
        return done

    def eap(self, *args: str) -> dict:
        done = subprocess.run(eap_client_argv(self.radius_port, self.server.ca, "--password", PASSWORD,
                                              "--collectors", "scanner", "--json", *args),
                              env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr + self.server.log_text()[-3000:])
        return json.loads(done.stdout)

    def assert_verdict_on_the_server(self, mutual: dict) -> None:
        assessment, imv_recommendation, recommendation = verdict_on_this_host()
        self.assertEqual(mutual["agreed"], True)
        self.assertEqual((mutual["assessment"], mutual["recommendation"]), (assessment, recommendation))
        self.assertEqual(mutual["imv_results"], [{"imv_id": 1, "imv": "os", "recommendation": imv_recommendation,
                                                  "assessment": assessment}])
        self.assertNotIn("error", mutual)

    def test_over_pt_tls(self):
        before = self.server.log_text().count("activating mutual PB-TNC half duplex protocol")
        result = json.loads(self.pt_tls("--mutual", "--json").stdout)
        # the server's verdict on the endpoint, as without mutual PB-TNC
        self.assertEqual((result["recommendation"], result["assessment"]), ("Access Allowed", "compliant"))
        self.assert_verdict_on_the_server(result["mutual"])
        log = self.server.log_text()
        self.assertEqual(log.count("activating mutual PB-TNC half duplex protocol"), before + 1)
        self.assertIn("TNC client with collectors os answers the IMVs of carol", log)
        self.assertIn(f"the IMVs of carol recommend '{verdict_on_this_host()[2]}'", log)
        # the session is recorded with the server's own decision
        newest = json.loads(self.server.admin("sessions", "list", "--limit", "1", "--json"))[0]
        self.assertEqual((newest["identity"], newest["transport"], newest["access"]), ("carol", "pt-tls", "allowed"))

    def test_text_output(self):
        assessment, imv_recommendation, recommendation = verdict_on_this_host()
        out = self.pt_tls("--mutual-imvs", "os").stdout
        self.assertIn("access recommendation: Access Allowed\n", out)
        self.assertIn(f"server assessment result: {assessment}\n", out)
        self.assertIn(f"server access recommendation: {recommendation}\n", out)
        self.assertIn(f"IMV 1 \"os\" assessed the server: {assessment} ({imv_recommendation})", out)

    def test_over_radius_with_pt_eap(self):
        result = self.eap("--mutual")
        radius = result["radius"]
        self.assertEqual((radius["code"], radius["eap"], radius["mppe_keys_ok"]), ("Access-Accept", "success", True))
        self.assertEqual(radius["attributes"]["Filter-Id"], "allow")
        self.assertEqual(result["recommendation"], "Access Allowed")
        self.assert_verdict_on_the_server(result["mutual"])

    def test_clients_that_do_not_ask_are_assessed_as_before(self):
        before = self.server.log_text().count("activating mutual PB-TNC")
        result = json.loads(self.pt_tls("--json").stdout)
        self.assertEqual(set(result), {"recommendation", "assessment", "reasons", "remediation", "imv_results"})
        self.assertEqual(result["recommendation"], "Access Allowed")
        result = self.eap()
        self.assertNotIn("mutual", result)
        self.assertEqual(result["radius"]["code"], "Access-Accept")
        self.assertEqual(self.server.log_text().count("activating mutual PB-TNC"), before)


class MutualOffEndToEndTests(ServerPerClass):
    """A server with the default ``mutual = no``."""

    def test_the_client_says_the_server_did_not_take_part(self):
        done = self.server.client("--client", "carol", "--secret", PASSWORD, "--collectors", "scanner", "--mutual")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("access recommendation: Access Allowed\n", done.stdout)
        self.assertIn("mutual PB-TNC: the server did not take part", done.stdout)
        done = subprocess.run(eap_client_argv(self.radius_port, self.server.ca, "--password", PASSWORD,
                                              "--collectors", "scanner", "--json", "--mutual"),
                              env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        result = json.loads(done.stdout)
        self.assertEqual(result["radius"]["code"], "Access-Accept")
        self.assertEqual(result["mutual"]["agreed"], False)
        self.assertNotIn("activating mutual", self.server.log_text())

    def test_an_unknown_imv_is_a_setup_error(self):
        done = self.server.client("--client", "carol", "--secret", PASSWORD, "--mutual-imvs", "os,no-such-imv")
        self.assertEqual(done.returncode, 2)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
        self.assertIn("no-such-imv", done.stderr)
