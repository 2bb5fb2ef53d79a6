"""The log of a real server (``twistd -n nac``, text log file) under bad
input from the network, on loopback:

* identities that carry a line feed, a terminal escape sequence, a NUL,
  a right-to-left override and bytes that are no UTF-8 (SASL PLAIN over
  PT-TLS, EAP-Response/Identity and User-Name over RADIUS; IKEv2 IDi
  through the responder with nac's own log observers) end up on one line
  each, escaped;
* 5,000 malformed RADIUS datagrams from a NAS and 1,000 from an unknown
  address leave a handful of lines, whose counts add up to what was sent;
  so do 200 PT-TLS sessions sending a malformed message to two processes
  (the worker's count reaches the main log when it stops).

The expected escapes are written out here by hand (``\\x0a`` for a line
feed, ``\\x1b`` for ESC, ``\\u202e`` for the override, U+FFFD for bytes that
are no UTF-8 where nac decodes with replacement)."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import ssl
import struct

from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from nac.log import ClassicFileObserver, JsonLineObserver
from tests.nacserver import NacServer, free_port
from tests.test_ikev2_sa import ResponderMixin, establish
from transports.ikev2.message import IdType, IDi
from transports.radius.packet import Attribute, AttributeType, Code, RadiusPacket, sign_request, verify_response

SECRET = b"the NAS secret for log tests"
# what a forger would like to see as a line of its own
FORGED = "2026-12-07T00:00:00+0000 [nac#info] access granted to mallory"


def log_lines(server: NacServer) -> list[str]:
    raw = server.log.read_bytes()
    text = raw.decode("utf-8")  # strict: nothing undecodable was written
    for char in "\x1b\x00\u202e\r\x07":
        assert char not in text, f"{char!r} written raw"
    return text.splitlines()


def assert_one_line(test: unittest.TestCase, lines: list[str], expected: str) -> str:
    holding = [line for line in lines if expected in line]
    test.assertEqual(len(holding), 1, f"{expected!r} in {holding!r}")
    test.assertFalse(any(line.startswith(FORGED[:20]) for line in lines), "a forged line")
    return holding[0]


def counted(lines: list[str], kind: str, line_text: str) -> tuple[int, int]:
    """(lines about ``kind``, events they stand for: one a line, a summary its count)."""
    shown = [line for line in lines if line_text in line]
    summaries = [int(m.group(1).replace(",", "")) for line in lines
                 if (m := re.search(re.escape(kind) + r": … ([\d,]+) more like this", line))]
    return len(shown) + len(summaries), len(shown) + sum(summaries)


class RadiusLogTests(unittest.TestCase):
    def setUp(self):
        self.port = free_port(socket.SOCK_DGRAM)
        self.server = NacServer({"nac": {"transports": "radius"},
                                 "radius": {"listen": "127.0.0.1", "port": self.port, "secret": SECRET.decode(),
                                            "clients": "127.0.0.1"}},
                                ready="RADIUS server listening")
        self.addCleanup(self.server.stop)
        self.server.start()
        self.nas = self.socket("127.0.0.1")
        self.next_id = 0

    def socket(self, address: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind((address, 0))
        sock.settimeout(20)
        return sock

    def request(self, code: int, attributes: list[Attribute]) -> RadiusPacket:
        """Send a signed request from the NAS; its verified reply."""
        self.next_id = (self.next_id + 1) % 256
        packet = RadiusPacket(code, self.next_id, os.urandom(16),
                              tuple(attributes) + (Attribute(AttributeType.MESSAGE_AUTHENTICATOR, bytes(16)),))
        self.nas.sendto(sign_request(packet, SECRET), ("127.0.0.1", self.port))
        while True:
            data, _ = self.nas.recvfrom(4096)
            if data[1] == packet.identifier:
                return verify_response(data, packet.authenticator, SECRET)

    def processed(self) -> None:
        """Everything sent before has been read: the server answers its one
        socket in order, so a Status-Server's reply comes after them."""
        self.assertEqual(self.request(Code.STATUS_SERVER, []).code, Code.ACCESS_ACCEPT)

    def test_identities_are_escaped_on_one_line(self):
        # \xff: a byte that is no UTF-8; e2 80 ae: U+202E (right-to-left override)
        raw_identity = b"car\xffol\n" + FORGED.encode() + b"\x1b[31m\xe2\x80\xae"
        eap_identity = bytes((2, 7)) + (5 + len(raw_identity) + 5).to_bytes(2, "big") + b"\x01" + raw_identity \
            + b"\x00tail"
        reply = self.request(Code.ACCESS_REQUEST, [Attribute(AttributeType.USER_NAME, b"anonymous"),
                                                   Attribute(AttributeType.EAP_MESSAGE, eap_identity)])
        self.assertEqual(reply.code, Code.ACCESS_CHALLENGE)
        user_name = b"dave\x00\n" + FORGED.encode() + b"\x1b[31m\xff"
        reply = self.request(Code.ACCESS_REQUEST, [Attribute(AttributeType.USER_NAME, user_name),
                                                   Attribute(AttributeType.CALLING_STATION_ID, b"\x1b]0;x\x07")])
        self.assertEqual(reply.code, Code.ACCESS_REJECT)
        self.server.stop()
        lines = log_lines(self.server)
        line = assert_one_line(self, lines, "received EAP identity 'car\ufffdol\\x0a" + FORGED
                               + "\\x1b[31m\\u202e' from 127.0.0.1")
        self.assertNotIn("tail", line)  # the identity ends at its NUL (RFC 3748 §5.1)
        assert_one_line(self, lines, "for 'dave\\x00\\x0a" + FORGED + "\\x1b[31m\ufffd' has no EAP-Message")

    def test_a_flood_of_malformed_datagrams_is_a_handful_of_lines(self):
        malformed = b"\x01\x00\x00\x40" + bytes(16)  # its Length says 64 bytes; 20 came
        stranger = self.socket("127.0.0.2")
        for _ in range(50):
            for _ in range(100):
                self.nas.sendto(malformed, ("127.0.0.1", self.port))
            for _ in range(20):
                stranger.sendto(malformed, ("127.0.0.1", self.port))
            self.processed()
        self.server.stop()  # the summaries of windows still open are written now
        lines = log_lines(self.server)
        self.assertEqual(counted(lines, "invalid RADIUS message", "received invalid RADIUS message")[1], 5000)
        self.assertLessEqual(counted(lines, "invalid RADIUS message", "received invalid RADIUS message")[0], 6)
        unknown = counted(lines, "RADIUS packet from an unknown client", "from unknown client 127.0.0.2")
        self.assertEqual(unknown[1], 1000)
        self.assertLessEqual(unknown[0], 6)
        self.assertLess(len(lines), 40, "\n".join(lines))


class PtTlsSaslLogTests(unittest.TestCase):
    def setUp(self):
        self.server = NacServer()
        self.addCleanup(self.server.stop)
        self.server.start()

    def sasl_plain(self, response: bytes) -> None:
        """A raw PT-TLS client: version, then SASL PLAIN with ``response``
        (authzid NUL authcid NUL password) until the server's SASL Result."""
        context = ssl.create_default_context(cafile=str(self.server.ca))
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=30) as tcp, \
                context.wrap_socket(tcp, server_hostname="127.0.0.1") as tls:
            def send(msg_type: int, value: bytes, message_id: int) -> None:
                tls.sendall(struct.pack(">IIII", 0, msg_type, 16 + len(value), message_id) + value)

            def receive() -> int:
                header = b""
                while len(header) < 16:
                    chunk = tls.recv(16 - len(header))
                    if not chunk:
                        return -1
                    header += chunk
                _vendor, msg_type, length, _id = struct.unpack(">IIII", header)
                left = length - 16
                while left:
                    left -= len(tls.recv(left))
                return msg_type

            send(1, b"\x00\x01\x01\x01", 0)  # Version Request: version 1
            while receive() != 3:  # Version Response, then SASL Mechanisms
                pass
            send(4, b"\x05PLAIN" + response, 1)  # SASL Mechanism Selection with the initial response
            while receive() not in (6, 8, -1):  # SASL Result, PT-TLS Error, or the end
                pass

    def test_identities_are_escaped_on_one_line(self):
        identity = "carol\n" + FORGED + "\x1b[31m\u202e"
        self.sasl_plain(b"\x00" + identity.encode() + b"\x00not the password")
        self.sasl_plain(b"\x00eve\xff\x1b[31m\x00password")  # no UTF-8: refused before any identity is used
        self.sasl_plain(b"admin\n\x1b[2J\x00erin\x00password")  # an authzid for someone else
        self.server.stop()
        lines = log_lines(self.server)
        assert_one_line(self, lines, "SASL PLAIN authentication of 'carol\\x0a" + FORGED
                        + "\\x1b[31m\\u202e' from 127.0.0.1[")
        assert_one_line(self, lines, "SASL PLAIN response is not UTF-8")
        assert_one_line(self, lines, "authorization identity 'admin\\n\\x1b[2J' differs")
        self.assertFalse(any("not the password" in line or "password'" in line for line in lines))


class WorkerFloodTests(unittest.TestCase):
    """PT-TLS with a worker process: each process counts its own, and the
    worker's summary reaches the main log when it stops."""

    def test_malformed_messages_over_two_processes(self):
        server = NacServer({"pt-tls": {"workers": "2"}}, ready="all 1 PT-TLS worker processes are accepting")
        self.addCleanup(server.stop)
        server.start()
        context = ssl.create_default_context(cafile=str(server.ca))
        for _ in range(200):
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as tcp, \
                    context.wrap_socket(tcp, server_hostname="127.0.0.1") as tls:
                # Message Type 0xffffffff is reserved: a PT-TLS Error, and the end of the session
                tls.sendall(struct.pack(">IIII", 0, 0xFFFFFFFF, 16, 0))
                while tls.recv(4096):
                    pass
        server.stop()
        lines = log_lines(server)
        # before authentication, PT-TLS's own tally of refusals (transports.pt_tls.admission)
        shown = [line for line in lines if "unauthenticated PT-TLS connection" in line]
        total = sum(int(m.group(1).replace(",", "")) if (m := re.search(r"closed ([\d,]+) unauth", line)) else 1
                    for line in shown)
        self.assertEqual(total, 200, "\n".join(lines))
        shown = len(shown)
        self.assertLessEqual(shown, 8, "\n".join(lines))


class IkeIdentityLogTests(ResponderMixin, unittest.TestCase):
    """IKEv2 IDi through the sans-IO responder, written by nac's text and
    JSON observers as twistd would."""

    def test_idi_is_escaped_on_one_line(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        text, records = io.StringIO(), io.StringIO()
        for observer in (ClassicFileObserver(text), JsonLineObserver(records)):
            globalLogPublisher.addObserver(observer)
            self.addCleanup(globalLogPublisher.removeObserver, observer)
        raw = b"carol\n" + FORGED.encode() + b"\x1b[31m\x00\xff\xe2\x80\xae@example.org"
        self.patch(IDi, "of", classmethod(lambda cls, _identity: cls(IdType.ID_RFC822_ADDR, raw)))
        establish(self, harness, initiator)
        # bytes that are no UTF-8 stay visible as \xNN (strongSwan prints IDs so)
        escaped = "carol\\x0a" + FORGED + "\\x1b[31m\\x00\\xff\\u202e@example.org"
        lines = text.getvalue().splitlines()
        line = assert_one_line(self, lines, f"authentication of '{escaped}' with EAP successful")
        self.assertTrue(line.endswith("with EAP successful"))
        for char in "\x1b\x00\u202e":
            self.assertNotIn(char, text.getvalue())
        messages = [json.loads(record)["message"] for record in records.getvalue().splitlines()]
        self.assertIn(f"authentication of '{escaped}' with EAP successful", messages)
