"""Dynamic authorization on the reactor (RFC 5176): a decision that changes
after an endpoint was admitted reaches the NAS holding its session.

:class:`CoaSender` is the thin Twisted edge of the sans-IO
:class:`~transports.radius.coa.CoaClient` (one UDP socket, its timers).
:class:`CoaDispatcher` listens to the decisions the policy store commits
(:attr:`nac.db.store.PolicyStore.decision_listeners`): when the decision
for an endpoint differs from its previous one, every open accounting session
of the endpoint (:func:`nac.db.accounting.decision_change`) gets, by its NAS's
``coa`` setting, a CoA-Request with the enforcement attributes of the new
decision, or a Disconnect-Request (always for Access Denied); the outcome is
written to the accounting session (:func:`nac.db.accounting.record_coa`), and
a NAK with Session-Context-Not-Found or a Disconnect-ACK ends it there.

The dispatcher runs in nac's main process only; the decisions of worker
processes reach it there (:func:`nac.processes.decision_relay`).
"""

from __future__ import annotations

import socket
from types import SimpleNamespace

from twisted.internet import defer, protocol

from nac.db.accounting import AccountingInfo, close_session, decision_change, record_coa
from nac.db.outage import StoreUnavailable
from nac.log import Logger
from transports.radius.clients import CLIENT_SECTION, RadiusClient, RadiusClientTable, ip_address
from transports.radius.coa import CoaClient, CoaOutcome, CoaTarget, ErrorCause
from transports.radius.enforcement import RadiusEnforcement
from transports.radius.packet import Code

__all__ = ["CoaDispatcher", "CoaSender", "coa_request_for", "refuse_radsec_only"]

log = Logger(namespace="nac.radius.coa")

#: Acct-Terminate-Cause Admin-Reset (RFC 2866 §5.10), for sessions a Disconnect ended
ADMIN_RESET = 6


class CoaSender:
    """Sends CoA and Disconnect requests and hands back their outcomes: one
    UDP port on an ephemeral port per address family of the NASes."""

    def __init__(self, client: CoaClient, clock, source: str = "::"):
        self.client = client
        self.clock = clock
        #: the address requests leave from ([radius] listen): a wildcard
        #: one means any of the family
        self.source = source
        self._waiting: dict[int, defer.Deferred] = {}
        self._timer = None
        self._reactor = None
        #: address family -> the UDP port sending to NASes of that family (made when first needed)
        self._ports: dict[int, object] = {}

    def start(self, reactor) -> None:
        self._reactor = reactor

    def stop(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        ports, self._ports = list(self._ports.values()), {}
        for port in ports:
            port.stopListening()

    def _port_for(self, host: str):
        family = family_of(host)
        port = self._ports.get(family)
        if port is None:
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor
            source = ip_address(self.source)
            if source is None or source.is_unspecified or family_of(str(source)) != family:
                interface = "::" if family == socket.AF_INET6 else "0.0.0.0"
            else:
                interface = str(source)
            port = self._ports[family] = reactor.listenUDP(0, _FamilyPort(self), interface=interface)
        return port

    def send(self, kind: int, target: CoaTarget, attributes) -> defer.Deferred:
        """Deferred firing with the :class:`CoaOutcome`."""
        handle = self.client.request(kind, target, attributes, self.clock.seconds())
        d = self._waiting[handle] = defer.Deferred()
        self._flush()
        return d

    def datagramReceived(self, data: bytes, addr):
        outcome = self.client.receive(data, addr, self.clock.seconds())
        if outcome is not None:
            self._done(outcome)

    def _done(self, outcome: CoaOutcome) -> None:
        d = self._waiting.pop(outcome.handle, None)
        if d is not None:
            d.callback(outcome)
        self._schedule()

    def _flush(self) -> None:
        for data, addr in self.client.datagrams():
            try:
                self._port_for(addr[0]).write(data, addr)
            except Exception as exc:  # an ICMP error of an earlier datagram: as if lost
                log.debug("cannot send to {host}[{port}]: {error}", host=addr[0], port=addr[1], error=str(exc))
        self._schedule()

    def _schedule(self) -> None:
        deadline = self.client.next_deadline()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if deadline is not None:
            self._timer = self.clock.callLater(max(0.0, deadline - self.clock.seconds()), self._expire)

    def _expire(self) -> None:
        self._timer = None
        for outcome in self.client.expire(self.clock.seconds()):
            self._done(outcome)
        self._flush()


class _FamilyPort(protocol.DatagramProtocol):
    """The sender's UDP port for one address family."""

    noisy = False

    def __init__(self, sender: CoaSender):
        self.sender = sender

    def datagramReceived(self, data: bytes, addr):
        self.sender.datagramReceived(data, addr)


def coa_request_for(info: AccountingInfo, client, access: str, enforcement: RadiusEnforcement,
                    group=None) -> tuple[int, list] | None:
    """(request code, attributes) that tell ``client`` (the NAS of
    accounting session ``info``) the decision ``access``; None when it is
    to be told nothing (``coa = none``)."""
    if client is None or client.coa == "none":
        return None
    if access not in ("allowed", "isolate") or client.coa == "disconnect":
        return Code.DISCONNECT_REQUEST, []
    action = (client.enforcement or enforcement).enforce(None, SimpleNamespace(access=access, enforcement=group))
    if not action.accept:
        return Code.DISCONNECT_REQUEST, []
    return Code.COA_REQUEST, list(action.attributes)


def target_for(info: AccountingInfo, client) -> CoaTarget:
    return CoaTarget(host=info.nas_address, port=client.coa_port, secret=client.secret, nas=info.nas,
                     acct_session_id=info.acct_session_id, user_name=info.user_name,
                     calling_station_id=info.calling_station_id, nas_port=info.nas_port,
                     nas_ip=info.nas_ip_address)


def outcome_effects(outcome: CoaOutcome) -> int | None:
    """The Acct-Terminate-Cause to end the accounting session with, if the
    outcome says the NAS no longer has it; else None."""
    if outcome.nak and outcome.error_cause == ErrorCause.SESSION_CONTEXT_NOT_FOUND:
        return 0  # gone already; nothing to say why
    if outcome.acked and outcome.kind == Code.DISCONNECT_REQUEST:
        return ADMIN_RESET
    return None


class CoaDispatcher:
    """Decision changes to CoA / Disconnect requests (see the module)."""

    def __init__(self, store, clients: RadiusClientTable, enforcement: RadiusEnforcement, sender: CoaSender):
        self.store = store
        self.clients = clients
        self.enforcement = enforcement
        self.sender = sender
        #: Deferreds of the changes being told (for tests and shutdown)
        self.busy: set[defer.Deferred] = set()

    def decided(self, session_id: int, decision) -> None:
        d = self.store.read(decision_change, session_id)
        d.addCallback(self._changed, decision, session_id)
        d.addErrback(self._failed, session_id)
        self.busy.add(d)
        d.addBoth(self._finished, d)

    @staticmethod
    def _failed(failure, session_id: int) -> None:
        if failure.check(StoreUnavailable):
            # the database is away (its health says so, once): one line, no traceback
            log.warn("cannot tell the NASes of the decision of session {sid}: {error}", sid=session_id,
                     error=failure.getErrorMessage(), log_limit=("CoA after a decision failed", "policy database"))
            return None
        log.failure("cannot tell the NASes of the decision of session {sid}", failure, sid=session_id,
                    log_limit=("CoA after a decision failed", "policy database"))
        return None

    def _finished(self, result, d):
        self.busy.discard(d)
        return result

    def _changed(self, change, decision, session_id: int):
        previous, access, targets = change
        if access is None and previous is None and not targets:
            # only a decision relayed by a worker process can name a session we do not have
            log.warn("decision of session {sid}: the database has no decision of that session; no NAS told",
                     sid=session_id,
                     log_limit=("decision of an unknown session", "policy database"))
            return None
        if not targets or previous is None or previous == access:
            return None
        sends = []
        for info in targets:
            client = self.client_for(info)
            request = coa_request_for(info, client, access, self.enforcement, getattr(decision, "enforcement", None))
            if request is None:
                continue
            kind, attributes = request
            log.info("decision for session {sid} changed from {old} to {new}: sending {what} to client '{nas}' "
                     "for accounting session '{acct}'", sid=session_id, old=previous, new=access,
                     what="CoA-Request" if kind == Code.COA_REQUEST else "Disconnect-Request",
                     nas=info.nas, acct=info.acct_session_id)
            sends.append(self.send(info, client, kind, attributes))
        return defer.DeferredList(sends, consumeErrors=True) if sends else None

    def client_for(self, info: AccountingInfo):
        """The NAS of accounting session ``info`` (None: no client of ours)."""
        return self.clients.find(info.nas_address)

    def send(self, info: AccountingInfo, client, kind: int, attributes) -> defer.Deferred:
        """Send ``kind`` for ``info`` and record how it ended."""
        d = self.sender.send(kind, target_for(info, client), attributes)
        return d.addCallback(self._answered, info)

    def _answered(self, outcome: CoaOutcome, info: AccountingInfo):
        text = outcome.describe()
        (log.info if outcome.acked else log.warn)(
            "{what} for accounting session '{acct}' of client '{nas}': {outcome}",
            what="CoA-Request" if outcome.kind == Code.COA_REQUEST else "Disconnect-Request",
            acct=info.acct_session_id, nas=info.nas, outcome=text,
            log_limit=None if outcome.acked else ("CoA not acknowledged", info.nas))
        d = self.store.writes.submit(record_coa, info.id, outcome.action, text)
        cause = outcome_effects(outcome)
        if cause is not None:
            d.addCallback(lambda _: self.store.writes.submit(close_session, info.id, cause or None))
        return d.addCallback(lambda _: outcome)


def make_dispatcher(cfg, store, clients: RadiusClientTable, reactor=None) -> CoaDispatcher | None:
    """The dispatcher of ``[radius] coa*`` and the NASes' ``coa`` settings,
    listening to ``store``'s decisions; None when no NAS is to be told."""
    if store is None or not hasattr(store, "decision_listeners"):
        return None
    if all(client.coa == "none" for client in clients.clients):
        return None
    if reactor is None:
        from twisted.internet import reactor
    sec = cfg.section("radius")
    sender = CoaSender(CoaClient(timeout=sec["coa_timeout"], attempts=sec["coa_attempts"]), reactor, sec["listen"])
    dispatcher = CoaDispatcher(store, clients, RadiusEnforcement.from_config(sec), sender)
    return dispatcher


def family_of(host: str) -> int:
    addr = ip_address(host)
    return socket.AF_INET6 if addr is not None and addr.version == 6 else socket.AF_INET


def refuse_radsec_only(cfg, info: AccountingInfo, client: RadiusClient | None) -> None:
    """For ``nac-admin``: LookupError naming the NAS when the NAS of ``info``
    is a RadSec NAS that UDP does not reach under its name (``client``: the
    UDP client of the session's NAS address): only the running server holds
    its connection."""
    section = cfg.named_sections(CLIENT_SECTION).get(info.nas)
    if not section or not section.get("radsec_name"):
        return
    if client is not None and client.name == info.nas:
        return
    raise LookupError(f"accounting session {info.id}: NAS '{info.nas}' is reached over RadSec only; nac-admin "
                      "cannot use the server's TLS connection (the running server sends CoA / Disconnect on it "
                      "when the endpoint's decision changes)")


def change_session(cfg, db, row_id: int, access: str | None) -> tuple[bool, dict, str]:
    """:meth:`nac.interfaces.ISessionControl.change_session` for RADIUS: a
    CoA-Request with the enforcement of ``access`` (whatever the NAS's
    ``coa`` setting: an operator asked) or a Disconnect-Request (None) to
    the NAS of accounting session ``row_id``, sent and awaited here; the
    outcome written with the session."""
    import dataclasses

    from nac.db.accounting import coa_targets
    from transports.radius.clients import client_table
    from transports.radius.coa import send_blocking

    found = db.read(coa_targets, row_id=row_id)
    if not found:
        raise LookupError(f"no accounting session {row_id}")
    info = found[0]
    client = client_table(cfg).find(info.nas_address)
    refuse_radsec_only(cfg, info, client)
    if client is None:
        raise LookupError(f"accounting session {row_id}: its NAS {info.nas_address} is no RADIUS client of the "
                          "configuration")
    sec = cfg.section("radius")
    if access is None:
        kind, attributes = Code.DISCONNECT_REQUEST, []
    else:
        kind, attributes = coa_request_for(info, dataclasses.replace(client, coa="coa"), access,
                                           RadiusEnforcement.from_config(sec))
    outcome = send_blocking(CoaClient(timeout=sec["coa_timeout"], attempts=sec["coa_attempts"]), kind,
                            target_for(info, client), attributes)
    text = outcome.describe()
    db.write(record_coa, info.id, outcome.action, text)
    cause = outcome_effects(outcome)
    if cause is not None:
        db.write(close_session, info.id, cause or None)
    data = {"id": info.id, "nas": info.nas, "action": outcome.action, "acked": outcome.acked,
            "error_cause": outcome.error_cause, "attempts": outcome.attempts, "result": text}
    return outcome.acked, data, f"{outcome.action} for accounting session {info.id} ({info.nas}): {text}"
