"""Mutual PB-TNC, nac's server side: PB-TNC batches written byte by byte
here from the layouts of RFC 5793 §4 (and strongSwan's ITA-HSR
PB-Mutual-Capability: vendor 0x00902a, type 1, a 32-bit field whose top bit
is "half duplex"), driven through the real state machine of a TNCS core
with mutual PB-TNC on; what the server sends back is compared with bytes
built the same way, never with nac's own encoder."""

from __future__ import annotations

import struct

from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from nac.client.collectors import COLLECTORS
from nac.client.imc import IImc
from nac.client.mutual import CollectorClients
from nac.config import SCHEMA, ConfigError, load
from nac.client.pb_client import PbTncClient
from nac.ifimv import ActionRecommendation as A, ConnectionState as C, EvaluationResult as E
from nac.interfaces import IMutualClientFactory, IPbTncClientRole, ITnccsConnection
from nac.pb.batch import PbBatch
from nac.tnccs.assessment import PeerInfo, TransportLimits
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvManager
from nac.tnccs.mutual import MutualPbTncServerConnection
from nac.tnccs.pb_server import PbTncServerConnection
from nac.server import build_core
from tests.posture import VECTORS, ScriptedImv
from tests.vectors import records

# -- RFC 5793 §4 layouts ---------------------------------------------------------------------

CDATA, SDATA, RESULT, CRETRY, SRETRY, CLOSE = range(1, 7)
ITA_HSR = 0x00902A
HALF_DUPLEX, FULL_DUPLEX = 1 << 31, 1 << 30
UNEXPECTED_BATCH_TYPE, INVALID_PARAMETER, LOCAL_ERROR, UNSUPPORTED_MANDATORY_MESSAGE = 0, 1, 2, 3
OS_SUBTYPE = 1
ANY = 0xFFFF


def batch(btype: int, *messages: bytes, from_server: bool = False) -> bytes:
    """§4.1: version 2, the D bit, reserved, B-Type, batch length."""
    body = b"".join(messages)
    return struct.pack(">BBBBI", 2, 0x80 if from_server else 0, 0, btype, 8 + len(body)) + body


def message(vendor: int, mtype: int, value: bytes, *, noskip: bool = False) -> bytes:
    """§4.2: flags (NOSKIP 0x80), vendor ID, message type, length with the header."""
    return struct.pack(">III", (0x80000000 if noskip else 0) | vendor, mtype, 12 + len(value)) + value


def mutual_capability(protocols: int = HALF_DUPLEX) -> bytes:
    return message(ITA_HSR, 1, struct.pack(">I", protocols))


def language(tag: str = "en") -> bytes:
    """§4.10: 'Accept-Language: ' and the value."""
    return message(0, 6, b"Accept-Language: " + tag.encode())


def pb_pa(body: bytes, *, collector: int = 1, validator: int = ANY, subtype: int = OS_SUBTYPE,
          exclusive: bool = False) -> bytes:
    """§4.5: flags (EXCL 0x80), PA vendor, PA subtype, collector and validator IDs."""
    header = struct.pack(">IIHH", 0x80000000 if exclusive else 0, subtype, collector, validator)
    return message(0, 1, header + body, noskip=True)


def assessment_result(code: int) -> bytes:
    return message(0, 2, struct.pack(">I", code), noskip=True)


def access_recommendation(code: int) -> bytes:
    return message(0, 3, struct.pack(">HH", 0, code))


def pb_error(code: int, offset: int | None = None) -> bytes:
    """§4.9: fatal flag, error code vendor, code, reserved, and the offset
    where the code has one."""
    value = struct.pack(">IHH", 0x80000000, code, 0) + (b"" if offset is None else struct.pack(">I", offset))
    return message(0, 5, value, noskip=True)


def pa_message(*attributes: tuple[int, int, bytes], message_id: int = 7) -> bytes:
    """RFC 5792 §4.1-4.2: a PA-TNC message of (vendor, type, value) attributes."""
    out = struct.pack(">B3xI", 1, message_id)
    for vendor, atype, value in attributes:
        out += struct.pack(">III", vendor, atype, 12 + len(value)) + value
    return out


# PA messages of a vendor nobody here knows (skippable attributes), and
# the endpoint IMV's verdict on nac (IETF Assessment Result: compliant)
NAC_MEASUREMENT = pa_message((0x00ABCD, 1, b"nac's host"))
ENDPOINT_MEASUREMENT = pa_message((0x00ABCD, 1, b"the endpoint"))
ANSWER = pa_message((0x00ABCD, 2, b"tell me more"))
VERDICT = pa_message((0, 9, struct.pack(">I", 0)))


# -- the two sides of nac ---------------------------------------------------------------------


@implementer(IImc)
class Collector:
    """An IMC sending ``first`` at the start and answering the messages of
    ``replies`` (body -> reply to the asking IMV); it records what it is told."""

    name = "OS"
    subscriptions = ((0, OS_SUBTYPE),)

    def __init__(self, first: bytes = NAC_MEASUREMENT, replies: dict | None = None):
        self.first, self.replies = first, replies or {}
        self.states, self.received = [], []

    def notify_connection_change(self, connection, state):
        self.states.append(state)

    def begin_handshake(self, connection):
        connection.send_message(0, OS_SUBTYPE, self.first)

    def receive_message(self, connection, message):
        self.received.append(message.body)
        if message.body in self.replies:
            connection.send_message(0, OS_SUBTYPE, self.replies[message.body], validator_id=message.validator_id,
                                    exclusive=True)

    def batch_ending(self, connection):
        pass


@implementer(IMutualClientFactory)
class Collectors:
    """nac's client role with :class:`Collector`, as CollectorClients makes it."""

    collectors = ("os",)

    def __init__(self):
        self.imc = Collector()
        self.clients = []

    def open_client(self, connection_id, limits, max_rounds):
        client = PbTncClient([self.imc], max_batch_size=limits.max_batch_size,
                             max_message_size=limits.max_message_size, max_rounds=max_rounds,
                             connection_id=connection_id, responder=True)
        self.clients.append(client)
        return client


def asking_imv(rounds: int = 1, request: bytes = ANSWER):
    """An IMV asking the endpoint ``rounds`` times before it allows."""
    asked = []

    def on_message(connection, msg):
        if len(asked) < rounds:
            asked.append(msg)
            connection.send_message(0, OS_SUBTYPE, request, collector_id=msg.collector_id, exclusive=True)
        else:
            connection.provide_recommendation(A.ALLOW, E.COMPLIANT)

    return ScriptedImv("os", [(0, OS_SUBTYPE)], on_message)


class Server:
    """One connection of a TNCS core, fed whole batches."""

    def __init__(self, testcase, imvs, *, mutual=True, limits=None, protocol="pb-tnc", max_rounds=10,
                 connection_classes=None):
        self.collectors = Collectors() if mutual else None
        self.core = TnccsCore(ImvManager(imvs), mutual=self.collectors, max_rounds=max_rounds,
                              connection_classes=connection_classes)
        self.conn = self.core.open_connection(PeerInfo("test", "127.0.0.1", identity="carol"),
                                              limits or TransportLimits(), protocol=protocol)
        self.tc = testcase

    def send(self, data: bytes):
        outcomes = []
        self.conn.receive_batch(data).addCallback(outcomes.append)
        self.tc.assertEqual(len(outcomes), 1, "the core did not answer at once")
        return outcomes[0]

    def reply(self, data: bytes) -> bytes:
        """The one batch answering ``data``, the connection going on."""
        out = self.send(data)
        self.tc.assertFalse(out.close)
        [answer] = out.batches
        return answer

    @property
    def imc(self) -> Collector:
        return self.collectors.imc


FIRST_CDATA = batch(CDATA, mutual_capability(), language(), pb_pa(ENDPOINT_MEASUREMENT))


def starts(data: bytes, btype: int, first: bytes, *, from_server: bool = False) -> bool:
    """Whether ``data`` is a batch of ``btype`` whose first message is ``first``."""
    return data[:4] == batch(btype, from_server=from_server)[:4] and data[8:8 + len(first)] == first


def opened(testcase, imvs=None, **kw) -> Server:
    """A server past the endpoint's first CDATA announcing mutual PB-TNC."""
    server = Server(testcase, [asking_imv()] if imvs is None else imvs, **kw)
    testcase.assertTrue(starts(server.reply(FIRST_CDATA), SDATA, mutual_capability(), from_server=True))
    return server


class AnnouncementTests(unittest.TestCase):
    def test_the_server_answers_the_capability_with_its_own_first(self):
        server = Server(self, [asking_imv()])
        self.assertIsInstance(server.conn, MutualPbTncServerConnection)
        verifyObject(ITnccsConnection, server.conn)
        answer = server.reply(FIRST_CDATA)
        # SDATA: the announcement, then the IMV's request to collector 1
        request = pb_pa(ANSWER, collector=1, validator=1, exclusive=True)
        self.assertEqual(answer, batch(SDATA, mutual_capability(), request, from_server=True))
        self.assertTrue(server.conn.mutual)

    def test_the_announcement_goes_into_a_result_too(self):
        server = Server(self, [])  # no IMVs: decided at once
        answer = server.reply(FIRST_CDATA)
        self.assertTrue(starts(answer, RESULT, mutual_capability(), from_server=True))

    def test_it_is_announced_once(self):
        server = Server(self, [asking_imv(rounds=2)])
        server.reply(FIRST_CDATA)
        again = server.reply(batch(CDATA, mutual_capability(), pb_pa(ENDPOINT_MEASUREMENT)))
        self.assertNotIn(mutual_capability(), again)

    def test_room_is_kept_for_the_announcement(self):
        question = pa_message((0x00ABCD, 2, b"?" * 200))
        request = pb_pa(question, collector=1, validator=1, exclusive=True)
        # room for the request or the announcement, not both
        limits = TransportLimits(max_batch_size=8 + len(request) + 15, max_message_size=1000)
        server = Server(self, [asking_imv(request=question)], limits=limits)
        first = server.reply(FIRST_CDATA)
        self.assertEqual(first, batch(SDATA, mutual_capability(), from_server=True))
        # the request follows in the next SDATA
        self.assertEqual(server.reply(batch(CDATA)), batch(SDATA, request, from_server=True))

    def test_no_handshake_retry_once_mutual(self):
        # the endpoint's TNCS may be in its own exchange: the TNCS never interrupts it with an SRETRY
        for capability, expected in ((mutual_capability(), None), (b"", SRETRY)):
            server = Server(self, [])  # no IMVs: decided at once
            server.reply(batch(CDATA, *([capability] if capability else []), language()))
            retried = []
            server.conn.retry_handshake("re-assessment").addCallback(retried.append)
            self.assertEqual(retried[0] and PbBatch.parse(retried[0].batches[0]).batch_type, expected)

    def test_a_core_without_a_client_role_ignores_the_capability(self):
        server = Server(self, [asking_imv()], mutual=False,
                        connection_classes={"pb-tnc": MutualPbTncServerConnection})
        answer = server.reply(FIRST_CDATA)
        self.assertNotIn(mutual_capability(), answer)
        self.assertFalse(server.conn.mutual)

    def test_full_duplex_alone_is_not_taken_up(self):
        server = Server(self, [asking_imv()])
        answer = server.reply(batch(CDATA, mutual_capability(FULL_DUPLEX), pb_pa(ENDPOINT_MEASUREMENT)))
        self.assertNotIn(mutual_capability(), answer)
        self.assertFalse(server.conn.mutual)
        # so a batch of the endpoint's TNCS is the wrong direction, as without mutual
        self.assert_wrong_direction(server)

    def assert_wrong_direction(self, server):
        out = server.send(batch(SDATA, from_server=True))
        self.assertTrue(out.close)
        self.assertEqual(out.batches, [batch(CLOSE, pb_error(INVALID_PARAMETER, 1), from_server=True)])


class WithoutMutualTests(unittest.TestCase):
    """Non-mutual clients, and mutual-capable ones when nac says no, get what
    they got before mutual PB-TNC existed, byte for byte."""

    DENIED = VECTORS / "strongswan-pt-tls" / "carol-sasl-open-ports-denied.jsonl"

    def test_mutual_off_ignores_the_capability(self):
        server = Server(self, [asking_imv()], mutual=False)
        self.assertIs(type(server.conn), PbTncServerConnection)
        answer = server.reply(FIRST_CDATA)
        self.assertEqual(answer, batch(SDATA, pb_pa(ANSWER, collector=1, validator=1, exclusive=True),
                                       from_server=True))
        AnnouncementTests.assert_wrong_direction(self, server)

    def test_a_client_that_does_not_announce_it_is_answered_as_before(self):
        session = [bytes.fromhex(r["hex"]) for r in records(str(self.DENIED.relative_to(VECTORS)))
                   if r["layer"] == "pb-tnc" and r["dir"] == "c2s"]
        answers = []
        for mutual in (False, True):
            server = Server(self, [asking_imv()], mutual=mutual)
            answers.append([server.send(data).batches for data in session])
            self.assertIsNotNone(server.conn.decision)
            self.assertTrue(server.conn.finished)
        self.assertEqual(answers[0], answers[1])
        # and a batch of the endpoint's TNCS is the wrong direction
        server = Server(self, [asking_imv()])
        server.reply(session[0])
        AnnouncementTests.assert_wrong_direction(self, server)


class ExchangeTests(unittest.TestCase):
    """Both exchanges over one connection, in the order strongSwan's client
    alternates between them."""

    def test_both_exchanges_and_the_close(self):
        imv = asking_imv()
        server = opened(self, [imv])
        # the endpoint's TNCS opens its exchange with an (empty) SDATA in Init:
        # nac's client role answers with its Language-Preference and measurement
        answer = server.reply(batch(SDATA, from_server=True))
        self.assertEqual(answer, batch(CDATA, language("en"), pb_pa(NAC_MEASUREMENT)))
        self.assertEqual(server.imc.states, [C.CREATE, C.HANDSHAKE])
        # the endpoint's client answers the IMV's request: nac decides
        out = server.send(batch(CDATA, pb_pa(ENDPOINT_MEASUREMENT, validator=1, exclusive=True)))
        [result] = out.batches
        self.assertEqual(PbBatch.parse(result).batch_type, RESULT)
        self.assertEqual(out.decision.access, "allowed")
        self.assertFalse(out.close)
        # the endpoint's TNCS decides about nac: nac's client role closes its exchange only
        verdict = batch(RESULT, pb_pa(VERDICT, collector=1, validator=1, exclusive=True),
                        assessment_result(0), access_recommendation(1), from_server=True)
        self.assertEqual(server.reply(verdict), batch(CLOSE))
        self.assertEqual(server.imc.received, [VERDICT])
        self.assertEqual(server.imc.states, [C.CREATE, C.HANDSHAKE, C.ACCESS_ALLOWED, C.DELETE])
        outcome = server.collectors.clients[0].outcome
        self.assertEqual((outcome.recommendation_label, outcome.assessment_label), ("Access Allowed", "compliant"))
        self.assertFalse(server.conn.finished)
        # the endpoint's client closes the connection
        out = server.send(batch(CLOSE))
        self.assertEqual((out.batches, out.close), ([], True))
        self.assertEqual(out.decision.access, "allowed")
        self.assertTrue(server.conn.finished)
        self.assertEqual(imv.states[-1], C.DELETE)
        self.assertNotIn(server.conn.connection_id, server.core.connections)

    def test_the_endpoint_decides_first(self):
        server = opened(self, [asking_imv(rounds=2)])
        self.assertTrue(starts(server.reply(batch(SDATA, from_server=True)), CDATA, language()))
        # the endpoint's TNCS decides before nac's IMV does
        verdict = batch(RESULT, assessment_result(1), access_recommendation(3), from_server=True)
        self.assertEqual(server.reply(verdict), batch(CLOSE))
        # nac's exchange goes on after its client role closed
        answer = server.reply(batch(CDATA, pb_pa(ENDPOINT_MEASUREMENT, validator=1, exclusive=True)))
        self.assertEqual(PbBatch.parse(answer).batch_type, SDATA)
        out = server.send(batch(CDATA, pb_pa(ENDPOINT_MEASUREMENT, validator=1, exclusive=True)))
        self.assertEqual(PbBatch.parse(out.batches[0]).batch_type, RESULT)
        out = server.send(batch(CLOSE))
        self.assertTrue(out.close)
        self.assertEqual(out.decision.access, "allowed")
        outcome = server.collectors.clients[0].outcome
        self.assertEqual((outcome.recommendation_label, outcome.assessment_label),
                         ("Quarantined", "non-compliant minor"))

    def test_the_endpoint_tncs_closing_ends_the_connection(self):
        imv = asking_imv()
        server = opened(self, [imv])
        server.reply(batch(SDATA, from_server=True))
        out = server.send(batch(CLOSE, from_server=True))
        self.assertEqual((out.batches, out.close, out.decision), ([], True, None))
        self.assertTrue(server.conn.finished)
        self.assertEqual(server.imc.states[-1], C.DELETE)
        self.assertEqual(imv.states[-1], C.DELETE)

    def test_abort_ends_both_roles(self):
        imv = asking_imv()
        server = opened(self, [imv])
        server.reply(batch(SDATA, from_server=True))
        server.conn.abort("transport closed")
        self.assertEqual(server.imc.states[-1], C.DELETE)
        self.assertEqual(imv.states[-1], C.DELETE)
        self.assertTrue(server.collectors.clients[0].finished)

    def test_eap_tnc_connections_take_part_too(self):
        server = Server(self, [asking_imv()], protocol="dynamic")
        answer = server.reply(FIRST_CDATA)
        self.assertIsInstance(server.conn.delegate, MutualPbTncServerConnection)
        self.assertTrue(starts(answer, SDATA, mutual_capability(), from_server=True))
        self.assertTrue(starts(server.reply(batch(SDATA, from_server=True)), CDATA, language()))


class BoundedTests(unittest.TestCase):
    def test_an_endpoint_tncs_that_never_decides_is_given_up_after_max_rounds(self):
        server = opened(self, max_rounds=3)
        out = server.send(batch(CDATA, pb_pa(ENDPOINT_MEASUREMENT, validator=1, exclusive=True)))
        self.assertEqual(out.decision.access, "allowed")
        # SDATA after SDATA from the endpoint's TNCS, never a RESULT
        self.assertTrue(starts(server.reply(batch(SDATA, from_server=True)), CDATA, language()))
        self.assertEqual(server.reply(batch(SDATA, from_server=True)), batch(CDATA))
        out = server.send(batch(SDATA, from_server=True))
        self.assertEqual(out.batches, [batch(CLOSE, pb_error(LOCAL_ERROR))])
        self.assertTrue(out.close)
        # nac's own decision stands
        self.assertEqual(out.decision.access, "allowed")
        self.assertTrue(server.conn.finished)


class ProtocolErrorTests(unittest.TestCase):
    """A bad batch of the endpoint's TNCS is answered with the PB-Error of
    RFC 5793 in a CLOSE batch, which ends the connection."""

    def close_with(self, data: bytes, *, first=()) -> bytes:
        imv = asking_imv()
        server = opened(self, [imv])
        for earlier in first:
            server.reply(earlier)
        out = server.send(data)
        self.assertTrue(out.close)
        self.assertTrue(server.conn.finished)
        self.assertEqual(imv.states[-1], C.DELETE)
        # nothing more is processed
        self.assertEqual(server.send(batch(CDATA)).batches, [])
        [answer] = out.batches
        return answer

    def test_a_first_batch_other_than_sdata(self):
        self.assertEqual(self.close_with(batch(RESULT, assessment_result(0), from_server=True)),
                         batch(CLOSE, pb_error(UNEXPECTED_BATCH_TYPE)))

    def test_a_length_that_does_not_match(self):
        self.assertEqual(self.close_with(batch(SDATA, from_server=True) + b"\x00"),
                         batch(CLOSE, pb_error(INVALID_PARAMETER, 4)))

    def test_an_unknown_noskip_message(self):
        unknown = message(0x00ABCD, 9, b"", noskip=True)
        self.assertEqual(self.close_with(batch(SDATA, unknown, from_server=True)),
                         batch(CLOSE, pb_error(UNSUPPORTED_MANDATORY_MESSAGE, 8)))

    def test_a_result_message_in_an_sdata(self):
        self.assertEqual(self.close_with(batch(SDATA, access_recommendation(1), from_server=True)),
                         batch(CLOSE, pb_error(INVALID_PARAMETER, 8)))

    def test_a_batch_after_the_endpoint_tncs_decided(self):
        verdict = batch(RESULT, assessment_result(0), access_recommendation(1), from_server=True)
        self.assertEqual(self.close_with(batch(SDATA, from_server=True),
                                         first=[batch(SDATA, from_server=True), verdict]),
                         batch(CLOSE, pb_error(UNEXPECTED_BATCH_TYPE), from_server=True))

    def test_a_bad_version(self):
        data = bytearray(batch(SDATA, from_server=True))
        data[0] = 1
        answer = self.close_with(bytes(data))
        # Version Not Supported carries bad, highest and lowest version
        value = struct.pack(">IHH", 0x80000000, 4, 0) + bytes([1, 2, 2, 0])
        self.assertEqual(answer, batch(CLOSE, message(0, 5, value, noskip=True)))


class CollectorClientsTests(unittest.TestCase):
    def test_provides_the_client_role_factory(self):
        factory = CollectorClients(["os", "scanner"], language="de, en")
        verifyObject(IMutualClientFactory, factory)
        self.assertEqual(factory.collectors, ("os", "scanner"))
        client = factory.open_client(42, TransportLimits(max_batch_size=32754, max_message_size=32722), 5)
        verifyObject(IPbTncClientRole, client)
        self.assertEqual((client.connection_id, client.max_batch_size, client.max_rounds, client.responder),
                         (42, 32754, 5, True))
        self.assertEqual(client.language, "de, en")

    def test_unknown_collectors_are_refused(self):
        self.assertRaises(ValueError, CollectorClients, ["os", "printer"])


class ConfigurationTests(unittest.TestCase):
    def test_off_by_default(self):
        cfg = load(None)
        self.assertEqual((cfg.get("nac", "mutual"), cfg.get("nac", "mutual_collectors")), (False, ["os"]))
        core = build_core(cfg)
        self.assertIsNone(core.mutual)
        self.assertIs(core.connection_classes["pb-tnc"], PbTncServerConnection)

    def test_on(self):
        core = build_core(load(None, {("nac", "mutual"): "yes", ("nac", "mutual_collectors"): "os, scanner",
                                      ("nac", "language"): "de, en"}))
        self.assertIsInstance(core.mutual, CollectorClients)
        self.assertEqual((core.mutual.collectors, core.mutual.language), (("os", "scanner"), "de, en"))
        self.assertIs(core.connection_classes["pb-tnc"], MutualPbTncServerConnection)

    def test_collectors_are_checked(self):
        for value, fragment in (("os, hcd", "'hcd'"), ("", "is empty"), ("os, os", "more than once")):
            with self.assertRaises(ConfigError) as caught:
                load(None, {("nac", "mutual_collectors"): value})
            self.assertIn("[nac] mutual_collectors", str(caught.exception))
            self.assertIn(fragment, str(caught.exception))

    def test_the_collectors_offered_are_nac_client_collectors(self):
        kind = SCHEMA["nac"]["mutual_collectors"].kind
        for name in ("os", "scanner", "swima"):
            self.assertEqual(kind(name), [name])
            self.assertIn(name, COLLECTORS)
