"""strongSwan's charon as an IPsec gateway whose connections are chosen by
the group nac's decision names, as in strongSwan's TNC examples: eap-radius
with ``filter_id = yes`` takes the Filter-Id of nac's Access-Accept as the
client's group, but only beside Tunnel-Type = ESP ([radius-client:NAME]
filter_id_tunnel_type = esp); connection ``rw-allow`` requires group
``allow`` (traffic selector 10.1.0.0/28), ``rw-isolate`` group ``isolate``
(10.1.0.16/28).

Debian's strongSwan has no PT-EAP, so the road warrior is nac's scripted IKE
initiator (tests/ikev2_road_warrior.py) with nac's EAP peer and the ITA Test
collector asking for the verdict; nac runs the Test IMV.  All in a network
namespace made for the test, on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial import unittest

from tests.charon import start_charon
from tests.nacserver import REPO, NacServer, repo_env
from tests.test_ikev2_strongswan import SharedEnvironment, strongswan_conf
from tests.test_radius_strongswan import COMMON_PLUGINS, _unavailable

SECRET = "moon-radius-s3cret"
PASSWORD = "carol-Secret-42"
READY = "RADIUS server listening"

GATEWAY_CONNECTIONS = """connections {
  rw-allow {
    version = 2
    local_addrs = 127.0.0.1
    proposals = aes256-sha256-x25519
    pools = rw_pool
    send_cert = always
    local {
      auth = pubkey
      certs = gateway.pem
      id = nac.test
    }
    remote {
      auth = eap-radius
      eap_id = %any
      groups = allow
    }
    children {
      rw-allow {
        local_ts = 10.1.0.0/28
        esp_proposals = aes256gcm16
      }
    }
  }
  rw-isolate {
    version = 2
    local_addrs = 127.0.0.1
    proposals = aes256-sha256-x25519
    pools = rw_pool
    send_cert = always
    local {
      auth = pubkey
      certs = gateway.pem
      id = nac.test
    }
    remote {
      auth = eap-radius
      eap_id = %any
      groups = isolate
    }
    children {
      rw-isolate {
        local_ts = 10.1.0.16/28
        esp_proposals = aes256gcm16
      }
    }
  }
}
pools {
  rw_pool {
    addrs = 10.3.0.0/28
  }
}
"""


class GroupsEnvironment:
    """The namespace, nac with the Test IMV and the gateway, shared by the tests."""

    def __init__(self) -> None:
        self.namespace = f"nac-groups-{os.getpid()}"
        self.directory = Path(tempfile.mkdtemp(prefix="nac-groups-"))
        self.nac = self.gateway = None
        subprocess.run(["ip", "netns", "add", self.namespace], check=True, capture_output=True)
        try:
            subprocess.run(["ip", "-n", self.namespace, "link", "set", "lo", "up"], check=True)
            # the gateway's side of each network, for its routes
            for address in ("10.1.0.1/32", "10.1.0.17/32"):
                subprocess.run(["ip", "-n", self.namespace, "addr", "add", address, "dev", "lo"], check=True)
            (self.directory / "nac").mkdir()
            self.nac = NacServer({
                "nac": {"transports": "pt-tls,radius", "imvs": "imvs.test:TestImv", "log_level": "info"},
                "radius": {"listen": "127.0.0.1", "port": "1812", "workers": "1"},
                "radius-client:moon": {"address": "127.0.0.1", "secret": SECRET, "filter_id_tunnel_type": "esp"},
                "eap": {"methods": "ttls", "inner_methods": "md5", "tnc": "pt-eap"},
            }, workdir=str(self.directory / "nac"), netns=self.namespace, ready=READY).start(timeout=60)
            self.nac.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
            self.gateway = self._gateway(self.directory / "gateway")
        except BaseException:
            self.stop()
            raise

    def _gateway(self, d: Path):
        for sub in ("x509", "x509ca", "pkcs8"):
            (d / sub).mkdir(parents=True)
        pki = self.nac.state_dir
        shutil.copy(pki / "server.pem", d / "x509" / "gateway.pem")
        shutil.copy(pki / "server.key", d / "pkcs8" / "gateway.key")
        shutil.copy(pki / "ca.pem", d / "x509ca" / "ca.pem")
        extra = f"""    eap-radius {{
      filter_id = yes
      servers {{
        nac {{
          address = 127.0.0.1
          auth_port = 1812
          secret = {SECRET}
        }}
      }}
    }}"""
        return start_charon(d, strongswan_conf(d, f"{COMMON_PLUGINS} eap-identity eap-radius", 500,
                                               plugin_options=extra), GATEWAY_CONNECTIONS, namespace=self.namespace)

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        if self.nac is not None:
            self.nac.stop()
        subprocess.run(["ip", "netns", "delete", self.namespace], capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)


environment = SharedEnvironment(lambda: GroupsEnvironment(), _unavailable)


class GatewayGroupsTests(unittest.TestCase):
    timeout = 240

    def setUp(self):
        self.env = environment()
        self.port = 5600

    def road_warrior(self, command: str) -> tuple[dict, str, str]:
        """nac's road warrior asking for ``command``; (its result, the gateway's log, nac's log) of the attempt."""
        self.port += 1
        gateway_start, nac_start = len(self.env.gateway.log()), len(self.env.nac.log_text())
        done = subprocess.run(["ip", "netns", "exec", self.env.namespace, sys.executable, "-m",
                               "tests.ikev2_road_warrior", "--ca", str(self.env.nac.ca), "--identity", "carol",
                               "--password", PASSWORD, "--command", command, "--local-port", str(self.port)],
                              capture_output=True, text=True, timeout=120, cwd=str(REPO), env=repo_env())
        gateway_log = self.env.gateway.log()[gateway_start:]
        nac_log = self.env.nac.log_text()[nac_start:]
        self.assertEqual(done.returncode, 0, f"{done.stdout}\n{done.stderr}\n--- gateway\n{gateway_log}\n"
                                             f"--- nac\n{nac_log}")
        return json.loads(done.stdout), gateway_log, nac_log

    def test_allowed_client_gets_the_connection_of_group_allow(self):
        result, gateway_log, nac_log = self.road_warrior("allow")
        self.assertTrue(result["established"] and result["child_sa"], f"{result}\n{gateway_log}\n{nac_log}")
        self.assertEqual(result["recommendation"], "Access Allowed")
        self.assertEqual(result["ts_r"], ["10.1.0.0/28"])
        self.assertIn("received RADIUS attribute Filter-Id: 'allow'", gateway_log)
        self.assertIn("received RADIUS attribute Tunnel-Type: tag = 0, value = 9", gateway_log)
        self.assertRegex(gateway_log, r"CHILD_SA rw-allow\{\d+\} established")
        self.assertIn("Filter-Id 'allow', Tunnel-Type ESP", nac_log)

    def test_isolated_client_gets_the_connection_of_group_isolate(self):
        result, gateway_log, nac_log = self.road_warrior("isolate")
        self.assertTrue(result["established"] and result["child_sa"], f"{result}\n{gateway_log}\n{nac_log}")
        self.assertEqual(result["recommendation"], "Quarantined")
        self.assertEqual(result["ts_r"], ["10.1.0.16/28"])
        self.assertIn("received RADIUS attribute Filter-Id: 'isolate'", gateway_log)
        self.assertRegex(gateway_log, r"switching to peer config 'rw-isolate'|selected peer config 'rw-isolate'")
        self.assertRegex(gateway_log, r"CHILD_SA rw-isolate\{\d+\} established")

    def test_blocked_client_is_refused(self):
        result, gateway_log, nac_log = self.road_warrior("block")
        self.assertFalse(result["established"], result)
        self.assertEqual(result.get("eap"), 4)  # EAP-Failure relayed from nac's Access-Reject
        self.assertRegex(gateway_log, r"RADIUS authentication of '[^']*' failed")
