"""Listening on IPv6 and IPv4 with one socket, and the addresses it yields.

Every transport's ``listen`` defaults to ``::``: one IPv6 socket with
IPV6_V6ONLY off takes IPv4 too (RFC 3493 §5.3), so nac answers on every
address of both families; on a machine without IPv6 it falls back to
``0.0.0.0``.  An IPv4 peer then arrives as an IPv4-mapped address
(``::ffff:192.0.2.1``); :func:`unmapped` turns it back into the IPv4
address wherever an address is compared, hashed as on the wire, stored or
logged, and :func:`socket_address` maps it again for a reply sent through the
IPv6 socket.  An explicitly configured address (``0.0.0.0``, ``::1``, …) is
bound as given; only ``::`` is dual-stack.

The sockets are made here, not by ``listenTCP``/``listenUDP``, so that they
can be bound before twistd drops privileges (ports below 1024) and shared
with the worker processes.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from typing import Callable

from twisted.internet.error import CannotListenError

from nac.log import Logger

__all__ = ["ALL_ADDRESSES", "IPV4_ANY", "BoundListener", "bind", "listen_address", "socket_address", "unmapped"]

log = Logger(namespace="nac")

#: The ``listen`` value meaning every address, IPv6 and IPv4.
ALL_ADDRESSES = "::"
IPV4_ANY = "0.0.0.0"

# what socket()/bind() of "::" fail with where the kernel has no IPv6
# (ipv6.disable=1, no IPv6 module, IPv6 disabled on every interface)
_NO_IPV6 = frozenset({errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.EADDRNOTAVAIL, errno.EINVAL})


def unmapped(host: str) -> str:
    """``host`` with an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) written
    as the IPv4 address it maps; anything else unchanged."""
    if not host.startswith("::ffff:") and not host.startswith("::FFFF:"):
        return host
    try:
        mapped = ipaddress.IPv6Address(host).ipv4_mapped
    except ValueError:
        return host
    return str(mapped) if mapped is not None else host


def socket_address(family: int, host: str) -> str:
    """``host`` as a socket of ``family`` takes it: an IPv4 address is mapped
    (``::ffff:a.b.c.d``) for an IPv6 socket."""
    if family == socket.AF_INET6 and ":" not in host:
        return "::ffff:" + host
    return host


def _ipv6_usable() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            probe.bind(("::", 0))
        return True
    except OSError as exc:
        if exc.errno in _NO_IPV6:
            return False
        raise


def listen_address(interface: str, *, what: str = "") -> str:
    """The address to bind for the ``listen`` value ``interface``: ``::``
    where this machine has IPv6, else ``0.0.0.0`` (logged at info level,
    ``what`` naming the listener)."""
    if interface != ALL_ADDRESSES or _ipv6_usable():
        return interface
    log.info("{what}this machine has no IPv6: listening on IPv4 addresses only (0.0.0.0)",
             what=f"{what}: " if what else "")
    return IPV4_ANY


def bind(interface: str, port: int, kind: int = socket.SOCK_STREAM, *, backlog: int = 50) -> socket.socket:
    """A socket of ``kind`` bound to ``interface`` and ``port`` (listening,
    for a stream socket), non-blocking, with SO_REUSEADDR as Twisted's
    ``listenTCP`` sets it (TCP only: for UDP it would let another program
    share the port).  ``::`` is dual-stack: IPV6_V6ONLY is cleared whatever
    ``net.ipv6.bindv6only`` says.

    :raises CannotListenError: when the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    try:
        sock = socket.socket(family, kind)
    except OSError as exc:
        raise CannotListenError(interface, port, exc) from None
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and interface == ALL_ADDRESSES:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((interface, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise CannotListenError(interface, port, exc) from None
    sock.setblocking(False)
    return sock


class BoundListener:
    """The life of one listening socket: bound by :meth:`bind` (in
    ``privilegedStartService``, before twistd drops privileges), handed to
    the reactor by :meth:`adopt` (in ``startService``), closed by
    :meth:`release` (in ``stopService``), whichever of them ran.

    ``what`` names the listener in the log line of :func:`listen_address`.
    """

    def __init__(self, interface: str, port: int, kind: int, *, what: str = ""):
        self.interface = interface
        self.port = port
        self.kind = kind
        self.what = what
        #: bound, not yet adopted
        self.socket: socket.socket | None = None
        #: the reactor's port once adopted (``getHost``, ``socket``, ``stopListening``)
        self.listening = None

    def bind(self) -> None:
        """Bind the socket, unless it is bound or listening already.

        :raises CannotListenError: when the address cannot be bound.
        """
        if self.socket is None and self.listening is None:
            self.interface = listen_address(self.interface, what=self.what)
            self.socket = bind(self.interface, self.port, self.kind)

    def adopt(self, adopt: Callable[[int, int], object]):
        """Bind if need be, then hand the socket to ``adopt(fileno, family)``
        (``reactor.adoptStreamPort`` / ``adoptDatagramPort`` with their other
        arguments bound): the reactor's port, which holds a duplicate of the
        socket, so that ours is closed."""
        self.bind()
        sock, self.socket = self.socket, None
        try:
            self.listening = adopt(sock.fileno(), sock.family)
        finally:
            sock.close()
        return self.listening

    @property
    def where(self) -> str:
        """``address[port]`` as listening (the real port when 0 was asked for)."""
        port = self.listening.getHost().port if self.listening is not None else self.port
        return f"{self.interface}[{port}]"

    def release(self):
        """Close a socket bound but not adopted, stop listening: the
        Deferred of ``stopListening``, or None when nothing listened."""
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        if self.listening is not None:
            listening, self.listening = self.listening, None
            return listening.stopListening()
        return None
