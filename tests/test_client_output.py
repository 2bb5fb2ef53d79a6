"""What the clients print: `--json` and text use the same names (PB-TNC's
Access Recommendation names, RFC 5793 §4.7), remediation instructions are
text lines rather than the XML they came in, nothing from the server
drives the terminal, debug lines quote message names once, and
`nac-decode --hex` names the right position of bad input."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from contextlib import redirect_stderr

from twisted.trial import unittest

from imvs.policy import RemediationString
from nac.client.cli import format_text
from nac.client.eap_cli import format_result
from nac.client.imc import ImvAssessment
from nac.client.pb_client import AssessmentOutcome, Reason, Remediation
from nac.client.radius import RadiusResult, ReplyAttribute
from nac.client.remediation import Instruction, parse_instructions, printable, remediation_lines
from nac.decode import main as decode_main
from nac.eap.peer import PeerStatus
from nac.pb import AccessRecommendation, AssessmentResult
from tests.nacserver import NacServer, repo_env


def instructions_xml(*ports: str) -> str:
    remediation = RemediationString("en")
    remediation.add_instruction({"en": "Open Server Ports"}, {"en": "Open Internet ports have been detected"},
                                {"en": "Please close the following server ports:"}, ports)
    return remediation.encode()


def outcome(recommendation: AccessRecommendation, **kw) -> AssessmentOutcome:
    return AssessmentOutcome(recommendation=recommendation, assessment=AssessmentResult.NON_COMPLIANT_MINOR, **kw)


class JsonAndTextAgreeTests(unittest.TestCase):
    def test_recommendation_and_assessment_are_the_same_words(self):
        for rec, name in ((AccessRecommendation.ALLOWED, "Access Allowed"),
                          (AccessRecommendation.DENIED, "Access Denied"),
                          (AccessRecommendation.QUARANTINED, "Quarantined")):
            result = outcome(rec)
            data = result.to_json()
            self.assertEqual((data["recommendation"], data["assessment"]), (name, "non-compliant minor"))
            text = format_text(result).splitlines()
            self.assertEqual(text[:2], [f"assessment result: {data['assessment']}",
                                        f"access recommendation: {data['recommendation']}"])
        empty = AssessmentOutcome()
        self.assertEqual((empty.to_json()["recommendation"], empty.to_json()["assessment"]), (None, None))
        self.assertEqual(format_text(empty).splitlines()[:2],
                         ["assessment result: none", "access recommendation: none"])

    def test_eap_client_text_and_json(self):
        result = RadiusResult(code=2, attributes=(ReplyAttribute("Filter-Id", "allow"),),
                              eap_status=PeerStatus.SUCCESS, mppe_keys_ok=True,
                              posture=outcome(AccessRecommendation.QUARANTINED), round_trips=8,
                              eap_method="EAP_TTLS")
        data, text = result.to_json(), format_result(result)
        self.assertEqual((data["radius"]["code"], data["radius"]["eap"], data["recommendation"]),
                         ("Access-Accept", "success", "Quarantined"))
        for line in ("RADIUS Access-Accept after 8 round trips", "EAP EAP_TTLS: success", "  Filter-Id = allow",
                     "access recommendation: Quarantined"):
            self.assertIn(line, text.splitlines())


class RemediationTextTests(unittest.TestCase):
    def test_strongswan_instructions_become_lines(self):
        xml = instructions_xml("tcp/41963", "udp/5353")
        result = outcome(AccessRecommendation.DENIED,
                         remediation=(Remediation(text=xml, language="en"),
                                      Remediation(uri="https://remediation.example.net/ports")),
                         imv_results=(ImvAssessment(2, "Scanner", 1, 1, (xml, "https://example.net/x")),))
        text = format_text(result)
        self.assertNotIn("<", text)
        self.assertEqual(text.splitlines()[2:], [
            "remediation: Open Server Ports: Open Internet ports have been detected [en]",
            "    Please close the following server ports:",
            "      tcp/41963",
            "      udp/5353",
            "remediation: https://remediation.example.net/ports",
            'IMC 2 "Scanner" assessed by IMV 1: non-compliant minor',
            "  remediation: Open Server Ports: Open Internet ports have been detected",
            "      Please close the following server ports:",
            "        tcp/41963",
            "        udp/5353",
            "  remediation: https://example.net/x",
        ])
        [entry, uri] = result.to_json()["remediation"]
        self.assertEqual(entry["text"], xml)  # as received
        self.assertEqual(entry["instructions"], [{
            "title": "Open Server Ports", "description": "Open Internet ports have been detected",
            "items_header": "Please close the following server ports:", "items": ["tcp/41963", "udp/5353"]}])
        self.assertEqual(uri, {"uri": "https://remediation.example.net/ports"})

    def test_plain_strings_stay_as_they_are(self):
        self.assertEqual(remediation_lines("apt upgrade openssl\nthen reboot\n"),
                         ["apt upgrade openssl", "then reboot"])
        self.assertIsNone(parse_instructions("apt upgrade openssl"))
        self.assertNotIn("instructions", Remediation(text="apt upgrade", language="en").to_json())
        # no title: the description alone; no items header: the items under it
        self.assertEqual(Instruction(description="Update", items=("bash",)).lines(), ["Update", "    bash"])

    def test_hostile_xml_is_not_expanded_and_shown_as_text(self):
        bomb = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                "<remediationinstructions><instruction><title>&b;</title></instruction></remediationinstructions>")
        self.assertIsNone(parse_instructions(bomb))
        self.assertEqual(remediation_lines(bomb), [bomb])
        self.assertIsNone(parse_instructions("<remediationinstructions><instruction>"))  # malformed

    def test_control_characters_from_the_server_are_made_visible(self):
        evil = "\x1b]0;owned\x07\x1b[2J"
        result = outcome(AccessRecommendation.DENIED, reasons=(Reason(f"ports {evil}open", "en\x1b"),),
                         remediation=(Remediation(text=instructions_xml(f"tcp/1{evil}")),
                                      Remediation(uri=f"https://x/{evil}")),
                         imv_results=(ImvAssessment(1, f"Scan{evil}", 1, 1, (f"fix{evil}",)),))
        text = format_text(result)
        self.assertNotIn("\x1b", text)
        self.assertNotIn("\x07", text)
        self.assertIn("ports \\x1b]0;owned\\x07\\x1b[2Jopen [en\\x1b]", text)
        self.assertIn("tcp/1\\x1b]0;owned", text)
        self.assertEqual(printable("a\tb\u2028c\n"), "a\\x09b\\u2028c\n")


class DecodeHexPositionTests(unittest.TestCase):
    def decode(self, *argv: str) -> tuple[int, str]:
        err = io.StringIO()
        with redirect_stderr(err):
            status = decode_main(list(argv))
        return status, err.getvalue()

    def test_odd_number_of_digits_names_the_last_digit(self):
        self.assertEqual(self.decode("--hex", "0102030"), (1, (
            "nac-decode: malformed input: invalid hex input: an odd number of hex digits (7); the last, "
            "'0' at position 6, has no pair\n")))
        # positions count what was given, blanks included
        self.assertEqual(self.decode("--hex", "01 02 03 0")[1].split("; ")[1],
                         "the last, '0' at position 9, has no pair\n")

    def test_a_bad_character_is_named_where_it_is(self):
        self.assertEqual(self.decode("--hex", "01 02 0g 03"), (1, (
            "nac-decode: malformed input: invalid hex input: 'g' at position 7 is not a hex digit\n")))


class ClientAgainstServerTests(unittest.TestCase):
    """The real nac-pt-tls-client against the real server, whose Scanner
    IMV forbids the one port the test opens."""

    def test_text_remediation_and_debug_lines(self):
        with socket.socket() as listener:
            listener.bind(("0.0.0.0", 0))
            listener.listen()
            port = listener.getsockname()[1]
            server = NacServer({"nac": {"imvs": "imvs.scanner:ScannerImv"},
                                "imv:scanner": {"closed_port_policy": "no", "tcp_ports": str(port)}})
            server.admin("init")
            server.admin("user", "add", "carol", "--password", "pw")
            server.start()
            self.addCleanup(server.stop)
            text = server.client("--client", "carol", "--secret", "pw", "--collectors", "scanner", "-vv")
            data = server.client("--client", "carol", "--secret", "pw", "--collectors", "scanner", "--json")
        self.assertEqual((text.returncode, data.returncode), (0, 0), text.stderr + data.stderr)
        result = json.loads(data.stdout)
        self.assertEqual((result["recommendation"], result["assessment"]), ("Access Denied", "non-compliant minor"))
        lines = text.stdout.splitlines()
        self.assertEqual(lines[:2], ["assessment result: non-compliant minor", "access recommendation: Access Denied"])
        self.assertIn("remediation: Open Server Ports: Open Internet ports have been detected [en]", lines)
        self.assertIn(f"      tcp/{port}", lines)
        self.assertNotIn("<", text.stdout)
        [instructions] = result["remediation"][0]["instructions"]
        self.assertEqual(instructions["items"], [f"tcp/{port}"])
        # -vv: message names quoted once, as strongSwan logs them
        self.assertIn("sending PT-TLS message #0 of type 'Version Request' (20 bytes)", text.stderr)
        self.assertNotIn("''", text.stderr)


class CommandLineTests(unittest.TestCase):
    def test_nac_decode_odd_hex_is_one_line(self):
        done = subprocess.run([sys.executable, "-m", "nac.decode", "--hex", "020000010000000"], env=repo_env(),
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 1)
        self.assertEqual(done.stderr.count("\n"), 1, done.stderr)
        self.assertIn("'0' at position 14, has no pair", done.stderr)


class StayArgumentTests(unittest.TestCase):
    """``--stay`` / ``--reassessments``: usage errors before anything runs."""

    def usage_error(self, *args: str) -> str:
        from nac.client.cli import main

        err = io.StringIO()
        with redirect_stderr(err), self.assertRaises(SystemExit) as raised:
            main(["127.0.0.1:1", "--cacert", "/nonexistent", "--client", "carol", "--secret", "pw", *args])
        self.assertEqual(raised.exception.code, 2)
        return err.getvalue()

    def test_not_with_mutual_pb_tnc(self):
        self.assertIn("do not go with --mutual", self.usage_error("--stay", "--mutual"))
        self.assertIn("do not go with --mutual", self.usage_error("--reassessments", "2", "--mutual"))

    def test_a_count(self):
        self.assertIn("not a number", self.usage_error("--reassessments", "-1"))
