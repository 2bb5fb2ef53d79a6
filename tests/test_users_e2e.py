"""`nac-admin user disable / enable / passwd` take effect at the next login
of a running server (`twistd -n nac`), although it remembers verified
passwords for `[nac] credential_cache_ttl` (300 s here, the default):
PT-TLS SASL PLAIN through the real `nac-pt-tls-client` (two PT-TLS
processes, each with its own memory), and RADIUS EAP-TTLS with inner PAP
(the password check) and EAP-MD5 (the sealed EAP secret) through the real
`nac-eap-client`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from twisted.trial import unittest

from tests.nacserver import NacServer, free_port, repo_env

PASSWORD = "first password of carol"
NEW_PASSWORD = "second password of carol"
SECRET = "nas-secret-for-users"


class UserCommandsTakeEffectAtOnceTests(unittest.TestCase):
    def setUp(self):
        self.radius_port = free_port(socket.SOCK_DGRAM)
        server = NacServer({
            "nac": {"transports": "pt-tls,radius", "credential_cache_ttl": "300"},
            "pt-tls": {"workers": "2"},
            "radius": {"listen": "127.0.0.1", "port": self.radius_port, "secret": SECRET},
            # authentication only: what is under test is the password check
            "eap": {"tnc": "none"},
            # ten refused logins of carol (while disabled, then with her old
            # password) must not lock her out when they all land in one process
            "auth": {"max_failures_per_user": "100", "max_failures_per_source": "100", "failure_delay": "0"},
        })
        server.admin("init")
        server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
        server.admin("user", "add", "dave", "--password", PASSWORD)
        self.server = server.start()
        self.addCleanup(server.stop)

    def sasl(self, user: str, password: str) -> int:
        """A PT-TLS assessment with SASL PLAIN; the client's exit status
        (0: assessed, 4: SASL authentication refused)."""
        done = self.server.client("--client", user, "--secret", password, "--collectors", "")
        self.assertIn(done.returncode, (0, 4), done.stderr + self.server.log_text()[-3000:])
        return done.returncode

    def eap(self, inner: str, password: str, user: str = "carol") -> str:
        done = subprocess.run(
            [sys.executable, "-m", "nac.client.eap_cli", "--server", f"127.0.0.1:{self.radius_port}",
             "--secret", SECRET, "--identity", user, "--password", password, "--inner", inner,
             "--tnc", "none", "--cacert", str(self.server.ca), "--json"],
            env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr + self.server.log_text()[-3000:])
        return json.loads(done.stdout)["radius"]["code"]

    def logins(self, password: str) -> tuple:
        """SASL (twice: both PT-TLS processes may serve one), EAP-TTLS/PAP
        (twice: the second from memory), EAP-TTLS/EAP-MD5."""
        return (self.sasl("carol", password), self.sasl("carol", password),
                self.eap("pap", password), self.eap("pap", password), self.eap("md5", password))

    def state(self, name: str) -> str:
        [user] = [u for u in json.loads(self.server.admin("user", "list", "--json")) if u["name"] == name]
        return "enabled" if user["enabled"] else "disabled"

    def test_disable_enable_and_passwd_apply_to_the_next_login(self):
        accepted = (0, 0, "Access-Accept", "Access-Accept", "Access-Accept")
        refused = (4, 4, "Access-Reject", "Access-Reject", "Access-Reject")
        self.assertEqual(self.logins(PASSWORD), accepted)

        self.assertEqual(self.server.admin("user", "disable", "carol"),
                         "user 'carol' disabled: its logins are refused\n")
        self.assertEqual(self.state("carol"), "disabled")
        self.assertIn("disabled", [line.split()[1] for line in
                                   self.server.admin("user", "list").splitlines() if line.startswith("carol")])
        self.assertEqual(self.logins(PASSWORD), refused)
        # another user is not affected
        self.assertEqual(self.sasl("dave", PASSWORD), 0)

        self.server.admin("user", "enable", "carol")
        self.assertEqual(self.state("carol"), "enabled")
        self.assertEqual(self.logins(PASSWORD), accepted)

        out = self.server.admin("user", "passwd", "carol", "--password", NEW_PASSWORD)
        self.assertEqual(out, "password of user 'carol' (and its EAP secret) changed\n")
        self.assertEqual(self.logins(PASSWORD), refused)
        self.assertEqual(self.logins(NEW_PASSWORD), accepted)

        log = self.server.log_text()
        self.assertNotIn(PASSWORD, log)
        self.assertNotIn(NEW_PASSWORD, log)

    def test_passwd_of_a_user_without_eap_secret_reads_standard_input(self):
        done = subprocess.run(
            [sys.executable, "-m", "nac.admin", "--config", str(self.server.config), "user", "passwd", "dave",
             "--password-stdin"], input=NEW_PASSWORD + "\n", env=repo_env(), capture_output=True, text=True,
            timeout=60)
        self.assertEqual((done.returncode, done.stdout, done.stderr),
                         (0, "password of user 'dave' changed\n", ""))
        self.assertEqual((self.sasl("dave", PASSWORD), self.sasl("dave", NEW_PASSWORD)), (4, 0))
        # dave has no EAP secret: EAP-MD5 cannot authenticate him, with either password
        self.assertEqual(self.eap("md5", NEW_PASSWORD, user="dave"), "Access-Reject")

    def test_unknown_user_is_one_line_and_non_zero(self):
        for action in ("disable", "enable", "passwd"):
            done = subprocess.run(
                [sys.executable, "-m", "nac.admin", "--config", str(self.server.config), "user", action, "mallory",
                 *(["--password", "x"] if action == "passwd" else [])],
                env=repo_env(), capture_output=True, text=True, timeout=60)
            self.assertEqual((done.returncode, done.stdout, done.stderr),
                             (1, "", "nac-admin: error: no user 'mallory'\n"), action)
