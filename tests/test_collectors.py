"""The client's collectors (OS, Scanner, SWIMA IMCs): from small fixture files
they produce exactly the attributes strongSwan's IMCs sent in the captured
sessions; they honour IF-M segmentation contracts; and on this (Debian)
host they report what the host really has."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import tempfile
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

from twisted.trial import unittest

from nac.client.collectors import COLLECTORS, OsImc, ScannerImc, SwimaImc, make_collectors
from nac.client.collectors.os import OsInfo, installed_packages, last_boot, read_os_info
from nac.client.collectors.scanner import open_ports
from nac.client.collectors.swima import SoftwareCatalog, read_apt_history, software_identifier
from nac.client.imc import IImc, ReceivedPaMessage
from nac.ifimv import ConnectionState
from nac.pa import (
    MaxAttributeSizeRequest,
    MaxAttributeSizeResponse,
    NextSegment,
    PaMessage,
    PaTncErrorCode,
    PaVendor,
    Reassembler,
    SegmentEnvelope,
)
from nac.pa.ietf import (
    AttributeRequest,
    ForwardingStatus,
    IetfAttributeType,
    InstalledPackages,
    PaTncErrorAttribute,
    PortEntry,
    PortFilter,
    ProductInformation,
)
from nac.pa.ita import DeviceId
from nac.pa.swima import (
    SoftwareIdentifierEvents,
    SoftwareIdentifierInventory,
    SoftwareInventory,
    SwimaEventAction,
    SwimaRequest,
    SwimaRequestFlag,
)
from nac.pb import PbBatch, PbPa
from zope.interface.verify import verifyObject
from tests.vectors import records

UTC = datetime.timezone.utc


# -- fixtures ----------------------------------------------------------------------------


@lru_cache(maxsize=None)
def captured_session(name: str) -> tuple[tuple[str, bytes], ...]:
    """(dir, batch) of the PB-TNC records of one strongswan-pt-tls session."""
    return tuple((r["dir"], bytes.fromhex(r["hex"])) for r in records(f"strongswan-pt-tls/{name}.jsonl")
                 if r["layer"] == "pb-tnc")


def captured_pa(name: str, index: int, subtype: int) -> PbPa:
    """The PB-PA of ``subtype`` in the index-th client batch of a session."""
    batches = [data for direction, data in captured_session(name) if direction == "c2s"]
    for msg in PbBatch.parse(batches[index]).messages:
        if isinstance(msg, PbPa) and msg.pa_subtype == subtype:
            return msg
    raise AssertionError(f"no PB-PA of subtype {subtype} in client batch {index} of {name}")


def attribute_bytes(body: bytes) -> bytes:
    """A PA-TNC message without its header (message ids are random)."""
    return body[8:]


def proc_address(ip: str) -> str:
    """An address the way /proc/net/* prints it (32-bit words, host order)."""
    packed = ipaddress.ip_address(ip).packed
    return "".join(packed[i:i + 4][::-1].hex().upper() for i in range(0, len(packed), 4))


def proc_table(rows, v6=False) -> str:
    """/proc/net/tcp-style text from (local ip, port, remote ip, port, state)."""
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    lines = [header]
    for n, (lip, lport, rip, rport, state) in enumerate(rows):
        lines.append(f"{n:4}: {proc_address(lip)}:{lport:04X} {proc_address(rip)}:{rport:04X} {state} "
                     "00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n")
    return "".join(lines)


def dpkg_paragraph(name, version, status="install ok installed", arch="amd64") -> str:
    return (f"Package: {name}\nStatus: {status}\nPriority: optional\nSection: misc\n"
            f"Installed-Size: 42\nMaintainer: Someone <someone@example.org>\nArchitecture: {arch}\n"
            f"Version: {version}\nDescription: the {name} package\n a longer description\n .\n"
            f" Package: not-a-field\n")


CAPTURE_BOOT = datetime.datetime(2026, 11, 22, 18, 8, 41, tzinfo=UTC)


def vector_packages() -> tuple[tuple[str, str], ...]:
    """The installed packages strongSwan's OS IMC sent in the capture."""
    pa = PaMessage.parse(captured_pa("carol-sasl-open-ports-denied", 1, 1).body)
    return pa.find(InstalledPackages)[0].packages


class Host:
    """Fixture files standing for a host; ``kwargs_*`` build collectors reading them."""

    def __init__(self, root: Path, packages, *, os_release=None, history: str | None = None,
                 tcp=(), tcp6=(), udp=(), udp6=(), btime=CAPTURE_BOOT, forward="0\n",
                 machine_id="3d1219c7c4c5404aaa1f6d2a48adfda4\n"):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

        def put(name, text):
            path = root / name
            path.write_text(text)
            return path

        self.os_release = put("os-release", os_release or (
            'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
            'VERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
            'HOME_URL="https://www.debian.org/"\n'))
        self.stat = put("stat", f"cpu  1 2 3 4\nintr 0\nctxt 5\nbtime {int(btime.timestamp())}\nprocesses 7\n")
        self.uptime = put("uptime", "100.00 50.00\n")
        self.forward = put("ip_forward", forward)
        self.machine_id = put("machine-id", machine_id)
        # reversed and with a removed package: the collector sorts and filters
        paragraphs = [dpkg_paragraph(n, v) for n, v in reversed(packages)]
        paragraphs.insert(1, dpkg_paragraph("removed-pkg", "1.0-1", status="deinstall ok config-files"))
        self.status = put("status", "\n".join(paragraphs))
        self.history = put("history.log", history) if history is not None else root / "no-history.log"
        self.tcp = [put("tcp", proc_table(tcp)), put("tcp6", proc_table(tcp6))]
        self.udp = [put("udp", proc_table(udp)), put("udp6", proc_table(udp6))]

    def os_imc(self, **kw) -> OsImc:
        return OsImc(os_release=[self.os_release], machine="x86_64", proc_stat=self.stat,
                     proc_uptime=self.uptime, ip_forward=self.forward, machine_id=[self.machine_id],
                     dpkg_status=self.status, **kw)

    def scanner_imc(self) -> ScannerImc:
        return ScannerImc(tcp=self.tcp, udp=self.udp)

    def swima_imc(self, **kw) -> SwimaImc:
        return SwimaImc(dpkg_status=self.status, history_logs=[self.history], os_release=[self.os_release],
                        machine="x86_64", history_timezone=UTC, **kw)

    def imcs(self) -> list:
        return [self.os_imc(), self.scanner_imc(), self.swima_imc()]


ANY4, ANY6 = "0.0.0.0", "::"
LISTEN, CLOSE, ESTABLISHED = "0A", "07", "01"


def capture_host(root: Path, packages=None) -> Host:
    """The capture machine of strongswan-pt-tls as fixture files: Debian 12
    x86_64, charon listening on tcp/271 and udp/1812 (plus two ephemeral UDP
    ports), loopback-only and client sockets besides, no apt history."""
    if packages is None:
        packages = vector_packages()
    return Host(
        root, packages,
        tcp=[(ANY4, 271, ANY4, 0, LISTEN), ("127.0.0.1", 631, ANY4, 0, LISTEN),
             ("10.0.2.15", 40022, "10.0.2.2", 22, ESTABLISHED)],
        tcp6=[(ANY6, 271, ANY6, 0, LISTEN), ("::1", 25, ANY6, 0, LISTEN),
              ("::ffff:127.0.0.1", 8080, ANY6, 0, LISTEN)],
        udp=[(ANY4, 34164, ANY4, 0, CLOSE), (ANY4, 1812, ANY4, 0, CLOSE), (ANY4, 40078, ANY4, 0, CLOSE),
             ("127.0.0.1", 323, ANY4, 0, CLOSE), ("10.0.2.15", 51000, "8.8.8.8", 53, "01")],
        udp6=[(ANY6, 34164, ANY6, 0, CLOSE), (ANY6, 1812, ANY6, 0, CLOSE), (ANY6, 40078, ANY6, 0, CLOSE),
              ("::1", 323, ANY6, 0, CLOSE)],
    )


class FakeConnection:
    """What an IMC sees of the client: it collects the sent PA messages."""

    def __init__(self, imc_id=1, max_message_size=2097104):
        self.connection_id = 1
        self.imc_id = imc_id
        self.imc_name = "test"
        self.max_message_size = max_message_size
        self.state = None
        self.sent: list[tuple[int, int, bytes, int, bool]] = []

    def send_message(self, vendor_id, subtype, body, validator_id=0xFFFF, exclusive=False):
        self.sent.append((vendor_id, subtype, body, validator_id, exclusive))

    def messages(self) -> list[PaMessage]:
        out = [PaMessage.parse(body) for _, _, body, _, _ in self.sent]
        self.sent.clear()
        return out


def start(imc, **kw) -> FakeConnection:
    conn = FakeConnection(**kw)
    imc.notify_connection_change(conn, ConnectionState.CREATE)
    imc.notify_connection_change(conn, ConnectionState.HANDSHAKE)
    return conn


def deliver(imc, conn, *attributes, imv_id=1, subtype=None):
    body = PaMessage(0x1234, tuple(attributes)).build()
    imc.receive_message(conn, ReceivedPaMessage(PaVendor.IETF, subtype or imc.subtype, conn.imc_id, imv_id,
                                                False, body, PaMessage.parse(body)))


class TempDirMixin:
    def tmp(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="nac-collectors-"))
        self.addCleanup(lambda: __import__("shutil").rmtree(path, ignore_errors=True))
        return path


# -- the OS IMC ---------------------------------------------------------------------------


class OsImcTests(TempDirMixin, unittest.TestCase):
    def test_first_message_is_byte_identical_to_strongswans(self):
        host = capture_host(self.tmp())
        imc = host.os_imc()
        conn = start(imc)
        imc.begin_handshake(conn)
        [(vendor, subtype, body, validator, exclusive)] = conn.sent
        self.assertEqual((vendor, subtype, validator, exclusive), (0, 1, 0xFFFF, False))
        expected = captured_pa("carol-sasl-open-ports-denied", 0, 1).body
        self.assertEqual(attribute_bytes(body), attribute_bytes(expected))

    def test_installed_packages_on_request_are_byte_identical_to_strongswans(self):
        host = capture_host(self.tmp())
        imc = host.os_imc()
        conn = start(imc)
        # the captured IMV's request: a segmentation contract and an Attribute Request
        deliver(imc, conn, MaxAttributeSizeRequest(0xFFFFFFFF, 2097080),
                AttributeRequest(((0, IetfAttributeType.INSTALLED_PACKAGES),)))
        [(_, _, body, validator, exclusive)] = conn.sent
        self.assertEqual((validator, exclusive), (1, True))
        expected = captured_pa("carol-sasl-open-ports-denied", 1, 1)
        self.assertEqual(attribute_bytes(body), attribute_bytes(expected.body))

    def test_only_installed_packages_sorted_by_name(self):
        host = Host(self.tmp(), [("zlib1g", "1:1.2.13.dfsg-1"), ("bash", "5.2.15-2+b8"), ("apt", "2.6.1")])
        packages = installed_packages(host.status)
        self.assertEqual([(p.name, p.version) for p in packages],
                         [("apt", "2.6.1"), ("bash", "5.2.15-2+b8"), ("zlib1g", "1:1.2.13.dfsg-1")])

    def test_missing_dpkg_database_gives_an_empty_list(self):
        self.assertEqual(installed_packages(self.tmp() / "nothing"), ())

    def test_os_release_variants(self):
        root = self.tmp()
        ubuntu = root / "ubuntu"
        ubuntu.write_text('NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n')
        info = read_os_info([root / "missing", ubuntu], machine="aarch64")
        self.assertEqual((info.name, info.version, info.arch), ("Ubuntu", "22.04", "aarch64"))
        self.assertEqual(info.vendor_id, 0x007132)
        self.assertEqual(info.numeric_version, (22, 4))
        unknown = root / "os-release"
        unknown.write_text("ID=alpine\nVERSION_ID=3.19.1\n")
        info = read_os_info([unknown], machine="x86_64")
        self.assertEqual((info.name, info.vendor_id, info.version_string), ("Alpine", 0, "3.19.1 x86_64"))
        debian_version = root / "debian_version"
        debian_version.write_text("12.8\n")
        self.assertEqual(read_os_info([debian_version], machine="x86_64").version, "12")
        self.assertIsNone(read_os_info([root / "missing"]))

    def test_boot_time_falls_back_to_uptime(self):
        root = self.tmp()
        (root / "uptime").write_text("3600.5 10.0\n")
        boot = last_boot(root / "no-stat", root / "uptime", now=lambda: 1_800_000_000.0)
        self.assertEqual(boot, datetime.datetime.fromtimestamp(1_800_000_000 - 3600, UTC))
        self.assertIsNone(last_boot(root / "no-stat", root / "no-uptime"))

    def test_forwarding_and_configured_values(self):
        host = Host(self.tmp(), [("bash", "5.2")], forward="1\n")
        imc = host.os_imc(device_id="my-device", default_password_enabled=True)
        self.assertEqual(imc.forwarding_enabled().status, ForwardingStatus.ENABLED)
        self.assertTrue(imc.factory_default_password_enabled().enabled)
        self.assertEqual(imc.device(), DeviceId("my-device"))
        self.assertEqual(Host(self.tmp(), [], forward="x").os_imc().forwarding_enabled().status,
                         ForwardingStatus.UNKNOWN)

    def test_attribute_request_answered_attribute_by_attribute(self):
        host = capture_host(self.tmp(), packages=[("bash", "5.2.15-2+b8")])
        imc = host.os_imc()
        conn = start(imc)
        deliver(imc, conn, AttributeRequest(((0, IetfAttributeType.PRODUCT_INFORMATION),
                                             (PaVendor.ITA_HSR, 8), (0, 0x7777))), imv_id=4)
        [message] = conn.messages()
        self.assertEqual(message.attributes, (ProductInformation(0x2572, 0, "Debian"),
                                              DeviceId("3d1219c7c4c5404aaa1f6d2a48adfda4")))

    def test_message_without_request_gets_no_reply(self):
        imc = capture_host(self.tmp(), packages=[]).os_imc()
        conn = start(imc)
        deliver(imc, conn, MaxAttributeSizeResponse(0xFFFFFFFF, 1000))
        self.assertEqual(conn.sent, [])

    def test_implements_iimc(self):
        for cls in COLLECTORS.values():
            verifyObject(IImc, cls())


# -- IF-M segmentation (shared by every collector) ------------------------------------------


class SegmentationTests(TempDirMixin, unittest.TestCase):
    def packages(self, n=400):
        return [(f"package-{i:04d}", f"{i}.0-{i % 7}+deb12u{i % 3}") for i in range(n)]

    def test_large_attribute_is_sent_in_segments_the_imv_asks_for(self):
        host = Host(self.tmp(), self.packages())
        imc = host.os_imc()
        conn = start(imc)
        deliver(imc, conn, MaxAttributeSizeRequest(0xFFFFFFFF, 1000),
                AttributeRequest(((0, IetfAttributeType.INSTALLED_PACKAGES),)))
        [first] = conn.messages()
        response, envelope = first.attributes
        self.assertEqual(response, MaxAttributeSizeResponse(0xFFFFFFFF, 1000))
        self.assertTrue(envelope.start and envelope.more)
        self.assertEqual(len(envelope.segment), 1000)
        reassembler = Reassembler()
        self.assertIsNone(reassembler.add(envelope))
        whole, rounds = None, 0
        while whole is None:
            deliver(imc, conn, NextSegment(envelope.base_attribute_id))
            [message] = conn.messages()
            [envelope] = message.attributes
            self.assertIsInstance(envelope, SegmentEnvelope)
            self.assertLessEqual(len(envelope.segment), 1000)
            whole = reassembler.add(envelope)
            rounds += 1
        self.assertGreater(rounds, 5)
        self.assertEqual(whole, imc.installed_packages())
        # nothing left: a further Next Segment gets no answer
        deliver(imc, conn, NextSegment(envelope.base_attribute_id))
        self.assertEqual(conn.sent, [])

    def test_cancelled_segmentation_sends_nothing_more(self):
        imc = Host(self.tmp(), self.packages()).os_imc()
        conn = start(imc)
        deliver(imc, conn, MaxAttributeSizeRequest(0xFFFFFFFF, 500),
                AttributeRequest(((0, IetfAttributeType.INSTALLED_PACKAGES),)))
        envelope = conn.messages()[0].attributes[1]
        deliver(imc, conn, NextSegment(envelope.base_attribute_id, cancel=True))
        deliver(imc, conn, NextSegment(envelope.base_attribute_id))
        self.assertEqual(conn.sent, [])

    def test_segment_size_is_lowered_to_what_our_messages_carry(self):
        imc = Host(self.tmp(), self.packages(10)).os_imc()
        conn = start(imc, max_message_size=4000)
        deliver(imc, conn, MaxAttributeSizeRequest(0xFFFFFFFF, 100000))
        [message] = conn.messages()
        self.assertEqual(message.attributes, (MaxAttributeSizeResponse(0xFFFFFFFF, 4000 - 24),))

    def test_attribute_over_the_imvs_maximum_is_not_sent(self):
        imc = Host(self.tmp(), self.packages()).os_imc()
        conn = start(imc)
        deliver(imc, conn, MaxAttributeSizeRequest(5000, 0xFFFFFFFF),
                AttributeRequest(((0, IetfAttributeType.INSTALLED_PACKAGES),)))
        [message] = conn.messages()
        self.assertEqual(message.attributes, (MaxAttributeSizeResponse(5000, 0xFFFFFFFF),))

    def test_attributes_beyond_one_message_go_in_several(self):
        imc = Host(self.tmp(), self.packages(200)).os_imc()
        conn = start(imc, max_message_size=3000)
        whole = imc.installed_packages().build()
        request = AttributeRequest(((0, IetfAttributeType.OPERATIONAL_STATUS),) * 3
                                   + ((0, IetfAttributeType.INSTALLED_PACKAGES),))
        deliver(imc, conn, request)
        # the packages attribute alone exceeds a message and has no contract: dropped
        self.assertGreater(len(whole), 3000)
        [message] = conn.messages()
        self.assertEqual(len(message.attributes), 3)
        conn = start(imc, max_message_size=8 + 36 * 2)
        deliver(imc, conn, request)
        self.assertEqual([len(m.attributes) for m in conn.messages()], [2, 1])


# -- the Scanner IMC --------------------------------------------------------------------------


class ScannerImcTests(TempDirMixin, unittest.TestCase):
    def test_port_filter_is_byte_identical_to_strongswans(self):
        host = capture_host(self.tmp(), packages=[])
        imc = host.scanner_imc()
        conn = start(imc, imc_id=2)
        imc.begin_handshake(conn)
        [(vendor, subtype, body, validator, exclusive)] = conn.sent
        self.assertEqual((vendor, subtype, validator, exclusive), (0, 5, 0xFFFF, False))
        expected = captured_pa("carol-sasl-open-ports-denied", 0, 5).body
        self.assertEqual(attribute_bytes(body), attribute_bytes(expected))

    def test_open_ports_skip_loopback_clients_and_duplicates(self):
        host = capture_host(self.tmp(), packages=[])
        self.assertEqual(open_ports(host.tcp, host.udp),
                         (PortEntry(6, 271, False), PortEntry(17, 34164, False), PortEntry(17, 1812, False),
                          PortEntry(17, 40078, False)))

    def test_ipv6_only_and_link_local_listeners_count(self):
        host = Host(self.tmp(), [], tcp6=[("fe80::5054:ff:feb6:ad1d", 80, ANY6, 0, LISTEN),
                                          ("2001:db8::1", 443, ANY6, 0, LISTEN),
                                          ("2001:db8::1", 444, "2001:db8::2", 5000, ESTABLISHED)],
                    udp6=[("::", 546, "::", 0, CLOSE)])
        self.assertEqual(open_ports(host.tcp, host.udp),
                         (PortEntry(6, 80), PortEntry(6, 443), PortEntry(17, 546)))

    def test_unreadable_tables_and_lines_are_skipped(self):
        root = self.tmp()
        bad = root / "tcp"
        bad.write_text("header\n   0: nonsense\n   1: 0100007G:0050 00000000:0000 0A x\n")
        self.assertEqual(open_ports([bad, root / "missing"], []), ())

    def test_attribute_request_for_port_filter(self):
        imc = Host(self.tmp(), [], tcp=[(ANY4, 22, ANY4, 0, LISTEN)]).scanner_imc()
        conn = start(imc, imc_id=2)
        deliver(imc, conn, AttributeRequest(((0, IetfAttributeType.PORT_FILTER),)), imv_id=2)
        [message] = conn.messages()
        self.assertEqual(message.attributes, (PortFilter((PortEntry(6, 22),)),))


# -- the SWIMA IMC ----------------------------------------------------------------------------

HISTORY = """\
Start-Date: 2026-01-10  10:00:00
Commandline: apt-get install -y curl
Install: curl:amd64 (7.88.1-10+deb12u12), libcurl4:amd64 (7.88.1-10+deb12u12, automatic)
End-Date: 2026-01-10  10:00:05

Start-Date: 2026-02-01  08:30:00
Commandline: apt-get upgrade
Upgrade: curl:amd64 (7.88.1-10+deb12u12, 7.88.1-10+deb12u14), libcurl4:amd64 (7.88.1-10+deb12u12, 7.88.1-10+deb12u14)
End-Date: 2026-02-01  08:30:09

Start-Date: 2026-03-05  12:00:00
Commandline: apt-get purge nano
Remove: nano:amd64 (7.2-1)
End-Date: 2026-03-05  12:00:01

Start-Date: 2026-03-05  12:00:02
Commandline: apt-get purge nano
Purge: nano:amd64 (7.2-1)
End-Date: 2026-03-05  12:00:03

Start-Date: 2026-03-06  09:00:00
Commandline: apt-get install --reinstall bash
Reinstall: bash:amd64 (5.2.15-2+b8)
End-Date: 2026-03-06  09:00:01
"""

SWIMA_PACKAGES = [("bash", "5.2.15-2+b8"), ("curl", "7.88.1-10+deb12u14"), ("git", "1:2.39.5-0+deb12u3"),
                  ("libcurl4", "7.88.1-10+deb12u14")]


_DEBIAN = OsInfo("Debian", "12", "x86_64")


def sw_id(package, version):
    return software_identifier(_DEBIAN, package, version)


class SwimaImcTests(TempDirMixin, unittest.TestCase):
    def test_software_identifiers_are_strongswans(self):
        self.assertEqual(sw_id("bash", "5.2.15-2+b8"), "strongswan.org__Debian_12-x86_64-bash-5.2.15-2~b8")
        self.assertEqual(sw_id("git", "1:2.39.5-0+deb12u3"),
                         "strongswan.org__Debian_12-x86_64-git-1~2.39.5-0~deb12u3")
        self.assertEqual(sw_id("virtual", ""), "strongswan.org__Debian_12-x86_64-virtual")

    def test_first_message_proposes_a_segmentation_contract_like_strongswan(self):
        imc = capture_host(self.tmp(), packages=[]).swima_imc()
        conn = start(imc, imc_id=3)
        imc.begin_handshake(conn)
        [(vendor, subtype, body, validator, exclusive)] = conn.sent
        self.assertEqual((vendor, subtype, validator, exclusive), (0, 9, 0xFFFF, False))
        expected = captured_pa("carol-sasl-open-ports-denied", 0, 9).body
        self.assertEqual(attribute_bytes(body), attribute_bytes(expected))

    def test_events_request_without_history_falls_back_to_the_inventory_like_strongswan(self):
        imc = capture_host(self.tmp(), packages=SWIMA_PACKAGES).swima_imc()
        conn = start(imc, imc_id=3)
        # what the captured IMV sent: contract request + SWIMA Request (R flag, id 0x18, EID 1)
        deliver(imc, conn, MaxAttributeSizeRequest(0xFFFFFFFF, 2097080),
                SwimaRequest(0x18, 1, (), SwimaRequestFlag.RESULT_TYPE), imv_id=3)
        [message] = conn.messages()
        response, error, inventory = message.attributes
        captured = PaMessage.parse(captured_pa("carol-sasl-open-ports-denied", 1, 9).body).attributes
        self.assertEqual(response.build(), captured[0].build())
        self.assertEqual(error.build(), captured[1].build())
        self.assertIsInstance(inventory, SoftwareIdentifierInventory)
        self.assertEqual((inventory.request_id, inventory.eid_epoch, inventory.last_eid),
                         (0x18, 0x11223344, 1))
        self.assertEqual([r.software_identifier for r in inventory.records],
                         [sw_id(n, v) for n, v in SWIMA_PACKAGES])
        self.assertEqual({(r.record_id, r.source_id, r.record) for r in inventory.records}, {(0, 1, b"")})

    def test_events_from_the_apt_history(self):
        imc = Host(self.tmp(), SWIMA_PACKAGES, history=HISTORY).swima_imc()
        conn = start(imc, imc_id=3)
        deliver(imc, conn, SwimaRequest(7, 1, (), SwimaRequestFlag.RESULT_TYPE), imv_id=3)
        [message] = conn.messages()
        [events] = message.attributes
        self.assertIsInstance(events, SoftwareIdentifierEvents)
        self.assertEqual((events.request_id, events.eid_epoch, events.last_eid, events.last_consulted_eid),
                         (7, 0x11223344, 5, 5))
        seen = [(e.eid, e.timestamp, e.action, e.record.software_identifier) for e in events.events]
        C, D = SwimaEventAction.CREATION, SwimaEventAction.DELETION
        first = "2026-01-10T10:00:00Z"
        self.assertEqual(seen, [
            (1, first, C, sw_id("bash", "5.2.15-2+b8")),
            (1, first, C, sw_id("git", "1:2.39.5-0+deb12u3")),
            (1, first, C, sw_id("nano", "7.2-1")),
            (2, first, C, sw_id("curl", "7.88.1-10+deb12u12")),
            (2, first, C, sw_id("libcurl4", "7.88.1-10+deb12u12")),
            (3, "2026-02-01T08:30:00Z", D, sw_id("curl", "7.88.1-10+deb12u12")),
            (3, "2026-02-01T08:30:00Z", C, sw_id("curl", "7.88.1-10+deb12u14")),
            (3, "2026-02-01T08:30:00Z", D, sw_id("libcurl4", "7.88.1-10+deb12u12")),
            (3, "2026-02-01T08:30:00Z", C, sw_id("libcurl4", "7.88.1-10+deb12u14")),
            (4, "2026-03-05T12:00:00Z", D, sw_id("nano", "7.2-1")),
        ])

    def test_events_since_an_eid_and_for_targets(self):
        imc = Host(self.tmp(), SWIMA_PACKAGES, history=HISTORY).swima_imc()
        conn = start(imc, imc_id=3)
        deliver(imc, conn, SwimaRequest(8, 3, (sw_id("curl", "7.88.1-10+deb12u14"),),
                                        SwimaRequestFlag.RESULT_TYPE), imv_id=3)
        [events] = conn.messages()[0].attributes
        self.assertEqual([(e.eid, e.action) for e in events.events], [(3, SwimaEventAction.CREATION)])
        deliver(imc, conn, SwimaRequest(9, 6, (), SwimaRequestFlag.RESULT_TYPE), imv_id=3)
        [events] = conn.messages()[0].attributes
        self.assertEqual((events.events, events.last_eid), ((), 5))

    def test_full_inventory_carries_swid_tags(self):
        imc = Host(self.tmp(), SWIMA_PACKAGES[:2], history=HISTORY).swima_imc()
        conn = start(imc, imc_id=3)
        deliver(imc, conn, SwimaRequest(10, 0, (sw_id("bash", "5.2.15-2+b8"),)), imv_id=3)
        [inventory] = conn.messages()[0].attributes
        self.assertIsInstance(inventory, SoftwareInventory)
        self.assertEqual(inventory.last_eid, 5)
        [record] = inventory.records
        tag = ET.fromstring(record.record)  # our own output, not foreign XML
        ns = "{http://standards.iso.org/iso/19770/-2/2015/schema.xsd}"
        self.assertEqual(tag.tag, ns + "SoftwareIdentity")
        self.assertEqual((tag.get("name"), tag.get("version")), ("bash", "5.2.15-2+b8"))
        entity = tag.find(ns + "Entity")
        # strongSwan derives the identifier as regid + "__" + tagId
        self.assertEqual(f"{entity.get('regid')}__{tag.get('tagId')}", record.software_identifier)

    def test_subscriptions_are_refused_and_the_request_answered(self):
        imc = Host(self.tmp(), SWIMA_PACKAGES).swima_imc()
        conn = start(imc, imc_id=3)
        deliver(imc, conn, SwimaRequest(11, 0, (), SwimaRequestFlag.SUBSCRIBE | SwimaRequestFlag.RESULT_TYPE),
                imv_id=3)
        error, inventory = conn.messages()[0].attributes
        self.assertEqual((error.error_code, error.request_id, error.description),
                         (PaTncErrorCode.SWIMA_SUBSCRIPTION_DENIED_ERROR, 11, "subscriptions not enabled"))
        self.assertEqual(len(inventory.records), len(SWIMA_PACKAGES))

    def test_unknown_os_is_a_swima_error(self):
        host = Host(self.tmp(), SWIMA_PACKAGES)
        imc = SwimaImc(dpkg_status=host.status, history_logs=[], os_release=[host.root / "missing"])
        conn = start(imc, imc_id=3)
        deliver(imc, conn, SwimaRequest(12, 0, (), SwimaRequestFlag.RESULT_TYPE), imv_id=3)
        [error] = conn.messages()[0].attributes
        self.assertIsInstance(error, PaTncErrorAttribute)
        self.assertEqual((error.error_code, error.description),
                         (PaTncErrorCode.SWIMA_ERROR, "failed to collect SW ID inventory"))

    def test_history_in_local_time_and_rotated_logs(self):
        root = self.tmp()
        import gzip
        old = root / "history.log.1.gz"
        old.write_bytes(gzip.compress(b"Start-Date: 2025-12-31  23:00:00\nInstall: vim:amd64 (9.0-1)\n"))
        new = root / "history.log"
        new.write_text(HISTORY)
        tz = datetime.timezone(datetime.timedelta(hours=2))
        entries = read_apt_history([old, new], tz=tz)
        self.assertEqual(entries[0].timestamp, "2025-12-31T21:00:00Z")
        self.assertEqual(entries[0].changes, (("install", "vim", "9.0-1"),))
        self.assertEqual(len(entries), 5)  # the Reinstall-only run changes nothing
        self.assertIsNone(read_apt_history([root / "missing"]))
        from nac.client.collectors.swima import apt_history_paths
        (root / "history.log.2.gz").write_bytes(gzip.compress(b""))
        self.assertEqual([p.name for p in apt_history_paths(root)],
                         ["history.log.2.gz", "history.log.1.gz", "history.log"])

    def test_catalog_without_history(self):
        catalog = SoftwareCatalog(_DEBIAN, installed_packages(Host(self.tmp(), SWIMA_PACKAGES).status), None)
        self.assertIsNone(catalog.events)
        self.assertEqual(catalog.last_eid, 1)


# -- the real host ------------------------------------------------------------------------------


class RealHostTests(unittest.TestCase):
    """Smoke tests on the machine running the suite (a Debian host)."""

    def test_make_collectors(self):
        self.assertEqual([imc.name for imc in make_collectors()], ["OS", "Scanner", "SWIMA"])
        self.assertEqual([imc.name for imc in make_collectors(["swima", "OS"])], ["SWIMA", "OS"])
        self.assertRaises(ValueError, make_collectors, ["os", "bogus"])
        self.assertRaises(ValueError, make_collectors, ["os", "os"])

    def test_os_imc_reads_this_host(self):
        if not Path("/etc/os-release").exists():
            raise unittest.SkipTest("no /etc/os-release on this host")
        imc = OsImc()
        conn = start(imc)
        imc.begin_handshake(conn)
        [message] = conn.messages()
        names = [a.NAME for a in message.attributes]
        self.assertEqual(names[:6], ["Product Information", "String Version", "Numeric Version",
                                     "Operational Status", "Forwarding Enabled",
                                     "Factory Default Password Enabled"])
        product = message.attributes[0]
        self.assertEqual(product.name, read_os_info().name)
        self.assertTrue(message.attributes[1].version.endswith(os.uname().machine))
        boot = datetime.datetime.strptime(message.attributes[3].last_use, "%Y-%m-%dT%H:%M:%SZ")
        self.assertLess(boot.replace(tzinfo=UTC), datetime.datetime.now(UTC))

    def test_installed_packages_of_this_host(self):
        status = Path("/var/lib/dpkg/status")
        if not status.exists():
            raise unittest.SkipTest("no dpkg database on this host")
        installed = sum(1 for p in status.read_text(errors="replace").split("\n\n")
                        if "\nStatus: install ok installed" in "\n" + p)
        packages = OsImc().installed_packages().packages
        self.assertEqual(len(packages), installed)
        self.assertIn("dpkg", {name for name, _ in packages})
        # the inventory parses back from the wire
        self.assertEqual(PaMessage.parse(PaMessage(1, (OsImc().installed_packages(),)).build())
                         .attributes[0].packages, packages)

    def test_scanner_sees_a_socket_this_test_opens(self):
        if not Path("/proc/net/tcp").exists():
            raise unittest.SkipTest("no /proc/net/tcp on this host")
        listener = socket.socket()
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        self.addCleanup(listener.close)
        local = socket.socket()
        local.bind(("127.0.0.1", 0))
        local.listen()
        self.addCleanup(local.close)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", 0))
        self.addCleanup(udp.close)
        entries = open_ports()
        self.assertIn(PortEntry(6, listener.getsockname()[1]), entries)
        self.assertIn(PortEntry(17, udp.getsockname()[1]), entries)
        self.assertNotIn(PortEntry(6, local.getsockname()[1]), entries)

    def test_swima_inventory_of_this_host(self):
        if not Path("/var/lib/dpkg/status").exists():
            raise unittest.SkipTest("no dpkg database on this host")
        imc = SwimaImc()
        conn = start(imc, imc_id=3)
        deliver(imc, conn, SwimaRequest(1, 0, (), SwimaRequestFlag.RESULT_TYPE), imv_id=3)
        [inventory] = conn.messages()[0].attributes
        info = read_os_info()
        prefix = f"strongswan.org__{info.name}_{info.version}-{info.arch}-"
        self.assertTrue(inventory.records)
        self.assertTrue(all(r.software_identifier.startswith(prefix) for r in inventory.records))
