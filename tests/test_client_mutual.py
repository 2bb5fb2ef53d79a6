"""Mutual PB-TNC, nac's TNC client side: the batches of a server written
byte by byte here (RFC 5793 §4 layouts, tests.test_tnccs_mutual) fed to
the client, which must alternate between its two roles as strongSwan's
client does; and nac's client back to back with nac's own TNCS core, both
sides measuring fixture hosts and judging them with the real OS IMV."""

from __future__ import annotations

import os
from dataclasses import dataclass

from twisted.trial import unittest
from zope.interface import implementer

from imvs.os import OsImv
from nac.client.mutual import MutualPbTncClient, MutualVerdict, load_imvs
from nac.client.pb_client import PbTncClient
from nac.ifimv import ActionRecommendation as A, ConnectionState as C, EvaluationResult as E
from nac.interfaces import IMutualClientFactory
from nac.pb import PbBatch
from nac.tnccs.assessment import PeerInfo, TransportLimits
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvManager
from tests.posture import ScriptedImv, tmpdir
from tests.test_collectors import SWIMA_PACKAGES, Host
from tests.test_tnccs_mutual import (
    ANSWER,
    CDATA,
    CLOSE,
    Collector,
    ENDPOINT_MEASUREMENT,
    NAC_MEASUREMENT,
    OS_SUBTYPE,
    RESULT,
    SDATA,
    UNEXPECTED_BATCH_TYPE,
    VERDICT,
    access_recommendation,
    assessment_result,
    batch,
    language,
    mutual_capability,
    pa_message,
    pb_error,
    pb_pa,
    starts,
)

LIMITS = TransportLimits(max_batch_size=32754, max_message_size=32722)
REPLY = pa_message((0x00ABCD, 3, b"here you are"))


def judging_imv(decides=True):
    """The client's IMV judging the server: allows at its first message."""
    def on_message(connection, msg):
        if decides:
            connection.provide_recommendation(A.ALLOW, E.COMPLIANT)

    return ScriptedImv("os", [(0, OS_SUBTYPE)], on_message)


def client(imv=None, **kw) -> MutualPbTncClient:
    endpoint = Collector(ENDPOINT_MEASUREMENT, {ANSWER: REPLY})
    return MutualPbTncClient([endpoint], [imv or judging_imv()], max_batch_size=LIMITS.max_batch_size,
                             max_message_size=LIMITS.max_message_size, **kw)


# the server's batches
REQUEST = pb_pa(ANSWER, collector=1, validator=1, exclusive=True)
SERVER_FIRST = batch(SDATA, mutual_capability(), REQUEST, from_server=True)
SERVER_CLIENT_FIRST = batch(CDATA, language(), pb_pa(NAC_MEASUREMENT))
SERVER_RESULT = batch(RESULT, assessment_result(0), access_recommendation(1), from_server=True)
CLIENT_RESULT = batch(RESULT, assessment_result(0), access_recommendation(1), from_server=True)
CLIENT_ANSWER = batch(CDATA, pb_pa(REPLY, collector=1, validator=1, exclusive=True))


class AlternationTests(unittest.TestCase):
    def test_the_first_batch_announces_mutual_pb_tnc(self):
        first = client().start()
        self.assertEqual(first, batch(CDATA, mutual_capability(), language(), pb_pa(ENDPOINT_MEASUREMENT)))

    def test_the_server_decides_first(self):
        c = client()
        c.start()
        # the server takes part: this side's TNCS opens its exchange, an empty SDATA
        step = c.receive_batch(SERVER_FIRST)
        self.assertEqual((step.batch, step.close), (batch(SDATA, from_server=True), False))
        self.assertTrue(c.client.peer_mutual)
        # the server's client role answers: this side's client role has its turn
        step = c.receive_batch(SERVER_CLIENT_FIRST)
        self.assertEqual(step.batch, CLIENT_ANSWER)
        # the server decides: this side's TNCS has its turn with its RESULT
        step = c.receive_batch(SERVER_RESULT)
        self.assertEqual(step.batch, CLIENT_RESULT)
        self.assertFalse(step.close)
        # the server's client role closes its exchange: the last batch is this side's CLOSE
        step = c.receive_batch(batch(CLOSE))
        self.assertEqual((step.batch, step.close), (batch(CLOSE), True))
        self.assertTrue(c.finished)
        outcome = step.outcome
        self.assertEqual((outcome.recommendation_label, outcome.assessment_label), ("Access Allowed", "compliant"))
        self.assertIsInstance(outcome.mutual, MutualVerdict)
        self.assertEqual((outcome.mutual.agreed, outcome.mutual.recommendation_label,
                          outcome.mutual.assessment_label, outcome.mutual.error),
                         (True, "Access Allowed", "compliant", None))
        self.assertEqual(outcome.to_json()["mutual"], {
            "agreed": True, "recommendation": "Access Allowed", "assessment": "compliant", "reasons": [],
            "imv_results": [{"imv_id": 1, "imv": "os", "recommendation": "allow", "assessment": "compliant"}]})

    def test_this_side_decides_first(self):
        c = client()
        c.start()
        c.receive_batch(SERVER_FIRST)
        self.assertEqual(c.receive_batch(SERVER_CLIENT_FIRST).batch, CLIENT_ANSWER)
        # the server asks again: this side's TNCS answers first, with its RESULT
        step = c.receive_batch(batch(SDATA, REQUEST, from_server=True))
        self.assertEqual(step.batch, CLIENT_RESULT)
        # the server's client role closes: this side's client role answers the request
        self.assertEqual(c.receive_batch(batch(CLOSE)).batch, CLIENT_ANSWER)
        # alone now, the client role closes after the server's RESULT
        step = c.receive_batch(SERVER_RESULT)
        self.assertEqual((step.batch, step.close), (batch(CLOSE), True))
        self.assertEqual(step.outcome.mutual.recommendation_label, "Access Allowed")

    def test_a_server_without_mutual_pb_tnc(self):
        c = client()
        c.start()
        step = c.receive_batch(batch(SDATA, REQUEST, from_server=True))
        self.assertEqual(step.batch, CLIENT_ANSWER)
        step = c.receive_batch(SERVER_RESULT)
        self.assertEqual((step.batch, step.close), (batch(CLOSE), True))
        self.assertIsNone(c.tncs)
        self.assertEqual(step.outcome.mutual, MutualVerdict(agreed=False))
        self.assertEqual(step.outcome.to_json()["mutual"], {
            "agreed": False, "recommendation": None, "assessment": None, "reasons": [], "imv_results": []})

    def test_the_server_announcing_in_its_result(self):
        c = client()
        c.start()
        step = c.receive_batch(batch(RESULT, mutual_capability(), assessment_result(0), access_recommendation(1),
                                     from_server=True))
        # decided, but the server's exchange is still to come
        self.assertEqual((step.batch, step.close), (batch(SDATA, from_server=True), False))
        self.assertEqual(c.receive_batch(SERVER_CLIENT_FIRST).batch, CLIENT_RESULT)
        step = c.receive_batch(batch(CLOSE))
        self.assertEqual((step.batch, step.close), (batch(CLOSE), True))


class ErrorTests(unittest.TestCase):
    def test_the_server_tncs_after_its_result(self):
        c = client()
        c.start()
        c.receive_batch(SERVER_FIRST)
        c.receive_batch(SERVER_CLIENT_FIRST)
        c.receive_batch(SERVER_RESULT)
        step = c.receive_batch(batch(SDATA, from_server=True))
        self.assertEqual((step.batch, step.close), (batch(CLOSE, pb_error(UNEXPECTED_BATCH_TYPE)), True))
        self.assertEqual(step.outcome.mutual.error, "the server's TNCS sent a batch out of turn")
        # the server's own verdict stands
        self.assertEqual(step.outcome.recommendation_label, "Access Allowed")

    def test_the_server_tncs_out_of_turn(self):
        c = client()
        c.start()
        c.receive_batch(SERVER_FIRST)
        # this side's client role has not had its turn yet
        step = c.receive_batch(batch(SDATA, from_server=True))
        self.assertEqual((step.batch, step.close), (batch(CLOSE, pb_error(UNEXPECTED_BATCH_TYPE)), True))
        self.assertIsNone(step.outcome.recommendation_label)

    def test_the_server_client_role_out_of_turn(self):
        c = client(judging_imv(decides=False))
        c.start()
        c.receive_batch(SERVER_FIRST)
        c.receive_batch(SERVER_CLIENT_FIRST)
        # again, before this side's TNCS had its turn
        step = c.receive_batch(batch(CDATA))
        self.assertEqual((step.batch, step.close),
                         (batch(CLOSE, pb_error(UNEXPECTED_BATCH_TYPE), from_server=True), True))
        self.assertEqual(step.outcome.mutual.error, "the server's client role sent a batch out of turn")

    def test_the_server_client_role_closing_before_a_verdict(self):
        imv = judging_imv(decides=False)
        c = client(imv)
        c.start()
        c.receive_batch(SERVER_FIRST)
        self.assertEqual(c.receive_batch(SERVER_CLIENT_FIRST).batch, CLIENT_ANSWER)
        # this side's TNCS asks for more (an empty SDATA: its IMV is still at work)
        step = c.receive_batch(batch(SDATA, REQUEST, from_server=True))
        self.assertEqual(step.batch, batch(SDATA, from_server=True))
        # the server's client role closes: no verdict on the server, the other exchange goes on
        step = c.receive_batch(batch(CLOSE))
        self.assertEqual((step.batch, step.close), (CLIENT_ANSWER, False))
        self.assertEqual(imv.states[-1], C.DELETE)
        step = c.receive_batch(batch(RESULT, assessment_result(1), access_recommendation(3), from_server=True))
        self.assertEqual((step.batch, step.close), (batch(CLOSE), True))
        self.assertEqual(step.outcome.recommendation_label, "Quarantined")
        self.assertEqual((step.outcome.mutual.agreed, step.outcome.mutual.decision), (True, None))

    def test_this_side_refuses_an_unexpected_batch_type(self):
        c = client(judging_imv(decides=False))
        c.start()
        c.receive_batch(SERVER_FIRST)
        c.receive_batch(SERVER_CLIENT_FIRST)
        c.receive_batch(batch(SDATA, REQUEST, from_server=True))
        # a RESULT is no batch a TNCS receives
        step = c.receive_batch(batch(RESULT))
        self.assertEqual((step.batch, step.close), (batch(CLOSE, pb_error(UNEXPECTED_BATCH_TYPE), from_server=True),
                                                    True))
        self.assertIn("broke the PB-TNC protocol", step.outcome.mutual.error)

    def test_abort(self):
        imv = judging_imv()
        c = client(imv)
        c.start()
        c.receive_batch(SERVER_FIRST)
        outcome = c.abort("connection lost")
        self.assertTrue(c.finished)
        self.assertEqual(outcome.error, "connection lost")
        self.assertEqual(imv.states[-1], C.DELETE)
        self.assertTrue(c.receive_batch(SERVER_CLIENT_FIRST).close)


# -- back to back with nac's server -----------------------------------------------------------


@implementer(IMutualClientFactory)
class HostCollectors:
    """The server's client role, measuring a fixture host."""

    collectors = ("os",)

    def __init__(self, host: Host):
        self.imcs = [host.os_imc()]

    def open_client(self, connection_id, limits, max_rounds):
        return PbTncClient(self.imcs, max_batch_size=limits.max_batch_size,
                           max_message_size=limits.max_message_size, max_rounds=max_rounds,
                           connection_id=connection_id, responder=True)


@dataclass
class Exchange:
    outcome: object
    decision: object
    batches: list


def back_to_back(testcase, client, core) -> Exchange:
    """Batch for batch until the connection closes."""
    connection = core.open_connection(PeerInfo("test", "127.0.0.1", identity="carol"), LIMITS)
    data, seen = client.start(), []
    for _ in range(60):
        seen.append(PbBatch.parse(data))
        outcomes = []
        connection.receive_batch(data).addCallback(outcomes.append)
        [out] = outcomes
        if out.close:
            testcase.assertEqual(out.batches, [])
            break
        [answer] = out.batches
        seen.append(PbBatch.parse(answer))
        step = client.receive_batch(answer)
        data = step.batch
        testcase.assertIsNotNone(data)
    else:
        testcase.fail("the exchange does not end")
    testcase.assertTrue(client.finished)
    testcase.assertTrue(connection.finished)
    return Exchange(client.outcome, connection.decision, seen)


class BackToBackTests(unittest.TestCase):
    def hosts(self, server_forwarding="0\n"):
        endpoint = Host(tmpdir(self, "nac-endpoint-"), SWIMA_PACKAGES)
        server = Host(tmpdir(self, "nac-server-"), SWIMA_PACKAGES, forward=server_forwarding,
                      machine_id="0123456789abcdef0123456789abcdef\n")
        return endpoint, server

    def exchange(self, *, server_forwarding="0\n", client_imvs=None, max_rounds=10) -> Exchange:
        endpoint, server = self.hosts(server_forwarding)
        core = TnccsCore(ImvManager([OsImv()]), mutual=HostCollectors(server), max_rounds=max_rounds)
        c = MutualPbTncClient([endpoint.os_imc()], client_imvs or [OsImv()], max_batch_size=LIMITS.max_batch_size,
                              max_message_size=LIMITS.max_message_size, max_rounds=max_rounds)
        return back_to_back(self, c, core)

    def test_each_side_judges_the_other(self):
        done = self.exchange()
        self.assertEqual(done.decision.access, "allowed")
        self.assertEqual(done.outcome.recommendation_label, "Access Allowed")
        self.assertEqual(done.outcome.mutual.recommendation_label, "Access Allowed")
        # both exchanges ran in one connection: the client sent batches of
        # its TNCS (D bit set), the server batches of its client role
        sent, received = done.batches[0::2], done.batches[1::2]
        self.assertIn((RESULT, True), [(b.batch_type, bool(b.direction)) for b in sent])
        self.assertIn((CDATA, False), [(b.batch_type, bool(b.direction)) for b in received])

    def test_a_server_with_ip_forwarding_is_not_compliant(self):
        done = self.exchange(server_forwarding="1\n")
        self.assertEqual(done.outcome.recommendation_label, "Access Allowed")
        verdict = done.outcome.mutual
        self.assertEqual((verdict.recommendation_label, verdict.assessment_label),
                         ("Access Denied", "non-compliant minor"))
        # nac's decision about the endpoint does not depend on it
        self.assertEqual(done.decision.access, "allowed")

    def test_an_imv_that_never_decides_about_the_server_is_cut_off(self):
        silent = ScriptedImv("silent", [(0, OS_SUBTYPE)])
        done = self.exchange(client_imvs=[silent], max_rounds=3)
        self.assertEqual(done.outcome.mutual.recommendation_label, "Access Denied")
        [verdict] = done.outcome.mutual.decision.imv_results
        self.assertTrue(verdict.forced)
        self.assertEqual(done.decision.access, "allowed")


class LoadTests(unittest.TestCase):
    def test_imvs_load_by_name_with_their_defaults(self):
        [imv] = load_imvs(["os"])
        self.assertIsInstance(imv, OsImv)
        self.assertEqual(imv.options["package_updates"], "security")

    def test_an_unknown_imv_is_a_value_error(self):
        with self.assertRaises(ValueError) as caught:
            load_imvs(["os", "no-such-imv"])
        self.assertIn("no-such-imv", str(caught.exception))


class CommandLineTests(unittest.TestCase):
    def test_mutual_without_a_posture_exchange_is_a_usage_error(self):
        from nac.client import eap_cli

        argv = ["--server", "127.0.0.1", "--secret", "s", "--identity", "carol", "--password", "pw",
                "--cacert", "ca.pem", "--tnc", "none", "--mutual"]
        devnull = open(os.devnull, "w")
        self.addCleanup(devnull.close)
        self.patch(eap_cli.sys, "stderr", devnull)
        with self.assertRaises(SystemExit) as caught:
            eap_cli.main(argv)
        self.assertEqual(caught.exception.code, 2)

    def test_the_imvs_of_the_command_line(self):
        from nac.client.cli import build_parser, mutual_imvs

        parser = build_parser()
        self.assertEqual(mutual_imvs(parser.parse_args(["h", "--cacert", "c"])), [])
        [imv] = mutual_imvs(parser.parse_args(["h", "--cacert", "c", "--mutual"]))
        self.assertIsInstance(imv, OsImv)
        self.assertEqual(len(mutual_imvs(parser.parse_args(["h", "--cacert", "c", "--mutual-imvs", "os,scanner"]))), 2)
