"""The RADIUS listener: UDP datagrams in and out of the sans-IO RADIUS server.

This module only moves datagrams and runs the expiry timer: RADIUS rules live
in :mod:`transports.radius.server`, EAP in :mod:`nac.eap`.  With ``[radius]
workers`` above 1, worker processes (:mod:`nac.processes`) serve
RADIUS too: the main process reads the UDP socket and hands each worker the
requests of its conversations (:mod:`transports.radius.relay`); a worker
answers through its copy of the socket.  CoA / Disconnect after a decision
change (:mod:`transports.radius.radsec_coa`) leave from the main process
only, whichever process decided (:func:`nac.processes.decision_relay`).
"""

from __future__ import annotations

import socket

from twisted.application import service
from twisted.internet import defer, protocol, task
from zope.interface import implementer

from nac import config as nac_config
from nac import metrics
from nac.dualstack import BoundListener, unmapped
from nac.interfaces import IPostureTransport, IRunningSessionControl
from nac.log import Logger
from transports.radius.enforcement import RadiusEnforcement
from transports.radius.packet import MAX_PACKET_SIZE
from transports.radius.relay import RadiusRelay, mesh
from transports.radius.clients import client_table
from transports.radius.accounting import AccountingServer
from transports.radius.server import Forward, RadiusServer

__all__ = ["AccountingProtocol", "AccountingService", "RadiusProtocol", "RadiusService", "make_service"]

log = Logger(namespace="nac.radius")

# how often idle conversations and stale cached replies are swept
EXPIRY_INTERVAL = 1.0

#: ``/metrics``: the RADIUS server's counters (RFC 4669 names), as nac_radius_<counter>_total
COUNTER_HELP = {
    "access_requests": "Access-Requests received from known clients (retransmissions included)",
    "dup_access_requests": "Access-Requests that repeated one being processed or answered",
    "access_accepts": "Access-Accepts sent",
    "access_rejects": "Access-Rejects sent",
    "access_challenges": "Access-Challenges sent",
    "status_servers": "Status-Server requests answered",
    "malformed_packets": "Packets from known clients that could not be parsed, or bad attributes",
    "bad_authenticators": "Packets from known clients with a wrong Message-Authenticator",
    "packets_dropped": "Packets from known clients discarded without a reply (bad authenticators, unknown "
                       "State, no Message-Authenticator, ...)",
    "unknown_types": "Packets of a code this server does not answer",
    "unknown_clients": "Packets from addresses that are no configured client",
    "forwarded": "Access-Requests handed to the process that serves their conversation",
    "conversations_evicted": "Unfinished EAP conversations ended to make room for newer ones",
}


def metric_families(server: RadiusServer):
    """The server's counters and conversations, as prometheus-client families."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for name, text in COUNTER_HELP.items():
        yield CounterMetricFamily(f"nac_radius_{name}", text, value=getattr(server.counters, name))
    yield GaugeMetricFamily("nac_radius_conversations", "EAP conversations in progress", value=server.conversations)


#: ``/metrics``: why the accounting server discarded a datagram (label ``reason``) and its counter
ACCOUNTING_DROPS = {
    "unknown_client": "unknown_clients", "malformed": "malformed_requests",
    "bad_authenticator": "bad_authenticators", "backlog": "backlogged", "rate_limited": "rate_limited",
    "not_recorded": "no_records", "unknown_type": "unknown_types",
}
ACCOUNTING_STATUS_TYPES = ("start", "interim_update", "stop", "accounting_on", "accounting_off", "other")


def accounting_metric_families(server: AccountingServer):
    """The accounting server's counters (RFC 2866, names after RFC 4671) and
    the requests being recorded, as prometheus-client families."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    counters = server.counters
    requests = CounterMetricFamily(
        "nac_radius_accounting_requests", "Accounting-Requests received from known clients (retransmissions "
        "included), by the Acct-Status-Type they say (other: none nac records)", labels=["type"])
    for status in ACCOUNTING_STATUS_TYPES:
        requests.add_metric([status], counters.by_status_type.get(status, 0))
    yield requests
    yield CounterMetricFamily("nac_radius_accounting_responses", "Accounting-Responses sent (Status-Server "
                              "answers included)", value=counters.responses)
    yield CounterMetricFamily("nac_radius_accounting_duplicate_requests", "Accounting-Requests that repeated one "
                              "being recorded or answered (RFC 5080 §2.2.2)", value=counters.dup_requests)
    yield CounterMetricFamily("nac_radius_accounting_status_servers", "Status-Server requests answered on the "
                              "accounting port (RFC 5997)", value=counters.status_servers)
    dropped = CounterMetricFamily(
        "nac_radius_accounting_dropped", "Accounting datagrams discarded without an answer, by reason "
        "(backlog, rate_limited, not_recorded: the NAS sends them again)", labels=["reason"])
    for reason, name in ACCOUNTING_DROPS.items():
        dropped.add_metric([reason], getattr(counters, name))
    yield dropped
    yield GaugeMetricFamily("nac_radius_accounting_pending", "Accounting-Requests being recorded (not yet "
                            "committed, so not yet answered)", value=server.pending)


def coa_metric_families(clients):
    """The CoA / Disconnect requests (RFC 5176) of the ``clients``
    (:class:`~transports.radius.coa.CoaClient`) summed, as prometheus-client
    families."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    kinds = ("coa", "disconnect")
    for name, attr, text in (
            ("requests", "requests", "CoA-Requests and Disconnect-Requests sent (first tries), by kind"),
            ("retransmissions", "retransmissions", "CoA / Disconnect requests sent again after a timeout"),
            ("acks", "acks", "CoA-ACKs and Disconnect-ACKs received"),
            ("timeouts", "timeouts", "CoA / Disconnect requests that no answer came for after every attempt")):
        family = CounterMetricFamily(f"nac_radius_coa_{name}", text, labels=["kind"])
        for kind in kinds:
            family.add_metric([kind], sum(getattr(c.counters, attr).get(kind, 0) for c in clients))
        yield family
    naks = CounterMetricFamily("nac_radius_coa_naks", "CoA-NAKs and Disconnect-NAKs received, by kind and "
                               "Error-Cause (RFC 5176 §3.5; none: a NAK without one)", labels=["kind", "error_cause"])
    summed: dict[tuple[str, str], int] = {}
    for client in clients:
        for key, value in client.counters.naks.items():
            summed[key] = summed.get(key, 0) + value
    for (kind, cause), value in sorted(summed.items()):
        naks.add_metric([kind, cause], value)
    yield naks
    yield GaugeMetricFamily("nac_radius_coa_in_flight", "CoA / Disconnect requests awaiting an answer",
                            value=sum(c.in_flight for c in clients))


class RadiusProtocol(protocol.DatagramProtocol):
    """Hands every datagram to the server and sends back what it answers."""

    noisy = False
    # RFC 2865 §3: longer datagrams are cut to their Length field anyway
    maxPacketSize = MAX_PACKET_SIZE + 1024

    def __init__(self, server: RadiusServer, clock):
        self.server = server
        self.clock = clock
        #: the other processes serving this port (None: this one alone)
        self.relay: RadiusRelay | None = None
        #: the UDP socket replies go out on (a worker's, which it does not read)
        self.sock: socket.socket | None = None
        self._unreachable: set[int] = set()

    def datagramReceived(self, data: bytes, addr, forwarded: bool = False):
        try:
            reply = self.server.respond(data, addr, self.clock.seconds(), forwarded=forwarded)
            if reply is not None and reply.__class__ is Forward:
                reply = self._forward(reply, data, addr)
        except Exception:
            # a bug of ours must cost this datagram only, never the listener
            host = unmapped(addr[0])
            log.failure("internal error on a RADIUS packet from {host}[{port}]", host=host, port=addr[1],
                        log_limit=("internal error on a RADIUS packet", host))
            return
        if reply is None:
            return
        if isinstance(reply, bytes):
            self._send(reply, addr)
        else:
            reply.addCallbacks(self._send, self._failed, callbackArgs=(addr,), errbackArgs=(addr,))

    def forwarded(self, data: bytes, addr) -> None:
        """A request another process received for a conversation of this one."""
        self.datagramReceived(data, addr, forwarded=True)

    def _forward(self, forward: Forward, data: bytes, addr):
        owner = forward.process
        why = "no relay" if self.relay is None else self.relay.send(owner, data, addr)
        if why is None:
            if owner in self._unreachable:
                self._unreachable.discard(owner)
                log.info("RADIUS process {process} takes requests again", process=owner)
            return None
        if owner not in self._unreachable:
            # once until it is back: a dead process must not flood the log
            self._unreachable.add(owner)
            log.warn("cannot hand RADIUS requests to process {process} ({why}): requests opening a "
                     "conversation are served here, its own conversations' requests are discarded",
                     process=owner, why=why)
        return self.server.not_forwarded(forward, data, addr, self.clock.seconds())

    def _send(self, reply: bytes | None, addr) -> None:
        sock = self.sock
        if reply is None or (self.transport is None and sock is None):
            return
        # ``addr`` is where the request came from, as the socket gave it:
        # the checks Twisted's ``Port.write`` makes of an address (three
        # parses per reply) are spent, the socket takes the reply directly
        if sock is None:
            sock = getattr(self.transport, "socket", None)
        try:
            if sock is None:
                self.transport.write(reply, addr)
            else:
                sock.sendto(reply, addr)
        except ConnectionRefusedError:
            pass  # an ICMP error of an earlier datagram (Twisted's Port.write ignores it too)
        except Exception:
            log.failure("cannot send the RADIUS reply to {host}[{port}]", host=unmapped(addr[0]), port=addr[1])

    def _failed(self, failure, addr) -> None:
        host = unmapped(addr[0])
        log.failure("internal error answering a RADIUS packet from {host}[{port}]", failure, host=host,
                    port=addr[1], log_limit=("internal error answering a RADIUS packet", host))


class AccountingProtocol(protocol.DatagramProtocol):
    """Hands every accounting datagram to the accounting server and sends
    back the Accounting-Response once it has one."""

    noisy = False
    maxPacketSize = MAX_PACKET_SIZE + 1024

    def __init__(self, server: AccountingServer, clock):
        self.server = server
        self.clock = clock

    def datagramReceived(self, data: bytes, addr):
        try:
            reply = self.server.respond(data, addr, self.clock.seconds())
        except Exception:
            host = unmapped(addr[0])
            log.failure("internal error on a RADIUS accounting packet from {host}[{port}]", host=host,
                        port=addr[1], log_limit=("internal error on a RADIUS accounting packet", host))
            return
        if reply is None:
            return
        if isinstance(reply, bytes):
            self._send(reply, addr)
        else:
            reply.addCallback(self._send, addr).addErrback(
                lambda failure: log.failure("internal error answering a RADIUS accounting packet", failure))

    def _send(self, reply: bytes | None, addr) -> None:
        if reply is None or self.transport is None:
            return
        try:
            self.transport.write(reply, addr)
        except ConnectionRefusedError:
            pass
        except Exception:
            log.failure("cannot send the RADIUS Accounting-Response to {host}[{port}]", host=unmapped(addr[0]),
                        port=addr[1])


class AccountingService(service.Service):
    """RADIUS accounting (RFC 2866) on one UDP address and port, in the main
    process (the records go to the database there; there is no conversation
    to share out)."""

    name = "radius-accounting"

    def __init__(self, server: AccountingServer, port: int, interface: str, clock=None):
        from twisted.internet import reactor
        self.server = server
        self.clock = clock or reactor
        self.protocol = AccountingProtocol(server, self.clock)
        self.listener = BoundListener(interface, port, socket.SOCK_DGRAM, what="RADIUS accounting")
        self._sweeper = None

    def bind(self) -> None:
        self.listener.bind()

    def privilegedStartService(self):
        self.bind()
        super().privilegedStartService()

    def startService(self):
        from twisted.internet import reactor
        self.bind()
        super().startService()
        self.listener.adopt(lambda fd, family: reactor.adoptDatagramPort(fd, family, self.protocol,
                                                                         AccountingProtocol.maxPacketSize))
        self._sweeper = task.LoopingCall(lambda: self.server.expire(self.clock.seconds()))
        self._sweeper.clock = self.clock
        self._sweeper.start(EXPIRY_INTERVAL, now=False)
        metrics.add_source(self, lambda: accounting_metric_families(self.server))
        log.info("RADIUS accounting server listening on {where}", where=self.where)

    @property
    def where(self) -> str:
        return self.listener.where

    def stopService(self):
        super().stopService()
        metrics.remove_source(self)
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self.server.close()
        return self.listener.release()


@implementer(IPostureTransport, IRunningSessionControl)
class RadiusService(service.Service):
    """A RADIUS authentication server on one UDP address and port."""

    transport_name = "radius"
    name = "radius"

    def __init__(self, core, server: RadiusServer, port: int, interface: str, clock=None, *,
                 workers=None, adopt: tuple[int, int] | None = None, relay: dict[int, int] | None = None):
        """``workers``: the supervisor of nac's worker processes (main
        process, several processes serving RADIUS); ``adopt`` (file
        descriptor, address family) and ``relay`` ({process: file
        descriptor}): a worker's UDP socket and its ends of the relay
        :func:`~transports.radius.relay.mesh`."""
        from twisted.internet import reactor
        self.core = core
        self.server = server
        self.clock = clock or reactor
        self.protocol = RadiusProtocol(server, self.clock)
        self.workers = workers
        self.adopt = adopt
        self.relay_fds = relay
        self._mesh: dict | None = None
        # a worker adopts the main process's socket instead (``adopt``)
        self.listener = BoundListener(interface, port, socket.SOCK_DGRAM, what="RADIUS")
        self._sweeper = None
        #: the accounting listener (main process, ``[radius] acct_port`` not 0)
        self.accounting: AccountingService | None = None
        #: CoA / Disconnect after decision changes (:mod:`transports.radius.dynamic`):
        #: the main process's; the workers hand it their decisions
        self.dispatcher = None
        #: RadSec (main process, ``[radius] radsec_port`` not 0)
        self.radsec = None
        #: an operator's CoA / Disconnect (main process, with a store:
        #: :class:`~transports.radius.session_control.RadiusSessionControl`)
        self.sessions = None

    @property
    def _listening(self):
        return self.listener.listening

    def _bind(self) -> None:
        # bound before twistd drops privileges (a port below 1024 needs them)
        if self.adopt is None:
            self.listener.bind()

    def privilegedStartService(self):
        self._bind()
        if self.accounting is not None:
            self.accounting.bind()
        if self.radsec is not None:
            self.radsec.bind()
        super().privilegedStartService()

    def startService(self):
        from twisted.internet import reactor
        self._bind()
        super().startService()
        if self.accounting is not None:
            self.accounting.startService()
        if self.radsec is not None:
            self.radsec.startService()
        for sender in self._senders():
            sender.start(reactor)
        if self.dispatcher is not None:
            self.dispatcher.store.decision_listeners.append(self.dispatcher.decided)
        if self.adopt is not None:
            # a worker: the main process reads the socket and hands this one
            # its requests; its replies leave from the socket's address
            fd, _family = self.adopt
            self.protocol.sock = socket.socket(fileno=fd)
            self.protocol.sock.setblocking(False)
        else:
            self.listener.adopt(lambda fd, family: reactor.adoptDatagramPort(fd, family, self.protocol,
                                                                             RadiusProtocol.maxPacketSize))
        if self.server.processes > 1:
            if self.relay_fds is not None:
                ends = {int(peer): socket.socket(fileno=fd) for peer, fd in self.relay_fds.items()}
                for sock in ends.values():
                    sock.setblocking(False)
            else:
                # the main process: every end, for the workers (and their successors)
                self._mesh = mesh(self.server.processes)
                ends = {j: sock for (i, j), sock in self._mesh.items() if i == self.server.process}
            relay = RadiusRelay(self.server.process, ends, self.protocol.forwarded)
            self.protocol.relay = relay
            relay.start(reactor)
        if self.workers is not None and self.server.processes > 1:
            listening, ends_of = self._listening.socket, self._mesh

            def descriptors(worker: int) -> dict[str, int]:
                # the UDP socket (the worker answers from it) and its ends of the relay mesh
                fds = {"udp": listening.fileno()}
                fds.update((f"relay-{peer}", sock.fileno()) for (i, peer), sock in ends_of.items() if i == worker)
                return fds

            self.workers.share(self.transport_name, self.server.processes, descriptors,
                               {"family": int(listening.family)}, label="RADIUS")
        metrics.add_source(self, lambda: metric_families(self.server))
        metrics.add_source((self, "coa"), lambda: coa_metric_families(self.coa_clients()))
        self._sweeper = task.LoopingCall(lambda: self.server.expire(self.clock.seconds()))
        self._sweeper.clock = self.clock
        self._sweeper.start(EXPIRY_INTERVAL, now=False)
        if self.server.processes > 1 and self.adopt is None:
            log.info("RADIUS server listening on {where} with {n} processes", where=self.where,
                     n=self.server.processes)
        elif self.adopt is None:
            log.info("RADIUS server listening on {where}", where=self.where)

    def _senders(self) -> list:
        """The CoA senders of this process: the decision changes', the operator's (maybe the same one)."""
        senders = [] if self.dispatcher is None else [self.dispatcher.sender]
        if self.sessions is not None and self.sessions.sender not in senders:
            senders.append(self.sessions.sender)
        return senders

    def coa_clients(self) -> list:
        """The CoA clients (:class:`~transports.radius.coa.CoaClient`) of this process's senders."""
        return [sender.client for sender in self._senders()]

    def change_session(self, session_id: int, access: str | None):
        """:meth:`nac.interfaces.IRunningSessionControl.change_session`."""
        if self.sessions is None:
            return defer.fail(LookupError("this RADIUS service sends no CoA (no policy database)"))
        return self.sessions.change_session(session_id, access)

    @property
    def where(self) -> str:
        """``address[port]`` as listening (the real port when 0 was asked for)."""
        if self.protocol.sock is not None and self._listening is None:
            return f"{self.listener.interface}[{self.protocol.sock.getsockname()[1]}]"
        return self.listener.where

    def stopService(self):
        super().stopService()
        metrics.remove_source(self)
        metrics.remove_source((self, "coa"))
        if self.accounting is not None and self.accounting.running:
            self.accounting.stopService()
        radsec_stopped = None
        if self.radsec is not None and self.radsec.running:
            radsec_stopped = self.radsec.stopService()
        if self.dispatcher is not None:
            listeners = self.dispatcher.store.decision_listeners
            if self.dispatcher.decided in listeners:
                listeners.remove(self.dispatcher.decided)
        for sender in self._senders():
            sender.stop()
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self.server.close("server shutting down")
        relay, self.protocol.relay = self.protocol.relay, None
        if relay is not None:
            from twisted.internet import reactor
            relay.stop(reactor)
            if self._mesh is None:
                for sock in relay.ends.values():
                    sock.close()
        if self._mesh is not None:
            # the workers have stopped (their supervisor stops first)
            for sock in self._mesh.values():
                sock.close()
            self._mesh = None
        sock, self.protocol.sock = self.protocol.sock, None
        if sock is not None:
            sock.close()
        released = self.listener.release()
        if radsec_stopped is None:
            return released
        return defer.gatherResults([d for d in (released, radsec_stopped) if d is not None])


def make_service(cfg, core, store=None, *, eap_factory=None, clock=None, workers=None,
                 process: int = 0, processes: int | None = None, adopt: tuple[int, int] | None = None,
                 relay: dict[int, int] | None = None) -> RadiusService:
    """Build the RADIUS service from the ``[radius]`` section and the NASes
    of the ``[radius-client:NAME]`` sections (every process reads the same
    configuration, so all have the same clients).

    ``eap_factory`` (``eap_factory(peer) -> IEapSession``) defaults to the EAP
    server of :mod:`nac.eap.server` configured from the same section.

    In the main process, ``workers`` (nac's
    :class:`~nac.interfaces.IWorkerProcesses`) runs the other processes of
    ``[radius] workers``; without it RADIUS is served by this process alone.
    A worker process passes its number ``process`` of ``processes``, its
    socket (``adopt``) and its ``relay`` ends (:func:`make_worker_service`).
    """
    from nac.processes import connection_share, process_count
    sec = cfg.section("radius")
    clients = client_table(cfg)
    if not len(clients) and not (sec["radsec_port"] and adopt is None):
        raise nac_config.ConfigError(f"{cfg.origin('radius', 'secret')}: [radius] secret: required for the "
                                     "RADIUS transport, or a [radius-client:NAME] section for each NAS")
    if eap_factory is None:
        try:
            from nac.eap.server import session_factory
        except ImportError as exc:
            raise nac_config.ConfigError(f"transport 'radius' needs the EAP server (nac.eap.server): {exc}")
        eap_factory = session_factory(cfg, core, store, section="radius")
    if processes is None:
        processes = 1
        if workers is not None:
            processes = min(process_count(sec["workers"]), workers.processes)
    first, step = getattr(core, "connection_ids", (1, 1)) if workers is not None else (1, processes)
    if processes > 1 and step < processes:
        raise ValueError(f"{processes} RADIUS processes need a TNCS core handing out every n-th "
                         f"Connection ID (n >= {processes}), not {(first, step)}")
    server = RadiusServer(clients, eap_factory, RadiusEnforcement.from_config(sec),
                          conversation_timeout=sec["conversation_timeout"],
                          max_conversations=connection_share(sec["max_conversations"], processes, process),
                          max_conversations_per_nas=connection_share(sec["max_conversations_per_nas"], processes,
                                                                     process) if sec["max_conversations_per_nas"]
                          else None,
                          max_conversations_per_station=sec["max_conversations_per_station"],
                          process=process, processes=processes)
    radius = RadiusService(core, server, sec["port"], sec["listen"], clock=clock,
                           workers=workers if processes > 1 else None, adopt=adopt, relay=relay)
    if adopt is None and sec["acct_port"] and store is not None:
        radius.accounting = make_accounting_service(cfg, store, clients, clock=clock)
    if adopt is None and sec["radsec_port"]:
        from transports.radius.radsec_service import make_radsec_service
        accounting = radius.accounting.server if radius.accounting is not None else None
        radius.radsec = make_radsec_service(cfg, server, accounting=accounting, clock=clock)
    if adopt is None:
        # a worker's decisions come here (nac.processes.decision_relay): this
        # process alone holds the NASes' RadSec connections
        from transports.radius.radsec_coa import make_dispatcher
        radius.dispatcher = make_dispatcher(cfg, store, clients, radius.radsec.factory if radius.radsec else None)
    if adopt is None and store is not None:
        from transports.radius.session_control import make_session_control
        radius.sessions = make_session_control(cfg, store, clients, radius.dispatcher)
    return radius


def make_accounting_service(cfg, store, clients=None, *, clock=None) -> AccountingService:
    """The accounting listener of ``[radius] acct_port``: each request's
    record is committed through the store's write queue before the
    Accounting-Response leaves."""
    from nac.db.accounting import record_accounting
    sec = cfg.section("radius")
    server = AccountingServer(clients if clients is not None else client_table(cfg),
                              lambda record: store.writes.submit(record_accounting, record),
                              max_pending=sec["acct_max_pending"], rate_per_nas=sec["acct_rate_per_nas"],
                              rate=sec["acct_rate"])
    return AccountingService(server, sec["acct_port"], sec["listen"], clock=clock)


def make_worker_service(cfg, core, store, share) -> RadiusService:
    """RADIUS in worker process ``share.process``: it answers the requests
    of its conversations, which the main process hands it over its relay
    ends, from the UDP socket the main process bound."""
    relay = {int(label.partition("-")[2]): int(fd) for label, fd in share.descriptors.items()
             if label.startswith("relay-")}
    return make_service(cfg, core, store, process=share.process, processes=share.processes,
                        adopt=(int(share.descriptors["udp"]), int(share.data["family"])), relay=relay)
