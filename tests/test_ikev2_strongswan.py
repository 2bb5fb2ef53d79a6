"""Debian's strongSwan (charon-systemd + swanctl) as the IKEv2 initiator
against the real ``twistd -n nac`` with ``transports = pt-tls,ikev2``.

Both run in a network namespace made for the test: nac on 127.0.0.1:500
and 4500, charon on 5500 and 5501 in its own mount namespace (a private
/run, see /work/shared/ENVIRONMENT.md), with kernel-libipsec so that its
CHILD_SAs install (userspace ESP over a TUN device) although the kernel has
no ESP.  What is shown, on strongSwan's side (``swanctl --list-sas``) and
in both logs:

* EAP-TTLS with inner EAP-MD5, and EAP-MD5 alone: IKE_SA ESTABLISHED and
  CHILD_SA INSTALLED with the expected proposal, traffic selectors (the
  ``allow_ts`` network) and the virtual IP from the pool;
* with small fragment sizes on both sides (nac 576, charon 300), the
  certificate and EAP-TTLS messages travel in RFC 7383 fragments both ways;
* a wrong password: an EAP-Failure, and nac keeps no IKE SA;
* DH groups 14, 19 and 31 with AES-CBC and AES-GCM suites, each in turn;
* ``kernel = xfrm``: nac installs the CHILD_SA in XFRM and a ping crosses
  the tunnel, or, on a kernel without ESP, the test says so and skips.

The namespace, nac and charon are started once per process for all tests
and torn down at exit.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from tests.charon import CHARON, SWANCTL, CharonDaemon, CharonExited, start_charon
from tests.nacserver import NacServer, make_netns
from transports.ikev2.kernel import kernel_esp_available

PLUGINS = ("random nonce openssl kdf pem pkcs1 pkcs8 x509 pubkey curve25519 socket-default vici "
           "eap-identity eap-md5 eap-ttls kernel-libipsec kernel-netlink")
PASSWORD = "carol-Secret-42"
IKE_PROPOSALS = ("aes256-sha256-x25519, aes128-sha256-modp2048, aes128gcm16-prfsha256-ecp256, "
                 "aes128-sha256-modp3072, aes256gcm16-prfsha384-ecp384")


def unavailable() -> str | None:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs root on Linux (network and mount namespaces)"
    for tool in (CHARON, SWANCTL):
        if not os.path.exists(tool):
            return f"{tool} is not installed (Debian charon-systemd, strongswan-swanctl)"
    if not shutil.which("ip") or not shutil.which("unshare"):
        return "ip (iproute2) and unshare are needed"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun for strongSwan's kernel-libipsec"
    return None


# (name, IKE proposal, ESP proposal, local auth, EAP identity, EAP secret)
CONNECTIONS = (
    ("ttls-md5", "aes256-sha256-x25519", "aes256gcm16", "eap-ttls", "carol", PASSWORD),
    ("eap-md5", "aes256-sha256-x25519", "aes128-sha256", "eap-md5", "carol", PASSWORD),
    ("wrong-password", "aes256-sha256-x25519", "aes256gcm16", "eap-ttls", "dave", "not-daves-password"),
    ("g14-cbc", "aes128-sha256-modp2048", "aes128-sha256", "eap-ttls", "carol", PASSWORD),
    ("g19-gcm", "aes128gcm16-prfsha256-ecp256", "aes256gcm16", "eap-ttls", "carol", PASSWORD),
    ("g31-cbc", "aes256-sha256-x25519", "aes128-sha256", "eap-ttls", "carol", PASSWORD),
    # strongSwan's TNC examples: the gateway authenticated by EAP-TTLS alone
    # (RFC 5998), no certificate asked for, and PFS in the ESP proposal
    ("ttls-eap-only", "aes128-sha256-modp3072", "aes128gcm16-modp3072", "eap-ttls", "carol", PASSWORD,
     "eap-ttls", "send_certreq = no"),
)


#: nac has started once it logs this (it listens on UDP, not on PT-TLS alone)
IKEV2_READY = "IKEv2 responder listening"


def strongswan_conf(directory: Path, plugins: str, port: int, options: str = "", plugin_options: str = "") -> str:
    """A ``strongswan.conf`` for charon-systemd in ``directory``: its log
    file and vici socket there, IKE on ``port`` (NAT-T on the next one, or
    4500 beside 500), routes left alone; ``options`` and ``plugin_options``
    are more lines for the daemon's section and its ``plugins``."""
    return f"""
charon-systemd {{
  load = {plugins}
  port = {port}
  port_nat_t = {4500 if port == 500 else port + 1}
  retransmit_tries = 2
  retransmit_timeout = 2
  install_routes = no
{options}
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
{plugin_options}
  }}
}}
swanctl {{
  socket = unix://{directory}/charon.vici
}}
"""


class Charon(CharonDaemon):
    """The initiator of these tests: a connection for each of ``connections``."""

    def __init__(self, namespace: str, directory: Path, ca: Path, connections=CONNECTIONS) -> None:
        (directory / "x509ca").mkdir(parents=True, exist_ok=True)
        shutil.copy(ca, directory / "x509ca" / "nac-ca.pem")
        conf = strongswan_conf(directory, PLUGINS, 5500, options="  fragment_size = 300",
                               plugin_options="    eap-ttls {\n      phase2_method = md5\n    }")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "strongswan.conf").write_text(conf)
        (directory / "swanctl.conf").write_text(self.swanctl_conf(connections))
        super().__init__(directory, namespace=namespace)

    @staticmethod
    def swanctl_conf(connections, remote_ts: str = "0.0.0.0/0") -> str:
        """swanctl.conf of initiator ``connections`` (name, IKE proposal, ESP
        proposal, local auth, EAP identity, EAP secret[, remote auth[, more
        lines of the connection]]) to 127.0.0.1:500, asking for a virtual IP
        and a tunnel to ``remote_ts``; the gateway's remote auth is pubkey
        unless given."""
        conns, secrets = [], {}
        for name, ike, esp, auth, eap_id, secret, *rest in connections:
            remote_auth, more = (list(rest) + ["pubkey", ""])[:2] if len(rest) < 2 else rest
            conns.append(f"""
  {name} {{
    version = 2
    local_addrs = 127.0.0.1
    remote_addrs = 127.0.0.1
    local_port = 5500
    remote_port = 500
    proposals = {ike}
    vips = 0.0.0.0
    fragmentation = yes
    local {{
      auth = {auth}
      id = {eap_id}@strongswan.org
      eap_id = {eap_id}
    }}
    remote {{
      auth = {remote_auth}
      id = nac.test
    }}
    {more}
    children {{
      {name} {{
        esp_proposals = {esp}
        remote_ts = {remote_ts}
        start_action = none
      }}
    }}
  }}""")
            secrets[eap_id] = secret
        return ("connections {" + "".join(conns) + "\n}\nsecrets {\n" + "".join(
            f'  eap-{who} {{\n    id = {who}\n    secret = "{secret}"\n  }}\n' for who, secret in secrets.items())
            + "}\n")


class Environment:
    """The namespace, nac (users carol and dave) and charon, shared by the tests."""

    def __init__(self) -> None:
        self.namespace = f"nac-ike-{os.getpid()}"
        self.directory = Path(tempfile.mkdtemp(prefix="nac-ike-"))
        self.nac = None
        self.charon = None
        subprocess.run(["ip", "netns", "add", self.namespace], check=True, capture_output=True)
        try:
            subprocess.run(["ip", "-n", self.namespace, "link", "set", "lo", "up"], check=True)
            (self.directory / "nac").mkdir()
            self.nac = NacServer({
                "nac": {"transports": "pt-tls,ikev2", "log_level": "info"},
                "pt-tls": {"workers": "1"},
                # small fragments: the EAP-TTLS and certificate messages are sent in RFC 7383
                # fragments both ways
                "ikev2": {"listen": "127.0.0.1", "port": "500", "nat_port": "4500", "fragment_size": "576",
                          "ike_proposals": IKE_PROPOSALS},  # nac's default ESP proposals
                "eap": {"methods": "ttls, md5", "inner_methods": "md5", "tnc": "none"},
            }, workdir=str(self.directory / "nac"), netns=self.namespace, ready=IKEV2_READY).start(timeout=60)
            self.nac.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
            self.nac.admin("user", "add", "dave", "--password", "daves-real-password", "--eap")
            self.charon = Charon(self.namespace, self.directory / "charon", self.nac.ca)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.charon is not None:
            self.charon.stop()
        if self.nac is not None:
            self.nac.stop()
        subprocess.run(["ip", "netns", "delete", self.namespace], capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)


class SharedEnvironment:
    """One environment (namespace, daemons) for every test of a module:
    ``make()`` is started by the first test that calls this object, after
    ``unavailable()`` had nothing to say (else the test is skipped), and
    stopped at exit.  An environment that failed to start fails every later
    test at once, with its reason."""

    def __init__(self, make, unavailable=unavailable):
        self.make = make
        self.unavailable = unavailable
        self.environment = None
        self.error: str | None = None

    def __call__(self):
        reason = self.unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        if self.error is not None:
            raise RuntimeError(self.error)
        if self.environment is None:
            try:
                self.environment = self.make()
            except Exception as exc:
                self.error = f"the test environment did not start: {exc}"
                raise
            atexit.register(self.environment.stop)
        return self.environment


environment = SharedEnvironment(lambda: Environment())


class StrongSwanInitiatorTests(unittest.TestCase):
    timeout = 240

    def setUp(self):
        self.env = environment()

    def initiate(self, name: str) -> tuple[subprocess.CompletedProcess, str]:
        """``swanctl --initiate`` of connection ``name``; (result, charon log lines of it)."""
        start = len(self.env.charon.log())
        nac_start = len(self.env.nac.log_text())
        done = self.env.charon.swanctl("--initiate", "--child", name, "--timeout", "60", check=False, timeout=90)
        self.nac_log = self.env.nac.log_text()[nac_start:]
        return done, self.env.charon.log()[start:]

    def terminate(self, name: str) -> None:
        """Delete the IKE SA from strongSwan's side; wait until nac has deleted it too."""
        self.env.charon.swanctl("--terminate", "--ike", name, "--timeout", "20", check=False)
        numbers = re.findall(r"IKE_SA ikev2\[(\d+)\] established", self.nac_log)
        deadline = time.monotonic() + 10
        while numbers and time.monotonic() < deadline:
            if f"IKE_SA ikev2[{numbers[-1]}] deleted" in self.env.nac.log_text():
                return
            time.sleep(0.1)
        self.assertFalse(numbers, f"nac did not delete IKE_SA ikev2[{numbers[-1] if numbers else ''}]")

    def list_sa(self, name: str) -> str:
        return self.env.charon.swanctl("--list-sas", "--ike", name).stdout

    def assert_established(self, name: str, ike: str, esp: str, during=None):
        """Connection ``name`` is established with these algorithms; ``during(name)``
        runs before it is terminated."""
        done, log = self.initiate(name)
        try:
            self.assertEqual(done.returncode, 0, f"swanctl --initiate failed:\n{done.stdout}\n{log}\n"
                                                  f"nac:\n{self.nac_log}")
            listing = self.list_sa(name)
            self.assertRegex(listing, rf"{name}: #\d+, ESTABLISHED, IKEv2")
            self.assertIn(ike, listing)
            self.assertRegex(listing, rf"{name}: #\d+, reqid \d+, INSTALLED, TUNNEL-in-UDP, ESP:{re.escape(esp)}")
            # the virtual IP from nac's pool, the allow network behind nac
            self.assertRegex(listing, r"local  10\.10\.0\.\d+/32")
            self.assertIn("remote 10.1.0.0/16", listing)
            self.assertRegex(log, r"installing new virtual IP 10\.10\.0\.\d+")
            self.assertRegex(log, rf"IKE_SA {name}\[\d+\] established between 127\.0\.0\.1\[[^]]+\]"
                                  r"\.\.\.127\.0\.0\.1\[nac\.test\]")
            self.assertRegex(log, rf"CHILD_SA {name}{{\d+}} established with SPIs [0-9a-f]+_i [0-9a-f]+_o "
                                  r"and TS 10\.10\.0\.\d+/32 === 10\.1\.0\.0/16")
            # and on nac's side
            self.assertRegex(self.nac_log, r"IKE_SA ikev2\[\d+\] established between 127\.0\.0\.1\[nac\.test\]")
            self.assertRegex(self.nac_log, r"CHILD_SA ikev2\{\d+\} established with SPIs")
            if during is not None:
                during(name)
            return listing, log
        finally:
            self.terminate(name)

    def test_eap_ttls_with_inner_eap_md5(self):
        listing, log = self.assert_established("ttls-md5", "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/"
                                               "CURVE_25519", "AES_GCM_16-256")
        # nac's certificate authenticated the gateway, the TTLS tunnel carried MD5, the MSK made both AUTHs
        self.assertIn("authentication of 'nac.test' with ECDSA_WITH_SHA256_DER successful", log)
        self.assertIn("EAP method EAP_TTLS succeeded, MSK established", log)
        self.assertIn("authentication of 'nac.test' with EAP successful", log)
        self.assertIn("EAP_TTLS phase2 authentication of 'carol' with EAP_MD5 successful", self.nac_log)
        # fragments both ways (RFC 7383): strongSwan reassembled ours, nac strongSwan's
        self.assertRegex(log, r"received fragment #1 of \d+, waiting for complete IKE message")
        self.assertRegex(log, r"reassembled fragmented IKE message \(\d+ bytes\)")
        self.assertRegex(self.nac_log, r"received fragment #\d+ of \d+, reassembled fragmented IKE message")
        self.assertRegex(self.nac_log, r"splitting IKE message \(\d+ bytes\) into \d+ fragments")

    def rekey_with_pfs(self, name: str) -> None:
        """The CHILD_SA rekeyed by the client with a key exchange (its ESP
        proposal names a DH group: PFS), as after its lifetime."""
        start = len(self.env.charon.log())
        self.env.charon.swanctl("--rekey", "--child", name)
        deadline = time.monotonic() + 30
        while not re.search(rf"CHILD_SA {name}{{\d+}} established", self.env.charon.log()[start:]):
            log = self.env.charon.log()[start:]
            self.assertNotIn("NO_PROPOSAL_CHOSEN", log)
            self.assertLess(time.monotonic(), deadline, f"no rekeyed CHILD_SA:\n{log}")
            time.sleep(0.1)
        log = self.env.charon.log()[start:]
        self.assertRegex(log, r"generating CREATE_CHILD_SA request \d+ \[ N\(REKEY_SA\) SA No KE TSi TSr \]")
        self.assertRegex(log, r"parsed CREATE_CHILD_SA response \d+ \[ SA No KE TSi TSr \]")
        self.assertIn("AES_GCM_16-128/MODP_3072", self.list_sa(name))

    def test_gateway_authenticated_by_eap_ttls_alone(self):
        listing, log = self.assert_established("ttls-eap-only", "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/"
                                               "MODP_3072", "AES_GCM_16-128", during=self.rekey_with_pfs)
        self.assertNotIn("with ECDSA_WITH_SHA256_DER successful", log)  # no certificate AUTH
        self.assertIn("EAP method EAP_TTLS succeeded, MSK established", log)
        self.assertIn("authentication of 'nac.test' with EAP successful", log)

    def test_eap_md5(self):
        listing, log = self.assert_established("eap-md5", "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/"
                                               "CURVE_25519", "AES_CBC-128/HMAC_SHA2_256_128")
        self.assertIn("EAP method EAP_MD5 succeeded, no MSK established", log)

    def test_wrong_password_is_an_eap_failure(self):
        done, log = self.initiate("wrong-password")
        self.assertNotEqual(done.returncode, 0)
        # the EAP-Failure alone, as strongSwan's own responder sends it
        self.assertIn("parsed IKE_AUTH response 6 [ EAP/FAIL ]", log)
        self.assertIn("received EAP_FAILURE, EAP authentication failed", log)
        self.assertNotIn("established", log)
        self.assertRegex(self.nac_log, r"EAP authentication of '[^']*' failed")
        self.assertRegex(self.nac_log, r"IKE_SA ikev2\[\d+\] deleted")
        self.assertEqual(self.env.charon.swanctl("--list-sas", "--ike", "wrong-password").stdout.strip(), "")

    def test_dh_groups_and_suites_in_turn(self):
        for name, ike, esp in (
                ("g14-cbc", "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048",
                 "AES_CBC-128/HMAC_SHA2_256_128"),
                ("g19-gcm", "AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256", "AES_GCM_16-256"),
                ("g31-cbc", "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519",
                 "AES_CBC-128/HMAC_SHA2_256_128")):
            self.assert_established(name, ike, esp)


class XfrmKernelTests(unittest.TestCase):
    """``kernel = xfrm``: nac installs the CHILD_SA in the gateway's XFRM and
    a ping from the client's virtual IP reaches the allow network through
    the tunnel.  Two namespaces joined by a veth pair: the gateway (nac on
    10.99.0.1, 10.1.0.1 of the allow network on its loopback) and the
    client (charon with kernel-netlink on 10.99.0.2)."""

    timeout = 240

    def setUp(self):
        reason = unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        available, said = kernel_esp_available()
        if not available:
            raise unittest.SkipTest(f"this kernel has no ESP support (ip xfrm state add said: {said}); nac's "
                                    "kernel = xfrm path cannot run end to end here, its XFRM requests are "
                                    "unit-tested in tests/test_ikev2_sa.py (KernelTests)")

    def ip(self, namespace: str, *args: str) -> None:
        subprocess.run(["ip", "-n", namespace, *args], check=True, capture_output=True)

    def test_ping_through_a_tunnel_nac_installed(self):
        tag = f"{os.getpid() % 100000}"
        gateway, client = f"nac-xgw-{tag}", f"nac-xcl-{tag}"
        directory = Path(tempfile.mkdtemp(prefix="nac-xfrm-"))
        self.addCleanup(shutil.rmtree, directory, True)
        for namespace in (gateway, client):
            subprocess.run(["ip", "netns", "add", namespace], check=True, capture_output=True)
            self.addCleanup(subprocess.run, ["ip", "netns", "delete", namespace], capture_output=True)
            self.ip(namespace, "link", "set", "lo", "up")
        subprocess.run(["ip", "link", "add", f"xg{tag}", "netns", gateway, "type", "veth", "peer", "name",
                        f"xc{tag}", "netns", client], check=True, capture_output=True)
        self.ip(gateway, "addr", "add", "10.99.0.1/24", "dev", f"xg{tag}")
        self.ip(gateway, "link", "set", f"xg{tag}", "up")
        self.ip(client, "addr", "add", "10.99.0.2/24", "dev", f"xc{tag}")
        self.ip(client, "link", "set", f"xc{tag}", "up")
        # a host of the allow network: an address of the gateway itself
        self.ip(gateway, "addr", "add", "10.1.0.1/32", "dev", "lo")
        # answers to the virtual IPs leave by the veth, where the XFRM policy catches them
        self.ip(gateway, "route", "add", "10.10.0.0/24", "via", "10.99.0.2")
        (directory / "nac").mkdir()
        nac = NacServer({
            "nac": {"transports": "pt-tls,ikev2"},
            "pt-tls": {"workers": "1", "listen": "127.0.0.1"},
            "ikev2": {"listen": "10.99.0.1", "kernel": "xfrm", "esp_proposals": "aes256gcm16"},
            "eap": {"methods": "md5", "tnc": "none"},
        }, workdir=str(directory / "nac"), netns=gateway, ready=IKEV2_READY).start(timeout=60)
        self.addCleanup(nac.stop)
        nac.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
        charon_dir = directory / "charon"
        (charon_dir / "x509ca").mkdir(parents=True)
        shutil.copy(nac.ca, charon_dir / "x509ca" / "nac-ca.pem")
        (charon_dir / "strongswan.conf").write_text(f"""
charon-systemd {{
  load = {PLUGINS.replace("kernel-libipsec ", "")}
  filelog {{
    test {{
      path = {charon_dir}/charon.log
      flush_line = yes
      default = 1
    }}
  }}
  journal {{
    default = -1
  }}
  plugins {{
    vici {{
      socket = unix://{charon_dir}/charon.vici
    }}
  }}
}}
""")
        (charon_dir / "swanctl.conf").write_text(f"""
connections {{
  xfrm {{
    version = 2
    local_addrs = 10.99.0.2
    remote_addrs = 10.99.0.1
    proposals = aes256-sha256-x25519
    vips = 0.0.0.0
    local {{
      auth = eap-md5
      id = carol@strongswan.org
      eap_id = carol
    }}
    remote {{
      auth = pubkey
      id = nac.test
    }}
    children {{
      xfrm {{
        esp_proposals = aes256gcm16
        remote_ts = 10.1.0.0/16
        start_action = none
      }}
    }}
  }}
}}
secrets {{
  eap-carol {{
    id = carol
    secret = "{PASSWORD}"
  }}
}}
""")
        charon = CharonDaemon(charon_dir, namespace=client)
        self.addCleanup(charon.stop)
        done = charon.swanctl("--initiate", "--child", "xfrm", "--timeout", "60", check=False, timeout=90)
        self.assertEqual(done.returncode, 0, f"{done.stdout}\nnac:\n{nac.log_text()}")
        states = subprocess.run(["ip", "-n", gateway, "xfrm", "state"], capture_output=True, text=True).stdout
        self.assertEqual(states.count("proto esp"), 2, states)
        policies = subprocess.run(["ip", "-n", gateway, "xfrm", "policy"], capture_output=True, text=True).stdout
        self.assertRegex(policies, r"src 10\.1\.0\.0/16 dst 10\.10\.0\.1/32 \s*dir out")
        ping = subprocess.run(["ip", "netns", "exec", client, "ping", "-c", "3", "-W", "2", "-I", "10.10.0.1",
                               "10.1.0.1"], capture_output=True, text=True, timeout=30)
        self.assertEqual(ping.returncode, 0, ping.stdout + ping.stderr)
        # deleting the IKE SA removes what nac installed
        charon.swanctl("--terminate", "--ike", "xfrm", check=False, timeout=30)
        deadline = time.monotonic() + 10
        while "proto esp" in subprocess.run(["ip", "-n", gateway, "xfrm", "state"], capture_output=True,
                                            text=True).stdout:
            self.assertLess(time.monotonic(), deadline, "nac left its XFRM states behind")
            time.sleep(0.2)


class CharonHarnessTests(unittest.TestCase):
    """A charon that cannot start is reported as such, not as swanctl's exit status 111."""

    def setUp(self):
        reason = unavailable()
        if reason:
            raise unittest.SkipTest(reason)

    def test_a_charon_that_exits_is_reported_with_its_status_and_output(self):
        directory = Path(tempfile.mkdtemp(prefix="nac-charon-"))
        self.addCleanup(shutil.rmtree, directory, True)
        # a critical plugin ('!') that does not exist: charon gives up at start
        conf = strongswan_conf(directory, PLUGINS + " nac-no-such-plugin!", 5500)
        error = self.assertRaises(CharonExited, start_charon, directory, conf, "",
                                  namespace=make_netns("nac-charon"))
        self.assertIn("charon-systemd exited with status", str(error))
        self.assertIn("nac-no-such-plugin", str(error))
