"""The IKEv2 listener: UDP on ``[ikev2] port`` and ``nat_port`` around the
sans-IO responder of :mod:`transports.ikev2.sa`.

This module moves datagrams, runs the expiry timer, and reads the
configuration; every IKE rule lives in the responder.  With ``kernel =
xfrm`` the NAT-T socket is switched to ESP-in-UDP decapsulation
(``UDP_ENCAP_ESPINUDP``) and CHILD_SAs are installed with ``ip -batch`` in a
thread (:mod:`transports.ikev2.kernel`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections import OrderedDict
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from twisted.application import service
from twisted.internet import defer, protocol, task, threads
from zope.interface import implementer

from nac import config as nac_config
from nac import metrics
from nac.dualstack import bind, listen_address, socket_address, unmapped
from nac.interfaces import IPostureTransport
from nac.log import Logger
from transports.ikev2 import crypto
from transports.ikev2.kernel import NoKernel, UnsupportedAlgorithm, XfrmKernel, masked, run_ip_batch
from transports.ikev2.message import ProtocolId
from transports.ikev2.pool import VirtualIpPool
from transports.ikev2.sa import GatewayCredential, IkeResponder, OutgoingDatagram, ResponderSettings
from transports.ikev2.transforms import Algorithms, parse_proposals

__all__ = ["IkeProtocol", "IkeService", "make_service", "settings_from_config"]

log = Logger(namespace="nac.ikev2")

EXPIRY_INTERVAL = 1.0

#: ``/metrics``: the responder's counters, as nac_ike_<counter>_total
COUNTER_HELP = {
    "ike_sa_init_requests": "IKE_SA_INIT requests received",
    "ike_sa_init_responses": "IKE_SA_INIT responses sent",
    "cookies_sent": "COOKIE notifies sent (RFC 7296 2.6)",
    "invalid_ke_sent": "INVALID_KE_PAYLOAD notifies sent",
    "no_proposal_chosen": "NO_PROPOSAL_CHOSEN notifies sent",
    "half_open_dropped": "IKE_SA_INIT requests ignored: too many half-open IKE SAs",
    "half_open_peer_dropped": "IKE_SA_INIT requests ignored: too many half-open IKE SAs of their address",
    "retransmits_answered": "Retransmitted requests answered with the response sent before",
    "integrity_failures": "Messages whose integrity check failed",
    "malformed": "Messages that could not be parsed",
    "unknown_spi": "Messages for no IKE SA known",
    "established": "IKE SAs established",
    "authentication_failures": "IKE_AUTH exchanges that failed to authenticate",
    "child_sas": "CHILD_SAs created",
    "ike_rekeys": "IKE SAs rekeyed",
    "child_rekeys": "CHILD_SAs rekeyed",
}


def metric_families(responder: IkeResponder):
    """The responder's IKE SAs (established, half-open) and counters."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    sas = GaugeMetricFamily("nac_ike_sas", "IKE SAs, by state (established, half_open: no IKE_AUTH yet)",
                            labels=["state"])
    half_open = responder.half_open
    sas.add_metric(["established"], len(responder.ike_sas) - half_open)
    sas.add_metric(["half_open"], half_open)
    yield sas
    for name, text in COUNTER_HELP.items():
        yield CounterMetricFamily(f"nac_ike_{name}", text, value=getattr(responder.counters, name))
# Linux: setsockopt(IPPROTO_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP) makes the kernel
# take ESP from the NAT-T socket and leave IKE (non-ESP marker) to us (RFC 3948)
_UDP_ENCAP = 100
_UDP_ENCAP_ESPINUDP = 2
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_MAX_ROUTE_CACHE = 4096


class IkeProtocol(protocol.DatagramProtocol):
    """One UDP port: hands every datagram to the responder."""

    noisy = False
    maxPacketSize = 65535

    def __init__(self, owner: "IkeService", port: int):
        self.owner = owner
        self.port = port

    def datagramReceived(self, data: bytes, addr):
        owner = self.owner
        # an IPv4 peer of a socket bound to :: is ::ffff:a.b.c.d there; the
        # responder sees the IPv4 address it sent from: NAT detection and
        # cookies hash the address as it is on the wire (RFC 7296 §2.23, §2.6)
        remote = (unmapped(addr[0]), addr[1])
        try:
            local = (owner.local_address(remote[0]), self.port)
            owner.responder.datagram_received(data, local, remote, owner.clock.seconds())
        except Exception:
            # a bug of ours must cost this datagram only, never the listener
            log.failure("internal error on an IKE datagram from {host}[{port}]", host=remote[0], port=remote[1],
                        log_limit=("internal error on an IKE datagram", remote[0]))


@implementer(IPostureTransport)
class IkeService(service.Service):
    """The IKEv2 responder on two UDP ports."""

    transport_name = "ikev2"
    name = "ikev2"

    def __init__(self, core, settings: ResponderSettings, eap_factory, *, port: int, interface: str,
                 kernel=None, clock=None):
        from twisted.internet import reactor
        self.core = core
        self.settings = settings
        self.port = port
        self.nat_port = settings.nat_port
        self.interface = interface
        self.clock = clock or reactor
        self.kernel = kernel if kernel is not None else NoKernel()
        self.responder = IkeResponder(settings, eap_factory, self._send, kernel=self.kernel,
                                      now=self.clock.seconds())
        self._ports: dict[int, object] = {}
        self._sockets: dict[int, socket.socket] = {}
        self._sweeper = None
        self._routes: OrderedDict[str, str] = OrderedDict()

    # -- addresses ------------------------------------------------------------------------------

    def local_address(self, remote_host: str) -> str:
        """Our address as the peer sees it (for NAT detection and XFRM): the
        listening address, or for a wildcard listener the source address the
        routing table picks for the peer."""
        if self.interface not in _WILDCARDS:
            return self.interface
        found = self._routes.get(remote_host)
        if found is None:
            family = socket.AF_INET6 if ":" in remote_host else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as probe:
                    probe.connect((remote_host, 9))  # no packet is sent for a UDP connect
                    found = probe.getsockname()[0]
            except OSError:
                found = "::" if family == socket.AF_INET6 else "0.0.0.0"
            if len(self._routes) >= _MAX_ROUTE_CACHE:
                self._routes.popitem(last=False)
            self._routes[remote_host] = found
        return found

    # -- I/O -------------------------------------------------------------------------------------

    def _send(self, datagram: OutgoingDatagram) -> None:
        port = self._ports.get(datagram.local_port)
        if port is None:
            return
        host, remote_port = datagram.remote
        try:
            port.write(datagram.data, (socket_address(port.addressFamily, host), remote_port))
        except OSError as exc:
            log.info("sending to {host}[{port}] failed: {error}", host=datagram.remote[0], port=datagram.remote[1],
                     error=exc.strerror or str(exc))

    def _bind(self) -> None:
        # ports 500 and 4500 need privileges: bound before twistd drops them
        if self._sockets or self._ports:
            return
        self.interface = listen_address(self.interface, what="IKEv2")
        try:
            for number in (self.port, self.nat_port):
                self._sockets[number] = bind(self.interface, number, socket.SOCK_DGRAM)
        except Exception:
            for sock in self._sockets.values():
                sock.close()
            self._sockets = {}
            raise

    def privilegedStartService(self):
        self._bind()
        super().privilegedStartService()

    def startService(self):
        from twisted.internet import reactor
        self._bind()
        super().startService()
        sockets, self._sockets = self._sockets, {}
        for number, sock in sockets.items():
            try:
                self._ports[number] = reactor.adoptDatagramPort(sock.fileno(), sock.family,
                                                                IkeProtocol(self, number), maxPacketSize=65535)
            finally:
                sock.close()  # the port has its own duplicate
        if isinstance(self.kernel, XfrmKernel):
            self._enable_esp_in_udp()
        metrics.add_source(self, lambda: metric_families(self.responder))
        self._sweeper = task.LoopingCall(lambda: self.responder.expire(self.clock.seconds()))
        self._sweeper.clock = self.clock
        self._sweeper.start(EXPIRY_INTERVAL, now=False)
        log.info("IKEv2 responder listening on {where}[{port}] and [{nat_port}] (NAT-T), kernel {kernel}",
                 where=self.interface, port=self.listening_port(self.port),
                 nat_port=self.listening_port(self.nat_port), kernel=self.kernel.name)

    def listening_port(self, number: int) -> int:
        port = self._ports.get(number)
        return port.getHost().port if port is not None else number

    def _enable_esp_in_udp(self) -> None:
        port = self._ports.get(self.nat_port)
        try:
            port.socket.setsockopt(socket.IPPROTO_UDP, _UDP_ENCAP, _UDP_ENCAP_ESPINUDP)
        except (AttributeError, OSError) as exc:
            log.warn("cannot enable ESP-in-UDP on port {port}: {error}; UDP-encapsulated CHILD_SAs will not pass "
                     "traffic", port=self.nat_port, error=getattr(exc, "strerror", None) or str(exc))

    def stopService(self):
        super().stopService()
        metrics.remove_source(self)
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        # deletes go out to established peers before the sockets close
        self.responder.close("server shutting down")
        pending = [getattr(self.kernel, "pending", None)]
        stops = [defer.maybeDeferred(p.stopListening) for p in self._ports.values()]
        self._ports = {}
        for sock in self._sockets.values():
            sock.close()
        self._sockets = {}
        waits = [d for d in pending if isinstance(d, defer.Deferred)] + stops
        return defer.DeferredList(waits)


class _ThreadedXfrm(XfrmKernel):
    """``kernel = xfrm`` in the service: ``ip -batch`` in a thread, one
    request after the other (installs and removes of one CHILD_SA must not
    overtake each other), failures logged with the keys masked."""

    def __init__(self):
        super().__init__(self._run)
        self.pending: defer.Deferred = defer.succeed(None)

    def _run(self, lines: list[str]):
        def run(_):
            d = threads.deferToThread(run_ip_batch, lines)
            d.addCallback(self._done, lines)
            d.addErrback(lambda f: log.failure("running ip -batch failed", f))
            return d
        self.pending.addCallback(run)
        return self.pending

    @staticmethod
    def _done(result, lines: list[str]) -> None:
        status, error = result
        if status != 0:
            log.error("kernel refused XFRM request ({error}): {commands}",
                      error=masked([error])[0] or f"exit status {status}", commands="; ".join(masked(lines)))
        else:
            log.debug("installed XFRM request: {commands}", commands="; ".join(masked(lines)))


def settings_from_config(cfg) -> ResponderSettings:
    """The responder settings of ``[ikev2]``; ``ConfigError`` for unusable values."""
    sec = cfg.section("ikev2")
    origin = cfg.source or "defaults"
    problems = []
    try:
        ike = parse_proposals(sec["ike_proposals"], ProtocolId.IKE)
        for proposal in ike:
            missing = crypto.ike_proposal_supported(proposal)
            if missing:
                problems.append(f"{cfg.origin('ikev2', 'ike_proposals')}: [ikev2] ike_proposals: nac does not "
                                f"implement {', '.join(missing)}")
    except ValueError as exc:
        problems.append(f"{cfg.origin('ikev2', 'ike_proposals')}: [ikev2] ike_proposals: {exc}")
        ike = ()
    try:
        esp = parse_proposals(sec["esp_proposals"], ProtocolId.ESP)
        for proposal in esp:
            crypto.child_key_sizes(Algorithms.from_proposal(proposal))
    except (ValueError, UnsupportedAlgorithm) as exc:
        problems.append(f"{cfg.origin('ikev2', 'esp_proposals')}: [ikev2] esp_proposals: {exc}")
        esp = ()
    cert, key = sec["cert"], sec["key"]
    if cert is None:
        from nac.certs import PkiError, ensure_demo_pki
        try:
            pki = ensure_demo_pki(Path(cfg.state_dir))
        except PkiError as exc:
            raise nac_config.ConfigError(f"{origin}: [ikev2] cert: {exc}") from None
        cert, key = pki.server_cert, pki.server_key
    credential = None
    try:
        cert_pem = Path(cert).read_bytes()
        key_pem = Path(key).read_bytes()
    except OSError as exc:
        which = "cert" if exc.filename == str(cert) else "key"
        problems.append(f"{cfg.origin('ikev2', which)}: [ikev2] {which}: cannot read {exc.filename}: "
                        f"{exc.strerror}")
    else:
        try:
            credential = GatewayCredential.from_pem(cert_pem, key_pem)
        except (ValueError, TypeError) as exc:
            which, what = "cert", f"cannot use {cert} with the key {key}: {' '.join(str(exc).split())}"
            try:
                serialization.load_pem_private_key(key_pem, password=None)
            except (ValueError, TypeError):
                which, what = "key", f"{key} holds no PEM private key (or an encrypted one, which nac cannot use)"
            problems.append(f"{cfg.origin('ikev2', which)}: [ikev2] {which}: {what}")
    dns = tuple(ipaddress.ip_address(a) if not isinstance(a, (ipaddress.IPv4Address, ipaddress.IPv6Address))
                else a for a in sec.get("dns") or ())
    if problems:
        raise nac_config.ConfigError(*problems)
    # keys nac.config may not declare (yet): ResponderSettings' defaults then
    timers = {key: sec[key] for key in ("half_open_timeout", "auth_timeout", "ike_lifetime", "child_lifetime")
              if sec.get(key) is not None}
    return ResponderSettings(
        ike_proposals=ike, esp_proposals=esp, allow_ts=tuple(sec["allow_ts"]), isolate_ts=tuple(sec["isolate_ts"]),
        credential=credential, eap_only=sec["eap_only"],
        eap_authenticates_gateway=cfg.get("eap", "methods")[0] == "ttls",
        pool=VirtualIpPool(sec["pool"]), dns=dns,
        nat_port=sec["nat_port"], cookie_threshold=sec["cookie_threshold"], max_half_open=sec["max_half_open"],
        max_half_open_per_peer=sec["max_half_open_per_peer"], max_fragment_memory=sec["max_fragment_memory"],
        fragment_size=sec["fragment_size"], **timers)


def make_service(cfg, core, store=None, *, eap_factory=None, clock=None, kernel=None) -> IkeService:
    """Build the IKEv2 service from ``[ikev2]`` (and ``[eap]`` for the EAP server).

    ``eap_factory`` (``eap_factory(peer) -> IEapSession``) defaults to
    :func:`nac.eap.server.session_factory` for section 'ikev2'; ``kernel``
    to what ``[ikev2] kernel`` names."""
    settings = settings_from_config(cfg)
    sec = cfg.section("ikev2")
    if eap_factory is None:
        from nac.eap.server import session_factory
        eap_factory = session_factory(cfg, core, store, "ikev2")
    if kernel is None:
        kernel = _ThreadedXfrm() if sec["kernel"] == "xfrm" else NoKernel()
    return IkeService(core, settings, eap_factory, port=sec["port"], interface=sec["listen"], kernel=kernel,
                      clock=clock)
