"""Remote attestation end to end: the real server (`twistd -n nac` with
``imvs = attestation`` and its embedded SQLite database), AIKs enrolled and
reference digests imported with the real `nac-admin`, and the real
`nac-pt-tls-client` and `nac-eap-client` (RADIUS, EAP-TTLS ▸ PT-EAP) with
``--collectors attestation`` on a software TPM of the test's own
(tests/attested_host.py): a trusted AIK with known files is allowed, an
unknown file gets the configured recommendation with the file named in the
remediation, an AIK nobody enrolled is denied."""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import subprocess

from twisted.trial import unittest

from tests.attested_host import AttestedHost
from tests.nacserver import NacServer, free_port, repo_env
from tests.swtpm import missing_programs
from tests.test_eap_client_e2e import eap_client_argv, radius_sections

PASSWORD = "carol's attestation password"
PRODUCT = "Debian 12 x86_64"


class AttestationEndToEndTests(unittest.TestCase):
    server: NacServer | None = None
    radius_port = 0

    def setUp(self):
        cls = type(self)
        if cls.server is not None:
            return
        why = missing_programs()
        if why:
            raise unittest.SkipTest(why)
        cls.radius_port = free_port(socket.SOCK_DGRAM)
        sections = radius_sections(cls.radius_port)
        sections["nac"]["imvs"] = "imvs.attestation:AttestationImv"
        sections["imv:attestation"] = {"unknown_file": "minor", "non_compliant_minor": "isolate"}
        server = NacServer(sections)
        cls.server = server.start()
        atexit.register(shutil.rmtree, server.dir, True)
        atexit.register(server.stop)
        server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def enroll(self, host: AttestedHost, device: str) -> None:
        aik = host.dir / "aik.pem"
        aik.write_bytes(host.aik_pem)
        self.server.admin("attest", "aik", "add", str(aik), "--device", device, "--product", PRODUCT, "--trusted")
        ima = host.dir / "known-good-ima.bin"
        ima.write_bytes(host.ima_log.read_bytes())
        self.server.admin("attest", "import", "--ima-log", str(ima), "--product", PRODUCT)

    def assess(self, host: AttestedHost) -> dict:
        done = self.server.client("--client", "carol", "--secret", PASSWORD, *host.client_arguments(), "--json")
        self.assertIn(done.returncode, (0, 1), done.stderr + self.server.log_text()[-3000:])
        return json.loads(done.stdout)

    def results(self, device: str) -> list[dict]:
        return json.loads(self.server.admin("--json", "attest", "results", "--device", device))

    def test_trusted_aik_and_known_files_are_allowed(self):
        host = AttestedHost(self)
        self.enroll(host, "e2e-allowed")
        result = self.assess(host)
        self.assertEqual((result["recommendation"], result["assessment"]), ("Access Allowed", "compliant"),
                         result)
        [row] = self.results("e2e-allowed")
        self.assertEqual((row["evaluation"], row["details"]["quote"]), ("compliant", "ok"))

    def test_unknown_file_is_quarantined_with_the_file_named(self):
        host = AttestedHost(self)
        self.enroll(host, "e2e-unknown-file")
        host.run_file("/usr/local/bin/dropped", b"not from the image")
        result = self.assess(host)
        self.assertEqual((result["recommendation"], result["assessment"]), ("Quarantined", "non-compliant minor"))
        self.assertEqual([r["text"] for r in result["reasons"]], ["Files without reference values were measured"])
        [remediation] = result["remediation"]
        self.assertEqual([(i["title"], i["items"]) for i in remediation["instructions"]],
                         [("Unknown Files", ["/usr/local/bin/dropped"])])

    def test_unenrolled_aik_is_denied(self):
        host = AttestedHost(self)
        result = self.assess(host)
        self.assertEqual((result["recommendation"], result["assessment"]), ("Access Denied", "non-compliant major"))
        self.assertIn("The attestation identity key of the TPM is not trusted", result["reasons"][0]["text"])

    def test_over_radius_and_pt_eap(self):
        host = AttestedHost(self)
        self.enroll(host, "e2e-radius")
        done = subprocess.run(eap_client_argv(self.radius_port, self.server.ca, "--password", PASSWORD,
                                              *host.client_arguments(), "--json"),
                              env=repo_env(), capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stderr + self.server.log_text()[-3000:])
        result = json.loads(done.stdout)
        self.assertEqual((result["radius"]["code"], result["recommendation"]), ("Access-Accept", "Access Allowed"),
                         result)
        self.assertEqual(result["radius"]["attributes"].get("Tunnel-Private-Group-Id"), "10")  # the allow VLAN
