"""A RADIUS client relaying one EAP conversation, as a NAS does (RFC 2865, RFC 3579).

This is the NAS half of an 802.1X or VPN gateway, for tests, benchmarks and
``nac-eap-client``: the endpoint's EAP peer (:class:`nac.eap.peer.EapPeer`)
talks to a RADIUS/EAP server through Access-Requests.

:class:`RadiusEapExchange` is the sans-IO core: it builds every
Access-Request (User-Name, NAS attributes, the EAP packet split into
EAP-Message attributes, the State of the last Access-Challenge echoed, a
Message-Authenticator), checks every reply (Identifier, Response
Authenticator, Message-Authenticator; anything wrong is silently discarded,
RFC 2865 §3, RFC 3579 §3.2) and, at the Access-Accept or Access-Reject,
decrypts the MS-MPPE keys (RFC 2548) and compares them with the MSK the peer
derived itself.  :class:`RadiusClientProtocol` moves its datagrams over UDP
and retransmits a request that got no valid reply (RFC 5080 §2.2.1: the
same Identifier and Request Authenticator, so the server's duplicate
detection answers it from its cache).  :func:`authenticate` runs one
conversation and fires with a :class:`RadiusResult`.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer, protocol

from nac.client.pb_client import AssessmentOutcome
from nac.client.pt_tls import AssessmentError, AssessmentTimeout, ConnectionFailed, ProtocolFailure, SetupError
from nac.eap.peer import EapPeer, PeerStatus
from nac.log import Logger
from transports.radius.packet import (
    AUTHENTICATOR_SIZE,
    HEADER_SIZE,
    MAX_ATTRIBUTE_VALUE,
    MAX_PACKET_SIZE,
    Attribute,
    AttributeType,
    Code,
    MicrosoftAttribute,
    RadiusPacket,
    RadiusPacketError,
    Tagged,
    TunnelMediumType,
    TunnelType,
    VendorId,
    VendorSpecific,
    code_name,
    decode_value,
    decrypt_mppe_key,
    eap_message_attributes,
    encode_value,
    sign_request,
    verify_response,
)

__all__ = [
    "Failed",
    "Finished",
    "Ignored",
    "RADIUS_PORT",
    "RadiusClientProtocol",
    "RadiusEapExchange",
    "RadiusResult",
    "ReplyAttribute",
    "SendRequest",
    "authenticate",
]

log = Logger(namespace="nac.client.radius")

RADIUS_PORT = 1812
#: RFC 5080 §2.2.1: initial retransmission time and its upper bound, in seconds.
RETRANSMIT_INTERVAL = 2.0
MAX_RETRANSMIT_INTERVAL = 16.0
#: transmissions of one request before giving up on it
MAX_TRANSMISSIONS = 5

_MA_PLACEHOLDER = Attribute(AttributeType.MESSAGE_AUTHENTICATOR, bytes(16))
_SERVICE_TYPE_FRAMED = 2
_NAS_PORT_TYPE_ETHERNET = 15
# not shown among the reply attributes: the EAP layer and the authenticators
_HIDDEN = frozenset((int(AttributeType.EAP_MESSAGE), int(AttributeType.MESSAGE_AUTHENTICATOR)))
_ENUMS = {int(AttributeType.TUNNEL_TYPE): TunnelType, int(AttributeType.TUNNEL_MEDIUM_TYPE): TunnelMediumType}
_MPPE_NAMES = {int(MicrosoftAttribute.MS_MPPE_SEND_KEY): "MS-MPPE-Send-Key",
               int(MicrosoftAttribute.MS_MPPE_RECV_KEY): "MS-MPPE-Recv-Key"}


# -- the result -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ReplyAttribute:
    """One attribute of the final reply, decoded: its dictionary name,
    its value (str, int or, for what nac cannot decode, the hex of the
    bytes) and its RFC 2868 tag (0: none).  MS-MPPE keys are never shown."""

    name: str
    value: Any
    tag: int = 0

    def text(self) -> str:
        """radclient's layout: ``Tunnel-Type:1 = VLAN``."""
        name = f"{self.name}:{self.tag}" if self.tag else self.name
        return f"{name} = {self.value}"


@dataclass(frozen=True, slots=True)
class RadiusResult:
    """How the conversation ended: the final RADIUS code, its attributes, the
    EAP outcome at the peer, the MS-MPPE key check and the posture outcome."""

    code: int
    attributes: tuple[ReplyAttribute, ...]
    eap_status: PeerStatus
    mppe_keys_ok: bool | None
    """True: the MS-MPPE keys are the peer's MSK; False: they differ; None: no keys sent."""
    posture: AssessmentOutcome | None
    round_trips: int
    eap_method: str | None = None
    reason: str = ""
    """Why the peer's conversation failed, when it did."""
    peer_error: str | None = None
    """Why the peer gave up on its side (server certificate not trusted, protocol violation)."""
    tls_error: bool = False

    @property
    def accepted(self) -> bool:
        return self.code == Code.ACCESS_ACCEPT

    @property
    def code_name(self) -> str:
        return code_name(self.code)

    def attribute(self, name: str, default=None):
        """The value of the first reply attribute called ``name``."""
        return next((a.value for a in self.attributes if a.name == name), default)

    @property
    def mppe_text(self) -> str:
        if self.mppe_keys_ok is None:
            return "no MPPE keys"
        return "MPPE keys OK" if self.mppe_keys_ok else "MPPE keys mismatch"

    def to_json(self) -> dict[str, Any]:
        """The posture keys of ``nac-pt-tls-client --json`` plus ``radius``."""
        out = (self.posture or AssessmentOutcome()).to_json()
        attributes: dict[str, Any] = {}
        for attr in self.attributes:
            value = _json_value(attr.value)
            if attr.name in attributes:
                previous = attributes[attr.name]
                attributes[attr.name] = (previous if isinstance(previous, list) else [previous]) + [value]
            else:
                attributes[attr.name] = value
        out["radius"] = {"code": self.code_name, "attributes": attributes, "mppe_keys_ok": self.mppe_keys_ok,
                         "eap": self.eap_status.value, "eap_method": self.eap_method,
                         "round_trips": self.round_trips}
        if self.reason:
            out["radius"]["reason"] = self.reason
        return out


def _json_value(value):
    if isinstance(value, (str, int, bool)) or value is None:
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else value
    return str(value)


def reply_attributes(reply: RadiusPacket) -> tuple[ReplyAttribute, ...]:
    """The attributes of ``reply`` for people: decoded by the dictionary, the
    EAP-Message and Message-Authenticator left out, MS-MPPE keys hidden."""
    out = []
    for attr in reply.attributes:
        if attr.type in _HIDDEN:
            continue
        try:
            value = decode_value(attr.type, attr.value)
        except RadiusPacketError:
            out.append(ReplyAttribute(attr.name, attr.value.hex()))
            continue
        if isinstance(value, VendorSpecific):
            out.extend(_vendor_attributes(value))
            continue
        tag = 0
        if isinstance(value, Tagged):
            tag, value = value.tag, value.value
        enum = _ENUMS.get(attr.type)
        if enum is not None:
            try:
                value = enum(value).name.replace("_", "-")
            except ValueError:
                pass
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            value = str(value)
        out.append(ReplyAttribute(attr.name, value, tag))
    return tuple(out)


def _vendor_attributes(vsa: VendorSpecific) -> list[ReplyAttribute]:
    try:
        subs = vsa.subattributes()
    except RadiusPacketError:
        return [ReplyAttribute(f"Vendor-{vsa.vendor_id}", vsa.data.hex())]
    out = []
    for sub in subs:
        if vsa.vendor_id == VendorId.MICROSOFT and sub.type in _MPPE_NAMES:
            out.append(ReplyAttribute(_MPPE_NAMES[sub.type], "<hidden>"))
        else:
            out.append(ReplyAttribute(f"Vendor-{vsa.vendor_id}-Attr-{sub.type}", sub.value.hex()))
    return out


def mppe_keys(reply: RadiusPacket, secret: bytes, request_authenticator: bytes) -> dict[int, bytes]:
    """The MS-MPPE-Send/Recv-Key values of ``reply``, decrypted (RFC 2548 §2.4.2-3)."""
    keys = {}
    for raw in reply.get_all(AttributeType.VENDOR_SPECIFIC):
        vsa = VendorSpecific.parse(raw)
        if vsa.vendor_id != VendorId.MICROSOFT:
            continue
        for sub in vsa.subattributes():
            if sub.type in _MPPE_NAMES:
                keys[sub.type] = decrypt_mppe_key(sub.value, secret, request_authenticator)
    return keys


# -- the sans-IO exchange -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send ``datagram``: the next Access-Request."""

    datagram: bytes


@dataclass(frozen=True, slots=True)
class Ignored:
    """The datagram was silently discarded (not a valid reply to our request)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Finished:
    result: RadiusResult


@dataclass(frozen=True, slots=True)
class Failed:
    """The server's reply was authentic but ended the conversation in a way
    the EAP peer cannot go on from; ``tls``: the server could not be trusted."""

    reason: str
    tls: bool = False


class RadiusEapExchange:
    """One EAP conversation relayed in Access-Requests (RFC 3579 §2.1), sans-IO.

    ``secret`` is the shared secret (bytes, never logged).  ``identifier``
    is the Identifier of the first request (each new request takes the
    next); ``random(n)`` makes the Request Authenticators.
    """

    def __init__(self, peer: EapPeer, secret: bytes, *, nas_identifier: str = "nac-eap-client",
                 calling_station_id: str | None = None, framed_mtu: int = 1400, identifier: int | None = None,
                 random: Callable[[int], bytes] = os.urandom):
        if not secret:
            raise SetupError("the RADIUS shared secret is empty")
        user_name = peer.settings.eap_identity.encode("utf-8")
        if not 0 < len(user_name) <= MAX_ATTRIBUTE_VALUE:
            raise SetupError(f"the EAP identity must be 1-{MAX_ATTRIBUTE_VALUE} bytes to fit User-Name")
        self.peer = peer
        self.secret = secret
        self.random = random
        self.identifier = (random(1)[0] if identifier is None else identifier - 1) & 0xFF
        self.request_authenticator = b""
        self.request: bytes | None = None
        """The outstanding Access-Request, as sent (retransmissions repeat it)."""
        self.round_trips = 0
        self.finished = False
        self._state: bytes | None = None
        nas = [Attribute(AttributeType.NAS_IDENTIFIER, encode_value(AttributeType.NAS_IDENTIFIER, nas_identifier)),
               Attribute(AttributeType.SERVICE_TYPE, encode_value(AttributeType.SERVICE_TYPE, _SERVICE_TYPE_FRAMED)),
               Attribute(AttributeType.NAS_PORT_TYPE,
                         encode_value(AttributeType.NAS_PORT_TYPE, _NAS_PORT_TYPE_ETHERNET)),
               # RFC 3579 §2.4: what the link carries, so the server sizes its EAP packets
               Attribute(AttributeType.FRAMED_MTU, encode_value(AttributeType.FRAMED_MTU, framed_mtu))]
        if calling_station_id:
            nas.append(Attribute(AttributeType.CALLING_STATION_ID,
                                 encode_value(AttributeType.CALLING_STATION_ID, calling_station_id)))
        self._fixed = (Attribute(AttributeType.USER_NAME, user_name), *nas)

    def start(self) -> bytes:
        """The first Access-Request: the peer's EAP-Response/Identity."""
        if self.request is not None:
            raise RuntimeError("the exchange has already started")
        return self._access_request(self.peer.identity_response(0))

    @property
    def max_eap_size(self) -> int:
        """The longest EAP packet an Access-Request of this exchange can carry
        (RFC 2865 §3: 4096 bytes in all; each EAP-Message holds 253)."""
        used = HEADER_SIZE + sum(2 + len(a.value) for a in self._fixed) + 2 + 16  # Message-Authenticator
        if self._state is not None:
            used += 2 + len(self._state)
        room = MAX_PACKET_SIZE - used
        whole, rest = divmod(room, MAX_ATTRIBUTE_VALUE + 2)
        return whole * MAX_ATTRIBUTE_VALUE + max(0, rest - 2)

    def _access_request(self, eap: bytes) -> bytes:
        self.identifier = (self.identifier + 1) & 0xFF
        self.request_authenticator = self.random(AUTHENTICATOR_SIZE)
        attrs = [*self._fixed]
        if self._state is not None:
            attrs.append(Attribute(AttributeType.STATE, self._state))
        attrs += eap_message_attributes(eap)
        attrs.append(_MA_PLACEHOLDER)
        self.request = sign_request(RadiusPacket(Code.ACCESS_REQUEST, self.identifier, self.request_authenticator,
                                                 tuple(attrs)), self.secret)
        return self.request

    def receive(self, datagram: bytes):
        """One datagram from the server: a :class:`SendRequest`,
        :class:`Ignored`, :class:`Finished` or :class:`Failed` event."""
        if self.finished or self.request is None:
            return Ignored("no request outstanding")
        if len(datagram) < HEADER_SIZE:
            return Ignored(f"datagram of {len(datagram)} bytes is too short for RADIUS")
        if datagram[1] != self.identifier:
            return Ignored(f"reply with Identifier 0x{datagram[1]:02x}, 0x{self.identifier:02x} expected")
        try:
            reply = verify_response(bytes(datagram), self.request_authenticator, self.secret)
            eap = reply.eap_message()
        except RadiusPacketError as err:
            hint = " (is the shared secret the same?)" if "Authenticator" in err.reason else ""
            return Ignored(f"invalid reply: {err}{hint}")
        code = reply.code
        if code not in (Code.ACCESS_CHALLENGE, Code.ACCESS_ACCEPT, Code.ACCESS_REJECT):
            return Ignored(f"{code_name(code)} is no answer to an Access-Request")
        if eap is not None and not reply.has_message_authenticator:
            # RFC 3579 §3.2: a reply with EAP-Message and no Message-Authenticator is discarded
            return Ignored(f"{code_name(code)} with EAP-Message but no Message-Authenticator")
        self.round_trips += 1
        if code == Code.ACCESS_CHALLENGE:
            return self._challenge(reply, eap)
        return self._final(reply, eap)

    def _challenge(self, reply: RadiusPacket, eap: bytes | None):
        if eap is None:
            return self._fail("Access-Challenge without EAP-Message")
        step = self.peer.receive(eap)
        if step.status is not PeerStatus.CONTINUE and self.peer.error is not None:
            # the peer gave up on the server (certificate, name, protocol)
            return self._fail(self.peer.error, tls=self.peer.tls_error)
        if step.status is PeerStatus.FAILURE and self.peer.posture is not None and self.peer.posture.completed:
            # the server ended the conversation after its posture decision
            # (strongSwan's PDP denies so, without an Access-Reject): that decision is the outcome
            return self._final(reply, None)
        if step.status is not PeerStatus.CONTINUE:
            what = {PeerStatus.DISCARD: "discarded the EAP packet of an Access-Challenge"}.get(
                step.status, f"ended the conversation in an Access-Challenge ({step.status.value})")
            return self._fail(f"the EAP peer {what}: {step.reason or self.peer.reason}")
        # RFC 2865 §5.24: the State goes back unmodified in the next request
        self._state = reply.get(AttributeType.STATE)
        if len(step.response) > self.max_eap_size:
            return self._fail(f"the EAP response of {len(step.response)} bytes does not fit one Access-Request "
                              f"(at most {self.max_eap_size}): lower the EAP fragment size")
        return SendRequest(self._access_request(step.response))

    def _final(self, reply: RadiusPacket, eap: bytes | None):
        peer = self.peer
        if eap is not None:
            peer.receive(eap)
        mppe_ok = None
        if reply.code == Code.ACCESS_ACCEPT:
            try:
                keys = mppe_keys(reply, self.secret, self.request_authenticator)
            except RadiusPacketError as err:
                log.warn("cannot decrypt the MS-MPPE keys: {reason}", reason=err.reason)
                keys, mppe_ok = {}, False
            if keys:
                msk = peer.msk or b""
                mppe_ok = (len(msk) >= 64
                           and keys.get(MicrosoftAttribute.MS_MPPE_RECV_KEY) == msk[:32]
                           and keys.get(MicrosoftAttribute.MS_MPPE_SEND_KEY) == msk[32:64])
        self.finished = True
        self.request = None
        return Finished(RadiusResult(
            code=reply.code, attributes=reply_attributes(reply), eap_status=peer.status, mppe_keys_ok=mppe_ok,
            posture=peer.posture, round_trips=self.round_trips, eap_method=peer.method_label,
            reason=peer.reason if peer.status is not PeerStatus.SUCCESS else "",
            peer_error=peer.error, tls_error=peer.tls_error))

    def _fail(self, reason: str, *, tls: bool = False) -> Failed:
        self.finished = True
        self.request = None
        return Failed(reason, tls)


# -- Twisted --------------------------------------------------------------------------------------

class RadiusClientProtocol(protocol.DatagramProtocol):
    """One UDP socket of a NAS, connected to the server, running exchanges
    one after another (:meth:`run`).

    A request without a valid reply is sent again after
    ``retransmit_interval`` seconds, the interval doubling up to
    ``max_retransmit_interval``, at most ``max_transmissions`` times.
    """

    noisy = False

    def __init__(self, clock, server: str, *, retransmit_interval: float = RETRANSMIT_INTERVAL,
                 max_retransmit_interval: float = MAX_RETRANSMIT_INTERVAL,
                 max_transmissions: int = MAX_TRANSMISSIONS):
        self.clock = clock
        self.server = server
        self.retransmit_interval = retransmit_interval
        self.max_retransmit_interval = max_retransmit_interval
        self.max_transmissions = max_transmissions
        self.exchange: RadiusEapExchange | None = None
        self.transmissions = 0
        self.retransmissions = 0
        """Retransmitted requests, over all exchanges."""
        self._done: defer.Deferred | None = None
        self._retransmit = None
        self._deadline = None
        self._interval = retransmit_interval

    # -- running one exchange -------------------------------------------------------------------

    def run(self, exchange: RadiusEapExchange, timeout: float = 30.0) -> defer.Deferred:
        """Run ``exchange``; fires with its :class:`RadiusResult` or fails with
        an :class:`nac.client.pt_tls.AssessmentError`."""
        if self._done is not None:
            raise RuntimeError("an exchange is already running on this socket")
        self.exchange = exchange
        self._done = d = defer.Deferred()
        self._deadline = self.clock.callLater(timeout, self._timed_out, timeout)
        self._send(exchange.start())
        return d

    def _send(self, datagram: bytes, *, again: bool = False) -> None:
        if again:
            self.transmissions += 1
            self.retransmissions += 1
            self._interval = min(self._interval * 2, self.max_retransmit_interval)
            log.info("retransmitting RADIUS Access-Request 0x{id:02x} to {server}",
                     id=self.exchange.identifier, server=self.server)
        else:
            self.transmissions = 1
            self._interval = self.retransmit_interval
        if self.transport is not None:
            self.transport.write(datagram)
        if self._done is None:  # ended by an ICMP error reported by the write
            self._cancel(retransmit_only=True)
        elif self._retransmit is not None and self._retransmit.active():
            # one timer per exchange, moved on: cheaper than a new one per round trip
            self._retransmit.reset(self._interval)
        else:
            self._retransmit = self.clock.callLater(self._interval, self._no_reply)

    def _no_reply(self) -> None:
        self._retransmit = None
        exchange = self.exchange
        if exchange is None or exchange.request is None:
            return
        if self.transmissions >= self.max_transmissions:
            self._finish(AssessmentTimeout(
                f"no reply from {self.server} to Access-Request 0x{exchange.identifier:02x} after "
                f"{self.transmissions} transmissions"))
            return
        self._send(exchange.request, again=True)

    def _timed_out(self, timeout: float) -> None:
        self._deadline = None
        self._finish(AssessmentTimeout(f"no RADIUS result from {self.server} within {timeout:g} s"))

    def datagramReceived(self, data: bytes, addr) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        try:
            event = exchange.receive(data)
        except Exception as exc:
            log.failure("internal error handling a RADIUS reply from {server}", server=self.server)
            self._finish(ProtocolFailure(f"internal error: {type(exc).__name__}: {exc}"))
            return
        if isinstance(event, SendRequest):
            self._send(event.datagram)
        elif isinstance(event, Ignored):
            log.info("RADIUS packet from {server} discarded: {reason}", server=self.server, reason=event.reason)
        elif isinstance(event, Finished):
            result = event.result
            log.info("received RADIUS {code} from {server} after {n} round trips", code=result.code_name,
                     server=self.server, n=result.round_trips)
            self._finish(result)
        elif event.tls:
            self._finish(ConnectionFailed(f"{self.server}: {event.reason}"))
        else:
            self._finish(ProtocolFailure(f"{self.server}: {event.reason}"))

    def connectionRefused(self) -> None:
        # ICMP port unreachable for one of our requests: nothing listens there
        if self.exchange is not None:
            self._finish(ConnectionFailed(f"no RADIUS server at {self.server} (port unreachable)"))

    def stopProtocol(self) -> None:
        # the epoll reactor closes a connected UDP socket whose ICMP error
        # arrives without data to read, instead of calling connectionRefused
        if self._done is not None:
            self._finish(ConnectionFailed(f"no RADIUS server at {self.server} (port unreachable)"))

    def _finish(self, outcome) -> None:
        d, self._done = self._done, None
        self._cancel()
        exchange, self.exchange = self.exchange, None
        if exchange is not None and not exchange.finished:
            exchange.finished = True
            exchange.peer.abort(str(outcome))
        if d is None:
            return
        if isinstance(outcome, Exception):
            d.errback(outcome)
        else:
            d.callback(outcome)

    def _cancel(self, *, retransmit_only: bool = False) -> None:
        if self._retransmit is not None and self._retransmit.active():
            self._retransmit.cancel()
        self._retransmit = None
        if not retransmit_only:
            if self._deadline is not None and self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    # -- sockets -----------------------------------------------------------------------------------

    @classmethod
    def connect(cls, reactor, address: str, port: int, *, source: str | None = None, **kw) -> RadiusClientProtocol:
        """A protocol on a new UDP socket connected to ``address`` (an IP
        address) and ``port``.  The socket is bound to ``source`` when given
        (the NAS address the server is to see), else to the loopback address
        when the server is on loopback, else to any address of the family."""
        ip = ipaddress.ip_address(address)
        if source is not None:
            interface = source
        elif ip.is_loopback:
            interface = str(ip) if ip.version == 4 else "::1"
        else:
            interface = "0.0.0.0" if ip.version == 4 else "::"
        proto = cls(reactor, f"{address}[{port}]", **kw)
        reactor.listenUDP(0, proto, interface=interface)
        proto.transport.connect(str(ip), port)
        return proto

    def close(self) -> defer.Deferred | None:
        if self._done is not None:
            self._finish(ProtocolFailure("the RADIUS client was closed"))
        if self.transport is not None:
            return self.transport.stopListening()
        return None


def authenticate(reactor, host: str, port: int, secret: bytes, peer: EapPeer, *, timeout: float = 30.0,
                 retransmit_interval: float = RETRANSMIT_INTERVAL, max_transmissions: int = MAX_TRANSMISSIONS,
                 nas_identifier: str = "nac-eap-client", calling_station_id: str | None = None,
                 source: str | None = None) -> defer.Deferred:
    """Run ``peer``'s conversation with the RADIUS server at ``host``:``port``.

    Fires with a :class:`RadiusResult` once an Access-Accept or
    Access-Reject arrived, or fails with an
    :class:`nac.client.pt_tls.AssessmentError`: timeout, unreachable
    server, a conversation the peer could not go on with.  ``source``: the
    address to send from (an address of this host).
    """
    try:
        exchange = RadiusEapExchange(peer, secret, nas_identifier=nas_identifier,
                                     calling_station_id=calling_station_id)
    except AssessmentError as exc:
        return defer.fail(exc)

    def run(address: str):
        try:
            proto = RadiusClientProtocol.connect(reactor, address, port, source=source,
                                                 retransmit_interval=retransmit_interval,
                                                 max_transmissions=max_transmissions)
        except Exception as exc:
            where = f" from {source}" if source is not None else ""
            raise ConnectionFailed(f"cannot send to {host}[{port}]{where}: {exc}") from None
        d = proto.run(exchange, timeout)

        def close(value):
            closing = proto.close()
            if closing is None:
                return value
            return closing.addCallback(lambda _: value)

        return d.addBoth(close)

    try:
        ipaddress.ip_address(host)
        resolved = defer.succeed(host)
    except ValueError:
        resolved = reactor.resolve(host, timeout=(min(timeout, 10.0),))

    def unresolved(failure):
        raise ConnectionFailed(f"cannot resolve {host}: {failure.getErrorMessage()}")

    return resolved.addErrback(unresolved).addCallback(run)
