"""Mutual PB-TNC against strongSwan, both ways, each side's OS IMV judging
the other's host (which the other's OS collector or IMC describes):

- strongSwan's TNC client (``pt-tls-client --mutual``) against the real
  nac server (`twistd -n nac`, ``[nac] mutual = yes``);
- nac's TNC client (`nac-pt-tls-client --mutual`) against strongSwan's PDP
  (charon with ``tnc-pdp``, ``libtnccs.plugins.tnccs-20.mutual = yes``),
  in a network namespace of its own.

Debian's strongSwan cannot take part: ``libcharon-extra-plugins`` ships
``pt-tls-client`` and ``tnc-tnccs``, but neither the ``tnccs-20`` plugin
(PB-TNC) nor ``tnc-imc`` / ``tnc-imv``, ``tnc-pdp`` and the IMC/IMV
modules, so it speaks no PB-TNC at all.  These tests run against a
strongSwan installation that has them (the plugins tnccs-20, tnc-tnccs,
tnc-imc, tnc-imv, imc-os, imv-os, and for the PDP charon with tnc-pdp,
vici and swanctl), named by ``NAC_TEST_STRONGSWAN_PREFIX=P`` or found on
the system; otherwise they skip, saying what is missing.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial import unittest

from nac.certs import ensure_demo_pki
from tests.charon import start_charon
from tests.nacserver import NacServer, free_port, make_netns, repo_env

PASSWORD = "carol's strongSwan password"
PLUGINS = "x509 pem pkcs1 pkcs8 pubkey openssl random nonce sha1 sha2 hmac tnc-tnccs tnc-imc tnc-imv tnccs-20"


TNC_PLUGINS = ("tnccs-20", "tnc-imc", "tnc-imv")
PDP_PLUGINS = ("tnc-pdp", "vici", "socket-default", "kernel-netlink")


def strongswan(*, pdp: bool = False) -> dict[str, Path] | str:
    """The programs and directories of a strongSwan that speaks PB-TNC
    (``pt-tls-client``, ``modules``: its IMC/IMV modules; with ``pdp`` also
    ``charon`` and ``swanctl``), or why there is none.  (Its pid files go
    to /var/run, strongSwan's default whatever the prefix.)"""
    prefix = Path(os.environ.get("NAC_TEST_STRONGSWAN_PREFIX") or "/usr")
    lib = next((d for d in (prefix / "lib/ipsec", prefix / "lib/strongswan") if d.is_dir()), prefix / "lib/ipsec")
    found = {"pt-tls-client": prefix / "bin/pt-tls-client", "modules": lib / "imcvs"}
    if pdp:
        found.update(charon=next((p for p in (prefix / "libexec/ipsec/charon", lib / "charon") if p.exists()),
                                 lib / "charon"),
                     swanctl=prefix / "sbin/swanctl")
    wanted = list(found.values())
    wanted += [lib / f"plugins/libstrongswan-{name}.so" for name in TNC_PLUGINS + (PDP_PLUGINS if pdp else ())]
    wanted += [found["modules"] / "imc-os.so", found["modules"] / "imv-os.so"]
    missing = [str(path.relative_to(prefix)) for path in wanted if not path.exists()]
    if missing:
        return (f"the strongSwan under {prefix} lacks {', '.join(missing)} (Debian's packages have no PB-TNC); "
                "set NAC_TEST_STRONGSWAN_PREFIX to a strongSwan with those")
    return found


def tnc_config(modules: Path) -> str:
    return f'IMC "OS" {modules}/imc-os.so\nIMV "OS" {modules}/imv-os.so\n'


class StrongSwanMutualTests(unittest.TestCase):
    server: NacServer | None = None

    def setUp(self):
        found = strongswan()
        if isinstance(found, str):
            raise unittest.SkipTest(found)
        self.pt_tls_client = found["pt-tls-client"]
        cls = type(self)
        if cls.server is None:
            # nac's OS IMV takes this host's IP forwarding as a minor violation: allowed here
            server = NacServer({"nac": {"imvs": "os", "mutual": "yes"},
                                "imv:os": {"non_compliant_minor": "allow"}})
            server.admin("init")
            server.admin("user", "add", "carol", "--password", PASSWORD)
            cls.server = server.start()
            atexit.register(shutil.rmtree, server.dir, True)
            atexit.register(server.stop)
        self.dir = Path(tempfile.mkdtemp(prefix="nac-sw-mutual-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        (self.dir / "tnc_config").write_text(tnc_config(found["modules"]))
        (self.dir / "strongswan.conf").write_text(
            f"pt-tls-client {{\n  load = {PLUGINS}\n}}\n"
            f"libtnccs {{\n  tnc_config = {self.dir / 'tnc_config'}\n}}\n"
            "libimcv {\n  plugins {\n    imc-os {\n      device_id = 0123456789abcdef0123456789abcdef\n"
            "    }\n  }\n}\n")

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def run_client(self, *args: str) -> str:
        env = dict(os.environ, STRONGSWAN_CONF=str(self.dir / "strongswan.conf"))
        done = subprocess.run([str(self.pt_tls_client), "--connect", "127.0.0.1", "--port", str(self.server.port),
                               "--cert", str(self.server.ca), "--client", "carol", "--secret", PASSWORD,
                               "--debug", "2", *args], env=env, capture_output=True, text=True, timeout=60)
        # pt-tls-client exits with 1 even after a result (see tests/data/vectors/strongswan-pt-tls)
        return done.stdout + done.stderr

    def test_both_sides_judge_each_other(self):
        before = self.server.log_text().count("activating mutual PB-TNC half duplex protocol")
        out = self.run_client("--mutual")
        # strongSwan's client: the server took part, its own TNCS judged nac's host
        self.assertIn("proposing PB-TNC mutual half duplex protocol", out)
        self.assertIn("activating mutual PB-TNC half duplex protocol", out)
        self.assertIn("TNC server is handling outbound connection", out)
        self.assertRegex(out, r"IMV 1 provides recommendation '[^']+' and evaluation '[^']+'")
        # nac's verdict on strongSwan's host reached it
        self.assertIn("PB-TNC access recommendation is 'Access Allowed'", out)
        # both exchanges ended: its TNCS got nac's CLOSE, its client role sent the last batch, a CLOSE
        sent = re.findall(r"sending PB-TNC (\w+) batch \(\d+ bytes\) for Connection ID (\d+)", out)
        processed = re.findall(r"processing PB-TNC (\w+) batch for Connection ID (\d+)", out)
        client_id, tncs_id = sent[0][1], sent[1][1]
        self.assertNotEqual(client_id, tncs_id)
        self.assertEqual(sent[-1], ("CLOSE", client_id), out[-3000:])
        self.assertIn(("RESULT", client_id), processed)
        self.assertEqual(processed[-1], ("CLOSE", tncs_id))
        self.assertIn(("RESULT", tncs_id), sent)
        log = self.server.log_text()
        self.assertEqual(log.count("activating mutual PB-TNC half duplex protocol"), before + 1)
        self.assertIn("TNC client with collectors os answers the IMVs of carol", log)
        self.assertRegex(log, r"the IMVs of carol recommend '[^']+' \(assessment '.+?'\) for this server")
        [recommendation] = re.findall(r"IMV 1 provides recommendation '([^']+)'", out)
        shown = {"allow": "Access Allowed", "isolate": "Quarantined"}.get(recommendation, "Access Denied")
        self.assertIn(f"the IMVs of carol recommend '{shown}'", log)
        self.assertIn("closing PT-TLS session with 127.0.0.1", log)

    def test_without_mutual(self):
        before = self.server.log_text().count("activating mutual PB-TNC")
        out = self.run_client()
        self.assertIn("PB-TNC access recommendation is 'Access Allowed'", out)
        for never in ("PB-Mutual-Capability", "activating mutual PB-TNC", "TNC server is handling outbound"):
            self.assertFalse(never in out, f"{never!r} in the output of a client not asking for mutual PB-TNC")
        self.assertEqual(self.server.log_text().count("activating mutual PB-TNC"), before)


PDP_PLUGIN_LIST = ("kernel-netlink socket-default random nonce openssl pem pkcs1 pkcs8 x509 pubkey sha1 sha2 hmac "
                   "kdf vici tnc-pdp tnc-imc tnc-imv tnc-tnccs tnccs-20")
PDP_CONF = """\
charon {{
  load = {plugins}
  port = 0
  port_nat_t = 0
  plugins {{
    vici {{
      socket = unix://{dir}/charon.vici
    }}
    tnc-pdp {{
      server = nac.test
      pt_tls {{
        port = {port}
      }}
      radius {{
        enable = no
      }}
    }}
  }}
  filelog {{
    log {{
      path = {dir}/charon.log
      flush_line = yes
      default = 1
      tnc = 2
      imv = 2
    }}
  }}
}}
libtls {{
  version_max = 1.3
}}
libtnccs {{
  tnc_config = {dir}/tnc_config
  plugins {{
    tnccs-20 {{
      mutual = yes
    }}
  }}
}}
libimcv {{
  plugins {{
    imc-os {{
      device_id = 00112233445566778899aabbccddeeff
    }}
  }}
}}
"""


class StrongSwanPdpMutualTests(unittest.TestCase):
    """nac's client against strongSwan's PDP.  strongSwan's TLS 1.2 server
    lacks the renegotiation indication OpenSSL 3 insists on, so the PDP
    is given TLS 1.3."""

    def setUp(self):
        found = strongswan(pdp=True)
        if isinstance(found, str):
            raise unittest.SkipTest(found)
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            raise unittest.SkipTest("charon needs root and unshare (a private pid file directory)")
        self.netns = make_netns("nac-sw-pdp")
        self.dir = Path(tempfile.mkdtemp(prefix="nac-sw-pdp-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        pki = ensure_demo_pki(self.dir / "pki")
        for folder, source in (("x509", pki.server_cert), ("x509ca", pki.ca_cert), ("private", pki.server_key)):
            (self.dir / folder).mkdir()
            shutil.copy(source, self.dir / folder)
        self.ca = pki.ca_cert
        (self.dir / "tnc_config").write_text(tnc_config(found["modules"]))
        self.port = free_port()
        self.charon = start_charon(
            self.dir, PDP_CONF.format(dir=self.dir, port=self.port, plugins=PDP_PLUGIN_LIST),
            f'secrets {{\n  eap-carol {{\n    id = carol\n    secret = "{PASSWORD}"\n  }}\n}}\n',
            namespace=self.netns, charon=str(found["charon"]), swanctl=str(found["swanctl"]))
        self.addCleanup(self.charon.stop)

    def client(self, *args: str) -> dict:
        done = subprocess.run(["ip", "netns", "exec", self.netns, sys.executable, "-m", "nac.client.cli",
                               f"127.0.0.1:{self.port}", "--cacert", str(self.ca), "--server-name", "nac.test",
                               "--client", "carol", "--secret", PASSWORD, "--collectors", "os", "--json", *args],
                              env=repo_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr + self.charon.evidence())
        return json.loads(done.stdout)

    def test_both_sides_judge_each_other(self):
        result = self.client("--mutual")
        # strongSwan's OS IMV without a policy database: allow, "don't know"
        self.assertEqual((result["recommendation"], result["assessment"]), ("Access Allowed", "don't know"))
        # strongSwan's OS IMC in a new network namespace: no IP forwarding
        self.assertEqual(result["mutual"], {
            "agreed": True, "recommendation": "Access Allowed", "assessment": "compliant", "reasons": [],
            "imv_results": [{"imv_id": 1, "imv": "os", "recommendation": "allow", "assessment": "compliant"}]})
        log = self.charon.log()
        self.assertIn("activating mutual PB-TNC half duplex protocol", log)
        self.assertIn("TNC client is handling outbound connection", log)
        self.assertIn("PB-TNC access recommendation is 'Access Allowed'", log)
        # the PDP's TNCS got the last batch, nac's client role's CLOSE, and ended the connection
        self.assertRegex(log, r"processing PB-TNC CLOSE batch for Connection ID \d+\n.*\n.*"
                              r"final recommendation is 'allow'")

    def test_without_mutual(self):
        result = self.client()
        self.assertEqual(result["recommendation"], "Access Allowed")
        self.assertNotIn("mutual", result)
        self.assertNotIn("activating mutual PB-TNC", self.charon.log())
