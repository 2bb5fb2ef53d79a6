"""Re-assessment on an open PT-TLS connection: after a decision the server
waits ``[pt-tls] reassess_interval`` (or the group's ``session_timeout``),
sends a PB-TNC SRETRY batch (RFC 5793 §3.2) and runs a new assessment, a
session of its own; a client that closed is never asked, one that does not
answer is closed.

The real PT-TLS protocol factory, TNCS core, Test IMV and nac's own PB-TNC
client role with the Test collector, on a Clock with string transports:
every byte the server writes is read back through the PT-TLS framing."""

from __future__ import annotations

import itertools
import struct
from types import SimpleNamespace

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from imvs.test import TestImv
from nac.ifimv import ActionRecommendation as A, EvaluationResult as E
from nac.client.collectors.test import TestImc
from nac.client.pb_client import PbTncClient
from nac.interfaces import IHandshakeRetry, IPolicyStore
from nac.pb.messages import AccessRecommendation
from nac.tnccs.assessment import GroupEnforcement, PeerInfo
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvManager
from nac.tnccs.pb_server import PbState
from tests.posture import VECTORS, ScriptedImv
from tests.test_pt_tls_preauth import Transport
from tests.vectors import records
from transports.pt_tls.service import PtTlsFactory, reassessment_interval
from transports.pt_tls.wire import PtTlsFramer, PtTlsMessage, PtTlsMessageType as T, VersionRequest

STRONGSWAN_SESSION = VECTORS / "strongswan-pt-tls" / "carol-sasl-open-ports-denied.jsonl"
IDLE = 30.0
INTERVAL = 60.0


def pb_batch_header(batch_type: int, length: int, *, from_server: bool) -> bytes:
    """RFC 5793 §4.1, laid out here from the figure: Version (8 bits) = 2,
    D (1 bit) then Reserved (19 bits), B-Type (4 bits), Batch Length (32)."""
    first_word = 2 << 24 | (1 << 23 if from_server else 0) | batch_type
    return struct.pack(">II", first_word, length)


SRETRY = 5
#: an SRETRY carries no message: the header is the whole batch
SRETRY_BATCH = pb_batch_header(SRETRY, 8, from_server=True)


@implementer(IPolicyStore)
class Sessions:
    """What the core records, each session with an id of its own."""

    def __init__(self):
        self._ids = itertools.count(1)
        self.started: list[int] = []
        self.decided: list[tuple[int, str]] = []
        self.aborted: list[int] = []

    def session_started(self, peer, connection_id):
        self.started.append(next(self._ids))
        return defer.succeed(self.started[-1])

    def session_decided(self, session_id, decision):
        self.decided.append((session_id, decision.access))
        return defer.succeed(None)

    def add_measurement(self, session_id, imv_name, kind, payload):
        return defer.succeed(1)

    def session_aborted(self, session_id, reason):
        self.aborted.append(session_id)
        return defer.succeed(True)

    def bounded_wait(self, d):
        return d


class Endpoint:
    """One PT-TLS client session of nac's PB-TNC client role, its bytes
    moved by hand: what the server wrote is read through the framing."""

    def __init__(self, testcase, factory, pb: PbTncClient):
        self.tc = testcase
        self.pb = pb
        self.proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 40000))
        self.transport = Transport("192.0.2.1")
        self.proto.makeConnection(self.transport)
        self.framer = PtTlsFramer()
        self.message_ids = itertools.count(0)
        self.proto.handshakeCompleted()
        self.send(T.VERSION_REQUEST, VersionRequest(1, 1, 1).to_message(0).value)
        self.tc.assertTrue(self.proto.authenticated)  # SASL off: the Version Request is all it takes

    def send(self, mtype: int, value: bytes) -> None:
        self.proto.dataReceived(PtTlsMessage(0, mtype, next(self.message_ids), value).build())

    def received(self) -> list[bytes]:
        """The PB-TNC batches the server wrote since the last call."""
        data = self.transport.value()
        self.transport.clear()
        self.framer.receive(data)
        batches = []
        while (message := self.framer.next_message()) is not None:
            if message.type == T.PB_TNC_BATCH:
                batches.append(message.value)
        return batches

    def run(self, first: bytes | None = None):
        """Exchange batches until the client decides (or closes): its steps' outcome."""
        if first is not None:
            self.send(T.PB_TNC_BATCH, first)
        while True:
            batches = self.received()
            self.tc.assertTrue(batches, "the server sent nothing")
            for batch in batches:
                step = self.pb.receive_batch(batch)
                if step.batch is not None:
                    self.send(T.PB_TNC_BATCH, step.batch)
                if step.decided or step.close:
                    return step


class ReassessmentTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.store = Sessions()

    def factory(self, *, interval: float = INTERVAL, group_timeout=None, rounds: int = 0,
                max_connections: int = 10) -> PtTlsFactory:
        core = TnccsCore(ImvManager([TestImv(options={"rounds": rounds})]), store=self.store)
        if group_timeout is not None:
            policy = SimpleNamespace(enforcement=GroupEnforcement(groups=("lab",), session_timeout=group_timeout))
            core.policy_source = SimpleNamespace(resolve=lambda endpoint: defer.succeed(policy))
        self.core = core
        factory = PtTlsFactory(core, max_message_size=2 * 1024 * 1024, max_connections=max_connections,
                               handshake_timeout=10.0,
                               negotiation_timeout=30.0, idle_timeout=IDLE, sasl_enabled=False, clock=self.clock,
                               reassess_interval=interval)
        self.addCleanup(factory.stop_reports)
        return factory

    def endpoint(self, factory, *, stay: bool = True, command="allow", retry_command="isolate") -> Endpoint:
        imc = TestImc(command, retry_command=retry_command)
        return Endpoint(self, factory, PbTncClient([imc], max_batch_size=65536, max_message_size=65000, stay=stay))

    def decide_first(self, endpoint: Endpoint):
        step = endpoint.run(endpoint.pb.start())
        self.assertTrue(step.decided)
        self.assertEqual(step.outcome.recommendation, AccessRecommendation.ALLOWED)
        return step

    # -- the schedule ---------------------------------------------------------------------

    def test_sretry_after_the_interval_then_a_second_assessment_of_its_own(self):
        factory = self.factory()
        ep = self.endpoint(factory)
        self.decide_first(ep)
        tnccs = ep.proto.tnccs
        verifyObject(IHandshakeRetry, tnccs)
        self.assertEqual(tnccs.state, PbState.DECIDED)
        # nothing for the whole interval, though it is longer than idle_timeout
        self.clock.advance(INTERVAL - 0.5)
        self.assertEqual((ep.received(), ep.transport.aborted, ep.transport.disconnecting), ([], False, False))
        self.clock.advance(0.5)
        (batch,) = ep.received()
        self.assertEqual(batch, SRETRY_BATCH)
        self.assertEqual(tnccs.state, PbState.CLIENT_WORKING)
        # the client answers with fresh measurements (its retry command): a new decision
        step = ep.pb.receive_batch(batch)
        self.assertEqual(step.batch[:8], pb_batch_header(1, len(step.batch), from_server=False))  # CDATA
        second = ep.run(step.batch)
        self.assertTrue(second.decided)
        self.assertEqual(second.outcome.recommendation, AccessRecommendation.QUARANTINED)
        self.assertEqual(tnccs.decision.access, "isolate")
        # two sessions, each with its decision
        self.assertEqual(self.store.started, [1, 2])
        self.assertEqual(self.store.decided, [(1, "allowed"), (2, "isolate")])
        self.assertEqual(self.store.aborted, [])
        # and so on, one interval after each decision
        self.clock.advance(INTERVAL)
        self.assertEqual(ep.received(), [SRETRY_BATCH])
        self.assertEqual(factory.active, 1)

    def test_the_groups_session_timeout_replaces_the_interval(self):
        ep = self.endpoint(self.factory(interval=0.0, group_timeout=5))
        self.decide_first(ep)
        self.clock.advance(5.0)
        self.assertEqual(ep.received(), [SRETRY_BATCH])

    def test_a_groups_zero_turns_it_off(self):
        ep = self.endpoint(self.factory(interval=INTERVAL, group_timeout=0))
        self.decide_first(ep)
        self.clock.advance(IDLE)
        self.assertEqual(ep.received(), [])
        self.assertTrue(ep.transport.aborted)  # idle as without re-assessment

    def test_off_by_default_the_idle_timeout_closes_a_client_that_stays(self):
        ep = self.endpoint(self.factory(interval=0.0))
        self.decide_first(ep)
        self.clock.advance(IDLE)
        self.assertEqual(ep.received(), [])
        self.assertTrue(ep.transport.aborted)
        self.assertEqual(self.store.started, [1])

    def test_reassessment_interval(self):
        group = SimpleNamespace(enforcement=GroupEnforcement(session_timeout=7))
        self.assertEqual(reassessment_interval(group, 60.0), 7.0)
        self.assertEqual(reassessment_interval(SimpleNamespace(enforcement=GroupEnforcement()), 60.0), 60.0)
        self.assertEqual(reassessment_interval(SimpleNamespace(enforcement=None), 60.0), 60.0)

    def test_a_connection_waiting_for_its_turn_counts_against_max_connections(self):
        factory = self.factory(max_connections=1)
        self.decide_first(self.endpoint(factory))
        self.clock.advance(INTERVAL / 2)
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "192.0.2.2", 40001)))

    # -- clients that leave or do not answer ------------------------------------------------

    def test_a_client_that_closes_after_its_decision_is_sent_nothing_and_leaves_no_state(self):
        factory = self.factory()
        ep = self.endpoint(factory, stay=False)
        step = ep.run(ep.pb.start())
        self.assertTrue(step.close)
        self.assertTrue(ep.transport.disconnecting)  # the server closes once the CLOSE came
        ep.proto.connectionLost()
        self.clock.advance(INTERVAL * 3)
        self.assertEqual(ep.received(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual((factory.active, self.core.connections), (0, {}))
        self.assertEqual(self.store.started, [1])

    def test_strongswans_client_closing_after_its_decision_works_as_before(self):
        # the PB-TNC batches strongSwan's pt-tls-client sent in a captured session (CDATA, CDATA, CLOSE),
        # to an IMV asking once, as test_tnccs_mutual replays them
        sent = [bytes.fromhex(r["hex"]) for r in records(str(STRONGSWAN_SESSION.relative_to(VECTORS)))
                if r["layer"] == "pb-tnc" and r["dir"] == "c2s"]
        asked = []

        def on_message(connection, message):
            if not asked:
                asked.append(message)
                connection.send_message(0, 1, message.body, collector_id=message.collector_id, exclusive=True)
            else:
                connection.provide_recommendation(A.ALLOW, E.COMPLIANT)

        factory = self.factory()
        factory.core = self.core = TnccsCore(ImvManager([ScriptedImv("os", [(0, 1)], on_message)]),
                                             store=self.store)
        ep = Endpoint(self, factory, None)
        answers = []
        for batch in sent:
            ep.send(T.PB_TNC_BATCH, batch)
            answers.append([b[:8] for b in ep.received()])
        self.assertEqual([[a[3] for a in each] for each in answers], [[2], [3], []])  # SDATA, RESULT, nothing
        self.assertEqual(sent[-1][:8], pb_batch_header(6, 8, from_server=False))  # its CLOSE
        self.assertTrue(ep.transport.disconnecting)
        ep.proto.connectionLost()
        self.clock.advance(INTERVAL * 2)
        self.assertEqual((ep.received(), self.clock.getDelayedCalls()), ([], []))
        self.assertEqual((factory.active, self.core.connections, self.store.started), (0, {}, [1]))

    def test_a_client_that_ignores_the_sretry_is_closed_within_the_idle_timeout(self):
        factory = self.factory()
        ep = self.endpoint(factory)
        self.decide_first(ep)
        self.clock.advance(INTERVAL)
        self.assertEqual(ep.received(), [SRETRY_BATCH])
        self.clock.advance(IDLE - 0.5)
        self.assertFalse(ep.transport.aborted)
        self.clock.advance(0.5)
        self.assertTrue(ep.transport.aborted)
        ep.proto.connectionLost()
        self.assertEqual((factory.active, self.core.connections), (0, {}))
        # the decided session stays as it was; no new one was begun
        self.assertEqual((self.store.started, self.store.aborted), ([1], []))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_client_that_stalls_in_the_new_assessment_is_closed_and_the_session_aborted(self):
        factory = self.factory(rounds=1)  # the IMV asks once more before it decides
        ep = self.endpoint(factory)
        self.decide_first(ep)
        self.clock.advance(INTERVAL)
        (sretry,) = ep.received()
        step = ep.pb.receive_batch(sretry)
        ep.send(T.PB_TNC_BATCH, step.batch)  # the new CDATA: a second session begins
        (sdata,) = ep.received()             # the IMV asks again and the server waits for the client
        self.assertEqual(sdata[:8], pb_batch_header(2, len(sdata), from_server=True))
        self.clock.advance(IDLE)
        self.assertTrue(ep.transport.aborted)
        ep.proto.connectionLost()
        self.assertEqual((self.store.started, self.store.aborted), ([1, 2], [2]))

    def test_a_client_retry_of_its_own_while_waiting_starts_the_schedule_over(self):
        ep = self.endpoint(self.factory())
        self.decide_first(ep)
        self.clock.advance(IDLE)
        # CRETRY (RFC 5793 §3.2, allowed in Decided): with no measurement, decided at once
        ep.send(T.PB_TNC_BATCH, pb_batch_header(4, 8, from_server=False))
        (result,) = ep.received()
        self.assertEqual(result[:8], pb_batch_header(3, len(result), from_server=True))  # RESULT
        self.clock.advance(INTERVAL - IDLE)
        self.assertEqual(ep.received(), [])
        self.clock.advance(IDLE)
        self.assertEqual(ep.received(), [SRETRY_BATCH])


class HandshakeRetryTests(unittest.TestCase):
    """The TNCS side alone (sans-IO): an SRETRY only once decided."""

    def test_no_retry_before_a_decision_or_after_the_end(self):
        core = TnccsCore(ImvManager([TestImv()]))
        conn = core.open_connection(PeerInfo("test", "192.0.2.1"))
        results = []
        conn.retry_handshake("too early").addCallback(results.append)
        conn.abort("gone")
        conn.retry_handshake("too late").addCallback(results.append)
        self.assertEqual(results, [None, None])
