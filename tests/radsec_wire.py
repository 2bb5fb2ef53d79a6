"""RADIUS requests and reply checks for the RadSec tests, written with
hashlib/hmac from RFC 2865 §3 and RFC 3579 §3.2 — independent of
transports.radius.packet, whose results they check."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

ACCESS_REQUEST, ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE, STATUS_SERVER = 1, 2, 3, 11, 12
ACCOUNTING_REQUEST, ACCOUNTING_RESPONSE = 4, 5
USER_NAME, EAP_MESSAGE, MESSAGE_AUTHENTICATOR, CALLING_STATION_ID = 1, 79, 80, 31
ACCT_STATUS_TYPE, ACCT_SESSION_ID = 40, 44


def request(code: int, identifier: int, attributes: list[tuple[int, bytes]], secret: bytes) -> bytes:
    """A request with a Message-Authenticator (last) and a random Request Authenticator."""
    body = b"".join(bytes((kind, 2 + len(value))) + value for kind, value in attributes)
    body += bytes((MESSAGE_AUTHENTICATOR, 18)) + bytes(16)
    data = bytearray(struct.pack(">BBH", code, identifier, 20 + len(body)) + os.urandom(16) + body)
    data[-16:] = hmac.new(secret, bytes(data), hashlib.md5).digest()
    return bytes(data)


def status_server(identifier: int, secret: bytes = b"radsec") -> bytes:
    return request(STATUS_SERVER, identifier, [], secret)


def eap_identity_request(identifier: int, user: bytes = b"carol", secret: bytes = b"radsec") -> bytes:
    """An Access-Request carrying EAP-Response/Identity (RFC 3748 §5.1)."""
    eap = bytes((2, 1)) + struct.pack(">H", 5 + len(user)) + bytes((1,)) + user
    return request(ACCESS_REQUEST, identifier, [(USER_NAME, user), (CALLING_STATION_ID, b"02-00-00-00-00-01"),
                                                (EAP_MESSAGE, eap)], secret)


def accounting_start(identifier: int, session_id: bytes, user: bytes = b"carol", secret: bytes = b"radsec",
                     station: bytes = b"02-00-00-00-00-01") -> bytes:
    """An Accounting-Request Start whose Request Authenticator is
    MD5(Code | Identifier | Length | 16 zero octets | Attributes | secret), RFC 2866 §3."""
    attributes = [(ACCT_STATUS_TYPE, struct.pack(">I", 1)), (ACCT_SESSION_ID, session_id), (USER_NAME, user),
                  (CALLING_STATION_ID, station)]
    body = b"".join(bytes((kind, 2 + len(value))) + value for kind, value in attributes)
    head = struct.pack(">BBH", ACCOUNTING_REQUEST, identifier, 20 + len(body))
    return head + hashlib.md5(head + bytes(16) + body + secret).digest() + body


def response_valid(reply: bytes, request_packet: bytes, secret: bytes = b"radsec") -> bool:
    """Whether ``reply``'s Response Authenticator is MD5(Code | Identifier |
    Length | Request Authenticator | Attributes | secret), RFC 2865 §3."""
    expected = hashlib.md5(reply[:4] + request_packet[4:20] + reply[20:] + secret).digest()
    return reply[1] == request_packet[1] and hmac.compare_digest(expected, reply[4:20])
