"""A sans-IO RADIUS accounting server (RFC 2866, RFC 5080 §2.2, RFC 5997).

Feed every datagram of the accounting port to :meth:`AccountingServer.respond`
with its source address and the current time; send what it returns (at once,
or when its Deferred fires) back to that address.  Call
:meth:`AccountingServer.expire` now and then.  No socket, no clock here.

What the server does with a datagram:

* from an address no NAS has, malformed, not an Accounting-Request (nor a
  Status-Server), or with a Request Authenticator (RFC 2866 §3) or
  Message-Authenticator that the NAS's shared secret did not make: silently
  discarded, with a rate-limited log line;
* a retransmission (same source address and port, Identifier and Request
  Authenticator, RFC 5080 §2.2.2) gets the Accounting-Response sent before,
  byte for byte, and is not recorded again; while the first copy is still
  being recorded it is discarded;
* beyond ``max_pending`` requests being recorded (``max_pending_per_nas``
  of one NAS), or beyond a NAS's request rate (``rate_per_nas`` a second,
  bursts of ``burst_per_nas``) or all NASes' (``rate``, bursts of twice
  as many): discarded, and the NAS sends it again later
  (RFC 2866 §2: the server must not answer what it did not record);
* otherwise the :class:`~nac.db.accounting.AccountingRecord` it carries goes
  to ``record``, and the Accounting-Response is sent only once the Deferred
  ``record`` returned fires (the record is committed); should it fail, no
  answer, and the NAS tries again;
* Status-Server (RFC 5997 §3) with a valid Message-Authenticator gets an
  Accounting-Response at once.

A request must carry Acct-Status-Type and, but for Accounting-On/Off,
Acct-Session-Id; its integer attributes must be 4 bytes and its text valid
UTF-8 (control characters are escaped before anything keeps them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

from twisted.internet import defer
from twisted.python.failure import Failure

from nac.db.accounting import AccountingRecord, AcctStatusType
from nac.escape import printable
from nac.log import Logger, LogLevel
from transports.radius.clients import RadiusClient, RadiusClientTable
from transports.radius.server import CachedReply, client_label
from transports.radius.packet import (
    AttributeType,
    Code,
    RadiusPacket,
    RadiusPacketError,
    code_name,
    encode_attributes,
    request_authenticator_valid,
    response_authenticator,
    HEADER_SIZE,
)

__all__ = ["AccountingCounters", "AccountingServer", "status_type_label"]

log = Logger(namespace="nac.radius.accounting")

# RFC 5080 §2.2.2: keep cached replies 5-30 s
DEFAULT_DUPLICATE_LIFETIME = 10.0
_PROXY_STATE = int(AttributeType.PROXY_STATE)
_A = AttributeType
_TEXT = {
    "acct_session_id": _A.ACCT_SESSION_ID, "nas_port_id": _A.NAS_PORT_ID,
    "calling_station_id": _A.CALLING_STATION_ID, "called_station_id": _A.CALLED_STATION_ID,
    "user_name": _A.USER_NAME,
}
_STATUS_NAMES = {
    AcctStatusType.START: "Start", AcctStatusType.STOP: "Stop", AcctStatusType.INTERIM_UPDATE: "Interim-Update",
    AcctStatusType.ACCOUNTING_ON: "Accounting-On", AcctStatusType.ACCOUNTING_OFF: "Accounting-Off",
}
_GIGAWORD = 1 << 32
_STATUS_LABELS = {status: name.lower().replace("-", "_") for status, name in _STATUS_NAMES.items()}


def status_type_label(packet: RadiusPacket) -> str:
    """The Acct-Status-Type of ``packet`` as a metric label: start, stop,
    interim_update, accounting_on, accounting_off, or other (absent, not
    4 bytes, or one nac does not record)."""
    try:
        return _STATUS_LABELS.get(packet.value(_A.ACCT_STATUS_TYPE), "other")
    except RadiusPacketError:
        return "other"


@dataclass(slots=True)
class AccountingCounters:
    """Named after the RADIUS Accounting Server MIB (RFC 4671)."""

    requests: int = 0
    by_status_type: Counter = field(default_factory=Counter)
    """Accounting-Requests by the Acct-Status-Type they say (``status_type_label``)"""
    dup_requests: int = 0
    responses: int = 0
    malformed_requests: int = 0
    bad_authenticators: int = 0
    no_records: int = 0
    """requests whose record could not be kept (no answer sent)"""
    dropped: int = 0
    """discarded for the limits (outstanding, rate)"""
    backlogged: int = 0
    """of ``dropped``: beyond ``max_pending`` (``max_pending_per_nas``)"""
    rate_limited: int = 0
    """of ``dropped``: beyond a NAS's or all NASes' request rate"""
    unknown_types: int = 0
    unknown_clients: int = 0
    status_servers: int = 0


class _Bucket:
    """A token bucket: ``rate`` requests a second, at most ``burst`` at once."""

    __slots__ = ("tokens", "time")

    def __init__(self, burst: float, now: float):
        self.tokens = burst
        self.time = now

    def take(self, rate: float, burst: float, now: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.time) * rate)
        self.time = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class AccountingServer:
    """The RADIUS accounting server, sans-IO.

    :param clients: the NASes (the authentication server's).
    :param record: ``record(AccountingRecord) -> Deferred`` firing once the
        record is durable (committed); a failure means it is not.
    """

    def __init__(self, clients: Sequence[RadiusClient] | RadiusClientTable,
                 record: Callable[[AccountingRecord], defer.Deferred], *,
                 duplicate_lifetime: float = DEFAULT_DUPLICATE_LIFETIME, max_pending: int = 1024,
                 max_pending_per_nas: int | None = None, rate_per_nas: float = 1000.0,
                 burst_per_nas: int | None = None, rate: float = 10000.0, max_cached_replies: int = 65536):
        self.clients = clients if isinstance(clients, RadiusClientTable) else RadiusClientTable(clients)
        self.record = record
        self.duplicate_lifetime = duplicate_lifetime
        self.max_pending = max_pending
        # one NAS leaves a quarter to the others
        self.max_pending_per_nas = max_pending_per_nas or max(1, max_pending * 3 // 4)
        self.rate_per_nas = rate_per_nas
        self.burst_per_nas = float(burst_per_nas if burst_per_nas is not None else max(1, int(rate_per_nas * 2)))
        self.rate = rate
        self._all = _Bucket(rate * 2, 0.0)
        self.max_cached_replies = max_cached_replies
        self.counters = AccountingCounters()
        # (host, port, Identifier) -> entry, roughly oldest first
        self._replies: dict[tuple[str, int, int], CachedReply] = {}
        self._pending_by_nas: dict[str, int] = {}
        self._pending = 0
        self._buckets: dict[str, _Bucket] = {}
        self._now = 0.0
        self.closed = False

    @property
    def pending(self) -> int:
        """Requests whose record is not committed yet."""
        return self._pending

    def respond(self, data: bytes, addr: tuple, now: float, *,
                client: RadiusClient | None = None) -> bytes | defer.Deferred | None:
        """The Accounting-Response for ``data`` from ``addr``, a Deferred
        firing with it (or None) once the record is committed, or None when
        nothing will be sent back.  ``client``: the NAS when the transport
        knows it (RadSec: by its certificate), else found by address."""
        self._now = now
        if self.closed:
            return None
        host, port = addr[0], addr[1]
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]
        if client is None:
            client = self.clients.find(host)
        if client is None:
            self.counters.unknown_clients += 1
            log.warn("received RADIUS accounting packet from unknown client {host}[{port}], discarded",
                     host=host, port=port, log_limit=("RADIUS accounting packet from an unknown client", host))
            return None
        try:
            packet = RadiusPacket.parse(data)
        except RadiusPacketError as exc:
            self.counters.malformed_requests += 1
            log.warn("received invalid RADIUS accounting message from client {client}, ignored: {reason}",
                     client=client_label(client, host), reason=str(exc),
                     log_limit=("invalid RADIUS accounting message", host))
            return None
        if packet.code == Code.ACCOUNTING_REQUEST:
            return self._accounting_request(packet, client, host, port, now)
        if packet.code == Code.STATUS_SERVER:
            return self._status_server(packet, client, host)
        self.counters.unknown_types += 1
        log.warn("received RADIUS {code} from client {client} on the accounting port, ignored",
                 code=code_name(packet.code), client=client_label(client, host),
                 log_limit=("RADIUS accounting packet that is no request", host))
        return None

    def _drop(self, packet: RadiusPacket, client: RadiusClient, host: str, reason: str, kind: str) -> None:
        log.warn("RADIUS {code} 0x{id:02x} from client {client} discarded: {reason}",
                 code=code_name(packet.code), id=packet.identifier, client=client_label(client, host), reason=reason,
                 log_limit=(kind, host))
        return None

    def _status_server(self, packet: RadiusPacket, client: RadiusClient, host: str) -> bytes | None:
        # RFC 5997 §3: Status-Server to the accounting port is answered
        # with an Accounting-Response; it must be signed
        if not packet.has_message_authenticator or not packet.message_authenticator_valid(client.secret):
            self.counters.bad_authenticators += 1
            return self._drop(packet, client, host, "Status-Server without a valid Message-Authenticator",
                              "bad accounting Status-Server")
        self.counters.status_servers += 1
        return self._reply(packet, client)

    def _accounting_request(self, packet: RadiusPacket, client: RadiusClient, host: str, port: int,
                            now: float):
        self.counters.requests += 1
        self.counters.by_status_type[status_type_label(packet)] += 1
        if not request_authenticator_valid(packet, client.secret):
            self.counters.bad_authenticators += 1
            return self._drop(packet, client, host, "bad Request Authenticator (is the shared secret the same?)",
                              "bad accounting Request Authenticator")
        # RFC 5080 §2.2.2: only authentic requests reach the cache
        key = (host, port, packet.identifier)
        cached = self._replies.get(key)
        if cached is not None:
            if cached.authenticator == packet.authenticator:
                self.counters.dup_requests += 1
                log.info("RADIUS Accounting-Request 0x{id:02x} from client {client} is a retransmission, {what}",
                         id=packet.identifier, client=client_label(client, host),
                         what="already recording it" if cached.reply is None else "sending the same reply again",
                         log_limit=("RADIUS accounting retransmission", host))
                return cached.reply
            del self._replies[key]
        try:
            record = self._record_of(packet, client, host)
        except RadiusPacketError as exc:
            self.counters.malformed_requests += 1
            return self._drop(packet, client, host, str(exc), "invalid Accounting-Request")
        nas = record.nas
        if self._pending >= self.max_pending or self._pending_by_nas.get(nas, 0) >= self.max_pending_per_nas:
            self.counters.dropped += 1
            self.counters.backlogged += 1
            return self._drop(packet, client, host, f"{self._pending} requests are being recorded "
                              "([radius] acct_max_pending), the NAS will send it again", "accounting backlog")
        bucket = self._buckets.get(nas)
        if bucket is None:
            if len(self._buckets) >= 4 * len(self.clients) + 1024:
                self._buckets.clear()
            bucket = self._buckets[nas] = _Bucket(self.burst_per_nas, now)
        if not bucket.take(self.rate_per_nas, self.burst_per_nas, now):
            self.counters.dropped += 1
            self.counters.rate_limited += 1
            return self._drop(packet, client, host, f"more than {self.rate_per_nas:g} requests a second "
                              "([radius] acct_rate_per_nas), the NAS will send it again", "accounting rate")
        if not self._all.take(self.rate, self.rate * 2, now):
            self.counters.dropped += 1
            self.counters.rate_limited += 1
            return self._drop(packet, client, host, f"more than {self.rate:g} requests a second from all NASes "
                              "([radius] acct_rate), the NAS will send it again", "accounting rate")
        entry = CachedReply(packet.authenticator, None, now + self.duplicate_lifetime)
        self._cache(key, entry)
        self._pending += 1
        self._pending_by_nas[nas] = self._pending_by_nas.get(nas, 0) + 1
        if LogLevel.debug in Logger.enabled:
            log.debug("received RADIUS Accounting-Request 0x{id:02x} {status} from client {client} for "
                      "session '{session}'", id=packet.identifier, client=client_label(client, host),
                      status=_STATUS_NAMES.get(record.status_type, record.status_type),
                      session=record.acct_session_id or "")
        try:
            d = self.record(record)
        except Exception:
            d = defer.fail()
        return d.addBoth(self._recorded, packet, client, host, key, entry, nas)

    def _recorded(self, result, packet: RadiusPacket, client: RadiusClient, host: str, key, entry: CachedReply,
                  nas: str) -> bytes | None:
        self._pending -= 1
        left = self._pending_by_nas.get(nas, 1) - 1
        if left:
            self._pending_by_nas[nas] = left
        else:
            self._pending_by_nas.pop(nas, None)
        if isinstance(result, Failure):
            self.counters.no_records += 1
            if self._replies.get(key) is entry:
                del self._replies[key]
            log.warn("cannot record RADIUS Accounting-Request 0x{id:02x} from client {client}, not answered "
                     "(the NAS will send it again): {error}", id=packet.identifier, client=client_label(client, host),
                     error=result.getErrorMessage(), log_limit=("accounting record failed", host))
            return None
        if self.closed:
            return None
        reply = self._reply(packet, client)
        entry.reply = reply
        entry.expires = self._now + self.duplicate_lifetime
        if self._replies.pop(key, None) is entry:
            self._replies[key] = entry
        return reply

    def _reply(self, request: RadiusPacket, client: RadiusClient) -> bytes:
        # RFC 2866 §4.2: no attributes but Proxy-State (and vendor ones) are required
        attrs = encode_attributes([a for a in request.attributes if a.type == _PROXY_STATE])
        length = HEADER_SIZE + len(attrs)
        head = bytes((Code.ACCOUNTING_RESPONSE, request.identifier, length >> 8, length & 0xFF))
        self.counters.responses += 1
        return head + response_authenticator(head + request.authenticator + attrs, client.secret) + attrs

    def _record_of(self, packet: RadiusPacket, client: RadiusClient, host: str) -> AccountingRecord:
        values = {}
        status_type = packet.value(_A.ACCT_STATUS_TYPE)
        if status_type is None:
            raise RadiusPacketError("no Acct-Status-Type")
        if status_type not in _STATUS_NAMES:
            raise RadiusPacketError(f"Acct-Status-Type {status_type} is none nac records")
        for name, attr_type in _TEXT.items():
            value = packet.value(attr_type)
            if value is not None:
                values[name] = printable(value)
        if status_type not in (AcctStatusType.ACCOUNTING_ON, AcctStatusType.ACCOUNTING_OFF):
            if not values.get("acct_session_id"):
                raise RadiusPacketError("no Acct-Session-Id")
        for name, attr_type in (("nas_port", _A.NAS_PORT), ("session_time", _A.ACCT_SESSION_TIME),
                                ("terminate_cause", _A.ACCT_TERMINATE_CAUSE), ("delay", _A.ACCT_DELAY_TIME)):
            value = packet.value(attr_type)
            if value is not None:
                values[name] = value
        framed = packet.value(_A.FRAMED_IP_ADDRESS)
        if framed is not None:
            values["framed_ip_address"] = str(framed)
        # how the NAS names itself: a CoA / Disconnect identifies it so (RFC 5176 §3)
        nas_ip = packet.value(_A.NAS_IP_ADDRESS)
        if nas_ip is None:
            nas_ip = packet.value(_A.NAS_IPV6_ADDRESS)
        if nas_ip is not None:
            values["nas_ip_address"] = str(nas_ip)
        for name, low, high in (("input_octets", _A.ACCT_INPUT_OCTETS, _A.ACCT_INPUT_GIGAWORDS),
                                ("output_octets", _A.ACCT_OUTPUT_OCTETS, _A.ACCT_OUTPUT_GIGAWORDS)):
            octets, gigawords = packet.value(low), packet.value(high)
            if octets is not None or gigawords is not None:
                # RFC 2869 §5.1: how many times the 32-bit counter wrapped
                values[name] = (gigawords or 0) * _GIGAWORD + (octets or 0)
        # the integer values must be 4 bytes even where nobody keeps them
        for attr_type in (_A.ACCT_AUTHENTIC, _A.ACCT_INPUT_PACKETS, _A.ACCT_OUTPUT_PACKETS, _A.EVENT_TIMESTAMP):
            packet.value(attr_type)
        return AccountingRecord(nas=client.name or host, nas_address=host, named=bool(client.name),
                                status_type=status_type, **values)

    def _cache(self, key, entry: CachedReply) -> None:
        replies = self._replies
        replies[key] = entry
        if len(replies) > self.max_cached_replies:
            # the oldest answered one goes; one still being recorded stays,
            # or its retransmission would be recorded twice (at most
            # max_pending of them, at the front)
            for old, cached in replies.items():
                if cached.reply is not None:
                    del replies[old]
                    break

    def expire(self, now: float) -> None:
        """Forget replies older than ``duplicate_lifetime``."""
        self._now = now
        replies = self._replies
        stale = []
        for key, entry in replies.items():
            if entry.reply is None:
                continue  # being recorded (at most max_pending)
            if entry.expires > now:
                break
            stale.append(key)
        for key in stale:
            del replies[key]

    def close(self) -> None:
        self.closed = True
        self._replies.clear()
