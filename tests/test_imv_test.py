"""The ITA Test IMV through the real TNCS core, fed by nac's client running
its test collector (and by hand-built batches of what strongSwan's imc-test
sends): every command and its verdict, extra measurement rounds with
Dummies both ways, handshake retries within their bound and beyond it,
silent and unknown collectors, the measurement in the policy store, the
options and their documentation."""

from __future__ import annotations

import configparser
import importlib
import struct
from pathlib import Path

import sqlalchemy as sa
from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from imvs.test import TestImv
from nac import config
from nac.client.collectors import make_collectors
from nac.client.collectors.test import TestImc
from nac.client.imc import IImc
from nac.client.pb_client import PbTncClient
from nac.db import models as m
from nac.ifimv import ActionRecommendation as A
from nac.ifimv import EvaluationResult as E
from nac.interfaces import IImv
from nac.pa import PaMessage, PaVendor
from nac.pa.ietf import AssessmentResult
from nac.pa.ita import ItaCommand, ItaDummy, ItaSubtype
from nac.pb.batch import BatchType, Direction, PbBatch
from nac.pb.messages import PbAccessRecommendation, PbAssessmentResult, PbPa, PbReasonString
from nac.tnccs.imv_manager import load_imv
from tests.posture import ETC, CoreHarness, ImvHarness, PolicyStoreMixin
from tests.test_db import PostgresBackend, SqliteBackend
from tests.test_imv_os import check_documented

ITA, TEST = PaVendor.ITA_HSR, ItaSubtype.TEST
REPO = Path(__file__).resolve().parents[1]


def commands(result) -> list[str]:
    """The ITA Commands the server sent to the test collector, in order."""
    return [a.text for a in result.sent(TEST, ItaCommand)]


class TestImvFlowTests(ImvHarness, unittest.TestCase):
    """nac's client with its test collector against the core."""

    @defer.inlineCallbacks
    def verdict(self, command, *, imv_options=None, **imc):
        result = yield self.assess([TestImc(command, **imc)], [TestImv(imv_options or {})])
        return result, result.verdict("test")

    @defer.inlineCallbacks
    def test_each_command_gets_its_verdict(self):
        expected = {
            "allow": ("allowed", A.ALLOW, E.COMPLIANT, ""),
            "isolate": ("isolate", A.ISOLATE, E.NONCOMPLIANT_MINOR,
                        "The test collector did not send the command 'allow'"),
            "block": ("denied", A.NO_ACCESS, E.NONCOMPLIANT_MAJOR,
                      "The test collector did not send the command 'allow'"),
            "none": ("denied", A.NO_RECOMMENDATION, E.DONT_KNOW, ""),
            "launch the missiles": ("denied", A.NO_RECOMMENDATION, E.ERROR, ""),
        }
        for command, (access, rec, ev, reason) in expected.items():
            result, verdict = yield self.verdict(command)
            self.assertEqual((result.decision.access, verdict.recommendation, verdict.evaluation, verdict.reason),
                             (access, rec, ev, reason), command)
            # one round, and the collector got its assessment
            self.assertEqual(result.rounds, 1)
            [assessment] = result.outcome.imv_results
            self.assertEqual((assessment.imc_name, assessment.result), ("Test", int(ev)))

    @defer.inlineCallbacks
    def test_german_reason_for_a_german_client(self):
        result = yield self.assess([TestImc("block")], [TestImv()], language="de")
        self.assertEqual([(r.text, r.language) for r in result.outcome.reasons],
                         [("Der Test-Kollektor hat nicht das Kommando 'allow' gesendet", "de")])

    @defer.inlineCallbacks
    def test_extra_rounds_carry_dummies_both_ways(self):
        seen = []
        imc = TestImc("isolate", dummy_size=0)
        original = imc.reply_attributes

        def spy(connection, message, attributes):
            seen.append([(type(a).__name__, getattr(a, "size", None)) for a in attributes])
            return original(connection, message, attributes)

        imc.reply_attributes = spy
        result = yield self.assess([imc], [TestImv({"rounds": 2, "dummy_size": 3000})])
        self.assertEqual(commands(result), ["repeat", "repeat"])
        self.assertEqual([a.size for a in result.sent(TEST, ItaDummy)], [3000, 3000])
        # the collector answered each Dummy with one of the same size, then got its verdict
        self.assertEqual(seen[:2], [[("ItaDummy", 3000), ("ItaCommand", None)]] * 2)
        self.assertEqual(result.rounds, 3)
        self.assertEqual(result.verdict("test").recommendation, A.ISOLATE)

    @defer.inlineCallbacks
    def test_rounds_are_bounded_by_the_core(self):
        result = yield run_with_core_rounds(self, TestImc("allow"), TestImv({"rounds": 100}), max_rounds=3)
        # three repeats went out; after the third answer the core solicits (its fourth
        # repeat is dropped) and the IMV decides on the last command
        self.assertEqual(commands(result), ["repeat"] * 3)
        self.assertEqual(result.rounds, 4)
        self.assertEqual(result.verdict("test").recommendation, A.ALLOW)

    @defer.inlineCallbacks
    def test_retry_then_allow(self):
        result, verdict = yield self.verdict("retry", retry_command="allow")
        self.assertEqual(commands(result), ["retry"])
        self.assertEqual((result.decision.access, verdict.recommendation), ("allowed", A.ALLOW))
        self.assertEqual(result.rounds, 2)

    @defer.inlineCallbacks
    def test_retry_beyond_the_bound_gets_no_result(self):
        # the collector keeps asking: one retry is granted, the second decides
        result, verdict = yield self.verdict("retry")
        self.assertEqual(commands(result), ["retry"])
        self.assertEqual((verdict.recommendation, verdict.evaluation, verdict.reason),
                         (A.NO_RECOMMENDATION, E.DONT_KNOW, ""))
        self.assertEqual(result.decision.access, "denied")
        # with no_result = no-access the reason says why
        result, verdict = yield self.verdict("retry", imv_options={"retries": 2, "no_result": "no-access"})
        self.assertEqual(commands(result), ["retry", "retry"])
        self.assertEqual((verdict.recommendation, verdict.reason),
                         (A.NO_ACCESS, "The test collector asked for more handshake retries than allowed"))

    @defer.inlineCallbacks
    def test_no_retry_granted(self):
        result, verdict = yield self.verdict("retry", retry_command="allow", imv_options={"retries": 0})
        self.assertEqual(commands(result), [])
        self.assertEqual(verdict.recommendation, A.NO_RECOMMENDATION)

    @defer.inlineCallbacks
    def test_retries_are_counted_across_the_retried_handshakes(self):
        # the core restarts the IMVs' handshake at each retry; the count must survive it
        imc = TestImc("retry")
        result = yield self.assess([imc], [TestImv({"retries": 3})])
        self.assertEqual(commands(result), ["retry"] * 3)
        self.assertEqual(result.verdict("test").recommendation, A.NO_RECOMMENDATION)

    @defer.inlineCallbacks
    def test_no_test_collector_gets_no_result_within_bounded_rounds(self):
        result = yield self.assess([], [TestImv({"no_result": "isolate"})])
        verdict = result.verdict("test")
        self.assertEqual((verdict.recommendation, verdict.evaluation, verdict.reason),
                         (A.ISOLATE, E.DONT_KNOW, "No command was received from the test collector"))
        self.assertLessEqual(result.rounds, 2)


@defer.inlineCallbacks
def run_with_core_rounds(testcase, imc, imv, *, max_rounds):
    from tests.posture import run_assessment

    result = yield run_assessment(testcase, [imc], [imv], max_rounds=max_rounds)
    testcase.assertTrue(result.outcome.completed, result.outcome.error)
    return result


class PbHarness(CoreHarness):
    def parse(self, batch: bytes) -> PbBatch:
        parsed = PbBatch.parse(batch)
        self.tc.assertEqual(parsed.direction, Direction.TO_CLIENT)
        return parsed


def ita_test_message(*attributes: tuple[int, bytes]) -> bytes:
    """A PA-TNC message of NOSKIP ITA-HSR attributes (type, value), written
    out as strongSwan's imc-test sends them."""
    out = struct.pack(">B3xI", 1, 42)
    for attr_type, value in attributes:
        out += struct.pack(">III", 0x80000000 | ITA, attr_type, 12 + len(value)) + value
    return out


class StrongSwanImcTestTests(unittest.TestCase):
    """What strongSwan's imc-test sends, built by hand, into the core."""

    def cdata(self, body: bytes, btype=BatchType.CDATA) -> bytes:
        return PbBatch(btype, Direction.TO_SERVER, (PbPa(
            pa_vendor=ITA, pa_subtype=TEST, collector_id=1, validator_id=0xFFFF, body=body),)).build()

    def test_dummy_and_command_isolate(self):
        harness = PbHarness(self, [TestImv()])
        out = harness.send(self.cdata(ita_test_message((2, b"\xdd" * 500), (1, b"isolate"))))
        [batch] = out.parsed
        self.assertEqual(batch.batch_type, BatchType.RESULT)
        kinds = {type(m): m for m in batch.messages}
        self.assertEqual((kinds[PbAssessmentResult].result, kinds[PbAccessRecommendation].recommendation),
                         (E.NONCOMPLIANT_MINOR, 3))  # Quarantined
        self.assertIn(PbReasonString, kinds)
        # the Assessment Result attribute goes to the collector that spoke
        [pa] = [m for m in batch.messages if isinstance(m, PbPa)]
        self.assertEqual((pa.pa_vendor, pa.pa_subtype, pa.collector_id, pa.exclusive), (ITA, TEST, 1, True))
        self.assertEqual(PaMessage.parse(pa.body).find(AssessmentResult)[0].result, E.NONCOMPLIANT_MINOR)

    def test_strongswan_collector_repeats_retry_and_is_bounded(self):
        # strongSwan's imc-test answers any message without a result by sending its command
        # again: "retry" twice in one handshake, once granted, then decided
        harness = PbHarness(self, [TestImv()])
        out = harness.send(self.cdata(ita_test_message((1, b"retry"))))
        self.assertEqual(out.parsed[0].batch_type, BatchType.SDATA)
        [pa] = out.parsed[0].messages
        self.assertEqual([a.text for a in PaMessage.parse(pa.body).find(ItaCommand)], ["retry"])
        out = harness.send(self.cdata(ita_test_message((1, b"retry"))))
        self.assertEqual(out.parsed[0].batch_type, BatchType.RESULT)
        self.assertEqual(out.decision.recommendation, A.NO_RECOMMENDATION)

    def test_unknown_attribute_with_noskip_is_refused_not_judged(self):
        harness = PbHarness(self, [TestImv()])
        out = harness.send(self.cdata(ita_test_message((99, b"x"), (1, b"allow"))))
        [batch] = out.parsed
        # a PA-TNC error to the collector, no verdict from this message
        self.assertEqual(batch.batch_type, BatchType.SDATA)


class TestCollectorTests(unittest.TestCase):
    def test_provides_the_imc_interface(self):
        imc = TestImc("allow")
        self.assertTrue(verifyObject(IImc, imc))
        self.assertEqual(tuple(imc.subscriptions), ((ITA, TEST),))

    def test_retry_command_after_a_server_retry(self):
        """A PB-TNC SRETRY starts the collector's handshake again, with its retry command."""
        client = PbTncClient([TestImc("retry", retry_command="allow", dummy_size=5)],
                             max_batch_size=65536, max_message_size=65000)

        def sent(batch: bytes):
            [pa] = [m for m in PbBatch.parse(batch).messages if isinstance(m, PbPa)]
            return [(type(a).__name__, getattr(a, "text", None) or getattr(a, "size", None), a.noskip)
                    for a in PaMessage.parse(pa.body).attributes]

        self.assertEqual(sent(client.start()), [("ItaDummy", 5, True), ("ItaCommand", "retry", True)])
        step = client.receive_batch(PbBatch(BatchType.SRETRY, Direction.TO_CLIENT, ()).build())
        self.assertEqual(sent(step.batch), [("ItaDummy", 5, True), ("ItaCommand", "allow", True)])

    def test_made_by_name_with_settings(self):
        [imc] = make_collectors(["test"], settings={"test": {"command": "block", "dummy_size": 7}})
        self.assertEqual((imc.command, imc.retry_command, imc.dummy_size), ("block", "block", 7))
        with self.assertRaises(ValueError):
            TestImc(dummy_size=-1)


class StoreChecks(PolicyStoreMixin, ImvHarness):
    @defer.inlineCallbacks
    def test_the_command_is_recorded(self):
        yield self.assess([TestImc("isolate", dummy_size=12)], [TestImv({"rounds": 1})])
        [session] = self.db.list_sessions()
        _, [result] = self.db.session_results(session.id)
        self.assertEqual((result.imv_name, result.recommendation, result.evaluation),
                         ("test", A.ISOLATE, E.NONCOMPLIANT_MINOR))
        payloads = self.db.run(lambda s: [r.payload for r in s.scalars(sa.select(m.Measurement))])
        self.assertEqual(payloads, [{"command": "isolate", "rounds": 1, "retries": 0, "dummy_sizes": [12, 12]}])

    @defer.inlineCallbacks
    def test_a_long_command_is_recorded_cut_short(self):
        yield self.assess([TestImc("allow" * 1000)], [TestImv()])
        [payload] = self.db.run(lambda s: [r.payload for r in s.scalars(sa.select(m.Measurement))])
        self.assertEqual(payload["command"], ("allow" * 13)[:64])


class SqliteStoreTests(SqliteBackend, StoreChecks, unittest.TestCase):
    pass


class PostgresStoreTests(PostgresBackend, StoreChecks, unittest.TestCase):
    pass


class TestImvContractTests(unittest.TestCase):
    def test_provides_the_imv_interface(self):
        imv = TestImv()
        self.assertTrue(verifyObject(IImv, imv))
        self.assertEqual(tuple(imv.subscriptions), ((ITA, TEST),))

    def test_sample_configuration_documents_every_option_with_its_default(self):
        check_documented(self, "test", "imvs.test:TestImv", TestImv)
        imv = load_imv("imvs.test:TestImv", config.load(str(ETC)).imv_options)
        self.assertEqual((imv.rounds, imv.retries, imv.dummy_size, imv.policy.no_result),
                         (0, 1, 0, A.NO_RECOMMENDATION))

    def test_options_are_validated(self):
        path = self.mktemp()
        Path(path).write_text("[imv:test]\nrounds = 2\nretries = 0\ndummy_size = 100\nno_result = isolate\n")
        imv = load_imv("imvs.test:TestImv", config.load(path).imv_options)
        self.assertEqual((imv.rounds, imv.retries, imv.dummy_size, imv.policy.no_result),
                         (2, 0, 100, A.ISOLATE))
        Path(path).write_text("[imv:test]\nrounds = many\nretries = 11\nnon_compliant_minor = isolate\n")
        with self.assertRaises(config.ConfigError) as caught:
            load_imv("imvs.test:TestImv", config.load(path).imv_options)
        problems = caught.exception.problems
        self.assertEqual(len(problems), 3)
        self.assertTrue(all(p.startswith(f"{path}: [imv:test] ") for p in problems), problems)

    def test_registered_under_the_entry_point_names(self):
        cfg = configparser.ConfigParser()
        cfg.read(REPO / "setup.cfg")
        entries = dict(line.split(" = ") for line in cfg["options.entry_points"]["nac.imvs"].strip().splitlines())
        for name, cls in (("test", TestImv),):
            module, _, attr = entries[name].partition(":")
            self.assertIs(getattr(importlib.import_module(module), attr), cls)
            self.assertEqual(cls.name, name)
