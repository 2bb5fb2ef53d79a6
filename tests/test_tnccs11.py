"""IF-TNCCS 1.1 (TCG XML TNCCS): the codec against the batches captured from
wpa_supplicant, hostapd and strongSwan, generated round trips and garbage,
and whole exchanges of real XML batches through a real TnccsCore with small
IMVs defined here."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from nac.ifimv import ActionRecommendation as A, ConnectionState, EvaluationResult as E
from nac.interfaces import IImvConnection, IPolicyStore, ITnccsConnection
from nac.pa import PaMessage
from nac.pa.ietf import AssessmentResult, AttributeRequest, ProductInformation
from nac.tnccs.assessment import TransportLimits
from nac.tnccs.tnccs11 import (
    MAX_DEPTH,
    BatchLayout,
    ImcImvMessage,
    ReasonString,
    Recipient,
    RecommendationType,
    TnccsBatch,
    TnccsBatchError,
    TnccsError,
    TnccsErrorType,
    TnccsMessageType,
    TnccsPreferredLanguage,
    TnccsReasonStrings,
    TnccsRecommendation,
    Tnccs11ServerConnection,
    UnknownTnccsMessage,
    looks_like_tnccs11,
)
from tests.posture import VECTORS, CoreHarness, ScriptedImv
from tests.vectors import records as vector_records

HOSTAPD = VECTORS / "hostapd-tnccs11"
STRONGSWAN = VECTORS / "strongswan-radius-tnccs11" / "eapol_test-strongswan-no-imcs.jsonl"

IETF, OS = 0, 1
NS = "http://www.trustedcomputinggroup.org/IWG/TNC/1_0/IF_TNCCS#"


def records(path: Path) -> list[dict]:
    return vector_records(str(path.relative_to(VECTORS)))


def client_batch(batch_id: int, body: str = "", recipient: str = "TNCS") -> bytes:
    """A batch laid out exactly as wpa_supplicant's TNCC writes it."""
    return (f'<?xml version="1.0"?>\n<TNCCS-Batch BatchId="{batch_id}" Recipient="{recipient}" '
            f'xmlns="{NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:schemaLocation="{NS} https://www.trustedcomputinggroup.org/XML/SCHEMA/TNCCS_1.0.xsd">'
            f"\n{body}\n</TNCCS-Batch>").encode()


def imc_imv(body: bytes, vendor: int = IETF, subtype: int = OS) -> str:
    b64 = base64.b64encode(body).decode()
    return f"<IMC-IMV-Message><Type>{vendor << 8 | subtype:08X}</Type><Base64>{b64}\n</Base64></IMC-IMV-Message>"


def language(lang: str) -> str:
    return (f"<TNCC-TNCS-Message><Type>00000003</Type><XML><TNCCS-PreferredLanguage>{lang}"
            "</TNCCS-PreferredLanguage></XML></TNCC-TNCS-Message>")


def pa(*attributes, message_id: int = 1) -> bytes:
    return PaMessage(message_id=message_id, attributes=tuple(attributes)).build()


# -- codec -------------------------------------------------------------------------------------

class CapturedBatchTests(unittest.TestCase):
    """Every captured batch parses and rebuilds to the same bytes."""

    def test_hostapd_and_wpa_supplicant_batches_rebuild_byte_for_byte(self):
        for name in ("hostapd-ttls-md5-tnc.jsonl", "hostapd-ttls-pap-tnc.jsonl", "eapol_test-hostapd-allow.jsonl"):
            for rec in records(HOSTAPD / name):
                data = rec["text"].encode()
                batch = TnccsBatch.parse(data)
                self.assertEqual(batch.layout, BatchLayout.HOSTAP)
                self.assertEqual(batch.build(), data, name)

    def test_hostapd_batch_is_the_eap_tnc_payload_on_the_wire(self):
        (client, server) = records(HOSTAPD / "hostapd-ttls-md5-tnc.jsonl")
        eap = [bytes.fromhex(r["hex"]) for r in records(HOSTAPD / "hostapd-ttls-md5-tnc.phase2-eap.jsonl")]
        # EAP header (4) + type 38 + EAP-TNC flags, then the batch
        tnc = [p[6:] for p in eap if p[4] == 38 and len(p) > 6]
        self.assertEqual(tnc, [client["text"].encode(), server["text"].encode()])
        self.assertEqual(TnccsBatch.parse(tnc[1]).build(), tnc[1])

    def test_hostapd_batches_content(self):
        client, server = (TnccsBatch.parse(r["text"].encode()) for r in records(HOSTAPD / "hostapd-ttls-md5-tnc.jsonl"))
        self.assertEqual(client, TnccsBatch(1, Recipient.TNCS, ()))
        # hostapd's quirk: it writes Recipient="TNCS" in its own batches
        self.assertEqual(server, TnccsBatch(2, Recipient.TNCS, (TnccsRecommendation(RecommendationType.ALLOW),)))
        self.assertEqual(server.messages[0].action, A.ALLOW)

    def test_strongswan_batches_rebuild_byte_for_byte(self):
        for rec in records(STRONGSWAN):
            data = rec["text"].encode()
            batch = TnccsBatch.parse(data)
            built = batch.build()
            if rec["dir"] == "s2c":
                self.assertEqual(batch.layout, BatchLayout.LIBXML)
                self.assertEqual(batch.recipient, Recipient.TNCC)
                # strongSwan's libxml2 dump ends in a newline its log lines drop;
                # the note gives the byte count it sent
                logged = int(re.search(r"\((\d+) bytes as logged\)", rec["note"]).group(1))
                self.assertEqual(built, data + b"\n")
                self.assertEqual(len(built), logged)
            else:
                self.assertEqual(built, data)

    def test_strongswan_imc_imv_message_carries_its_pa_tnc_request(self):
        batches = [TnccsBatch.parse(r["text"].encode()) for r in records(STRONGSWAN)]
        self.assertEqual([b.batch_id for b in batches], list(range(1, 9)))
        (msg,) = batches[1].messages
        self.assertEqual((msg.vendor_id, msg.subtype, msg.message_type), (IETF, OS, 1))
        names = [type(a).__name__ for a in PaMessage.parse(msg.body).attributes]
        self.assertEqual(names, ["MaxAttributeSizeRequest", "AttributeRequest"])
        (later,) = batches[3].messages
        self.assertEqual([type(a).__name__ for a in PaMessage.parse(later.body).attributes], ["AssessmentResult"])

    def test_nac_recommendation_batch_is_hostapds_with_the_standard_recipient(self):
        (_, server) = records(HOSTAPD / "hostapd-ttls-md5-tnc.jsonl")
        ours = TnccsBatch(2, Recipient.TNCC, (TnccsRecommendation.for_action(A.ALLOW),)).build()
        self.assertEqual(ours, server["text"].replace('Recipient="TNCS"', 'Recipient="TNCC"').encode())


MESSAGES = [
    ImcImvMessage(0x00000001, b""),
    ImcImvMessage(0x00000001, bytes(range(256)) * 3),
    ImcImvMessage(0x0055970A, b"\x01\x00\x00\x00\x00\x00\x00\x07"),
    TnccsRecommendation(RecommendationType.ALLOW),
    TnccsRecommendation(RecommendationType.NONE),
    TnccsRecommendation(RecommendationType.ISOLATE),
    TnccsRecommendation("maybe"),
    TnccsError(TnccsErrorType.MALFORMED_BATCH, "failed to parse XML message"),
    TnccsError(TnccsErrorType.OTHER, ""),
    TnccsError("vendor-error", 'a <b> & "c"\r\n\tend'),
    TnccsPreferredLanguage("de, en;q=0.5"),
    TnccsPreferredLanguage(""),
    TnccsReasonStrings((ReasonString("Open server ports were detected", "en"),
                        ReasonString("Offene Ports gefunden", "de"), ReasonString("", ""))),
    UnknownTnccsMessage(TnccsMessageType.TNCS_CONTACT_INFO,
                        xml=f'<ns0:TNCCS-TNCSContactInfo xmlns:ns0="{NS}" address="192.0.2.1" port="271" />'),
    UnknownTnccsMessage(0x00902A01, base64=b"vendor specific"),
]


class MessageCodecTests(unittest.TestCase):
    def test_every_message_kind_round_trips_in_both_layouts(self):
        for layout in BatchLayout:
            batch = TnccsBatch(7, Recipient.TNCC, tuple(MESSAGES), layout=layout)
            data = batch.build()
            parsed = TnccsBatch.parse(data)
            self.assertEqual(parsed, batch)
            self.assertEqual(parsed.layout, layout)
            self.assertEqual(parsed.build(), data)

    def test_each_message_alone_round_trips(self):
        for layout in BatchLayout:
            for msg in MESSAGES:
                batch = TnccsBatch(2, Recipient.TNCS, (msg,), layout=layout)
                self.assertEqual(TnccsBatch.parse(batch.build()).messages, (msg,), (layout, msg))

    def test_empty_batches(self):
        self.assertTrue(TnccsBatch(1, Recipient.TNCS).build().endswith(b'TNCCS_1.0.xsd">\n\n</TNCCS-Batch>'))
        libxml = TnccsBatch(4, Recipient.TNCC, layout=BatchLayout.LIBXML).build()
        self.assertTrue(libxml.endswith(b'TNCCS_1.0.xsd"/>\n'))
        self.assertEqual(TnccsBatch.parse(libxml), TnccsBatch(4, Recipient.TNCC))

    def test_hostap_layout_of_tnccs_messages(self):
        batch = TnccsBatch(2, Recipient.TNCC)
        self.assertEqual(
            batch.fragment(TnccsError(TnccsErrorType.INVALID_BATCH_ID, "BatchId 1 expected, got 3")),
            '<TNCC-TNCS-Message><Type>00000002</Type><XML><TNCCS-Error type="invalid-batch-id">'
            "BatchId 1 expected, got 3</TNCCS-Error></XML></TNCC-TNCS-Message>")
        self.assertEqual(
            batch.fragment(TnccsReasonStrings((ReasonString("ports open", "en"),))),
            '<TNCC-TNCS-Message><Type>00000004</Type><XML><TNCCS-ReasonStrings>'
            '<ReasonString xml:lang="en">ports open</ReasonString></TNCCS-ReasonStrings></XML></TNCC-TNCS-Message>')
        self.assertEqual(batch.fragment(ImcImvMessage(0x0055970A, b"x" * 60)),
                         "<IMC-IMV-Message><Type>0055970A</Type><Base64>" + "eHh4" * 18
                         + "\n" + "eHh4" * 2 + "\n</Base64></IMC-IMV-Message>")

    def test_libxml_layout_of_a_recommendation(self):
        data = TnccsBatch(4, Recipient.TNCC, (TnccsRecommendation(RecommendationType.ISOLATE),),
                          layout=BatchLayout.LIBXML).build()
        self.assertIn(b"  <TNCC-TNCS-Message>\n    <Type>00000001</Type>\n    <XML>\n"
                      b'      <TNCCS-Recommendation type="isolate"/>\n    </XML>\n  </TNCC-TNCS-Message>\n', data)

    def test_recommendation_mapping(self):
        self.assertEqual([TnccsRecommendation.for_action(a).type.value for a in A],
                         ["allow", "none", "isolate", "none"])
        self.assertIsNone(TnccsRecommendation("maybe").action)

    def test_pa_message_types(self):
        msg = ImcImvMessage.for_pa(0x00902A, 0x07, b"")
        self.assertEqual((msg.message_type, msg.vendor_id, msg.subtype), (0x00902A07, 0x00902A, 7))
        for vendor, subtype in ((0, 0x100), (0xFFFFFF, 1), (0, 0xFF)):
            self.assertRaises(ValueError, ImcImvMessage.for_pa, vendor, subtype, b"")

    def test_characters_xml_cannot_carry_are_replaced_not_fatal(self):
        batch = TnccsBatch(2, Recipient.TNCC, (TnccsReasonStrings((ReasonString("bad\x00\x1b", "en"),)),))
        (msg,) = TnccsBatch.parse(batch.build()).messages
        self.assertEqual(msg.reasons[0].reason, "bad\ufffd\ufffd")

    def test_unknown_elements_and_other_namespaces_are_skipped(self):
        data = client_batch(1, '<Foo/><x:IMC-IMV-Message xmlns:x="urn:other"/>' + language("en") + "stray text")
        batch = TnccsBatch.parse(data)
        self.assertEqual(batch.messages, (TnccsPreferredLanguage("en"),))
        self.assertEqual(batch.ignored, (f"{{{NS}}}Foo", "{urn:other}IMC-IMV-Message"))

    def test_tolerant_of_whitespace_and_lower_case_types(self):
        data = client_batch(1, "\n  <IMC-IMV-Message>\n    <Type> 0000000a </Type>\n"
                               "    <Base64>\n AAEC\nAw==\n</Base64>\n  </IMC-IMV-Message>\n")
        self.assertEqual(TnccsBatch.parse(data).messages, (ImcImvMessage(10, b"\x00\x01\x02\x03"),))


class ParseErrorTests(unittest.TestCase):
    """Every refusal is a TnccsBatchError with the TNCCS-Error type to answer with."""

    def error(self, data: bytes, **kw) -> TnccsBatchError:
        with self.assertRaises(TnccsBatchError) as cm:
            TnccsBatch.parse(data, **kw)
        return cm.exception

    def test_not_xml(self):
        err = self.error(b'<?xml version="1.0"?>\n<TNCCS-Batch BatchId="1"')
        self.assertEqual(err.error_type, TnccsErrorType.MALFORMED_BATCH)
        self.assertEqual(err.position[0], 2)
        self.assertEqual(self.error(b"").error_type, TnccsErrorType.MALFORMED_BATCH)

    def test_entities_and_dtds_are_refused(self):
        laughs = (b'<?xml version="1.0"?><!DOCTYPE TNCCS-Batch [<!ENTITY a "aaaaaaaaaa">'
                  b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
                  b'<TNCCS-Batch BatchId="1" Recipient="TNCS" xmlns="' + NS.encode() + b'">&b;</TNCCS-Batch>')
        self.assertEqual(self.error(laughs).error_type, TnccsErrorType.MALFORMED_BATCH)
        external = b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>'
        self.assertEqual(self.error(external).error_type, TnccsErrorType.MALFORMED_BATCH)

    def test_wrong_document(self):
        self.assertEqual(str(self.error(b"<TNCCS-Batch BatchId='1' Recipient='TNCS'/>").reason),
                         "TNCCS namespace not found")
        err = self.error(f'<Batch xmlns="{NS}"/>'.encode())
        self.assertEqual(err.reason, "wrong XML document type, expected TNCCS-Batch")

    def test_batch_id(self):
        for value in (None, "", "one", "-1", "99999999999", "٣"):
            attr = "" if value is None else f' BatchId="{value}"'
            data = f'<TNCCS-Batch{attr} Recipient="TNCS" xmlns="{NS}"/>'.encode()
            self.assertEqual(self.error(data).error_type, TnccsErrorType.INVALID_BATCH_ID, value)

    def test_recipient(self):
        for value in (None, "TNCX", "tncs"):
            attr = "" if value is None else f' Recipient="{value}"'
            data = f'<TNCCS-Batch BatchId="1"{attr} xmlns="{NS}"/>'.encode()
            self.assertEqual(self.error(data).error_type, TnccsErrorType.INVALID_RECIPIENT_TYPE, value)

    def test_malformed_messages(self):
        cases = [
            "<IMC-IMV-Message><Base64>AA==</Base64></IMC-IMV-Message>",
            "<IMC-IMV-Message><Type>000000001</Type><Base64>AA==</Base64></IMC-IMV-Message>",
            "<IMC-IMV-Message><Type>0000000g</Type><Base64>AA==</Base64></IMC-IMV-Message>",
            "<IMC-IMV-Message><Type>00000001</Type></IMC-IMV-Message>",
            "<IMC-IMV-Message><Type>00000001</Type><Base64>A*==</Base64></IMC-IMV-Message>",
            "<TNCC-TNCS-Message><XML><TNCCS-PreferredLanguage/></XML></TNCC-TNCS-Message>",
            "<TNCC-TNCS-Message><Type>00000001</Type></TNCC-TNCS-Message>",
            "<TNCC-TNCS-Message><Type>00000001</Type><Base64>AA==</Base64></TNCC-TNCS-Message>",
            "<TNCC-TNCS-Message><Type>00000001</Type><XML> </XML></TNCC-TNCS-Message>",
            "<TNCC-TNCS-Message><Type>00000001</Type><XML><TNCCS-Error/></XML></TNCC-TNCS-Message>",
            "<TNCC-TNCS-Message><Type>00000001</Type><XML><TNCCS-Recommendation/></XML></TNCC-TNCS-Message>",
            "<TNCC-TNCS-Message><Type>00000004</Type><XML><TNCCS-ReasonStrings/></XML></TNCC-TNCS-Message>",
            "<TNCC-TNCS-Message><Type>00000009</Type></TNCC-TNCS-Message>",
        ]
        for body in cases:
            self.assertEqual(self.error(client_batch(1, body)).error_type, TnccsErrorType.MALFORMED_BATCH, body)

    def test_deep_nesting(self):
        body = "<a>" * MAX_DEPTH + "</a>" * MAX_DEPTH
        self.assertEqual(self.error(client_batch(1, body)).error_type, TnccsErrorType.MALFORMED_BATCH)
        # the schema's own depth is far below the limit
        TnccsBatch.parse(client_batch(1, language("en")))

    def test_size_and_count_limits(self):
        data = client_batch(1, language("en") * 3)
        err = self.error(data, max_size=len(data) - 1)
        self.assertEqual(err.error_type, TnccsErrorType.BATCH_TOO_LONG)
        self.assertEqual(TnccsBatch.parse(data, max_size=len(data)).messages[0], TnccsPreferredLanguage("en"))
        self.assertEqual(self.error(data, max_messages=2).error_type, TnccsErrorType.BATCH_TOO_LONG)

    def test_error_reasons_never_echo_client_input(self):
        err = self.error(f'<TNCCS-Batch BatchId="1" Recipient="&lt;script&gt;" xmlns="{NS}"/>'.encode())
        self.assertNotIn("script", err.reason)
        self.assertEqual(err.to_message(), TnccsError(TnccsErrorType.INVALID_RECIPIENT_TYPE, err.reason))


xml_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff")
                   .filter(lambda c: c in "\t\n\r" or ord(c) >= 0x20), max_size=30)
tnccs_messages = st.one_of(
    st.builds(ImcImvMessage, st.integers(0, 0xFFFFFFFF), st.binary(max_size=200)),
    st.builds(TnccsRecommendation, st.one_of(st.sampled_from(RecommendationType), xml_text)),
    st.builds(TnccsError, st.one_of(st.sampled_from(TnccsErrorType), xml_text), xml_text),
    st.builds(TnccsPreferredLanguage, xml_text),
    st.builds(TnccsReasonStrings, st.lists(st.builds(ReasonString, xml_text, xml_text),
                                           min_size=1, max_size=3).map(tuple)),
    st.builds(UnknownTnccsMessage, st.integers(5, 0xFFFFFFFF), base64=st.binary(max_size=50)),
)
tnccs_batches = st.builds(TnccsBatch, st.integers(0, 0x7FFFFFFF), st.sampled_from(Recipient),
                          st.lists(tnccs_messages, max_size=5).map(tuple), st.sampled_from(BatchLayout))


def known_enum_or_raw(batch: TnccsBatch) -> TnccsBatch:
    """What parsing gives back: raw strings naming a known value become the enum."""
    def fix(m):
        if isinstance(m, TnccsRecommendation) and m.type in {e.value for e in RecommendationType}:
            return TnccsRecommendation(RecommendationType(m.type))
        if isinstance(m, TnccsError) and m.type in {e.value for e in TnccsErrorType}:
            return TnccsError(TnccsErrorType(m.type), m.message)
        return m
    return TnccsBatch(batch.batch_id, batch.recipient, tuple(fix(m) for m in batch.messages), batch.layout)


class GeneratedTests(unittest.TestCase):
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(tnccs_batches)
    def test_round_trip(self, batch):
        data = batch.build()
        parsed = TnccsBatch.parse(data)
        self.assertEqual(parsed, known_enum_or_raw(batch))
        self.assertEqual(parsed.layout, batch.layout)
        self.assertEqual(parsed.build(), data)
        if batch.messages or batch.layout is BatchLayout.HOSTAP:  # (libxml writes an empty one as <…/>)
            self.assertEqual(len(data), batch.overhead + sum(batch.message_size(m) for m in batch.messages))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=300))
    def test_random_bytes_never_crash(self, data):
        try:
            TnccsBatch.parse(data)
        except TnccsBatchError:
            pass

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(tnccs_batches, st.data())
    def test_damaged_batches_never_crash(self, batch, data):
        raw = bytearray(batch.build())
        for _ in range(data.draw(st.integers(1, 4))):
            pos = data.draw(st.integers(0, len(raw) - 1))
            action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
            if action == "flip":
                raw[pos] = data.draw(st.sampled_from(b'<>/"= &;x\x00\xff'))
            elif action == "cut":
                del raw[pos:pos + data.draw(st.integers(1, 20))]
            else:
                raw[pos:pos] = data.draw(st.sampled_from(
                    [b"<a>", b"</TNCCS-Batch>", b"&amp;", b"&#0;", b"<![CDATA[x]]>", b"<!-- c -->"]))
            if not raw:
                break
        try:
            TnccsBatch.parse(bytes(raw))
        except TnccsBatchError:
            pass

    def test_protocol_sniffing(self):
        for data in (b"<?xml", b"<TNCCS-Batch", b"\n<", b" \t<", b"\xef\xbb\xbf<?xml"):
            self.assertTrue(looks_like_tnccs11(data), data)
        for data in (b"", b"\x02\x80\x00\x02", b"\x00", b"xml", b"\xef\xbb\xbf"):
            self.assertFalse(looks_like_tnccs11(data), data)


# -- the server ------------------------------------------------------------------------------

def os_imv(no_result=(A.NO_RECOMMENDATION, E.DONT_KNOW), verdict=None):
    """Like strongSwan's OS IMV: asks for the product information once,
    decides on the answer; solicited without one, gives ``no_result``."""
    def batch_ending(conn):
        if conn.state is None:
            conn.state = "asked"
            conn.send_message(IETF, OS, pa(AttributeRequest(requested=((0, 2),))))

    def message(conn, msg):
        for attr in msg.pa.attributes:
            if isinstance(attr, ProductInformation):
                conn.state = "answered"
                if verdict is None:
                    conn.provide_recommendation(A.ALLOW, E.COMPLIANT)
                else:
                    conn.provide_recommendation(*verdict)
                    conn.set_reason(f"{attr.name} is not allowed", "en")
                conn.send_message(IETF, OS, pa(AssessmentResult(result=0)))

    def solicit(conn):
        conn.provide_recommendation(*no_result)

    return ScriptedImv("os", [(IETF, OS)], message, on_batch_ending=batch_ending, on_solicit=solicit)


class Harness(CoreHarness):
    """An IF-TNCCS 1.1 connection of the core, as the RADIUS transport opens it."""

    transport = "radius"
    protocol = "tnccs-1.1"

    def parse(self, batch: bytes) -> TnccsBatch:
        parsed = TnccsBatch.parse(batch)
        self.tc.assertEqual(parsed.recipient, Recipient.TNCC)
        return parsed


def only(batch: TnccsBatch, kind):
    return [m for m in batch.messages if isinstance(m, kind)]


class ExchangeTests(unittest.TestCase):
    def test_imv_asks_collector_answers_allow(self):
        imv = os_imv()
        h = Harness(self, [imv])
        self.assertIsInstance(h.conn, Tnccs11ServerConnection)
        verifyObject(ITnccsConnection, h.conn)

        out = h.send(client_batch(1, language("de, en")))
        (batch,) = out.parsed
        self.assertEqual(batch.batch_id, 2)
        (request,) = only(batch, ImcImvMessage)
        self.assertEqual((request.vendor_id, request.subtype), (IETF, OS))
        self.assertEqual(PaMessage.parse(request.body).attributes, (AttributeRequest(requested=((0, 2),)),))
        self.assertEqual((out.decision, out.close, h.conn.preferred_language), (None, False, "de, en"))

        answer = pa(ProductInformation(vendor_id=0, product_id=0, name="Debian"))
        out = h.send(client_batch(3, imc_imv(answer)))
        (batch,) = out.parsed
        self.assertEqual(batch.batch_id, 4)
        # TNCCS_1.0.xsd order: the TNCCS-Recommendation, then the IMV's assessment result
        self.assertEqual(batch.messages[0], TnccsRecommendation(RecommendationType.ALLOW))
        (result,) = only(batch, ImcImvMessage)
        self.assertEqual(PaMessage.parse(result.body).attributes, (AssessmentResult(result=0),))
        self.assertTrue(out.close)
        self.assertEqual((out.decision.access, out.decision.recommendation), ("allowed", A.ALLOW))
        self.assertTrue(h.conn.finished)
        self.assertNotIn(h.conn.connection_id, h.core.connections)
        self.assertEqual(imv.states, [ConnectionState.CREATE, ConnectionState.HANDSHAKE,
                                      ConnectionState.ACCESS_ALLOWED, ConnectionState.DELETE])
        self.assertEqual(imv.received[0].collector_id, 0xFFFF)

        # the client's acknowledgement (an empty EAP-TNC message) ends it all
        ack = h.send(b"")
        self.assertEqual((ack.batches, ack.close, ack.decision.access), ([], True, "allowed"))

    def test_collector_never_answers_no_result_recommendation_in_bounded_rounds(self):
        h = Harness(self, [os_imv(no_result=(A.ISOLATE, E.DONT_KNOW))])
        h.send(client_batch(1))
        out = h.send(client_batch(3))  # no IMC-IMV message: no collector
        (batch,) = out.parsed
        self.assertEqual(batch.messages, (TnccsRecommendation(RecommendationType.ISOLATE),))
        self.assertEqual((out.decision.access, out.close), ("isolate", True))

    def test_eapol_test_without_imcs_from_the_capture_ends_in_a_decision(self):
        """The strongSwan capture looped ~190 batches, its IMVs asking again
        each round; nac decides in its second reply."""
        client = [r["text"].encode() for r in records(STRONGSWAN) if r["dir"] == "c2s"]

        def ask_again(conn):
            conn.send_message(IETF, OS, pa(AttributeRequest(requested=((0, 2),))))
        persistent = ScriptedImv("os", [(IETF, OS)], on_batch_ending=ask_again,
                                 on_solicit=lambda c: c.provide_recommendation(A.NO_RECOMMENDATION, E.ERROR))
        h = Harness(self, [persistent, ScriptedImv("scanner", [(IETF, 5)])])
        out = h.send(client[0])
        self.assertEqual([m.subtype for m in only(out.parsed[0], ImcImvMessage)], [OS])
        out = h.send(client[1])
        (batch,) = out.parsed
        self.assertEqual((batch.batch_id, batch.messages),
                         (4, (TnccsRecommendation(RecommendationType.NONE),)))
        self.assertEqual(out.decision.recommendation, A.NO_RECOMMENDATION)
        self.assertEqual(out.decision.access, "denied")
        # the scanner IMV was never solicited for a verdict of its own
        self.assertTrue(out.decision.imv_results[1].forced)
        self.assertTrue(out.close)

    def test_isolating_imv_sends_isolate_with_its_reason(self):
        h = Harness(self, [os_imv(verdict=(A.ISOLATE, E.NONCOMPLIANT_MINOR))])
        h.send(client_batch(1))
        out = h.send(client_batch(3, imc_imv(pa(ProductInformation(name="Windows 95")))))
        (batch,) = out.parsed
        self.assertEqual(batch.messages[:2], (
            TnccsRecommendation(RecommendationType.ISOLATE),
            TnccsReasonStrings((ReasonString("Windows 95 is not allowed", "en"),))))
        self.assertEqual(out.decision.access, "isolate")
        self.assertEqual(out.decision.reasons, (("Windows 95 is not allowed", "en"),))

    def test_imv_that_never_decides_is_cut_off_after_max_rounds(self):
        def nag(conn):
            conn.send_message(IETF, OS, pa(AttributeRequest(requested=((0, 2),))))
        h = Harness(self, [ScriptedImv("nag", [(IETF, OS)], on_batch_ending=nag)], max_rounds=3)
        ids = []
        for n in range(10):
            out = h.send(client_batch(2 * n + 1, imc_imv(pa(ProductInformation(name="Debian")))))
            ids.append(out.parsed[0].batch_id)
            if out.decision:
                break
        self.assertEqual(ids, [2, 4, 6, 8])
        self.assertEqual(out.parsed[0].messages, (TnccsRecommendation(RecommendationType.NONE),))
        self.assertTrue(out.decision.imv_results[0].forced)

    def test_no_imvs_means_none_at_once(self):
        # hostapd sends "allow" here; nac, like strongSwan, lets nobody in unvouched
        h = Harness(self, [])
        out = h.send(client_batch(1))
        self.assertEqual(out.parsed[0].messages, (TnccsRecommendation(RecommendationType.NONE),))
        self.assertEqual(out.decision.access, "denied")

    def test_imv_with_nothing_to_ask_is_solicited_at_once(self):
        imv = ScriptedImv("quiet", [(IETF, OS)], on_solicit=lambda c: c.provide_recommendation(A.ALLOW, E.COMPLIANT))
        h = Harness(self, [imv])
        out = h.send(client_batch(1, imc_imv(pa(ProductInformation(name="Debian")))))
        self.assertEqual(out.parsed[0].messages, (TnccsRecommendation(RecommendationType.ALLOW),))

    def test_malformed_pa_message_gets_a_pa_tnc_error(self):
        imv = ScriptedImv("os", [(IETF, OS)])
        h = Harness(self, [imv])
        out = h.send(client_batch(1, imc_imv(b"\x02\x00\x00\x00\x00\x00\x00\x01")))
        self.assertEqual(imv.received, [])
        (reply,) = only(out.parsed[0], ImcImvMessage)
        (err,) = PaMessage.parse(reply.body).attributes
        self.assertEqual(type(err).__name__, "PaTncErrorAttribute")

    def test_messages_beyond_the_batch_size_go_in_later_batches(self):
        big = pa(ProductInformation(name="x" * 3000))

        def flood(conn):
            if conn.state is None:
                conn.state = True
                for _ in range(5):
                    conn.send_message(IETF, OS, big)
        h = Harness(self, [ScriptedImv("flood", [(IETF, OS)], on_batch_ending=flood)],
                    limits=TransportLimits(max_batch_size=9000, max_message_size=7000))
        counts, n = [], 0
        out = h.send(client_batch(1, imc_imv(big)))
        while not out.decision and n < 10:
            counts.append(len(only(out.parsed[0], ImcImvMessage)))
            self.assertLessEqual(len(out.batches[0]), 9000)
            n += 1
            out = h.send(client_batch(2 * n + 1, imc_imv(big)))
        self.assertEqual(sum(counts), 5)
        self.assertGreater(len(counts), 1)

    def test_pa_types_1_1_cannot_carry_are_dropped(self):
        def long_type(conn):
            conn.send_message(IETF, 0x100, pa())
            conn.provide_recommendation(A.ALLOW, E.COMPLIANT)
        h = Harness(self, [ScriptedImv("long", [(IETF, OS)], on_batch_ending=long_type)])
        out = h.send(client_batch(1))
        self.assertEqual(out.parsed[0].messages, (TnccsRecommendation(RecommendationType.ALLOW),))

    def test_imv_connection_interface(self):
        seen = []
        h = Harness(self, [ScriptedImv("x", [(IETF, OS)], lambda c, m: seen.append(c))])
        h.send(client_batch(1, imc_imv(pa())))
        verifyObject(IImvConnection, seen[0])
        self.assertEqual(seen[0].peer.identity, "carol")

    def test_abort_notifies_imvs(self):
        imv = os_imv()
        h = Harness(self, [imv])
        h.send(client_batch(1))
        h.conn.abort("EAP conversation timed out")
        self.assertEqual(imv.states[-1], ConnectionState.DELETE)
        self.assertTrue(h.conn.finished)
        self.assertNotIn(h.conn.connection_id, h.core.connections)


class ProtocolErrorTests(unittest.TestCase):
    """A batch that cannot be accepted is answered with one TNCCS-Error, then the end."""

    def error_reply(self, data: bytes, *, first: bytes | None = None, limits=None) -> TnccsError:
        imv = os_imv()
        h = Harness(self, [imv], limits=limits)
        if first is not None:
            h.send(first)
        out = h.send(data)
        self.assertTrue(out.close)
        (batch,) = out.parsed
        self.assertEqual(batch.batch_id, 4 if first is not None else 2)
        (err,) = batch.messages
        self.assertTrue(h.conn.finished)
        self.assertIsNone(out.decision)
        # nothing more is processed
        self.assertEqual(h.send(client_batch(5)).batches, [])
        return err

    def test_malformed_xml(self):
        err = self.error_reply(b'<?xml version="1.0"?>\n<TNCCS-Batch BatchId="1" Recip')
        self.assertEqual((err.type, err.message), (TnccsErrorType.MALFORMED_BATCH, "failed to parse XML message"))

    def test_wrong_batch_id(self):
        err = self.error_reply(client_batch(3))
        self.assertEqual((err.type, err.message), (TnccsErrorType.INVALID_BATCH_ID, "BatchId 1 expected, got 3"))
        err = self.error_reply(client_batch(1), first=client_batch(1))
        self.assertEqual((err.type, err.message), (TnccsErrorType.INVALID_BATCH_ID, "BatchId 3 expected, got 1"))

    def test_wrong_recipient(self):
        err = self.error_reply(client_batch(1, recipient="TNCC"))
        self.assertEqual(err.type, TnccsErrorType.INVALID_RECIPIENT_TYPE)

    def test_oversize(self):
        data = client_batch(1, language("en"))
        err = self.error_reply(data, limits=TransportLimits(max_batch_size=len(data) - 1))
        self.assertEqual(err.type, TnccsErrorType.BATCH_TOO_LONG)

    def test_empty_message_before_a_decision(self):
        self.assertEqual(self.error_reply(b"", first=client_batch(1)).type, TnccsErrorType.MALFORMED_BATCH)

    def test_pb_tnc_batch(self):
        self.assertEqual(self.error_reply(bytes.fromhex("02000001 00000008")).type, TnccsErrorType.MALFORMED_BATCH)

    def test_client_error_ends_without_reply(self):
        imv = os_imv()
        h = Harness(self, [imv])
        h.send(client_batch(1))
        bye = ('<TNCC-TNCS-Message><Type>00000002</Type><XML><TNCCS-Error type="internal-error">'
               "IMC crashed</TNCCS-Error></XML></TNCC-TNCS-Message>")
        out = h.send(client_batch(3, bye))
        self.assertEqual((out.batches, out.close, out.decision), ([], True, None))
        self.assertEqual(imv.states[-1], ConnectionState.DELETE)

    def test_client_recommendation_is_ignored(self):
        h = Harness(self, [])
        rec = ('<TNCC-TNCS-Message><Type>00000001</Type><XML><TNCCS-Recommendation type="allow"/>'
               "</XML></TNCC-TNCS-Message>")
        out = h.send(client_batch(1, rec))
        self.assertEqual(out.decision.access, "denied")

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.one_of(st.binary(max_size=120), st.lists(tnccs_messages, max_size=4).map(tuple)),
                    min_size=1, max_size=6))
    def test_random_exchanges_always_get_an_answer(self, steps):
        """Valid client batches of random messages mixed with garbage: every
        batch gets a reply or the end, and the end comes."""
        h = Harness(self, [os_imv(), ScriptedImv("any", [(0xFFFFFF, 0xFF)])], max_rounds=3)
        for n, step in enumerate(steps):
            data = step if isinstance(step, bytes) else TnccsBatch(2 * n + 1, Recipient.TNCS, step).build()
            out = h.send(data)
            self.assertTrue(out.batches or out.close)
            if out.close:
                self.assertTrue(h.conn.finished)
                break
        else:
            self.assertLessEqual(len(steps), 3)  # max_rounds


@implementer(IPolicyStore)
class RecordingStore:
    def __init__(self):
        self.started, self.decided = [], []

    def session_started(self, peer, connection_id):
        from twisted.internet import defer
        self.started.append((peer, connection_id))
        return defer.succeed(7)

    def session_decided(self, session_id, decision):
        from twisted.internet import defer
        self.decided.append((session_id, decision))
        return defer.succeed(None)

    def session_aborted(self, session_id, reason):
        from twisted.internet import defer
        return defer.succeed(True)

    def bounded_wait(self, d):
        return d.addBoth(lambda _: None)


class StoreTests(unittest.TestCase):
    def test_session_and_decision_are_recorded(self):
        store = RecordingStore()
        h = Harness(self, [os_imv()], store=store)
        h.send(client_batch(1))
        out = h.send(client_batch(3, imc_imv(pa(ProductInformation(name="Debian")))))
        self.assertEqual(store.started, [(h.conn.peer, h.conn.connection_id)])
        self.assertEqual(store.decided, [(7, out.decision)])

    def test_malformed_first_batch_records_nothing(self):
        store = RecordingStore()
        h = Harness(self, [os_imv()], store=store)
        h.send(b"<nope")
        self.assertEqual((store.started, store.decided), ([], []))
