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

from nac import metrics
from nac.auth_throttle import LoginOutcome, Logins, LoginSource, address_source, logins_for
from nac.certs import certificate_identity
from nac.config import ConfigError
from nac.dualstack import bind, listen_address, unmapped
from nac.escape import printable
from nac.interfaces import IHandshakeRetry, IPostureTransport
from nac.log import Logger
from nac.tnccs.assessment import PeerInfo, TransportLimits
from transports.pt_tls import negotiation as ptn
from transports.pt_tls.admission import RefusalTally, Refused, UnauthenticatedBudget
from transports.pt_tls.tls import TlsServerFactory, server_context

log = Logger(namespace="nac.pt-tls")


@implementer(IHandshakeListener)
class PtTlsServerProtocol(protocol.Protocol):
    """One PT-TLS session (RFC 6876) over an established TLS connection.

    Until the client has authenticated, the connection counts against the
    factory's unauthenticated budget (:mod:`transports.pt_tls.admission`)
    and its deadlines shrink while that budget is nearly taken."""

    def __init__(self, factory: "PtTlsFactory", peer, source: str | None = None):
        self.factory = factory
        self.peer_addr = peer
        # an IPv4 client of a socket bound to :: is ::ffff:a.b.c.d there
        self.peer_host = unmapped(peer.host) if hasattr(peer, "host") else str(peer)
        self.source = source if source is not None else address_source(self.peer_host)
        self.session_id = next(factory.session_ids)
        self.started = factory.clock.seconds()
        self.pt: ptn.PtTlsServer | None = None
        self.tnccs = None
        self._timer = None
        self._deadline = 0.0
        self._deadline_what = ""
        self._closing = False
        self._batch_pending = False
        self._counted = False
        self._login = None
        self._refused_login: LoginOutcome | None = None

    @property
    def authenticated(self) -> bool:
        return self.pt is not None and self.pt.phase is ptn.PtTlsPhase.DATA

    # -- connection life ---------------------------------------------------------

    def connectionMade(self):
        self._arm_unauthenticated(self.factory.handshake_timeout, "TLS handshake")

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
        # the info lines of a session begin once it authenticates: a flood of
        # connections that never do must not write one each
        log.debug("TLS handshake with {peer} complete", peer=self._peer_str())
        self._arm_unauthenticated(self.factory.negotiation_timeout, "PT-TLS negotiation")

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
        self._closing = True
        self._cancel_timer()
        self._drop_login()
        self.factory.connection_closed(self)
        if self.tnccs is not None and not self.tnccs.finished:
            self.tnccs.abort("PT-TLS connection from {} closed".format(self._peer_str()))
        self.tnccs = None

    def evict(self) -> None:
        """Close this unauthenticated connection to make room for another address's."""
        self.factory.report(self.source, "evicted")
        self._closing = True
        self._cancel_timer()
        self._drop_login()
        self.transport.abortConnection()

    def hurry(self) -> None:
        """The unauthenticated budget is nearly taken: no more than
        ``busy_timeout`` from the start, unless the password is being checked."""
        if self._closing or self._login is not None or self._timer is None or self.authenticated:
            return
        deadline = self.started + self.factory.busy_timeout
        if deadline < self._deadline:
            self._arm_at(deadline, self._deadline_what)

    # -- events from the PT-TLS core -------------------------------------------------

    def _handle(self, events) -> None:
        for event in events:
            if isinstance(event, ptn.SaslPlainCredentials):
                self._check_password(event)
            elif isinstance(event, ptn.Authenticated):
                self._authenticated(event)
            elif isinstance(event, ptn.AuthenticationFailed):
                if self._refused_login is LoginOutcome.LOCKED_OUT:
                    self.factory.report(self.source, "locked")
                elif self._refused_login is LoginOutcome.BUSY:
                    self.factory.report(self.source, "busy")
                elif event.reason is not None:
                    log.warn("{reason} from {peer}", reason=event.reason, peer=self._peer_str(),
                             log_limit=(" ".join(event.reason.split()[:4]), self.peer_host))
                else:
                    log.warn("SASL PLAIN authentication of '{identity}' from {peer} failed",
                             identity=printable(event.identity or ""), peer=self._peer_str())
            elif isinstance(event, ptn.PbBatchReceived):
                self._batch(event.data)
            elif isinstance(event, ptn.ProtocolError):
                code = getattr(event.code, "name", event.code)
                if self.authenticated:
                    log.warn("PT-TLS error from {peer}: {reason} (sending {code})",
                             peer=self._peer_str(), reason=event.reason, code=code,
                             log_limit=("PT-TLS protocol error", self.peer_host))
                else:
                    self.factory.report(self.source, "protocol-error", f"{printable(event.reason)} (sending {code})")
            elif isinstance(event, ptn.ClientError):
                if self.authenticated:
                    log.warn("received PT-TLS Error {code} from {peer}",
                             code=event.code_name, peer=self._peer_str(),
                             log_limit=("PT-TLS Error from a client", self.peer_host))
                else:
                    self.factory.report(self.source, "client-error", event.code_name)
            elif isinstance(event, ptn.Closed):
                self._close(event.reason)
                return
        self._flush()

    def _check_password(self, creds: ptn.SaslPlainCredentials) -> None:
        # the check may wait its turn: the normal deadline, not the busy one
        self._arm(self.factory.negotiation_timeout, "PT-TLS negotiation")
        d = self._login = self.factory.logins.check_password(LoginSource(self.source), creds.authcid,
                                                             creds.password)

        def done(outcome):
            self._login = None
            if self.pt is None or self._closing:
                return
            if outcome in (LoginOutcome.LOCKED_OUT, LoginOutcome.BUSY):
                self._refused_login = outcome
            self._handle(self.pt.sasl_result(outcome is LoginOutcome.ACCEPTED))

        def failed(f):
            if f.check(defer.CancelledError):
                return None  # the connection went away
            # the type only: a foreign exception's text might quote the password
            log.error("checking the SASL password of '{identity}' failed: {error}",
                      identity=printable(creds.authcid), error=f.type.__name__)
            return LoginOutcome.REJECTED

        d.addErrback(failed).addCallback(done)

    def _drop_login(self) -> None:
        login, self._login = self._login, None
        if login is not None:
            login.cancel()

    def _authenticated(self, event: ptn.Authenticated) -> None:
        self.factory.connection_authenticated(self)
        self._arm(self.factory.idle_timeout, "idle")
        log.info("accepting PT-TLS stream from {peer}", peer=self._peer_str())
        if event.method == ptn.AUTH_CERTIFICATE:
            log.info("client authenticated by TLS certificate as '{identity}'",
                     identity=printable(event.identity or ""))
            log.info("skipping SASL, client already authenticated by TLS certificate")
        elif event.method == ptn.AUTH_SASL_PLAIN:
            log.info("SASL PLAIN authentication successful")
        peer = PeerInfo(transport="pt-tls", address=self.peer_host, port=self.peer_addr.port,
                        identity=event.identity, auth_method=event.method)
        limits = TransportLimits(max_batch_size=self.pt.max_batch_size,
                                 max_message_size=self.pt.max_batch_size - 8 - 12 - 12)
        self.tnccs = self.factory.core.open_connection(peer, limits)
        log.info("PT-TLS session {sid} from {peer} is Connection ID {cid} for '{identity}'",
                 sid=self.session_id, peer=self._peer_str(), cid=self.tnccs.connection_id,
                 identity=printable(event.identity or ""))

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
        elif outcome.decision is not None:
            self._schedule_reassessment(outcome.decision)

    # -- re-assessment on the open connection ----------------------------------------

    def _schedule_reassessment(self, decision) -> None:
        """After a decision: assess the client again in the interval of its
        group or ``[pt-tls] reassess_interval`` if it keeps the connection
        open.  Waiting for that is not idling: the retry takes the idle
        timer's place, and any batch of the client puts it back."""
        interval = reassessment_interval(decision, self.factory.reassess_interval)
        if interval <= 0 or not IHandshakeRetry.providedBy(self.tnccs):
            return
        # debug: most clients close at once (the core logs the retry itself)
        log.debug("assessing {peer} again in {s:g} s if it keeps PT-TLS session {sid} open", peer=self._peer_str(),
                  s=interval, sid=self.session_id)
        self._cancel_timer()
        self._deadline, self._deadline_what = self.factory.clock.seconds() + interval, "re-assessment"
        self._timer = self.factory.clock.callLater(interval, self._reassess, interval)

    def _reassess(self, interval: float) -> None:
        self._timer = None
        if self._closing or self.tnccs is None or self.tnccs.finished:
            return
        # the client answers the SRETRY as any batch, within idle_timeout
        self._arm(self.factory.idle_timeout, "idle")
        d = self.tnccs.retry_handshake(f"re-assessment {interval:g} s after the decision")
        d.addCallback(self._retried)
        d.addErrback(self._core_failed)

    def _retried(self, outcome) -> None:
        if outcome is None:
            log.debug("no re-assessment of PT-TLS session {sid}: the PB-TNC connection cannot retry now",
                      sid=self.session_id)
            return
        self._outcome(outcome)

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
        # a session that never authenticated is told of by the lines about its
        # failure (SASL, rate-limited refusals), not by one of its own
        emit = log.info if self.authenticated else log.debug
        emit("closing PT-TLS session with {peer}: {reason}", peer=self._peer_str(), reason=reason)
        self.transport.loseConnection()

    def _arm_unauthenticated(self, seconds: float, what: str) -> None:
        deadline = self.factory.clock.seconds() + seconds
        if self.factory.busy:
            deadline = min(deadline, self.started + self.factory.busy_timeout)
        self._arm_at(deadline, what)

    def _arm(self, seconds: float, what: str) -> None:
        self._arm_at(self.factory.clock.seconds() + seconds, what)

    def _arm_at(self, deadline: float, what: str) -> None:
        self._cancel_timer()
        now = self.factory.clock.seconds()
        self._deadline, self._deadline_what = deadline, what
        self._timer = self.factory.clock.callLater(max(0.0, deadline - now), self._timed_out, what,
                                                   deadline - now)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timed_out(self, what: str, seconds: float) -> None:
        self._timer = None
        if self.authenticated:
            log.warn("{what} timeout ({s:g} s) for PT-TLS connection from {peer}; closing",
                     what=what, s=seconds, peer=self._peer_str())
        else:
            self.factory.report(self.source, f"timeout:{what}")
        if self.tnccs is not None and not self.tnccs.finished:
            self.tnccs.abort(f"{what} timeout")
        self._closing = True
        self._drop_login()
        self.transport.abortConnection()

    def _peer_str(self) -> str:
        return f"{self.peer_host}[{self.peer_addr.port}]" if hasattr(self.peer_addr, "host") \
            else self.peer_host


class PtTlsFactory(protocol.Factory):
    """Makes the PT-TLS sessions of one process, within its limits: open
    connections (``max_connections``), unauthenticated ones
    (``max_unauthenticated``, ``max_unauthenticated_per_source``, with
    ``busy_timeout`` when three quarters of them are taken), and password
    checks (``logins``, :class:`nac.auth_throttle.Logins`).  Connections it
    refuses or closes for these limits are logged at most once per source,
    kind and ``report_interval``, with their number.  A client that keeps
    its connection open after a decision is assessed again after
    ``reassess_interval`` seconds (0: never) or its group's interval
    (:func:`reassessment_interval`)."""

    noisy = False

    def __init__(self, core, *, check_password=None, max_message_size: int, max_connections: int,
                 handshake_timeout: float, negotiation_timeout: float, idle_timeout: float,
                 sasl_enabled: bool = True, clock=None, session_ids: tuple[int, int] = (1, 1),
                 limit_name: str = "[pt-tls] max_connections", logins: Logins | None = None,
                 max_unauthenticated: int | None = None, max_unauthenticated_per_source: int | None = None,
                 busy_timeout: float = 3.0, report_interval: float = 10.0, reassess_interval: float = 0.0):
        from twisted.internet import reactor
        self.core = core
        self.reassess_interval = reassess_interval
        self.max_message_size = max_message_size
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.negotiation_timeout = negotiation_timeout
        self.idle_timeout = idle_timeout
        self.sasl_enabled = sasl_enabled
        self.clock = clock or reactor
        self.active = 0
        self.limit_name = limit_name
        if logins is None:
            logins = Logins(check_password or _no_password_database, clock=self.clock)
        self.logins = logins
        total = max_unauthenticated if max_unauthenticated is not None else max_connections
        self.unauthenticated = UnauthenticatedBudget(
            total, max_unauthenticated_per_source if max_unauthenticated_per_source is not None else total)
        self.busy_timeout = busy_timeout
        self.busy = False
        # the lines of at most 128 sources and kinds an interval; the others' are summed
        self.refusals = RefusalTally(report_interval, max_keys=128, overflow_key=("other addresses", "any"))
        self._report_call = None
        # (first, step) like the core's Connection IDs: unique across processes
        self.session_ids = itertools.count(*session_ids)

    def buildProtocol(self, addr):
        host = unmapped(addr.host) if hasattr(addr, "host") else str(addr)
        source = address_source(host)
        if self.active >= self.max_connections:
            self.report(source, "limit")
            return None
        proto = PtTlsServerProtocol(self, addr, source)
        verdict = self.unauthenticated.admit(source, proto)
        if isinstance(verdict, Refused):
            self.report(source, verdict.limit)
            return None
        self.active += 1
        proto._counted = True
        if verdict.evicted is not None:
            verdict.evicted.evict()
        self._update_busy()
        return proto

    # -- the connections' accounts -------------------------------------------------

    def connection_authenticated(self, proto: PtTlsServerProtocol) -> None:
        self.unauthenticated.release(proto)
        self._update_busy()

    def connection_closed(self, proto: PtTlsServerProtocol) -> None:
        self.unauthenticated.release(proto)
        if proto._counted:
            proto._counted = False
            self.active -= 1
        self._update_busy()

    def _update_busy(self) -> None:
        busy = self.unauthenticated.busy
        if busy and not self.busy:
            self.busy = True
            self.report(None, "busy-budget")
            for proto in self.unauthenticated.connections():
                proto.hurry()
        elif not busy:
            self.busy = False

    # -- rate-limited lines --------------------------------------------------------

    def report(self, source: str | None, kind: str, detail: str | None = None) -> None:
        """Count one refusal (or closing) of ``kind`` for ``source``; log it
        now (with ``detail``, if given) if it is the first for a while,
        else with the next count."""
        now = self.clock.seconds()
        if self.refusals.count((source, kind), now):
            log.warn("{what}{where}: {why}", what=self._what(kind, 1), where=_from(source),
                     why=detail or self._why(kind), source=source)
        elif self._report_call is None:
            due = self.refusals.next_due()
            if due is not None:
                self._report_call = self.clock.callLater(max(0.0, due - now), self._report_due)

    def _report_due(self) -> None:
        self._report_call = None
        now = self.clock.seconds()
        for (source, kind), count, span in self.refusals.due(now):
            log.warn("{what}{where} in the last {span:.0f} s: {why}", what=self._what(kind, count),
                     where=_from(source), span=span, why=self._why(kind), count=count, source=source)
        due = self.refusals.next_due()
        if due is not None:
            self._report_call = self.clock.callLater(max(0.0, due - now), self._report_due)

    def stop_reports(self) -> None:
        """The server stops: log the counts not yet told, and no more."""
        if self._report_call is not None and self._report_call.active():
            self._report_call.cancel()
        self._report_call = None
        now = self.clock.seconds()
        for (source, kind), count, span in self.refusals.due(now, flush=True):
            log.warn("{what}{where} in the last {span:.0f} s: {why}", what=self._what(kind, count),
                     where=_from(source), span=span, why=self._why(kind), count=count, source=source)

    @staticmethod
    def _what(kind: str, count: int) -> str:
        if kind.startswith("timeout:") or kind in ("evicted", "protocol-error", "client-error"):
            thing = "an unauthenticated PT-TLS connection" if count == 1 else \
                f"{count:,} unauthenticated PT-TLS connections"
            return f"closed {thing}"
        if kind in ("locked", "busy"):
            return "refused a SASL PLAIN login" if count == 1 else f"refused {count:,} SASL PLAIN logins"
        if kind == "busy-budget":
            return "unauthenticated PT-TLS connections are short of room" if count == 1 else \
                f"unauthenticated PT-TLS connections were short of room {count:,} times"
        if kind == "any":
            return f"refused or closed {count:,} PT-TLS connections"
        return "refused a PT-TLS connection" if count == 1 else f"refused {count:,} PT-TLS connections"

    def _why(self, kind: str) -> str:
        budget = self.unauthenticated
        if kind == "limit":
            return f"{self.max_connections} connections is the limit ({self.limit_name})"
        if kind == "per-source":
            return (f"{budget.per_source} unauthenticated connections from one address is the limit "
                    "([pt-tls] max_unauthenticated_per_source)")
        if kind == "total":
            return (f"{budget.total} unauthenticated connections is the limit and no address holds more "
                    "([pt-tls] max_unauthenticated)")
        if kind == "evicted":
            return (f"the {budget.total} unauthenticated connections were taken: the oldest of the "
                    "address holding the most made room for another address ([pt-tls] max_unauthenticated)")
        if kind == "busy-budget":
            return (f"{budget.busy_level} of {budget.total} are taken, each now has {self.busy_timeout:g} s "
                    "from its start to authenticate ([pt-tls] busy_timeout)")
        if kind == "locked":
            return "locked out after failed logins ([auth] lockout)"
        if kind == "busy":
            return ("no room for another password check ([auth] max_password_checks, "
                    "max_password_checks_per_source)")
        if kind.startswith("timeout:"):
            return f"{kind.partition(':')[2]} not completed in time"
        if kind == "protocol-error":
            return "PT-TLS errors before authentication (the PT-TLS Error sent each time)"
        if kind == "client-error":
            return "the client sent a PT-TLS Error before authentication"
        if kind == "any":
            return "the limits above (the lines of more than 128 addresses an interval are summed up here)"
        return kind


def reassessment_interval(decision, configured: float) -> float:
    """Seconds after ``decision`` at which its endpoint is assessed again on
    its open connection (0: never): its group's ``session_timeout`` when the
    group policy sets one (the schedule RADIUS gives the NAS), else
    ``configured`` (``[pt-tls] reassess_interval``)."""
    group = getattr(getattr(decision, "enforcement", None), "session_timeout", None)
    return float(group) if group is not None else configured


def _from(source: str | None) -> str:
    return f" from {source}" if source else ""


def metric_families(factory: PtTlsFactory):
    """``/metrics``: the PT-TLS connections this process has open."""
    from prometheus_client.core import GaugeMetricFamily

    yield GaugeMetricFamily("nac_pt_tls_connections_open", "PT-TLS connections open (TLS handshake included)",
                            value=factory.active)


def listening_socket(interface: str, port: int, backlog: int = 1024) -> socket.socket:
    """The PT-TLS listening socket, bound and listening (``::``: IPv6 and
    IPv4, see :mod:`nac.dualstack`).

    Made here rather than by ``listenTCP`` so that every process serving
    PT-TLS adopts the same socket (``adoptStreamPort``) and none of them
    shuts it down for the others when it stops listening.  The address
    family and SO_REUSEADDR are what ``listenTCP`` uses; the backlog is
    larger than its 50 (the kernel caps it at net.core.somaxconn): under a
    flood of connections the server refuses at once, a full accept queue
    would drop the legitimate clients' connection requests for a second.
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
        metrics.add_source(self.factory, lambda: metric_families(self.factory))
        super().startService()

    @defer.inlineCallbacks
    def stopService(self):
        metrics.remove_source(self.factory)
        self.factory.stop_reports()
        if self.listener is not None:
            listener, self.listener = self.listener, None
            yield listener.stopListening()
        # the workers hold the socket until they exit
        yield super().stopService()
        if self.socket is not None:
            self.socket.close()
            self.socket = None


def _no_password_database(authcid: str, password: str):
    log.warn("SASL PLAIN from '{authcid}' refused: no user database is configured", authcid=printable(authcid))
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
    and ``max_unauthenticated``, and its own series of session ids (every
    ``id_step``-th, the number of nac's processes; default ``processes``).
    Its password checks are the process's :func:`nac.auth_throttle.logins_for`
    the store (or ``check_password``)."""
    from nac.processes import connection_share

    sec = cfg.section("pt-tls")
    if check_password is None:
        store = store if store is not None else getattr(core, "store", None)
        if store is None:
            check_password = _no_password_database
    logins = logins_for(cfg, store, check_password)
    return PtTlsFactory(core, logins=logins,
                        max_message_size=sec["max_message_size"],
                        max_connections=connection_share(sec["max_connections"], processes, process),
                        max_unauthenticated=connection_share(sec["max_unauthenticated"], processes, process),
                        max_unauthenticated_per_source=sec["max_unauthenticated_per_source"],
                        busy_timeout=sec["busy_timeout"],
                        handshake_timeout=sec["handshake_timeout"],
                        negotiation_timeout=sec["negotiation_timeout"],
                        idle_timeout=sec["idle_timeout"],
                        reassess_interval=sec["reassess_interval"],
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
        self.factory = factory
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
        metrics.add_source(self.factory, lambda: metric_families(self.factory))
        super().startService()

    def stopService(self):
        super().stopService()
        metrics.remove_source(self.factory)
        self.tls_factory.wrappedFactory.stop_reports()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def make_worker_service(cfg, core, store, share) -> PtTlsWorkerService:
    """PT-TLS in worker process ``share.process`` (see :class:`PtTlsWorkerService`)."""
    factory = make_factory(cfg, core, store, process=share.process, processes=share.processes,
                           id_step=share.all_processes)
    return PtTlsWorkerService(factory, tls_context(cfg, announce=False), share)
