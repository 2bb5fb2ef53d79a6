"""nac.certs: the generated demo PKI is valid, private and never overwritten."""

import ipaddress
import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL
from twisted.trial import unittest

from nac.certs import OID_IKE_INTERMEDIATE, PkiError, ensure_demo_pki, issue_certificate


def load_cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """Check the signature with the issuer's public key (raises InvalidSignature)."""
    public = issuer.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    else:
        public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                      cert.signature_hash_algorithm)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def contents(pki) -> dict:
    return {p.name: p.read_bytes() for p in (pki.ca_cert, pki.ca_key, pki.server_cert, pki.server_key)}


class DemoPkiTests(unittest.TestCase):
    def setUp(self):
        self.state = Path(self.mktemp()) / "state"

    def test_generated_chain_verifies(self):
        pki = ensure_demo_pki(self.state)
        self.assertTrue(pki.created)
        ca, server = load_cert(pki.ca_cert), load_cert(pki.server_cert)
        verify_signed_by(ca, ca)
        verify_signed_by(server, ca)
        self.assertEqual(server.issuer, ca.subject)
        self.assertTrue(ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        self.assertFalse(server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        self.assertIsInstance(server.public_key(), ec.EllipticCurvePublicKey)
        self.assertEqual(server.public_key().curve.name, "secp256r1")
        self.assertIsInstance(server.signature_hash_algorithm, hashes.SHA256)

    def test_server_certificate_names_and_usages(self):
        server = load_cert(ensure_demo_pki(self.state, "pdp.example.org").server_cert)
        san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["pdp.example.org", "localhost"])
        self.assertEqual(san.get_values_for_type(x509.IPAddress),
                         [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")])
        eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [ExtendedKeyUsageOID.SERVER_AUTH, OID_IKE_INTERMEDIATE])
        self.assertEqual(OID_IKE_INTERMEDIATE.dotted_string, "1.3.6.1.5.5.8.2.2")

    def test_validity_periods(self):
        pki = ensure_demo_pki(self.state)
        ca, server = load_cert(pki.ca_cert), load_cert(pki.server_cert)
        self.assertGreaterEqual((ca.not_valid_after_utc - ca.not_valid_before_utc).days, 3650)
        days = (server.not_valid_after_utc - server.not_valid_before_utc).days
        self.assertTrue(729 <= days <= 731, days)

    def test_strict_verifier_accepts_the_server_certificate(self):
        try:
            from cryptography.x509.verification import DNSName, PolicyBuilder, Store
        except ImportError:
            raise unittest.SkipTest("cryptography.x509.verification needs cryptography >= 42")
        pki = ensure_demo_pki(self.state)
        ca, server = load_cert(pki.ca_cert), load_cert(pki.server_cert)
        verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(DNSName("nac.test"))
        self.assertEqual(verifier.verify(server, [])[-1], ca)

    def test_openssl_accepts_the_key_pair(self):
        pki = ensure_demo_pki(self.state)
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.use_certificate_file(str(pki.server_cert))
        ctx.use_privatekey_file(str(pki.server_key))
        ctx.check_privatekey()
        ctx.load_verify_locations(str(pki.ca_cert))

    def test_keys_are_private_and_directory_created_0700(self):
        pki = ensure_demo_pki(self.state)
        self.assertEqual(mode(self.state), 0o700)
        self.assertEqual(mode(pki.ca_key), 0o600)
        self.assertEqual(mode(pki.server_key), 0o600)
        self.assertEqual(mode(pki.server_cert) & 0o022, 0)

    def test_keys_are_0600_even_under_a_lax_umask(self):
        old = os.umask(0)
        self.addCleanup(os.umask, old)
        pki = ensure_demo_pki(self.state)
        self.assertEqual(mode(pki.ca_key), 0o600)
        self.assertEqual(mode(pki.server_key), 0o600)

    def test_existing_directory_mode_is_left_alone(self):
        self.state.mkdir(parents=True, mode=0o755)
        self.state.chmod(0o755)
        ensure_demo_pki(self.state)
        self.assertEqual(mode(self.state), 0o755)

    def test_second_call_changes_nothing(self):
        first = ensure_demo_pki(self.state)
        before = contents(first)
        second = ensure_demo_pki(self.state, "other.name", key_type="rsa")
        self.assertFalse(second.created)
        self.assertEqual(second.server_cert, first.server_cert)
        self.assertEqual(contents(second), before)

    def test_half_present_server_pair_is_an_error(self):
        pki = ensure_demo_pki(self.state)
        pki.server_key.unlink()
        before = pki.server_cert.read_bytes()
        with self.assertRaisesRegex(PkiError, r"server\.key: missing although server\.pem exists"):
            ensure_demo_pki(self.state)
        self.assertEqual(pki.server_cert.read_bytes(), before)
        self.assertFalse(pki.server_key.exists())

    def test_server_pair_without_ca_certificate_is_an_error(self):
        pki = ensure_demo_pki(self.state)
        pki.ca_cert.unlink()
        with self.assertRaisesRegex(PkiError, r"ca\.pem: missing"):
            ensure_demo_pki(self.state)

    def test_ca_key_without_ca_certificate_is_an_error(self):
        self.state.mkdir(parents=True)
        (self.state / "ca.key").write_bytes(b"x")
        with self.assertRaisesRegex(PkiError, r"ca\.pem: missing although ca\.key exists"):
            ensure_demo_pki(self.state)

    def test_ca_key_may_be_moved_away_once_issued(self):
        pki = ensure_demo_pki(self.state)
        pki.ca_key.unlink()
        self.assertFalse(ensure_demo_pki(self.state).created)

    def test_missing_server_pair_is_reissued_by_the_existing_ca(self):
        pki = ensure_demo_pki(self.state)
        ca_before = pki.ca_cert.read_bytes()
        pki.server_cert.unlink()
        pki.server_key.unlink()
        again = ensure_demo_pki(self.state, "renamed.test")
        self.assertTrue(again.created)
        self.assertEqual(again.ca_cert.read_bytes(), ca_before)
        server = load_cert(again.server_cert)
        verify_signed_by(server, load_cert(again.ca_cert))
        self.assertEqual(server.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                         .value.get_values_for_type(x509.DNSName)[0], "renamed.test")

    def test_key_not_matching_certificate_is_an_error(self):
        pki = ensure_demo_pki(self.state)
        other = Path(self.mktemp())
        other.mkdir()
        issue_certificate(pki.ca_cert, pki.ca_key, "x", other / "x.pem", other / "x.key")
        pki.server_key.unlink()
        pki.server_key.write_bytes((other / "x.key").read_bytes())
        with self.assertRaisesRegex(PkiError, r"server\.key: does not belong to the certificate"):
            ensure_demo_pki(self.state)

    def test_rsa_variant(self):
        pki = ensure_demo_pki(self.state, key_type="rsa")
        ca, server = load_cert(pki.ca_cert), load_cert(pki.server_cert)
        self.assertIsInstance(server.public_key(), rsa.RSAPublicKey)
        self.assertEqual(server.public_key().key_size, 2048)
        verify_signed_by(server, ca)
        usage = server.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(usage.digital_signature and usage.key_encipherment)
        self.assertEqual(mode(pki.server_key), 0o600)

    def test_unknown_key_type_is_rejected(self):
        with self.assertRaises(ValueError):
            ensure_demo_pki(self.state, key_type="dsa")
        self.assertFalse(self.state.exists())


class IssueCertificateTests(unittest.TestCase):
    def setUp(self):
        self.state = Path(self.mktemp())
        self.pki = ensure_demo_pki(self.state)

    def test_client_certificate(self):
        cert_path, key_path = issue_certificate(
            self.pki.ca_cert, self.pki.ca_key, "client1", self.state / "client1.pem", self.state / "client1.key",
            san_dns=("client1.example.org",))
        self.assertEqual(mode(key_path), 0o600)
        cert = load_cert(cert_path)
        verify_signed_by(cert, load_cert(self.pki.ca_cert))
        self.assertEqual(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value, "client1")
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [ExtendedKeyUsageOID.CLIENT_AUTH])
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["client1.example.org"])
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.use_certificate_file(str(cert_path))
        ctx.use_privatekey_file(str(key_path))
        ctx.check_privatekey()

    def test_server_certificate_and_rsa(self):
        cert_path, _ = issue_certificate(
            self.pki.ca_cert, self.pki.ca_key, "gw", self.state / "gw.pem", self.state / "gw.key",
            client=False, san_dns=("gw.test", "192.0.2.1"), key_type="rsa")
        cert = load_cert(cert_path)
        self.assertIsInstance(cert.public_key(), rsa.RSAPublicKey)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertIn(ExtendedKeyUsageOID.SERVER_AUTH, eku)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.IPAddress), [ipaddress.ip_address("192.0.2.1")])

    def test_without_san_has_no_san_extension(self):
        cert_path, _ = issue_certificate(self.pki.ca_cert, self.pki.ca_key, "bare",
                                         self.state / "b.pem", self.state / "b.key")
        with self.assertRaises(x509.ExtensionNotFound):
            load_cert(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName)

    def test_never_overwrites(self):
        out = self.state / "c.pem"
        out.write_bytes(b"keep")
        with self.assertRaisesRegex(PkiError, "already exists"):
            issue_certificate(self.pki.ca_cert, self.pki.ca_key, "c", out, self.state / "c.key")
        self.assertEqual(out.read_bytes(), b"keep")
        self.assertFalse((self.state / "c.key").exists())

    def test_leaf_cannot_issue(self):
        with self.assertRaisesRegex(PkiError, "not a CA certificate"):
            issue_certificate(self.pki.server_cert, self.pki.server_key, "c",
                              self.state / "c.pem", self.state / "c.key")

    def test_mismatched_ca_key_is_an_error(self):
        with self.assertRaisesRegex(PkiError, "does not belong to the CA certificate"):
            issue_certificate(self.pki.ca_cert, self.pki.server_key, "c",
                              self.state / "c.pem", self.state / "c.key")
