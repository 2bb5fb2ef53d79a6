"""PT-TLS (RFC 6876) negotiation: server and client state machines driven with
real bytes back to back, against strongSwan's captured sessions, and through
every error path."""

from __future__ import annotations

import itertools
import re
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from transports.pt_tls.negotiation import (
    Authenticated,
    AuthenticationFailed,
    ClientError,
    Closed,
    PbBatchReceived,
    ProtocolError,
    PtTlsClient,
    PtTlsPhase,
    PtTlsServer,
    PtTlsStateError,
    SaslPlainCredentials,
    ServerError,
    VersionNegotiated,
)
from transports.pt_tls.wire import (
    Experimental,
    PbTncBatch,
    PtTlsError,
    PtTlsErrorCode,
    PtTlsFramer,
    PtTlsMessage,
    PtTlsMessageType,
    SaslAuthenticationData,
    SaslMechanisms,
    SaslMechanismSelection,
    SaslResult,
    SaslResultMessage,
    VersionRequest,
    VersionResponse,
)
from tests.vectors import records

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PASSWORD = "hunter2"


def session_records(name: str) -> list[dict]:
    return records(f"strongswan-pt-tls/{name}")


def server_stream(records: list[dict]) -> list[PtTlsMessage]:
    """What strongSwan's server sent, as PT-TLS messages: the pt-tls records as
    captured, and the server's PB-TNC batches rewrapped with the message id the
    capture notes."""
    out = []
    for record in records:
        if record["dir"] != "s2c":
            continue
        data = bytes.fromhex(record["hex"])
        if record["layer"] == "pt-tls":
            out.append(PtTlsMessage.parse(data))
        else:
            message_id = int(re.search(r"message id (\d+)", record["note"]).group(1))
            out.append(PbTncBatch(data).to_message(message_id))
    return out


def chunks(data: bytes, sizes) -> list[bytes]:
    out = []
    pos = 0
    for size in itertools.cycle(sizes):
        if pos >= len(data):
            return out
        out.append(data[pos:pos + size])
        pos += size


def feed(conn, data: bytes, sizes=(1, 7, 16, 3, 100)) -> list:
    events = []
    for piece in chunks(data, sizes):
        events += conn.receive_data(piece)
    return events


def exchange(client, server, sizes=(1, 7, 16, 3, 100), rounds=6):
    """Pipe bytes both ways until quiet; returns (client events, server events)."""
    client_events, server_events = [], []
    for _ in range(rounds):
        to_server = client.data_to_send()
        server_events += feed(server, to_server, sizes)
        to_client = server.data_to_send()
        client_events += feed(client, to_client, sizes)
        if not to_server and not to_client:
            break
    return client_events, server_events


def sasl_pair(password=PASSWORD, **server_kwargs):
    server_kwargs.setdefault("authenticator", lambda authcid, pw, authzid: (authcid, pw) == ("carol", PASSWORD))
    server = PtTlsServer(**server_kwargs)
    client = PtTlsClient(sasl_identity="carol", sasl_password=password)
    client.start()
    return client, server


def messages(data: bytes) -> list[PtTlsMessage]:
    return PtTlsFramer().feed(data)


def error_sent(data: bytes) -> PtTlsError:
    sent = messages(data)
    self_check = [m for m in sent if m.message_type is PtTlsMessageType.PT_TLS_ERROR]
    assert len(self_check) == 1, sent
    return self_check[0].decode()


def started_server(**kwargs) -> PtTlsServer:
    """A server past version negotiation, waiting for the mechanism selection."""
    kwargs.setdefault("authenticator", lambda *a: True)
    server = PtTlsServer(**kwargs)
    server.receive_data(VersionRequest().to_message(0).build())
    server.data_to_send()
    return server


def data_phase_server(**kwargs) -> PtTlsServer:
    server = started_server(client_authenticated_identity="dave", **kwargs)
    assert server.phase is PtTlsPhase.DATA
    return server


class SaslSuccessTests(unittest.TestCase):
    def test_sasl_plain_success_back_to_back(self):
        client, server = sasl_pair()
        client_events, server_events = exchange(client, server)
        self.assertEqual(server_events, [VersionNegotiated(1), Authenticated("carol", "sasl-plain")])
        self.assertEqual(client_events, [VersionNegotiated(1), Authenticated("carol", "sasl-plain")])
        self.assertIs(server.phase, PtTlsPhase.DATA)
        self.assertIs(client.phase, PtTlsPhase.DATA)
        self.assertEqual((server.identity, server.auth_method, server.version), ("carol", "sasl-plain", 1))

        client.send_batch(b"cdata")
        server.send_batch(b"sdata")
        self.assertEqual(feed(server, client.data_to_send()), [PbBatchReceived(b"cdata")])
        self.assertEqual(feed(client, server.data_to_send()), [PbBatchReceived(b"sdata")])

    def test_server_output_matches_strongswan_byte_for_byte(self):
        records = session_records("carol-sasl-allowed.jsonl")
        captured = b"".join(bytes.fromhex(r["hex"]) for r in records if r["layer"] == "pt-tls")
        client, server = sasl_pair()
        server.receive_data(client.data_to_send())
        sent = server.data_to_send()
        client.receive_data(sent)
        server.receive_data(client.data_to_send())
        sent += server.data_to_send()
        self.assertEqual(sent.hex(), captured.hex())

    def test_message_ids_continue_into_the_data_phase_like_strongswan(self):
        client, server = sasl_pair()
        exchange(client, server)
        server.send_batch(b"first")
        server.send_batch(b"second")
        client.send_batch(b"first")
        self.assertEqual([m.message_id for m in messages(server.data_to_send())], [4, 5])
        self.assertEqual([m.message_id for m in messages(client.data_to_send())], [2])

    def test_client_output_matches_the_strongswan_client_log(self):
        # pt-tls-client: Version Request #0 (20 bytes), Mechanism Selection #1
        # (34 bytes for 'carol' and a 5-character password), batches from #2
        records = session_records("carol-sasl-allowed.jsonl")
        client = PtTlsClient(sasl_identity="carol", sasl_password="12345")
        client.start()
        self.assertEqual(client.data_to_send().hex(), "0000000000000001000000140000000000010101")
        for msg in server_stream(records)[:2]:
            client.receive_data(msg.build())
        selection = messages(client.data_to_send())
        self.assertEqual([(m.message_id, m.type, m.length) for m in selection], [(1, 4, 34)])
        self.assertEqual(selection[0].decode(), SaslMechanismSelection("PLAIN", b"\x00carol\x0012345"))
        for msg in server_stream(records)[2:4]:
            client.receive_data(msg.build())
        for record in records:
            if record["dir"] == "c2s":
                client.send_batch(bytes.fromhex(record["hex"]))
        sent = messages(client.data_to_send())
        self.assertEqual([(m.message_id, m.length) for m in sent], [(2, 386), (3, 19360), (4, 24)])

    def test_sasl_response_after_an_empty_challenge(self):
        server = PtTlsServer(authenticator=lambda authcid, pw, authzid: pw == PASSWORD)
        client = PtTlsClient(sasl_identity="carol", sasl_password=PASSWORD, initial_response=False)
        client.start()
        client_events, server_events = exchange(client, server, sizes=(5,))
        self.assertEqual(server_events[-1], Authenticated("carol", "sasl-plain"))
        self.assertEqual(client_events[-1], Authenticated("carol", "sasl-plain"))

    def test_credentials_checked_outside_the_state_machine(self):
        client, server = sasl_pair(authenticator=None)
        client_events, server_events = exchange(client, server)
        self.assertEqual(server_events, [VersionNegotiated(1), SaslPlainCredentials("carol", None, PASSWORD)])
        self.assertNotIn(PASSWORD, repr(server_events))
        self.assertEqual(client_events, [VersionNegotiated(1)])
        self.assertEqual(server.sasl_result(True), [Authenticated("carol", "sasl-plain")])
        client_events, _ = exchange(client, server)
        self.assertEqual(client_events, [Authenticated("carol", "sasl-plain")])
        self.assertRaises(PtTlsStateError, server.sasl_result, True)

    def test_late_credentials_check_after_the_client_left(self):
        client, server = sasl_pair(authenticator=None)
        exchange(client, server)
        self.assertEqual(server.connection_lost(), [Closed("connection closed by peer")])
        self.assertEqual(server.sasl_result(True), [])
        self.assertEqual(server.data_to_send(), b"")

    def test_trace_sees_every_message_without_the_password(self):
        lines = []
        client, server = sasl_pair(trace=lambda direction, msg: lines.append(f"{direction} {msg.describe()} {msg!r}"))
        exchange(client, server)
        self.assertEqual(
            [line.split(" (")[0] for line in lines],
            [
                "received PT-TLS message #0 of type 'Version Request'",
                "sending PT-TLS message #0 of type 'Version Response'",
                "sending PT-TLS message #1 of type 'SASL Mechanisms'",
                "received PT-TLS message #1 of type 'SASL Mechanism Selection'",
                "sending PT-TLS message #2 of type 'SASL Result'",
                "sending PT-TLS message #3 of type 'SASL Mechanisms'",
            ],
        )
        self.assertNotIn(PASSWORD, "\n".join(lines))


class SaslFailureTests(unittest.TestCase):
    def test_wrong_password_is_aborted_like_strongswan(self):
        records = session_records("carol-sasl-wrong-password.jsonl")
        captured = b"".join(bytes.fromhex(r["hex"]) for r in records if r["layer"] == "pt-tls")
        client, server = sasl_pair(password="wrong")
        sent = b""
        client_events, server_events = [], []
        for _ in range(3):
            server_events += feed(server, client.data_to_send())
            out = server.data_to_send()
            sent += out
            client_events += feed(client, out)
        self.assertEqual(sent.hex(), captured.hex())
        self.assertEqual(server_events[1], AuthenticationFailed(SaslResult.ABORT, "carol"))
        self.assertIsInstance(server_events[2], Closed)
        self.assertEqual(client_events[1:], [AuthenticationFailed(SaslResult.ABORT, "carol"),
                                             Closed("server answered SASL Result ABORT")])
        self.assertIs(server.phase, PtTlsPhase.CLOSED)
        self.assertNotIn("wrong", repr(server_events) + repr(client_events) + server.close_reason)

    def test_rejected_after_an_outside_check(self):
        client, server = sasl_pair(authenticator=None)
        exchange(client, server)
        events = server.sasl_result(False)
        self.assertEqual(events[0], AuthenticationFailed(SaslResult.ABORT, "carol"))
        self.assertIsInstance(events[1], Closed)
        self.assertEqual([m.decode() for m in messages(server.data_to_send())], [SaslResultMessage(SaslResult.ABORT)])

    def test_authenticator_exception_is_an_abort_that_does_not_quote_it(self):
        def broken(authcid, password, authzid):
            raise RuntimeError(f"backend said no to {password}")

        client, server = sasl_pair(authenticator=broken)
        _, server_events = exchange(client, server)
        self.assertIsInstance(server_events[-1], Closed)
        self.assertIn("RuntimeError", server_events[-1].reason)
        self.assertNotIn(PASSWORD, server_events[-1].reason)

    def test_an_authzid_naming_another_user_is_refused(self):
        # carol's own password, but asking to act as mallory-admin (RFC 4616: authzid NUL authcid NUL passwd)
        checked = []
        server = started_server(authenticator=lambda authcid, pw, authzid: checked.append(authcid) or True)
        response = b"mallory-admin\0carol\0" + PASSWORD.encode()
        events = server.receive_data(SaslMechanismSelection("PLAIN", response).to_message(1).build())
        self.assertEqual(events[0], AuthenticationFailed(SaslResult.ABORT, "carol"))
        self.assertIn("'mallory-admin' differs", events[0].reason)  # what the log line says
        self.assertIsInstance(events[1], Closed)
        self.assertIn("'mallory-admin' differs from the authentication identity 'carol'", events[1].reason)
        self.assertNotIn(PASSWORD, events[1].reason)
        self.assertEqual(checked, [])  # refused before any password check
        self.assertEqual([m.decode() for m in messages(server.data_to_send())], [SaslResultMessage(SaslResult.ABORT)])

    def test_an_authzid_equal_to_the_authcid_is_the_same_user(self):
        server = started_server()
        response = b"carol\0carol\0" + PASSWORD.encode()
        events = server.receive_data(SaslMechanismSelection("PLAIN", response).to_message(1).build())
        authenticated = [e for e in events if isinstance(e, Authenticated)]
        self.assertEqual([(e.identity, e.method) for e in authenticated], [("carol", "sasl-plain")])

    def test_malformed_plain_response_is_aborted(self):
        server = started_server()
        events = server.receive_data(SaslMechanismSelection("PLAIN", b"carol-" + PASSWORD.encode()).to_message(1).build())
        self.assertEqual(events[0], AuthenticationFailed(SaslResult.ABORT, None))
        self.assertIsInstance(events[1], Closed)
        self.assertNotIn(PASSWORD, events[1].reason)

    def test_unoffered_mechanism_is_a_sasl_mechanism_error(self):
        server = started_server()
        events = server.receive_data(SaslMechanismSelection("GSSAPI", b"x").to_message(1).build())
        self.assertEqual([type(e) for e in events], [ProtocolError, Closed])
        self.assertEqual(events[0].code, PtTlsErrorCode.SASL_MECHANISM_ERROR)
        self.assertEqual(error_sent(server.data_to_send()).code, PtTlsErrorCode.SASL_MECHANISM_ERROR)

    def test_client_without_credentials_refuses_plain(self):
        server = PtTlsServer(authenticator=lambda *a: True)
        client = PtTlsClient(sasl_identity=None, sasl_password=None)
        client.start()
        client_events, server_events = exchange(client, server)
        self.assertEqual(client_events[1].code, PtTlsErrorCode.SASL_MECHANISM_ERROR)
        self.assertIsInstance(client_events[-1], Closed)
        self.assertEqual(server_events[-2], ClientError(PtTlsErrorCode.SASL_MECHANISM_ERROR, 0, server_events[-2].original_message))
        self.assertEqual(PtTlsMessage.parse(server_events[-2].original_message).decode(), SaslMechanisms(("PLAIN",)))
        self.assertIsInstance(server_events[-1], Closed)

    def test_client_refuses_a_list_without_plain(self):
        client = PtTlsClient(sasl_identity="carol", sasl_password=PASSWORD)
        client.start()
        client.receive_data(VersionResponse().to_message(0).build())
        events = client.receive_data(SaslMechanisms(("SCRAM-SHA-256",)).to_message(1).build())
        self.assertEqual(events[0].code, PtTlsErrorCode.SASL_MECHANISM_ERROR)
        self.assertIn("SCRAM-SHA-256", events[0].reason)


class CertificateTests(unittest.TestCase):
    def test_certificate_client_gets_an_empty_mechanism_list_like_strongswan(self):
        records = session_records("dave-cert-denied.jsonl")
        captured = b"".join(bytes.fromhex(r["hex"]) for r in records if r["layer"] == "pt-tls")
        server = PtTlsServer(client_authenticated_identity="C=CH, O=Test, CN=dave")
        client = PtTlsClient()
        client.start()
        server_events = feed(server, client.data_to_send())
        sent = server.data_to_send()
        self.assertEqual(sent.hex(), captured.hex())
        self.assertEqual(server_events, [VersionNegotiated(1), Authenticated("C=CH, O=Test, CN=dave", "certificate")])
        self.assertEqual(feed(client, sent), [VersionNegotiated(1), Authenticated(None, "none")])
        server.send_batch(b"sdata")
        server.send_batch(b"result")
        self.assertEqual([m.message_id for m in messages(server.data_to_send())], [2, 3])

    def test_sasl_disabled_skips_authentication(self):
        server = PtTlsServer(sasl_enabled=False)
        client = PtTlsClient()
        client.start()
        _, server_events = exchange(client, server)
        self.assertEqual(server_events[-1], Authenticated(None, "none"))


class ClientAgainstCapturedServerTests(unittest.TestCase):
    def run_session(self, name: str, **client_kwargs):
        records = session_records(name)
        client = PtTlsClient(**client_kwargs)
        client.start()
        client.data_to_send()
        stream = b"".join(m.build() for m in server_stream(records))
        return records, feed(client, stream, sizes=(3, 1000, 17, 4096))

    def test_captured_sasl_sessions(self):
        for name in ("carol-sasl-allowed.jsonl", "carol-sasl-open-ports-denied.jsonl",
                     "carol-sasl-second-assessment.jsonl"):
            records, events = self.run_session(name, sasl_identity="carol", sasl_password="12345")
            batches = [bytes.fromhex(r["hex"]) for r in records if r["dir"] == "s2c" and r["layer"] == "pb-tnc"]
            self.assertEqual(
                events,
                [VersionNegotiated(1), Authenticated("carol", "sasl-plain"), *map(PbBatchReceived, batches)],
                name,
            )

    def test_captured_certificate_session(self):
        records, events = self.run_session("dave-cert-denied.jsonl")
        batches = [bytes.fromhex(r["hex"]) for r in records if r["dir"] == "s2c" and r["layer"] == "pb-tnc"]
        self.assertEqual(events, [VersionNegotiated(1), Authenticated(None, "none"), *map(PbBatchReceived, batches)])

    def test_captured_wrong_password_session(self):
        _, events = self.run_session("carol-sasl-wrong-password.jsonl", sasl_identity="carol", sasl_password="x")
        self.assertEqual(events[1], AuthenticationFailed(SaslResult.ABORT, "carol"))
        self.assertIs(events[1].result, SaslResult.ABORT)
        self.assertEqual(events[2], Closed("server answered SASL Result ABORT"))


class VersionTests(unittest.TestCase):
    def test_version_mismatch_is_version_not_supported(self):
        server = PtTlsServer()
        request = VersionRequest(2, 3, 2).to_message(0).build()
        events = feed(server, request)
        self.assertEqual([type(e) for e in events], [ProtocolError, Closed])
        self.assertEqual(events[0].code, PtTlsErrorCode.VERSION_NOT_SUPPORTED)
        error = error_sent(server.data_to_send())
        self.assertEqual(error.code, PtTlsErrorCode.VERSION_NOT_SUPPORTED)
        self.assertEqual(error.original_message, request)
        self.assertEqual(feed(server, VersionRequest().to_message(1).build()), [])

    def test_client_sees_the_server_refuse_its_version(self):
        server = PtTlsServer()
        client = PtTlsClient()
        client.start()
        client._outgoing[:] = VersionRequest(2, 2, 2).to_message(0).build()
        client_events, _ = exchange(client, server)
        self.assertEqual(client_events[0].code, PtTlsErrorCode.VERSION_NOT_SUPPORTED)
        self.assertIsInstance(client_events[0], ServerError)
        self.assertTrue(client_events[0].fatal)
        self.assertIsInstance(client_events[1], Closed)
        self.assertEqual(client.data_to_send(), b"")  # a PT-TLS Error is never answered

    def test_client_refuses_a_version_it_did_not_offer(self):
        client = PtTlsClient()
        client.start()
        events = client.receive_data(VersionResponse(2).to_message(0).build())
        self.assertEqual(events[0].code, PtTlsErrorCode.VERSION_NOT_SUPPORTED)

    def test_version_response_before_the_request_is_invalid(self):
        client = PtTlsClient()
        events = client.receive_data(VersionResponse().to_message(0).build())
        self.assertEqual(events[0].code, PtTlsErrorCode.INVALID_MESSAGE)


class WrongPhaseTests(unittest.TestCase):
    def assertFatal(self, conn, data, code):
        events = feed(conn, data)
        self.assertEqual([type(e) for e in events], [ProtocolError, Closed], events)
        self.assertEqual(events[0].code, code)
        error = error_sent(conn.data_to_send())
        self.assertEqual(error.code, code)
        self.assertIs(conn.phase, PtTlsPhase.CLOSED)
        self.assertEqual(feed(conn, data), [])
        return events, error

    def test_batch_before_version_negotiation(self):
        batch = PbTncBatch(b"early").to_message(0).build()
        _, error = self.assertFatal(PtTlsServer(), batch, PtTlsErrorCode.INVALID_MESSAGE)
        self.assertEqual(error.original_message, batch)

    def test_batch_during_authentication(self):
        self.assertFatal(started_server(), PbTncBatch(b"x").to_message(1).build(), PtTlsErrorCode.INVALID_MESSAGE)

    def test_version_request_in_the_data_phase(self):
        self.assertFatal(data_phase_server(), VersionRequest().to_message(1).build(), PtTlsErrorCode.INVALID_MESSAGE)

    def test_server_only_messages_from_the_client(self):
        for value in (SaslResultMessage(SaslResult.SUCCESS), SaslMechanisms(("PLAIN",)), VersionResponse()):
            self.assertFatal(started_server(), value.to_message(1).build(), PtTlsErrorCode.INVALID_MESSAGE)

    def test_authentication_data_before_a_mechanism_is_selected(self):
        self.assertFatal(started_server(), SaslAuthenticationData(b"x").to_message(1).build(),
                         PtTlsErrorCode.INVALID_MESSAGE)

    def test_second_selection_while_the_password_is_checked(self):
        server = started_server(authenticator=None)
        selection = SaslMechanismSelection("PLAIN", f"\x00carol\x00{PASSWORD}".encode()).to_message(1).build()
        self.assertIsInstance(server.receive_data(selection)[0], SaslPlainCredentials)
        events, error = self.assertFatal(server, selection, PtTlsErrorCode.INVALID_MESSAGE)
        self.assertNotIn(PASSWORD, repr(events) + repr(error) + str(events[0].reason))
        self.assertEqual(server.sasl_result(True), [])

    def test_experimental_is_an_invalid_message(self):
        self.assertFatal(data_phase_server(), Experimental(b"x").to_message(1).build(), PtTlsErrorCode.INVALID_MESSAGE)

    def test_client_gets_a_batch_during_authentication(self):
        client = PtTlsClient(sasl_identity="carol", sasl_password=PASSWORD)
        client.start()
        client.receive_data(VersionResponse().to_message(0).build())
        self.assertFatal(client, PbTncBatch(b"x").to_message(1).build(), PtTlsErrorCode.INVALID_MESSAGE)

    def test_client_gets_a_result_before_selecting(self):
        client = PtTlsClient(sasl_identity="carol", sasl_password=PASSWORD)
        client.start()
        client.receive_data(VersionResponse().to_message(0).build())
        self.assertFatal(client, SaslResultMessage(SaslResult.SUCCESS).to_message(1).build(),
                         PtTlsErrorCode.INVALID_MESSAGE)

    def test_client_gets_a_challenge_after_its_plain_response(self):
        client = PtTlsClient(sasl_identity="carol", sasl_password=PASSWORD)
        client.start()
        client.receive_data(VersionResponse().to_message(0).build() + SaslMechanisms(("PLAIN",)).to_message(1).build())
        client.data_to_send()
        self.assertFatal(client, SaslAuthenticationData(b"").to_message(2).build(), PtTlsErrorCode.SASL_MECHANISM_ERROR)

    def test_sending_a_batch_before_the_data_phase_is_a_caller_error(self):
        self.assertRaises(PtTlsStateError, PtTlsServer().send_batch, b"x")
        self.assertRaises(PtTlsStateError, started_server().send_batch, b"x")

    def test_sending_after_close_is_dropped(self):
        server = data_phase_server()
        server.close("assessment done")
        server.send_batch(b"late")
        self.assertEqual(server.data_to_send(), b"")

    def test_start_twice_is_a_caller_error(self):
        client = PtTlsClient()
        client.start()
        self.assertRaises(PtTlsStateError, client.start)


class UnknownTypeTests(unittest.TestCase):
    def test_vendor_type_is_answered_and_skipped(self):
        server = data_phase_server()
        unknown = PtTlsMessage(0x005597, 1, 1, b"vendor").build()
        events = feed(server, unknown + PbTncBatch(b"next").to_message(2).build())
        self.assertEqual(events[0].code, PtTlsErrorCode.TYPE_NOT_SUPPORTED)
        self.assertFalse(events[0].fatal)
        self.assertEqual(events[1], PbBatchReceived(b"next"))
        self.assertIs(server.phase, PtTlsPhase.DATA)
        error = error_sent(server.data_to_send())
        self.assertEqual((error.code, error.original_message), (PtTlsErrorCode.TYPE_NOT_SUPPORTED, unknown))

    def test_unregistered_ietf_type_is_answered_and_skipped(self):
        server = started_server()
        events = feed(server, PtTlsMessage(0, 9, 1).build())
        self.assertEqual([(type(e), e.code) for e in events], [(ProtocolError, PtTlsErrorCode.TYPE_NOT_SUPPORTED)])
        self.assertIs(server.phase, PtTlsPhase.AUTH)

    def test_client_keeps_going_after_type_not_supported(self):
        client, server = sasl_pair()
        exchange(client, server)
        client.receive_data(PtTlsError(PtTlsErrorCode.TYPE_NOT_SUPPORTED).to_message(9).build())
        self.assertIs(client.phase, PtTlsPhase.DATA)

    def test_reserved_error_code_is_ignored(self):
        server = data_phase_server()
        events = server.receive_data(PtTlsError(PtTlsErrorCode.RESERVED).to_message(1).build())
        self.assertEqual(events, [ClientError(PtTlsErrorCode.RESERVED, 0, b"")])
        self.assertIs(server.phase, PtTlsPhase.DATA)


class FramingErrorTests(unittest.TestCase):
    def test_oversize_announcement_is_rejected_before_the_body_arrives(self):
        server = data_phase_server(max_message_size=4096)
        head = struct.pack(">IIII", 0, 7, 1 << 30, 1)
        events = server.receive_data(head)
        self.assertEqual([type(e) for e in events], [ProtocolError, Closed])
        self.assertEqual(events[0].code, PtTlsErrorCode.INVALID_PARAMETER)
        error = error_sent(server.data_to_send())
        self.assertEqual((error.code, error.original_message), (PtTlsErrorCode.INVALID_PARAMETER, head))
        self.assertEqual(server.receive_data(b"\x00" * 10000), [])
        self.assertEqual(server.max_batch_size, 4080)

    def test_length_below_the_header(self):
        server = PtTlsServer()
        events = feed(server, struct.pack(">IIII", 0, 1, 8, 0) + b"\x00\x01\x01\x01")
        self.assertEqual(events[0].code, PtTlsErrorCode.INVALID_PARAMETER)
        self.assertIn("below the 16-byte header", events[0].reason)
        self.assertIsInstance(events[1], Closed)

    def test_malformed_value(self):
        server = started_server()
        events = feed(server, PtTlsMessage(0, PtTlsMessageType.SASL_MECHANISM_SELECTION, 1, b"").build())
        self.assertEqual(events[0].code, PtTlsErrorCode.MALFORMED_MESSAGE)

    def test_malformed_pt_tls_error_is_not_answered(self):
        server = data_phase_server()
        events = server.receive_data(PtTlsMessage(0, PtTlsMessageType.PT_TLS_ERROR, 1, b"\x00").build())
        self.assertEqual([type(e) for e in events], [Closed])
        self.assertEqual(server.data_to_send(), b"")

    def test_connection_lost_mid_message(self):
        server = data_phase_server()
        server.receive_data(PbTncBatch(b"abcdef").to_message(1).build()[:10])
        events = server.connection_lost()
        self.assertEqual(len(events), 1)
        self.assertIn("10 bytes of an incomplete PT-TLS message", events[0].reason)
        self.assertEqual(server.connection_lost(), [])

    def test_message_ids_roll_over(self):
        server = data_phase_server()
        server._next_id = 0xFFFFFFFF
        server.send_batch(b"a")
        server.send_batch(b"b")
        self.assertEqual([m.message_id for m in messages(server.data_to_send())], [0xFFFFFFFF, 0])


class GeneratedTests(unittest.TestCase):
    @FAST
    @given(st.lists(st.integers(1, 64), min_size=1, max_size=8))
    def test_any_chunking_gives_the_same_session(self, sizes):
        client, server = sasl_pair()
        client_events, server_events = exchange(client, server, sizes=sizes)
        self.assertEqual(client_events[-1], Authenticated("carol", "sasl-plain"))
        self.assertEqual(server_events[-1], Authenticated("carol", "sasl-plain"))
        client.send_batch(b"b" * 300)
        self.assertEqual(feed(server, client.data_to_send(), sizes), [PbBatchReceived(b"b" * 300)])

    @FAST
    @given(st.binary(max_size=120), st.sampled_from(["version", "auth", "data", "client"]))
    def test_random_bytes_never_raise(self, data, where):
        if where == "client":
            conn = PtTlsClient(sasl_identity="carol", sasl_password=PASSWORD)
            conn.start()
        elif where == "version":
            conn = PtTlsServer(max_message_size=64)
        elif where == "auth":
            conn = started_server(max_message_size=64)
        else:
            conn = data_phase_server(max_message_size=64)
        events = conn.receive_data(data)
        for event in events:
            repr(event)
        if any(isinstance(e, ProtocolError) and e.fatal for e in events):
            self.assertIsInstance(events[-1], Closed)
            self.assertIs(conn.phase, PtTlsPhase.CLOSED)

    @FAST
    @given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
    def test_mutated_client_sessions_never_raise(self, flips):
        client = PtTlsClient(sasl_identity="carol", sasl_password=PASSWORD)
        client.start()
        stream = bytearray(client.data_to_send())
        stream += SaslMechanismSelection("PLAIN", f"\x00carol\x00{PASSWORD}".encode()).to_message(1).build()
        stream += PbTncBatch(b"\x02\x00\x00\x01\x00\x00\x00\x08").to_message(2).build()
        for pos, byte in flips:
            stream[pos % len(stream)] = byte
        server = PtTlsServer(authenticator=lambda *a: True, max_message_size=256)
        events = feed(server, bytes(stream), sizes=(5, 11))
        server.data_to_send()
        self.assertNotIn(PASSWORD, repr(events))
        if any(isinstance(e, ProtocolError) and e.fatal for e in events):
            self.assertIsInstance(events[-1], Closed)
