"""The TNCS core's PB-TNC server: real batches (captured from strongSwan's
client and built with the codec) through the real state machine and IMV
dispatch, with small scripted IMVs."""

from __future__ import annotations

import struct

from twisted.internet import defer
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from nac.ifimv import ActionRecommendation as A, ConnectionState, EvaluationResult as E
from nac.interfaces import IImvConnection, IPolicyStore, ITnccsConnection
from nac.pb.batch import BatchType, Direction, PbBatch
from nac.pb.messages import (
    AccessRecommendation,
    AssessmentResult,
    PbAccessRecommendation,
    PbAssessmentResult,
    PbError,
    PbErrorCode,
    PbExperimental,
    PbLanguagePreference,
    PbPa,
    PbReasonString,
    UnknownPbMessage,
)
from nac.tnccs.assessment import TransportLimits
from tests.posture import VECTORS, CoreHarness, ScriptedImv
from tests.vectors import records

DENIED = VECTORS / "strongswan-pt-tls" / "carol-sasl-open-ports-denied.jsonl"

IETF, OS, FIREWALL, SWIMA = 0, 1, 5, 9


def pa_message(*attributes: tuple[int, int, bytes], message_id: int = 1, noskip=False) -> bytes:
    """A PA-TNC message (RFC 5792 §4.1) from (vendor, type, value) triples."""
    out = struct.pack(">B3xI", 1, message_id)
    for vendor, atype, value in attributes:
        out += struct.pack(">II I", (0x80 if noskip else 0) << 24 | vendor, atype, 12 + len(value)) + value
    return out


def attribute_names(message) -> list[str]:
    return [type(a).__name__ for a in message.pa.attributes]


def client_batch(btype=BatchType.CDATA, *messages, direction=Direction.TO_SERVER) -> bytes:
    return PbBatch(btype, direction, tuple(messages)).build()


def pa(subtype, body, collector=1, validator=0xFFFF, exclusive=False) -> PbPa:
    return PbPa(pa_vendor=IETF, pa_subtype=subtype, collector_id=collector, validator_id=validator,
                body=body, exclusive=exclusive)


class Harness(CoreHarness):
    """A PB-TNC connection of the core."""

    def parse(self, batch: bytes) -> PbBatch:
        parsed = PbBatch.parse(batch)
        self.tc.assertEqual(parsed.direction, Direction.TO_CLIENT)
        return parsed


def result_of(batch: PbBatch):
    kinds = {type(m): m for m in batch.messages}
    return kinds[PbAssessmentResult].result, kinds[PbAccessRecommendation].recommendation


class CapturedSessionTests(unittest.TestCase):
    """strongSwan's pt-tls-client batches from a denied session, replayed."""

    def setUp(self):
        self.client = [bytes.fromhex(r["hex"]) for r in records(str(DENIED.relative_to(VECTORS)))
                       if r["layer"] == "pb-tnc" and r["dir"] == "c2s"]

    def make_imvs(self):
        def os_message(conn, msg):
            names = attribute_names(msg)
            if "InstalledPackages" in names:
                conn.provide_recommendation(A.ALLOW, E.COMPLIANT)
            elif conn.state is None:
                conn.state = "asked"
                # Attribute Request (IETF 1) for Installed Packages (IETF 7)
                conn.send_message(IETF, OS, pa_message((0, 1, struct.pack(">II", 0, 7))),
                                  collector_id=msg.collector_id, exclusive=True)

        def scanner_message(conn, msg):
            if "PortFilter" in attribute_names(msg):
                conn.provide_recommendation(A.NO_ACCESS, E.NONCOMPLIANT_MINOR)
                conn.set_reason("Open server ports were detected", "en")

        def swima_message(conn, msg):
            conn.provide_recommendation(A.ALLOW, E.COMPLIANT)

        return [ScriptedImv("os", [(IETF, OS)], os_message),
                ScriptedImv("scanner", [(IETF, FIREWALL)], scanner_message),
                ScriptedImv("swima", [(IETF, SWIMA)], swima_message)]

    def test_flow_reaches_result_and_close(self):
        imvs = self.make_imvs()
        h = Harness(self, imvs)
        verifyObject(ITnccsConnection, h.conn)

        # PB-TNC has no turn without a batch
        self.assertIsNone(h.conn.receive_acknowledgement())
        out = h.send(self.client[0])
        (sdata,) = out.parsed
        self.assertEqual(sdata.batch_type, BatchType.SDATA)
        (request,) = [m for m in sdata.messages if isinstance(m, PbPa)]
        self.assertEqual((request.pa_subtype, request.validator_id, request.exclusive), (OS, 1, True))
        self.assertEqual(h.conn.preferred_language, "en")
        self.assertIsNone(out.decision)

        out = h.send(self.client[1])
        (result,) = out.parsed
        self.assertEqual(result.batch_type, BatchType.RESULT)
        self.assertEqual(result_of(result), (AssessmentResult.NON_COMPLIANT_MINOR, AccessRecommendation.DENIED))
        reasons = [m for m in result.messages if isinstance(m, PbReasonString)]
        self.assertEqual([(r.reason, r.language) for r in reasons], [("Open server ports were detected", "en")])
        self.assertEqual(out.decision.access, "denied")
        self.assertEqual([v.imv_name for v in out.decision.imv_results], ["os", "scanner", "swima"])

        out = h.send(self.client[2])  # CLOSE
        self.assertEqual((out.batches, out.close), ([], True))
        self.assertTrue(h.conn.finished)
        self.assertEqual(imvs[0].states, [ConnectionState.CREATE, ConnectionState.HANDSHAKE,
                                          ConnectionState.ACCESS_NONE, ConnectionState.DELETE])
        self.assertNotIn(h.conn.connection_id, h.core.connections)

    def test_imv_receives_parsed_attributes_of_the_captured_client(self):
        imvs = self.make_imvs()
        h = Harness(self, imvs)
        h.send(self.client[0])
        names = attribute_names(imvs[0].received[0])
        for expected in ("ProductInformation", "StringVersion", "NumericVersion", "OperationalStatus",
                         "ForwardingEnabled", "FactoryDefaultPasswordEnabled", "DeviceId"):
            self.assertIn(expected, names)
        self.assertEqual(attribute_names(imvs[1].received[0]), ["PortFilter"])


class BoundedRoundsTests(unittest.TestCase):
    def nagging_imv(self, name="nag", subtype=OS, solicit=None):
        def ask(conn):
            conn.send_message(IETF, subtype, pa_message((0, 1, struct.pack(">II", 0, 7))))
        return ScriptedImv(name, [(IETF, subtype)], on_batch_ending=ask, on_solicit=solicit)

    def test_endpoint_without_collector_gets_the_no_result_recommendation_in_one_round(self):
        def no_result(conn):
            conn.provide_recommendation(A.ISOLATE, E.DONT_KNOW)
        h = Harness(self, [self.nagging_imv(solicit=no_result)])
        out = h.send(client_batch(BatchType.CDATA, PbLanguagePreference(language="en")))
        self.assertEqual(out.parsed[0].batch_type, BatchType.SDATA)
        # the endpoint has no collector: its CDATA carries no PA message
        out = h.send(client_batch(BatchType.CDATA))
        (result,) = out.parsed
        self.assertEqual(result.batch_type, BatchType.RESULT)
        self.assertEqual(result_of(result), (AssessmentResult.DONT_KNOW, AccessRecommendation.QUARANTINED))
        self.assertEqual(out.decision.access, "isolate")

    def test_imv_that_never_decides_is_cut_off_after_max_rounds(self):
        h = Harness(self, [self.nagging_imv()], max_rounds=3)
        body = pa_message((0, 2, b"\x00\x00\x00\x00\x00Debian"))
        batches = []
        for _ in range(10):
            out = h.send(client_batch(BatchType.CDATA, pa(OS, body)))
            batches.append(out.parsed[0].batch_type)
            if out.decision:
                break
        self.assertEqual(batches, [BatchType.SDATA] * 3 + [BatchType.RESULT])
        self.assertEqual(out.decision.access, "denied")
        (verdict,) = out.decision.imv_results
        self.assertTrue(verdict.forced)
        self.assertEqual(verdict.recommendation, A.NO_RECOMMENDATION)

    def test_no_imvs_means_access_denied_at_once(self):
        h = Harness(self, [])
        out = h.send(client_batch(BatchType.CDATA, PbLanguagePreference(language="en")))
        self.assertEqual(result_of(out.parsed[0]), (AssessmentResult.DONT_KNOW, AccessRecommendation.DENIED))


class DispatchTests(unittest.TestCase):
    def test_exclusive_message_goes_to_the_named_imv_only(self):
        a = ScriptedImv("a", [(IETF, OS)])
        b = ScriptedImv("b", [(IETF, OS)])
        h = Harness(self, [a, b])
        body = pa_message((0, 2, b"\x00\x00\x00\x00\x00Debian"))
        h.send(client_batch(BatchType.CDATA, pa(OS, body, validator=2, exclusive=True)))
        self.assertEqual((len(a.received), len(b.received)), (0, 1))
        c, d = ScriptedImv("c", [(IETF, OS)]), ScriptedImv("d", [(IETF, OS)])
        h2 = Harness(self, [c, d])
        h2.send(client_batch(BatchType.CDATA, pa(OS, body)))
        self.assertEqual((len(c.received), len(d.received)), (1, 1))

    def test_wildcard_subscription(self):
        every = ScriptedImv("all", [(0xFFFFFF, 0xFFFFFFFF)])
        h = Harness(self, [every])
        h.send(client_batch(BatchType.CDATA, pa(FIREWALL, pa_message())))
        self.assertEqual(len(every.received), 1)

    def test_malformed_pa_message_gets_a_pa_tnc_error_attribute(self):
        imv = ScriptedImv("os", [(IETF, OS)])
        h = Harness(self, [imv])
        out = h.send(client_batch(BatchType.CDATA, pa(OS, b"\x02\x00\x00\x00\x00\x00\x00\x01")))
        self.assertEqual(imv.received, [])
        (reply,) = [m for m in out.parsed[0].messages if isinstance(m, PbPa)]
        from nac.pa import PaMessage
        (err,) = PaMessage.parse(reply.body).attributes
        self.assertEqual(type(err).__name__, "PaTncErrorAttribute")
        self.assertEqual((reply.collector_id, reply.validator_id), (1, 1))

    def test_unsupported_noskip_attribute_gets_attribute_type_not_supported(self):
        imv = ScriptedImv("os", [(IETF, OS)])
        h = Harness(self, [imv])
        body = pa_message((0x00ABCD, 77, b"??"), noskip=True)
        out = h.send(client_batch(BatchType.CDATA, pa(OS, body)))
        self.assertEqual(imv.received, [])
        (reply,) = [m for m in out.parsed[0].messages if isinstance(m, PbPa)]
        from nac.pa import PaMessage
        (err,) = PaMessage.parse(reply.body).attributes
        self.assertEqual(type(err).__name__, "PaTncErrorAttribute")

    def test_failing_imv_counts_as_no_access_and_the_connection_goes_on(self):
        def boom(conn, msg):
            raise RuntimeError("bug in IMV")
        bad = ScriptedImv("bad", [(IETF, OS)], boom)
        good = ScriptedImv("good", [(IETF, OS)], lambda c, m: c.provide_recommendation(A.ALLOW, E.COMPLIANT))
        h = Harness(self, [bad, good])
        out = h.send(client_batch(BatchType.CDATA, pa(OS, pa_message())))
        self.assertEqual(out.decision.access, "denied")
        self.assertEqual(result_of(out.parsed[0]), (AssessmentResult.ERROR, AccessRecommendation.DENIED))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_asynchronous_imv(self):
        pending = defer.Deferred()

        def later(conn, msg):
            return pending.addCallback(lambda _: conn.provide_recommendation(A.ALLOW, E.COMPLIANT))
        imv = ScriptedImv("slow", [(IETF, OS)], later)
        h = Harness(self, [imv])
        outcomes = []
        h.conn.receive_batch(client_batch(BatchType.CDATA, pa(OS, pa_message()))).addCallback(outcomes.append)
        self.assertEqual(outcomes, [])
        pending.callback(None)
        self.assertEqual(outcomes[0].decision.access, "allowed")

    def test_imv_connection_interface(self):
        seen = []
        imv = ScriptedImv("x", [(IETF, OS)], lambda c, m: seen.append(c))
        h = Harness(self, [imv])
        h.send(client_batch(BatchType.CDATA, pa(OS, pa_message())))
        verifyObject(IImvConnection, seen[0])
        self.assertEqual(seen[0].peer.identity, "carol")

    def test_queued_messages_beyond_the_batch_size_go_in_later_batches(self):
        big = pa_message((0, 0, b"x" * 3000))

        def flood(conn):
            if conn.state is None:
                conn.state = True
                for _ in range(5):
                    conn.send_message(IETF, OS, big)
        imv = ScriptedImv("flood", [(IETF, OS)], on_batch_ending=flood)
        h = Harness(self, [imv], limits=TransportLimits(max_batch_size=8000, max_message_size=7000))
        sizes = []
        out = h.send(client_batch(BatchType.CDATA, pa(OS, pa_message())))
        while out.parsed[0].batch_type == BatchType.SDATA and len(sizes) < 10:
            sizes.append(sum(isinstance(m, PbPa) for m in out.parsed[0].messages))
            self.assertLessEqual(len(out.batches[0]), 8000)
            out = h.send(client_batch(BatchType.CDATA, pa(OS, pa_message())))
        self.assertEqual(sum(sizes), 5)
        self.assertGreater(len(sizes), 1)


class ProtocolErrorTests(unittest.TestCase):
    """Each violation is answered with the PB-Error RFC 5793 prescribes, in a CLOSE batch."""

    def close_error(self, data: bytes, *, first: bytes | None = None) -> PbError:
        h = Harness(self, [ScriptedImv("os", [(IETF, OS)])])
        if first is not None:
            h.send(first)
        out = h.send(data)
        self.assertTrue(out.close)
        (batch,) = out.parsed
        self.assertEqual(batch.batch_type, BatchType.CLOSE)
        (err,) = batch.messages
        self.assertTrue(err.fatal)
        self.assertTrue(h.conn.finished)
        # nothing more is processed
        self.assertEqual(h.send(client_batch()).batches, [])
        return err

    def test_wrong_version(self):
        data = bytearray(client_batch())
        data[0] = 1
        err = self.close_error(bytes(data))
        self.assertEqual((err.code, err.bad_version), (PbErrorCode.VERSION_NOT_SUPPORTED, 1))

    def test_batch_from_a_server(self):
        err = self.close_error(client_batch(BatchType.CDATA, direction=Direction.TO_CLIENT))
        self.assertEqual((err.code, err.offset), (PbErrorCode.INVALID_PARAMETER, 1))

    def test_unexpected_batch_type(self):
        err = self.close_error(client_batch(BatchType.SDATA))
        self.assertEqual(err.code, PbErrorCode.UNEXPECTED_BATCH_TYPE)

    def test_cdata_after_result(self):
        h_first = client_batch(BatchType.CDATA)
        err = self.close_error(client_batch(BatchType.CDATA), first=h_first)
        # the first empty CDATA was answered with RESULT (the IMV has no recommendation)
        self.assertEqual(err.code, PbErrorCode.UNEXPECTED_BATCH_TYPE)

    def test_length_mismatch(self):
        data = client_batch(BatchType.CDATA, PbLanguagePreference(language="en")) + b"\x00"
        err = self.close_error(data)
        self.assertEqual(err.code, PbErrorCode.INVALID_PARAMETER)

    def test_unknown_noskip_message(self):
        msg = UnknownPbMessage(vendor=0x00ABCD, type=9, value=b"", noskip=True)
        err = self.close_error(client_batch(BatchType.CDATA, PbLanguagePreference(language="en"), msg))
        self.assertEqual((err.code, err.offset), (PbErrorCode.UNSUPPORTED_MANDATORY_MESSAGE, 8 + 31))

    def test_noskip_experimental(self):
        err = self.close_error(client_batch(BatchType.CDATA, PbExperimental(body=b"", noskip=True)))
        self.assertEqual(err.code, PbErrorCode.UNSUPPORTED_MANDATORY_MESSAGE)

    def test_result_message_from_client(self):
        err = self.close_error(client_batch(BatchType.CDATA, PbReasonString(reason="hi", language="en")))
        self.assertEqual((err.code, err.offset), (PbErrorCode.INVALID_PARAMETER, 8))

    def test_unknown_skippable_message_is_ignored(self):
        h = Harness(self, [ScriptedImv("os", [(IETF, OS)])])
        out = h.send(client_batch(BatchType.CDATA, UnknownPbMessage(vendor=0x00ABCD, type=9, value=b"zz", noskip=False)))
        self.assertEqual(out.parsed[0].batch_type, BatchType.SDATA)
        self.assertFalse(out.close)

    def test_client_close_with_fatal_error(self):
        h = Harness(self, [])
        h.send(client_batch(BatchType.CDATA, PbLanguagePreference(language="en")))
        out = h.send(client_batch(BatchType.CLOSE, PbError(True, 0, PbErrorCode.LOCAL_ERROR, offset=0)))
        self.assertTrue(out.close)
        self.assertTrue(h.conn.finished)

    def test_abort_notifies_imvs(self):
        imv = ScriptedImv("os", [(IETF, OS)])
        h = Harness(self, [imv])
        h.send(client_batch(BatchType.CDATA, pa(OS, pa_message())))
        h.conn.abort("transport closed")
        self.assertEqual(imv.states[-1], ConnectionState.DELETE)
        self.assertNotIn(h.conn.connection_id, h.core.connections)


@implementer(IPolicyStore)
class RecordingStore:
    """Keeps what the core asks to record (the database store is tested on
    its own in test_db)."""

    def __init__(self, fail=False, committing=None):
        self.fail = fail
        self.committing = committing
        """A Deferred the decisions' writes wait for (None: committed at once)."""
        self.started, self.decided, self.aborted = [], [], []

    def session_started(self, peer, connection_id):
        if self.fail:
            return defer.fail(RuntimeError("database is down"))
        self.started.append((peer, connection_id))
        return defer.succeed(42)

    def session_decided(self, session_id, decision):
        self.decided.append((session_id, decision))
        if self.committing is None:
            return defer.succeed(None)
        d = defer.Deferred()
        self.committing.addCallback(lambda _: d.callback(None))
        return d

    def session_aborted(self, session_id, reason):
        self.aborted.append((session_id, reason))
        return defer.succeed(True)

    def bounded_wait(self, d):
        """Unbounded here: PolicyStore's bound is tested in test_db."""
        return d.addBoth(lambda _: None)


class StoreTests(unittest.TestCase):
    def allow_imv(self):
        return ScriptedImv("os", [(IETF, OS)], lambda c, m: c.provide_recommendation(A.ALLOW, E.COMPLIANT))

    def test_session_and_decision_are_recorded(self):
        store = RecordingStore()
        verifyObject(IPolicyStore, store)
        h = Harness(self, [self.allow_imv()], store=store)
        out = h.send(client_batch(BatchType.CDATA, pa(OS, pa_message())))
        self.assertEqual(store.started, [(h.conn.peer, h.conn.connection_id)])
        self.assertEqual(store.decided, [(42, out.decision)])

    def test_the_decision_is_held_until_the_store_recorded_it(self):
        committing = defer.Deferred()
        store = RecordingStore(committing=committing)
        h = Harness(self, [self.allow_imv()], store=store)
        outcomes = []
        h.conn.receive_batch(client_batch(BatchType.CDATA, pa(OS, pa_message()))).addCallback(outcomes.append)
        self.assertEqual((len(store.decided), outcomes), (1, []))
        committing.callback(None)
        [out] = outcomes
        self.assertEqual(out.decision, store.decided[0][1])

    def test_an_aborted_assessment_is_recorded_as_such_a_decided_one_is_not(self):
        store = RecordingStore()
        h = Harness(self, [ScriptedImv("os", [(IETF, OS)], lambda c, m: None)], store=store)
        h.send(client_batch(BatchType.CDATA, pa(OS, pa_message())))
        h.conn.abort("PT-TLS connection from 127.0.0.1 closed")
        self.assertEqual(store.aborted, [(42, "PT-TLS connection from 127.0.0.1 closed")])
        decided = RecordingStore()
        h = Harness(self, [self.allow_imv()], store=decided)
        h.send(client_batch(BatchType.CDATA, pa(OS, pa_message())))
        h.conn.abort("PT-TLS connection from 127.0.0.1 closed")
        self.assertEqual((len(decided.decided), decided.aborted), (1, []))

    def test_a_failing_store_does_not_stop_the_assessment(self):
        h = Harness(self, [self.allow_imv()], store=RecordingStore(fail=True))
        out = h.send(client_batch(BatchType.CDATA, pa(OS, pa_message())))
        self.assertEqual(out.decision.access, "allowed")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
