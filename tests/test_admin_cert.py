"""`nac-admin cert issue`: a client certificate from the demo CA (or a given
CA) that the real `nac-pt-tls-client` authenticates with against the real
server requiring client certificates; the key file's mode from its creation
on; refusals (existing files, a CA key of another CA) in one line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial import unittest

from nac import admin, certs
from nac.certs import certificate_identity, ensure_demo_pki
from tests.nacserver import NacServer, repo_env


def nac_admin(*argv: str, umask: int | None = None) -> subprocess.CompletedProcess:
    preexec = None if umask is None else (lambda: os.umask(umask))
    return subprocess.run([sys.executable, "-m", "nac.admin", *argv], env=repo_env(), capture_output=True,
                          text=True, timeout=60, preexec_fn=preexec)


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


class CertIssueTests(unittest.TestCase):
    """In temporary directories, without a server."""

    def setUp(self):
        self.base = Path(self.mktemp())
        self.state = self.base / "state"
        self.pki = ensure_demo_pki(self.state)
        self.config = self.base / "nac.conf"
        self.config.write_text(f"[nac]\nstate_dir = {self.state}\n")
        self.out = self.base / "out"

    def issue(self, *argv: str, umask: int | None = None) -> subprocess.CompletedProcess:
        return nac_admin("-c", str(self.config), "cert", "issue", *argv, umask=umask)

    def assert_one_line_error(self, done: subprocess.CompletedProcess, text: str) -> None:
        self.assertEqual((done.returncode, done.stdout), (1, ""), done.stderr)
        self.assertEqual(len(done.stderr.splitlines()), 1, done.stderr)
        self.assertTrue(done.stderr.startswith("nac-admin: error: "), done.stderr)
        self.assertIn(text, done.stderr)

    def test_issues_a_client_certificate_from_the_demo_ca(self):
        done = self.issue("carol", "--out", str(self.out), "--days", "30", "--json", umask=0)
        self.assertEqual(done.returncode, 0, done.stderr)
        data = json.loads(done.stdout)
        cert_path, key_path = self.out / "carol.pem", self.out / "carol.key"
        self.assertEqual((data["certificate"], data["key"], data["identity"]),
                         (str(cert_path), str(key_path), "carol"))
        # even with umask 0: the key is the owner's alone
        self.assertEqual(stat.S_IMODE(key_path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(cert_path.stat().st_mode), 0o644)
        cert, ca = load(cert_path), load(self.pki.ca_cert)
        self.assertEqual(cert.issuer, ca.subject)
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(usage), [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        self.assertEqual(round(lifetime.total_seconds() / 3600), 30 * 24 + 1)  # backdated an hour
        key = certs._read_key(key_path)
        self.assertEqual(certs._public_der(key.public_key()), certs._public_der(cert.public_key()))

    def test_subject_alternative_names(self):
        done = self.issue("dave", "--out", str(self.out), "--san", "dave@example.net", "--san", "192.0.2.7",
                          "--san", "uri:urn:nac:dave", "--san", "dns:dave.example.net")
        self.assertEqual(done.returncode, 0, done.stderr)
        cert = load(self.out / "dave.pem")
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.RFC822Name), ["dave@example.net"])
        self.assertEqual([str(a) for a in san.get_values_for_type(x509.IPAddress)], ["192.0.2.7"])
        self.assertEqual(san.get_values_for_type(x509.UniformResourceIdentifier), ["urn:nac:dave"])
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["dave.example.net"])
        self.assertEqual(certificate_identity(cert), "dave@example.net")
        self.assertIn("identity 'dave@example.net'", done.stdout)
        self.assert_one_line_error(self.issue("erin", "--out", str(self.out), "--san", "ip:not-an-ip"),
                                   "'not-an-ip' is not an IP address")

    def test_refuses_to_overwrite_without_force(self):
        self.assertEqual(self.issue("carol", "--out", str(self.out)).returncode, 0)
        first = (self.out / "carol.pem").read_bytes(), (self.out / "carol.key").read_bytes()
        done = self.issue("carol", "--out", str(self.out))
        self.assert_one_line_error(done, "already exists; refusing to overwrite it (--force replaces it)")
        self.assertEqual(((self.out / "carol.pem").read_bytes(), (self.out / "carol.key").read_bytes()), first)
        # --force: a new pair, the key still 0600
        (self.out / "carol.key").chmod(0o644)
        self.assertEqual(self.issue("carol", "--out", str(self.out), "--force", umask=0).returncode, 0)
        second = (self.out / "carol.pem").read_bytes(), (self.out / "carol.key").read_bytes()
        self.assertNotEqual(second[0], first[0])
        self.assertNotEqual(second[1], first[1])
        self.assertEqual(stat.S_IMODE((self.out / "carol.key").stat().st_mode), 0o600)
        self.assertEqual(sorted(p.name for p in self.out.iterdir()), ["carol.key", "carol.pem"])

    def test_force_replaces_a_symbolic_link_instead_of_writing_through_it(self):
        self.out.mkdir()
        target = self.base / "elsewhere"
        target.write_text("not to be touched")
        (self.out / "carol.key").symlink_to(target)
        self.assert_one_line_error(self.issue("carol", "--out", str(self.out)), "already exists")
        self.assertEqual(self.issue("carol", "--out", str(self.out), "--force").returncode, 0)
        self.assertEqual(target.read_text(), "not to be touched")
        self.assertFalse((self.out / "carol.key").is_symlink())

    def test_the_key_file_is_created_with_its_mode(self):
        """The key is never readable by others, not even between its creation
        and a chmod: the file is made with mode 0600 (and O_EXCL)."""
        opened = []
        real_open = os.open

        def recording_open(path, flags, mode=0o777, *args, **kwargs):
            opened.append((str(path), flags, mode))
            return real_open(path, flags, mode, *args, **kwargs)

        self.patch(certs.os, "open", recording_open)
        self.out.mkdir()
        for force in (False, True):
            opened.clear()
            args = ["cert", "issue", "carol", "--out", str(self.out), "-c", str(self.config)]
            self.assertEqual(admin.main(args + (["--force"] if force else [])), 0)
            [(flags, mode)] = [(f, m) for path, f, m in opened if ".key" in path]
            self.assertEqual(mode, 0o600)
            self.assertEqual(flags & (os.O_CREAT | os.O_EXCL), os.O_CREAT | os.O_EXCL)

    def test_a_given_ca(self):
        other = ensure_demo_pki(self.base / "other")
        done = self.issue("carol", "--out", str(self.out), "--ca-cert", str(other.ca_cert),
                          "--ca-key", str(other.ca_key))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(load(self.out / "carol.pem").issuer, load(other.ca_cert).subject)

    def test_errors_are_one_line(self):
        other = ensure_demo_pki(self.base / "other")
        done = self.issue("carol", "--out", str(self.out), "--ca-cert", str(self.pki.ca_cert),
                          "--ca-key", str(other.ca_key))
        self.assert_one_line_error(done, f"{other.ca_key}: does not belong to the CA certificate "
                                         f"{self.pki.ca_cert}")
        self.assertFalse(self.out.exists() and any(self.out.iterdir()))
        self.assert_one_line_error(self.issue("carol", "--ca-cert", str(self.pki.ca_cert)),
                                   "--ca-cert and --ca-key go together")
        self.assert_one_line_error(self.issue("carol", "--ca-cert", str(self.pki.server_cert),
                                              "--ca-key", str(self.pki.server_key), "--out", str(self.out)),
                                   "not a CA certificate")
        self.assert_one_line_error(self.issue("carol", "--ca-cert", str(self.base / "missing.pem"),
                                              "--ca-key", str(other.ca_key), "--out", str(self.out)),
                                   "missing.pem: cannot read: No such file or directory")
        self.assert_one_line_error(self.issue("../carol"), "is not a certificate name")
        self.assert_one_line_error(self.issue(".hidden"), "is not a certificate name")
        self.assert_one_line_error(self.issue("carol", "--days", "0"), "positive")
        empty = self.base / "empty.conf"
        empty.write_text(f"[nac]\nstate_dir = {self.base / 'nothing'}\n")
        done = nac_admin("-c", str(empty), "cert", "issue", "carol", "--out", str(self.out))
        self.assert_one_line_error(done, "no demo CA in")


class CertIssueEndToEndTests(unittest.TestCase):
    def test_issued_certificate_authenticates_the_pt_tls_client(self):
        server = NacServer({"pt-tls": {"client_cert": "required"}})
        server.admin("init")
        server.start()
        self.addCleanup(server.stop)
        out = Path(self.mktemp())
        done = nac_admin("-c", str(server.config), "cert", "issue", "erin", "--out", str(out))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(stat.S_IMODE((out / "erin.key").stat().st_mode), 0o600)

        assessed = server.client("--cert", str(out / "erin.pem"), "--key", str(out / "erin.key"),
                                 "--collectors", "", "--json")
        self.assertEqual(assessed.returncode, 0, assessed.stderr + server.log_text()[-3000:])
        self.assertIn("skipping SASL, client already authenticated by TLS certificate", server.log_text())
        newest = json.loads(server.admin("sessions", "list", "--limit", "1", "--json"))[0]
        self.assertEqual((newest["identity"], newest["auth_method"]), ("erin", "certificate"))

        # the same name from another CA is refused in the TLS handshake
        other = ensure_demo_pki(Path(self.mktemp()))
        done = nac_admin("cert", "issue", "erin", "--out", str(out / "other"), "--ca-cert", str(other.ca_cert),
                         "--ca-key", str(other.ca_key))
        self.assertEqual(done.returncode, 0, done.stderr)
        refused = server.client("--cert", str(out / "other" / "erin.pem"), "--key",
                                str(out / "other" / "erin.key"), "--collectors", "")
        self.assertNotEqual(refused.returncode, 0, refused.stderr)
        self.assertIn("unknown ca", refused.stderr)
        self.assertEqual(len(refused.stderr.splitlines()), 1, refused.stderr)
