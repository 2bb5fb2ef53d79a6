"""PT-TLS before the client has authenticated: the unauthenticated
connection budget (per address and in total, with the busy deadline), the
rate-limited refusal lines, the small message limit until the data phase,
and the SASL password check through the bounded, throttled checks
(:mod:`nac.auth_throttle`).  Sans-IO pieces and the protocol factory on a
Clock with string transports; tests/test_pt_tls_floods.py runs the real
server."""

from __future__ import annotations

import struct

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent
from twisted.trial import unittest

from nac.auth_throttle import FailureThrottle, Logins, PasswordChecks
from tests.test_auth_throttle import CapturedLog, ControlledCheck
from transports.pt_tls import negotiation as ptn
from transports.pt_tls.admission import Admitted, RefusalTally, Refused, UnauthenticatedBudget
from transports.pt_tls.service import PtTlsFactory
from transports.pt_tls.wire import (
    HEADER_SIZE,
    PbTncBatch,
    PtTlsError,
    PtTlsErrorCode,
    PtTlsFramer,
    PtTlsMessage,
    PtTlsMessageType as T,
    SaslMechanismSelection,
    SaslResult,
    SaslResultMessage,
    VersionRequest,
)

VERSION_REQUEST = VersionRequest(1, 1, 1).to_message(0).build()


def sasl_plain(user: str, password: str, message_id: int = 1) -> bytes:
    initial = b"\0" + user.encode() + b"\0" + password.encode()
    return SaslMechanismSelection("PLAIN", initial).to_message(message_id).build()


# -- the budget and the tally (sans-IO) ----------------------------------------------------


class UnauthenticatedBudgetTests(unittest.TestCase):
    def test_per_source_limit(self):
        budget = UnauthenticatedBudget(total=100, per_source=3)
        self.assertEqual([budget.admit("a", n) for n in range(4)],
                         [Admitted(), Admitted(), Admitted(), Refused("per-source")])
        self.assertEqual(budget.admit("b", 10), Admitted())
        budget.release(1)  # authenticated or closed
        self.assertEqual(budget.admit("a", 11), Admitted())

    def test_full_budget_evicts_the_oldest_of_the_busiest_source(self):
        budget = UnauthenticatedBudget(total=4, per_source=10)
        for n in range(3):
            budget.admit("flood", f"f{n}")
        budget.admit("other", "o0")
        self.assertEqual(budget.admit("new", "n0"), Admitted(evicted="f0"))
        self.assertNotIn("f0", budget)
        self.assertEqual((len(budget), budget.held("flood")), (4, 2))

    def test_full_budget_refuses_unless_the_busiest_holds_two_more(self):
        budget = UnauthenticatedBudget(total=3, per_source=10)
        budget.admit("a", "a0")
        budget.admit("a", "a1")
        budget.admit("b", "b0")
        # b would only take a's place for one of its own: refused, no churn
        self.assertEqual(budget.admit("b", "b1"), Refused("total"))
        self.assertEqual(budget.admit("c", "c0"), Admitted(evicted="a0"))
        # now a, b and c hold one each
        self.assertEqual(budget.admit("d", "d0"), Refused("total"))

    def test_busy_from_three_quarters(self):
        budget = UnauthenticatedBudget(total=8, per_source=8)
        for n in range(5):
            budget.admit("a", n)
        self.assertFalse(budget.busy)
        budget.admit("a", 5)
        self.assertTrue(budget.busy)  # 6 of 8


class RefusalTallyTests(unittest.TestCase):
    def test_first_at_once_then_one_count_per_interval(self):
        tally = RefusalTally(interval=10.0)
        self.assertTrue(tally.count("a", 0.0))
        for n in range(99):
            self.assertFalse(tally.count("a", 0.1 + n * 0.05))
        self.assertEqual(tally.next_due(), 10.0)
        self.assertEqual(tally.due(9.9), [])
        self.assertEqual(tally.due(10.0), [("a", 99, 10.0)])
        # within the next interval: counted, not logged
        self.assertFalse(tally.count("a", 12.0))
        self.assertEqual(tally.due(20.0), [("a", 1, 10.0)])
        # quiet for an interval: forgotten, so the next is logged at once
        self.assertEqual(tally.due(30.0), [])
        self.assertTrue(tally.count("a", 31.0))

    def test_keys_are_bounded(self):
        tally = RefusalTally(interval=10.0, max_keys=3)
        for n in range(10):
            tally.count(f"k{n}", 0.0)
        self.assertLessEqual(len(tally._keys), 4)


# -- the message limit before the data phase ----------------------------------------------


class UnauthenticatedMessageLimitTests(unittest.TestCase):
    def header(self, msg_type: int, length: int, message_id: int = 1) -> bytes:
        return struct.pack(">IIII", 0, msg_type, length, message_id)

    def test_large_message_before_authentication_is_refused_from_its_header(self):
        server = ptn.PtTlsServer(max_message_size=2 * 1024 * 1024)
        server.receive_data(VERSION_REQUEST)
        server.data_to_send()
        events = server.receive_data(self.header(T.SASL_MECHANISM_SELECTION, 4097))
        [error] = [e for e in events if isinstance(e, ptn.ProtocolError)]
        self.assertEqual(error.code, PtTlsErrorCode.INVALID_PARAMETER)
        self.assertIn("4097 exceeds the maximum of 4096", error.reason)
        self.assertTrue(server.closed)
        # the error went out: Invalid Parameter pointing at the length field
        [reply] = PtTlsFramer().feed(server.data_to_send())
        self.assertEqual(reply.type, T.PT_TLS_ERROR)
        self.assertEqual(PtTlsError.parse(reply.value).code, PtTlsErrorCode.INVALID_PARAMETER)

    def test_a_message_of_the_limit_is_taken(self):
        server = ptn.PtTlsServer(max_message_size=2 * 1024 * 1024)
        server.receive_data(VERSION_REQUEST)
        # 4096 bytes of a type the server does not know: read, answered, skipped
        message = PtTlsMessage(0, 0x99, 1, b"x" * (4096 - HEADER_SIZE)).build()
        self.assertEqual(len(message), 4096)
        [event] = server.receive_data(message)
        self.assertEqual((event.code, server.closed), (PtTlsErrorCode.TYPE_NOT_SUPPORTED, False))

    def test_the_full_limit_once_authenticated(self):
        server = ptn.PtTlsServer(client_authenticated_identity="dave@nac.test", max_message_size=2 * 1024 * 1024)
        server.receive_data(VERSION_REQUEST)
        self.assertEqual(server.phase, ptn.PtTlsPhase.DATA)
        batch = b"\x02\x80\x00\x01" + struct.pack(">I", 100_008) + b"\0" * 100_000
        events = server.receive_data(PbTncBatch(batch).to_message(1).build())
        self.assertEqual([type(e) for e in events], [ptn.PbBatchReceived])
        self.assertEqual((server.max_message_size, server.receive_limit), (2 * 1024 * 1024, 2 * 1024 * 1024))

    def test_limit_rises_with_sasl_success(self):
        server = ptn.PtTlsServer(authenticator=lambda user, password, authzid: True)
        server.receive_data(VERSION_REQUEST)
        self.assertEqual(server.receive_limit, 4096)
        server.receive_data(sasl_plain("carol", "pw"))
        self.assertEqual(server.phase, ptn.PtTlsPhase.DATA)
        self.assertEqual(server.receive_limit, 2 * 1024 * 1024)
        self.assertEqual(server.max_batch_size, 2 * 1024 * 1024 - HEADER_SIZE)


# -- the factory: connections on a Clock ----------------------------------------------------


class Transport(StringTransport):
    def __init__(self, host: str):
        super().__init__(peerAddress=IPv4Address("TCP", host, 40000))
        self.aborted = False

    def abortConnection(self):
        self.aborted = True
        super().loseConnection()

    def getPeerCertificate(self):
        return None


class FactoryTests(unittest.TestCase):
    def factory(self, check=None, **kw) -> PtTlsFactory:
        self.clock = Clock()
        self.check = check or ControlledCheck()
        options = dict(max_message_size=2 * 1024 * 1024, max_connections=1000, handshake_timeout=10.0,
                       negotiation_timeout=30.0, idle_timeout=300.0, max_unauthenticated=100,
                       max_unauthenticated_per_source=100, busy_timeout=3.0)
        options.update(kw)
        logins = Logins(self.check, throttle=FailureThrottle(failure_delay=0.0),
                        checks=PasswordChecks(self.check, concurrency=1), clock=self.clock)
        factory = PtTlsFactory(core=None, logins=logins, clock=self.clock, **options)
        self.addCleanup(factory.stop_reports)
        return factory

    def connect(self, factory, host: str):
        proto = factory.buildProtocol(IPv4Address("TCP", host, 40000))
        if proto is not None:
            proto.makeConnection(Transport(host))
        return proto

    def handshake(self, proto):
        proto.handshakeCompleted()
        proto.dataReceived(VERSION_REQUEST)

    def close(self, proto):
        proto.connectionLost()

    def test_an_address_gets_its_share_and_others_still_get_in(self):
        factory = self.factory(max_unauthenticated_per_source=5)
        flood = [self.connect(factory, "192.0.2.66") for _ in range(50)]
        self.assertEqual(sum(p is not None for p in flood), 5)
        self.assertIsNotNone(self.connect(factory, "192.0.2.1"))
        self.assertEqual(factory.active, 6)

    def test_authenticated_connections_leave_the_budget(self):
        factory = self.factory(max_unauthenticated_per_source=2, sasl_enabled=False)
        first, second = self.connect(factory, "192.0.2.1"), self.connect(factory, "192.0.2.1")
        self.assertIsNone(self.connect(factory, "192.0.2.1"))
        # sasl disabled: the Version Request completes "authentication" (AUTH_NONE)
        factory.core = type("Core", (), {"open_connection": lambda self, peer, limits: type(
            "Conn", (), {"connection_id": 1, "finished": True})()})()
        self.handshake(first)
        self.assertTrue(first.authenticated)
        self.assertIsNotNone(self.connect(factory, "192.0.2.1"))
        self.close(second)
        self.assertIsNotNone(self.connect(factory, "192.0.2.1"))
        self.assertEqual(factory.active, 3)

    def test_full_budget_closes_the_busiest_address_oldest(self):
        factory = self.factory(max_unauthenticated=10, max_unauthenticated_per_source=10)
        flood = [self.connect(factory, "192.0.2.66") for _ in range(10)]
        newcomer = self.connect(factory, "192.0.2.1")
        self.assertIsNotNone(newcomer)
        self.assertTrue(flood[0].transport.aborted)
        self.assertFalse(flood[1].transport.aborted)
        # the evicted one's own connectionLost comes later and counts nothing twice
        self.close(flood[0])
        self.assertEqual((factory.active, len(factory.unauthenticated)), (10, 10))

    def test_busy_budget_shortens_every_unauthenticated_deadline(self):
        factory = self.factory(max_unauthenticated=8, max_unauthenticated_per_source=8, busy_timeout=3.0)
        early = [self.connect(factory, f"192.0.2.{n}") for n in range(1, 6)]
        self.clock.advance(1.0)
        self.assertFalse(factory.busy)
        late = self.connect(factory, "192.0.2.6")  # 6 of 8: busy
        self.assertTrue(factory.busy)
        self.clock.advance(1.99)  # 2.99 s after the first five started
        self.assertEqual([p.transport.aborted for p in early + [late]], [False] * 6)
        self.clock.advance(0.02)
        self.assertEqual([p.transport.aborted for p in early], [True] * 5)
        self.assertFalse(late.transport.aborted)  # started 1 s later
        self.clock.advance(1.0)
        self.assertTrue(late.transport.aborted)

    def test_without_pressure_the_handshake_timeout_holds(self):
        factory = self.factory(max_unauthenticated=8, max_unauthenticated_per_source=8)
        protos = [self.connect(factory, f"192.0.2.{n}") for n in range(1, 5)]
        self.clock.advance(9.9)
        self.assertEqual([p.transport.aborted for p in protos], [False] * 4)
        self.clock.advance(0.2)
        self.assertEqual([p.transport.aborted for p in protos], [True] * 4)

    def test_refusals_are_one_line_per_address_and_interval_with_their_number(self):
        log = CapturedLog(self)
        factory = self.factory(max_unauthenticated_per_source=2)
        for _ in range(200):
            self.connect(factory, "192.0.2.66")
        refusals = [line for line in log.lines("nac.pt-tls") if "refused" in line]
        self.assertEqual(refusals, [
            "refused a PT-TLS connection from 192.0.2.66: 2 unauthenticated connections from one "
            "address is the limit ([pt-tls] max_unauthenticated_per_source)"])
        self.clock.advance(10.0)
        refusals = [line for line in log.lines("nac.pt-tls") if "refused" in line]
        # 198 refused: the first logged at once, 197 counted
        self.assertEqual(refusals[1:], [
            "refused 197 PT-TLS connections from 192.0.2.66 in the last 10 s: 2 unauthenticated "
            "connections from one address is the limit ([pt-tls] max_unauthenticated_per_source)"])

    def test_handshake_timeouts_of_unauthenticated_connections_are_counted_not_each_logged(self):
        log = CapturedLog(self)
        factory = self.factory()
        for n in range(50):
            self.connect(factory, "192.0.2.66")
        self.clock.advance(10.0)
        self.clock.advance(10.0)
        lines = [line for line in log.lines("nac.pt-tls") if "192.0.2.66" in line]
        self.assertEqual(lines, [
            "closed an unauthenticated PT-TLS connection from 192.0.2.66: TLS handshake not completed in time",
            "closed 49 unauthenticated PT-TLS connections from 192.0.2.66 in the last 10 s: TLS handshake "
            "not completed in time"])

    def test_password_check_of_a_closed_connection_is_dropped(self):
        factory = self.factory()
        first, second = self.connect(factory, "192.0.2.1"), self.connect(factory, "192.0.2.2")
        for proto in (first, second):
            self.handshake(proto)
            proto.dataReceived(sasl_plain("carol", "pw"))
        self.assertEqual(len(self.check.calls), 1)  # one at a time here; the second waits
        self.close(second)
        self.check.waiting.pop().callback(False)
        self.assertEqual(len(self.check.calls), 1)
        self.assertEqual(factory.logins.checks.pending, 0)

    def test_sasl_failure_answers_abort_and_a_raising_check_logs_its_type_only(self):
        log = CapturedLog(self)

        def check(name, password):
            raise ValueError(f"cannot check {password}")

        factory = self.factory(check=check)
        proto = self.connect(factory, "192.0.2.1")
        self.handshake(proto)
        proto.transport.clear()
        proto.dataReceived(sasl_plain("carol", "hunter2-secret"))
        [reply] = PtTlsFramer().feed(proto.transport.value())[:1]
        self.assertEqual((reply.type, SaslResultMessage.parse(reply.value).result), (T.SASL_RESULT, SaslResult.ABORT))
        text = "\n".join(formatEvent(e) + repr(e.get("log_failure")) for e in log.events)
        self.assertNotIn("hunter2-secret", text)
        self.assertIn("checking the SASL password of 'carol' failed: ValueError", text)

    def test_locked_out_logins_are_counted_not_each_logged(self):
        log = CapturedLog(self)
        factory = self.factory()
        factory.logins.throttle.max_failures_per_source = 2
        for n in range(12):
            proto = self.connect(factory, "192.0.2.66")
            self.handshake(proto)
            proto.dataReceived(sasl_plain(f"user{n}", "guess"))
            if self.check.waiting:
                self.check.waiting.pop().callback(False)
            self.close(proto)
        self.assertEqual(len(self.check.calls), 2)
        failures = [line for line in log.lines("nac.pt-tls") if line.startswith("SASL PLAIN authentication of")]
        self.assertEqual(failures, [f"SASL PLAIN authentication of 'user{n}' from 192.0.2.66[40000] failed"
                                    for n in range(2)])
        # sessions that never authenticated close without a line of their own at info
        closing = [e for e in log.events if e.get("log_namespace") == "nac.pt-tls"
                   and formatEvent(e).startswith("closing") and e["log_level"] is not LogLevel.debug]
        self.assertEqual(closing, [])
        self.assertEqual([line for line in log.lines("nac.auth")],
                         ["locking out 192.0.2.66 for 300 s: 2 failed logins"])
        self.assertEqual([line for line in log.lines("nac.pt-tls") if "refused" in line],
                         ["refused a SASL PLAIN login from 192.0.2.66: locked out after failed logins "
                          "([auth] lockout)"])

    def test_protocol_errors_before_authentication_are_counted_not_each_logged(self):
        log = CapturedLog(self)
        factory = self.factory()
        bad_version = VersionRequest(2, 3, 2).to_message(0).build()
        for _ in range(30):
            proto = self.connect(factory, "192.0.2.66")
            proto.handshakeCompleted()
            proto.dataReceived(bad_version)
            # each still gets the protocol's own answer
            [reply] = PtTlsFramer().feed(proto.transport.value())
            self.assertEqual(PtTlsError.parse(reply.value).code, PtTlsErrorCode.VERSION_NOT_SUPPORTED)
            self.close(proto)
        self.clock.advance(10.0)
        self.assertEqual(log.lines("nac.pt-tls"), [
            "closed an unauthenticated PT-TLS connection from 192.0.2.66: PT-TLS Version Not Supported: client "
            "offers PT-TLS versions 2..3, "
            "this server supports 1 (sending VERSION_NOT_SUPPORTED)",
            "closed 29 unauthenticated PT-TLS connections from 192.0.2.66 in the last 10 s: PT-TLS errors "
            "before authentication (the PT-TLS Error sent each time)"])

    def test_a_session_has_info_lines_once_it_authenticated(self):
        log = CapturedLog(self)
        factory = self.factory(sasl_enabled=False)
        factory.core = type("Core", (), {"open_connection": lambda self, peer, limits: type(
            "Conn", (), {"connection_id": 7, "finished": True})()})()
        silent = self.connect(factory, "192.0.2.66")
        silent.handshakeCompleted()
        self.close(silent)
        self.assertEqual(log.lines("nac.pt-tls"), [])
        proto = self.connect(factory, "192.0.2.1")
        self.handshake(proto)
        self.assertEqual(log.lines("nac.pt-tls")[0], "accepting PT-TLS stream from 192.0.2.1[40000]")
