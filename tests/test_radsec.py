"""RadSec (RFC 6614) without sockets: the framing of RADIUS packets on a TLS
stream (transports.radius.radsec) and the listener's protocol
(transports.radius.radsec_service) driven through a StringTransport that
stands for Twisted's TLS wrapper, with a Clock."""

from __future__ import annotations

import datetime
import ipaddress
import struct

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from tests import radsec_wire as wire
from tests.test_radius_server import Md5Authenticator
from transports.radius.clients import RadiusClient, certificate_names
from transports.radius.radsec import RADSEC_SECRET, RadsecFramingError, RadsecStream
from transports.radius.radsec_service import RadsecFactory
from transports.radius.server import RadiusServer


def certificate(common_name: str, dns: tuple[str, ...] = ()) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    return builder.sign(key, hashes.SHA256())


class FramingTests(unittest.TestCase):
    def test_packets_split_across_reads_come_out_whole(self):
        one, two = wire.status_server(1), wire.eap_identity_request(2)
        stream = RadsecStream()
        out = []
        for byte in one + two:
            out += stream.receive_data(bytes((byte,)))
        self.assertEqual(out, [one, two])
        self.assertEqual(stream.pending, 0)

    def test_merged_packets_and_a_partial_one_in_one_read(self):
        one, two, three = wire.status_server(1), wire.status_server(2), wire.eap_identity_request(3)
        stream = RadsecStream()
        self.assertEqual(stream.receive_data(one + two + three[:7]), [one, two])
        self.assertEqual(stream.pending, 7)
        self.assertEqual(stream.receive_data(three[7:]), [three])

    def test_oversize_length_is_an_error_at_its_offset(self):
        stream = RadsecStream()
        good = wire.status_server(1)
        bad = bytes((12, 2)) + struct.pack(">H", 4097) + bytes(16)
        with self.assertRaises(RadsecFramingError) as caught:
            stream.receive_data(good + bad)
        self.assertEqual(caught.exception.offset, len(good) + 2)
        self.assertIn("4097", str(caught.exception))
        # the stream cannot be resynchronised: every later read fails too
        self.assertRaises(RadsecFramingError, stream.receive_data, wire.status_server(3))

    def test_length_below_the_header_is_an_error(self):
        self.assertRaises(RadsecFramingError, RadsecStream().receive_data, bytes((12, 2, 0, 19)))

    def test_largest_packet_passes(self):
        packet = bytes((1, 1)) + struct.pack(">H", 4096) + bytes(4092)
        self.assertEqual(RadsecStream().receive_data(packet), [packet])

    @given(st.lists(st.integers(20, 300), min_size=1, max_size=8), st.data())
    @settings(max_examples=100, deadline=None)
    def test_any_cut_of_a_stream_gives_its_packets(self, lengths, data):
        packets = [bytes((1, i % 256)) + struct.pack(">H", n) + bytes(n - 4) for i, n in enumerate(lengths)]
        blob = b"".join(packets)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=10)))
        stream, out, start = RadsecStream(), [], 0
        for cut in cuts + [len(blob)]:
            out += stream.receive_data(blob[start:cut])
            start = cut
        self.assertEqual(out, packets)

    @given(st.binary(max_size=600))
    @settings(max_examples=200, deadline=None)
    def test_random_bytes_never_crash(self, blob):
        try:
            RadsecStream().receive_data(blob)
        except RadsecFramingError:
            pass


class CertificateNameTests(unittest.TestCase):
    def test_dns_names_then_common_name_in_lower_case(self):
        self.assertEqual(certificate_names(certificate("Switch-1", ("SW1.example.org", "sw1.lan"))),
                         ["sw1.example.org", "sw1.lan", "switch-1"])

    def test_common_name_alone(self):
        self.assertEqual(certificate_names(certificate("nas.example")), ["nas.example"])


class TlsTransport(StringTransport):
    """What the protocol sees of Twisted's TLS wrapper: a peer certificate."""

    def __init__(self, peer_certificate=None):
        super().__init__(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
        self.peer_certificate = peer_certificate
        self.aborted = False

    def getPeerCertificate(self):
        return self.peer_certificate

    def abortConnection(self):
        self.aborted = True
        super().abortConnection()


class ProtocolTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        nas = RadiusClient(ipaddress.ip_network("0.0.0.0/0"), RADSEC_SECRET, "sw1")
        self.server = RadiusServer([], lambda peer: Md5Authenticator(peer, {"carol": "pw"}))
        self.factory = RadsecFactory(self.server, {"sw1.example.org": nas}, self.clock, handshake_timeout=5,
                                     idle_timeout=60, max_connections=3, max_connections_per_source=2)

    def logged(self) -> str:
        return "\n".join(formatEvent(e) for e in self.events)

    def connect(self, cert=None, host="192.0.2.7", handshake=True):
        proto = self.factory.buildProtocol(IPv4Address("TCP", host, 40000))
        if proto is None:
            return None, None
        transport = TlsTransport(cert if cert is not None else certificate("sw1", ("sw1.example.org",)))
        proto.makeConnection(transport)
        if handshake:
            proto.handshakeCompleted()
        self.addCleanup(lambda: proto._timer is not None and proto._timer.active() and proto._timer.cancel())
        return proto, transport

    def replies(self, transport) -> list[bytes]:
        out = RadsecStream().receive_data(transport.value())
        transport.clear()
        return out

    def test_status_servers_split_and_merged_are_answered_with_the_radsec_secret(self):
        proto, transport = self.connect()
        one, two = wire.status_server(1), wire.status_server(2)
        blob = one + two
        proto.dataReceived(blob[:3])
        proto.dataReceived(blob[3:30])
        proto.dataReceived(blob[30:])
        replies = self.replies(transport)
        self.assertEqual([r[0] for r in replies], [wire.ACCESS_ACCEPT] * 2)
        self.assertTrue(wire.response_valid(replies[0], one))
        self.assertTrue(wire.response_valid(replies[1], two))
        self.assertFalse(transport.aborted)

    def test_a_request_signed_with_another_secret_gets_no_reply(self):
        proto, transport = self.connect()
        proto.dataReceived(wire.status_server(1, secret=b"testing123"))
        self.assertEqual(transport.value(), b"")
        self.assertIn("Message-Authenticator", self.logged())

    def test_access_request_with_eap_gets_a_challenge(self):
        proto, transport = self.connect()
        request = wire.eap_identity_request(9)
        proto.dataReceived(request)
        (reply,) = self.replies(transport)
        self.assertEqual(reply[0], wire.ACCESS_CHALLENGE)
        self.assertTrue(wire.response_valid(reply, request))
        self.assertIn("sw1", self.logged())

    def test_oversize_length_closes_the_connection(self):
        proto, transport = self.connect()
        proto.dataReceived(bytes((1, 1)) + struct.pack(">H", 5000) + bytes(16))
        self.assertTrue(transport.aborted)
        self.assertIn("RADIUS Length 5000", self.logged())
        proto.connectionLost(None)
        self.assertEqual(self.factory.connections, 0)

    def test_a_certificate_naming_no_nas_is_closed(self):
        proto, transport = self.connect(certificate("printer", ("printer.example.org",)))
        self.assertTrue(transport.aborted)
        self.assertIn("names no NAS (printer.example.org, printer)", self.logged())
        proto.dataReceived(wire.status_server(1))
        self.assertEqual(transport.value(), b"")

    def test_nas_named_by_common_name(self):
        nas = RadiusClient(ipaddress.ip_network("0.0.0.0/0"), RADSEC_SECRET, "ap")
        self.factory.clients["ap-7"] = nas
        proto, transport = self.connect(certificate("AP-7"))
        self.assertIs(proto.client, nas)
        self.assertFalse(transport.aborted)

    def test_handshake_timeout(self):
        proto, transport = self.connect(handshake=False)
        self.clock.advance(4.9)
        self.assertFalse(transport.aborted)
        self.clock.advance(0.2)
        self.assertTrue(transport.aborted)
        self.assertIn("no TLS handshake within 5 s", self.logged())

    def test_idle_timeout_is_rearmed_by_requests(self):
        proto, transport = self.connect()
        self.clock.advance(50)
        proto.dataReceived(wire.status_server(1))
        self.clock.advance(50)
        self.assertFalse(transport.aborted)
        self.clock.advance(11)
        self.assertTrue(transport.aborted)

    def test_a_failed_handshake_is_logged(self):
        from twisted.python.failure import Failure

        proto, transport = self.connect(handshake=False)
        proto.connectionLost(Failure(ConnectionError("certificate verify failed")))
        self.assertIn("closed before the NAS was identified: certificate verify failed", self.logged())
        self.assertEqual(self.factory.connections, 0)
        self.assertFalse(self.clock.getDelayedCalls())

    def test_stopping_the_service_closes_its_connections(self):
        from twisted.internet.ssl import CertificateOptions

        from transports.radius.radsec_service import RadsecService

        svc = RadsecService(self.factory, CertificateOptions(), 0, "127.0.0.1")
        (_, one), (_, two) = self.connect(), self.connect(host="192.0.2.8")
        self.successResultOf(svc.stopService())
        self.assertTrue(one.aborted and two.aborted)

    @given(st.lists(st.binary(max_size=80), max_size=6))
    @settings(max_examples=100, deadline=None)
    def test_random_bytes_never_raise(self, chunks):
        proto, transport = self.connect()
        for chunk in chunks:
            proto.dataReceived(chunk)
        for reply in RadsecStream().receive_data(transport.value()):
            self.assertIn(reply[0], (wire.ACCESS_ACCEPT, wire.ACCESS_REJECT, wire.ACCESS_CHALLENGE))
        proto.connectionLost(None)

    def test_too_many_requests_waiting_close_the_connection(self):
        from twisted.internet import defer

        waiting = []
        self.server.respond = lambda *args, **kwargs: waiting.append(defer.Deferred()) or waiting[-1]
        proto, transport = self.connect()
        proto.dataReceived(b"".join(wire.status_server(i % 256) for i in range(256)))
        self.assertFalse(transport.aborted)
        waiting[0].callback(b"answer")
        self.assertEqual(proto.waiting, 255)
        proto.dataReceived(wire.status_server(1) + wire.status_server(2))
        self.assertTrue(transport.aborted)
        self.assertIn("more than 256 requests waiting", self.logged())

    def test_connection_limits_total_and_per_source(self):
        a, _ = self.connect(host="192.0.2.1")
        self.connect(host="192.0.2.1")
        self.assertIsNone(self.connect(host="192.0.2.1")[0])  # per source
        self.connect(host="192.0.2.2")
        self.assertIsNone(self.connect(host="192.0.2.3")[0])  # in all
        self.assertIn("radsec_max_connections", self.logged())
        a.connectionLost(None)
        self.assertIsNotNone(self.connect(host="192.0.2.3")[0])
        self.assertEqual(self.factory.per_source, {"192.0.2.1": 1, "192.0.2.2": 1, "192.0.2.3": 1})


class ConfigTests(unittest.TestCase):
    def load(self, text: str):
        import shutil
        import tempfile
        from pathlib import Path

        from nac.config import load

        base = Path(tempfile.mkdtemp(prefix="nac-radsec-config-"))
        self.addCleanup(shutil.rmtree, base, True)
        (base / "nac.conf").write_text(text)
        return load(str(base / "nac.conf"))

    def problems(self, text: str) -> list[str]:
        from nac.config import ConfigError

        with self.assertRaises(ConfigError) as caught:
            self.load(text)
        return list(caught.exception.problems)

    def test_a_radsec_only_nas_needs_no_address_nor_secret(self):
        from transports.radius.clients import client_table, radsec_clients

        cfg = self.load("[nac]\ntransports = radius\n[radius]\nradsec_port = 2083\nradsec_ca = /etc/nas-ca.pem\n"
                        "[radius-client:edge]\nradsec_name = Proxy.Example.org\nfilter_id_allow = via-proxy\n")
        self.assertEqual(len(client_table(cfg)), 0)
        (name, nas), = radsec_clients(cfg, RADSEC_SECRET).items()
        self.assertEqual((name, nas.name, nas.secret), ("proxy.example.org", "edge", b"radsec"))
        self.assertIsNotNone(nas.enforcement)  # its own (the Filter-Id over RadSec: test_radsec_freeradius)

    def test_errors_are_one_line_each(self):
        nas = "[radius-client:edge]\nradsec_name = proxy.example.org\n"
        cases = {
            "[nac]\ntransports = radius\n[radius]\nradsec_port = 2083\n" + nas:
                ["[radius] radsec_ca: required because radsec_port is set"],
            "[nac]\ntransports = radius\n[radius]\nradsec_port = 2083\nradsec_ca = /ca.pem\n"
            "[radius-client:sw1]\naddress = 10.0.0.1\nsecret = s3cret\n":
                ["[radius] radsec_port: no [radius-client:NAME] section has a radsec_name"],
            nas + "[radius-client:edge2]\nradsec_name = PROXY.example.org\n":
                ["[radius-client:edge2] radsec_name: already the radsec_name of [radius-client:edge]"],
            "[radius-client:edge]\nradsec_name = two names\n":
                ["[radius-client:edge] radsec_name: 'two names' is not one certificate name"],
            "[nac]\ntransports = radius\n[radius]\nradsec_port = 2083\nradsec_ca = /ca.pem\nradsec_cert = /c.pem\n"
            + nas: ["radsec_cert, radsec_key: set both"],
        }
        for text, expected in cases.items():
            problems = self.problems(text)
            self.assertEqual(len(problems), len(expected), problems)
            for fragment, problem in zip(expected, problems):
                self.assertIn(fragment, problem)

    def test_an_unreadable_ca_is_one_line_naming_radsec_ca(self):
        import tempfile

        from nac.config import ConfigError
        from transports.radius.radsec_service import make_radsec_service

        state = tempfile.mkdtemp(prefix="nac-radsec-state-")
        self.addCleanup(__import__("shutil").rmtree, state, True)
        cfg = self.load(f"[nac]\nstate_dir = {state}\ntransports = radius\n[radius]\nradsec_port = 2083\n"
                        f"radsec_ca = {state}/missing.pem\n[radius-client:edge]\nradsec_name = proxy.example.org\n")
        server = RadiusServer([], lambda peer: None)
        with self.assertRaises(ConfigError) as caught:
            make_radsec_service(cfg, server, clock=Clock())
        self.assertIn(f"[radius] radsec_ca: cannot read CA {state}/missing.pem", str(caught.exception))
