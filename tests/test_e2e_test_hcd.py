"""The ITA Test and HCD IMVs end to end: the real server (`twistd -n nac`)
with both IMVs and its embedded SQLite policy database, and the real
`nac-pt-tls-client` (and `nac-eap-client` over RADIUS) with its test
collector (the verdict it is told to ask for) or playing a printer from a
device file.

Each endpoint is judged by one IMV; the other has nothing to judge and
gives "no recommendation", so the first decides, as in a deployment that
assesses printers and ordinary hosts with one server.
"""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import subprocess
import time

from twisted.trial import unittest

import sqlalchemy as sa

from nac.db import PolicyDb, make_engine
from nac.db import models as m
from nac.ifimv import ActionRecommendation as A
from nac.ifimv import EvaluationResult as E
from tests.nacserver import NacServer, free_port, repo_env
from tests.posture import tmpdir
from tests.test_eap_client_e2e import eap_client_argv, radius_sections
from tests.test_imv_hcd import printer

PASSWORD = "dave's e2e password"
RADIUS_PASSWORD = "carol's radius password"


class TestAndHcdEndToEndTests(unittest.TestCase):
    server: NacServer | None = None

    def setUp(self):
        cls = type(self)
        if cls.server is not None:
            return
        server = NacServer(sections={
            "nac": {"imvs": "imvs.test:TestImv, imvs.hcd:HcdImv"},
            "imv:test": {"rounds": "1", "dummy_size": "20000", "retries": "1"},
            "imv:hcd": {"firmware_min_versions": "Firmware ABC*: 1.0.7; Resident App*: 2"},
        })
        cls.server = server.start()
        atexit.register(shutil.rmtree, server.dir, True)
        atexit.register(server.stop)
        server.admin("user", "add", "dave", "--password", PASSWORD)

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def assess(self, *args: str) -> dict:
        done = self.server.client("--client", "dave", "--secret", PASSWORD, "--collectors", "", "--json", *args)
        self.assertEqual(done.returncode, 0, done.stderr + self.server.log_text()[-3000:])
        return json.loads(done.stdout)

    def printer(self, device: dict) -> dict:
        path = tmpdir(self, "nac-e2e-hcd-") / "printer.json"
        path.write_text(json.dumps(device))
        return self.assess("--hcd-attributes", str(path))

    def newest(self) -> dict:
        """What the server recorded of the newest assessment: each IMV's
        result, the session and the measurements."""
        db = PolicyDb(make_engine(f"sqlite:///{self.server.state_dir / 'nac.db'}"))
        self.addCleanup(db.engine.dispose)
        for _ in range(100):
            [newest] = db.list_sessions(1)
            if newest.ended is not None:
                break
            time.sleep(0.05)
        session, results = db.session_results(newest.id)
        measured = db.run(lambda s: {r.kind: r.payload for r in s.scalars(
            sa.select(m.Measurement).where(m.Measurement.session_id == newest.id))})
        return {r.imv_name: r for r in results} | {"session": session, "measured": measured}

    def test_allow_with_large_dummies_both_ways(self):
        result = self.assess("--test-command", "allow", "--test-dummy-size", "30000")
        self.assertEqual((result["recommendation"], result["assessment"], result["reasons"]),
                         ("Access Allowed", "compliant", []))
        recorded = self.newest()
        self.assertEqual((recorded["test"].recommendation, recorded["test"].evaluation), (A.ALLOW, E.COMPLIANT))
        self.assertEqual(recorded["hcd"].recommendation, A.NO_RECOMMENDATION)
        self.assertEqual(recorded["session"].access, "allowed")
        # one extra round ([imv:test] rounds = 1): the server's 20,000-byte Dummy went out with
        # 'repeat', the client's 30,000-byte Dummy came with each command
        self.assertEqual(recorded["measured"]["test"],
                         {"command": "allow", "rounds": 1, "retries": 0, "dummy_sizes": [30000, 30000]})

    def test_isolate(self):
        result = self.assess("--test-command", "isolate")
        self.assertEqual((result["recommendation"], result["assessment"]), ("Quarantined", "non-compliant minor"))
        self.assertEqual([r["text"] for r in result["reasons"]],
                         ["The test collector did not send the command 'allow'"])
        self.assertEqual(self.newest()["session"].access, "isolate")

    def test_block(self):
        result = self.assess("--test-command", "block")
        self.assertEqual((result["recommendation"], result["assessment"]), ("Access Denied", "non-compliant major"))
        self.assertEqual(self.newest()["test"].recommendation, A.NO_ACCESS)

    def test_retry_then_allow(self):
        before = self.server.log_text().count("requests a handshake retry")
        result = self.assess("--test-command", "retry", "--test-retry-command", "allow")
        self.assertEqual((result["recommendation"], result["assessment"]), ("Access Allowed", "compliant"))
        self.assertEqual(self.server.log_text().count("requests a handshake retry"), before + 1)
        self.assertEqual(self.newest()["measured"]["test"]["retries"], 1)

    def test_retries_are_bounded(self):
        result = self.assess("--test-command", "retry")
        self.assertEqual((result["recommendation"], result["assessment"]), ("Access Denied", "don't know"))
        recorded = self.newest()
        self.assertEqual((recorded["test"].recommendation, recorded["hcd"].recommendation),
                         (A.NO_RECOMMENDATION, A.NO_RECOMMENDATION))
        # one retry granted, the second 'retry' decided
        self.assertEqual(recorded["measured"]["test"]["retries"], 1)

    def test_complete_printer_is_allowed(self):
        result = self.printer(printer())
        self.assertEqual((result["recommendation"], result["assessment"], result["reasons"]),
                         ("Access Allowed", "compliant", []))
        self.assertEqual([(r["imc"], r["assessment"]) for r in result["imv_results"]], [("HCD", "compliant")])
        recorded = self.newest()
        self.assertEqual((recorded["hcd"].recommendation, recorded["test"].recommendation),
                         (A.ALLOW, A.NO_RECOMMENDATION))
        system = recorded["measured"]["hcd"]["subtypes"]["system"]
        self.assertEqual((system["vendor_name"], system["resident_application"][0]["version"]),
                         ("ITA-HSR", "2.5.0.0.0"))

    def test_printer_with_default_password_is_denied_with_the_reason(self):
        result = self.printer(printer(default_password_enabled=True))
        self.assertEqual((result["recommendation"], result["assessment"]), ("Access Denied", "non-compliant major"))
        self.assertEqual(result["reasons"], [{"text": "Improper hardcopy device settings were detected",
                                              "language": "en"}])
        [remediation] = result["remediation"]
        self.assertIn("<title>Default Password</title>", remediation["text"])
        self.assertEqual(self.newest()["hcd"].reason, "Improper hardcopy device settings were detected")

    def test_printer_missing_mandatory_attributes_is_denied(self):
        result = self.printer(printer(configuration_state=None))
        self.assertEqual(result["recommendation"], "Access Denied")
        self.assertEqual([r["text"] for r in result["reasons"]], ["Mandatory HCD attributes are missing"])
        self.assertIn("<item>system/configuration_state</item>", result["remediation"][0]["text"])

    def test_printer_with_old_firmware_is_denied(self):
        firmware = [{"name": "Firmware ABC 2015", "string_version": "1.0.6", "version": "1.0.6"}]
        result = self.printer(printer(firmware=firmware))
        self.assertEqual((result["recommendation"], result["assessment"]), ("Access Denied", "non-compliant minor"))
        self.assertIn("<item>Firmware ABC 2015 1.0.6 (at least 1.0.7)</item>", result["remediation"][0]["text"])

    def test_unusable_device_file_is_one_line(self):
        path = tmpdir(self, "nac-e2e-hcd-") / "printer.json"
        path.write_text("{\"subtypes\": {\"tray\": {}}}")
        done = self.server.client("--client", "dave", "--secret", PASSWORD, "--hcd-attributes", str(path))
        self.assertEqual(done.returncode, 2)
        self.assertEqual(done.stderr, f"nac-pt-tls-client: {path}: subtypes.tray: unknown subtype; choose from "
                                      "system, console, marker, finisher, interface, scanner\n")


class OverRadiusEndToEndTests(unittest.TestCase):
    """The same IMVs behind RADIUS (EAP-TTLS with PT-EAP inside), with the
    real `nac-eap-client`: each verdict becomes the NAS's enforcement."""

    server: NacServer | None = None
    radius_port = 0

    def setUp(self):
        cls = type(self)
        if cls.server is not None:
            return
        cls.radius_port = free_port(socket.SOCK_DGRAM)
        server = NacServer(radius_sections(cls.radius_port, nac={"imvs": "imvs.test:TestImv, imvs.hcd:HcdImv"},
                                           **{"imv:test": {"dummy_size": "40000", "rounds": "1"}}))
        cls.server = server.start()
        atexit.register(shutil.rmtree, server.dir, True)
        atexit.register(server.stop)
        server.admin("user", "add", "carol", "--password", RADIUS_PASSWORD, "--eap")

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def client(self, *args: str) -> dict:
        done = subprocess.run(eap_client_argv(self.radius_port, self.server.ca, "--password", RADIUS_PASSWORD,
                                              "--collectors", "", "--json", *args),
                              env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr + self.server.log_text()[-3000:])
        return json.loads(done.stdout)

    def test_isolate_is_the_isolate_vlan(self):
        # the server's 40,000-byte Dummy crosses PT-EAP's 32 KB messages: it is left out, logged
        result = self.client("--test-command", "isolate")
        self.assertEqual((result["recommendation"], result["radius"]["code"]), ("Quarantined", "Access-Accept"))
        self.assertEqual(result["radius"]["attributes"]["Tunnel-Private-Group-Id"], "20")
        self.assertIn("does not fit a", self.server.log_text())

    def test_retry_then_allow_is_the_allow_vlan(self):
        result = self.client("--test-command", "retry", "--test-retry-command", "allow")
        self.assertEqual((result["recommendation"], result["radius"]["attributes"]["Tunnel-Private-Group-Id"]),
                         ("Access Allowed", "10"))

    def test_printer_with_default_password_is_rejected(self):
        path = tmpdir(self, "nac-e2e-hcd-") / "printer.json"
        path.write_text(json.dumps(printer(default_password_enabled=True)))
        result = self.client("--hcd-attributes", str(path))
        self.assertEqual((result["recommendation"], result["radius"]["code"]), ("Access Denied", "Access-Reject"))
        self.assertEqual([r["text"] for r in result["reasons"]],
                         ["Improper hardcopy device settings were detected"])
