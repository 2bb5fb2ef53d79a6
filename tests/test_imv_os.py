"""The OS IMV against a real policy store (SQLite and PostgreSQL, see
tests/postgres.py), driven through the real TNCS core by PB-TNC
batches of nac's own TNC client running its OS collector over fixture
files (os-release, /proc, dpkg status): clean hosts, blacklisted and
outdated packages, forwarding and default passwords, segmented package
lists, silent collectors, no database; Debian version ordering (against
dpkg and a transcription of its comparison); the package check against
the store (a reference judgement, queries per chunk of names, the covering
index); the shared IMV policy helpers."""

from __future__ import annotations

import functools
import random
import re
import shutil
import subprocess
from pathlib import Path
from xml.dom.minidom import parseString

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from zope.interface.verify import verifyObject

import imvs.os
from imvs.os import (
    KnownRelease,
    OsImv,
    UpdatePolicy,
    PackageReports,
    check_installed_packages,
    check_packages,
    compare_debian_versions,
    debian_version_key,
    known_releases,
)
from imvs.policy import RemediationString, VerdictPolicy, combine_checks
from nac import config
from nac.client.collectors.os import OsImc
from nac.client.imc import ReceivedPaMessage
from nac.db import models as m
from nac.db.store import PolicyDb
from nac.ifimv import ActionRecommendation as A
from nac.ifimv import EvaluationResult as E
from nac.interfaces import IImv
from nac.pa import MaxAttributeSizeRequest, NextSegment, PaMessage, PaTncErrorCode, SegmentEnvelope
from nac.pa.ietf import (
    AssessmentResult,
    AttributeRequest,
    IetfAttributeType,
    InstalledPackages,
    PaTncErrorAttribute,
    RemediationInstructions,
)
from nac.tnccs.imv_manager import load_imv
from tests.posture import ETC, MACHINE_ID, PT_EAP, ImvHarness, PolicyStoreMixin, ScriptedImv
from tests.test_collectors import SWIMA_PACKAGES, Host
from tests.test_db import DatabaseMixin, PostgresBackend, SqliteBackend

PRODUCT = "Debian 12 x86_64"
OS_SUBTYPE = 1


class SilentOsImc(OsImc):
    """An OS collector that pushes its first message and never answers a request."""

    def reply_attributes(self, connection, message: ReceivedPaMessage, attributes):
        return []


class StoreMixin(PolicyStoreMixin, ImvHarness):
    """Whole assessments against a real, started PolicyStore."""

    @defer.inlineCallbacks
    def decided_sessions(self, count: int = 1):
        """The newest sessions once ``count`` of them have their decision
        recorded (the core records it off the reactor after answering)."""
        from twisted.internet import reactor, task
        for _ in range(200):
            sessions = self.db.list_sessions()
            if sum(1 for x in sessions if x.ended is not None) >= count:
                return sessions
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.fail("the decision was not recorded")

    def measurements(self, kind: str) -> list:
        return self.db.run(lambda s: [r.payload for r in s.scalars(
            sa.select(m.Measurement).where(m.Measurement.kind == kind).order_by(m.Measurement.id))])

    def device(self):
        def read(session):
            device = session.scalar(sa.select(m.Device).where(m.Device.device_id == MACHINE_ID))
            return None if device is None else (device.device_id, device.product.name if device.product else None)
        return self.db.run(read)


def remediation_items(xml: str) -> dict[str, list[str]]:
    """title → items of strongSwan remediation instructions (parsed as XML)."""
    doc = parseString(xml.encode())
    out = {}
    for instruction in doc.getElementsByTagName("instruction"):
        title = instruction.getElementsByTagName("title")[0].firstChild.data
        out[title] = [item.firstChild.data for item in instruction.getElementsByTagName("item")]
    return out


class OsFlowTestsMixin(StoreMixin):
    def import_host(self, packages=SWIMA_PACKAGES, *, security=True):
        self.db.import_packages(PRODUCT, packages, security=security)

    @defer.inlineCallbacks
    def test_clean_host_is_allowed_and_recorded(self):
        self.import_host()
        result = yield self.assess([self.host().os_imc()], [OsImv()])

        verdict = result.verdict("os")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.ALLOW, E.COMPLIANT))
        self.assertEqual(result.decision.access, "allowed")
        self.assertEqual(verdict.reason, "")
        # like strongSwan: a contract and an Attribute Request for the packages, to any collector
        [(message, request)] = [(msg, a) for msg, a in result.attributes(OS_SUBTYPE)
                                if isinstance(a, AttributeRequest)]
        self.assertEqual(request.requested, ((0, IetfAttributeType.INSTALLED_PACKAGES),))
        self.assertEqual((message.collector_id, message.exclusive), (0xFFFF, False))
        [contract] = result.sent(OS_SUBTYPE, MaxAttributeSizeRequest)
        self.assertEqual(contract.max_segment_size, 2097080)
        # the collector hears the assessment
        [assessment] = result.outcome.imv_results
        self.assertEqual((assessment.imc_name, assessment.result_label, assessment.remediation),
                         ("OS", "compliant", ()))
        self.assertEqual(self.device(), (MACHINE_ID, PRODUCT))
        [measured] = self.measurements("os")
        self.assertEqual(measured["packages"], {"count": 4, "ok": 4, "unknown": 0, "vulnerable": [],
                                                "blacklisted": []})
        self.assertEqual((measured["product"], measured["forwarding"], measured["default_password"]),
                         (PRODUCT, "disabled", False))
        self.assertLessEqual(result.rounds, 3)

    @defer.inlineCallbacks
    def test_unknown_packages_are_only_counted(self):
        # the seed's verdict: nothing known about the product, "753 unknown", allowed
        result = yield self.assess([self.host().os_imc()], [OsImv()])
        verdict = result.verdict("os")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.ALLOW, E.COMPLIANT))
        [measured] = self.measurements("os")
        self.assertEqual(measured["packages"]["unknown"], 4)

    @defer.inlineCallbacks
    def test_blacklisted_package_is_non_compliant_major(self):
        self.import_host()
        self.db.blacklist_package(PRODUCT, "git")
        result = yield self.assess([self.host().os_imc()], [OsImv()])

        verdict = result.verdict("os")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.NONCOMPLIANT_MAJOR))
        self.assertEqual(result.decision.access, "denied")
        self.assertEqual([r.text for r in result.outcome.reasons],
                         ["Vulnerable or blacklisted software packages were found"])
        [remediation] = result.outcome.remediation
        self.assertEqual(remediation_items(remediation.text), {"Blacklisted Software Packages": ["git"]})
        # the same instructions went to the collector, with its Assessment Result
        [assessment] = result.outcome.imv_results
        self.assertEqual(assessment.result_label, "non-compliant major")
        self.assertEqual(assessment.remediation, (remediation.text,))
        [measured] = self.measurements("os")
        self.assertEqual(measured["packages"]["blacklisted"], [["git", "1:2.39.5-0+deb12u3"]])

        # the policy decides what a major violation means
        result = yield self.assess([self.host().os_imc()], [OsImv({"non_compliant_major": "isolate"})])
        self.assertEqual(result.decision.access, "isolate")

    @defer.inlineCallbacks
    def test_a_failing_record_is_logged_and_the_verdict_stands(self):
        from nac.db.store import StoreError

        self.import_host()
        self.patch(self.store, "device_seen", lambda *args: defer.fail(StoreError("disk full")))
        self.patch(self.store, "add_measurement", lambda *args: defer.fail(StoreError("disk full")))
        result = yield self.assess([self.host().os_imc()], [OsImv()])
        self.assertEqual(result.decision.access, "allowed")
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 2)
        [session] = yield self.decided_sessions()
        self.assertEqual((session.access, session.device), ("allowed", None))

    @defer.inlineCallbacks
    def test_a_policy_that_cannot_be_read_never_allows(self):
        """The database is down while a blacklisted package is installed: the
        OS IMV must not fall back to its no-result recommendation, which
        another IMV's allow would outvote (fail closed)."""
        from nac.db.store import StoreError

        self.import_host()
        self.db.blacklist_package(PRODUCT, "git")
        self.patch(self.store, "read", lambda *args, **kw: defer.fail(StoreError("connection refused")))
        allowing = ScriptedImv("allow", [(0, 1)], on_solicit=lambda c: c.provide_recommendation(A.ALLOW, E.COMPLIANT))
        result = yield self.assess([self.host().os_imc()], [OsImv(), allowing])
        self.flushLoggedErrors(StoreError)
        verdict = result.verdict("os")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.ERROR))
        self.assertEqual(result.decision.access, "denied")
        self.assertIn(("The security policy could not be checked", "en"), result.decision.reasons)
        # or isolate, as configured; never allow
        result = yield self.assess([self.host().os_imc()], [OsImv({"check_failed": "isolate"}), allowing])
        self.flushLoggedErrors(StoreError)
        self.assertEqual(result.decision.access, "isolate")

    @defer.inlineCallbacks
    def test_a_group_policy_that_cannot_be_read_still_records_the_device(self):
        """The decision is recorded with the device it judged, so that the
        session is found by its device after an outage."""
        from nac.db.store import StoreError

        class Failing:
            def resolve(self, endpoint):
                return defer.fail(StoreError("connection refused"))

        self.import_host()
        result = yield self.assess([self.host().os_imc()], [OsImv()], policy_source=Failing())
        self.flushLoggedErrors(StoreError)
        self.assertEqual(result.decision.access, "denied")
        [session] = yield self.decided_sessions()
        self.assertEqual((session.access, session.device), ("denied", "3d1219c7c4c5404aaa1f6d2a48adfda4"))

    @defer.inlineCallbacks
    def test_the_same_host_again_is_judged_from_memory_until_the_policy_changes(self):
        self.import_host()
        imv = OsImv()
        reads = []
        read = self.store.read
        self.patch(self.store, "read", lambda fn, *args, **kw: reads.append(fn) or read(fn, *args, **kw))
        first = yield self.assess([self.host().os_imc()], [imv])
        again = yield self.assess([self.host().os_imc()], [imv])
        self.assertEqual((imv.reports.misses, imv.reports.hits), (1, 1))
        # the generation read with the second session's start sufficed
        self.assertEqual(reads, [imv.reports.check])
        for result in (first, again):
            self.assertEqual(result.decision.access, "allowed")
        self.db.blacklist_package(PRODUCT, "git")
        after = yield self.assess([self.host().os_imc()], [imv])
        self.assertEqual((imv.reports.misses, imv.reports.hits), (2, 1))
        self.assertEqual(reads, [imv.reports.check] * 2)
        self.assertEqual(after.decision.access, "denied")

    @defer.inlineCallbacks
    def test_a_list_received_in_segments_is_the_same_list(self):
        packages = [(f"package-{i:04d}", f"1:{i}.0-1") for i in range(2500)] + [("zz-last", "1.0-1")]
        self.import_host(packages)
        self.db.blacklist_package(PRODUCT, "zz-last")
        imv = OsImv()
        whole = yield self.assess([self.host(packages).os_imc()], [imv])
        segmented = yield self.assess([self.host(packages).os_imc()], [imv], limits=PT_EAP, max_rounds=20)
        self.assertGreaterEqual(len(segmented.sent(OS_SUBTYPE, NextSegment)), 1)
        self.assertEqual((imv.reports.misses, imv.reports.hits), (1, 1))
        for result in (whole, segmented):
            self.assertEqual(result.verdict("os").evaluation, E.NONCOMPLIANT_MAJOR)

    @defer.inlineCallbacks
    def test_only_the_blacklisted_release_fails(self):
        self.import_host()
        self.db.blacklist_package(PRODUCT, "curl", "7.88.1-10+deb12u12")
        result = yield self.assess([self.host().os_imc()], [OsImv()])
        self.assertEqual(result.verdict("os").evaluation, E.COMPLIANT)
        self.db.blacklist_package(PRODUCT, "curl", "7.88.1-10+deb12u14")
        result = yield self.assess([self.host().os_imc()], [OsImv()])
        self.assertEqual(result.verdict("os").evaluation, E.NONCOMPLIANT_MAJOR)

    @defer.inlineCallbacks
    def test_package_older_than_the_security_release_is_non_compliant_minor(self):
        self.import_host()
        self.db.import_packages(PRODUCT, [("curl", "7.88.1-10+deb12u15"), ("libcurl4", "7.88.1-10+deb12u15")],
                                security=True)
        # a newer release that is not a security release changes nothing
        self.db.import_packages(PRODUCT, [("bash", "5.2.15-2+b9")])
        result = yield self.assess([self.host().os_imc()], [OsImv()])

        verdict = result.verdict("os")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.NONCOMPLIANT_MINOR))
        [remediation] = result.outcome.remediation
        self.assertEqual(remediation_items(remediation.text),
                         {"Software Security Updates": ["curl", "libcurl4"]})
        [measured] = self.measurements("os")
        self.assertEqual(measured["packages"]["vulnerable"],
                         [["curl", "7.88.1-10+deb12u14", "7.88.1-10+deb12u15"],
                          ["libcurl4", "7.88.1-10+deb12u14", "7.88.1-10+deb12u15"]])
        self.assertEqual(measured["packages"]["ok"], 2)

        result = yield self.assess([self.host().os_imc()], [OsImv({"non_compliant_minor": "isolate"})])
        self.assertEqual(result.decision.access, "isolate")
        # package_updates = all: any newer release makes a package outdated
        result = yield self.assess([self.host().os_imc()], [OsImv({"package_updates": "all"})])
        self.assertEqual(remediation_items(result.outcome.remediation[0].text),
                         {"Software Security Updates": ["bash", "curl", "libcurl4"]})
        # none: only blacklisting counts
        result = yield self.assess([self.host().os_imc()], [OsImv({"package_updates": "none"})])
        self.assertEqual(result.verdict("os").evaluation, E.COMPLIANT)

    @defer.inlineCallbacks
    def test_forwarding_enabled_is_non_compliant_minor_with_remediation(self):
        self.import_host()
        result = yield self.assess([self.host(forward="1\n").os_imc()], [OsImv()])
        verdict = result.verdict("os")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.NONCOMPLIANT_MINOR))
        self.assertEqual([r.text for r in result.outcome.reasons], ["Improper OS settings were detected"])
        [remediation] = result.outcome.remediation
        self.assertEqual(remediation_items(remediation.text), {"IP Packet Forwarding": []})
        self.assertIn("<description>Please disable the forwarding of IP packets</description>",
                      remediation.text)
        [assessment] = result.outcome.imv_results
        self.assertEqual(assessment.result_label, "non-compliant minor")

    @defer.inlineCallbacks
    def test_factory_default_password_is_non_compliant_major(self):
        self.import_host()
        self.db.blacklist_package(PRODUCT, "bash")
        imc = self.host(forward="1\n").os_imc(default_password_enabled=True)
        result = yield self.assess([imc], [OsImv()], language="de")
        verdict = result.verdict("os")
        self.assertEqual(verdict.evaluation, E.NONCOMPLIANT_MAJOR)
        # strongSwan's texts in the client's language, every finding listed
        [reason] = result.outcome.reasons
        self.assertEqual((reason.text, reason.language),
                         ("Schwachstellenbehaftete oder gesperrte Softwarepakete wurden gefunden\n"
                          "Unzulässige OS Einstellungen wurden festgestellt", "de"))
        [remediation] = result.outcome.remediation
        self.assertEqual(list(remediation_items(remediation.text)),
                         ["Gesperrte Softwarepakete", "Weiterleitung von IP Paketen", "Default Passwort"])

    @defer.inlineCallbacks
    def test_segmented_package_list_is_reassembled(self):
        # ~110 KB of packages through 32 KB PA-TNC messages (PT-EAP's limits)
        packages = [(f"package-with-a-long-name-{i:04d}", f"1:{i}.0.{i % 7}-1+deb12u{i % 3}")
                    for i in range(2500)] + [("zz-last-package", "1.0-1")]
        self.import_host(packages)
        self.db.blacklist_package(PRODUCT, "zz-last-package")
        result = yield self.assess([self.host(packages).os_imc()], [OsImv()], limits=PT_EAP, max_rounds=20)

        [contract] = result.sent(OS_SUBTYPE, MaxAttributeSizeRequest)
        self.assertEqual(contract.max_segment_size, 32698)  # strongSwan's over PT-EAP
        self.assertGreaterEqual(len(result.sent(OS_SUBTYPE, NextSegment)), 3)
        [measured] = self.measurements("os")
        self.assertEqual(measured["packages"]["count"], len(packages))
        self.assertEqual(measured["packages"]["ok"], len(packages) - 1)
        # the last package came in the last segment
        self.assertEqual(measured["packages"]["blacklisted"], [["zz-last-package", "1.0-1"]])
        self.assertEqual(result.verdict("os").evaluation, E.NONCOMPLIANT_MAJOR)

    @defer.inlineCallbacks
    def test_collector_that_never_answers_gets_the_no_result_recommendation(self):
        host = self.host()
        # no OS collector at all: one request, then the solicited no-result answer
        result = yield self.assess([host.scanner_imc()], [OsImv()])
        self.assertEqual(len(result.sent(OS_SUBTYPE, AttributeRequest)), 1)
        verdict = result.verdict("os")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_RECOMMENDATION, E.DONT_KNOW))
        self.assertEqual(result.decision.access, "denied")
        self.assertLessEqual(result.rounds, 3)
        self.assertEqual(result.outcome.reasons, ())

        # a collector that tells its settings but never its packages: not vouched for
        imc = SilentOsImc(**_os_imc_kw(host))
        result = yield self.assess([imc], [OsImv({"no_result": "isolate"})])
        verdict = result.verdict("os")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.ISOLATE, E.DONT_KNOW))
        self.assertEqual([r.text for r in result.outcome.reasons],
                         ["The operating system could not be fully assessed"])
        self.assertLessEqual(result.rounds, 3)
        # but what it did tell is recorded
        self.assertEqual(self.device(), (MACHINE_ID, PRODUCT))

    @defer.inlineCallbacks
    def test_malformed_segment_is_answered_with_a_pa_tnc_error(self):
        self.import_host()
        result = yield self.assess([BadSegmentOsImc(**_os_imc_kw(self.host()))], [OsImv()])
        [error] = result.sent(OS_SUBTYPE, PaTncErrorAttribute)
        self.assertEqual(error.error_code, PaTncErrorCode.INVALID_PARAMETER)
        self.assertEqual(error.message_header, b"\xff\xff\xff\xff\x00\x00\x00\x07")
        verdict = result.verdict("os")
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_RECOMMENDATION, E.DONT_KNOW))
        self.assertLessEqual(result.rounds, 4)

    @defer.inlineCallbacks
    def test_package_list_beyond_the_announced_size_is_not_taken(self):
        packages = [(f"package-with-a-long-name-{i:04d}", "1.0-1") for i in range(3000)]
        imv = OsImv({"max_attribute_size": 64 * 1024})
        result = yield self.assess([self.host(packages).os_imc()], [imv], limits=PT_EAP)
        [contract] = result.sent(OS_SUBTYPE, MaxAttributeSizeRequest)
        self.assertEqual(contract.max_attribute_size, 64 * 1024)
        # the collector keeps to the contract: no package list, no verdict of compliance
        self.assertEqual(result.sent(OS_SUBTYPE, NextSegment), [])
        self.assertEqual(result.verdict("os").evaluation, E.DONT_KNOW)

    @defer.inlineCallbacks
    def test_a_violation_found_is_reported_even_with_packages_missing(self):
        imc = SilentOsImc(**_os_imc_kw(self.host(forward="1\n")))
        result = yield self.assess([imc], [OsImv()])
        self.assertEqual(result.verdict("os").evaluation, E.NONCOMPLIANT_MINOR)


class BadSegmentOsImc(OsImc):
    """An OS collector answering the Attribute Request with a segment of a
    base attribute it never started."""

    def reply_attributes(self, connection, message: ReceivedPaMessage, attributes):
        if any(isinstance(a, AttributeRequest) for a in attributes):
            return [SegmentEnvelope(7, b"\x00" * 40, more=True, start=False)]
        return []


def _os_imc_kw(host: Host) -> dict:
    return dict(os_release=[host.os_release], machine="x86_64", proc_stat=host.stat,
                proc_uptime=host.uptime, ip_forward=host.forward, machine_id=[host.machine_id],
                dpkg_status=host.status)


class SqliteOsFlowTests(SqliteBackend, OsFlowTestsMixin, unittest.TestCase):
    pass


class PostgresOsFlowTests(PostgresBackend, OsFlowTestsMixin, unittest.TestCase):
    pass


class NoStoreTests(ImvHarness, unittest.TestCase):
    """Without a policy database the OS IMV judges the settings and asks for no packages."""

    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    @defer.inlineCallbacks
    def test_settings_are_judged_without_a_database(self):
        imv = OsImv()
        result = yield self.assess([self.host().os_imc()], [imv])
        # everything was pushed: nothing to ask, decided in the first round
        self.assertEqual(result.sent(OS_SUBTYPE, AttributeRequest), [])
        self.assertEqual(result.rounds, 1)
        self.assertEqual(result.verdict("os").evaluation, E.COMPLIANT)

        result = yield self.assess([self.host(forward="1\n").os_imc()], [imv])
        self.assertEqual(result.verdict("os").evaluation, E.NONCOMPLIANT_MINOR)
        warnings = [e for e in self.events if "has no policy database" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)  # once per IMV, not per assessment

    @defer.inlineCallbacks
    def test_missing_attributes_are_requested(self):
        result = yield self.assess([self.host().os_imc(push_info=False)], [OsImv()])
        [request] = result.sent(OS_SUBTYPE, AttributeRequest)
        self.assertEqual(set(request.requested), {
            (0, IetfAttributeType.PRODUCT_INFORMATION), (0, IetfAttributeType.STRING_VERSION),
            (0, IetfAttributeType.NUMERIC_VERSION), (0, IetfAttributeType.OPERATIONAL_STATUS),
            (0, IetfAttributeType.FORWARDING_ENABLED),
            (0, IetfAttributeType.FACTORY_DEFAULT_PASSWORD_ENABLED), (0x00902A, 8)})
        self.assertEqual(result.verdict("os").evaluation, E.COMPLIANT)


class ImvContractTests(unittest.TestCase):
    def test_provides_the_imv_interface(self):
        imv = OsImv()
        self.assertTrue(verifyObject(IImv, imv))
        self.assertEqual(tuple(imv.subscriptions), ((0, OS_SUBTYPE),))

    def test_sample_configuration_documents_every_option_with_its_default(self):
        check_documented(self, "os", "imvs.os:OsImv", OsImv)
        imv = load_imv("imvs.os:OsImv", config.load(str(ETC)).imv_options)
        self.assertEqual((imv.updates, imv.policy, imv.max_attribute_size, imv.remediation_uri),
                         (UpdatePolicy.SECURITY, VerdictPolicy(), 8 * 1024 * 1024, None))

    def test_options_are_validated(self):
        path = self.mktemp()
        Path(path).write_text("[imv:os]\npackage_updates = all\nnon_compliant_minor = isolate\n"
                              "remediation_uri = https://nac.test/fix\n")
        imv = load_imv("imvs.os:OsImv", config.load(path).imv_options)
        self.assertEqual((imv.updates, imv.policy.minor, imv.remediation_uri),
                         (UpdatePolicy.ALL, A.ISOLATE, "https://nac.test/fix"))
        Path(path).write_text("[imv:os]\npackage_updates = sometimes\nnon_compliant_major = maybe\n")
        with self.assertRaises(config.ConfigError) as caught:
            load_imv("imvs.os:OsImv", config.load(path).imv_options)
        self.assertIn("package_updates", str(caught.exception))
        self.assertIn("non_compliant_major", str(caught.exception))


def check_documented(testcase, section: str, spec: str, cls) -> None:
    """Every ``# key = value`` of ``[imv:SECTION]`` in etc/nac.conf is an
    option of ``cls`` and, uncommented, loads as its default."""
    text = ETC.read_text()
    block = text[re.search(rf"^\[imv:{section}\]", text, re.MULTILINE).start():]
    nxt = block.find("\n[", 1)
    block = block if nxt < 0 else block[:nxt]
    keys = re.findall(r"^# (\w+) =(?: (.*))?$", block, re.MULTILINE)
    testcase.assertEqual(sorted(k for k, _ in keys), sorted(o.name for o in cls.OPTIONS))
    path = testcase.mktemp()
    Path(path).write_text(f"[imv:{section}]\n" + "".join(f"{k} = {v}\n" for k, v in keys))
    documented = load_imv(spec, config.load(path).imv_options)
    testcase.assertEqual(documented.options, {o.name: o.default for o in cls.OPTIONS})


# -- Debian versions and the package check ---------------------------------------------------


class DebianVersionTests(unittest.TestCase):
    ORDERED = ["0.9", "1.0~", "1.0~rc1", "1.0", "1.0-0", "1.0-1~bpo1", "1.0-1", "1.0-1+b1", "1.0-1.1",
               "1.0a", "1.0+dfsg", "1.0.1", "1.1", "1.10", "2.0", "1:0.1", "1:1.0", "2:0"]

    def test_dpkg_ordering(self):
        for i, a in enumerate(self.ORDERED):
            for j, b in enumerate(self.ORDERED):
                expected = (i > j) - (i < j)
                if {a, b} == {"1.0", "1.0-0"}:
                    expected = 0  # an absent revision is revision 0
                self.assertEqual(compare_debian_versions(a, b), expected, (a, b))

    def test_debian_security_updates_sort_after_their_base(self):
        versions = ["3.0.11-1~deb12u2", "3.0.13-1~deb12u1", "3.0.11-1~deb12u1", "3.0.11-1",
                    "3.0.15-1~deb12u1", "3.0.9-1"]
        self.assertEqual(sorted(versions, key=debian_version_key),
                         ["3.0.9-1", "3.0.11-1~deb12u1", "3.0.11-1~deb12u2", "3.0.11-1",
                          "3.0.13-1~deb12u1", "3.0.15-1~deb12u1"])
        self.assertEqual(compare_debian_versions("007", "7"), 0)
        self.assertEqual(compare_debian_versions("1:2.39.5-0+deb12u3", "2.40-1"), 1)

    def test_agrees_with_dpkg(self):
        dpkg = shutil.which("dpkg")
        if dpkg is None:
            raise unittest.SkipTest("dpkg is not installed")
        versions = self.ORDERED + ["3.0.11-1~deb12u2", "1:2.39.5-0+deb12u3", "2:9.0.1378-2", "1.2.3+git20230101",
                                   "20230311+deb12u1", "0.5.12-2", "1.0a~", "1.0+~", "10", "1.0.0-0+0"]
        pairs = list(zip(versions, reversed(versions))) + list(zip(versions, versions[1:]))
        for a, b in pairs:
            smaller = subprocess.run([dpkg, "--compare-versions", a, "lt", b]).returncode == 0
            equal = subprocess.run([dpkg, "--compare-versions", a, "eq", b]).returncode == 0
            self.assertEqual(compare_debian_versions(a, b), 0 if equal else -1 if smaller else 1, (a, b))

    @given(st.text(alphabet="0123456789.+~-:ab", max_size=12),
           st.text(alphabet="0123456789.+~-:ab", max_size=12),
           st.text(alphabet="0123456789.+~-:ab", max_size=12))
    @settings(max_examples=300, deadline=None)
    def test_a_total_order(self, a, b, c):
        ab, ba = compare_debian_versions(a, b), compare_debian_versions(b, a)
        self.assertEqual(ab, -ba)
        self.assertIn(ab, (-1, 0, 1))
        self.assertEqual(compare_debian_versions(a, a), 0)
        if ab <= 0 and compare_debian_versions(b, c) <= 0:
            self.assertLessEqual(compare_debian_versions(a, c), 0)

    @given(st.lists(st.text(alphabet=st.sampled_from("0123456789.+~-:abzAZ\u00e9\u20ac!"), max_size=10),
                    min_size=2, max_size=6))
    @settings(max_examples=500, deadline=None)
    def test_keys_order_as_dpkgs_comparison(self, versions):
        # non-ASCII characters as dpkg meets them: UTF-8 bytes, each after every ASCII one
        for a in versions:
            for b in versions:
                expected = dpkg_compare(a, b)
                self.assertEqual(compare_debian_versions(a, b), expected, (a, b))
                ka, kb = debian_version_key(a), debian_version_key(b)
                self.assertEqual((ka > kb) - (ka < kb), expected, (a, b))

    def test_keys_sort_in_dpkg_order(self):
        shuffled = list(reversed(self.ORDERED))
        random.Random(5).shuffle(shuffled)
        ordered = sorted(shuffled, key=debian_version_key)
        # "1.0" and "1.0-0" are equal: either order
        self.assertEqual([v for v in ordered if v != "1.0-0"], [v for v in self.ORDERED if v != "1.0-0"])
        self.assertEqual(debian_version_key("1.0"), debian_version_key("1.0-0"))
        self.assertEqual(debian_version_key("1:007"), debian_version_key("01:7"))
        # a number of any length, without int() and its digit limit
        self.assertEqual(compare_debian_versions("1." + "9" * 5000, "1.1" + "0" * 5000), -1)

    def test_check_packages(self):
        known = {
            "curl": [KnownRelease("7.88.1-10+deb12u14", True, False),
                     KnownRelease("7.88.1-10+deb12u15", True, False)],
            "telnetd": [KnownRelease("*", False, True)],
            "bash": [KnownRelease("5.2.15-2+b8", False, False)],
            "git": [KnownRelease("1:2.39.2-1", True, False)],
        }
        installed = [("curl", "7.88.1-10+deb12u14"), ("telnetd", "0.17-44"), ("bash", "5.2.15-2+b8"),
                     ("git", "1:2.39.5-0+deb12u3"), ("vim", "2:9.0.1378-2")]
        report = check_packages(installed, known)
        self.assertEqual(report.outdated, [("curl", "7.88.1-10+deb12u14", "7.88.1-10+deb12u15")])
        self.assertEqual(report.blacklisted, [("telnetd", "0.17-44")])
        # git is newer than its security release, but not a release the store knows
        self.assertEqual((report.count, report.ok, report.unknown), (5, 1, 2))
        self.assertEqual(report.evaluation, E.NONCOMPLIANT_MAJOR)
        self.assertEqual(report.summary(),
                         "processed 5 packages: 1 vulnerable, 1 blacklisted, 1 ok, 2 unknown")
        self.assertEqual(check_packages(installed, known, UpdatePolicy.NONE).outdated, [])


# dpkg's version comparison (lib/dpkg/version.c, verrevcmp), transcribed
# character by character over UTF-8 bytes, as the reference for the keys


def _dpkg_order(c: int) -> int:
    if 0x30 <= c <= 0x39:
        return 0
    if 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A:
        return c
    if c == 0x7E:
        return -1
    return c + 256 if c else 0


def _dpkg_verrevcmp(a: str, b: str) -> int:
    x, y = a.encode() + b"\0", b.encode() + b"\0"
    i = j = 0

    def digit(c):
        return 0x30 <= c <= 0x39

    while x[i] or y[j]:
        first_diff = 0
        while (x[i] and not digit(x[i])) or (y[j] and not digit(y[j])):
            ac, bc = _dpkg_order(x[i]), _dpkg_order(y[j])
            if ac != bc:
                return ac - bc
            i, j = i + 1, j + 1
        while x[i] == 0x30:
            i += 1
        while y[j] == 0x30:
            j += 1
        while digit(x[i]) and digit(y[j]):
            if not first_diff:
                first_diff = x[i] - y[j]
            i, j = i + 1, j + 1
        if digit(x[i]):
            return 1
        if digit(y[j]):
            return -1
        if first_diff:
            return first_diff
    return 0


def _split_version(version: str) -> tuple[int, str, str]:
    # as imvs.os reads a version: an epoch only when all digits
    epoch, colon, rest = version.partition(":")
    if not (colon and epoch.isascii() and epoch.isdigit()):
        epoch, rest = "0", version
    upstream, hyphen, revision = rest.rpartition("-")
    if not hyphen:
        upstream, revision = rest, ""
    return int(epoch), upstream, revision


def dpkg_compare(a: str, b: str) -> int:
    (ea, ua, ra), (eb, ub, rb) = _split_version(a), _split_version(b)
    result = (ea > eb) - (ea < eb) or _dpkg_verrevcmp(ua, ub) or _dpkg_verrevcmp(ra, rb)
    return (result > 0) - (result < 0)


def reference_judgement(installed, releases, updates: UpdatePolicy):
    """What the package check must find, written plainly: ``releases`` maps
    a name to its (release, security, blacklisted) rows."""
    count, ok, unknown, outdated, blacklisted = 0, 0, 0, [], []
    for name, release in installed:
        count += 1
        rows = releases.get(name)
        if not rows:
            unknown += 1
            continue
        if any(b for r, _, b in rows if r in (release, "*")):
            blacklisted.append((name, release))
            continue
        candidates = [r for r, s, b in rows if r != "*" and not b and (s or updates is UpdatePolicy.ALL)]
        newest = max(candidates, key=functools.cmp_to_key(dpkg_compare)) if candidates else None
        if updates is not UpdatePolicy.NONE and newest and dpkg_compare(release, newest) < 0:
            outdated.append((name, release, newest))
        elif any(r == release for r, _, _ in rows):
            ok += 1
        else:
            unknown += 1
    return count, ok, unknown, outdated, blacklisted


def _release(rng: random.Random) -> str:
    epoch = rng.choice(["", "", "", "1:", "2:"])
    upstream = ".".join(str(rng.randint(0, 12)) for _ in range(rng.randint(1, 3)))
    upstream += rng.choice(["", "", "~rc1", "a", "+dfsg", "+git20230101"])
    revision = rng.choice(["", f"-{rng.randint(0, 3)}", f"-{rng.randint(1, 3)}+deb12u{rng.randint(1, 4)}",
                           f"-{rng.randint(1, 3)}~deb12u1", f"-{rng.randint(1, 3)}+b1"])
    return epoch + upstream + revision


class PackageCheckTestsMixin(DatabaseMixin):
    """The package check as the store's thread runs it, against a real
    database: every installed package judged as a plain reference judges
    it, with the names looked up a few per query."""

    def setUp(self):
        super().setUp()
        self.db = PolicyDb(self.engine)

    def policy(self, seed: int = 11):
        """A product's releases (some security, some blacklisted, some
        packages blacklisted whole) and an endpoint's packages: current,
        behind, unknown releases and names, names installed twice."""
        rng = random.Random(seed)
        releases: dict[str, list[tuple[str, bool, bool]]] = {}
        for i in range(80):
            distinct: list[str] = []
            while len(distinct) < rng.randint(1, 6):
                candidate = _release(rng)
                # no two releases dpkg calls equal: "the newest" is one release
                if all(dpkg_compare(candidate, other) for other in distinct):
                    distinct.append(candidate)
            releases[f"pkg-{i:02d}"] = [(r, rng.random() < 0.5, False) for r in distinct]
        plain = [(n, r) for n, rows in releases.items() for r, s, _ in rows if not s]
        security = [(n, r) for n, rows in releases.items() for r, s, _ in rows if s]
        self.db.import_packages(PRODUCT, plain)
        self.db.import_packages(PRODUCT, security, security=True)
        self.db.import_packages("Other OS", [(n, "99:9") for n in releases], security=True)
        for name in rng.sample(sorted(releases), 12):
            rows = releases[name]
            k = rng.randrange(len(rows))
            release, security, _ = rows[k]
            rows[k] = (release, security, True)
            self.db.blacklist_package(PRODUCT, name, release)
        for name in rng.sample(sorted(releases), 3):
            releases[name].append(("*", False, True))
            self.db.blacklist_package(PRODUCT, name)
        installed = []
        for name, rows in releases.items():
            known = [r for r, _, _ in rows if r != "*"]
            roll = rng.random()
            release = rng.choice(known) if roll < 0.8 else _release(rng)
            installed.append((name, release))
            if roll > 0.9:  # multi-arch: the name again, the same or another release
                installed.append((name, rng.choice([release, rng.choice(known), _release(rng)])))
        installed += [(f"local-{i}", _release(rng)) for i in range(10)]
        rng.shuffle(installed)
        return releases, installed

    def check(self, installed, updates=UpdatePolicy.SECURITY, product=PRODUCT):
        report = self.db.run(check_installed_packages, product, installed, updates)
        return report.count, report.ok, report.unknown, report.outdated, report.blacklisted

    def test_every_package_is_judged_as_the_reference_judges_it(self):
        releases, installed = self.policy()
        # a few names per query: chunk boundaries inside the endpoint's list
        self.patch(imvs.os, "SQL_CHUNK", 7)
        self.patch(imvs.os, "ARRAY_CHUNK", 7)
        for updates in UpdatePolicy:
            expected = reference_judgement(installed, releases, updates)
            self.assertEqual(self.check(installed, updates), expected, updates)
            self.assertEqual(check_packages(installed, self.db.run(known_releases, PRODUCT,
                                                                   [n for n, _ in installed]), updates),
                             self.db.run(check_installed_packages, PRODUCT, installed, updates))
        # the data exercises every verdict
        count, ok, unknown, outdated, blacklisted = reference_judgement(installed, releases,
                                                                        UpdatePolicy.SECURITY)
        self.assertTrue(ok and unknown and outdated and blacklisted)
        self.assertGreater(count, len({n for n, _ in installed}))  # names installed twice
        # another product's releases are its own: no blacklisting, one newer release of each
        count, ok, unknown, outdated, blacklisted = self.check(installed, product="Other OS")
        self.assertEqual((ok, unknown, blacklisted), (0, 10, []))
        self.assertEqual({newer for _, _, newer in outdated}, {"99:9"})
        self.assertEqual(self.check(installed, product="No such OS")[1:3], (0, len(installed)))

    def test_names_are_looked_up_a_chunk_at_a_time(self):
        releases, installed = self.policy()
        names = {n for n, _ in installed}
        statements = []

        def seen(connection, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith("SELECT"):
                statements.append(statement)

        sa.event.listen(self.engine, "before_cursor_execute", seen)
        self.addCleanup(sa.event.remove, self.engine, "before_cursor_execute", seen)
        self.check(installed)
        chunk = imvs.os.ARRAY_CHUNK if self.engine.dialect.name == "postgresql" else imvs.os.SQL_CHUNK
        self.assertEqual(len(statements), 1 + -(-len(names) // chunk))  # the product, then the names
        statements.clear()
        self.patch(imvs.os, "SQL_CHUNK", 10)
        self.patch(imvs.os, "ARRAY_CHUNK", 10)
        self.check(installed)
        self.assertEqual(len(statements), 1 + -(-len(names) // 10))
        statements.clear()
        self.check(installed, product="No such OS")
        self.assertEqual(len(statements), 1)

    def summary(self, report):
        return report.count, report.ok, report.unknown, report.outdated, report.blacklisted

    def test_a_list_seen_again_is_judged_from_memory_until_the_policy_changes(self):
        releases, installed = self.policy()
        reports = PackageReports(size=8)
        statements = []

        def seen(connection, cursor, statement, parameters, context, executemany):
            statements.append(statement)

        sa.event.listen(self.engine, "before_cursor_execute", seen)
        self.addCleanup(sa.event.remove, self.engine, "before_cursor_execute", seen)
        first = self.known(reports, PRODUCT, installed)
        self.assertEqual(self.summary(first), reference_judgement(installed, releases, UpdatePolicy.SECURITY))
        statements.clear()
        again = self.known(reports, PRODUCT, list(installed))
        self.assertIs(again, first)
        self.assertEqual((reports.hits, reports.misses), (1, 1))
        self.assertEqual(len([s for s in statements if s.lstrip().upper().startswith("SELECT")]), 1,
                         "only the generation is read")
        # another update policy, product or list is another report
        self.assertIsNot(self.known(reports, PRODUCT, installed, UpdatePolicy.NONE), first)
        self.assertIsNot(self.known(reports, "Other OS", installed), first)
        self.assertIsNot(self.known(reports, PRODUCT, installed[1:]), first)
        # nac-admin blacklisting a package it called ok
        name, release = next((n, r) for n, r in installed
                             if not any(b for known, _, b in releases[n] if known in (r, "*"))
                             if n in releases)
        self.db.blacklist_package(PRODUCT, name, release)
        releases[name] = [(r, s, b or r == release) for r, s, b in releases[name]]
        after = self.known(reports, PRODUCT, installed)
        self.assertIn((name, release), after.blacklisted)
        self.assertEqual(self.summary(after), reference_judgement(installed, releases, UpdatePolicy.SECURITY))
        # a change made with plain SQL counts as well
        with self.engine.begin() as connection:
            connection.execute(sa.update(m.Version.__table__).values(blacklisted=False))
        cleared = self.known(reports, PRODUCT, installed)
        self.assertEqual(cleared.blacklisted, [])

    def test_only_the_most_recent_lists_are_kept(self):
        _releases, installed = self.policy()
        reports = PackageReports(size=2)
        lists = [installed[i:] for i in range(3)]
        made = [self.known(reports, PRODUCT, each) for each in lists]
        self.assertIs(self.known(reports, PRODUCT, lists[2]), made[2])
        self.assertIsNot(self.known(reports, PRODUCT, lists[0]), made[0])  # forgotten
        self.assertEqual(reports.hits, 1)
        nothing = PackageReports(size=0)
        self.assertIsNot(self.known(nothing, PRODUCT, installed),
                         self.known(nothing, PRODUCT, installed))

    def test_a_list_without_a_digest_is_judged_afresh(self):
        self.db.import_packages(PRODUCT, [("a", "1")])
        self.db.blacklist_package(PRODUCT, "a", "1")
        reports = PackageReports()
        installed = [("a", "1"), ("d", "1")]
        first, again = (self.db.read(reports.check, PRODUCT, installed) for _ in range(2))
        self.assertIsNot(first, again)
        self.assertEqual(again.blacklisted, [("a", "1")])
        self.assertEqual((reports.hits, reports.misses), (0, 0))
        # on a plain connection (PolicyStore.read) as in an ORM session
        self.assertEqual(self.known(reports, PRODUCT, installed).blacklisted, [("a", "1")])
        self.assertIs(self.db.read(reports.check, PRODUCT, installed,
                                   digest=InstalledPackages(tuple(installed)).digest),
                      self.known(reports, PRODUCT, installed))

    def known(self, reports, product, installed, updates=UpdatePolicy.SECURITY):
        """``reports.check`` given the list's digest, as the OS IMV gives it."""
        return self.db.run(reports.check, product, installed, updates,
                           digest=InstalledPackages(tuple(installed)).digest)

    def test_the_lookup_index_holds_every_column_read(self):
        indexes = {i["name"]: i["column_names"] for i in sa.inspect(self.engine).get_indexes("versions")}
        self.assertEqual(indexes["ix_versions_lookup"],
                         ["package_id", "product_id", "release", "security", "blacklisted"])


class SqlitePackageCheckTests(SqliteBackend, PackageCheckTestsMixin, unittest.TestCase):
    def test_sqlite_reads_the_lookup_index_alone_in_name_order(self):
        self.db.import_packages(PRODUCT, [("bash", "5.2.15-2+b8")])
        query = imvs.os._RELEASES.params(product_id=1, names=["bash", "curl"])
        sql = str(query.compile(self.engine, compile_kwargs={"literal_binds": True}))
        with self.engine.connect() as connection:
            plan = " | ".join(row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        self.assertIn("COVERING INDEX ix_versions_lookup (package_id=?)", plan)
        self.assertNotIn("TEMP B-TREE", plan)  # the name order comes from the lookup itself


class PostgresPackageCheckTests(PostgresBackend, PackageCheckTestsMixin, unittest.TestCase):
    pass


class PolicyHelperTests(unittest.TestCase):
    def test_evaluations_map_to_the_configured_recommendations(self):
        policy = VerdictPolicy(A.ISOLATE, A.NO_ACCESS, A.ALLOW)
        self.assertEqual([policy.recommendation(e) for e in E],
                         [A.ALLOW, A.ISOLATE, A.NO_ACCESS, A.ALLOW, A.ALLOW])

    def test_checks_combine(self):
        self.assertEqual(combine_checks([E.COMPLIANT, E.COMPLIANT]), E.COMPLIANT)
        self.assertEqual(combine_checks([E.COMPLIANT, None]), E.DONT_KNOW)
        self.assertEqual(combine_checks([None, E.NONCOMPLIANT_MINOR, E.ERROR]), E.NONCOMPLIANT_MINOR)
        self.assertEqual(combine_checks([E.NONCOMPLIANT_MAJOR, E.NONCOMPLIANT_MINOR]), E.NONCOMPLIANT_MAJOR)
        self.assertEqual(combine_checks([E.COMPLIANT, E.ERROR]), E.ERROR)
        self.assertEqual(combine_checks([]), E.DONT_KNOW)

    def test_remediation_string_is_strongswan_xml(self):
        remediation = RemediationString("en", max_items=2)
        self.assertEqual(remediation.encode(), "")
        remediation.add_instruction({"en": "Blacklisted <Packages>"}, {"en": "Remove & retry"},
                                    {"en": "Remove:"}, ["a", "b", "c"])
        remediation.add_instruction({"en": "Default Password", "de": "Default Passwort"},
                                    {"en": "Change it"})
        self.assertEqual(remediation.encode(),
                         '<?xml version="1.0" encoding="UTF-8"?>\n<remediationinstructions>\n'
                         "  <instruction>\n    <title>Blacklisted &lt;Packages&gt;</title>\n"
                         "    <description>Remove &amp; retry</description>\n"
                         "    <itemsheader>Remove:</itemsheader>\n    <items>\n"
                         "      <item>a</item>\n      <item>b</item>\n    </items>\n  </instruction>\n"
                         "  <instruction>\n    <title>Default Password</title>\n"
                         "    <description>Change it</description>\n  </instruction>\n"
                         "</remediationinstructions>")
        self.assertEqual(remediation.omitted, 1)
        parseString(remediation.encode().encode())  # well-formed


class RemediationAttributeTests(unittest.TestCase):
    """What the OS IMV sends its collector is the IETF Remediation Instructions
    attribute with strongSwan's XML, which parses back."""

    def test_round_trip(self):
        remediation = RemediationString("en")
        remediation.add_instruction({"en": "IP Packet Forwarding"}, {"en": "Please disable it"})
        attribute = RemediationInstructions.for_string(remediation.encode(), "en")
        [parsed] = PaMessage.parse(PaMessage(1, (AssessmentResult(1), attribute)).build()).find(
            RemediationInstructions)
        self.assertEqual((parsed.string, parsed.language), (remediation.encode(), "en"))
