"""CoA and Disconnect (RFC 5176) on a NAS's RadSec connection (RFC 6614),
without sockets: the real RadSec protocol objects (RadsecFactory and its
protocol, through a StringTransport standing for Twisted's TLS wrapper, a
Clock) and the real dispatcher over a real policy database.  The requests
the NAS reads are checked with hashlib/hmac and the secret "radsec"; the
NAS's answers are built the same way.  No retransmission on the
connection: one timeout, then "no answer"; a closed connection ends its
requests; without a connection the NAS gets UDP if it has an address,
else "not reachable" is recorded; a decision a worker process relayed is
sent as the main process's own; nac-admin refuses a RadSec-only NAS."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import json
import shutil
import struct
import tempfile
from pathlib import Path
from types import SimpleNamespace

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial import unittest

from nac.db import PolicyDb
from nac.db.accounting import AccountingRecord, list_accounting, record_accounting
from nac.db.engine import make_engine, upgrade
from nac.processes import decision_relay
from nac.tnccs.assessment import GroupEnforcement, RelayedDecision
from tests.test_db import decision, peer
from tests.test_radius_coa import FakeSender, SyncStore
from tests.test_radsec import TlsTransport, certificate
from tests.test_radius_server import Md5Authenticator
from transports.radius.clients import RadiusClient, RadiusClientTable
from transports.radius.enforcement import RadiusEnforcement
from transports.radius.radsec import RADSEC_SECRET, RadsecStream
from transports.radius.radsec_coa import RadsecCoaDispatcher, reliable_timeout
from transports.radius.radsec_service import RadsecFactory
from transports.radius.server import RadiusServer

STATION = "02-00-00-00-00-01"
COA_REQUEST, COA_ACK, DISCONNECT_REQUEST, DISCONNECT_ACK = 43, 44, 40, 41
MESSAGE_AUTHENTICATOR, EVENT_TIMESTAMP, FILTER_ID, ACCT_SESSION_ID = 80, 55, 11, 44


def attributes(packet: bytes) -> dict[int, bytes]:
    out, pos = {}, 20
    while pos < len(packet):
        kind, length = packet[pos], packet[pos + 1]
        out[kind] = packet[pos + 2:pos + length]
        pos += length
    return out


def request_valid(packet: bytes, secret: bytes = b"radsec") -> bool:
    """RFC 5176 §2.3 / §3.1: the Request Authenticator is MD5(Code |
    Identifier | Length | 16 zero octets | Attributes | secret), the
    Message-Authenticator HMAC-MD5 over the packet with both zeroed."""
    expected = hashlib.md5(packet[:4] + bytes(16) + packet[20:] + secret).digest()
    if not hmac.compare_digest(expected, packet[4:20]):
        return False
    zeroed, pos = bytearray(packet), 20
    zeroed[4:20] = bytes(16)
    while pos < len(packet):
        if packet[pos] == MESSAGE_AUTHENTICATOR:
            mac = packet[pos + 2:pos + 18]
            zeroed[pos + 2:pos + 18] = bytes(16)
            return hmac.compare_digest(hmac.new(secret, bytes(zeroed), hashlib.md5).digest(), mac)
        pos += packet[pos + 1]
    return False


def answer(request: bytes, code: int, secret: bytes = b"radsec") -> bytes:
    head = bytes((code, request[1])) + struct.pack(">H", 20)
    return head + hashlib.md5(head + request[4:20] + secret).digest()


class RadsecCoaTests(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="nac-radsec-coa-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.engine = make_engine(f"sqlite:///{tmp}/nac.db")
        self.addCleanup(self.engine.dispose)
        upgrade(self.engine)
        self.db = PolicyDb(self.engine)
        self.clock = Clock()
        nas = RadiusClient(ipaddress.ip_network("0.0.0.0/0"), RADSEC_SECRET, "sw1")
        self.factory = RadsecFactory(RadiusServer([], lambda p: Md5Authenticator(p, {"carol": "pw"})),
                                     {"sw1.example.org": nas}, self.clock, idle_timeout=600)
        # sw2 speaks UDP too (from 192.0.2.9); sw1 RadSec only
        self.udp = FakeSender()
        self.udp.clock = self.clock
        udp_clients = RadiusClientTable([RadiusClient(ipaddress.ip_network("192.0.2.9/32"), b"udp secret", "sw2",
                                                      coa_port=3799)])
        self.timeout = reliable_timeout(2.0, 3)
        self.dispatcher = RadsecCoaDispatcher(
            SyncStore(self.db), udp_clients, RadiusEnforcement(), self.udp,
            {"sw1": nas, "sw2": dataclasses.replace(nas, name="sw2")}, self.factory, timeout=self.timeout)

    def connect(self, name="sw1.example.org", host="192.0.2.7"):
        proto = self.factory.buildProtocol(IPv4Address("TCP", host, 40000))
        transport = TlsTransport(certificate(name, (name,)))
        proto.makeConnection(transport)
        proto.handshakeCompleted()
        self.addCleanup(lambda: proto._closed or proto.connectionLost(None))
        return proto, transport

    def sent(self, transport) -> list[bytes]:
        out = RadsecStream().receive_data(transport.value())
        transport.clear()
        return out

    def session(self, nas="sw1", nas_address="192.0.2.7") -> int:
        sid = self.db.session_started(dataclasses.replace(peer(transport="radius"), nas=nas, station=STATION), 1)
        self.db.device_seen(sid, "machine-1")
        self.db.session_decided(sid, decision("allowed"))
        return self.db.write(record_accounting, AccountingRecord(
            nas=nas, nas_address=nas_address, named=True, status_type=1, acct_session_id="s1",
            calling_station_id=STATION, user_name="carol"))

    def decide(self, access: str) -> None:
        sid = self.db.session_started(peer(), 1)
        self.db.device_seen(sid, "machine-1")
        self.db.session_decided(sid, decision(access))
        self.dispatcher.decided(sid, decision(access))

    def recorded(self):
        [info] = self.db.read(lambda c: list_accounting(c)[0])
        return info

    def test_coa_goes_on_the_connection_signed_with_radsec_and_the_ack_is_recorded(self):
        self.session()
        proto, transport = self.connect()
        self.decide("isolate")
        [request] = self.sent(transport)
        self.assertEqual(request[0], COA_REQUEST)
        self.assertTrue(request_valid(request))
        self.assertFalse(request_valid(request, b"udp secret"))
        attrs = attributes(request)
        self.assertEqual((attrs[FILTER_ID], attrs[ACCT_SESSION_ID]), (b"isolate", b"s1"))
        self.assertIn(EVENT_TIMESTAMP, attrs)
        self.assertEqual(self.recorded().coa_result, None)
        # an answer signed with another secret, or for another Identifier, is not it
        proto.dataReceived(answer(request, COA_ACK, b"udp secret"))
        proto.dataReceived(answer(bytes((0, (request[1] + 1) % 256)) + request[2:], COA_ACK))
        self.assertEqual(self.recorded().coa_result, None)
        proto.dataReceived(answer(request, COA_ACK))
        info = self.recorded()
        self.assertEqual((info.coa_action, info.coa_result, info.status), ("coa", "CoA-ACK", "started"))
        self.assertEqual(self.udp.sent, [])
        self.assertIsNone(proto.coa._timer, "nothing left to wait for")

    def test_an_unanswered_request_is_not_retransmitted_and_ends_after_one_timeout(self):
        self.session()
        proto, transport = self.connect()
        self.decide("isolate")
        self.assertEqual(len(self.sent(transport)), 1)
        self.clock.advance(self.timeout - 0.5)
        self.assertEqual((self.sent(transport), self.recorded().coa_result), ([], None))
        self.clock.advance(1)
        self.assertEqual(self.sent(transport), [], "a RadSec request is never sent again")
        self.assertEqual(self.recorded().coa_result, f"no answer within {self.timeout:g} s on the RadSec connection")
        self.assertFalse(transport.aborted)

    def test_a_closed_connection_ends_its_requests(self):
        self.session()
        proto, transport = self.connect()
        self.decide("isolate")
        proto.connectionLost(None)
        self.assertEqual(self.recorded().coa_result, "RadSec connection closed before an answer")
        self.clock.advance(self.timeout + 1)
        self.assertEqual(self.recorded().coa_result, "RadSec connection closed before an answer")

    def test_disconnect_ack_ends_the_accounting_session(self):
        self.session()
        proto, transport = self.connect()
        self.decide("denied")
        [request] = self.sent(transport)
        self.assertEqual(request[0], DISCONNECT_REQUEST)
        self.assertTrue(request_valid(request))
        proto.dataReceived(answer(request, DISCONNECT_ACK))
        info = self.recorded()
        self.assertEqual((info.coa_result, info.status, info.terminate_cause),
                         ("Disconnect-ACK", "stopped", "Admin-Reset"))

    def test_the_newest_open_connection_of_the_nas_is_used(self):
        self.session()
        old, old_transport = self.connect()
        self.clock.advance(1)
        new, new_transport = self.connect(host="192.0.2.8")
        self.decide("isolate")
        self.assertEqual((len(self.sent(old_transport)), len(self.sent(new_transport))), (0, 1))

    def test_without_a_connection_a_nas_with_an_address_gets_udp(self):
        self.session("sw2", "192.0.2.9")
        proto, transport = self.connect()  # sw1's: not this NAS
        self.decide("isolate")
        self.assertEqual(self.sent(transport), [])
        [(kind, target, _)] = self.udp.sent
        self.assertEqual((kind, target.host, target.port, target.secret), (COA_REQUEST, "192.0.2.9", 3799,
                                                                          b"udp secret"))
        self.assertEqual(self.recorded().coa_result, "CoA-ACK")

    def test_a_radsec_only_nas_without_a_connection_is_recorded_as_not_reachable(self):
        self.session()
        proto, transport = self.connect()
        proto.connectionLost(None)
        self.decide("isolate")
        self.assertEqual(self.udp.sent, [])
        info = self.recorded()
        self.assertEqual((info.coa_action, info.coa_result),
                         ("coa", "not reachable: no open RadSec connection and no address for UDP"))

    def test_a_decision_a_worker_relayed_goes_on_the_connection_with_its_group_enforcement(self):
        # the worker committed the decision and wrote the control line; the
        # main process's relay hands it to its dispatcher, which holds the connection
        self.session()
        proto, transport = self.connect()
        sid = self.db.session_started(peer(), 1)
        self.db.device_seen(sid, "machine-1")
        made = dataclasses.replace(decision("isolate"), enforcement=GroupEnforcement(
            groups=("lab",), filter_id_isolate="lab-quarantine"))
        self.db.session_decided(sid, made)
        line = json.dumps({"nac_control": "decided", "session": sid,
                           "decision": RelayedDecision.of(made).to_json()})
        relay = decision_relay(SimpleNamespace(notify_decision=self.dispatcher.decided))
        relay(1, json.loads(line))
        [request] = self.sent(transport)
        self.assertEqual((request[0], attributes(request)[FILTER_ID]), (COA_REQUEST, b"lab-quarantine"))
        self.assertTrue(request_valid(request))
        proto.dataReceived(answer(request, COA_ACK))
        self.assertEqual(self.recorded().coa_result, "CoA-ACK")

    def test_a_decision_of_a_session_the_database_does_not_have_is_one_line(self):
        from twisted.logger import globalLogPublisher

        self.session()
        _, transport = self.connect()
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        self.dispatcher.decided(4242, RelayedDecision("isolate"))
        self.assertEqual(self.sent(transport), [])
        self.assertEqual([e["log_format"] for e in logged if e.get("sid") == 4242],
                         ["decision of session {sid}: the database has no decision of that session; no NAS told"])
        self.assertIsNone(self.recorded().coa_result)

    def test_the_timeout_lasts_as_long_as_the_udp_tries(self):
        self.assertEqual(reliable_timeout(2.0, 5), 2 + 4 + 8 + 16 + 16)
        self.assertEqual(reliable_timeout(0.3, 3), 0.3 + 0.6 + 1.2)


class NacAdminTests(unittest.TestCase):
    """``nac-admin coa`` cannot use the server's TLS connection."""

    def setUp(self):
        from nac.config import load

        base = Path(tempfile.mkdtemp(prefix="nac-radsec-coa-admin-"))
        self.addCleanup(shutil.rmtree, base, True)
        (base / "nac.conf").write_text(
            f"[nac]\ntransports = radius\nstate_dir = {base}\n"
            "[radius]\nsecret = testing123\nclients = 127.0.0.1/32\nradsec_port = 2083\n"
            "radsec_ca = /etc/nas-ca.pem\n[radius-client:sw1]\nradsec_name = sw1.example.org\n")
        self.cfg = load(str(base / "nac.conf"))
        self.engine = make_engine(f"sqlite:///{base}/nac.db")
        self.addCleanup(self.engine.dispose)
        upgrade(self.engine)
        self.db = PolicyDb(self.engine)

    def test_a_radsec_only_nas_is_refused_in_one_line_and_nothing_is_recorded(self):
        from transports.radius.dynamic import change_session

        row = self.db.write(record_accounting, AccountingRecord(
            nas="sw1", nas_address="127.0.0.1", named=True, status_type=1, acct_session_id="s1"))
        with self.assertRaises(LookupError) as caught:
            change_session(self.cfg, self.db, row, "isolate")
        text = str(caught.exception)
        self.assertNotIn("\n", text)
        self.assertIn("NAS 'sw1' is reached over RadSec only", text)
        [info] = self.db.read(lambda c: list_accounting(c)[0])
        self.assertEqual((info.coa_action, info.coa_result), (None, None))

