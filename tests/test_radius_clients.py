"""Per-NAS RADIUS clients: the ``[radius-client:NAME]`` sections and their
one-line errors, the client table (longest prefix, IPv4-mapped senders),
and the sans-IO server choosing each NAS's secret, naming it in the log and
the session, and using its own enforcement (real signed packets, checked
with each NAS's secret).  Against twistd: tests/test_radius_clients_e2e.py."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.trial import unittest

from nac import log as nac_log
from nac.config import ConfigError, load
from tests.test_radius_server import EAP_IDENTITY, EAP_RESPONSE, Nas, ServerTestCase, eap
from transports.radius.clients import RadiusClient, RadiusClientTable, client_table, ip_address
from transports.radius.enforcement import RadiusEnforcement
from transports.radius.packet import AttributeType as A
from transports.radius.packet import Code
from transports.radius.server import RadiusServer

SW1, SW2, LEGACY = "secret-of-switch-one", "secret-of-switch-two", "the-old-shared-secret"
net = ipaddress.ip_network


class ConfigMixin:
    def write(self, text: str) -> str:
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return str(path)

    def problems(self, text: str) -> list[str]:
        path = self.write(text)
        with self.assertRaises(ConfigError) as cm:
            load(path)
        for line in cm.exception.problems:
            self.assertNotIn("\n", line)
            self.assertTrue(line.startswith(path + ":") or line.startswith("command line"), line)
            for secret in (SW1, SW2, LEGACY):
                self.assertNotIn(secret, line)
        return list(cm.exception.problems)


class ConfigTests(ConfigMixin, unittest.TestCase):
    def test_sections_with_their_own_secrets(self):
        secret_file = Path(self.write(SW2 + "\nsecond line ignored\n"))
        cfg = load(self.write(
            "[nac]\ntransports = radius\n"
            f"[radius-client:sw1]\naddress = 127.0.0.1\nsecret = {SW1}\n"
            f"[radius-client:gw.east-2]\naddress = 10.1.0.0/16, 2001:db8::/64\nsecret_file = {secret_file}\n"
            "filter_id_allow = ipsec-allow\nsession_timeout = 3600\n"))
        self.assertEqual(cfg.named_sections("radius-client"), {
            "sw1": {"address": [net("127.0.0.1/32")], "secret": SW1},
            "gw.east-2": {"address": [net("10.1.0.0/16"), net("2001:db8::/64")], "secret_file": str(secret_file),
                          "filter_id_allow": "ipsec-allow", "session_timeout": 3600}})
        self.assertIsNone(cfg.get("radius", "secret"))  # not needed with named clients
        self.assertNotIn(SW1, repr(cfg))
        table = client_table(cfg)
        self.assertEqual(sorted((c.name, str(c.network)) for c in table.clients),
                         [("gw.east-2", "10.1.0.0/16"), ("gw.east-2", "2001:db8::/64"), ("sw1", "127.0.0.1/32")])
        self.assertEqual(table.find("10.1.2.3").secret, SW2.encode())
        self.assertEqual(table.find("127.0.0.1").secret, SW1.encode())
        # per-NAS enforcement: its own keys, the others from [radius]
        gw = table.find("2001:db8::7").enforcement
        self.assertEqual(gw.enforce(None, _Decision("allowed")).description,
                         "access allowed: Filter-Id 'ipsec-allow', Session-Timeout 3600 s")
        self.assertEqual(gw.enforce(None, _Decision("isolate")).description,
                         "isolate: Filter-Id 'isolate', Session-Timeout 3600 s")
        self.assertIsNone(table.find("127.0.0.1").enforcement)

    def test_an_ipsec_gateway_gets_tunnel_type_esp_with_its_filter_id(self):
        cfg = load(self.write(f"[nac]\ntransports = radius\n[radius]\nsecret = {LEGACY}\nclients = 127.0.0.0/8\n"
                              f"[radius-client:moon]\naddress = 127.0.0.2\nsecret = {SW1}\n"
                              "filter_id_tunnel_type = esp\n"))
        table = client_table(cfg)
        self.assertEqual(table.find("127.0.0.2").enforcement.enforce(None, _Decision("isolate")).description,
                         "isolate: Filter-Id 'isolate', Tunnel-Type ESP")
        # the switches of [radius] clients keep the Filter-Id alone
        self.assertIsNone(table.find("127.0.0.9").enforcement)

    def test_old_clients_keep_working_beside_named_ones(self):
        cfg = load(self.write(f"[nac]\ntransports = radius\n[radius]\nsecret = {LEGACY}\nclients = 127.0.0.0/8\n"
                              f"[radius-client:sw1]\naddress = 127.0.0.1\nsecret = {SW1}\n"))
        table = client_table(cfg)
        self.assertEqual((table.find("127.0.0.1").name, table.find("127.0.0.1").secret), ("sw1", SW1.encode()))
        self.assertEqual((table.find("127.0.0.9").name, table.find("127.0.0.9").secret), ("", LEGACY.encode()))
        self.assertIsNone(table.find("192.0.2.1"))
        # the old way alone, as before
        table = client_table(load(self.write(f"[nac]\ntransports = radius\n[radius]\nsecret = {LEGACY}\n")))
        self.assertEqual([(c.name, str(c.network)) for c in table.clients], [("", "127.0.0.1/32")])

    def test_ipv4_mapped_addresses_in_the_configuration_are_ipv4(self):
        cfg = load(self.write(f"[radius-client:sw1]\naddress = ::ffff:192.0.2.0/120\nsecret = {SW1}\n"
                              f"[radius]\nsecret = {LEGACY}\nclients = ::ffff:198.51.100.7\n"))
        self.assertEqual(cfg.named_sections("radius-client")["sw1"]["address"], [net("192.0.2.0/24")])
        self.assertEqual(cfg.get("radius", "clients"), [net("198.51.100.7/32")])

    def test_errors_are_one_line_each(self):
        cases = {
            # duplicate name: the section twice
            f"[radius-client:sw1]\naddress = 10.0.0.1\nsecret = {SW1}\n"
            f"[radius-client:sw1]\naddress = 10.0.0.2\nsecret = {SW2}\n":
                ["line 4: section [radius-client:sw1] appears twice"],
            f"[radius-client:sw1]\naddress = 10.0.0.1\nsecret = {SW1}\n"
            f"[radius-client:SW1]\naddress = 10.0.0.2\nsecret = {SW2}\n":
                ["[radius-client:SW1]: the same name as [radius-client:sw1] but for upper and lower case"],
            f"[radius-client:sw1]\naddress = 10.0.0.0/33\nsecret = {SW1}\n":
                ["[radius-client:sw1] address: '10.0.0.0/33' has item '10.0.0.0/33', which is not an IP network"],
            f"[radius-client:sw1]\naddress = 10.0.0.1/24\nsecret = {SW1}\n":
                ["[radius-client:sw1] address: '10.0.0.1/24' has item '10.0.0.1/24', which has host bits set "
                 "(the network is 10.0.0.0/24)"],
            "[radius-client:sw1]\naddress = 10.0.0.1\n":
                ["[radius-client:sw1] secret: required (or secret_file)"],
            f"[radius-client:sw1]\nsecret = {SW1}\n":
                ["[radius-client:sw1] address: required"],
            f"[radius-client:sw1]\naddress = 10.0.0.1\nsecret = {SW1}\nsecret_file = /x\n":
                ["[radius-client:sw1] secret_file: give secret or secret_file, not both"],
            f"[radius-client:sw1]\naddress = 10.0.0.1\nsecret = {SW1}\n"
            f"[radius-client:sw2]\naddress = 10.0.0.1/32\nsecret = {SW2}\n":
                ["[radius-client:sw2] address: 10.0.0.1/32 is already the address of [radius-client:sw1]"],
            f"[radius-client:sw 1]\naddress = 10.0.0.1\nsecret = {SW1}\n":
                ["[radius-client:sw 1]: 'sw 1' is not a short name"],
            f"[radius-client:sw1]\naddress = 10.0.0.1\nsecret = {SW1}\nsecrett = {SW1}\n":
                ["[radius-client:sw1] secrett: unknown key; did you mean 'secret'?"],
            f"[radius-client:sw1]\naddress = 10.0.0.1\nsecret = {SW1}\nvlan_allow = 5000\n":
                ["[radius-client:sw1] vlan_allow: '5000' is not a VLAN id"],
            "[nac]\ntransports = radius\n":
                ["[radius] secret: required because 'radius' is in [nac] transports and no "
                 "[radius-client:NAME] section names a NAS"],
            f"[nac]\ntransports = radius\n[radius]\nclients = 10.0.0.0/8\n"
            f"[radius-client:sw1]\naddress = 10.0.0.1\nsecret = {SW1}\n":
                ["[radius] clients: these NASes need [radius] secret"],
        }
        for text, expected in cases.items():
            problems = self.problems(text)
            self.assertEqual(len(problems), len(expected), problems)
            for fragment, problem in zip(expected, problems):
                self.assertIn(fragment, problem)

    def test_secret_file_errors(self):
        missing = Path(self.mktemp())
        path = self.write(f"[nac]\ntransports = radius\n[radius-client:sw1]\naddress = 10.0.0.1\n"
                          f"secret_file = {missing}\n")
        cfg = load(path)
        with self.assertRaises(ConfigError) as cm:
            client_table(cfg)
        self.assertEqual(str(cm.exception),
                         f"{path}: [radius-client:sw1] secret_file: cannot read {missing}: No such file or directory")
        missing.write_text("\n" + SW1 + "\n")
        with self.assertRaises(ConfigError) as cm:
            client_table(cfg)
        self.assertEqual(str(cm.exception), f"{path}: [radius-client:sw1] secret_file: {missing} holds no secret "
                                            "(its first line is empty)")


class _Decision:
    def __init__(self, access):
        self.access = access


class ClientTableTests(unittest.TestCase):
    def test_longest_prefix_wins_and_named_before_old_style(self):
        table = RadiusClientTable([
            RadiusClient(net("10.0.0.0/8"), b"a", "wide"),
            RadiusClient(net("10.1.0.0/16"), b"b", "narrow"),
            RadiusClient(net("10.1.2.3/32"), b"c"),
            RadiusClient(net("10.1.2.3/32"), b"d", "host"),
            RadiusClient(net("2001:db8::/32"), b"e", "v6"),
        ])
        self.assertEqual(table.find("10.9.9.9").name, "wide")
        self.assertEqual(table.find("10.1.9.9").name, "narrow")
        self.assertEqual(table.find("10.1.2.3").name, "host")
        self.assertEqual(table.find("2001:db8::1").name, "v6")
        self.assertIsNone(table.find("192.0.2.1"))
        self.assertIsNone(table.find("not an address"))

    def test_ipv4_mapped_senders_and_zones(self):
        table = RadiusClientTable([RadiusClient(net("127.0.0.2/32"), b"a", "sw2"),
                                   RadiusClient(net("fe80::/64"), b"b", "link")])
        self.assertEqual(table.find("::ffff:127.0.0.2").name, "sw2")
        self.assertEqual(table.find("::FFFF:7f00:2").name, "sw2")
        self.assertIsNone(table.find("::ffff:127.0.0.3"))
        self.assertEqual(table.find("fe80::1%eth0").name, "link")
        self.assertEqual(ip_address("::ffff:127.0.0.2"), ipaddress.ip_address("127.0.0.2"))
        # a mapped network written in a client is the IPv4 network
        self.assertEqual(RadiusClient(net("::ffff:10.0.0.0/104"), b"x").network, net("10.0.0.0/8"))

    def test_spoofed_sources_do_not_grow_the_cache_without_bound(self):
        table = RadiusClientTable([RadiusClient(net("10.0.0.0/8"), b"a", "wide")])
        for i in range(10_000):
            table.find(f"192.0.{i // 256 % 256}.{i % 256}")
        self.assertLessEqual(len(table._cache), 4096)

    def test_secrets_are_not_in_reprs(self):
        client = RadiusClient(net("10.0.0.0/8"), SW1.encode(), "sw1")
        self.assertNotIn(SW1, repr(client))


class PerNasServerTests(ServerTestCase):
    """Two NASes on loopback addresses with their own secrets, an old-style
    network with the shared secret, and an IPv6 NAS."""

    def make_server(self, enforcement=None, **kwargs) -> RadiusServer:
        clients = [RadiusClient(net("127.0.0.1/32"), SW1.encode(), "sw1"),
                   RadiusClient(net("127.0.0.2/32"), SW2.encode(), "sw2",
                                RadiusEnforcement(filter_id_allow="gw-allow", vlan_allow="30")),
                   RadiusClient(net("127.0.0.0/8"), LEGACY.encode()),
                   RadiusClient(net("::1/128"), SW2.encode(), "v6")]
        self.server = RadiusServer(clients, self.factory, enforcement, **kwargs)
        self.nas = Nas(self, self.server, SW1, ("127.0.0.1", 40001))
        self.sw2 = Nas(self, self.server, SW2, ("127.0.0.2", 40002))
        return self.server

    def conversation(self, nas: Nas):
        """A whole EAP-MD5 conversation through ``nas``: the final reply, verified with its secret."""
        from tests.test_radius_server import PASSWORD, md5_response

        challenge = nas.exchange(nas.request(eap(EAP_RESPONSE, 7, bytes((EAP_IDENTITY,)) + b"carol")))
        self.assertEqual(challenge.code, Code.ACCESS_CHALLENGE)
        return nas.exchange(nas.request(md5_response(challenge.eap_message(), PASSWORD), challenge.get(A.STATE)))

    def test_each_nas_is_answered_with_its_own_secret_and_named(self):
        self.make_server()
        for nas, filter_id in ((self.nas, "allow"), (self.sw2, "gw-allow"),
                               (Nas(self, self.server, LEGACY, ("127.0.0.9", 40009)), "allow"),
                               (Nas(self, self.server, SW2, ("::ffff:127.0.0.2", 40003)), "gw-allow"),
                               (Nas(self, self.server, SW2, ("::1", 40004, 0, 0)), "allow")):
            accept = self.conversation(nas)
            self.assertEqual((accept.code, accept.value(A.FILTER_ID)), (Code.ACCESS_ACCEPT, filter_id), nas.addr)
        self.assertEqual([s.peer.nas for s in self.sessions], ["sw1", "sw2", None, "sw2", "v6"])
        self.assertEqual([s.peer.address for s in self.sessions],
                         ["127.0.0.1", "127.0.0.2", "127.0.0.9", "127.0.0.2", "::1"])
        self.assert_logged("sending RADIUS Access-Accept for 'carol' to client 'sw2': access allowed: "
                           "Filter-Id 'gw-allow', VLAN '30'")
        self.assert_logged("sending RADIUS Access-Accept for 'carol' to client '127.0.0.9'")
        self.assert_logged("to client 'v6'")

    def test_a_nas_with_the_other_nas_secret_is_dropped(self):
        self.make_server()
        impostor = Nas(self, self.server, SW1, ("127.0.0.2", 40002))
        _, data = impostor.request(eap(EAP_RESPONSE, 7, bytes((EAP_IDENTITY,)) + b"carol"))
        self.assertIsNone(impostor.send(data))
        self.assertEqual((self.server.counters.bad_authenticators, self.sessions), (1, []))
        self.assert_logged("RADIUS Access-Request 0x00 from client 'sw2' (127.0.0.2) discarded: "
                           "bad Message-Authenticator (is the shared secret the same?)")
        # and the other way round; the old-style network's secret is no good for a named NAS either
        for secret, addr in ((SW2, ("127.0.0.1", 40001)), (LEGACY, ("127.0.0.2", 40002))):
            _, data = Nas(self, self.server, secret, addr).request(eap(EAP_RESPONSE, 7, b"\x01carol"))
            self.assertIsNone(self.server.datagram_received(data, addr, 1000.0))
        self.assertEqual(self.server.counters.bad_authenticators, 3)
        # the right NASes still go through
        self.assertEqual(self.conversation(self.sw2).code, Code.ACCESS_ACCEPT)

    def test_drop_lines_are_rate_limited_per_nas_and_reason(self):
        clock = Clock()
        self.patch(nac_log.repeats, "clock", clock)
        self.make_server()
        impostor = Nas(self, self.server, SW1, ("127.0.0.2", 40002))
        for _ in range(5):
            self.assertIsNone(impostor.send(impostor.request(eap(EAP_RESPONSE, 7, b"\x01carol"))[1]))
        lines = [formatEvent(e) for e in self.logs.events if "discarded" in formatEvent(e)]
        self.assertEqual(len(lines), 1, lines)
        # the other NAS's own faults are its own lines
        self.assertIsNone(self.nas.send(self.nas.request(eap(EAP_RESPONSE, 7, b"\x01carol"), sign=False)[1]))
        self.assert_logged("from client 'sw1' (127.0.0.1) discarded: EAP-Message without Message-Authenticator")
        clock.advance(nac_log.repeats.interval)
        impostor.send(impostor.request(eap(EAP_RESPONSE, 7, b"\x01carol"))[1])
        lines = [formatEvent(e) for e in self.logs.events if "'sw2'" in formatEvent(e)
                 or "more like this" in formatEvent(e)]
        self.assertEqual(lines[1:], [
            f"bad Message-Authenticator: … 4 more like this from 127.0.0.2 in the last "
            f"{nac_log.repeats.interval:g} s", lines[0].replace("0x00", "0x05")], lines)
        for line in lines:
            self.assertNotIn(SW1, line)
            self.assertNotIn(SW2, line)

    def test_unknown_nas_is_named_by_its_address_once_an_interval(self):
        self.make_server()
        stranger = Nas(self, self.server, SW1, ("192.0.2.1", 1812))
        for _ in range(3):
            self.assertIsNone(stranger.send(stranger.request(eap(EAP_RESPONSE, 7, b"\x01carol"))[1]))
        self.assertIsNone(stranger.send(stranger.request(eap(EAP_RESPONSE, 7, b"\x01carol"))[1],
                                        ("::ffff:192.0.2.1", 1812)))
        lines = [formatEvent(e) for e in self.logs.events if "unknown client" in formatEvent(e)]
        self.assertEqual(lines, ["received RADIUS packet from unknown client 192.0.2.1[1812], discarded: no "
                                 "[radius-client:NAME] address nor [radius] clients holds it"])
        self.assertEqual(self.server.counters.unknown_clients, 4)
