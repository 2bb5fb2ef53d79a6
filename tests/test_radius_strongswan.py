"""Debian's strongSwan as a VPN gateway whose eap-radius plugin makes nac its
RADIUS server, and as the road warrior that authenticates through it.

In a network namespace made for the test: ``twistd -n nac`` with
``transports = pt-tls,radius`` and ``[radius] workers = 2`` on
127.0.0.1:1812; a charon gateway on 127.0.0.1:500 with ``eap-radius``
pointing at nac (four RADIUS sockets, taken in turn, so the requests of one
conversation leave from different source ports); a charon initiator on port 5500 with
EAP-TTLS/EAP-MD5.  Each charon runs in its own mount namespace (a private
/run, see /work/shared/ENVIRONMENT.md) with kernel-libipsec.  Shown:

* the road warrior's IKE_SA is established with its CHILD_SA installed, the
  gateway logs the RADIUS authentication as successful, and nac sends
  Access-Accept with the MS-MPPE keys the gateway uses for its AUTH payload;
* a wrong password: an EAP-Failure at the road warrior, Access-Reject
  at nac;
* new conversations are served by both of nac's processes, whichever of
  the gateway's source ports their requests come from.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from twisted.trial import unittest

from tests.nacserver import NacServer
from tests.charon import CharonDaemon, start_charon
from tests.test_ikev2_strongswan import Charon, SharedEnvironment, strongswan_conf, unavailable

SECRET = "gateway-radius-s3cret"
PASSWORD = "carol-Secret-42"
COMMON_PLUGINS = ("random nonce openssl kdf pem pkcs1 pkcs8 x509 pubkey curve25519 socket-default vici "
                  "kernel-libipsec kernel-netlink")
READY = "all 1 RADIUS worker processes are accepting"


class Environment:
    """The namespace, nac, the gateway and the road warrior, shared by the tests."""

    def __init__(self) -> None:
        self.namespace = f"nac-radius-gw-{os.getpid()}"
        self.directory = Path(tempfile.mkdtemp(prefix="nac-radius-gw-"))
        self.nac = self.gateway = self.client = None
        subprocess.run(["ip", "netns", "add", self.namespace], check=True, capture_output=True)
        try:
            subprocess.run(["ip", "-n", self.namespace, "link", "set", "lo", "up"], check=True)
            # the gateway's side of the tunnel: an address of its own, for its route
            subprocess.run(["ip", "-n", self.namespace, "addr", "add", "10.1.0.1/32", "dev", "lo"], check=True)
            (self.directory / "nac").mkdir()
            self.nac = NacServer({
                "nac": {"transports": "pt-tls,radius", "log_level": "info"},
                "radius": {"listen": "127.0.0.1", "port": "1812", "secret": SECRET,
                           "clients": "127.0.0.1/32", "workers": "2"},
                "eap": {"methods": "ttls", "inner_methods": "md5", "tnc": "none"},
            }, workdir=str(self.directory / "nac"), netns=self.namespace, ready=READY).start(timeout=60)
            self.nac.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
            self.gateway = self._gateway(self.directory / "gateway")
            self.client = self._client(self.directory / "client")
        except BaseException:
            self.stop()
            raise

    def _gateway(self, d: Path) -> CharonDaemon:
        # the gateway shows nac's demo certificate (nac.test): the road warrior
        # checks it for IKE and, as the same identity, for EAP-TTLS
        for sub in ("x509", "x509ca", "pkcs8"):
            (d / sub).mkdir(parents=True)
        pki = self.nac.state_dir
        shutil.copy(pki / "server.pem", d / "x509" / "gateway.pem")
        shutil.copy(pki / "server.key", d / "pkcs8" / "gateway.key")
        shutil.copy(pki / "ca.pem", d / "x509ca" / "ca.pem")
        extra = f"""    eap-radius {{
      servers {{
        nac {{
          address = 127.0.0.1
          auth_port = 1812
          secret = {SECRET}
          sockets = 4
        }}
      }}
    }}"""
        swanctl_conf = """connections {
  rw {
    version = 2
    local_addrs = 127.0.0.1
    proposals = aes256-sha256-x25519
    pools = rw_pool
    local {
      auth = pubkey
      certs = gateway.pem
      id = nac.test
    }
    remote {
      auth = eap-radius
      eap_id = %any
    }
    children {
      rw {
        local_ts = 10.1.0.1/32
        remote_ts = 10.3.0.0/28
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
        return start_charon(d, strongswan_conf(d, f"{COMMON_PLUGINS} eap-identity eap-radius", 500,
                                               plugin_options=extra), swanctl_conf, namespace=self.namespace)

    def _client(self, d: Path) -> CharonDaemon:
        (d / "x509ca").mkdir(parents=True)
        shutil.copy(self.nac.state_dir / "ca.pem", d / "x509ca" / "ca.pem")
        extra = """    eap-ttls {
      phase2_method = md5
    }"""
        swanctl_conf = Charon.swanctl_conf(
            (("carol", "aes256-sha256-x25519", "aes256gcm16", "eap-ttls", "carol", PASSWORD),
             ("dave", "aes256-sha256-x25519", "aes256gcm16", "eap-ttls", "dave", "not-daves-password")),
            remote_ts="10.1.0.1/32")
        return start_charon(d, strongswan_conf(d, f"{COMMON_PLUGINS} eap-identity eap-md5 eap-ttls", 5500,
                                               plugin_options=extra), swanctl_conf, namespace=self.namespace)

    def stop(self) -> None:
        for daemon in (self.client, self.gateway):
            if daemon is not None:
                daemon.stop()
        if self.nac is not None:
            self.nac.stop()
        subprocess.run(["ip", "netns", "delete", self.namespace], capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)


def _unavailable() -> str | None:
    if not os.path.exists("/usr/lib/ipsec/plugins/libstrongswan-eap-radius.so"):
        return "strongSwan's eap-radius plugin is not installed (libcharon-extra-plugins)"
    return unavailable()


environment = SharedEnvironment(lambda: Environment(), _unavailable)


class StrongSwanGatewayTests(unittest.TestCase):
    timeout = 240

    def setUp(self):
        self.env = environment()

    def initiate(self, name: str) -> tuple[subprocess.CompletedProcess, str, str]:
        """Road warrior ``name`` connects; (result, its log, the gateway's log) of the attempt."""
        client_start, gateway_start = len(self.env.client.log()), len(self.env.gateway.log())
        done = self.env.client.swanctl("--initiate", "--child", name, "--timeout", "60", check=False, timeout=90)
        return done, self.env.client.log()[client_start:], self.env.gateway.log()[gateway_start:]

    def terminate(self, name: str) -> None:
        self.env.client.swanctl("--terminate", "--ike", name, "--timeout", "20", check=False, timeout=40)

    def test_road_warrior_is_authenticated_by_nac_through_the_gateway(self):
        nac_start = len(self.env.nac.log_text())
        done, client_log, gateway_log = self.initiate("carol")
        self.addCleanup(self.terminate, "carol")
        everything = (f"{done.stdout}{done.stderr}\n--- client\n{client_log}\n--- gateway\n{gateway_log}"
                      f"\n--- nac\n{self.env.nac.log_text()[nac_start:]}")
        self.assertEqual(done.returncode, 0, everything)
        self.assertIn("EAP method EAP_TTLS succeeded, MSK established", client_log, everything)
        self.assertRegex(gateway_log, r"RADIUS authentication of 'carol' successful", everything)
        self.assertIn("authentication of 'carol@strongswan.org' with EAP successful", gateway_log, everything)
        self.assertRegex(gateway_log, r"IKE_SA rw\[\d+\] established", everything)
        self.assertRegex(gateway_log, r"CHILD_SA rw\{\d+\} established", everything)
        sas = self.env.client.swanctl("--list-sas", "--ike", "carol").stdout
        self.assertIn("ESTABLISHED", sas)
        self.assertIn("INSTALLED", sas)
        # the virtual IP from the gateway's pool, the gateway's side of the tunnel
        self.assertRegex(sas, r"local +10\.3\.0\.\d+/32\n +remote +10\.1\.0\.1/32")
        nac_log = self.env.nac.log_text()[nac_start:]
        self.assertRegex(nac_log, r"sending RADIUS Access-Accept for 'carol' to client '127\.0\.0\.1'")
        self.assertNotIn(SECRET, self.env.nac.log_text())
        self.assertNotIn(PASSWORD, self.env.nac.log_text())

    def test_wrong_password_fails_at_the_road_warrior_and_is_rejected_by_nac(self):
        nac_start = len(self.env.nac.log_text())
        done, client_log, gateway_log = self.initiate("dave")
        self.addCleanup(self.terminate, "dave")
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("received EAP_FAILURE, EAP authentication failed", client_log)
        self.assertRegex(gateway_log, r"RADIUS authentication of 'dave' failed")
        self.assertRegex(self.env.nac.log_text()[nac_start:], r"sending RADIUS Access-Reject for 'dave'")

    def test_both_nac_processes_serve_the_gateway(self):
        def served() -> tuple[int, int]:
            log = self.env.nac.log_text()
            return (len(re.findall(r"\[nac\.radius#info\] sending RADIUS Access-Accept", log)),
                    len(re.findall(r"\[nac\.radius#info worker 1\] sending RADIUS Access-Accept", log)))

        # each connection is a new RADIUS conversation, whose Request Authenticator picks the process
        for _ in range(16):
            if all(served()):
                break
            done, *_ = self.initiate("carol")
            self.terminate("carol")
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertTrue(all(served()), served())
        log = self.env.nac.log_text()
        self.assertNotIn("unknown State", log)
        self.assertNotIn("retransmission", log)
