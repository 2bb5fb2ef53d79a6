"""Every transport listens on ``::`` by default, one socket for IPv6 and
IPv4 (nac.dualstack): real clients over ::1 and 127.0.0.1, IPv4 peers known
by their IPv4 address (logs, sessions, RADIUS clients, IKEv2 NAT detection),
and the fallback to 0.0.0.0 where there is no IPv6."""

from __future__ import annotations

import errno
import json
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.trial import unittest

from nac import config as nac_config
from nac import dualstack
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvManager
from tests.nacserver import NacServer, free_port, make_netns
from tests.test_ikev2_sa import ResponderMixin, _UdpClient, payload
from tests.test_pt_tls_workers import wait_for
from transports.ikev2.message import Eap, ExchangeType, frame_nat_t, unframe_nat_t
from transports.ikev2.sa import IkeSaState

PASSWORD = "erin's password"
SECRET = "dual-stack-s3cret"


def need_ipv6() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        raise unittest.SkipTest(f"no IPv6 loopback here: {exc}")


class AddressTests(unittest.TestCase):
    def test_ipv4_mapped_addresses_are_unmapped(self):
        self.assertEqual(dualstack.unmapped("::ffff:127.0.0.1"), "127.0.0.1")
        self.assertEqual(dualstack.unmapped("::FFFF:192.0.2.7"), "192.0.2.7")
        for other in ("::1", "2001:db8::1", "127.0.0.1", "::ffff:zz", "fe80::1%eth0", "nac.test"):
            self.assertEqual(dualstack.unmapped(other), other)

    def test_an_ipv4_address_is_mapped_for_an_ipv6_socket_only(self):
        self.assertEqual(dualstack.socket_address(socket.AF_INET6, "192.0.2.7"), "::ffff:192.0.2.7")
        self.assertEqual(dualstack.socket_address(socket.AF_INET6, "::1"), "::1")
        self.assertEqual(dualstack.socket_address(socket.AF_INET, "192.0.2.7"), "192.0.2.7")


class BindTests(unittest.TestCase):
    def test_all_addresses_is_one_dual_stack_socket(self):
        need_ipv6()
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            sock = dualstack.bind("::", 0, kind)
            self.addCleanup(sock.close)
            self.assertEqual(sock.family, socket.AF_INET6)
            # whatever net.ipv6.bindv6only says
            self.assertEqual(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY), 0)
        listener = dualstack.bind("::", 0)
        self.addCleanup(listener.close)
        listener.setblocking(True)
        port = listener.getsockname()[1]
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family, socket.SOCK_STREAM) as client:
                client.connect((host, port))
                accepted, peer = listener.accept()
                accepted.close()
                self.assertEqual(dualstack.unmapped(peer[0]), host)

    def test_a_configured_address_is_bound_as_given(self):
        v4 = dualstack.bind("127.0.0.1", 0, socket.SOCK_DGRAM)
        self.addCleanup(v4.close)
        self.assertEqual(v4.getsockname()[0], "127.0.0.1")
        self.assertEqual(dualstack.listen_address("0.0.0.0"), "0.0.0.0")
        with self.assertRaises(CannotListenError):
            dualstack.bind("127.0.0.1", v4.getsockname()[1], socket.SOCK_DGRAM)

    def test_without_ipv6_all_addresses_falls_back_to_ipv4_with_an_info_line(self):
        events = []
        from twisted.logger import globalLogPublisher, formatEvent
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def no_ipv6(family, *args, **kwargs):
            if family == socket.AF_INET6:
                raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
            return real(family, *args, **kwargs)

        real = socket.socket
        self.patch(dualstack.socket, "socket", no_ipv6)
        self.assertEqual(dualstack.listen_address("::", what="RADIUS"), "0.0.0.0")
        self.assertEqual(dualstack.listen_address("127.0.0.1", what="RADIUS"), "127.0.0.1")
        texts = [formatEvent(e) for e in events if e.get("log_namespace") == "nac"]
        self.assertIn("RADIUS: this machine has no IPv6: listening on IPv4 addresses only (0.0.0.0)", texts)


class PtTlsTests(unittest.TestCase):
    def test_clients_over_ipv6_and_ipv4_on_the_default_address(self):
        need_ipv6()
        server = NacServer({"pt-tls": {"listen": None}})
        server.admin("init")
        server.admin("user", "add", "erin", "--password", PASSWORD)
        server.start()
        self.addCleanup(server.stop)
        for host in ("::1", "127.0.0.1"):
            done = server.client("--client", "erin", "--secret", PASSWORD, "--collectors", "os", "--json",
                                 host=host)
            self.assertEqual(done.returncode, 0, done.stderr + server.log_text()[-2000:])
            self.assertIn("recommendation", json.loads(done.stdout))
        log = server.log_text()
        self.assertIn(f"PT-TLS listening on ::[{server.port}]", log)
        self.assertRegex(log, r"accepting PT-TLS stream from ::1\[\d+\]")
        self.assertRegex(log, r"accepting PT-TLS stream from 127\.0\.0\.1\[\d+\]")
        self.assertNotIn("::ffff:", log)
        wait_for(lambda: len(json.loads(server.admin("sessions", "list", "--json"))) == 2, 20, "the sessions")
        sessions = json.loads(server.admin("sessions", "list", "--json"))
        self.assertEqual({s["peer_address"] for s in sessions}, {"::1", "127.0.0.1"})


class RadiusTests(unittest.TestCase):
    """The default address with two processes: the main process reads the
    socket and hands a worker its requests with their source address, IPv6
    or IPv4; the worker answers through the same socket."""

    def test_eapol_test_and_radclient_over_ipv6_and_ipv4(self):
        need_ipv6()
        if shutil.which("eapol_test") is None:
            raise unittest.SkipTest("eapol_test is not installed (Debian package eapoltest)")
        port = free_port(socket.SOCK_DGRAM)
        server = NacServer({"nac": {"transports": "radius"},
                            "radius": {"listen": None, "port": port, "secret": SECRET, "workers": 2,
                                       "clients": "127.0.0.1/32, ::1/128"},
                            "eap": {"tnc": "none"}}, ready="all 1 RADIUS worker processes are accepting")
        server.admin("init")
        server.admin("user", "add", "carol", "--password", PASSWORD, "--eap")
        server.start(timeout=60)
        self.addCleanup(server.stop)
        conf = server.dir / "eapol_test.conf"
        conf.write_text("network={\n  key_mgmt=WPA-EAP\n  eap=TTLS\n  identity=\"carol\"\n"
                        f"  password=\"{PASSWORD}\"\n  ca_cert=\"{server.ca}\"\n  phase2=\"autheap=MD5\"\n}}\n")

        def served(process: str, host: str) -> bool:
            return (f"[nac.radius#info{process}] sending RADIUS Access-Accept for 'carol' to client '{host}'"
                    in server.log_text())

        # each run is a new conversation; its Request Authenticator picks the process
        for host in ("::1", "127.0.0.1"):
            for _ in range(24):
                if served("", host) and served(" worker 1", host):
                    break
                done = subprocess.run(["eapol_test", "-c", str(conf), "-a", host, "-p", str(port), "-s", SECRET,
                                       "-r", "0", "-t", "20"], capture_output=True, text=True, timeout=60)
                out = done.stdout + done.stderr
                self.assertEqual(done.returncode, 0, out[-2000:] + server.log_text()[-3000:])
                self.assertIn("MPPE keys OK: 1  mismatch: 0", out)
            self.assertTrue(served("", host) and served(" worker 1", host), server.log_text()[-3000:])
        if shutil.which("radclient"):
            for target in ("[::1]", "127.0.0.1"):
                done = subprocess.run(["radclient", "-x", "-r", "1", "-t", "5", f"{target}:{port}", "status", SECRET],
                                      input="Message-Authenticator = 0x00\n", capture_output=True, text=True,
                                      timeout=30)
                self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
                self.assertIn("Received Access-Accept", done.stdout)
        log = server.log_text()
        self.assertIn(f"RADIUS server listening on ::[{port}] with 2 processes", log)
        self.assertNotIn("::ffff:", log)
        self.assertNotIn("unknown client", log)


class IkeTests(ResponderMixin, unittest.TestCase):
    """The project's IKE initiator against the responder on the default
    address, over ::1 and 127.0.0.1, IKE_SA_INIT on port 500's socket and
    IKE_AUTH on the NAT-T one."""

    @defer.inlineCallbacks
    def establish(self, host: str):
        from twisted.internet import reactor
        from transports.ikev2.service import make_service

        self.port, self.nat_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
        cfg = nac_config.load(None, {("nac", "state_dir"): str(self.state), ("nac", "transports"): "ikev2",
                                     ("ikev2", "port"): str(self.port), ("ikev2", "nat_port"): str(self.nat_port),
                                     ("eap", "methods"): "md5"})
        self.assertEqual(cfg.get("ikev2", "listen"), "::")
        service = make_service(cfg, TnccsCore(ImvManager([])), None, eap_factory=self.md5_factory())
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        client = _UdpClient()
        listening = reactor.listenUDP(0, client, interface=host)
        self.addCleanup(listening.stopListening)
        me = (host, listening.getHost().port)
        initiator = self.md5_initiator(address=me)

        def send(data, port):
            listening.write(frame_nat_t(data) if port == self.nat_port else data, (host, port))

        @defer.inlineCallbacks
        def answer(port):
            data, addr = yield client.queue.get()
            self.assertEqual(addr[:2], (host, port))
            return unframe_nat_t(data)[1] if port == self.nat_port else data

        send(initiator.ike_sa_init(), self.port)
        self.assertEqual(initiator.receive_init((yield answer(self.port))), "ok")
        (request,) = initiator.first_ike_auth()
        send(request, self.nat_port)
        eap_request = initiator.check_first_response(initiator.receive([(yield answer(self.nat_port))]))
        while True:
            response = initiator.eap_peer.respond(eap_request)
            (request,) = initiator.request(ExchangeType.IKE_AUTH, [Eap(response)])
            send(request, self.nat_port)
            inner = initiator.receive([(yield answer(self.nat_port))])
            eap_request = payload(inner, Eap).data
            if eap_request[0] != 1:
                break
        self.assertEqual(eap_request[0], 3)
        (request,) = initiator.final_ike_auth()
        send(request, self.nat_port)
        initiator.check_final_response(initiator.receive([(yield answer(self.nat_port))]))
        (sa,) = service.responder.ike_sas
        self.assertEqual(sa.state, IkeSaState.ESTABLISHED)
        # the address as the initiator sent from: its NAT detection hash matches
        self.assertEqual(sa.remote, me)
        self.assertEqual(sa.local, (host, self.nat_port))
        self.assertFalse(sa.peer_behind_nat)

    def test_ipv6(self):
        need_ipv6()
        return self.establish("::1")

    def test_ipv4_on_the_dual_stack_socket(self):
        need_ipv6()
        return self.establish("127.0.0.1")


class ConfiguredAddressTests(unittest.TestCase):
    def test_defaults_are_all_addresses_and_ipv4_only_stays_ipv4(self):
        cfg = nac_config.load(None)
        for section in ("pt-tls", "radius", "ikev2"):
            self.assertEqual(cfg.get(section, "listen"), "::", section)
        from transports.pt_tls.service import listening_socket
        sock = listening_socket("0.0.0.0", 0)
        self.addCleanup(sock.close)
        self.assertEqual((sock.family, sock.getsockname()[0]), (socket.AF_INET, "0.0.0.0"))


def charon_connection(name: str, address: str) -> str:
    """A swanctl.conf connection of charon (port 5500) to nac on ``address``
    port 500: EAP-TTLS with inner MD5 as carol, a virtual IP from nac's pool."""
    return f"""
  {name} {{
    version = 2
    local_addrs = {address}
    remote_addrs = {address}
    local_port = 5500
    remote_port = 500
    proposals = aes256-sha256-x25519
    vips = 0.0.0.0
    local {{
      auth = eap-ttls
      id = carol@strongswan.org
      eap_id = carol
    }}
    remote {{
      auth = pubkey
      id = nac.test
    }}
    children {{
      {name} {{
        esp_proposals = aes256gcm16
        remote_ts = 10.1.0.0/16
        start_action = none
      }}
    }}
  }}"""


class StrongSwanTests(unittest.TestCase):
    """strongSwan's charon in a network namespace against nac on the
    default address: one IKE_SA over ::1, one over 127.0.0.1."""

    timeout = 240

    def test_charon_over_ipv6_and_ipv4(self):
        from tests import test_ikev2_strongswan as sw

        why = sw.unavailable()
        if why:
            raise unittest.SkipTest(why)
        netns = make_netns_with_ipv6()
        work = Path(tempfile.mkdtemp(prefix="nac-ike6-"))
        self.addCleanup(shutil.rmtree, work, ignore_errors=True)
        (work / "nac").mkdir()
        server = NacServer({"nac": {"transports": "pt-tls,ikev2"}, "pt-tls": {"workers": "1"},
                            "ikev2": {"port": "500", "nat_port": "4500"},
                            "eap": {"methods": "ttls", "inner_methods": "md5", "tnc": "none"}},
                           workdir=str(work / "nac"), netns=netns, ready=sw.IKEV2_READY).start(timeout=60)
        self.addCleanup(server.stop)
        server.admin("user", "add", "carol", "--password", sw.PASSWORD, "--eap")
        (work / "charon" / "x509ca").mkdir(parents=True)
        shutil.copy(server.ca, work / "charon" / "x509ca" / "nac-ca.pem")
        conf = sw.strongswan_conf(work / "charon", sw.PLUGINS, 5500,
                                  plugin_options="    eap-ttls {\n      phase2_method = md5\n    }")
        swanctl = ("connections {" + charon_connection("over-ipv6", "::1") + charon_connection("over-ipv4", "127.0.0.1")
                   + f'\n}}\nsecrets {{\n  eap-carol {{\n    id = carol\n    secret = "{sw.PASSWORD}"\n  }}\n}}\n')
        (work / "charon" / "strongswan.conf").write_text(conf)
        (work / "charon" / "swanctl.conf").write_text(swanctl)
        charon = sw.CharonDaemon(work / "charon", namespace=netns)
        self.addCleanup(charon.stop)
        self.assertIn("IKEv2 responder listening on ::[500] and [4500] (NAT-T)", server.log_text())
        for name, address in (("over-ipv6", r"::1"), ("over-ipv4", r"127\.0\.0\.1")):
            done = charon.swanctl("--initiate", "--child", name, "--timeout", "60", check=False, timeout=90)
            self.assertEqual(done.returncode, 0, f"{done.stdout}\n{charon.log()[-4000:]}\n{server.log_text()[-4000:]}")
            listing = charon.swanctl("--list-sas", "--ike", name).stdout
            self.assertRegex(listing, rf"{name}: #\d+, ESTABLISHED, IKEv2")
            self.assertRegex(listing, r"local  10\.10\.0\.\d+/32")
            self.assertRegex(charon.log(), rf"IKE_SA {name}\[\d+\] established between {address}\[[^]]+\]"
                                           rf"\.\.\.{address}\[nac\.test\]")
            self.assertRegex(server.log_text(), rf"IKE_SA ikev2\[\d+\] established between {address}\[nac\.test\]"
                                                rf"\.\.\.{address}\[")
        self.assertNotIn("::ffff:", server.log_text())


def make_netns_with_ipv6() -> str:
    """A network namespace (deleted at exit) whose loopback has ::1."""
    netns = make_netns("nac-ds")
    addresses = subprocess.run(["ip", "-n", netns, "-6", "addr", "show", "dev", "lo"], capture_output=True,
                               text=True).stdout
    if "::1/128" not in addresses:
        raise unittest.SkipTest("no IPv6 loopback in a new network namespace here")
    return netns
