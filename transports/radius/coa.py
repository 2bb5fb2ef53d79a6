"""Change-of-Authorization and Disconnect (RFC 5176): nac as the CoA client of a NAS.

When the decision for an endpoint changes after it was admitted, nac tells
the NAS holding its session (known from accounting, RFC 2866): a
CoA-Request with the enforcement attributes of the new decision (Filter-Id,
the VLAN triple), or a Disconnect-Request, to the NAS's ``coa_port`` (3799),
signed with its shared secret.

:class:`CoaClient` is sans-IO: :meth:`CoaClient.request` makes the request
(identification attributes of §3: NAS-IP-Address, User-Name,
Acct-Session-Id, Calling-Station-Id, NAS-Port only without an
Acct-Session-Id; Event-Timestamp §3.4;
Message-Authenticator, §3.1, computed over the packet with a zero
authenticator, then the Request Authenticator as for accounting, §2.3);
:meth:`CoaClient.datagrams` gives what to send, :meth:`CoaClient.receive`
takes a datagram and returns the :class:`CoaOutcome` it completes (ACK, or
NAK with its Error-Cause, §3.5), :meth:`CoaClient.expire` retransmits the
same bytes with doubling timeouts (RFC 5080 §2.2.1: 2 s, 4 s, ... at most
16 s) and gives up after ``attempts``.  No socket or clock here; the
Twisted edge (:class:`CoaSender`) and a blocking one for ``nac-admin``
(:func:`send_blocking`) drive it.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable, Iterable

from nac.entropy import random_bytes as pool_bytes
from transports.radius.packet import (
    Attribute,
    AttributeType,
    Code,
    RadiusPacket,
    RadiusPacketError,
    code_name,
    sign_accounting_request,
    verify_response,
)

__all__ = ["CoaClient", "CoaCounters", "CoaOutcome", "CoaTarget", "ErrorCause", "error_cause_label",
           "error_cause_name", "send_blocking"]

DEFAULT_PORT = 3799
_A = AttributeType


class ErrorCause(IntEnum):
    """Error-Cause values (RFC 5176 §3.5)."""

    RESIDUAL_SESSION_CONTEXT_REMOVED = 201
    INVALID_EAP_PACKET = 202
    UNSUPPORTED_ATTRIBUTE = 401
    MISSING_ATTRIBUTE = 402
    NAS_IDENTIFICATION_MISMATCH = 403
    INVALID_REQUEST = 404
    UNSUPPORTED_SERVICE = 405
    UNSUPPORTED_EXTENSION = 406
    INVALID_ATTRIBUTE_VALUE = 407
    ADMINISTRATIVELY_PROHIBITED = 501
    REQUEST_NOT_ROUTABLE = 502
    SESSION_CONTEXT_NOT_FOUND = 503
    SESSION_CONTEXT_NOT_REMOVABLE = 504
    OTHER_PROXY_PROCESSING_ERROR = 505
    RESOURCES_UNAVAILABLE = 506
    REQUEST_INITIATED = 507
    MULTIPLE_SESSION_SELECTION_UNSUPPORTED = 508


def error_cause_name(value: int) -> str:
    try:
        return ErrorCause(value).name.replace("_", " ").title().replace(" ", "-") + f" ({value})"
    except ValueError:
        return f"Error-Cause {value}"


def error_cause_label(value: int | None) -> str:
    """An Error-Cause as a metric label: session_context_not_found, the
    number of one RFC 5176 does not name, or none (a NAK without one)."""
    if value is None:
        return "none"
    try:
        return ErrorCause(value).name.lower()
    except ValueError:
        return str(value)


_ANSWERS = {Code.COA_REQUEST: (Code.COA_ACK, Code.COA_NAK),
            Code.DISCONNECT_REQUEST: (Code.DISCONNECT_ACK, Code.DISCONNECT_NAK)}


@dataclass(frozen=True, slots=True)
class CoaTarget:
    """A NAS session to change or end, and where its NAS listens."""

    host: str
    port: int
    secret: bytes = field(repr=False)
    nas: str = ""
    acct_session_id: str | None = None
    user_name: str | None = None
    calling_station_id: str | None = None
    nas_port: int | None = None
    nas_ip: str | None = None
    """the NAS-IP-Address / NAS-IPv6-Address the NAS reported in its
    accounting (None: the address its requests came from stands for it)"""

    def identification(self) -> list[Attribute]:
        """The session identification attributes (RFC 5176 §3): the NAS as
        it named itself (a NAS behind NAT, or with several addresses,
        checks its own address), then the session."""
        attrs = []
        addr = None
        for candidate in (self.nas_ip, self.host):
            try:
                addr = ipaddress.ip_address(candidate or "")
                break
            except ValueError:
                continue
        if addr is not None and addr.version == 4:
            attrs.append(Attribute(_A.NAS_IP_ADDRESS, addr.packed))
        elif addr is not None:
            attrs.append(Attribute(_A.NAS_IPV6_ADDRESS, addr.packed))
        for attr_type, value in ((_A.USER_NAME, self.user_name), (_A.ACCT_SESSION_ID, self.acct_session_id),
                                 (_A.CALLING_STATION_ID, self.calling_station_id)):
            if value:
                attrs.append(Attribute(attr_type, value.encode("utf-8")[:253]))
        # Acct-Session-Id names the session; NAS-Port beside it would make
        # hostapd's DAS refuse the request (NAK Unsupported-Attribute, 401)
        if self.nas_port is not None and not self.acct_session_id:
            attrs.append(Attribute(_A.NAS_PORT, struct.pack(">I", self.nas_port)))
        return attrs


@dataclass(frozen=True, slots=True)
class CoaOutcome:
    """How one request ended: ``acked``, else ``error_cause`` (a NAK's) or
    no answer (``attempts`` sent); ``note`` says why there was none when
    it was not a plain timeout (a connection lost, a NAS not reachable)."""

    handle: int
    kind: int
    target: CoaTarget
    acked: bool
    nak: bool = False
    error_cause: int | None = None
    attempts: int = 1
    note: str | None = None

    @property
    def action(self) -> str:
        return "disconnect" if self.kind == Code.DISCONNECT_REQUEST else "coa"

    def describe(self) -> str:
        """The outcome in a few words, for the log and the database."""
        answer = code_name(_ANSWERS[self.kind][0 if self.acked else 1])
        if self.acked:
            return f"{answer}" + (f" after {self.attempts} tries" if self.attempts > 1 else "")
        if self.nak:
            return f"{answer}: " + (error_cause_name(self.error_cause) if self.error_cause else "no Error-Cause")
        if self.note:
            return self.note
        return f"no answer after {self.attempts} tries"


def _kind_label(kind: int) -> str:
    return "disconnect" if kind == Code.DISCONNECT_REQUEST else "coa"


@dataclass(slots=True)
class CoaCounters:
    """What a :class:`CoaClient` sent and how it ended, by request kind
    (``coa``, ``disconnect``); NAKs by kind and Error-Cause label
    (:func:`error_cause_label`)."""

    requests: Counter = field(default_factory=Counter)
    retransmissions: Counter = field(default_factory=Counter)
    acks: Counter = field(default_factory=Counter)
    naks: Counter = field(default_factory=Counter)
    timeouts: Counter = field(default_factory=Counter)
    """requests given up without an answer after every attempt"""


class _Pending:
    __slots__ = ("handle", "kind", "target", "data", "authenticator", "key", "attempts", "deadline", "timeout")

    def __init__(self, handle, kind, target, data, key, now, timeout):
        self.handle = handle
        self.kind = kind
        self.target = target
        self.data = data
        self.authenticator = data[4:20]
        self.key = key
        self.attempts = 1
        self.timeout = timeout
        self.deadline = now + timeout


class CoaBusy(Exception):
    """All 256 Identifiers towards one NAS are in use."""


class CoaClient:
    """Requests in flight towards NASes, sans-IO."""

    def __init__(self, *, timeout: float = 2.0, max_timeout: float = 16.0, attempts: int = 5,
                 clock_time: Callable[[], float] = time.time, random_bytes: Callable[[int], bytes] = pool_bytes):
        self.timeout = timeout
        self.max_timeout = max_timeout
        self.attempts = attempts
        #: wall-clock seconds for Event-Timestamp (RFC 5176 §3.4)
        self.clock_time = clock_time
        self.random_bytes = random_bytes
        self._pending: dict[tuple[str, int, int], _Pending] = {}
        self._outbox: list[tuple[bytes, tuple[str, int]]] = []
        self._handles = 0
        self.counters = CoaCounters()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def request(self, kind: int, target: CoaTarget, attributes: Iterable[Attribute], now: float) -> int:
        """Queue a CoA-Request or Disconnect-Request (``kind``) for
        ``target`` with ``attributes`` (the new enforcement; none for a
        Disconnect); a handle its :class:`CoaOutcome` carries."""
        if kind not in _ANSWERS:
            raise ValueError(f"{code_name(kind)} is no CoA or Disconnect request")
        host = target.host
        used = {ident for (h, p, ident) in self._pending if h == host and p == target.port}
        if len(used) >= 256:
            raise CoaBusy(f"256 requests to {host}[{target.port}] in flight")
        start = self.random_bytes(1)[0]
        identifier = next((start + i) % 256 for i in range(256) if (start + i) % 256 not in used)
        attrs = [Attribute(_A.MESSAGE_AUTHENTICATOR, bytes(16)), *target.identification(), *attributes,
                 Attribute(_A.EVENT_TIMESTAMP, struct.pack(">I", int(self.clock_time()) & 0xFFFFFFFF))]
        data = sign_accounting_request(RadiusPacket(kind, identifier, bytes(16), tuple(attrs)), target.secret)
        self._handles += 1
        key = (host, target.port, identifier)
        self._pending[key] = _Pending(self._handles, kind, target, data, key, now, self.timeout)
        self._outbox.append((data, (host, target.port)))
        self.counters.requests[_kind_label(kind)] += 1
        return self._handles

    def datagrams(self) -> list[tuple[bytes, tuple[str, int]]]:
        """What to send now (requests and retransmissions), to where."""
        out, self._outbox = self._outbox, []
        return out

    def receive(self, data: bytes, addr: tuple, now: float) -> CoaOutcome | None:
        """The outcome a datagram from a NAS completes; None for anything
        else (unknown, forged, malformed: dropped)."""
        if len(data) < 20:
            return None
        host = addr[0]
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]
        pending = self._pending.get((host, addr[1], data[1]))
        if pending is None:
            return None
        try:
            reply = verify_response(data, pending.authenticator, pending.target.secret)
        except RadiusPacketError:
            return None
        acked, nak = _ANSWERS[pending.kind]
        if reply.code not in (acked, nak):
            return None
        del self._pending[pending.key]
        cause = None
        if reply.code == nak:
            try:
                cause = reply.value(_A.ERROR_CAUSE)
            except RadiusPacketError:
                cause = None
            self.counters.naks[_kind_label(pending.kind), error_cause_label(cause)] += 1
        else:
            self.counters.acks[_kind_label(pending.kind)] += 1
        return CoaOutcome(pending.handle, pending.kind, pending.target, reply.code == acked,
                          nak=reply.code == nak, error_cause=cause, attempts=pending.attempts)

    def expire(self, now: float) -> list[CoaOutcome]:
        """Retransmit what timed out (queued for :meth:`datagrams`); the
        outcomes of requests that ran out of attempts."""
        done = []
        for key, pending in list(self._pending.items()):
            if pending.deadline > now:
                continue
            if pending.attempts >= self.attempts:
                del self._pending[key]
                self.counters.timeouts[_kind_label(pending.kind)] += 1
                done.append(CoaOutcome(pending.handle, pending.kind, pending.target, False,
                                       attempts=pending.attempts))
                continue
            pending.attempts += 1
            self.counters.retransmissions[_kind_label(pending.kind)] += 1
            pending.timeout = min(self.max_timeout, pending.timeout * 2)
            pending.deadline = now + pending.timeout
            self._outbox.append((pending.data, (pending.target.host, pending.target.port)))
        return done

    def abandon(self, note: str) -> list[CoaOutcome]:
        """The outcomes of every request in flight, given up now (``note``
        says why: the connection they went on is gone)."""
        done = [CoaOutcome(p.handle, p.kind, p.target, False, attempts=p.attempts, note=note)
                for p in self._pending.values()]
        self._pending.clear()
        self._outbox.clear()
        return done

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)


def send_blocking(client: CoaClient, kind: int, target: CoaTarget, attributes: Iterable[Attribute],
                  *, now: Callable[[], float] = time.monotonic) -> CoaOutcome:
    """Send one request and wait for its outcome (``nac-admin``)."""
    family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        client.request(kind, target, attributes, now())
        while True:
            for data, addr in client.datagrams():
                try:
                    sock.sendto(data, addr)
                except OSError:
                    pass  # an ICMP error of an earlier try: as if lost
            deadline = client.next_deadline()
            wait = max(0.0, deadline - now()) if deadline is not None else 0.0
            ready, _, _ = select.select([sock], [], [], wait)
            if ready:
                try:
                    data, addr = sock.recvfrom(4096)
                except OSError:
                    continue
                outcome = client.receive(data, addr, now())
                if outcome is not None:
                    return outcome
            for outcome in client.expire(now()):
                return outcome
