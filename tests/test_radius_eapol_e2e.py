"""wpa_supplicant's `eapol_test` (Debian `eapoltest`) against `twistd -n nac`
with the RADIUS transport: EAP-TTLS with inner EAP-MD5, EAP-MSCHAPv2 and PAP,
and with TNC: eapol_test's EAP-TNC client speaks IF-TNCCS 1.1 when the server
starts EAP-TNC after the inner method, and the decision becomes the reply
attributes (Filter-Id, VLAN) or an Access-Reject.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess

from twisted.trial import unittest

from tests.nacserver import NacServer, free_port

SECRET = "testing123"
PASSWORD = "K8FW9"


def reply_attributes(log: str) -> dict[int, list[int]]:
    """Type -> lengths of the attributes of the last Access-Accept eapol_test
    printed (it prints no value for attributes it has no name for, such as
    Filter-Id and the Tunnel attributes; their values are checked in the
    server's log line and, byte for byte, in tests/test_radius_*.py)."""
    start = log.rfind("RADIUS message: code=2 (Access-Accept)")
    if start < 0:
        return {}
    attributes: dict[int, list[int]] = {}
    for line in log[start:].splitlines()[1:]:
        m = re.match(r"\s+Attribute (\d+) \(.*\) length=(\d+)", line)
        if m:
            attributes.setdefault(int(m.group(1)), []).append(int(m.group(2)))
        elif not line.startswith(" "):
            break
    return attributes


class EapolTestTests(unittest.TestCase):
    def setUp(self):
        if shutil.which("eapol_test") is None:
            raise unittest.SkipTest("eapol_test is not installed (Debian package eapoltest)")

    def start(self, eap: dict, nac: dict | None = None, radius: dict | None = None, **sections) -> NacServer:
        self.radius_port = free_port(socket.SOCK_DGRAM)
        conf = {"nac": {"transports": "pt-tls,radius", **(nac or {})},
                "radius": {"listen": "127.0.0.1", "port": self.radius_port, "secret": SECRET,
                           "clients": "127.0.0.1/32", **(radius or {})},
                "eap": eap, **sections}
        server = NacServer(conf)
        server.admin("init")
        server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
        server.start()
        self.addCleanup(server.stop)
        self.server = server
        return server

    def eapol_test(self, phase2: str, password: str = PASSWORD) -> tuple[int, str]:
        work = self.mktemp()
        os.makedirs(work)
        conf = os.path.join(work, "eapol_test.conf")
        with open(conf, "w") as f:
            f.write("network={\n  key_mgmt=WPA-EAP\n  eap=TTLS\n  identity=\"carol\"\n"
                    "  anonymous_identity=\"anonymous\"\n"
                    f"  password=\"{password}\"\n  ca_cert=\"{self.server.ca}\"\n"
                    f"  phase2=\"{phase2}\"\n}}\n")
        done = subprocess.run(["eapol_test", "-c", conf, "-a", "127.0.0.1", "-p", str(self.radius_port),
                               "-s", SECRET, "-r", "0", "-t", "20"],
                              capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout + done.stderr

    def assert_success(self, phase2: str) -> str:
        rc, out = self.eapol_test(phase2)
        self.assertEqual(rc, 0, out[-2000:] + self.server.log_text()[-3000:])
        self.assertIn("MPPE keys OK: 1  mismatch: 0", out)
        self.assertTrue(out.rstrip().endswith("SUCCESS"), out[-500:])
        return out

    def test_ttls_inner_md5_mschapv2_and_pap_without_tnc(self):
        self.start({"tnc": "none"})
        # auth=MSCHAPV2: the non-EAP MS-CHAP-V2 of RFC 5281 §11.2.4, whose
        # challenge wpa_supplicant derives from the tunnel's keys itself
        for phase2 in ("autheap=MD5", "autheap=MSCHAPV2", "auth=PAP", "auth=MSCHAPV2"):
            out = self.assert_success(phase2)
            # no posture exchange, so no enforcement attributes: a plain accept
            self.assertNotIn(11, reply_attributes(out), phase2)
        log = self.server.log_text()
        self.assertNotIn(PASSWORD, log)
        self.assertNotIn(SECRET, log)

    def test_wrong_password_is_rejected(self):
        self.start({"tnc": "none"})
        for phase2 in ("autheap=MD5", "auth=PAP", "auth=MSCHAPV2"):
            rc, out = self.eapol_test(phase2, password="wrong")
            self.assertNotEqual(rc, 0, phase2)
            self.assertIn("Access-Reject", out)
            self.assertNotIn("SUCCESS", out.rstrip().splitlines()[-1])

    def _require_tnc_config(self):
        if not os.path.exists("/etc/tnc_config"):
            raise unittest.SkipTest("eapol_test's TNC client needs /etc/tnc_config (empty: no IMCs); "
                                    "tests/run.sh creates it")

    def test_if_tnccs_11_exchange_allow_sets_the_allow_filter_id(self):
        self._require_tnc_config()
        # eapol_test has no IMCs: the SWIMA IMV's no-result recommendation decides
        self.start({"tnc": "eap-tnc"}, nac={"imvs": "imvs.swima:SwimaImv"},
                   **{"imv:swima": {"no_result": "allow"}})
        out = self.assert_success("autheap=MD5")
        self.assertIn("TNC: Received IF-TNCCS BatchId=", out)
        self.assertIn("TNC: TNCCS-Recommendation: 'allow'", out)
        self.assertEqual(reply_attributes(out).get(11), [2 + len("allow")])
        self.assertIn("sending RADIUS Access-Accept for 'carol' to client", self.server.log_text())
        self.assertIn("Filter-Id 'allow'", self.server.log_text())

    def test_isolate_sets_the_isolate_filter_id_and_vlan(self):
        self._require_tnc_config()
        self.start({"tnc": "eap-tnc"}, nac={"imvs": "imvs.swima:SwimaImv"},
                   radius={"vlan_isolate": "42"}, **{"imv:swima": {"no_result": "isolate"}})
        out = self.assert_success("auth=PAP")
        self.assertIn("TNC: TNCCS-Recommendation: 'isolate'", out)
        attributes = reply_attributes(out)
        # Filter-Id "isolate"; Tunnel-Type, Tunnel-Medium-Type (tag + 3 bytes); Tunnel-Private-Group-Id tag + "42"
        self.assertEqual(attributes.get(11), [2 + len("isolate")])
        self.assertEqual((attributes.get(64), attributes.get(65), attributes.get(81)), ([6], [6], [5]))
        self.assertIn("Filter-Id 'isolate', VLAN '42'", self.server.log_text())

    def test_no_recommendation_is_access_denied(self):
        self._require_tnc_config()
        # no IMVs at all: "no recommendation", which is Access Denied
        self.start({"tnc": "eap-tnc"})
        rc, out = self.eapol_test("autheap=MD5")
        self.assertNotEqual(rc, 0)
        self.assertIn("TNC: TNCCS-Recommendation: 'none'", out)
        self.assertIn("Access-Reject", out)
        self.assertIn("sending RADIUS Access-Reject for 'carol'", self.server.log_text())
