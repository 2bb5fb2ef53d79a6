"""TLS of the PT-TLS listener: the server context (:func:`nac.tls.server_context`,
shared with the other TLS transports) and Twisted's TLS wrapper."""

from __future__ import annotations

from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import providedBy
from zope.interface.declarations import Provides

from nac.tls import server_context  # noqa: F401  (where it was; the HTTP transport shares it)

__all__ = ["TlsServerFactory", "hold_declarations", "server_context"]

# -- Twisted's TLS wrapper, without rebuilding interface declarations ------------------

_HELD: dict = {}


def hold_declarations(tls_protocol, transport) -> None:
    """Keep the interface declarations Twisted's TLS wrapper makes for
    ``tls_protocol`` on ``transport`` alive.

    ``TLSMemoryBIOProtocol.makeConnection`` declares, one at a time, each
    interface the wrapped transport provides; zope.interface keeps such
    declarations only while something holds them, so every connection built
    them all again (a third of a millisecond per connection).  Held here,
    one per (protocol class, interface), later connections find them made.
    """
    if transport is None:
        return
    key = (type(tls_protocol), providedBy(transport))
    if key not in _HELD:
        _HELD[key] = [Provides(key[0], interface) for interface in key[1]]


class TlsServerProtocol(TLSMemoryBIOProtocol):
    def makeConnection(self, transport):
        hold_declarations(self, transport)
        super().makeConnection(transport)


class TlsServerFactory(TLSMemoryBIOFactory):
    """TLSMemoryBIOFactory whose connections hold their declarations, and
    that refuses a connection the wrapped factory refuses (its
    ``buildProtocol`` returns None) before any TLS state is made for it."""

    protocol = TlsServerProtocol

    def buildProtocol(self, addr):
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return self.protocol(self, wrapped)
