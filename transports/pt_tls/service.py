"""The PT-TLS listener: TCP + TLS + the sans-IO PT-TLS server + the TNCS core.

This module only moves bytes, runs timers and calls the cores: PT-TLS rules
live in :mod:`transports.pt_tls.negotiation`, PB-TNC rules in
:mod:`nac.tnccs`.
"""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

from twisted.application import service
from twisted.internet import defer, protocol
from twisted.internet.interfaces import IHandshakeListener
from zope.interface import implementer

from nac.certs import certificate_identity
from nac.config import ConfigError
from nac.dualstack import bind, listen_address, unmapped
from nac.interfaces import IPostureTransport
from nac.log import Logger
from nac.tnccs.assessment import PeerInfo, TransportLimits
from transports.pt_tls import negotiation as ptn
from transports.pt_tls.tls import TlsServerFactory, server_context

log = Logger(namespace="nac.pt-tls")


@implementer(IHandshakeListener)
class PtTlsServerProtocol(protocol.Protocol):
    """One PT-TLS session (RFC 6876) over an established TLS connection."""

    def __init__(self, factory: "PtTlsFactory", peer):
        self.factory = factory
        self.peer_addr = peer
        # an IPv4 client of a socket bound to :: is ::ffff:a.b.c.d there
        self.peer_host = unmapped(peer.host) if hasattr(peer, "host") else str(peer)
        self.session_id = next(factory.session_ids)
        self.pt: ptn.PtTlsServer | None = None
        self.tnccs = None
        self._timer = None
        self._closing = False
        self._batch_pending = False

    # -- connection life ---------------------------------------------------------

    def connectionMade(self):
        f = self.factory
        if f.active >= f.max_connections:
            log.warn("refusing PT-TLS connection from {peer}: {n} connections is the limit "
                     "({limit})", peer=self._peer_str(), n=f.max_connections, limit=f.limit_name)
            self.transport.abortConnection()
            self._closing = True
            return
        f.active += 1
        self._counted = True
        self._arm(f.handshake_timeout, "TLS handshake")

    def handshakeCompleted(self):
        if self._closing:
            return
        identity = None
        try:
            identity = certificate_identity(self.transport.getPeerCertificate())
        except Exception:  # no certificate, or one we cannot read
            identity = None
        self.pt = ptn.PtTlsServer(client_authenticated_identity=identity,
                                  max_message_size=self.factory.max_message_size,
                                  sasl_enabled=self.factory.sasl_enabled)
        log.info("accepting PT-TLS stream from {peer}", peer=self._peer_str())
        if identity:
            log.info("client authenticated by TLS certificate as '{identity}'", identity=identity)
        self._arm(self.factory.negotiation_timeout, "PT-TLS negotiation")

    def dataReceived(self, data: bytes):
        if self.pt is None or self._closing:
            return
        try:
            self._handle(self.pt.receive_data(data))
        except Exception:
            # a bug of ours must cost this session only, never the listener
            log.failure("internal error on PT-TLS session from {peer}", peer=self._peer_str())
            self._closing = True
            self.transport.abortConnection()

    def connectionLost(self, reason=protocol.connectionDone):
        self._cancel_timer()
        if getattr(self, "_counted", False):
            self.factory.active -= 1
            self._counted = False
        if self.tnccs is not None and not self.tnccs.finished:
            self.tnccs.abort("PT-TLS connection from {} closed".format(self._peer_str()))
        self.tnccs = None

    # -- events from the PT-TLS core -------------------------------------------------

    def _handle(self, events) -> None:
        for event in events:
            if isinstance(event, ptn.SaslPlainCredentials):
                self._check_password(event)
            elif isinstance(event, ptn.Authenticated):
                self._authenticated(event)
            elif isinstance(event, ptn.AuthenticationFailed):
                log.warn("SASL PLAIN authentication of '{identity}' from {peer} failed",
                         identity=event.identity, peer=self._peer_str())
            elif isinstance(event, ptn.PbBatchReceived):
                self._batch(event.data)
            elif isinstance(event, ptn.ProtocolError):
                log.warn("PT-TLS error from {peer}: {reason} (sending {code})",
                         peer=self._peer_str(), reason=event.reason, code=getattr(event.code, "name", event.code),
                         log_limit=("PT-TLS protocol error", self.peer_host))
            elif isinstance(event, ptn.ClientError):
                log.warn("received PT-TLS Error {code} from {peer}",
                         code=event.code_name, peer=self._peer_str(),
                         log_limit=("PT-TLS Error from a client", self.peer_host))
            elif isinstance(event, ptn.Closed):
                self._close(event.reason)
                return
        self._flush()

    def _check_password(self, creds: ptn.SaslPlainCredentials) -> None:
        d = self.factory.check_password(creds.authcid, creds.password)

        def done(ok):
            if self.pt is None or self._closing:
                return
            if ok:
                log.info("SASL PLAIN authentication successful")
            self._handle(self.pt.sasl_result(bool(ok)))

        def failed(f):
            log.failure("checking the SASL password failed", f)
            return False

        d.addErrback(failed).addCallback(done)

    def _authenticated(self, event: ptn.Authenticated) -> None:
        self._arm(self.factory.idle_timeout, "idle")
        if event.method == ptn.AUTH_CERTIFICATE:
            log.info("skipping SASL, client already authenticated by TLS certificate")
        peer = PeerInfo(transport="pt-tls", address=self.peer_host, port=self.peer_addr.port,
                        identity=event.identity, auth_method=event.method)
        limits = TransportLimits(max_batch_size=self.pt.max_batch_size,
                                 max_message_size=self.pt.max_batch_size - 8 - 12 - 12)
        self.tnccs = self.factory.core.open_connection(peer, limits)
        log.info("PT-TLS session {sid} from {peer} is Connection ID {cid} for '{identity}'",
                 sid=self.session_id, peer=self._peer_str(), cid=self.tnccs.connection_id,
                 identity=event.identity or "")

    def _batch(self, data: bytes) -> None:
        self._arm(self.factory.idle_timeout, "idle")
        if self.tnccs is None:
            return
        d = self.tnccs.receive_batch(data)
        d.addCallback(self._outcome)
        d.addErrback(self._core_failed)

    def _outcome(self, outcome) -> None:
        if self.pt is None or self.pt.closed:
            return
        for batch in outcome.batches:
            self.pt.send_batch(batch)
        self._flush()
        if outcome.close:
            self._close("PB-TNC connection closed")

    def _core_failed(self, failure) -> None:
        log.failure("TNCS core failed on PT-TLS session from {peer}", failure, peer=self._peer_str())
        self._close("internal error")

    # -- plumbing -----------------------------------------------------------------------

    def _flush(self) -> None:
        if self.pt is not None:
            data = self.pt.data_to_send()
            if data:
                self.transport.write(data)

    def _close(self, reason: str) -> None:
        if self._closing:
            return
        self._flush()
        self._closing = True
        self._cancel_timer()
        log.info("closing PT-TLS session with {peer}: {reason}", peer=self._peer_str(), reason=reason)
        self.transport.loseConnection()

    def _arm(self, seconds: float, what: str) -> None:
        self._cancel_timer()
        self._timer = self.factory.clock.callLater(seconds, self._timed_out, what, seconds)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timed_out(self, what: str, seconds: float) -> None:
        self._timer = None
        log.warn("{what} timeout ({s:g} s) for PT-TLS connection from {peer}; closing",
                 what=what, s=seconds, peer=self._peer_str())
        if self.tnccs is not None and not self.tnccs.finished:
            self.tnccs.abort(f"{what} timeout")
        self._closing = True
        self.transport.abortConnection()

    def _peer_str(self) -> str:
        return f"{self.peer_host}[{self.peer_addr.port}]" if hasattr(self.peer_addr, "host") \
            else self.peer_host


class PtTlsFactory(protocol.Factory):
    noisy = False

    def __init__(self, core, *, check_password, max_message_size: int, max_connections: int,
                 handshake_timeout: float, negotiation_timeout: float, idle_timeout: float,
                 sasl_enabled: bool = True, clock=None, session_ids: tuple[int, int] = (1, 1),
                 limit_name: str = "[pt-tls] max_connections"):
        from twisted.internet import reactor
        self.core = core
        self.check_password = check_password
        self.max_message_size = max_message_size
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.negotiation_timeout = negotiation_timeout
        self.idle_timeout = idle_timeout
        self.sasl_enabled = sasl_enabled
        self.clock = clock or reactor
        self.active = 0
        self.limit_name = limit_name
        # (first, step) like the core's Connection IDs: unique across processes
        self.session_ids = itertools.count(*session_ids)

    def buildProtocol(self, addr):
        return PtTlsServerProtocol(self, addr)


def listening_socket(interface: str, port: int, backlog: int = 50) -> socket.socket:
    """The PT-TLS listening socket, bound and listening (``::``: IPv6 and
    IPv4, see :mod:`nac.dualstack`).

    Made here rather than by ``listenTCP`` so that every process serving
    PT-TLS adopts the same socket (``adoptStreamPort``) and none of them
    shuts it down for the others when it stops listening.  The address
    family, SO_REUSEADDR and the backlog are what ``listenTCP`` uses.
    """
    return bind(interface, port, socket.SOCK_STREAM, backlog=backlog)


@implementer(IPostureTransport)
class PtTlsService(service.MultiService):
    """The PT-TLS listener of the main process, and its worker processes.

    The socket is opened in :meth:`privilegedStartService` (port 271 needs
    privileges twistd drops afterwards).  With ``workers`` (nac's
    :class:`~nac.interfaces.IWorkerProcesses`) and ``processes`` above 1,
    workers 1 … ``processes`` - 1 accept on the same socket (see
    :class:`PtTlsWorkerService`); this process accepts too.
    """

    transport_name = "pt-tls"

    def __init__(self, core, factory: PtTlsFactory, context, port: int, interface: str,
                 workers=None, reactor=None, *, supervise: bool = True, processes: int = 1):
        super().__init__()
        self.core = core
        self.factory = factory
        self.name = "pt-tls"
        self.tls_factory = TlsServerFactory(context, False, factory)
        self.port_number = port
        self.interface = interface
        self.socket: socket.socket | None = None
        self.listener = None
        self.workers = workers
        self.processes = processes if workers is not None else 1
        if workers is not None and supervise:
            workers.setServiceParent(self)
        self._reactor = reactor
        self._where = f"{interface}[{port}]"

    @property
    def reactor(self):
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        return self._reactor

    def _listen(self) -> None:
        # port 271 needs privileges: bound before twistd drops them
        if self.socket is None:
            self.interface = listen_address(self.interface, what="PT-TLS")
            self._where = f"{self.interface}[{self.port_number}]"
            self.socket = listening_socket(self.interface, self.port_number)

    def privilegedStartService(self):
        self._listen()
        super().privilegedStartService()

    def startService(self):
        self._listen()
        self.listener = self.reactor.adoptStreamPort(self.socket.fileno(), self.socket.family,
                                                     self.tls_factory)
        if self.processes < 2:
            log.info("PT-TLS listening on {where}", where=self._where)
        else:
            sock = self.socket
            self.workers.share(self.transport_name, self.processes, lambda worker: {"listen": sock.fileno()},
                               {"family": int(sock.family)}, label="PT-TLS")
            log.info("PT-TLS listening on {where} with {n} processes", where=self._where, n=self.processes)
        super().startService()

    @defer.inlineCallbacks
    def stopService(self):
        if self.listener is not None:
            listener, self.listener = self.listener, None
            yield listener.stopListening()
        # the workers hold the socket until they exit
        yield super().stopService()
        if self.socket is not None:
            self.socket.close()
            self.socket = None


def _no_password_database(authcid: str, password: str):
    log.warn("SASL PLAIN from '{authcid}' refused: no user database is configured", authcid=authcid)
    return defer.succeed(False)


def tls_context(cfg, pki=None, *, announce: bool = True):
    """The server's TLS settings from the ``[pt-tls]`` section (demo PKI when
    no certificate is configured; ``announce`` logs which one)."""
    from nac.certs import ensure_demo_pki

    sec = cfg.section("pt-tls")
    origin = cfg.source or "defaults"
    cert, key, ca = sec["cert"], sec["key"], sec["ca"]
    if cert is None:
        from nac.certs import PkiError
        try:
            pki = pki or ensure_demo_pki(Path(cfg.state_dir))
        except PkiError as exc:
            raise ConfigError(f"{cfg.origin('pt-tls', 'cert')}: [pt-tls] cert: {exc}") from None
        if pki.created and announce:
            log.info("generated demo CA {ca} and server certificate {cert} (key {key})",
                     ca=pki.ca_cert, cert=pki.server_cert, key=pki.server_key)
        elif announce:
            log.info("using demo CA {ca} and server certificate {cert}",
                     ca=pki.ca_cert, cert=pki.server_cert)
        cert, key = pki.server_cert, pki.server_key
        ca = ca or pki.ca_cert
    return server_context(cert=Path(cert), key=Path(key), ca=Path(ca) if ca else None,
                          client_cert=sec["client_cert"] if ca else "none",
                          min_tls_version=sec["min_tls_version"], ciphers=sec["ciphers"],
                          origin=origin)


def make_factory(cfg, core, store=None, *, check_password=None, process: int = 0,
                 processes: int = 1, id_step: int | None = None) -> PtTlsFactory:
    """The PT-TLS protocol factory of process ``process`` (0: the main one)
    of the ``processes`` serving PT-TLS: its share of ``max_connections``
    and its own series of session ids (every ``id_step``-th, the number of
    nac's processes; default ``processes``)."""
    from nac.processes import connection_share

    sec = cfg.section("pt-tls")
    if check_password is None:
        store = store if store is not None else getattr(core, "store", None)
        check_password = store.check_password if store is not None else _no_password_database
    return PtTlsFactory(core, check_password=check_password,
                        max_message_size=sec["max_message_size"],
                        max_connections=connection_share(sec["max_connections"], processes, process),
                        handshake_timeout=sec["handshake_timeout"],
                        negotiation_timeout=sec["negotiation_timeout"],
                        idle_timeout=sec["idle_timeout"],
                        sasl_enabled=bool(sec["sasl"]),
                        session_ids=(process + 1, id_step or processes),
                        limit_name="[pt-tls] max_connections" if processes == 1 else
                        f"this process's share of [pt-tls] max_connections {sec['max_connections']}, "
                        f"split among {processes} processes")


def make_service(cfg, core, store=None, *, check_password=None, pki=None,
                 overrides=None, workers=None) -> PtTlsService:
    """Build the PT-TLS service from the ``[pt-tls]`` section.

    With ``[pt-tls] workers`` above 1 worker processes load the same
    configuration file and command-line ``overrides`` ({(section, key): raw
    value}) and serve PT-TLS too: those of ``workers`` (the
    :class:`~nac.processes.WorkerSupervisor` of nac's service tree) when
    given, else of a supervisor of the PT-TLS service's own.  ``core`` must
    then hand out every n-th Connection ID, n being the number of nac's
    processes (``TnccsCore(connection_ids=(1, n))``).
    """
    from nac.processes import WorkerSupervisor, process_count

    processes = process_count(cfg.get("pt-tls", "workers"))
    supervise = workers is None
    if workers is None and processes > 1:
        workers = WorkerSupervisor(cfg.source, overrides or {}, processes)
    total = workers.processes if workers is not None else 1
    first, step = getattr(core, "connection_ids", (1, 1))
    if total > 1 and (first, step) != (1, total):
        raise ValueError(f"{total} processes need a TNCS core with connection_ids "
                         f"(1, {total}), not {(first, step)}: Connection IDs would repeat")
    context = tls_context(cfg, pki)
    factory = make_factory(cfg, core, store, check_password=check_password, processes=min(processes, total),
                           id_step=total)
    sec = cfg.section("pt-tls")
    return PtTlsService(core, factory, context, sec["port"], sec["listen"], workers=workers,
                        supervise=supervise, processes=min(processes, total))


class PtTlsWorkerService(service.Service):
    """PT-TLS in a worker process: it accepts on the listening socket the
    main process bound (``share.descriptors["listen"]``), as the main process
    and the other workers do; the kernel gives each new connection to
    whichever accepts first."""

    name = "pt-tls"

    def __init__(self, factory: PtTlsFactory, context, share, reactor=None):
        self.tls_factory = TlsServerFactory(context, False, factory)
        self.fd = int(share.descriptors["listen"])
        self.family = int(share.data["family"])
        self.port = None
        self.where = None
        self._reactor = reactor

    def startService(self):
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        self.port = reactor.adoptStreamPort(self.fd, self.family, self.tls_factory)
        os.close(self.fd)  # adoptStreamPort took a duplicate
        host = self.port.getHost()
        self.where = f"{host.host}[{host.port}]"
        super().startService()

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def make_worker_service(cfg, core, store, share) -> PtTlsWorkerService:
    """PT-TLS in worker process ``share.process`` (see :class:`PtTlsWorkerService`)."""
    factory = make_factory(cfg, core, store, process=share.process, processes=share.processes,
                           id_step=share.all_processes)
    return PtTlsWorkerService(factory, tls_context(cfg, announce=False), share)
