"""nac-admin attest, run in-process on a temporary database (SQLite and
PostgreSQL): AIKs registered from PEM, DER and certificates, trusted,
untrusted, listed and deleted; reference digests from a directory tree and
from IMA measurement lists (binary and text); the attestation history; and
the round trip into the attestation IMV (what the operator enrolls and
imports is what an endpoint is judged by)."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from twisted.internet import defer
from twisted.trial import unittest

from imvs.attestation import AttestationImv
from nac.admin import read_ima_references
from nac.db import attestation as attest_db
from nac.ifimv import ActionRecommendation as A
from nac.ifimv import EvaluationResult as E
from tests.attested_host import AttestedHost
from tests.posture import ImvHarness
from tests.test_admin import AdminMixin
from tests.test_db import PostgresBackend, SqliteBackend
from tests.vectors import vector_path

PRODUCT = "Debian 12 x86_64"


def der(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class AttestAdminTestsMixin(AdminMixin, ImvHarness):
    def setUp(self):
        super().setUp()
        self.init()
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.keyid = hashlib.sha1(der(self.key)).hexdigest()

    def write(self, data: bytes | str, name: str = "file") -> str:
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(path)

    def aiks(self) -> list[dict]:
        return json.loads(self.ok("--json", "attest", "aik", "list"))

    def test_aik_lifecycle(self):
        pem = self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        out = self.ok("attest", "aik", "add", self.write(pem), "--device", "host-1", "--product", PRODUCT)
        self.assertEqual(out.strip(), f"AIK {self.keyid}: registered, not trusted (`nac-admin attest aik trust "
                                      f"KEYID`), device 'host-1', product '{PRODUCT}'")
        self.assertEqual([(a["keyid"], a["trusted"], a["device"], a["product"]) for a in self.aiks()],
                         [(self.keyid, False, "host-1", PRODUCT)])
        self.assertIn("trusted", self.ok("attest", "aik", "trust", self.keyid))
        self.assertTrue(self.aiks()[0]["trusted"])
        # registering again (DER this time) keeps the trust and the device
        self.ok("attest", "aik", "add", self.write(der(self.key)), "--description", "lab laptop")
        self.assertEqual([(a["trusted"], a["device"], a["description"]) for a in self.aiks()],
                         [(True, "host-1", "lab laptop")])
        self.ok("attest", "aik", "untrust", self.keyid)
        self.assertFalse(self.aiks()[0]["trusted"])
        self.assertIn(self.keyid, self.ok("attest", "aik", "list"))
        self.ok("attest", "aik", "del", self.keyid)
        self.assertEqual(self.aiks(), [])
        self.assertIn("no AIK with key ID", self.fails("attest", "aik", "trust", self.keyid))

    def test_aik_from_a_certificate_and_refusals(self):
        issuer = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aik")])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                       .public_key(self.key.public_key()).serial_number(1).not_valid_before(now)
                       .not_valid_after(now + datetime.timedelta(days=1)).sign(issuer, hashes.SHA256()))
        self.ok("attest", "aik", "add", self.write(certificate.public_bytes(serialization.Encoding.PEM)),
                "--trusted")
        self.assertEqual([(a["keyid"], a["trusted"]) for a in self.aiks()], [(self.keyid, True)])
        self.assertIn("not an RSA or EC public key", self.fails("attest", "aik", "add", self.write(b"junk")))

    def test_import_a_directory_tree(self):
        tree = Path(self.mktemp())
        (tree / "usr" / "bin").mkdir(parents=True)
        (tree / "usr" / "bin" / "ls").write_bytes(b"ls")
        (tree / "usr" / "bin" / "bash").write_bytes(b"bash")
        (tree / "usr" / "bin" / "sh").symlink_to("bash")
        out = self.ok("attest", "import", "--dir", str(tree), "--root", "/", "--product", PRODUCT)
        self.assertIn("2 file(s) read", out)
        self.assertIn("2 new reference digest(s)", out)
        found = self.db().run(attest_db.reference_digests, PRODUCT, ["/usr/bin/ls", "/usr/bin/bash", "/usr/bin/sh"])
        self.assertEqual(found, {"/usr/bin/ls": {"sha256": {hashlib.sha256(b"ls").digest()}},
                                 "/usr/bin/bash": {"sha256": {hashlib.sha256(b"bash").digest()}}})
        # again: nothing new; other digests of the same file add up
        self.assertIn("0 new reference digest(s), 2 already known",
                      self.ok("attest", "import", "--dir", str(tree), "--root", "/", "--product", PRODUCT))
        (tree / "usr" / "bin" / "ls").write_bytes(b"ls 2")
        self.ok("attest", "import", "--dir", str(tree), "--root", "/", "--product", PRODUCT)
        found = self.db().run(attest_db.reference_digests, PRODUCT, ["/usr/bin/ls"])
        self.assertEqual(len(found["/usr/bin/ls"]["sha256"]), 2)
        # without --root the paths are the directory's own
        self.ok("attest", "import", "--dir", str(tree / "usr"), "--algorithm", "sha384")
        found = self.db().run(attest_db.reference_digests, None, [f"{tree}/usr/bin/ls"])
        self.assertEqual(found, {f"{tree}/usr/bin/ls": {"sha384": {hashlib.sha384(b"ls 2").digest()}}})

    def test_import_an_ima_list(self):
        binary = vector_path("strongswan-attestation/event-logs/ima-good.bin")
        out = self.ok("attest", "import", "--ima-log", str(binary), "--product", PRODUCT)
        self.assertIn("4 file(s) read", out)  # the boot aggregate is not a file
        entries = read_ima_references(str(binary))
        self.assertEqual([e[0] for e in entries], ["/usr/bin/bash", "/usr/bin/ls",
                                                   "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/openssl"])
        # the text form of the same list, as the kernel prints it (ascii_runtime_measurements),
        # with a legacy 'ima' line, an ima-sig line with its signature, and a violation
        text = "".join(f"10 {'ab' * 20} ima-ng {a}:{d} {p}\n" for p, a, d in entries)
        text += f"10 {'cd' * 20} ima {'11' * 20} /boot/vmlinuz\n"
        text += f"10 {'ef' * 20} ima-sig sha256:{'22' * 32} /usr/bin/signed 030204abcd\n"
        text += f"10 {'00' * 20} ima-ng sha256:{'00' * 32} /var/log/open-for-write\n"
        self.assertEqual(read_ima_references(self.write(text)),
                         entries + [("/boot/vmlinuz", "sha1", "11" * 20), ("/usr/bin/signed", "sha256", "22" * 32)])
        self.assertIn("line 1 is not an IMA measurement",
                      self.fails("attest", "import", "--ima-log", self.write(f"10 {'ab' * 20} ima-ng\n")))
        self.assertIn("IMA log: template hash truncated at byte 0",
                      self.fails("attest", "import", "--ima-log", self.write("10 x\n")))

    def test_results(self):
        db = self.db()
        db.run(attest_db.register_aik, der(self.key), device="host-1", trusted=True)
        db.write(attest_db.record_attestation, self.keyid, None, E.NONCOMPLIANT_MAJOR, "AIK is trusted; bad quote",
                 {"quote": "bad"})
        db.write(attest_db.record_attestation, "ffff", None, E.NONCOMPLIANT_MAJOR, "unknown AIK", {})
        rows = json.loads(self.ok("--json", "attest", "results", "--device", "host-1"))
        self.assertEqual([(r["keyid"], r["device"], r["evaluation"]) for r in rows],
                         [(self.keyid, "host-1", "non-compliant major")])
        self.assertEqual(len(json.loads(self.ok("--json", "attest", "results"))), 2)
        self.assertIn("bad quote", self.ok("attest", "results", "--aik", self.keyid))

    @defer.inlineCallbacks
    def test_enrolled_with_nac_admin_then_attested(self):
        from nac.db.engine import make_engine
        from nac.db.store import PolicyStore

        host = AttestedHost(self)
        self.ok("attest", "aik", "add", self.write(host.aik_pem), "--device", "host-1", "--product", PRODUCT,
                "--trusted")
        tree = Path(self.mktemp())
        for path, content in host.files.items():
            (tree / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (tree / path.lstrip("/")).write_bytes(content)
        self.ok("attest", "import", "--dir", str(tree), "--root", "/", "--product", PRODUCT)
        engine = make_engine(self.url)
        self.addCleanup(engine.dispose)
        self.store = PolicyStore(engine)
        self.store.start()
        self.addCleanup(self.store.stop)
        result = yield self.assess([host.imc()], [AttestationImv()])
        verdict = result.verdict("attestation")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.ALLOW, E.COMPLIANT))
        [row] = json.loads(self.ok("--json", "attest", "results", "--device", "host-1"))
        self.assertEqual(row["evaluation"], "compliant")


class SqliteAttestAdminTests(AttestAdminTestsMixin, SqliteBackend, unittest.TestCase):
    pass


class PostgresAttestAdminTests(AttestAdminTestsMixin, PostgresBackend, unittest.TestCase):
    pass
