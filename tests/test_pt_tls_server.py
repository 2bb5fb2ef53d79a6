"""The real server process (``twistd -n nac``) over real TLS sockets: PT-TLS
negotiation and every kind of bad input, with the server still serving
afterwards."""

from __future__ import annotations

import atexit

import socket
import ssl
import struct
import threading

from twisted.trial import unittest

from nac.certs import issue_certificate
from nac.pb.batch import BatchType, Direction, PbBatch
from nac.pb.messages import PbError, PbErrorCode
from tests.nacserver import NacServer
from transports.pt_tls.wire import (
    PtTlsError,
    PtTlsErrorCode,
    PtTlsFramer,
    PtTlsMessage,
    PtTlsMessageType as T,
    SaslMechanisms,
    SaslResult,
    SaslResultMessage,
    VersionResponse,
)


def msg(mtype: int, value: bytes = b"", mid: int = 0, vendor: int = 0) -> bytes:
    return PtTlsMessage(vendor, mtype, mid, value).build()


VERSION_REQUEST = msg(T.VERSION_REQUEST, bytes([0, 1, 1, 1]))


class Session:
    """A raw PT-TLS client on a blocking TLS socket."""

    def __init__(self, server: NacServer, cert=None, key=None, source: str | None = None):
        ctx = ssl.create_default_context(cafile=str(server.ca))
        ctx.check_hostname = False
        if cert:
            ctx.load_cert_chain(str(cert), str(key))
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                       source_address=(source, 0) if source else None)
        self.sock = ctx.wrap_socket(raw, server_hostname="nac.test")
        self.framer = PtTlsFramer()
        self.pending: list[PtTlsMessage] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> PtTlsMessage | None:
        """The next message, or None when the server closed the connection."""
        while not self.pending:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                return None
            if not data:
                return None
            self.pending.extend(self.framer.feed(data))
        return self.pending.pop(0)

    def closed(self) -> bool:
        return self.recv() is None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class PtTlsServerTests(unittest.TestCase):
    # One server process for the whole class, started by the first test and
    # stopped at exit (trial has no setUpClass).
    server: NacServer | None = None

    def setUp(self):
        cls = type(self)
        if cls.server is None:
            cls.server = NacServer().start()
            atexit.register(cls.server.stop)
            pki = cls.server.state_dir
            cls.client_cert, cls.client_key = issue_certificate(
                pki / "ca.pem", pki / "ca.key", "dave@nac.test",
                cls.server.dir / "dave.pem", cls.server.dir / "dave.key")

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def session(self, cert=False) -> Session:
        s = Session(self.server, self.client_cert if cert else None, self.client_key if cert else None)
        self.addCleanup(s.close)
        return s

    def assert_error(self, s: Session, code: PtTlsErrorCode) -> PtTlsError:
        m = s.recv()
        self.assertIsNotNone(m, "server closed without a PT-TLS Error")
        self.assertEqual(m.type, T.PT_TLS_ERROR, m)
        err = PtTlsError.parse(m.value)
        self.assertEqual(err.code, code)
        return err

    def assert_still_serving(self) -> None:
        s = self.session()
        s.send(VERSION_REQUEST)
        m = s.recv()
        self.assertEqual((m.type, VersionResponse.parse(m.value).version), (T.VERSION_RESPONSE, 1))

    # -- negotiation ---------------------------------------------------------------

    def test_version_response_and_sasl_plain_offered(self):
        s = self.session()
        s.send(VERSION_REQUEST)
        m = s.recv()
        self.assertEqual((m.type, m.message_id), (T.VERSION_RESPONSE, 0))
        m = s.recv()
        self.assertEqual(m.type, T.SASL_MECHANISMS)
        self.assertEqual(SaslMechanisms.parse(m.value).names, ("PLAIN",))

    def test_certificate_client_skips_sasl(self):
        s = self.session(cert=True)
        s.send(VERSION_REQUEST)
        self.assertEqual(s.recv().type, T.VERSION_RESPONSE)
        m = s.recv()
        self.assertEqual((m.type, SaslMechanisms.parse(m.value).names), (T.SASL_MECHANISMS, ()))
        self.assertIn("client authenticated by TLS certificate as 'dave@nac.test'",
                      self.server.log_text())

    def test_unknown_user_is_refused_with_sasl_abort(self):
        s = self.session()
        s.send(VERSION_REQUEST)
        s.recv(), s.recv()
        s.send(msg(T.SASL_MECHANISM_SELECTION, bytes([5]) + b"PLAIN" + b"\0nobody\0secret-pw", 1))
        m = s.recv()
        self.assertEqual(m.type, T.SASL_RESULT)
        self.assertEqual(SaslResultMessage.parse(m.value).result, SaslResult.ABORT)
        self.assertTrue(s.closed())
        self.assertNotIn("secret-pw", self.server.log_text())

    # -- bad input -------------------------------------------------------------------

    def test_wrong_version_gets_version_not_supported(self):
        s = self.session()
        s.send(msg(T.VERSION_REQUEST, bytes([0, 2, 3, 2])))
        self.assert_error(s, PtTlsErrorCode.VERSION_NOT_SUPPORTED)
        self.assertTrue(s.closed())
        self.assert_still_serving()

    def test_message_in_wrong_phase_gets_invalid_message(self):
        s = self.session()
        s.send(msg(T.PB_TNC_BATCH, PbBatch(BatchType.CDATA, Direction.TO_SERVER, ()).build()))
        self.assert_error(s, PtTlsErrorCode.INVALID_MESSAGE)
        self.assertTrue(s.closed())
        self.assert_still_serving()

    def test_oversize_message_is_refused_before_its_body(self):
        s = self.session()
        s.send(struct.pack(">IIII", 0, T.VERSION_REQUEST, 0x7FFFFFFF, 0))
        self.assert_error(s, PtTlsErrorCode.INVALID_PARAMETER)
        self.assertTrue(s.closed())
        self.assert_still_serving()

    def test_length_below_header_is_invalid(self):
        s = self.session()
        s.send(struct.pack(">IIII", 0, T.VERSION_REQUEST, 8, 0))
        self.assert_error(s, PtTlsErrorCode.INVALID_PARAMETER)
        self.assertTrue(s.closed())

    def test_unknown_type_gets_type_not_supported_and_session_goes_on(self):
        s = self.session()
        s.send(VERSION_REQUEST)
        s.recv(), s.recv()
        s.send(msg(0x99, b"xyz", 1))
        self.assert_error(s, PtTlsErrorCode.TYPE_NOT_SUPPORTED)
        s.send(msg(T.SASL_MECHANISM_SELECTION, bytes([5]) + b"PLAIN" + b"\0nobody\0pw", 2))
        self.assertEqual(s.recv().type, T.SASL_RESULT)

    def test_malformed_pb_batch_gets_pb_error_in_close_batch(self):
        s = self.session(cert=True)
        s.send(VERSION_REQUEST)
        s.recv(), s.recv()
        bad = b"\x03\x00\x00\x01\x00\x00\x00\x08"  # PB-TNC version 3
        s.send(msg(T.PB_TNC_BATCH, bad, 1))
        m = s.recv()
        self.assertEqual(m.type, T.PB_TNC_BATCH)
        batch = PbBatch.parse(m.value)
        self.assertEqual((batch.batch_type, batch.direction), (BatchType.CLOSE, Direction.TO_CLIENT))
        (err,) = batch.messages
        self.assertIsInstance(err, PbError)
        self.assertEqual((err.code, err.fatal, err.bad_version), (PbErrorCode.VERSION_NOT_SUPPORTED, True, 3))
        self.assertTrue(s.closed())
        self.assert_still_serving()

    def test_garbage_instead_of_tls_is_dropped(self):
        raw = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        self.addCleanup(raw.close)
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n" * 10)
        raw.settimeout(10)
        try:
            while raw.recv(4096):
                pass
        except ConnectionResetError:
            pass
        self.assert_still_serving()

    def test_many_concurrent_sessions(self):
        # from addresses of their own: more than [pt-tls] max_unauthenticated_per_source
        # unauthenticated connections of one address would be refused
        errors = []

        def one(n):
            try:
                s = Session(self.server, source=f"127.0.1.{n}")
                s.send(VERSION_REQUEST)
                if s.recv().type != T.VERSION_RESPONSE or s.recv().type != T.SASL_MECHANISMS:
                    errors.append("unexpected reply")
                s.close()
            except Exception as exc:  # collected and asserted below
                errors.append(repr(exc))

        threads = [threading.Thread(target=one, args=(n,)) for n in range(1, 101)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])


class TlsDeclarationTests(unittest.TestCase):
    def test_declarations_made_for_one_connection_serve_the_next(self):
        import gc

        from twisted.internet.interfaces import ITCPTransport
        from twisted.internet.testing import StringTransport
        from zope.interface import implementer
        from zope.interface.declarations import InstanceDeclarations, Provides

        from transports.pt_tls.tls import TlsServerProtocol, hold_declarations

        @implementer(ITCPTransport)
        class Transport(StringTransport):
            pass

        class Unheld(TlsServerProtocol):
            pass

        # zope.interface forgets declarations nobody holds ...
        Provides(Unheld, ITCPTransport)
        gc.collect()
        self.assertNotIn((Unheld, ITCPTransport), InstanceDeclarations)
        # ... the ones of a connection made are held for the next
        protocol = TlsServerProtocol.__new__(TlsServerProtocol)
        hold_declarations(protocol, Transport())
        gc.collect()
        self.assertIn((TlsServerProtocol, ITCPTransport), InstanceDeclarations)
        hold_declarations(protocol, None)  # a client without a transport yet: nothing
