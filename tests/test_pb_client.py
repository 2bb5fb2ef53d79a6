"""The sans-IO PB-TNC client: driven with the server batches strongSwan's PDP
sent in the captured sessions, it answers as strongSwan's client did and
reads the result; every protocol violation of a server ends in a CLOSE with
the right PB-Error; and back to back with nac's own TNCS core it reaches
RESULT and CLOSE, segmented attributes included."""

from __future__ import annotations

from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.exceptions import Invalid

from nac.client.imc import ANY_IMV_ID, IImc
from nac.client.pb_client import AssessmentOutcome, PbState, PbTncClient
from nac.ifimv import ActionRecommendation as A, ConnectionState, EvaluationResult as E
from nac.interfaces import IImv
from nac.pa import (
    MaxAttributeSizeRequest,
    NextSegment,
    PaMessage,
    PaTncErrorCode,
    Reassembler,
    SegmentEnvelope,
    UnknownAttribute,
)
from nac.pa.ietf import (
    AssessmentResult as AssessmentResultAttribute,
    AssessmentResultCode,
    AttributeRequest,
    IetfAttributeType,
    InstalledPackages,
    PaTncErrorAttribute,
    RemediationInstructions,
)
from nac.pb import (
    AccessRecommendation,
    AssessmentResult,
    BatchType as B,
    Direction,
    PbAccessRecommendation,
    PbAssessmentResult,
    PbBatch,
    PbError,
    PbErrorCode,
    PbPa,
    PbReasonString,
    PbRemediationParameters,
    UnknownPbMessage,
)
from nac.tnccs.assessment import PeerInfo, TransportLimits
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvManager
from tests.posture import tmpdir
from tests.test_collectors import Host, attribute_bytes, capture_host, captured_session

PT_TLS_BATCH = 2 * 1024 * 1024 - 16
PT_TLS_PA = PT_TLS_BATCH - 32
CLOSE = PbBatch(B.CLOSE, Direction.TO_SERVER).build()
SESSIONS = ("carol-sasl-open-ports-denied", "dave-cert-denied", "carol-sasl-second-assessment",
            "carol-sasl-allowed")


def server_batch(btype, *messages, direction=Direction.TO_CLIENT) -> bytes:
    return PbBatch(btype, direction, tuple(messages)).build()


def pa_shape(batch: PbBatch):
    """What each PB-PA of a batch is: header fields and attribute types."""
    return [(m.pa_subtype, m.collector_id, m.validator_id, m.exclusive,
             [(a.attr_vendor, a.attr_type) for a in PaMessage.parse(m.body).attributes])
            for m in batch.messages if isinstance(m, PbPa)]


def error_of(data: bytes) -> PbError:
    batch = PbBatch.parse(data)
    assert batch.batch_type is B.CLOSE and batch.direction is Direction.TO_SERVER
    [error] = batch.messages
    return error


@implementer(IImc)
class RecordingImc:
    """A collector that records what it is told and sends what it is given."""

    def __init__(self, name="Test", subscriptions=((0, 1),), first=b"", reply=None):
        self.name = name
        self.subscriptions = subscriptions
        self.first = first
        self.reply = reply
        self.states, self.received, self.batch_endings = [], [], 0

    def notify_connection_change(self, connection, state):
        self.states.append(state)

    def begin_handshake(self, connection):
        if self.first:
            connection.send_message(0, self.subscriptions[0][1], self.first)

    def receive_message(self, connection, message):
        self.received.append(message)
        if self.reply is not None:
            connection.send_message(0, message.subtype, self.reply, validator_id=message.validator_id,
                                    exclusive=True)

    def batch_ending(self, connection):
        self.batch_endings += 1


def pa_body(*attributes, message_id=1) -> bytes:
    return PaMessage(message_id, tuple(attributes)).build()


class CapturedSessionTests(unittest.TestCase):
    """The server batches of the strongswan-pt-tls captures, fed to the client
    running collectors over fixture files of the capture machine."""

    def replay(self, name):
        records = captured_session(name)
        client = PbTncClient(capture_host(tmpdir(self, "nac-pb-client-")).imcs(), max_batch_size=PT_TLS_BATCH,
                             max_message_size=PT_TLS_PA)
        ours = [client.start()]
        step = None
        for direction, data in records[1:]:
            if direction == "s2c":
                step = client.receive_batch(data)
                ours.append(step.batch)
        theirs = [data for direction, data in records if direction == "c2s"]
        return client, ours, theirs, step

    def test_replies_have_the_shape_of_strongswans(self):
        for name in SESSIONS:
            client, ours, theirs, step = self.replay(name)
            self.assertEqual(len(ours), len(theirs), name)
            for mine, captured in zip(ours, theirs):
                a, b = PbBatch.parse(mine), PbBatch.parse(captured)
                self.assertEqual((a.batch_type, a.direction), (b.batch_type, b.direction), name)
                self.assertEqual([type(m) for m in a.messages], [type(m) for m in b.messages], name)
                self.assertEqual(pa_shape(a), pa_shape(b), name)
            self.assertEqual(ours[-1], CLOSE)
            self.assertTrue(step.close)
            self.assertIs(client.state, PbState.END)

    def test_first_batch_carries_strongswans_measurements(self):
        client, ours, theirs, _ = self.replay("carol-sasl-open-ports-denied")
        mine, captured = PbBatch.parse(ours[0]), PbBatch.parse(theirs[0])
        self.assertEqual(mine.messages[0], captured.messages[0])  # Language-Preference 'en'
        for a, b in zip(mine.messages[1:], captured.messages[1:]):
            self.assertEqual(attribute_bytes(a.body), attribute_bytes(b.body))
        # the installed packages of the second batch too
        self.assertEqual(attribute_bytes(PbBatch.parse(ours[1]).messages[0].body),
                         attribute_bytes(PbBatch.parse(theirs[1]).messages[0].body))

    def test_denied_sessions_end_in_access_denied_for_open_ports(self):
        for name in ("carol-sasl-open-ports-denied", "dave-cert-denied", "carol-sasl-second-assessment"):
            client, _, _, step = self.replay(name)
            outcome = step.outcome
            self.assertEqual(outcome, client.outcome)
            self.assertTrue(outcome.completed)
            self.assertIsNone(outcome.error)
            self.assertEqual(outcome.recommendation, AccessRecommendation.DENIED)
            self.assertEqual(outcome.assessment, AssessmentResult.NON_COMPLIANT_MINOR)
            self.assertEqual([(r.text, r.language) for r in outcome.reasons],
                             [("Open server ports were detected", "en")])
            self.assertEqual(outcome.recommendation_label, "Access Denied")
            by_imc = {r.imc_name: r for r in outcome.imv_results}
            self.assertEqual({k: (r.imc_id, r.imv_id, r.result_label) for k, r in by_imc.items()},
                             {"Scanner": (2, 2, "non-compliant minor"), "OS": (1, 1, "compliant"),
                              "SWIMA": (3, 3, "compliant")})
            [instructions] = by_imc["Scanner"].remediation
            self.assertIn("<item>tcp/271</item>", instructions)

    def test_allowed_session(self):
        _, _, _, step = self.replay("carol-sasl-allowed")
        outcome = step.outcome
        self.assertEqual((outcome.recommendation, outcome.assessment),
                         (AccessRecommendation.ALLOWED, AssessmentResult.COMPLIANT))
        self.assertEqual(outcome.reasons, ())
        data = outcome.to_json()
        self.assertEqual(set(data), {"recommendation", "assessment", "reasons", "remediation", "imv_results"})
        self.assertEqual((data["recommendation"], data["assessment"]), ("Access Allowed", "compliant"))
        self.assertIn({"imc_id": 2, "imc": "Scanner", "imv_id": 2, "assessment": "don't know",
                       "remediation": []}, data["imv_results"])

    def test_imcs_see_the_connection_states(self):
        imc = RecordingImc(subscriptions=((0, 5),))
        client = PbTncClient([imc], max_batch_size=PT_TLS_BATCH, max_message_size=PT_TLS_PA)
        client.start()
        for direction, data in captured_session("carol-sasl-open-ports-denied"):
            if direction == "s2c":
                client.receive_batch(data)
        S = ConnectionState
        self.assertEqual(imc.states, [S.CREATE, S.HANDSHAKE, S.ACCESS_NONE, S.DELETE])
        self.assertEqual([m.validator_id for m in imc.received], [2])
        self.assertEqual(imc.batch_endings, 1)  # after SDATA; not after RESULT


class ClientProtocolTests(unittest.TestCase):
    def client(self, imcs=(), **kw) -> PbTncClient:
        kw.setdefault("max_batch_size", 65522)
        kw.setdefault("max_message_size", 65490)
        c = PbTncClient(list(imcs), **kw)
        self.first = c.start()
        return c

    def test_a_collector_missing_part_of_the_interface_is_refused_every_time(self):
        @implementer(IImc)
        class Incomplete:
            name = "Incomplete"
            subscriptions = ((0, 1),)

        incomplete = Incomplete()
        for _ in range(2):
            with self.assertRaises(Invalid):
                self.client([incomplete])
        shared = RecordingImc()
        for _ in range(2):  # checked once, then taken as it is
            self.assertIs(self.client([shared]).state, PbState.SERVER_WORKING)

    def test_first_batch_without_collectors_is_language_preference_only(self):
        c = self.client(language="de")
        batch = PbBatch.parse(self.first)
        self.assertEqual((batch.batch_type, batch.direction), (B.CDATA, Direction.TO_SERVER))
        self.assertEqual([m.language for m in batch.messages], ["de"])
        self.assertIs(c.state, PbState.SERVER_WORKING)
        self.assertRaises(RuntimeError, c.start)

    def test_empty_sdata_gets_an_empty_cdata(self):
        c = self.client([RecordingImc()])
        step = c.receive_batch(server_batch(B.SDATA))
        self.assertEqual(step.batch, PbBatch(B.CDATA, Direction.TO_SERVER).build())
        self.assertFalse(step.close)
        self.assertIs(c.state, PbState.SERVER_WORKING)

    def test_imc_replies_go_in_the_next_cdata(self):
        imc = RecordingImc(reply=pa_body(message_id=9))
        c = self.client([imc])
        request = PbPa(pa_vendor=0, pa_subtype=1, collector_id=0xFFFF, validator_id=4, body=pa_body())
        step = c.receive_batch(server_batch(B.SDATA, request))
        [reply] = PbBatch.parse(step.batch).messages
        self.assertEqual((reply.collector_id, reply.validator_id, reply.exclusive, reply.noskip),
                         (1, 4, True, True))
        self.assertEqual(imc.received[0].pa, PaMessage(1))

    def test_pb_pa_goes_to_subscribed_imcs_and_exclusive_to_one(self):
        os1, os2, fw = RecordingImc("A"), RecordingImc("B"), RecordingImc("C", subscriptions=((0, 5),))
        c = self.client([os1, os2, fw])
        both = PbPa(pa_vendor=0, pa_subtype=1, collector_id=0xFFFF, validator_id=1, body=pa_body())
        only_b = PbPa(pa_vendor=0, pa_subtype=1, collector_id=2, validator_id=1, body=pa_body(), exclusive=True)
        nobody = PbPa(pa_vendor=0, pa_subtype=7, collector_id=0xFFFF, validator_id=1, body=pa_body())
        c.receive_batch(server_batch(B.SDATA, both, only_b, nobody))
        self.assertEqual((len(os1.received), len(os2.received), len(fw.received)), (1, 2, 0))

    def test_wildcard_subscription(self):
        anything = RecordingImc(subscriptions=((0xFFFFFF, 0xFFFFFFFF),))
        c = self.client([anything])
        c.receive_batch(server_batch(B.SDATA, PbPa(pa_vendor=0x5597, pa_subtype=3, collector_id=0xFFFF,
                                                   validator_id=1, body=pa_body())))
        self.assertEqual(len(anything.received), 1)

    def test_malformed_pa_message_is_answered_with_a_pa_tnc_error(self):
        imc = RecordingImc()
        c = self.client([imc])
        bad = PbPa(pa_vendor=0, pa_subtype=1, collector_id=0xFFFF, validator_id=3, body=b"\x02\0\0\0\0\0\0\1")
        step = c.receive_batch(server_batch(B.SDATA, bad))
        [reply] = PbBatch.parse(step.batch).messages
        self.assertEqual((reply.collector_id, reply.validator_id, reply.exclusive), (1, 3, True))
        [error] = PaMessage.parse(reply.body).attributes
        self.assertIsInstance(error, PaTncErrorAttribute)
        self.assertEqual(error.error_code, PaTncErrorCode.VERSION_NOT_SUPPORTED)
        self.assertEqual(imc.received, [])

    def test_unsupported_noskip_attribute_is_refused(self):
        c = self.client([RecordingImc()])
        body = PaMessage(5, (UnknownAttribute(0x123456, 77, b"?", noskip=True),)).build()
        step = c.receive_batch(server_batch(B.SDATA, PbPa(pa_vendor=0, pa_subtype=1, collector_id=0xFFFF,
                                                          validator_id=2, body=body)))
        [reply] = PbBatch.parse(step.batch).messages
        [error] = PaMessage.parse(reply.body).attributes
        self.assertEqual((error.error_code, error.unsupported_vendor, error.unsupported_type),
                         (PaTncErrorCode.ATTRIBUTE_TYPE_NOT_SUPPORTED, 0x123456, 77))

    def test_result_is_answered_with_close(self):
        imc = RecordingImc()
        c = self.client([imc])
        step = c.receive_batch(server_batch(
            B.RESULT,
            PbPa(pa_vendor=0, pa_subtype=1, collector_id=0xFFFF, validator_id=1,
                 body=pa_body(AssessmentResultAttribute(AssessmentResultCode.NON_COMPLIANT_MAJOR),
                              RemediationInstructions.for_uri("https://fix.example/os"))),
            PbAssessmentResult(AssessmentResult.NON_COMPLIANT_MAJOR),
            PbAccessRecommendation(AccessRecommendation.QUARANTINED),
            PbReasonString("Old kernel", "en"),
            PbRemediationParameters.for_uri("https://fix.example/"),
            PbRemediationParameters.for_string("Update the kernel", "en")))
        self.assertEqual(step.batch, CLOSE)
        self.assertTrue(step.close)
        outcome = step.outcome
        self.assertEqual((outcome.recommendation_label, outcome.assessment_label),
                         ("Quarantined", "non-compliant major"))
        data = outcome.to_json()
        self.assertEqual(data["recommendation"], "Quarantined")
        self.assertEqual(data["reasons"], [{"text": "Old kernel", "language": "en"}])
        self.assertEqual(data["remediation"], [{"uri": "https://fix.example/"},
                                               {"text": "Update the kernel", "language": "en"}])
        self.assertEqual(data["imv_results"], [{"imc_id": 1, "imc": "Test", "imv_id": 1,
                                                "assessment": "non-compliant major",
                                                "remediation": ["https://fix.example/os"]}])
        self.assertEqual(imc.states[-2:], [ConnectionState.ACCESS_ISOLATED, ConnectionState.DELETE])
        # nothing more once closed
        self.assertEqual(c.receive_batch(server_batch(B.SDATA)).batch, None)

    def test_result_without_recommendation_counts_as_denied(self):
        c = self.client()
        step = c.receive_batch(server_batch(B.RESULT, PbAssessmentResult(AssessmentResult.COMPLIANT)))
        self.assertEqual(step.outcome.recommendation, AccessRecommendation.DENIED)

    def test_server_close_without_result(self):
        c = self.client()
        step = c.receive_batch(server_batch(B.CLOSE))
        self.assertEqual((step.batch, step.close), (None, True))
        self.assertFalse(step.outcome.completed)
        self.assertIn("without a result", step.outcome.error)

    def test_server_close_with_fatal_pb_error(self):
        c = self.client()
        error = PbError(fatal=True, vendor=0, code=PbErrorCode.LOCAL_ERROR)
        step = c.receive_batch(server_batch(B.CLOSE, error))
        self.assertTrue(step.close)
        self.assertIn("Local Error", step.outcome.error)

    def test_fatal_pb_error_in_sdata_ends_the_connection(self):
        c = self.client()
        step = c.receive_batch(server_batch(B.SDATA, PbError(fatal=True, vendor=0,
                                                             code=PbErrorCode.INVALID_PARAMETER, offset=8)))
        self.assertEqual(step.batch, CLOSE)
        self.assertIn("Invalid Parameter", step.outcome.error)

    def test_non_fatal_pb_error_is_only_logged(self):
        c = self.client()
        step = c.receive_batch(server_batch(B.SDATA, PbError(fatal=False, vendor=0,
                                                             code=PbErrorCode.LOCAL_ERROR)))
        self.assertFalse(step.close)
        self.assertIsNone(c.outcome.error)

    def assertClosedWith(self, step, code, offset=None):
        error = error_of(step.batch)
        self.assertTrue(error.fatal)
        self.assertEqual(error.code, code)
        if offset is not None:
            self.assertEqual(error.offset, offset)
        self.assertTrue(step.close)
        self.assertFalse(step.outcome.completed)
        self.assertTrue(step.outcome.error.startswith("invalid PB-TNC batch from the server"))

    def test_garbage_is_closed_with_invalid_parameter(self):
        self.assertClosedWith(self.client().receive_batch(b"\x02\x80\x00\x02\x00\x00\x00\x20"),
                              PbErrorCode.INVALID_PARAMETER, 4)

    def test_wrong_version_is_closed_with_version_not_supported(self):
        data = bytearray(server_batch(B.SDATA))
        data[0] = 1
        self.assertClosedWith(self.client().receive_batch(bytes(data)), PbErrorCode.VERSION_NOT_SUPPORTED)

    def test_batch_from_a_client_is_refused(self):
        self.assertClosedWith(self.client().receive_batch(server_batch(B.SDATA, direction=Direction.TO_SERVER)),
                              PbErrorCode.INVALID_PARAMETER, 1)

    def test_unexpected_batch_type(self):
        c = self.client()
        self.assertClosedWith(c.receive_batch(server_batch(B.CDATA)), PbErrorCode.UNEXPECTED_BATCH_TYPE)
        self.assertIs(c.state, PbState.END)

    def test_unknown_noskip_message(self):
        msg = UnknownPbMessage(vendor=0x9999, type=1, value=b"x", noskip=True)
        self.assertClosedWith(self.client().receive_batch(server_batch(B.SDATA, msg)),
                              PbErrorCode.UNSUPPORTED_MANDATORY_MESSAGE, 8)

    def test_result_messages_outside_result_batch(self):
        msg = PbAccessRecommendation(AccessRecommendation.ALLOWED)
        self.assertClosedWith(self.client().receive_batch(server_batch(B.SDATA, msg)),
                              PbErrorCode.INVALID_PARAMETER, 8)

    def test_batch_over_the_size_limit(self):
        c = self.client(max_batch_size=100)
        big = PbPa(pa_vendor=0, pa_subtype=1, collector_id=0xFFFF, validator_id=1, body=b"\1" + b"\0" * 200)
        self.assertClosedWith(c.receive_batch(server_batch(B.SDATA, big)), PbErrorCode.INVALID_PARAMETER, 4)

    def test_client_gives_up_after_max_rounds(self):
        c = self.client(max_rounds=100)
        for _ in range(99):
            self.assertFalse(c.receive_batch(server_batch(B.SDATA)).close)
        step = c.receive_batch(server_batch(B.SDATA))
        error = error_of(step.batch)
        self.assertEqual(error.code, PbErrorCode.LOCAL_ERROR)
        self.assertIn("100 server batches", step.outcome.error)

    def test_handshake_retry_starts_over(self):
        imc = RecordingImc(first=pa_body(message_id=3))
        c = self.client([imc])
        step = c.receive_batch(server_batch(B.SRETRY))
        [again] = PbBatch.parse(step.batch).messages
        self.assertEqual(again.body, pa_body(message_id=3))
        self.assertEqual(imc.states.count(ConnectionState.HANDSHAKE), 2)

    def test_a_client_that_stays_answers_the_servers_retry_after_its_decision(self):
        imc = RecordingImc(first=pa_body(message_id=3))
        c = self.client([imc], stay=True)
        result = server_batch(B.RESULT, PbAssessmentResult(AssessmentResult.COMPLIANT),
                              PbAccessRecommendation(AccessRecommendation.ALLOWED))
        step = c.receive_batch(result)
        # nothing sent: the client waits in Decided for the server
        self.assertEqual((step.batch, step.close, step.decided), (None, False, True))
        self.assertEqual(step.outcome.recommendation_label, "Access Allowed")
        self.assertEqual((c.state, c.finished), (PbState.DECIDED, False))
        # the SRETRY: a new handshake with fresh measurements, the last result forgotten
        step = c.receive_batch(server_batch(B.SRETRY))
        batch = PbBatch.parse(step.batch)
        self.assertEqual((batch.batch_type, [m.body for m in batch.messages]), (B.CDATA, [pa_body(message_id=3)]))
        self.assertIsNone(c.outcome.recommendation)
        self.assertEqual(imc.states.count(ConnectionState.HANDSHAKE), 2)
        step = c.receive_batch(server_batch(B.RESULT, PbAssessmentResult(AssessmentResult.NON_COMPLIANT_MINOR),
                                            PbAccessRecommendation(AccessRecommendation.QUARANTINED)))
        self.assertTrue(step.decided)
        self.assertEqual(step.outcome.recommendation_label, "Quarantined")
        # the client ends the connection when it wants
        self.assertEqual(c.close(), CLOSE)
        self.assertTrue(c.finished)
        self.assertEqual(imc.states[-1], ConnectionState.DELETE)

    def test_a_client_that_stays_takes_the_servers_close_after_a_decision(self):
        c = self.client(stay=True)
        c.receive_batch(server_batch(B.RESULT, PbAccessRecommendation(AccessRecommendation.ALLOWED)))
        step = c.receive_batch(server_batch(B.CLOSE))
        self.assertEqual((step.batch, step.close, step.outcome.recommendation_label, step.outcome.error),
                         (None, True, "Access Allowed", None))

    def test_queued_messages_beyond_a_batch_wait_for_the_next(self):
        imc = RecordingImc(first=pa_body(message_id=1) + b"\0" * 300)
        other = RecordingImc("Other", first=pa_body(message_id=2) + b"\0" * 300)
        c = PbTncClient([imc, other], max_batch_size=8 + 24 + 8 + 300 + 100, max_message_size=1000)
        first = PbBatch.parse(c.start())
        self.assertEqual([m.collector_id for m in first.messages if isinstance(m, PbPa)], [1])
        second = PbBatch.parse(c.receive_batch(server_batch(B.SDATA)).batch)
        self.assertEqual([m.collector_id for m in second.messages], [2])

    def test_message_over_the_pa_limit_is_dropped(self):
        imc = RecordingImc(first=pa_body() + b"\0" * 100)
        c = PbTncClient([imc], max_batch_size=1000, max_message_size=50)
        self.assertEqual(len(PbBatch.parse(c.start()).messages), 1)  # Language-Preference only

    def test_failing_imc_does_not_stop_the_others(self):
        class Broken(RecordingImc):
            def begin_handshake(self, connection):
                raise RuntimeError("boom")
        c = PbTncClient([Broken("Broken"), RecordingImc(first=pa_body())],
                        max_batch_size=1000, max_message_size=900)
        batch = PbBatch.parse(c.start())
        self.assertEqual([m.collector_id for m in batch.messages if isinstance(m, PbPa)], [2])
        self.flushLoggedErrors(RuntimeError)

    def test_abort(self):
        c = self.client()
        outcome = c.abort("connection lost")
        self.assertEqual(outcome, AssessmentOutcome(error="connection lost"))
        self.assertTrue(c.finished)


# -- back to back with nac's TNCS core ----------------------------------------------------------


@implementer(IImv)
class PackagesImv:
    """An IMV that asks the OS collector for its installed packages in small
    segments, reassembles them, and decides on what it got."""

    name = "packages"
    subscriptions = ((0, 1),)

    def __init__(self, max_segment=2000, forbidden="telnet"):
        self.max_segment = max_segment
        self.forbidden = forbidden
        self.packages = None
        self.segments = 0

    def notify_connection_change(self, connection, state):
        if state == ConnectionState.CREATE:
            connection.state = {"segments": Reassembler(), "decided": False}

    def receive_message(self, connection, message):
        replies = []
        for attribute in message.pa.attributes:
            if isinstance(attribute, SegmentEnvelope):
                self.segments += 1
                whole = connection.state["segments"].add(attribute)
                if whole is None:
                    replies.append(NextSegment(attribute.base_attribute_id))
                else:
                    self.packages = whole
            elif isinstance(attribute, InstalledPackages):
                self.packages = attribute
        if self.packages is None and not replies:
            replies = [MaxAttributeSizeRequest(0xFFFFFFFF, self.max_segment),
                       AttributeRequest(((0, IetfAttributeType.INSTALLED_PACKAGES),))]
        if replies:
            connection.send_message(0, 1, PaMessage(7, tuple(replies)).build(),
                                    collector_id=message.collector_id, exclusive=True)
        elif self.packages is not None and not connection.state["decided"]:
            connection.state["decided"] = True
            bad = any(name == self.forbidden for name, _ in self.packages.packages)
            result = AssessmentResultCode.NON_COMPLIANT_MAJOR if bad else AssessmentResultCode.COMPLIANT
            connection.send_message(0, 1, PaMessage(8, (AssessmentResultAttribute(result),)).build(),
                                    collector_id=message.collector_id, exclusive=True)
            if bad:
                connection.provide_recommendation(A.ISOLATE, E.NONCOMPLIANT_MAJOR)
                connection.set_reason(f"{self.forbidden} is installed", "en")
                connection.add_remediation(f"remove {self.forbidden}", "en")
            else:
                connection.provide_recommendation(A.ALLOW, E.COMPLIANT)

    def batch_ending(self, connection):
        return None

    def solicit_recommendation(self, connection):
        connection.provide_recommendation(A.NO_RECOMMENDATION, E.DONT_KNOW)


class BackToBackTests(unittest.TestCase):
    def exchange(self, client: PbTncClient, imvs, limits=None):
        core = TnccsCore(ImvManager(imvs))
        conn = core.open_connection(PeerInfo("test", "127.0.0.1", identity="carol"), limits or TransportLimits())
        data, rounds, step = client.start(), 0, None
        while True:
            rounds += 1
            outcome = self.successResultOf(conn.receive_batch(data))
            if outcome.close:
                self.assertEqual(outcome.batches, [])
                return core, conn, step, rounds
            [data] = outcome.batches
            step = client.receive_batch(data)
            if step.batch is None:
                return core, conn, step, rounds
            data = step.batch

    def packages(self, n, extra=()):
        return [(f"lib{i:04d}", f"{i}.{i % 10}-1+deb12u{i % 4}") for i in range(n)] + list(extra)

    def test_segmented_inventory_reaches_result_and_close(self):
        host = Host(tmpdir(self, "nac-pb-client-"), self.packages(300))
        imv = PackagesImv(max_segment=1000)
        client = PbTncClient(host.imcs(), max_batch_size=65522, max_message_size=65490)
        core, conn, step, rounds = self.exchange(client, [imv], TransportLimits(65522, 65490))
        self.assertGreater(imv.segments, 5)
        self.assertEqual(imv.packages, host.os_imc().installed_packages())
        self.assertTrue(conn.finished)
        self.assertEqual(conn.decision.recommendation, A.ALLOW)
        self.assertEqual(core.connections, {})
        outcome = step.outcome
        self.assertEqual((outcome.recommendation, outcome.assessment),
                         (AccessRecommendation.ALLOWED, AssessmentResult.COMPLIANT))
        self.assertEqual([(r.imc_name, r.imv_id, r.result_label) for r in outcome.imv_results],
                         [("OS", 1, "compliant")])
        self.assertEqual(rounds, imv.segments + 2)

    def test_isolation_with_reason_and_remediation(self):
        host = Host(tmpdir(self, "nac-pb-client-"), self.packages(20, [("telnet", "0.17+2.4-2")]))
        client = PbTncClient(host.imcs(), max_batch_size=65522, max_message_size=65490)
        _, conn, step, _ = self.exchange(client, [PackagesImv()])
        outcome = step.outcome
        self.assertEqual(conn.decision.access, "isolate")
        self.assertEqual(outcome.recommendation, AccessRecommendation.QUARANTINED)
        self.assertEqual(outcome.assessment, AssessmentResult.NON_COMPLIANT_MAJOR)
        self.assertEqual([(r.text, r.language) for r in outcome.reasons], [("telnet is installed", "en")])
        self.assertEqual([(r.text, r.language) for r in outcome.remediation], [("remove telnet", "en")])

    def test_server_without_imvs_denies_at_once(self):
        client = PbTncClient(Host(tmpdir(self, "nac-pb-client-"), []).imcs(), max_batch_size=65522, max_message_size=65490)
        _, conn, step, rounds = self.exchange(client, [])
        self.assertEqual(rounds, 2)
        self.assertEqual(step.outcome.recommendation, AccessRecommendation.DENIED)
        self.assertEqual(step.outcome.assessment, AssessmentResult.DONT_KNOW)

    def test_client_without_collectors_gets_no_recommendation(self):
        client = PbTncClient([], max_batch_size=65522, max_message_size=65490)
        _, _, step, _ = self.exchange(client, [PackagesImv()])
        self.assertEqual(step.outcome.recommendation, AccessRecommendation.DENIED)

    def test_exclusive_first_messages_reach_any_imv(self):
        imc = RecordingImc(first=pa_body())
        client = PbTncClient([imc], max_batch_size=65522, max_message_size=65490)
        first = PbBatch.parse(client.start())
        [pa] = [m for m in first.messages if isinstance(m, PbPa)]
        self.assertEqual((pa.validator_id, pa.exclusive), (ANY_IMV_ID, False))
