"""CoA and Disconnect (RFC 5176) on a NAS's open RadSec connection (RFC 6614).

A NAS connected over RadSec often has no address nac could send UDP to (it
sits behind NAT, or has no ``address`` in its ``[radius-client:NAME]``), so
its CoA-Request / Disconnect-Request go down the TLS connection the NAS
opened: RFC 6614 §2.5 lets one RadSec connection carry every RADIUS packet
type, Dynamic Authorization included, and draft-ietf-radext-reverse-coa
spells out the server sending requests "in reverse" on it.  On the
connection the secret is "radsec" (RFC 6614 §2.3); the requests are made by
the same sans-IO :class:`~transports.radius.coa.CoaClient` as over UDP
(Message-Authenticator, Event-Timestamp, Request Authenticator of RFC 5176
§2.3) and the answers read from the same connection are matched by
Identifier and Response Authenticator.

No retransmission: TCP delivers a request or the connection fails (RFC 6613
§2.6: RADIUS/TCP clients do not retransmit on a live connection; RFC 5080
§2.2.1's back-off is for UDP).  A request waits once, as long as the UDP
schedule of ``[radius] coa_timeout`` / ``coa_attempts`` lasts in all, then
it ends "no answer"; a connection that closes ends its requests at once.

Which way a decision change goes (:class:`RadsecCoaDispatcher`), by the NAS
the accounting session names (its ``[radius-client:NAME]``): its newest open
RadSec connection; else UDP when the section also has an ``address`` (the
session's NAS address inside it, or a single host) and so a ``coa_port``;
else the outcome "not reachable" is recorded with the session.

RadSec connections live in nac's main process (:mod:`.radsec_service`), and
so does the one dispatcher, whichever process decided: a worker process
(RADIUS or PT-TLS) hands each decision it commits to the main process
(:func:`nac.processes.decision_relay`), whose dispatcher sends the request
on the NAS's connection (or UDP) and records the outcome as for its own
decisions; a worker builds no dispatcher.  ``nac-admin
coa`` / ``disconnect`` run in their own process and cannot use the server's
TLS connections either: :func:`~transports.radius.dynamic.refuse_radsec_only` makes them refuse such a
NAS in one line, recording nothing.
"""

from __future__ import annotations

import dataclasses

from twisted.internet import defer

from nac.db.accounting import AccountingInfo
from nac.log import Logger
from transports.radius.clients import RadiusClient, RadiusClientTable, radsec_clients
from transports.radius.coa import CoaBusy, CoaClient, CoaOutcome, CoaTarget
from transports.radius.dynamic import CoaDispatcher, CoaSender, make_dispatcher as make_udp_dispatcher, target_for
from transports.radius.enforcement import RadiusEnforcement
from transports.radius.radsec import RADSEC_SECRET

__all__ = ["RadsecCoaDispatcher", "RadsecCoaSender", "make_dispatcher",
           "reliable_timeout"]

log = Logger(namespace="nac.radius.coa")

def reliable_timeout(timeout: float, attempts: int, max_timeout: float = 16.0) -> float:
    """How long a request waits on a reliable transport: as long as the UDP
    tries with doubling timeouts (RFC 5080 §2.2.1) would take in all."""
    total, step = 0.0, timeout
    for _ in range(max(1, attempts)):
        total += step
        step = min(max_timeout, step * 2)
    return total


class RadsecCoaSender(CoaSender):
    """The requests in flight on one RadSec connection: a
    :class:`CoaSender` whose one try goes out on the connection (the
    connection's ``coa``; it hands back the answers it reads)."""

    def __init__(self, connection, timeout: float, clock):
        super().__init__(CoaClient(timeout=timeout, max_timeout=timeout, attempts=1), clock)
        self.connection = connection
        self.timeout = timeout

    def target(self, target: CoaTarget) -> CoaTarget:
        """``target`` on this connection: the NAS as the connection sees it,
        the RadSec secret."""
        return dataclasses.replace(target, host=self.connection.host, port=self.connection.port,
                                   secret=RADSEC_SECRET)

    def _port_for(self, host: str):
        return self

    def write(self, data: bytes, addr) -> None:
        self.connection.send_request(data)

    def answer(self, data: bytes) -> None:
        """A CoA / Disconnect ACK or NAK read from the connection."""
        self.datagramReceived(data, (self.connection.host, self.connection.port))

    def _done(self, outcome: CoaOutcome) -> None:
        if not outcome.acked and not outcome.nak and outcome.note is None:
            outcome = dataclasses.replace(outcome, note=f"no answer within {self.timeout:g} s on the RadSec "
                                                        "connection")
        super()._done(outcome)

    def lost(self) -> None:
        """The connection closed: its requests end without an answer."""
        for outcome in self.client.abandon("RadSec connection closed before an answer"):
            self._done(outcome)


class RadsecCoaDispatcher(CoaDispatcher):
    """:class:`CoaDispatcher` that reaches RadSec NASes on their open
    connection (see the module for the order of the ways)."""

    def __init__(self, store, clients: RadiusClientTable, enforcement: RadiusEnforcement, sender: CoaSender,
                 radsec_nases: dict[str, RadiusClient], radsec=None, *, timeout: float = 46.0):
        super().__init__(store, clients, enforcement, sender)
        #: section name -> the RadSec NAS
        self.radsec_nases = radsec_nases
        #: the RadSec listener's factory (its ``open`` connections); None without RadSec
        self.radsec = radsec
        #: how long one request waits for its answer on a connection
        self.timeout = timeout

    def client_for(self, info: AccountingInfo):
        nas = self.radsec_nases.get(info.nas)
        return nas if nas is not None else super().client_for(info)

    def connection_of(self, name: str):
        """The newest open connection of NAS ``name``, or None."""
        if self.radsec is None:
            return None
        open_ = [c for c in self.radsec.open if c.identified and c.client.name == name]
        return max(open_, key=lambda c: c.identified_at, default=None)

    def udp_target(self, info: AccountingInfo) -> CoaTarget | None:
        """Where UDP reaches the NAS of ``info`` named for it, if anywhere."""
        found = self.clients.find(info.nas_address)
        if found is not None and found.name == info.nas:
            return target_for(info, found)
        for client in self.clients.clients:
            if client.name == info.nas and client.network.num_addresses == 1:
                return dataclasses.replace(target_for(info, client), host=str(client.network.network_address))
        return None

    def send(self, info: AccountingInfo, client, kind: int, attributes) -> defer.Deferred:
        if info.nas not in self.radsec_nases:
            return super().send(info, client, kind, attributes)
        connection = self.connection_of(info.nas)
        if connection is not None:
            d = self._on_connection(connection, info, client, kind, attributes)
        else:
            target = self.udp_target(info)
            if target is not None:
                log.info("client '{nas}' has no open RadSec connection: sending over UDP to {host}[{port}]",
                         nas=info.nas, host=target.host, port=target.port)
                d = self.sender.send(kind, target, attributes)
            else:
                d = defer.succeed(CoaOutcome(0, kind, target_for(info, client), False, attempts=0, note=(
                    "not reachable: no open RadSec connection and no address for UDP")))
        return d.addCallback(self._answered, info)

    def _on_connection(self, connection, info: AccountingInfo, client, kind: int, attributes) -> defer.Deferred:
        if connection.coa is None:
            connection.coa = RadsecCoaSender(connection, self.timeout, self.sender.clock)
        sender = connection.coa
        log.debug("sending to client '{nas}' on its RadSec connection from {peer}", nas=info.nas,
                  peer=connection.peer)
        try:
            return sender.send(kind, sender.target(target_for(info, client)), attributes)
        except CoaBusy:
            return defer.succeed(CoaOutcome(0, kind, target_for(info, client), False, attempts=0,
                                            note="not sent: 256 requests in flight on the RadSec connection"))


def radsec_nases(cfg) -> dict[str, RadiusClient]:
    """{section name: the NAS} of the ``[radius-client:NAME]`` sections with a ``radsec_name``."""
    return {client.name: client for client in radsec_clients(cfg, RADSEC_SECRET).values()}


def make_dispatcher(cfg, store, clients: RadiusClientTable, radsec=None, reactor=None) -> CoaDispatcher | None:
    """:func:`~transports.radius.dynamic.make_dispatcher`, with the RadSec
    NASes of the configuration reached on their connections to ``radsec``
    (the listener's factory; None without ``[radius] radsec_port``)."""
    nases = radsec_nases(cfg)
    if not nases:
        return make_udp_dispatcher(cfg, store, clients, reactor)
    if store is None or not hasattr(store, "decision_listeners"):
        return None
    if all(client.coa == "none" for client in (*clients.clients, *nases.values())):
        return None
    if reactor is None:
        from twisted.internet import reactor
    sec = cfg.section("radius")
    sender = CoaSender(CoaClient(timeout=sec["coa_timeout"], attempts=sec["coa_attempts"]), reactor, sec["listen"])
    return RadsecCoaDispatcher(store, clients, RadiusEnforcement.from_config(sec), sender, nases, radsec,
                               timeout=reliable_timeout(sec["coa_timeout"], sec["coa_attempts"]))
