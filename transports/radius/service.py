"""The RADIUS listener: UDP datagrams in and out of the sans-IO RADIUS server.

This module only moves datagrams and runs the expiry timer: RADIUS rules live
in :mod:`transports.radius.server`, EAP in :mod:`nac.eap`.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import protocol, task
from zope.interface import implementer

from nac import config as nac_config
from nac.interfaces import IPostureTransport
from nac.log import Logger
from transports.radius.enforcement import RadiusEnforcement
from transports.radius.packet import MAX_PACKET_SIZE
from transports.radius.server import RadiusClient, RadiusServer

__all__ = ["RadiusProtocol", "RadiusService", "make_service"]

log = Logger(namespace="nac.radius")

# how often idle conversations and stale cached replies are swept
EXPIRY_INTERVAL = 1.0


class RadiusProtocol(protocol.DatagramProtocol):
    """Hands every datagram to the server and sends back what it answers."""

    noisy = False
    # RFC 2865 §3: longer datagrams are cut to their Length field anyway
    maxPacketSize = MAX_PACKET_SIZE + 1024

    def __init__(self, server: RadiusServer, clock):
        self.server = server
        self.clock = clock

    def datagramReceived(self, data: bytes, addr):
        try:
            reply = self.server.respond(data, addr, self.clock.seconds())
        except Exception:
            # a bug of ours must cost this datagram only, never the listener
            log.failure("internal error on a RADIUS packet from {host}[{port}]", host=addr[0], port=addr[1])
            return
        if reply is None:
            return
        if isinstance(reply, bytes):
            self._send(reply, addr)
        else:
            reply.addCallbacks(self._send, self._failed, callbackArgs=(addr,), errbackArgs=(addr,))

    def _send(self, reply: bytes | None, addr) -> None:
        if reply is None or self.transport is None:
            return
        # ``addr`` is where the request came from, as the socket gave it:
        # the checks Twisted's ``Port.write`` makes of an address (three
        # parses per reply) are spent, the socket takes the reply directly
        sock = getattr(self.transport, "socket", None)
        try:
            if sock is None:
                self.transport.write(reply, addr)
            else:
                sock.sendto(reply, addr)
        except ConnectionRefusedError:
            pass  # an ICMP error of an earlier datagram (Twisted's Port.write ignores it too)
        except Exception:
            log.failure("cannot send the RADIUS reply to {host}[{port}]", host=addr[0], port=addr[1])

    def _failed(self, failure, addr) -> None:
        log.failure("internal error answering a RADIUS packet from {host}[{port}]", failure,
                    host=addr[0], port=addr[1])


@implementer(IPostureTransport)
class RadiusService(service.Service):
    """A RADIUS authentication server on one UDP address and port."""

    transport_name = "radius"
    name = "radius"

    def __init__(self, core, server: RadiusServer, port: int, interface: str, clock=None):
        from twisted.internet import reactor
        self.core = core
        self.server = server
        self.port = port
        self.interface = interface
        self.clock = clock or reactor
        self.protocol = RadiusProtocol(server, self.clock)
        self._listening = None
        self._sweeper = None

    def startService(self):
        from twisted.internet import reactor
        super().startService()
        self._listening = reactor.listenUDP(self.port, self.protocol, interface=self.interface)
        self._sweeper = task.LoopingCall(lambda: self.server.expire(self.clock.seconds()))
        self._sweeper.clock = self.clock
        self._sweeper.start(EXPIRY_INTERVAL, now=False)
        log.info("RADIUS server listening on {where}", where=self.where)

    @property
    def where(self) -> str:
        """``address[port]`` as listening (the real port when 0 was asked for)."""
        port = self._listening.getHost().port if self._listening is not None else self.port
        return f"{self.interface}[{port}]"

    def stopService(self):
        super().stopService()
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self.server.close("server shutting down")
        if self._listening is not None:
            listening, self._listening = self._listening, None
            return listening.stopListening()
        return None


def make_service(cfg, core, store=None, *, eap_factory=None, clock=None) -> RadiusService:
    """Build the RADIUS service from the ``[radius]`` section.

    ``eap_factory`` (``eap_factory(peer) -> IEapSession``) defaults to the EAP
    server of :mod:`nac.eap.server` configured from the same section.
    """
    sec = cfg.section("radius")
    origin = cfg.origin("radius", "secret")
    if sec["secret"] is None:
        raise nac_config.ConfigError(f"{origin}: [radius] secret: required for the RADIUS transport")
    if eap_factory is None:
        try:
            from nac.eap.server import session_factory
        except ImportError as exc:
            raise nac_config.ConfigError(f"transport 'radius' needs the EAP server (nac.eap.server): {exc}")
        eap_factory = session_factory(cfg, core, store, section="radius")
    secret = sec["secret"].encode("utf-8")
    clients = [RadiusClient(network, secret, str(network)) for network in sec["clients"]]
    server = RadiusServer(clients, eap_factory, RadiusEnforcement.from_config(sec),
                          conversation_timeout=sec["conversation_timeout"],
                          max_conversations=sec["max_conversations"])
    return RadiusService(core, server, sec["port"], sec["listen"], clock=clock)
