"""A sans-IO RADIUS authentication server carrying EAP (RFC 2865, RFC 3579).

Feed every datagram to :meth:`RadiusServer.respond` (or
:meth:`RadiusServer.datagram_received`, which always answers with a
Deferred) with its source address and the current time; send the reply it
produces back to that address.  Call :meth:`RadiusServer.expire` now and
then with the current time.  Nothing here touches a socket or reads a clock.

What the server does with a request:

* from an address that is no configured client, malformed, with a wrong
  Message-Authenticator, or with an EAP-Message but no Message-Authenticator:
  silently discarded, with a log line (RFC 2865 §3, RFC 3579 §3.1-3.2);
* a retransmission (same client address and port, Identifier and Request
  Authenticator, RFC 5080 §2.2.2) gets the reply sent before, byte for byte;
  while the first copy is still being processed it is discarded.  Nothing
  is processed twice;
* Status-Server (RFC 5997) is answered with an Access-Accept;
* an Access-Request without EAP-Message gets an Access-Reject: nac only
  authenticates with EAP;
* an Access-Request with EAP-Message and no State starts an EAP conversation
  (one :class:`nac.interfaces.IEapSession` from the factory); later requests
  of the conversation carry the State of the Access-Challenge they answer.
  Each challenge gets a new random State, so a State is good for one round.
  A Framed-MTU in that first request bounds the EAP packets sent to the
  peer (Framed-MTU - 4, RFC 3580 §3.17) when the session can fragment to
  fit (``limit_request_size``): they never exceed what the NAS can carry,
  and never the configured fragment size either.

The EAP session's outcome becomes the reply: Access-Challenge (continue),
Access-Accept with EAP-Success, User-Name, MS-MPPE keys and the enforcement
attributes of the posture decision (success), Access-Reject with
EAP-Failure (failure, or a decision of Access Denied), or nothing (the EAP
layer discarded the packet).  Every reply carries a Message-Authenticator,
first, as recommended against forgery of replies (the "BlastRADIUS" attack).

Conversations are forgotten ``conversation_timeout`` seconds after their
last request and at most ``max_conversations`` run at once.

Several processes can serve one RADIUS port (``[radius] workers``): each
runs a server with its number ``process`` of ``processes``.  A conversation
belongs to one process: its States start with that process's number, and a
request without State belongs to the process its Request Authenticator
selects (random, so new conversations are spread evenly; the same for a
retransmission, so duplicate detection still sees it).  The process that
reads the socket gets :class:`Forward` from :meth:`RadiusServer.respond`
for a request another process serves; that one gets the datagram with
``forwarded=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from twisted.internet import defer

from nac.entropy import random_bytes as pool_bytes
from nac.eap.outcome import EapOutcome, EapStatus
from nac.escape import printable
from nac.log import Logger, LogLevel
from nac.tnccs.assessment import PeerInfo
from transports.radius.clients import RadiusClient, RadiusClientTable
from transports.radius.enforcement import RadiusEnforcement, RadiusEnforcementAction
from transports.radius.packet import (
    HEADER_SIZE,
    MAX_ATTRIBUTE_VALUE,
    Attribute,
    AttributeType,
    Code,
    RadiusPacket,
    RadiusPacketError,
    code_name,
    decode_value,
    encode_attributes,
    encode_eap_message,
    mppe_key_attributes,
    signed_reply,
)

__all__ = ["CachedReply", "Forward", "RadiusClient", "RadiusClientTable", "RadiusCounters", "RadiusServer", "client_label", "owner_of"]

log = Logger(namespace="nac.radius")

STATE_SIZE = 16
# RFC 5080 §2.2.2: cached replies are kept "no less than 5 seconds, and no
# more than 30"; NASes retransmit for about 10-15 s.
DEFAULT_DUPLICATE_LIFETIME = 10.0
# the only attributes besides EAP-Message that may carry credentials (RFC 3579 §3.3 Note 1)
_PASSWORDS = frozenset(map(int, (AttributeType.USER_PASSWORD, AttributeType.CHAP_PASSWORD,
                                 AttributeType.ARAP_PASSWORD)))
_PROXY_STATE = int(AttributeType.PROXY_STATE)
_BAD_AUTHENTICATOR = "bad Message-Authenticator (is the shared secret the same?)"
# RFC 2865 §5.12: Framed-MTU values range from 64 to 65535
MIN_FRAMED_MTU, MAX_FRAMED_MTU = 64, 65535
# RFC 3580 §3.17: Version (1), Type (1) and Body Length (2) of the 802.1X frame
EAPOL_HEADER_SIZE = 4




@dataclass(frozen=True, slots=True)
class Forward:
    """:meth:`RadiusServer.respond`'s answer for a request of a conversation
    that process ``process`` serves: hand it the datagram."""

    process: int
    #: the request opens a conversation (no State): another process may
    #: serve it when ``process`` cannot be reached
    opening: bool


_STATE = int(AttributeType.STATE)


def owner_of(data: bytes, processes: int) -> tuple[int | None, bool]:
    """(the process serving the conversation of the Access-Request ``data``
    or None when that is not for this function to say, whether it opens a
    conversation).  States start with their process's number; a request
    without State goes by its Request Authenticator, which a retransmission
    repeats.  Only the attribute headers are read (the owner checks the
    rest); a malformed request has no owner here."""
    size = len(data)
    if size < HEADER_SIZE:
        return None, False
    length = (data[2] << 8) | data[3]
    if length < HEADER_SIZE or length > size:
        return None, False
    pos = HEADER_SIZE
    while pos < length:
        if pos + 2 > length:
            return None, False
        attr_len = data[pos + 1]
        if attr_len < 2 or pos + attr_len > length:
            return None, False
        if data[pos] == _STATE:
            if attr_len != STATE_SIZE + 2 or data[pos + 2] >= processes:
                return None, False
            return data[pos + 2], False
        pos += attr_len
    return data[4] % processes, True


def client_label(client: RadiusClient, host: str) -> str:
    """A NAS in a warning about its packets: its name and the address they
    came from ("'sw1' (192.0.2.1)"), or the address alone."""
    return f"'{client.name}' ({host})" if client.name else f"'{host}'"


@dataclass(slots=True)
class RadiusCounters:
    """Server counters, named after the RADIUS Authentication Server MIB (RFC 4669)."""

    access_requests: int = 0
    dup_access_requests: int = 0
    access_accepts: int = 0
    access_rejects: int = 0
    access_challenges: int = 0
    status_servers: int = 0
    malformed_packets: int = 0
    bad_authenticators: int = 0
    packets_dropped: int = 0
    unknown_types: int = 0
    unknown_clients: int = 0
    #: requests handed to the process serving their conversation
    forwarded: int = 0
    #: unfinished conversations ended to make room for newer ones
    conversations_evicted: int = 0


class _Conversation:
    """One EAP conversation between a NAS and the EAP server."""

    __slots__ = ("state", "session", "answer", "client", "nas", "port", "peer", "user_name", "last_seen",
                 "pending", "closed", "rounds", "station")

    def __init__(self, state, session, client, nas, port, peer, user_name, now, station=None):
        self.state: bytes = state
        self.session = session
        # the session's answer at once when it has one (EapServerSession.answer),
        # else its IEapSession.receive Deferred
        self.answer = getattr(session, "answer", None) or session.receive
        self.client: RadiusClient = client
        #: the NAS as the log names it (its short name, else its address)
        self.nas: str = nas
        self.port: int = port
        self.peer: PeerInfo = peer
        self.user_name: bytes | None = user_name
        self.last_seen: float = now
        self.pending = False
        self.closed = False
        self.rounds = 0
        #: (NAS, Calling-Station-Id) whose conversations count together, if the NAS sent one
        self.station: tuple | None = station


class CachedReply:
    """A duplicate-cache entry: the request's authenticator and the reply (None while pending)."""

    __slots__ = ("authenticator", "reply", "expires")

    def __init__(self, authenticator: bytes, reply: bytes | None, expires: float):
        self.authenticator = authenticator
        self.reply = reply
        self.expires = expires


class RadiusServer:
    """The RADIUS/EAP authentication server, sans-IO.

    :param clients: the NASes allowed to send requests.
    :param eap_factory: ``eap_factory(peer: PeerInfo) -> IEapSession``, one
        session per conversation.
    :param enforcement: turns the posture decision into reply attributes.
    :param random_bytes: ``random_bytes(n)``: State values and MPPE salts.

    A warning about a sender's faulty packets (or an unknown sender's) is
    logged once per sender and fault in :data:`nac.log.repeats`' interval,
    then summed up: spoofed datagrams must not flood the log.
    """

    def __init__(self, clients: Sequence[RadiusClient] | RadiusClientTable, eap_factory: Callable,
                 enforcement: RadiusEnforcement | None = None, *, conversation_timeout: float = 30.0,
                 max_conversations: int = 4096, duplicate_lifetime: float = DEFAULT_DUPLICATE_LIFETIME,
                 random_bytes: Callable[[int], bytes] = pool_bytes, transport_name: str = "radius",
                 process: int = 0, processes: int = 1,
                 max_conversations_per_nas: int | None = None, max_conversations_per_station: int = 4):
        if not 0 <= process < processes <= 256:
            raise ValueError(f"process {process} of {processes}: a State byte numbers the processes")
        self.clients = clients if isinstance(clients, RadiusClientTable) else RadiusClientTable(clients)
        self.eap_factory = eap_factory
        self.enforcement = enforcement if enforcement is not None else RadiusEnforcement()
        self.conversation_timeout = conversation_timeout
        self.max_conversations = max_conversations
        # one NAS (or a flood through it) leaves a quarter to the others
        self.max_conversations_per_nas = max_conversations_per_nas or max(1, max_conversations * 3 // 4)
        self.max_conversations_per_station = max_conversations_per_station
        self.duplicate_lifetime = duplicate_lifetime
        self.max_cached_replies = 4 * max_conversations + 1024
        self.random_bytes = random_bytes
        self.transport_name = transport_name
        self.process = process
        self.processes = processes
        self.counters = RadiusCounters()
        # State -> conversation, in order of last request (oldest first)
        self._conversations: dict[bytes, _Conversation] = {}
        # the same, per NAS and per (NAS, station), in order of their start
        # (ordered sets: a conversation's State changes with every challenge)
        self._by_nas: dict[str, dict[_Conversation, None]] = {}
        self._by_station: dict[tuple, dict[_Conversation, None]] = {}
        # (client host, port, Identifier) -> cached reply, roughly oldest first
        self._replies: dict[tuple[str, int, int], CachedReply] = {}
        self._now = 0.0
        self.closed = False

    @property
    def conversations(self) -> int:
        """EAP conversations in progress."""
        return len(self._conversations)

    # -- input ---------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple, now: float) -> defer.Deferred | None:
        """Process one datagram from ``addr`` (host, port) received at ``now``.

        :returns: None when nothing will ever be sent back, else a Deferred
            firing with the reply datagram for ``addr``, or with None when
            processing ended without a reply.
        """
        reply = self.respond(data, addr, now)
        if reply is None or isinstance(reply, defer.Deferred):
            return reply
        return defer.succeed(reply)

    def respond(self, data: bytes, addr: tuple, now: float, *, forwarded: bool = False,
                client: RadiusClient | None = None) -> bytes | defer.Deferred | Forward | None:
        """:meth:`datagram_received` without a Deferred where none is needed:
        the reply datagram when it is ready at once (most are: fragments,
        acknowledgements, TLS flights), None when nothing will be sent back,
        or a Deferred firing with the reply (or None) when the EAP session
        waits on something outside (password store, TNCS core).

        With several processes, an Access-Request of a conversation another
        process serves gets :class:`Forward` (unless ``forwarded``: another
        process sent it here; it is served here whatever it carries).

        ``client``: the NAS the request comes from when the transport knows
        it (RadSec: from its TLS certificate, with the secret "radsec"); the
        request is then served in this process, not looked up by address."""
        self._now = now
        if self.closed:
            return None
        host, port = addr[0], addr[1]
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]  # an IPv4 client seen by a socket bound to ::
        if client is not None:
            forwarded = True
        else:
            client = self.clients.find(host)
        if client is None:
            self.counters.unknown_clients += 1
            log.warn("received RADIUS packet from unknown client {host}[{port}], discarded: no "
                     "[radius-client:NAME] address nor [radius] clients holds it", host=host, port=port,
                     log_limit=("RADIUS packet from an unknown client", host))
            return None
        if self.processes > 1 and not forwarded and data[:1] == b"\x01":  # an Access-Request
            owner, opening = owner_of(data, self.processes)
            if owner is not None and owner != self.process:
                # its owner checks it (parse, authenticators, duplicates)
                self.counters.forwarded += 1
                return Forward(owner, opening)
        try:
            packet = RadiusPacket.parse(data)
        except RadiusPacketError as exc:
            self.counters.malformed_packets += 1
            log.warn("received invalid RADIUS message from client {client}, ignored: {reason}",
                     client=client_label(client, host), reason=str(exc), log_limit=("invalid RADIUS message", host))
            return None
        code = packet.code
        if code == Code.ACCESS_REQUEST:
            self.counters.access_requests += 1
            return self._access_request(packet, client, host, port, now)
        if code == Code.STATUS_SERVER:
            return self._status_server(packet, client, host)
        self.counters.unknown_types += 1
        log.warn("received RADIUS {code} from client {client}, ignored: not a request this "
                 "authentication server answers", code=code_name(code), client=client_label(client, host),
                 log_limit=("RADIUS packet that is no request", host))
        return None

    def not_forwarded(self, forward: Forward, data: bytes, addr: tuple, now: float):
        """The request ``respond`` answered with ``forward`` could not be
        handed to its process: one that opens a conversation is served here
        (and the conversation stays here); one of that process's
        conversations is dropped, and the NAS sends it again."""
        if forward.opening:
            return self.respond(data, addr, now, forwarded=True)
        self.counters.packets_dropped += 1
        return None

    def _status_server(self, packet: RadiusPacket, client: RadiusClient, host: str):
        # RFC 5997 §3: Status-Server MUST carry a Message-Authenticator; it is
        # never retransmitted, so it bypasses the duplicate cache
        if not packet.has_message_authenticator:
            return self._drop(packet, client, host, "Status-Server without Message-Authenticator")
        if not packet.message_authenticator_valid(client.secret):
            self.counters.bad_authenticators += 1
            return self._drop(packet, client, host, _BAD_AUTHENTICATOR, "bad Message-Authenticator")
        self.counters.status_servers += 1
        log.debug("received RADIUS Status-Server from client '{client}'", client=client.label(host))
        return self._reply(packet, client, Code.ACCESS_ACCEPT, b"")

    def _access_request(self, packet: RadiusPacket, client: RadiusClient, host: str, port: int, now: float):
        nas = client.name or host
        signed = packet.has_message_authenticator
        if signed and not packet.message_authenticator_valid(client.secret):
            self.counters.bad_authenticators += 1
            return self._drop(packet, client, host, _BAD_AUTHENTICATOR, "bad Message-Authenticator")
        try:
            eap = packet.eap_message()
        except RadiusPacketError as exc:
            self.counters.malformed_packets += 1
            return self._drop(packet, client, host, str(exc))
        if eap is not None:
            if not signed:
                return self._drop(packet, client, host, "EAP-Message without Message-Authenticator")
            for attr in packet.attributes:
                if attr.type in _PASSWORDS:
                    self.counters.malformed_packets += 1
                    return self._drop(packet, client, host, f"EAP-Message together with {attr.name}")

        # RFC 5080 §2.2.2: only authentic requests reach (and may change) the cache
        key = (host, port, packet.identifier)
        cached = self._replies.get(key)
        if cached is not None:
            if cached.authenticator == packet.authenticator:
                self.counters.dup_access_requests += 1
                if cached.reply is None:
                    log.info("ignoring RADIUS Access-Request 0x{id:02x} from client '{client}', "
                             "already processing", id=packet.identifier, client=nas,
                             log_limit=("RADIUS retransmission", host))
                    return None
                log.info("RADIUS Access-Request 0x{id:02x} from client '{client}' is a retransmission, "
                         "sending the same reply again", id=packet.identifier, client=nas,
                         log_limit=("RADIUS retransmission", host))
                return cached.reply
            del self._replies[key]

        if eap is None:
            log.info("RADIUS Access-Request 0x{id:02x} from client '{client}' for '{user}' has no "
                     "EAP-Message; only EAP authentication is offered, sending Access-Reject",
                     id=packet.identifier, client=nas, user=_user_name(packet.get(AttributeType.USER_NAME)))
            reply = self._reply(packet, client, Code.ACCESS_REJECT, b"")
            self.counters.access_rejects += 1
            self._cache(key, CachedReply(packet.authenticator, reply, now + self.duplicate_lifetime))
            return reply

        conversations = self._conversations
        state = packet.get(AttributeType.STATE)
        if state is None:
            conv = self._start_conversation(packet, client, host, port, now)
            if conv is None:
                return None
        else:
            conv = conversations.get(state)
            if conv is None or conv.client is not client:
                self.counters.packets_dropped += 1
                log.warn("RADIUS Access-Request 0x{id:02x} from client '{client}' carries an unknown "
                         "State (conversation ended or timed out), discarded", id=packet.identifier, client=nas,
                         log_limit=("RADIUS request with an unknown State", host))
                return None
            if conv.pending:
                self.counters.packets_dropped += 1
                log.info("ignoring RADIUS Access-Request 0x{id:02x} from client '{client}', "
                         "already processing", id=packet.identifier, client=nas)
                return None
            # keep the dict in order of last request, for expire()
            del conversations[state]
            conversations[state] = conv
        conv.last_seen = now
        conv.pending = True
        entry = CachedReply(packet.authenticator, None, now + self.conversation_timeout)
        self._cache(key, entry)
        if LogLevel.debug in Logger.enabled:
            log.debug("received RADIUS Access-Request 0x{id:02x} from client '{client}' with {n} bytes of EAP",
                      id=packet.identifier, client=nas, n=len(eap))
        try:
            outcome = conv.answer(eap)
        except Exception:
            log.failure("the EAP session failed on a request from client '{client}'", client=nas)
            self._forget(key, entry)
            self._end(conv, "internal error")
            return None
        if isinstance(outcome, defer.Deferred):
            outcome.addCallbacks(self._eap_outcome, self._eap_failed,
                                 callbackArgs=(conv, packet, key, entry), errbackArgs=(conv, key, entry))
            return outcome
        return self._eap_outcome(outcome, conv, packet, key, entry)

    def _new_state(self) -> bytes:
        # unique among this process's conversations, and naming this process
        conversations = self._conversations
        while True:
            state = self.random_bytes(STATE_SIZE)
            if self.processes > 1:
                state = bytes((self.process,)) + state[1:]
            if state not in conversations:  # only a broken random source repeats
                return state

    def _start_conversation(self, packet, client, host, port, now) -> _Conversation | None:
        conversations = self._conversations
        nas = client.name or host
        # the endpoint, where the NAS names it (a MAC for 802.1X, an address
        # and port for strongSwan); not the User-Name, which many share
        # ('anonymous' outer identities)
        calling_station = packet.get(AttributeType.CALLING_STATION_ID)
        station = (nas, calling_station) if calling_station else None
        # Room is made by ending the oldest unfinished conversation of whoever
        # has too many, never by refusing the newest: a flood of conversations
        # that go nowhere then only crowds out itself.
        mine = self._by_station.get(station) if station is not None else None
        if mine and len(mine) >= self.max_conversations_per_station:
            self._evict(next(iter(mine)), "its station started another one")
        ours = self._by_nas.get(nas)
        if ours and len(ours) >= self.max_conversations_per_nas:
            self._evict(next(iter(ours)), "the client's share of conversations "
                        "([radius] max_conversations_per_nas) is taken")
        if len(conversations) >= self.max_conversations:
            self.expire(now)
            if len(conversations) >= self.max_conversations:
                busiest = max(self._by_nas.values(), key=len)
                self._evict(next(iter(busiest)), "the server's conversations "
                            "([radius] max_conversations) are taken")
        peer = PeerInfo(transport=self.transport_name, address=host, port=port, identity=None,
                        nas=client.name or None,
                        station=calling_station.decode("utf-8", "replace") if calling_station else None)
        try:
            session = self.eap_factory(peer)
        except Exception:
            log.failure("cannot start an EAP session for client '{client}'", client=nas)
            return None
        state = self._new_state()
        conv = _Conversation(state, session, client, nas, port, peer,
                             packet.get(AttributeType.USER_NAME), now, station)
        conversations[state] = conv
        self._by_nas.setdefault(nas, {})[conv] = None
        if station is not None:
            self._by_station.setdefault(station, {})[conv] = None
        framed_mtu = packet.get(AttributeType.FRAMED_MTU)
        if framed_mtu is not None:
            self._link_mtu(session, framed_mtu, nas)
        # debug: one info line per authentication (its outcome) is what operators read
        log.debug("new EAP conversation from client '{client}' for '{user}'",
                 client=nas, user=_user_name(conv.user_name))
        return conv

    @staticmethod
    def _link_mtu(session, raw: bytes, nas: str) -> None:
        # RFC 3580 §3.17: the NAS's Framed-MTU bounds the EAP packets it can pass
        # to the peer, less the 4-byte 802.1X header; a hint, so a bad one is ignored
        limit = getattr(session, "limit_request_size", None)
        if limit is None:
            return
        try:
            mtu = decode_value(AttributeType.FRAMED_MTU, raw)
        except RadiusPacketError as exc:
            log.warn("ignoring the Framed-MTU from client '{client}': {reason}", client=nas, reason=exc.reason,
                     log_limit=("invalid Framed-MTU", nas))
            return
        if not MIN_FRAMED_MTU <= mtu <= MAX_FRAMED_MTU:
            log.warn("ignoring the Framed-MTU {mtu} from client '{client}': outside {low}-{high}",
                     mtu=mtu, client=nas, low=MIN_FRAMED_MTU, high=MAX_FRAMED_MTU,
                     log_limit=("invalid Framed-MTU", nas))
            return
        limit(mtu - EAPOL_HEADER_SIZE)

    # -- EAP outcomes -------------------------------------------------------------------

    def _eap_outcome(self, outcome: EapOutcome, conv: _Conversation, request: RadiusPacket,
                     key, entry: CachedReply) -> bytes | None:
        if conv.closed:
            # timed out or shut down while the EAP layer worked
            self._forget(key, entry)
            return None
        conv.pending = False
        status = outcome.status
        nas = conv.nas
        try:
            if status is EapStatus.CONTINUE:
                reply = self._challenge(conv, request, outcome)
            elif status is EapStatus.SUCCESS:
                reply = self._success(conv, request, outcome)
            elif status is EapStatus.FAILURE:
                reply = self._reject(conv, request, outcome.packet, outcome.reason or "EAP authentication failed",
                                     identity=outcome.identity)
            else:
                self._forget(key, entry)
                log.info("EAP packet from client '{client}' discarded by the EAP server: {reason}",
                         client=nas, reason=outcome.reason or "no reason given",
                         log_limit=("EAP packet discarded", nas))
                if not conv.rounds:
                    # the NAS knows no State of ours: nothing can continue this conversation
                    self._end(conv, "first EAP packet discarded")
                return None
        except RadiusPacketError as exc:
            log.error("cannot build the RADIUS reply for client '{client}': {reason}", client=nas, reason=str(exc))
            self._forget(key, entry)
            self._end(conv, "no valid RADIUS reply")
            return None
        except Exception:
            log.failure("internal error answering client '{client}'", client=nas)
            self._forget(key, entry)
            self._end(conv, "internal error")
            return None
        entry.reply = reply
        entry.expires = self._now + self.duplicate_lifetime
        # move behind the younger entries, for expire()
        if self._replies.pop(key, None) is entry:
            self._replies[key] = entry
        return reply

    def _challenge(self, conv: _Conversation, request: RadiusPacket, outcome: EapOutcome) -> bytes:
        if not outcome.packet:
            raise RadiusPacketError("the EAP server continued without an EAP-Request")
        conversations = self._conversations
        state = self._new_state()
        reply = self._reply(request, conv.client, Code.ACCESS_CHALLENGE,
                            bytes((AttributeType.STATE, len(state) + 2)) + state
                            + encode_eap_message(outcome.packet))
        conversations.pop(conv.state, None)
        conv.state = state
        conversations[state] = conv
        conv.rounds += 1
        self.counters.access_challenges += 1
        if LogLevel.debug in Logger.enabled:
            log.debug("sending RADIUS Access-Challenge to client '{client}'", client=conv.nas)
        return reply

    def _success(self, conv: _Conversation, request: RadiusPacket, outcome: EapOutcome) -> bytes:
        identity = outcome.identity
        enforcement = conv.client.enforcement or self.enforcement
        action: RadiusEnforcementAction = enforcement.enforce(conv.peer, outcome.decision)
        if not action.accept:
            eap_id = outcome.packet[1] if outcome.packet and len(outcome.packet) > 1 else 0
            failure = bytes((4, eap_id, 0, 4))  # EAP-Failure (RFC 3748 §4.2)
            return self._reject(conv, request, failure, "access denied by the posture assessment",
                                identity=identity)
        attrs = []
        user = _encode_user_name(identity) if identity else conv.user_name
        if user:
            # RFC 3579 §3: a User-Name in the request means one in the Access-Accept
            attrs.append(Attribute(AttributeType.USER_NAME, user))
        if outcome.msk:
            attrs += mppe_key_attributes(outcome.msk, conv.client.secret, request.authenticator,
                                         self.random_bytes(2))
        attrs += action.attributes
        reply = self._reply(request, conv.client, Code.ACCESS_ACCEPT,
                            encode_eap_message(outcome.packet or bytes((3, 0, 0, 4))) + encode_attributes(attrs))
        self._end(conv, None)
        self.counters.access_accepts += 1
        log.info("sending RADIUS Access-Accept for '{identity}' to client '{client}': {enforcement}",
                 identity=identity or _user_name(conv.user_name), client=conv.nas,
                 enforcement=action.description)
        return reply

    def _reject(self, conv: _Conversation, request: RadiusPacket, eap_failure: bytes | None, reason: str,
                identity: str | None = None) -> bytes:
        reply = self._reply(request, conv.client, Code.ACCESS_REJECT,
                            encode_eap_message(eap_failure) if eap_failure else b"")
        self._end(conv, None)
        self.counters.access_rejects += 1
        log.info("sending RADIUS Access-Reject for '{identity}' to client '{client}': {reason}",
                 identity=identity or _user_name(conv.user_name), client=conv.nas, reason=reason)
        return reply

    def _eap_failed(self, failure, conv: _Conversation, key, entry: CachedReply) -> None:
        log.failure("the EAP session failed on a request from client '{client}'", failure, client=conv.nas)
        self._forget(key, entry)
        if not conv.closed:
            self._end(conv, "internal error")
        return None

    # -- replies and state ---------------------------------------------------------------

    def _reply(self, request: RadiusPacket, client: RadiusClient, code: Code, attributes: bytes) -> bytes:
        """The signed reply: Message-Authenticator first, then ``attributes``
        (encoded), then the request's Proxy-States."""
        # RFC 2865 §5.33: Proxy-State attributes go back unmodified and in order
        proxy_states = [attr for attr in request.attributes if attr.type == _PROXY_STATE]
        if proxy_states:
            attributes += encode_attributes(proxy_states)
        return signed_reply(code, request.identifier, request.authenticator, client.secret, attributes)

    def _drop(self, packet: RadiusPacket, client: RadiusClient, host: str, reason: str,
              kind: str = "invalid RADIUS request") -> None:
        self.counters.packets_dropped += 1
        log.warn("RADIUS {code} 0x{id:02x} from client {client} discarded: {reason}",
                 code=code_name(packet.code), id=packet.identifier, client=client_label(client, host),
                 reason=reason, log_limit=(kind, host))
        return None

    def _cache(self, key, entry: CachedReply) -> None:
        replies = self._replies
        replies[key] = entry
        if len(replies) > self.max_cached_replies:
            # the oldest entry goes; a conversation still refuses a second
            # request while one is pending, so nothing is processed twice
            del replies[next(iter(replies))]

    def _forget(self, key, entry: CachedReply) -> None:
        if self._replies.get(key) is entry:
            del self._replies[key]

    def _evict(self, conv: _Conversation, why: str) -> None:
        """End the unfinished ``conv`` to make room for a new conversation."""
        self.counters.conversations_evicted += 1
        log.warn("ending the unfinished EAP conversation from client '{client}' for '{user}': {why}",
                 client=conv.nas, user=_user_name(conv.user_name), why=why,
                 log_limit=("unfinished EAP conversation ended for a newer one", conv.nas))
        self._end(conv, "made room for a newer conversation")

    def _end(self, conv: _Conversation, abort_reason: str | None) -> None:
        """Forget ``conv``; abort its EAP session unless the session ended by itself."""
        conv.closed = True
        if self._conversations.get(conv.state) is conv:
            del self._conversations[conv.state]
        for index, key in ((self._by_nas, conv.nas), (self._by_station, conv.station)):
            group = index.get(key) if key is not None else None
            if group is not None and conv in group:
                del group[conv]
                if not group:
                    del index[key]
        if abort_reason is not None:
            try:
                conv.session.abort(abort_reason)
            except Exception:
                log.failure("aborting the EAP session of client '{client}' failed", client=conv.nas)

    # -- time -------------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Forget conversations idle for ``conversation_timeout`` and stale cached replies."""
        self._now = now
        conversations = self._conversations
        idle_since = now - self.conversation_timeout
        while conversations:
            conv = next(iter(conversations.values()))
            if conv.last_seen > idle_since:
                break
            log.info("EAP conversation from client '{client}' for '{user}' timed out after {t:g} s "
                     "without a request", client=conv.nas, user=_user_name(conv.user_name),
                     t=self.conversation_timeout)
            self._end(conv, "RADIUS conversation timed out")
        replies = self._replies
        while replies:
            key = next(iter(replies))
            if replies[key].expires > now:
                break
            del replies[key]

    def close(self, reason: str = "server shutting down") -> None:
        """Abort every conversation; nothing is answered afterwards."""
        self.closed = True
        for conv in list(self._conversations.values()):
            self._end(conv, reason)
        self._replies.clear()


def _user_name(raw: bytes | None) -> str:
    """A User-Name from the network, for a log line (control characters escaped)."""
    if not raw:
        return ""
    return printable(raw.decode("utf-8", "replace"))


def _encode_user_name(identity: str) -> bytes:
    data = identity.encode("utf-8")
    if len(data) > MAX_ATTRIBUTE_VALUE:
        # cut at a character boundary
        data = data[:MAX_ATTRIBUTE_VALUE].decode("utf-8", "ignore").encode("utf-8")
    return data
