"""The Scanner IMV through the real TNCS core, fed by nac's client running
its Scanner collector over fixture /proc/net tables: strongSwan's closed-
and open-port policies, the seed's verdict and remediation byte for byte,
silent collectors; and the OS and Scanner IMVs together on a real store."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from imvs.os import OsImv
from imvs.scanner import ScannerImv, port_ranges, violating_ports
from nac import config
from nac.ifimv import ActionRecommendation as A
from nac.ifimv import EvaluationResult as E
from nac.interfaces import IImv
from nac.pa import PaMessage
from nac.pa.ietf import AttributeRequest, IetfAttributeType, PortEntry, RemediationInstructions
from nac.pb import PbBatch, PbPa
from nac.tnccs.imv_manager import load_imv
from tests.test_collectors import ANY4, ANY6, ESTABLISHED, LISTEN, Host, capture_host, captured_session
from tests.test_db import PostgresBackend, SqliteBackend
from tests.posture import ImvHarness, tmpdir
from tests.test_imv_os import PRODUCT, StoreMixin, check_documented, remediation_items

FIREWALL = 5
CLOSE = "07"
#: the capture's server policy: no TCP port, UDP 500, 4500 and 10000-65000 allowed
STRONGSWAN_POLICY = {"closed_port_policy": True, "tcp_ports": (), "udp_ports": port_ranges("500 4500 10000-65000")}


def seed_remediation() -> RemediationInstructions:
    """The Remediation Instructions strongSwan's Scanner IMV sent in the capture."""
    for direction, data in captured_session("carol-sasl-open-ports-denied"):
        if direction != "s2c":
            continue
        for msg in PbBatch.parse(data).messages:
            if isinstance(msg, PbPa) and msg.pa_subtype == FIREWALL:
                for attribute in PaMessage.parse(msg.body).find(RemediationInstructions):
                    return attribute
    raise AssertionError("no remediation in the capture")


class ScannerFlowTests(ImvHarness, unittest.TestCase):
    """No store needed: the Scanner judges what the collector reports."""

    def host(self, **kw):
        return Host(tmpdir(self), [("bash", "5.2.15-2+b8")], **kw)

    @defer.inlineCallbacks
    def test_open_ports_like_the_seed_are_non_compliant_minor_with_strongswans_remediation(self):
        host = capture_host(tmpdir(self), packages=[("bash", "5.2.15-2+b8")])
        result = yield self.assess([host.scanner_imc()], [ScannerImv(STRONGSWAN_POLICY)])

        verdict = result.verdict("scanner")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.NONCOMPLIANT_MINOR))
        self.assertEqual(result.decision.access, "denied")
        [reason] = result.outcome.reasons
        self.assertEqual((reason.text, reason.language), ("Open server ports were detected", "en"))
        seed = seed_remediation()
        # the same instructions strongSwan sent, to the collector and as PB-Remediation-Parameters
        [remediation] = result.outcome.remediation
        self.assertEqual((remediation.text, remediation.language), (seed.string, seed.language))
        self.assertEqual(remediation_items(remediation.text), {"Open Server Ports": ["tcp/271", "udp/1812"]})
        [assessment] = result.outcome.imv_results
        self.assertEqual((assessment.imc_name, assessment.result_label, assessment.remediation),
                         ("Scanner", "non-compliant minor", (seed.string,)))
        # the Port Filter came with the first batch: no request, one round
        self.assertEqual(result.sent(FIREWALL, AttributeRequest), [])
        self.assertEqual(result.rounds, 1)

    @defer.inlineCallbacks
    def test_clean_host_is_allowed(self):
        host = self.host(tcp=[(ANY4, 22, ANY4, 0, LISTEN), ("127.0.0.1", 631, ANY4, 0, LISTEN),
                              ("10.0.2.15", 41963, "10.0.2.2", 22, ESTABLISHED)],
                         udp6=[(ANY6, 5353, ANY6, 0, CLOSE)])
        imv = ScannerImv({"tcp_ports": port_ranges("22"), "udp_ports": port_ranges("5353")})
        result = yield self.assess([host.scanner_imc()], [imv])
        verdict = result.verdict("scanner")
        self.assertEqual((verdict.recommendation, verdict.evaluation, verdict.reason),
                         (A.ALLOW, E.COMPLIANT, ""))
        self.assertEqual(result.outcome.remediation, ())
        [assessment] = result.outcome.imv_results
        self.assertEqual(assessment.result_label, "compliant")

    @defer.inlineCallbacks
    def test_forbidden_open_port_under_the_closed_port_policy(self):
        host = self.host(tcp=[(ANY4, 22, ANY4, 0, LISTEN), (ANY6, 41963, ANY6, 0, LISTEN)])
        result = yield self.assess([host.scanner_imc()],
                                   [ScannerImv({"tcp_ports": port_ranges("22"),
                                                "non_compliant_minor": "isolate"})])
        verdict = result.verdict("scanner")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.ISOLATE, E.NONCOMPLIANT_MINOR))
        self.assertEqual(result.decision.access, "isolate")
        self.assertEqual(remediation_items(result.outcome.remediation[0].text),
                         {"Open Server Ports": ["tcp/41963"]})

        # strongSwan's remediation_uri goes with the instructions
        result = yield self.assess([host.scanner_imc()],
                                   [ScannerImv({"tcp_ports": port_ranges("22"),
                                                "remediation_uri": "https://nac.test/ports"})])
        self.assertEqual([r.uri for r in result.outcome.remediation], [None, "https://nac.test/ports"])
        [assessment] = result.outcome.imv_results
        self.assertEqual(assessment.remediation[1:], ("https://nac.test/ports",))

    @defer.inlineCallbacks
    def test_open_port_policy_forbids_only_the_listed_ports(self):
        host = self.host(tcp=[(ANY4, 22, ANY4, 0, LISTEN), (ANY4, 23, ANY4, 0, LISTEN)],
                         udp=[(ANY4, 69, ANY4, 0, CLOSE), (ANY4, 5353, ANY4, 0, CLOSE)])
        imv = ScannerImv({"closed_port_policy": False, "tcp_ports": port_ranges("23, 2000-3000"),
                          "udp_ports": port_ranges("60-70")})
        result = yield self.assess([host.scanner_imc()], [imv])
        self.assertEqual(remediation_items(result.outcome.remediation[0].text),
                         {"Open Server Ports": ["tcp/23", "udp/69"]})
        self.assertEqual(result.verdict("scanner").evaluation, E.NONCOMPLIANT_MINOR)

    @defer.inlineCallbacks
    def test_no_port_filter_gets_the_no_result_recommendation_after_one_request(self):
        host = self.host()
        result = yield self.assess([host.os_imc()], [ScannerImv()])
        [(message, request)] = [(msg, a) for msg, a in result.attributes(FIREWALL)
                                if isinstance(a, AttributeRequest)]
        self.assertEqual(request.requested, ((0, IetfAttributeType.PORT_FILTER),))
        self.assertEqual((message.collector_id, message.exclusive), (0xFFFF, False))
        verdict = result.verdict("scanner")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_RECOMMENDATION, E.DONT_KNOW))
        self.assertEqual(result.outcome.reasons, ())
        self.assertLessEqual(result.rounds, 2)

        result = yield self.assess([host.os_imc()], [ScannerImv({"no_result": "no-access"})])
        self.assertEqual([r.text for r in result.outcome.reasons], ["No port filter information was received"])
        self.assertEqual(result.decision.access, "denied")

    @defer.inlineCallbacks
    def test_reason_and_remediation_in_the_clients_language(self):
        host = self.host(tcp=[(ANY4, 8080, ANY4, 0, LISTEN)])
        result = yield self.assess([host.scanner_imc()], [ScannerImv()], language="de-CH, en;q=0.5")
        [reason] = result.outcome.reasons
        self.assertEqual((reason.text, reason.language), ("Offene Serverports wurden festgestellt", "de"))
        self.assertIn("<itemsheader>Bitte schliessen Sie die folgenden Serverports:</itemsheader>",
                      result.outcome.remediation[0].text)


class UnreadableGroupPolicyTests(ImvHarness, unittest.TestCase):
    """The endpoint's group policy cannot be read (the policy database
    failed): the OS and scanner IMVs never allow, whatever the endpoint
    shows and another IMV says, and they do not fall back to ``[imv:*]``."""

    store = None

    class FailingSource:
        def resolve(self, endpoint):
            from nac.db.store import StoreError

            return defer.fail(StoreError("connection refused"))

    @defer.inlineCallbacks
    def test_the_verdict_is_that_of_a_check_that_could_not_be_made(self):
        from nac.db.store import StoreError
        from tests.posture import ScriptedImv

        host = capture_host(tmpdir(self), packages=[("bash", "5.2.15-2+b8")])
        allowing = ScriptedImv("allow", [(0, 1)], on_solicit=lambda c: c.provide_recommendation(A.ALLOW, E.COMPLIANT))
        clean = {"tcp_ports": port_ranges("271"), "udp_ports": port_ranges("1812 10000-65000")}
        for imv, imc, name in ((ScannerImv(clean), host.scanner_imc(), "scanner"), (OsImv(), host.os_imc(), "os")):
            result = yield self.assess([imc], [imv, allowing], policy_source=self.FailingSource())
            # the IMV's and the enforcement's reading: each logged with its traceback (not an outage)
            self.assertEqual(len(self.flushLoggedErrors(StoreError)), 2)
            verdict = result.verdict(name)
            self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.ERROR), name)
            self.assertEqual(result.decision.access, "denied")
            self.assertIn(("The security policy could not be checked", "en"), result.decision.reasons)
        # or as configured (check_failed); never allow
        result = yield self.assess([host.scanner_imc()], [ScannerImv({**clean, "check_failed": "isolate"}), allowing],
                                   policy_source=self.FailingSource())
        self.flushLoggedErrors(StoreError)
        self.assertEqual(result.decision.access, "isolate")

    @defer.inlineCallbacks
    def test_an_outage_is_a_quiet_check_failed(self):
        from nac.db.outage import StoreUnavailable

        class Away:
            def resolve(self, endpoint):
                return defer.fail(StoreUnavailable("OperationalError: connection refused"))

        host = capture_host(tmpdir(self), packages=[("bash", "5.2.15-2+b8")])
        result = yield self.assess([host.scanner_imc()], [ScannerImv({"tcp_ports": port_ranges("271")})],
                                   policy_source=Away())
        self.assertEqual(result.decision.access, "denied")
        self.assertEqual(self.flushLoggedErrors(), [])  # the store said it once; no traceback per assessment


class CombinedTestsMixin(StoreMixin):
    """OS and Scanner IMVs in one core on a real store: the seed's flow."""

    @defer.inlineCallbacks
    def test_compliant_os_and_a_forbidden_open_port_deny_access(self):
        host = capture_host(tmpdir(self), packages=[("bash", "5.2.15-2+b8"), ("openssl", "3.0.15-1~deb12u1")])
        self.db.import_packages(PRODUCT, [("bash", "5.2.15-2+b8"), ("openssl", "3.0.15-1~deb12u1")],
                                security=True)
        result = yield self.assess([host.os_imc(), host.scanner_imc()],
                                   [OsImv(), ScannerImv(STRONGSWAN_POLICY)])
        self.assertEqual(result.verdict("os").evaluation, E.COMPLIANT)
        self.assertEqual(result.verdict("scanner").evaluation, E.NONCOMPLIANT_MINOR)
        self.assertEqual((result.decision.recommendation, result.decision.evaluation, result.decision.access),
                         (A.NO_ACCESS, E.NONCOMPLIANT_MINOR, "denied"))
        self.assertEqual([r.text for r in result.outcome.reasons], ["Open server ports were detected"])
        self.assertEqual(sorted((a.imc_name, a.result_label) for a in result.outcome.imv_results),
                         [("OS", "compliant"), ("Scanner", "non-compliant minor")])
        # recorded: the session's results and both IMVs' measurements
        [measured] = self.measurements("open-ports")
        self.assertEqual(measured["violations"], ["tcp/271", "udp/1812"])
        self.assertEqual(len(measured["open"]), 4)
        [session] = yield self.decided_sessions()
        _, results = self.db.session_results(session.id)
        by_name = {r.imv_name: r for r in results}
        self.assertEqual(by_name["scanner"].reason, "Open server ports were detected")
        self.assertIn("<item>tcp/271</item>", by_name["scanner"].remediation)
        self.assertEqual(session.device, "3d1219c7c4c5404aaa1f6d2a48adfda4")
        self.assertLessEqual(result.rounds, 3)

    @defer.inlineCallbacks
    def test_clean_host_is_allowed(self):
        host = capture_host(tmpdir(self), packages=[("bash", "5.2.15-2+b8")])
        self.db.import_packages(PRODUCT, [("bash", "5.2.15-2+b8")])
        imv = ScannerImv({"tcp_ports": port_ranges("271"), "udp_ports": port_ranges("1812 10000-65000")})
        result = yield self.assess([host.os_imc(), host.scanner_imc()], [OsImv(), imv])
        self.assertEqual((result.decision.recommendation, result.decision.evaluation), (A.ALLOW, E.COMPLIANT))
        self.assertEqual(result.outcome.reasons, ())


class SqliteCombinedTests(SqliteBackend, CombinedTestsMixin, unittest.TestCase):
    pass


class PostgresCombinedTests(PostgresBackend, CombinedTestsMixin, unittest.TestCase):
    pass


class PolicyTests(unittest.TestCase):
    def test_port_ranges(self):
        self.assertEqual(port_ranges(""), ())
        self.assertEqual(port_ranges(" 500 4500,10000-65000 "), ((500, 500), (4500, 4500), (10000, 65000)))
        for bad, why in (("http", "not a port"), ("70000", "beyond"), ("20-10", "ends before"),
                         ("1-2-3", "not a port"), ("-5", "not a port")):
            with self.assertRaises(ValueError) as caught:
                port_ranges(bad)
            self.assertIn(why, str(caught.exception))

    @given(st.text(alphabet="0123456789- ,\tx", max_size=40))
    @settings(max_examples=200, deadline=None)
    def test_port_ranges_never_crash(self, raw):
        try:
            ranges = port_ranges(raw)
        except ValueError:
            return
        for first, last in ranges:
            self.assertTrue(0 <= first <= last <= 65535)

    def test_violating_ports(self):
        entries = [PortEntry(6, 22), PortEntry(6, 80, True), PortEntry(17, 53), PortEntry(1, 0),
                   PortEntry(6, 8080), PortEntry(6, 8080)]
        self.assertEqual(violating_ports(entries, True, {6: ((22, 22),)}), [(6, 8080), (17, 53)])
        self.assertEqual(violating_ports(entries, False, {6: ((8000, 9000),)}), [(6, 8080)])
        self.assertEqual(violating_ports(entries, False, {}), [])

    def test_provides_the_imv_interface(self):
        imv = ScannerImv()
        self.assertTrue(verifyObject(IImv, imv))
        self.assertEqual(tuple(imv.subscriptions), ((0, FIREWALL),))
        self.assertEqual((imv.closed_port_policy, imv.ports_policy), (True, {6: (), 17: ()}))

    def test_sample_configuration_documents_every_option_with_its_default(self):
        check_documented(self, "scanner", "imvs.scanner:ScannerImv", ScannerImv)

    def test_options_are_read_like_strongswan(self):
        path = self.mktemp()
        Path(path).write_text("[imv:scanner]\nclosed_port_policy = no\ntcp_ports = 22 80 443\n"
                              "udp_ports = 500, 4500\n")
        imv = load_imv("imvs.scanner:ScannerImv", config.load(path).imv_options)
        self.assertEqual((imv.closed_port_policy, imv.ports_policy),
                         (False, {6: ((22, 22), (80, 80), (443, 443)), 17: ((500, 500), (4500, 4500))}))
        Path(path).write_text("[imv:scanner]\ntcp_ports = ssh\n")
        with self.assertRaises(config.ConfigError) as caught:
            load_imv("imvs.scanner:ScannerImv", config.load(path).imv_options)
        self.assertIn("[imv:scanner] tcp_ports", str(caught.exception))
