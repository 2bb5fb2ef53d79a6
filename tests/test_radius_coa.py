"""RFC 5176 CoA and Disconnect from nac's side: the request bytes checked with
hashlib/hmac (Request Authenticator as for accounting, Message-Authenticator
over the zero-authenticator packet), identification and enforcement
attributes, Event-Timestamp; ACK / NAK with Error-Cause; forged or foreign
answers ignored; retransmission of the same bytes with doubling timeouts and
giving up; and the dispatcher, which sends a CoA when a device's decision
changes and records the outcome."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import shutil
import struct
import tempfile

from twisted.internet import defer, protocol
from twisted.trial import unittest

from nac.db import PolicyDb
from nac.db.accounting import AccountingRecord, decision_change, list_accounting, record_accounting
from nac.db.engine import make_engine, upgrade
from tests.test_db import decision, peer
from transports.radius.clients import RadiusClient, RadiusClientTable
from transports.radius.coa import CoaClient, CoaOutcome, CoaTarget
from transports.radius.dynamic import CoaDispatcher, coa_request_for
from transports.radius.enforcement import RadiusEnforcement
from transports.radius.packet import Attribute, AttributeType, Code, RadiusPacket

SECRET = b"coa secret"
NAS = ("127.0.0.1", 3799)
TARGET = CoaTarget("127.0.0.1", 3799, SECRET, "sw1", acct_session_id="sess-1", user_name="carol",
                   calling_station_id="02-00-00-00-00-01", nas_port=7)


def attr(t: int, value: bytes) -> bytes:
    return bytes((t, len(value) + 2)) + value


def answer(request: bytes, code: int, attrs: bytes = b"", secret: bytes = SECRET) -> bytes:
    head = bytes((code, request[1])) + struct.pack(">H", 20 + len(attrs))
    return head + hashlib.md5(head + request[4:20] + attrs + secret).digest() + attrs


def client(**kw) -> CoaClient:
    return CoaClient(clock_time=lambda: 1_700_000_000, random_bytes=lambda n: bytes(n), **kw)


class CoaClientTests(unittest.TestCase):
    def test_request_bytes(self):
        c = client()
        filter_id = Attribute(AttributeType.FILTER_ID, b"isolate")
        c.request(Code.COA_REQUEST, TARGET, [filter_id], 0.0)
        [(data, addr)] = c.datagrams()
        self.assertEqual(addr, NAS)
        self.assertEqual((data[0], struct.unpack(">H", data[2:4])[0]), (43, len(data)))
        # Request Authenticator: MD5(Code+Id+Length+16 zero octets+Attributes+Secret)
        self.assertEqual(data[4:20], hashlib.md5(data[:4] + bytes(16) + data[20:] + SECRET).digest())
        packet = RadiusPacket.parse(data)
        ma = packet.get(80)
        zeroed = data[:4] + bytes(16) + data[20:].replace(ma, bytes(16), 1)
        self.assertEqual(ma, hmac.new(SECRET, zeroed, hashlib.md5).digest())
        self.assertEqual(packet.attributes[0].type, 80)
        values = {a.type: a.value for a in packet.attributes}
        self.assertEqual(values[4], bytes((127, 0, 0, 1)))
        self.assertEqual((values[1], values[44], values[31], values[11]),
                         (b"carol", b"sess-1", b"02-00-00-00-00-01", b"isolate"))
        self.assertNotIn(5, values)  # NAS-Port: see test_nas_port_only_without_acct_session_id
        self.assertEqual(struct.unpack(">I", values[55])[0], 1_700_000_000)

    def test_nas_port_only_without_acct_session_id(self):
        # hostapd's DAS answers a request with an attribute it does not match
        # on, NAS-Port among them, with a NAK Unsupported-Attribute (401),
        # though its own accounting reports NAS-Port (the AID of a Wi-Fi
        # station): Acct-Session-Id names the session, NAS-Port is left out
        for kind in (Code.COA_REQUEST, Code.DISCONNECT_REQUEST):
            c = client()
            c.request(kind, TARGET, [], 0.0)
            [(data, _)] = c.datagrams()
            types = [a.type for a in RadiusPacket.parse(data).attributes]
            self.assertEqual(types, [80, 4, 1, 44, 31, 55])
        c = client()
        c.request(Code.DISCONNECT_REQUEST, dataclasses.replace(TARGET, acct_session_id=None), [], 0.0)
        [(data, _)] = c.datagrams()
        self.assertEqual(RadiusPacket.parse(data).value(5), 7)

    def test_the_nas_is_named_by_the_address_it_reported(self):
        # RFC 5176 §3: the NAS identification attributes are the NAS's own; a
        # NAS behind NAT (or hostapd with another own_ip_addr) checks them
        for reported, attr_type, value in (("192.0.2.77", 4, bytes((192, 0, 2, 77))),
                                           ("2001:db8::77", 95, bytes.fromhex("20010db8" + "0" * 22 + "77")),
                                           (None, 4, bytes((127, 0, 0, 1)))):
            c = client()
            c.request(Code.DISCONNECT_REQUEST, dataclasses.replace(TARGET, nas_ip=reported), [], 0.0)
            [(data, addr)] = c.datagrams()
            self.assertEqual(addr, NAS)  # sent where its requests came from, whatever it calls itself
            packet = RadiusPacket.parse(data)
            self.assertEqual(packet.get(attr_type), value, reported)
            self.assertEqual(len([a for a in packet.attributes if a.type in (4, 95)]), 1)

    def test_ack(self):
        c = client()
        handle = c.request(Code.COA_REQUEST, TARGET, [], 0.0)
        [(data, _)] = c.datagrams()
        outcome = c.receive(answer(data, 44), NAS, 0.1)
        self.assertEqual((outcome.handle, outcome.acked, outcome.attempts, outcome.describe()),
                         (handle, True, 1, "CoA-ACK"))
        self.assertEqual(c.in_flight, 0)

    def test_nak_with_error_cause(self):
        c = client()
        c.request(Code.DISCONNECT_REQUEST, TARGET, [], 0.0)
        [(data, _)] = c.datagrams()
        outcome = c.receive(answer(data, 42, attr(101, struct.pack(">I", 503))), NAS, 0.1)
        self.assertEqual((outcome.acked, outcome.nak, outcome.error_cause, outcome.action),
                         (False, True, 503, "disconnect"))
        self.assertEqual(outcome.describe(), "Disconnect-NAK: Session-Context-Not-Found (503)")

    def test_forged_wrong_code_and_foreign_answers_are_ignored(self):
        c = client()
        c.request(Code.COA_REQUEST, TARGET, [], 0.0)
        [(data, _)] = c.datagrams()
        self.assertIsNone(c.receive(answer(data, 44, secret=b"not the secret"), NAS, 0.1))
        self.assertIsNone(c.receive(answer(data, 41), NAS, 0.1))  # a Disconnect-ACK for a CoA
        self.assertIsNone(c.receive(answer(data, 44), ("127.0.0.2", 3799), 0.1))
        self.assertIsNone(c.receive(answer(data, 44), ("127.0.0.1", 3800), 0.1))
        self.assertEqual(c.in_flight, 1)
        self.assertTrue(c.receive(answer(data, 44), NAS, 0.2).acked)

    def test_retransmits_the_same_bytes_with_back_off_and_gives_up(self):
        c = client(timeout=2.0, max_timeout=16.0, attempts=5)
        c.request(Code.COA_REQUEST, TARGET, [], 0.0)
        [(first, _)] = c.datagrams()
        sent_at = [0.0]
        now = 0.0
        outcomes = []
        while not outcomes:
            now = c.next_deadline()
            outcomes = c.expire(now)
            for data, _ in c.datagrams():
                self.assertEqual(data, first)
                sent_at.append(now)
        self.assertEqual(sent_at, [0.0, 2.0, 6.0, 14.0, 30.0])
        self.assertEqual(now, 46.0)
        self.assertEqual((outcomes[0].acked, outcomes[0].attempts, outcomes[0].describe()),
                         (False, 5, "no answer after 5 tries"))

    def test_ack_of_a_retransmission(self):
        c = client()
        c.request(Code.COA_REQUEST, TARGET, [], 0.0)
        [(data, _)] = c.datagrams()
        c.expire(2.0)
        outcome = c.receive(answer(data, 44), NAS, 2.5)
        self.assertEqual((outcome.attempts, outcome.describe()), (2, "CoA-ACK after 2 tries"))

    def test_identifiers_differ_while_in_flight(self):
        c = client()
        for _ in range(3):
            c.request(Code.COA_REQUEST, TARGET, [], 0.0)
        self.assertEqual(len({data[1] for data, _ in c.datagrams()}), 3)


    def test_counters_by_kind_and_outcome(self):
        # what /metrics shows of a sender: first tries, retransmissions, ACKs, NAKs by Error-Cause, no answer
        c = client(timeout=1.0, attempts=2)
        c.request(Code.COA_REQUEST, TARGET, [], 0.0)
        c.request(Code.COA_REQUEST, TARGET, [], 0.0)
        c.request(Code.DISCONNECT_REQUEST, TARGET, [], 0.0)
        c.request(Code.DISCONNECT_REQUEST, TARGET, [], 0.0)
        first, second, third, fourth = (data for data, _ in c.datagrams())
        self.assertEqual(c.counters.requests, {"coa": 2, "disconnect": 2})
        c.receive(answer(first, 44), NAS, 0.1)
        c.receive(answer(second, 45, attr(101, struct.pack(">I", 503))), NAS, 0.1)
        c.receive(answer(third, 42), NAS, 0.1)
        self.assertEqual(c.in_flight, 1)
        c.expire(1.0)
        self.assertEqual(c.counters.retransmissions, {"disconnect": 1})
        [gone] = c.expire(3.0)
        self.assertEqual((gone.kind, c.in_flight), (Code.DISCONNECT_REQUEST, 0))
        self.assertEqual(c.counters.acks, {"coa": 1})
        self.assertEqual(c.counters.naks, {("coa", "session_context_not_found"): 1, ("disconnect", "none"): 1})
        self.assertEqual(c.counters.timeouts, {"disconnect": 1})
        self.assertEqual(c.counters.requests, {"coa": 2, "disconnect": 2}, "a retransmission is no new request")


class EnforcementOfCoaTests(unittest.TestCase):
    nas = RadiusClient(ipaddress.ip_network("127.0.0.1/32"), SECRET, "sw1")

    def test_isolate_is_a_coa_with_the_isolate_filter_id(self):
        kind, attrs = coa_request_for(None, self.nas, "isolate", RadiusEnforcement(vlan_isolate="20"))
        self.assertEqual(kind, Code.COA_REQUEST)
        self.assertEqual([a for a in attrs if a.type == 11][0].value, b"isolate")
        self.assertEqual([a for a in attrs if a.type == 81][0].value, b"\x0120")

    def test_denied_is_a_disconnect_and_the_nas_setting_rules(self):
        self.assertEqual(coa_request_for(None, self.nas, "denied", RadiusEnforcement()),
                         (Code.DISCONNECT_REQUEST, []))
        self.assertEqual(coa_request_for(None, dataclasses.replace(self.nas, coa="disconnect"), "allowed",
                                         RadiusEnforcement()), (Code.DISCONNECT_REQUEST, []))
        self.assertIsNone(coa_request_for(None, dataclasses.replace(self.nas, coa="none"), "isolate",
                                          RadiusEnforcement()))


class SessionControlTests(unittest.TestCase):
    def test_the_radius_plugin_provides_session_control(self):
        from zope.interface.verify import verifyObject
        from nac.interfaces import ISessionControl
        from transports.radius.plugin import transport
        self.assertTrue(verifyObject(ISessionControl, transport))

    def test_the_running_session_control_provides_its_interface(self):
        from zope.interface.verify import verifyObject
        from nac.interfaces import IRunningSessionControl
        from transports.radius.session_control import RadiusSessionControl
        self.assertTrue(verifyObject(IRunningSessionControl, RadiusSessionControl(None)))


class FakeSender:
    def __init__(self):
        self.sent = []

    def send(self, kind, target, attributes):
        self.sent.append((kind, target, attributes))
        return defer.succeed(CoaOutcome(len(self.sent), kind, target, True))


class SyncStore:
    """The store's interface over a PolicyDb, at once."""

    def __init__(self, db: PolicyDb):
        self.db = db
        self.writes = self

    def read(self, fn, *args):
        return defer.succeed(self.db.read(fn, *args))

    def submit(self, fn, *args):
        return defer.succeed(self.db.write(fn, *args))


class SenderTests(unittest.TestCase):
    """The Twisted edge over real loopback UDP: a NAS socket answers with a CoA-ACK."""

    def test_sends_and_hands_back_the_outcome_over_ipv4_and_ipv6(self):
        from twisted.internet import reactor
        from transports.radius.dynamic import CoaSender

        sender = CoaSender(CoaClient(timeout=0.5, attempts=2), reactor, "::")
        sender.start(reactor)
        self.addCleanup(sender.stop)
        results = []

        class Nas(protocol.DatagramProtocol):
            def datagramReceived(self, data, addr):
                self.transport.write(answer(data, 44), addr)

        d = defer.succeed(None)
        for host in ("127.0.0.1", "::1"):
            try:
                port = reactor.listenUDP(0, Nas(), interface=host)
            except Exception:
                if host == "::1":
                    continue  # no IPv6 here
                raise
            self.addCleanup(port.stopListening)
            target = dataclasses.replace(TARGET, host=host, port=port.getHost().port)
            d.addCallback(lambda _, t=target: sender.send(Code.COA_REQUEST, t, []))
            d.addCallback(results.append)

        def check(_):
            self.assertTrue(results and all(r.acked for r in results))
        return d.addCallback(check)


class DispatcherTests(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="nac-coa-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.engine = make_engine(f"sqlite:///{tmp}/nac.db")
        self.addCleanup(self.engine.dispose)
        upgrade(self.engine)
        self.db = PolicyDb(self.engine)
        self.sender = FakeSender()
        clients = RadiusClientTable([RadiusClient(ipaddress.ip_network("127.0.0.1/32"), SECRET, "sw1")])
        self.dispatcher = CoaDispatcher(SyncStore(self.db), clients, RadiusEnforcement(), self.sender)

    def assess(self, access: str, transport="pt-tls", station=None) -> int:
        sid = self.db.session_started(dataclasses.replace(peer(transport=transport), nas="sw1" if station else None,
                                                          station=station), 1)
        self.db.device_seen(sid, "machine-1")
        self.db.session_decided(sid, decision(access))
        return sid

    def account(self):
        return self.db.write(record_accounting, AccountingRecord(
            nas="sw1", nas_address="127.0.0.1", named=True, status_type=1, acct_session_id="s1",
            calling_station_id="02-00-00-00-00-01", user_name="carol"))

    def test_a_changed_decision_sends_a_coa_and_records_the_outcome(self):
        self.assess("allowed", "radius", "02-00-00-00-00-01")
        row = self.account()
        sid = self.assess("isolate")
        self.dispatcher.decided(sid, decision("isolate"))
        [(kind, target, attrs)] = self.sender.sent
        self.assertEqual((kind, target.acct_session_id, target.host, target.port), (Code.COA_REQUEST, "s1",
                                                                                    "127.0.0.1", 3799))
        self.assertIn(Attribute(11, b"isolate"), attrs)
        [info] = self.db.read(lambda c: list_accounting(c)[0])
        self.assertEqual((info.id, info.coa_action, info.coa_result), (row, "coa", "CoA-ACK"))

    def test_the_same_decision_sends_nothing(self):
        self.assess("isolate", "radius", "02-00-00-00-00-01")
        self.account()
        sid = self.assess("isolate")
        self.dispatcher.decided(sid, decision("isolate"))
        self.assertEqual(self.sender.sent, [])

    def test_the_radius_assessment_of_the_session_itself_is_left_out(self):
        self.assess("isolate", "radius", "02-00-00-00-00-01")
        self.account()
        sid = self.assess("allowed", "radius", "02-00-00-00-00-01")
        self.assertEqual(self.db.read(decision_change, sid)[2], [])
        self.dispatcher.decided(sid, decision("allowed"))
        self.assertEqual(self.sender.sent, [])

    def test_session_context_not_found_ends_the_accounting_session(self):
        self.assess("allowed", "radius", "02-00-00-00-00-01")
        self.account()
        sid = self.assess("isolate")
        self.sender.send = lambda kind, target, attrs: defer.succeed(
            CoaOutcome(1, kind, target, False, nak=True, error_cause=503))
        self.dispatcher.decided(sid, decision("isolate"))
        [info] = self.db.read(lambda c: list_accounting(c)[0])
        self.assertEqual((info.status, info.coa_result), ("stopped", "CoA-NAK: Session-Context-Not-Found (503)"))

    def test_other_naks_leave_the_session_open(self):
        self.assess("allowed", "radius", "02-00-00-00-00-01")
        self.account()
        sid = self.assess("isolate")
        self.sender.send = lambda kind, target, attrs: defer.succeed(
            CoaOutcome(1, kind, target, False, nak=True, error_cause=405))
        self.dispatcher.decided(sid, decision("isolate"))
        [info] = self.db.read(lambda c: list_accounting(c)[0])
        self.assertEqual((info.status, info.coa_result), ("started", "CoA-NAK: Unsupported-Service (405)"))

    def test_a_database_failure_is_logged_not_raised(self):
        self.dispatcher.store.read = lambda fn, *args: defer.fail(RuntimeError("database away"))
        self.dispatcher.decided(1, decision("isolate"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual((self.sender.sent, self.dispatcher.busy), ([], set()))

    def test_an_unavailable_database_is_one_line_without_traceback(self):
        from nac.db.outage import StoreUnavailable
        from twisted.logger import globalLogPublisher
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.dispatcher.store.read = lambda fn, *args: defer.fail(StoreUnavailable("database away"))
        self.dispatcher.decided(2, decision("isolate"))
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertFalse([e for e in events if "log_failure" in e])
        self.assertEqual(self.sender.sent, [])

    def test_denied_disconnects_and_ends_the_accounting_session(self):
        self.assess("allowed", "radius", "02-00-00-00-00-01")
        self.account()
        sid = self.assess("denied")
        self.dispatcher.decided(sid, decision("denied"))
        [(kind, _, attrs)] = self.sender.sent
        self.assertEqual((kind, attrs), (Code.DISCONNECT_REQUEST, []))
        [info] = self.db.read(lambda c: list_accounting(c)[0])
        self.assertEqual((info.status, info.terminate_cause, info.coa_result),
                         ("stopped", "Admin-Reset", "Disconnect-ACK"))
