"""The RadSec listener (RFC 6614): RADIUS over TLS on TCP, in the main process.

This module moves bytes and enforces the connection limits; the framing is
:mod:`transports.radius.radsec`, the answers come from the same
:class:`~transports.radius.server.RadiusServer` as UDP RADIUS's (EAP,
Status-Server), and Accounting-Requests from the accounting server of
``[radius] acct_port`` (:mod:`transports.radius.accounting`) when there is one.  TLS is mutual (RFC 6614 §2.3): OpenSSL refuses, in the
handshake, a NAS without a certificate issued by ``[radius] radsec_ca``;
then the certificate's names (:func:`~transports.radius.clients.certificate_names`)
must be the ``radsec_name`` of a ``[radius-client:NAME]`` section, else the
connection is closed.  Bad input closes the connection (RFC 6613 §2.4) with
a log line limited per peer.  nac's own CoA / Disconnect requests to the NAS
go out on its connection too, and their answers are handed back to them
(:mod:`transports.radius.radsec_coa`).
"""

from __future__ import annotations

import socket
from pathlib import Path

from twisted.application import service
from twisted.internet import defer, protocol
from twisted.internet.interfaces import IHandshakeListener
from zope.interface import implementer

from nac.config import ConfigError
from nac.dualstack import BoundListener, unmapped
from nac.log import Logger
from nac.tls import server_context
from transports.pt_tls.tls import TlsServerFactory
from transports.radius.clients import RadiusClient, certificate_names, radsec_clients
from transports.radius.packet import MAX_PACKET_SIZE
from transports.radius.radsec import RADSEC_SECRET, RadsecFramingError, RadsecStream
from transports.radius.packet import Code
from transports.radius.server import RadiusServer

__all__ = ["RadsecFactory", "RadsecProtocol", "RadsecService", "make_radsec_service"]

log = Logger(namespace="nac.radius.radsec")

#: RFC 5176 answers (CoA-ACK/NAK, Disconnect-ACK/NAK) to requests nac sent on a connection
_DYNAMIC_ANSWERS = frozenset({Code.COA_ACK, Code.COA_NAK, Code.DISCONNECT_ACK, Code.DISCONNECT_NAK})
#: requests of one connection waiting for their answer (RFC 6613 §2.6: the
#: Identifier space of a connection)
MAX_WAITING = 256


@implementer(IHandshakeListener)
class RadsecProtocol(protocol.Protocol):
    """One NAS's RadSec connection (inside Twisted's TLS wrapper): identified
    by its certificate once the handshake is done, then each RADIUS packet
    of the stream is answered by the server core."""

    def __init__(self, factory: "RadsecFactory", host: str, port: int):
        self.factory = factory
        self.host = host
        self.port = port
        self.client: RadiusClient | None = None
        self.stream = RadsecStream(factory.max_packet_size)
        self._timer = None
        self._closed = False
        #: requests whose answer is not ready yet
        self.waiting = 0
        #: when the NAS was identified (the newest connection of a NAS gets its CoA)
        self.identified_at: float | None = None
        #: nac's CoA / Disconnect requests on this connection and their answers
        #: (:class:`~transports.radius.radsec_coa.RadsecCoaSender`, made when first needed)
        self.coa = None

    @property
    def peer(self) -> str:
        return f"{self.host}[{self.port}]"

    def connectionMade(self):
        self.factory.open.add(self)
        self._timer = self.factory.clock.callLater(self.factory.handshake_timeout, self._timed_out, "TLS handshake")

    def handshakeCompleted(self):
        cert = self.transport.getPeerCertificate()
        names = certificate_names(cert) if cert is not None else []
        client = next((self.factory.clients[name] for name in names if name in self.factory.clients), None)
        if client is None:
            # the CA vouches for it, but no [radius-client:NAME] names it
            self._refuse("its certificate names no NAS ({names}): no [radius-client:NAME] radsec_name matches",
                         names=", ".join(names) or "no names")
            return
        self.client = client
        self.identified_at = self.factory.clock.seconds()
        log.info("RadSec connection from {peer}: NAS '{nas}'", peer=self.peer, nas=client.name)
        self._rearm(self.factory.idle_timeout, "idle")

    def dataReceived(self, data: bytes):
        if self._closed:
            return
        if self.client is None:
            self._refuse("data before the NAS was identified")
            return
        try:
            packets = self.stream.receive_data(data)
        except RadsecFramingError as exc:
            self._refuse("{reason}", reason=str(exc))
            return
        if packets:
            self._rearm(self.factory.idle_timeout, "idle")
        server, accounting, now = self.factory.server, self.factory.accounting, self.factory.clock.seconds()
        for packet in packets:
            if packet[0] in _DYNAMIC_ANSWERS and self.coa is not None:
                # RFC 5176 answers to nac's requests on this connection
                self.coa.answer(packet)
                continue
            # RFC 6614 §2.1: one connection carries authentication and accounting
            core = accounting if accounting is not None and packet[0] == Code.ACCOUNTING_REQUEST else server
            try:
                reply = core.respond(packet, (self.host, self.port), now, client=self.client)
            except Exception:
                log.failure("internal error on a RadSec packet from {peer}", peer=self.peer,
                            log_limit=("internal error on a RadSec packet", self.host))
                continue
            if reply is None:
                continue
            if isinstance(reply, bytes):
                self._send(reply)
                continue
            self.waiting += 1
            if self.waiting > MAX_WAITING:
                # RFC 6613 §2.6: at most 256 requests in flight per connection (one per Identifier)
                self._refuse("more than {n} requests waiting for an answer", n=MAX_WAITING)
            reply.addCallback(self._answered).addErrback(
                lambda failure: log.failure("internal error answering a RadSec packet from {peer}", failure,
                                            peer=self.peer))
            if self._closed:
                return

    @property
    def identified(self) -> bool:
        """Whether the NAS is known and the connection open."""
        return self.client is not None and not self._closed

    def send_request(self, data: bytes) -> None:
        """Send a request of nac's (CoA, Disconnect) to the NAS."""
        if not self._closed:
            # the connection stays up for the answer
            self._rearm(self.factory.idle_timeout, "idle")
            self.transport.write(data)

    def _answered(self, reply: bytes | None) -> None:
        self.waiting -= 1
        self._send(reply)

    def _send(self, reply: bytes | None) -> None:
        if reply is not None and not self._closed:
            self.transport.write(reply)

    def _refuse(self, message: str, **fields) -> None:
        log.warn("RadSec connection from {peer} closed: " + message, peer=self.peer,
                 log_limit=("RadSec connection closed", self.host), **fields)
        self._close()

    def _timed_out(self, what: str) -> None:
        self._timer = None
        if what == "idle":
            log.info("RadSec connection from {peer} closed: idle for {seconds:g} s", peer=self.peer,
                     seconds=self.factory.idle_timeout)
        else:
            log.warn("RadSec connection from {peer} closed: no {what} within {seconds:g} s", peer=self.peer,
                     what=what, seconds=self.factory.handshake_timeout,
                     log_limit=("RadSec handshake timeout", self.host))
        self._close()

    def _rearm(self, delay: float, what: str) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.factory.clock.callLater(delay, self._timed_out, what)

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self.transport.abortConnection()

    def connectionLost(self, reason=None):
        if self.client is None and not self._closed:
            # mostly OpenSSL refusing the NAS's certificate (or its lack of one)
            why = reason.getErrorMessage() if reason is not None else "connection lost"
            log.warn("RadSec connection from {peer} closed before the NAS was identified: {why}", peer=self.peer,
                     why=why, log_limit=("RadSec handshake failed", self.host))
        self._closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.factory.open.discard(self)
        self.factory.lost(self.host)
        if self.coa is not None:
            self.coa.lost()


class RadsecFactory(protocol.Factory):
    """Builds a :class:`RadsecProtocol` per connection, or refuses one (None)
    beyond ``max_connections`` in all or ``max_connections_per_source`` from
    one address."""

    noisy = False

    def __init__(self, server: RadiusServer, clients: dict[str, RadiusClient], clock, *, accounting=None,
                 handshake_timeout: float = 10.0, idle_timeout: float = 300.0, max_connections: int = 256,
                 max_connections_per_source: int = 16, max_packet_size: int = MAX_PACKET_SIZE):
        self.server = server
        #: the accounting server (``[radius] acct_port`` not 0), for Accounting-Requests
        self.accounting = accounting
        self.clients = clients
        self.clock = clock
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_connections_per_source = max_connections_per_source
        self.max_packet_size = max_packet_size
        self.connections = 0
        self.per_source: dict[str, int] = {}
        #: the connections made (closed when the service stops)
        self.open: set[RadsecProtocol] = set()

    def buildProtocol(self, addr):
        host = unmapped(addr.host)
        if self.connections >= self.max_connections:
            log.warn("RadSec connection from {host} refused: {n} connections already (radsec_max_connections)",
                     host=host, n=self.connections, log_limit=("RadSec connections full", ""))
            return None
        if self.per_source.get(host, 0) >= self.max_connections_per_source:
            log.warn("RadSec connection from {host} refused: {n} connections from it already "
                     "(radsec_max_connections_per_source)", host=host, n=self.per_source[host],
                     log_limit=("RadSec connections per source full", host))
            return None
        self.connections += 1
        self.per_source[host] = self.per_source.get(host, 0) + 1
        return RadsecProtocol(self, host, addr.port)

    def lost(self, host: str) -> None:
        self.connections -= 1
        left = self.per_source.get(host, 1) - 1
        if left > 0:
            self.per_source[host] = left
        else:
            self.per_source.pop(host, None)


class RadsecService(service.Service):
    """RadSec on one TCP address and port; started and stopped by the
    RADIUS service (:class:`~transports.radius.service.RadiusService`)."""

    name = "radsec"

    def __init__(self, factory: RadsecFactory, context, port: int, interface: str):
        self.factory = factory
        self.tls_factory = TlsServerFactory(context, False, factory)
        self.listener = BoundListener(interface, port, socket.SOCK_STREAM, what="RadSec")

    def bind(self) -> None:
        # before twistd drops privileges
        self.listener.bind()

    def privilegedStartService(self):
        self.bind()
        super().privilegedStartService()

    def startService(self):
        from twisted.internet import reactor
        self.bind()
        super().startService()
        self.listener.adopt(lambda fd, family: reactor.adoptStreamPort(fd, family, self.tls_factory))
        log.info("RadSec server listening on {where}", where=self.where)

    @property
    def where(self) -> str:
        return self.listener.where

    def stopService(self):
        super().stopService()
        for connection in list(self.factory.open):
            connection._close()
        stopped = self.listener.release()
        return stopped if stopped is not None else defer.succeed(None)


def make_radsec_service(cfg, server: RadiusServer, *, accounting=None, clock=None) -> RadsecService:
    """RadSec from ``[radius] radsec_*`` and the ``radsec_name`` of the
    ``[radius-client:NAME]`` sections, answered by ``server`` (and
    Accounting-Requests by ``accounting``, when given)."""
    from twisted.internet import reactor

    from nac.certs import PkiError, ensure_demo_pki

    sec = cfg.section("radius")
    origin = cfg.source or "defaults"
    cert, key, ca = sec["radsec_cert"], sec["radsec_key"], sec["radsec_ca"]
    if ca is None:
        raise ConfigError(f"{cfg.origin('radius', 'radsec_ca')}: [radius] radsec_ca: required because "
                          "radsec_port is set")
    if cert is None:
        try:
            pki = ensure_demo_pki(Path(cfg.state_dir))
        except PkiError as exc:
            raise ConfigError(f"{cfg.origin('radius', 'radsec_cert')}: [radius] radsec_cert: {exc}") from None
        cert, key = pki.server_cert, pki.server_key
    try:
        context = server_context(cert=Path(cert), key=Path(key), ca=Path(ca), client_cert="required",
                                 min_tls_version=sec["radsec_min_tls_version"], ciphers=None, origin=origin,
                                 section="radius")
    except ConfigError as exc:
        # server_context names its keys cert/key/ca
        raise ConfigError(str(exc).replace("] cert:", "] radsec_cert:").replace("] key:", "] radsec_key:")
                          .replace("] ca:", "] radsec_ca:")) from None
    factory = RadsecFactory(server, radsec_clients(cfg, RADSEC_SECRET), clock or reactor, accounting=accounting,
                            handshake_timeout=sec["radsec_handshake_timeout"], idle_timeout=sec["radsec_idle_timeout"],
                            max_connections=sec["radsec_max_connections"],
                            max_connections_per_source=sec["radsec_max_connections_per_source"])
    return RadsecService(factory, context, sec["radsec_port"], sec["radsec_listen"])
