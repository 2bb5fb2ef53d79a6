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
* a wrong password: AUTHENTICATION_FAILED at the road warrior, Access-Reject
  at nac;
* new conversations are served by both of nac's processes, whichever of
  the gateway's source ports their requests come from.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from tests.nacserver import NacServer
from tests.test_ikev2_strongswan import CHARON, SWANCTL, unavailable

SECRET = "gateway-radius-s3cret"
PASSWORD = "carol-Secret-42"
COMMON_PLUGINS = ("random nonce openssl kdf pem pkcs1 pkcs8 x509 pubkey curve25519 socket-default vici "
                  "kernel-libipsec kernel-netlink")
READY = "all 1 RADIUS worker processes are accepting"


def strongswan_conf(directory: Path, plugins: str, port: int, extra: str = "") -> str:
    return f"""
charon-systemd {{
  load = {COMMON_PLUGINS} {plugins}
  port = {port}
  port_nat_t = {port + 1 if port != 500 else 4500}
  retransmit_tries = 2
  retransmit_timeout = 2
  install_routes = no
  filelog {{
    test {{
      path = {directory}/charon.log
      flush_line = yes
      default = 1
      ike = 2
      cfg = 2
    }}
  }}
  journal {{
    default = -1
  }}
  plugins {{
    vici {{
      socket = unix://{directory}/charon.vici
    }}
{extra}
  }}
}}
swanctl {{
  socket = unix://{directory}/charon.vici
}}
"""


class Daemon:
    """charon-systemd in the namespace and its own mount namespace."""

    def __init__(self, namespace: str, directory: Path, conf: str, swanctl_conf: str) -> None:
        self.directory = directory
        (directory / "strongswan.conf").write_text(conf)
        (directory / "swanctl.conf").write_text(swanctl_conf)
        self.env = dict(os.environ, STRONGSWAN_CONF=str(directory / "strongswan.conf"))
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "unshare", "-m", "sh", "-c",
             f"mount -t tmpfs tmpfs /run && exec {CHARON}"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (directory / "charon.vici").exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"charon-systemd did not start:\n{self.log()}")
            time.sleep(0.1)
        self.swanctl("--load-all", "--file", str(directory / "swanctl.conf"))

    def swanctl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([SWANCTL, *args, "--uri", f"unix://{self.directory}/charon.vici"], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=check)

    def log(self) -> str:
        path = self.directory / "charon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


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

    def _gateway(self, d: Path) -> Daemon:
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
        return Daemon(self.namespace, d, strongswan_conf(d, "eap-identity eap-radius", 500, extra), swanctl_conf)

    def _client(self, d: Path) -> Daemon:
        (d / "x509ca").mkdir(parents=True)
        shutil.copy(self.nac.state_dir / "ca.pem", d / "x509ca" / "ca.pem")
        extra = """    eap-ttls {
      phase2_method = md5
    }"""
        conns = []
        for name, who in (("carol", "carol"), ("dave", "dave")):
            conns.append(f"""
  {name} {{
    version = 2
    local_addrs = 127.0.0.1
    remote_addrs = 127.0.0.1
    local_port = 5500
    remote_port = 500
    proposals = aes256-sha256-x25519
    vips = 0.0.0.0
    local {{
      auth = eap-ttls
      id = {who}@strongswan.org
      eap_id = {who}
    }}
    remote {{
      auth = pubkey
      id = nac.test
    }}
    children {{
      {name} {{
        remote_ts = 10.1.0.1/32
        esp_proposals = aes256gcm16
        start_action = none
      }}
    }}
  }}""")
        swanctl_conf = ("connections {" + "".join(conns) + "\n}\nsecrets {\n"
                        f'  eap-carol {{\n    id = carol\n    secret = "{PASSWORD}"\n  }}\n'
                        '  eap-dave {\n    id = dave\n    secret = "not-daves-password"\n  }\n}\n')
        return Daemon(self.namespace, d, strongswan_conf(d, "eap-identity eap-md5 eap-ttls", 5500, extra),
                      swanctl_conf)

    def stop(self) -> None:
        for daemon in (self.client, self.gateway):
            if daemon is not None:
                daemon.stop()
        if self.nac is not None:
            self.nac.stop()
        subprocess.run(["ip", "netns", "delete", self.namespace], capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)


_environment: Environment | None = None
_environment_error: str | None = None


def environment() -> Environment:
    global _environment, _environment_error
    reason = unavailable()
    if reason:
        raise unittest.SkipTest(reason)
    if not os.path.exists("/usr/lib/ipsec/plugins/libstrongswan-eap-radius.so"):
        raise unittest.SkipTest("strongSwan's eap-radius plugin is not installed (libcharon-extra-plugins)")
    if _environment_error is not None:
        raise RuntimeError(_environment_error)
    if _environment is None:
        try:
            _environment = Environment()
        except Exception as exc:
            _environment_error = f"the test environment did not start: {exc}"
            raise
        atexit.register(_environment.stop)
    return _environment


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
