"""The real server (``twistd -n nac``) under the pre-authentication attacks
of issue 17 and 22, on loopback with small budgets: connections that never
send a byte, from one address and from many, and SASL PLAIN password
guessing.  Flooders use source addresses of their own (127.0.0.2 and up),
the legitimate client (nac's own ``nac-pt-tls-client``) 127.0.0.1, and it
is still served; the log says what was refused in a few lines."""

from __future__ import annotations

import socket
import struct

from twisted.trial import unittest

from tests.nacserver import NacServer
from tests.test_pt_tls_server import VERSION_REQUEST, Session, msg
from transports.pt_tls.wire import (
    PtTlsError,
    PtTlsErrorCode,
    PtTlsMessageType as T,
    SaslResult,
    SaslResultMessage,
)

PASSWORD = "carol's long password"


def idle_connections(server: NacServer, sources: list[str], per_source: int) -> list[socket.socket]:
    """TCP connections that never send a byte (the server may close some at once)."""
    out = []
    for source in sources:
        for _ in range(per_source):
            s = socket.socket()
            s.settimeout(10)
            s.bind((source, 0))
            s.connect(("127.0.0.1", server.port))
            out.append(s)
    return out


class FloodTests(unittest.TestCase):
    def start(self, pt_tls=None, auth=None) -> NacServer:
        # max_connections 100: 200 idle connections would take every one without the
        # unauthenticated budget, and the legitimate client would be refused
        server = NacServer({"pt-tls": {"max_connections": "100", "max_unauthenticated": "40",
                                       "max_unauthenticated_per_source": "20", "busy_timeout": "5",
                                       **(pt_tls or {})},
                            "auth": auth or {}})
        server.admin("init")
        server.admin("user", "add", "carol", "--password", PASSWORD)
        server.start()
        self.addCleanup(server.stop)
        self.server = server
        return server

    def close_all(self, sockets):
        for s in sockets:
            s.close()

    def assert_served(self) -> None:
        done = self.server.client("--client", "carol", "--secret", PASSWORD, "--collectors", "", timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr + self.server.log_text()[-3000:])
        self.assertIn("access recommendation:", done.stdout)

    def lines_with(self, text: str) -> list[str]:
        return [line for line in self.server.log_text().splitlines() if text in line]

    def test_idle_connections_from_one_address(self):
        self.start()
        flood = idle_connections(self.server, ["127.0.0.2"], 200)
        self.addCleanup(self.close_all, flood)
        self.assert_served()
        # 180 refused: the first line at once, the rest counted in at most one more
        refusals = self.lines_with("refused")
        self.assertTrue(1 <= len(refusals) <= 2, refusals)
        self.assertIn("refused a PT-TLS connection from 127.0.0.2: 20 unauthenticated connections from one "
                      "address is the limit ([pt-tls] max_unauthenticated_per_source)", refusals[0])

    def test_idle_connections_from_many_addresses(self):
        self.start()
        flood = idle_connections(self.server, [f"127.0.0.{n}" for n in range(2, 12)], 20)
        self.addCleanup(self.close_all, flood)
        self.assert_served()
        log = self.server.log_text()
        # the budget of 40 filled up: the oldest of the busiest address made room,
        # and the unauthenticated connections got 5 s instead of 10 + 30
        self.assertIn("unauthenticated connections were taken: the oldest of the address holding the most "
                      "made room for another address", log)
        self.assertIn("each now has 5 s from its start to authenticate ([pt-tls] busy_timeout)", log)
        self.assertLess(len(self.lines_with("127.0.0.")), 60)

    def test_sasl_password_guessing(self):
        self.start(auth={"max_failures_per_source": "3", "max_failures_per_user": "8", "failure_delay": "0"})
        answers = [self.guess("127.0.0.2", f"guess {n}") for n in range(12)]
        self.assertEqual(answers, [SaslResult.ABORT] * 12)
        # locked out: even the right password from there is refused, unchecked
        self.assertEqual(self.guess("127.0.0.2", PASSWORD), SaslResult.ABORT)
        self.assertEqual(len(self.lines_with("locking out 127.0.0.2 for 300 s: 3 failed logins")), 1)
        self.assertEqual(len(self.lines_with("SASL PLAIN authentication of 'carol' from 127.0.0.2")), 3)
        # carol guessed from five more addresses, once each: 8 failures, locked out for those ...
        for n in range(3, 8):
            self.assertEqual(self.guess(f"127.0.0.{n}", "another guess"), SaslResult.ABORT)
        self.assertEqual(self.guess("127.0.0.3", PASSWORD), SaslResult.ABORT)
        self.assertEqual(len(self.lines_with("user name 'carol' had 8 failed logins from 6 sources: locked out "
                                             "for 300 s for those sources (others may still log in)")), 1)
        # ... not for the real user's address
        self.assert_served()
        self.assertNotIn(PASSWORD, self.server.log_text())

    def guess(self, source: str, password: str) -> SaslResult | int | None:
        s = Session(self.server, source=source)
        self.addCleanup(s.close)
        s.send(VERSION_REQUEST)
        s.recv(), s.recv()
        s.send(msg(T.SASL_MECHANISM_SELECTION, bytes([5]) + b"PLAIN" + b"\0carol\0" + password.encode(), 1))
        reply = s.recv()
        return SaslResultMessage.parse(reply.value).result if reply is not None else None

    def test_large_message_before_authentication(self):
        self.start()
        s = Session(self.server, source="127.0.0.2")
        self.addCleanup(s.close)
        s.send(VERSION_REQUEST)
        s.recv(), s.recv()
        # a SASL message announcing 64 KiB, never sent: refused from its header
        s.send(struct.pack(">IIII", 0, T.SASL_MECHANISM_SELECTION, 65536, 1))
        reply = s.recv()
        self.assertEqual(reply.type, T.PT_TLS_ERROR)
        self.assertEqual(PtTlsError.parse(reply.value).code, PtTlsErrorCode.INVALID_PARAMETER)
        self.assertTrue(s.closed())
        self.assert_served()
