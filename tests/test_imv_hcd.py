"""The HCD IMV through the real TNCS core, fed by nac's client playing a
printer from a device file (its HCD collector): a complete printer, a
default password, missing mandatory attributes, forwarding, user
applications, minimum firmware versions, required subtypes, attributes
pushed or asked for, a certification state in segments, the device of
strongSwan's HCD test scenario, endpoints that are no printers; the
measurement in the policy store; the device file's errors; the options and
their documentation."""

from __future__ import annotations

import configparser
import contextlib
import copy
import importlib
import io
import json
import re
from pathlib import Path

import sqlalchemy as sa
from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from imvs.hcd import SUBTYPES, HcdImv, firmware_rules, parse_version
from imvs.test import TestImv
from nac import config
from nac.client import cli
from nac.client.collectors import make_collectors
from nac.client.collectors.hcd import HcdFileError, HcdImc, load_hcd_device
from nac.client.collectors.test import TestImc
from nac.client.imc import IImc
from nac.db import models as m
from nac.ifimv import ActionRecommendation as A
from nac.ifimv import EvaluationResult as E
from nac.interfaces import IImv
from nac.pa import NextSegment, PaMessage, PaVendor
from nac.pa.ietf import AttributeRequest, ForwardingStatus, PortEntry
from nac.pa.pwg import PwgAttributeType as T
from nac.pa.pwg import PwgSubtype, SoftwareVersion
from nac.tnccs.imv_manager import load_imv
from tests.posture import ETC, PT_EAP, ImvHarness, PolicyStoreMixin, tmpdir
from tests.test_db import PostgresBackend, SqliteBackend
from tests.test_imv_os import check_documented

PWG = PaVendor.PWG
SYSTEM, INTERFACE = PwgSubtype.HCD_SYSTEM, PwgSubtype.HCD_INTERFACE
REPO = Path(__file__).resolve().parents[1]

#: A printer that reports everything nac's HCD IMV requires by default.
PRINTER = {
    "subtypes": {
        "system": {
            "attributes_natural_language": "en",
            "machine_type_model": "strongPrint Laser X.509a",
            "vendor_name": "ITA-HSR",
            "vendor_smi_code": 36906,
            "default_password_enabled": False,
            "forwarding_enabled": "disabled",
            "pstn_fax_enabled": True,
            "time_source": "0.ch.pool.ntp.org",
            "user_application_enabled": False,
            "user_application_persistence_enabled": False,
            "certification_state": "000102030405060708090a0b0c0d0e0f",
            "configuration_state": "f0f1f2f3f4f5f6f7",
            "firewall_setting": [{"protocol": "tcp", "port": 631, "blocked": False},
                                 {"protocol": "udp", "port": 161, "blocked": True}],
            "firmware": [
                {"name": "Firmware ABC for ARMv6 32bit strongPrint OS 1.0",
                 "patches": "security patch CVE-2014-1630 2014-05-08\r\n",
                 "string_version": "1.0.7", "version": "00000001000000000000000700000000"},
                {"name": "Firmware XYZ for ARMv6 32 bit strongPrint OS 1.0", "patches": "",
                 "string_version": "10.1.2", "version": "10.1.2"},
            ],
            "resident_application": [
                {"name": "Resident App XYZ", "patches": "xmas patch 2014-12-24\r\n",
                 "string_version": "2.5", "version": "2.5"},
            ],
        },
    },
}


def printer(**changes) -> dict:
    """PRINTER with ``changes`` to its system section (None removes a key)."""
    device = copy.deepcopy(PRINTER)
    system = device["subtypes"]["system"]
    for key, value in changes.items():
        if value is None:
            system.pop(key, None)
        else:
            system[key] = value
    return device


def write_device(testcase, device: dict) -> str:
    path = tmpdir(testcase, "nac-hcd-") / "printer.json"
    path.write_text(json.dumps(device))
    return str(path)


def requested(result) -> dict[int, set[int]]:
    """PWG subtype -> the PWG attribute types the IMV asked for in it."""
    out: dict[int, set[int]] = {}
    for batch in result.server_batches:
        for msg in batch.messages:
            if getattr(msg, "pa_vendor", None) != PWG:
                continue
            for attribute in PaMessage.parse(msg.body).find(AttributeRequest):
                out.setdefault(msg.pa_subtype, set()).update(t for v, t in attribute.requested if v == PWG)
    return out


class HcdFlowTests(ImvHarness, unittest.TestCase):
    """nac's client playing a printer against the core."""

    @defer.inlineCallbacks
    def judge_printer(self, device: dict, options=None, **kw):
        imc = HcdImc.from_file(write_device(self, device))
        result = yield self.assess([imc], [HcdImv(options or {})], **kw)
        return result, result.verdict("hcd")

    @defer.inlineCallbacks
    def test_complete_printer_is_allowed(self):
        result, verdict = yield self.judge_printer(PRINTER)
        self.assertEqual((result.decision.access, verdict.recommendation, verdict.evaluation, verdict.reason),
                         ("allowed", A.ALLOW, E.COMPLIANT, ""))
        # asked once for what imc-hcd does not push; no user applications (they are disabled)
        self.assertEqual(requested(result), {SYSTEM: {
            T.FIREWALL_SETTING, T.FIRMWARE_NAME, T.RESIDENT_APPLICATION_NAME, T.CERTIFICATION_STATE,
            T.CONFIGURATION_STATE}})
        self.assertEqual(result.rounds, 2)
        [assessment] = result.outcome.imv_results
        self.assertEqual((assessment.imc_name, assessment.result_label), ("HCD", "compliant"))

    @defer.inlineCallbacks
    def test_default_password_is_denied_with_the_reason(self):
        result, verdict = yield self.judge_printer(printer(default_password_enabled=True))
        self.assertEqual((result.decision.access, verdict.recommendation, verdict.evaluation),
                         ("denied", A.NO_ACCESS, E.NONCOMPLIANT_MAJOR))
        self.assertEqual([r.text for r in result.outcome.reasons],
                         ["Improper hardcopy device settings were detected"])
        [remediation] = result.outcome.remediation
        self.assertIn("<title>Default Password</title>", remediation.text)
        # policy: ignored, it passes
        result, verdict = yield self.judge_printer(printer(default_password_enabled=True),
                                         {"default_password_enabled": "ignore"})
        self.assertEqual(verdict.recommendation, A.ALLOW)

    @defer.inlineCallbacks
    def test_missing_mandatory_attributes_are_denied_with_the_reason(self):
        result, verdict = yield self.judge_printer(printer(certification_state=None, firewall_setting=None))
        self.assertEqual((result.decision.access, verdict.evaluation, verdict.reason),
                         ("denied", E.NONCOMPLIANT_MAJOR, "Mandatory HCD attributes are missing"))
        [remediation] = result.outcome.remediation
        self.assertIn("<item>system/firewall_setting</item>", remediation.text)
        self.assertIn("<item>system/certification_state</item>", remediation.text)
        # asked for, not required
        result, verdict = yield self.judge_printer(printer(certification_state=None, firewall_setting=None),
                                         {"optional_attributes": [T.FIREWALL_SETTING, T.CERTIFICATION_STATE]})
        self.assertEqual(verdict.recommendation, A.ALLOW)

    @defer.inlineCallbacks
    def test_user_applications(self):
        # enabled, but none listed: the User Application Name is missing
        result, verdict = yield self.judge_printer(printer(user_application_enabled=True))
        self.assertEqual(verdict.reason, "Mandatory HCD attributes are missing")
        self.assertIn(T.USER_APPLICATION_NAME, requested(result)[SYSTEM])
        apps = [{"name": "My Java Photo App", "string_version": "5.2.3.8.1",
                 "version": "00000005000000020000000300080001"}]
        result, verdict = yield self.judge_printer(printer(user_application_enabled=True, user_application=apps),
                                         {"user_application_enabled": "minor", "non_compliant_minor": "isolate"})
        self.assertEqual((result.decision.access, verdict.evaluation), ("isolate", E.NONCOMPLIANT_MINOR))
        self.assertIn("<title>User Applications</title>", result.outcome.remediation[0].text)

    @defer.inlineCallbacks
    def test_forwarding_and_fax(self):
        result, verdict = yield self.judge_printer(printer(forwarding_enabled="enabled"))
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.NONCOMPLIANT_MINOR))
        result, verdict = yield self.judge_printer(printer(forwarding_enabled="unknown"))
        self.assertEqual(verdict.evaluation, E.COMPLIANT)
        # PSTN fax is enabled in PRINTER; ignored unless the policy says otherwise
        result, verdict = yield self.judge_printer(PRINTER, {"pstn_fax_enabled": "major",
                                                             "non_compliant_major": "isolate"})
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.ISOLATE, E.NONCOMPLIANT_MAJOR))

    @defer.inlineCallbacks
    def test_minimum_firmware_versions(self):
        rules = firmware_rules("Firmware ABC*: 1.0.8; Firmware XYZ*: 10.1.2; Nothing like it: 99")
        result, verdict = yield self.judge_printer(PRINTER, {"firmware_min_versions": rules})
        self.assertEqual((verdict.recommendation, verdict.evaluation, verdict.reason),
                         (A.NO_ACCESS, E.NONCOMPLIANT_MINOR, "Outdated hardcopy device firmware was found"))
        [remediation] = result.outcome.remediation
        self.assertIn("<item>Firmware ABC for ARMv6 32bit strongPrint OS 1.0 1.0.7 (at least 1.0.8)</item>",
                      remediation.text)
        self.assertNotIn("Firmware XYZ", remediation.text)  # 10.1.2 is enough
        # met exactly, and service packs count
        for rule, access in (("Firmware ABC*: 1.0.7", "allowed"), ("Firmware ABC*: 1.0.7.0.1", "denied")):
            result, verdict = yield self.judge_printer(PRINTER, {"firmware_min_versions": firmware_rules(rule)})
            self.assertEqual(result.decision.access, access, rule)

    @defer.inlineCallbacks
    def test_required_subtypes(self):
        options = {"subtypes": [SYSTEM, INTERFACE]}
        result, verdict = yield self.judge_printer(PRINTER, options)
        self.assertEqual(verdict.reason, "Mandatory HCD attributes are missing")
        self.assertEqual(requested(result)[INTERFACE], {T.ATTRIBUTES_NATURAL_LANGUAGE, T.FIRMWARE_NAME,
                                                        T.RESIDENT_APPLICATION_NAME})
        device = copy.deepcopy(PRINTER)
        device["subtypes"]["interface"] = {
            "attributes_natural_language": "de",
            "firmware": [{"name": "Interface Firmware", "string_version": "7.8", "version": "7.8"}],
            "resident_application": [{"name": "Resident Interface App", "version": "2.5"}]}
        result, verdict = yield self.judge_printer(device, {**options, "firmware_min_versions": firmware_rules(
            "Interface*: 7.9")})
        # complete now; the interface's firmware is judged too
        self.assertEqual(verdict.reason, "Outdated hardcopy device firmware was found")

    @defer.inlineCallbacks
    def test_pushed_quadruples_are_not_asked_for(self):
        result, verdict = yield self.judge_printer({**PRINTER, "push_info": True})
        self.assertEqual(requested(result), {SYSTEM: {T.FIREWALL_SETTING, T.CERTIFICATION_STATE,
                                                      T.CONFIGURATION_STATE}})
        self.assertEqual(verdict.recommendation, A.ALLOW)

    @defer.inlineCallbacks
    def test_large_certification_state_arrives_in_segments(self):
        state = bytes(range(256)) * 160  # 40,960 octets, more than a PT-EAP message
        result, verdict = yield self.judge_printer(printer(certification_state=state.hex()), limits=PT_EAP)
        self.assertEqual(verdict.recommendation, A.ALLOW)
        # the collector sent it in envelopes under the IMV's contract, the IMV asked for the rest
        self.assertTrue(result.sent(SYSTEM, NextSegment))

    @defer.inlineCallbacks
    def test_the_device_of_strongswans_test_scenario_is_denied(self):
        """strongSwan's tnccs-20-hcd scenario: its imc-hcd sends no firewall
        setting and the console, marker and finisher have no firmware, so
        imv-hcd (all six subtypes) denies the printer."""
        device = {"subtypes": {
            "system": {**printer(firewall_setting=None, user_application_enabled=True,
                                 user_application=[{"name": "Print Your Dinosaur!", "version": "1.0"}])
                       ["subtypes"]["system"]},
            "console": {"attributes_natural_language": "ru"},
            "marker": {"attributes_natural_language": "fr"},
            "finisher": {"attributes_natural_language": "de"},
            "interface": {"attributes_natural_language": "en",
                          "firmware": [{"name": "Interface Firmware", "version": "7.8"}],
                          "resident_application": [{"name": "Resident Interface App", "version": "2.5"}]},
            "scanner": {"attributes_natural_language": "en",
                        "firmware": [{"name": "Scanner Firmware", "version": "2.5.3"}],
                        "user_application": [{"name": "EasyScan", "version": "2.2.3.5.7"}]},
        }}
        result, verdict = yield self.judge_printer(device, {"subtypes": list(SUBTYPES)})
        self.assertEqual((result.outcome.assessment_label, result.outcome.recommendation_label),
                         ("non-compliant major", "Access Denied"))
        self.assertEqual([r.text for r in result.outcome.reasons], ["Mandatory HCD attributes are missing"])
        items = result.outcome.remediation[0].text
        # user applications are enabled: every subtype must list its own
        for missing in ("system/firewall_setting", "console/firmware_name", "marker/resident_application_name",
                        "scanner/resident_application_name", "interface/user_application_name"):
            self.assertIn(f"<item>{missing}</item>", items)
        self.assertNotIn("interface/firmware_name", items)
        self.assertNotIn("scanner/user_application_name", items)

    @defer.inlineCallbacks
    def test_an_endpoint_without_hcd_attributes_gets_no_result(self):
        result = yield self.assess([TestImc("allow")], [HcdImv(), TestImv()])
        verdict = result.verdict("hcd")
        self.assertEqual((verdict.recommendation, verdict.evaluation, verdict.reason),
                         (A.NO_RECOMMENDATION, E.DONT_KNOW, ""))
        # the other IMV decides about a host that is no printer
        self.assertEqual(result.decision.access, "allowed")
        self.assertLessEqual(result.rounds, 2)
        result = yield self.assess([], [HcdImv({"no_result": "isolate"})])
        verdict = result.verdict("hcd")
        self.assertEqual((verdict.recommendation, verdict.reason),
                         (A.ISOLATE, "No hardcopy device attributes were received"))


class StoreChecks(PolicyStoreMixin, ImvHarness):
    @defer.inlineCallbacks
    def test_the_printer_is_recorded(self):
        imc = HcdImc.from_file(write_device(self, printer(default_password_enabled=True)))
        yield self.assess([imc], [HcdImv()])
        [session] = self.db.list_sessions()
        _, [result] = self.db.session_results(session.id)
        self.assertEqual((result.imv_name, result.recommendation, result.evaluation, result.reason),
                         ("hcd", A.NO_ACCESS, E.NONCOMPLIANT_MAJOR,
                          "Improper hardcopy device settings were detected"))
        [payload] = self.db.run(lambda s: [r.payload for r in s.scalars(
            sa.select(m.Measurement).where(m.Measurement.kind == "hcd"))])
        system = payload["subtypes"]["system"]
        self.assertEqual((system["vendor_smi_code"], system["default_password_enabled"],
                          system["forwarding_enabled"], system["machine_type_model"]),
                         (36906, True, "disabled", "strongPrint Laser X.509a"))
        self.assertEqual([(f["name"][:12], f["version"]) for f in system["firmware"]],
                         [("Firmware ABC", "1.0.7.0.0"), ("Firmware XYZ", "10.1.2.0.0")])
        self.assertEqual(system["certification_state"]["length"], 16)
        self.assertEqual(system["firewall_setting"][1], {"protocol": 17, "port": 161, "blocked": True})
        self.assertEqual((payload["missing"], payload["evaluation"]), ([], "non-compliant major"))


    @defer.inlineCallbacks
    def test_what_is_kept_of_a_device_is_bounded(self):
        firmware = [{"name": f"Firmware {i}", "patches": "p" * 2000, "version": "1"} for i in range(300)]
        imc = HcdImc.from_file(write_device(self, {**printer(firmware=firmware), "push_info": True}))
        yield self.assess([imc], [HcdImv()])
        [payload] = self.db.run(lambda s: [r.payload for r in s.scalars(
            sa.select(m.Measurement).where(m.Measurement.kind == "hcd"))])
        system = payload["subtypes"]["system"]
        self.assertEqual((len(system["firmware"]), system["software_not_kept"]), (256, 44))
        self.assertEqual(len(system["firmware"][0]["patches"]), 1024)


class SqliteStoreTests(SqliteBackend, StoreChecks, unittest.TestCase):
    pass


class PostgresStoreTests(PostgresBackend, StoreChecks, unittest.TestCase):
    pass


class DeviceFileTests(unittest.TestCase):
    def load_error(self, document) -> str:
        path = tmpdir(self) / "d.json"
        path.write_text(document if isinstance(document, str) else json.dumps(document))
        with self.assertRaises(HcdFileError) as caught:
            load_hcd_device(path)
        text = str(caught.exception)
        self.assertTrue(text.startswith(str(path)), text)
        self.assertNotIn("\n", text)
        return text

    def test_values_as_imc_hcd_has_them(self):
        device = load_hcd_device(write_device(self, PRINTER))
        system = device.subunit(SYSTEM)
        self.assertEqual((system.vendor_smi_code, system.forwarding_enabled, system.certification_state[:2]),
                         (36906, ForwardingStatus.DISABLED, b"\x00\x01"))
        self.assertEqual([s.version for s in system.software["firmware"]],
                         [SoftwareVersion(1, 0, 7), SoftwareVersion(10, 1, 2)])
        self.assertEqual(system.firewall_setting, (PortEntry(6, 631, False), PortEntry(17, 161, True)))
        self.assertIsNone(device.subunit(INTERFACE))

    def test_errors_name_the_key(self):
        self.assertIn("not JSON", self.load_error("{"))
        self.assertIn("subtypes.system.vendor_name: must be a string", self.load_error(printer(vendor_name=5)))
        self.assertIn("subtypes.system.colour: unknown key", self.load_error(printer(colour="red")))
        self.assertIn("subtypes.system.firmware[1].version: must be 1 to 5 dotted numbers",
                      self.load_error(printer(firmware=[{"name": "a"}, {"name": "b", "version": "1.x"}])))
        self.assertIn("subtypes.system.vendor_smi_code: must be a 24-bit SMI code",
                      self.load_error(printer(vendor_smi_code=1 << 24)))
        self.assertIn("subtypes.system.certification_state: must be hexadecimal",
                      self.load_error(printer(certification_state="xyz")))
        self.assertIn("subtypes.tray: unknown subtype", self.load_error({"subtypes": {"tray": {}}}))
        self.assertIn("subtypes.interface.vendor_name: belongs in the system section",
                      self.load_error({"subtypes": {"interface": {"vendor_name": "x"}}}))
        self.assertIn("subtypes.system.firewall_setting[0].port",
                      self.load_error(printer(firewall_setting=[{"port": 70000}])))
        with self.assertRaises(HcdFileError) as caught:
            load_hcd_device(tmpdir(self) / "missing.json")
        self.assertIn("cannot read the HCD attributes file", str(caught.exception))

    def test_collector_contract(self):
        imc = HcdImc.from_file(write_device(self, PRINTER))
        self.assertTrue(verifyObject(IImc, imc))
        self.assertEqual(len(imc.subscriptions), 6)
        with self.assertRaises(ValueError) as caught:
            make_collectors(["hcd"])
        self.assertIn("--hcd-attributes", str(caught.exception))
        [made] = make_collectors(["hcd"], settings={"hcd": {"path": write_device(self, PRINTER)}})
        self.assertEqual(made.device, imc.device)

    def test_client_refuses_a_bad_file_in_one_line(self):
        path = tmpdir(self) / "bad.json"
        path.write_text(json.dumps(printer(vendor_smi_code="ITA")))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = cli.main(["127.0.0.1:1", "--cacert", str(path), "--client", "carol", "--secret", "x",
                               "--collectors", "", "--hcd-attributes", str(path)])
        self.assertEqual(status, 2)
        self.assertEqual(err.getvalue(), f"nac-pt-tls-client: {path}: subtypes.system.vendor_smi_code: "
                                         "must be a 24-bit SMI code (0-16777215)\n")


class HcdImvContractTests(unittest.TestCase):
    def test_provides_the_imv_interface(self):
        imv = HcdImv()
        self.assertTrue(verifyObject(IImv, imv))
        self.assertEqual(set(imv.subscriptions), {(PWG, s) for s in (5, 4, 0x0A, 0x1E, 0x28, 0x32)})

    def test_sample_configuration_documents_every_option_with_its_default(self):
        check_documented(self, "hcd", "imvs.hcd:HcdImv", HcdImv)
        imv = load_imv("imvs.hcd:HcdImv", config.load(str(ETC)).imv_options)
        self.assertEqual((imv.subtypes, imv.optional, imv.firmware_rules), ((SYSTEM,), frozenset(), ()))

    def test_options_are_validated(self):
        path = self.mktemp()
        Path(path).write_text("[imv:hcd]\nsubtypes = system, scanner\noptional_attributes = firewall_setting\n"
                              "firmware_min_versions =\n    Firmware ABC*: 1.0.8\n    Interface Firmware: 7.9.1.2.3\n"
                              "forwarding_enabled = ignore\n")
        imv = load_imv("imvs.hcd:HcdImv", config.load(path).imv_options)
        self.assertEqual((imv.subtypes, imv.optional, imv.severities["forwarding_enabled"]),
                         ((SYSTEM, PwgSubtype.HCD_SCANNER), frozenset({T.FIREWALL_SETTING}), None))
        self.assertEqual([str(rule) for rule in imv.firmware_rules],
                         ["Firmware ABC*: 1.0.8", "Interface Firmware: 7.9.1.2.3"])
        Path(path).write_text("[imv:hcd]\nsubtypes = tray\noptional_attributes = colour\n"
                              "firmware_min_versions = Firmware ABC\ndefault_password_enabled = fatal\n")
        with self.assertRaises(config.ConfigError) as caught:
            load_imv("imvs.hcd:HcdImv", config.load(path).imv_options)
        problems = caught.exception.problems
        self.assertEqual(sorted(re.match(rf"{re.escape(path)}: \[imv:hcd\] (\w+): ", p).group(1) for p in problems),
                         ["default_password_enabled", "firmware_min_versions", "optional_attributes", "subtypes"])

    def test_versions(self):
        self.assertEqual(parse_version("7"), SoftwareVersion(7))
        for bad in ("", "1..2", "1.2.3.4.5.6", "1.2.3.65536", "-1", "١"):
            with self.assertRaises(ValueError):
                parse_version(bad)

    def test_registered_under_the_entry_point_name(self):
        cfg = configparser.ConfigParser()
        cfg.read(REPO / "setup.cfg")
        entries = dict(line.split(" = ") for line in cfg["options.entry_points"]["nac.imvs"].strip().splitlines())
        module, _, attr = entries["hcd"].partition(":")
        self.assertIs(getattr(importlib.import_module(module), attr), HcdImv)
