"""RadSec (RFC 6614) against the real server (`twistd -n nac`): a NAS written
here with Python's ssl module connects with a client certificate of the CA in
``[radius] radsec_ca``, sends Status-Server (RFC 5997), an EAP
Access-Request and an Accounting-Request, and checks the replies' Response Authenticators with the
secret "radsec" (tests/radsec_wire.py computes them with hashlib).  NASes
without a certificate, or with one from another CA (naming the same NAS),
are refused in the TLS handshake."""

from __future__ import annotations

import shutil
import socket
import ssl
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from nac.certs import ensure_demo_pki, issue_certificate
from tests import radsec_wire as wire
from tests.nacserver import NacServer, free_port
from transports.radius.radsec import RadsecStream


def nas_certificate(pki_dir: Path, name: str) -> tuple[Path, Path]:
    """A CA in ``pki_dir`` and a client certificate it issues for ``name`` (dNSName)."""
    pki = ensure_demo_pki(pki_dir)
    return issue_certificate(pki.ca_cert, pki.ca_key, name, pki_dir / f"{name}.pem", pki_dir / f"{name}.key",
                             san_dns=[name])


class RadsecE2eTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = Path(tempfile.mkdtemp(prefix="nac-radsec-"))
        cls.nas_cert, cls.nas_key = nas_certificate(cls.dir / "nas-pki", "sw1.example.org")
        cls.stranger_cert, cls.stranger_key = nas_certificate(cls.dir / "other-pki", "sw1.example.org")
        cls.radsec_port = free_port()
        (cls.dir / "server").mkdir()
        server = NacServer({
            "nac": {"transports": "pt-tls,radius"},
            "radius": {"listen": "127.0.0.1", "port": free_port(socket.SOCK_DGRAM), "secret": "testing123",
                       "clients": "127.0.0.1/32", "radsec_port": cls.radsec_port, "radsec_listen": "127.0.0.1",
                       "radsec_ca": cls.dir / "nas-pki" / "ca.pem"},
            "radius-client:sw1": {"radsec_name": "sw1.example.org"},
            "eap": {"tnc": "none"},
        }, workdir=str(cls.dir / "server"))
        server.admin("init")
        server.start()
        try:
            server.wait_listening(cls.radsec_port)
        except Exception:
            server.stop()
            shutil.rmtree(cls.dir, ignore_errors=True)
            raise
        cls.server = server

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def context(self, cert: Path | None = None, key: Path | None = None, *, tls12: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(self.server.ca))
        ctx.check_hostname = False  # the demo server certificate names nac.test
        if tls12:
            # the server refuses the client certificate within the handshake itself
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None:
            ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def connect(self, ctx: ssl.SSLContext) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.radsec_port), timeout=10)
        try:
            return ctx.wrap_socket(raw, server_hostname="nac.test")
        except BaseException:
            raw.close()
            raise

    def exchange(self, conn: ssl.SSLSocket, requests: list[bytes]) -> list[bytes]:
        conn.sendall(b"".join(requests))
        stream, replies = RadsecStream(), []
        while len(replies) < len(requests):
            data = conn.recv(4096)
            self.assertTrue(data, "the server closed the connection")
            replies += stream.receive_data(data)
        return replies

    def test_status_server_and_access_request_answered_with_the_radsec_secret(self):
        with self.connect(self.context(self.nas_cert, self.nas_key)) as conn:
            self.assertGreaterEqual(conn.version(), "TLSv1.2")
            status, access = wire.status_server(5), wire.eap_identity_request(6)
            replies = sorted(self.exchange(conn, [status, access]), key=lambda r: r[1])
            self.assertEqual([r[0] for r in replies], [wire.ACCESS_ACCEPT, wire.ACCESS_CHALLENGE])
            self.assertTrue(wire.response_valid(replies[0], status))
            self.assertTrue(wire.response_valid(replies[1], access))
            self.assertFalse(wire.response_valid(replies[1], access, b"testing123"))
            # the connection stays open for keep-alives
            again = wire.status_server(7)
            (reply,) = self.exchange(conn, [again])
            self.assertTrue(wire.response_valid(reply, again))
        log = self.server.log_text()
        self.assertIn("RadSec server listening on 127.0.0.1", log)
        self.assertIn("NAS 'sw1'", log)

    def test_accounting_request_is_recorded_and_answered(self):
        with self.connect(self.context(self.nas_cert, self.nas_key)) as conn:
            start = wire.accounting_start(8, b"radsec-session-1")
            (reply,) = self.exchange(conn, [start])
        self.assertEqual(reply[0], wire.ACCOUNTING_RESPONSE)
        self.assertTrue(wire.response_valid(reply, start))
        listed = self.server.admin("accounting", "list")
        self.assertIn("radsec-session-1", listed)
        self.assertIn("sw1", listed)

    def test_oversize_packet_closes_the_connection(self):
        with self.connect(self.context(self.nas_cert, self.nas_key)) as conn:
            conn.sendall(bytes((1, 1)) + (4097).to_bytes(2, "big") + bytes(16))
            try:
                self.assertEqual(conn.recv(4096), b"")
            except (ConnectionResetError, ssl.SSLError):
                pass
        self.wait_logged("RADIUS Length 4097 is outside 20..4096")

    def assert_refused(self, ctx: ssl.SSLContext) -> None:
        try:
            conn = self.connect(ctx)
        except (ssl.SSLError, ConnectionResetError):
            return
        self.fail("the TLS handshake succeeded")

    def test_nas_without_certificate_is_refused_in_the_handshake(self):
        self.assert_refused(self.context(tls12=True))
        self.wait_logged("closed before the NAS was identified")

    def test_certificate_of_another_ca_is_refused_in_the_handshake(self):
        # the same name as the NAS's: only the CA check refuses it
        self.assert_refused(self.context(self.stranger_cert, self.stranger_key, tls12=True))
        # with TLS 1.3 the client's handshake ends first: no reply, the connection ends
        with self.connect(self.context(self.stranger_cert, self.stranger_key)) as conn:
            conn.sendall(wire.status_server(1))
            try:
                self.assertEqual(conn.recv(4096), b"")
            except (ConnectionResetError, ssl.SSLError):
                pass
        self.wait_logged("certificate verify failed")

    def wait_logged(self, text: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.server.log_text():
            if time.monotonic() > deadline:
                self.fail(f"{text!r} not logged:\n{self.server.log_text()[-3000:]}")
            time.sleep(0.05)
