"""How the processes serving one RADIUS port hand each other requests.

The main process reads the RADIUS socket; each request belongs to one
process (see :class:`transports.radius.server.Forward`).  The main process
connects itself with every worker through a pair of Unix datagram sockets
(:func:`mesh`, created before the workers, inherited by them, never
reachable by another program) and keeps both ends, so that a worker started
again gets the same one.  It hands a worker's requests over on its end
towards the worker, prefixed with the address the request came from; the
worker serves each as if it had received it and answers through its copy
of the RADIUS socket, which it does not read, so the reply leaves from the
address and port the NAS sent to.  Only the main process reads the socket:
processes sharing one socket would all wake up for every datagram.

A datagram is never lost silently: when process k's queue is full (it is
overloaded, or dead and not yet started again), :meth:`RadiusRelay.send`
says so and the caller decides (a request that opens a conversation is
served where it arrived; one of k's conversations is dropped, with a log
line, and the NAS sends it again).
"""

from __future__ import annotations

import socket
import struct

from zope.interface import implementer
from twisted.internet.interfaces import IReadDescriptor

from nac.log import Logger

__all__ = ["MAX_RELAYED", "RadiusRelay", "decode", "encode", "mesh"]

log = Logger(namespace="nac.radius")

_PORT = struct.Struct("!H")
#: Longest relayed datagram: a UDP datagram the RADIUS socket accepts, and its address.
MAX_RELAYED = 8192 + 1 + 255 + _PORT.size
#: Datagrams read per wake-up before the reactor serves others.
READS_PER_WAKEUP = 64


def encode(data: bytes, addr: tuple) -> bytes:
    """``data`` from ``addr`` (host, port) as one relayed datagram: host
    length (1 byte), host (ASCII), port (2 bytes), the datagram."""
    host = addr[0].encode("ascii")
    if len(host) > 255:
        raise ValueError(f"address too long to relay: {addr[0]!r}")
    return bytes((len(host),)) + host + _PORT.pack(addr[1]) + data


def decode(message: bytes) -> tuple[bytes, tuple[str, int]]:
    """(datagram, (host, port)) of an :func:`encode`\\ d message.

    :raises ValueError: for anything else.
    """
    if not message:
        raise ValueError("empty relayed datagram")
    end = 1 + message[0]
    if len(message) < end + _PORT.size:
        raise ValueError("relayed datagram shorter than its address")
    host = message[1:end].decode("ascii")
    (port,) = _PORT.unpack_from(message, end)
    return message[end + _PORT.size:], (host, port)


def mesh(processes: int) -> dict[tuple[int, int], socket.socket]:
    """One connected pair of Unix datagram sockets between the main process
    (0) and each other of ``processes`` processes: ``{(i, j): process i's
    end towards j}``.  A connected pair is bounded by its buffer only, not
    by the kernel's short queue for unconnected datagrams
    (``net.unix.max_dgram_qlen``)."""
    ends: dict[tuple[int, int], socket.socket] = {}
    try:
        for j in range(1, processes):
            ends[0, j], ends[j, 0] = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError:
        for sock in ends.values():
            sock.close()
        raise
    for sock in ends.values():
        try:
            # the largest the kernel allows without privileges
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        except OSError:
            pass
        sock.setblocking(False)
    return ends


@implementer(IReadDescriptor)
class _Inbox:
    """The reactor's reader of one end: what peer ``peer`` sends."""

    def __init__(self, relay: "RadiusRelay", peer: int, sock: socket.socket):
        self.relay = relay
        self.peer = peer
        self.socket = sock

    def fileno(self) -> int:
        return self.socket.fileno() if self.socket is not None else -1

    def doRead(self):
        self.relay.read(self)

    def connectionLost(self, reason) -> None:
        self.socket = None

    def logPrefix(self) -> str:
        return f"radius-relay-{self.relay.process}-{self.peer}"


class RadiusRelay:
    """Process ``process``'s ends of the :func:`mesh` (``{peer: socket}``):
    it receives the requests other processes hand it (to ``deliver(data,
    addr)``) and sends them theirs."""

    def __init__(self, process: int, ends: dict[int, socket.socket], deliver):
        self.process = process
        self.deliver = deliver
        self.ends = dict(ends)
        self.inboxes = [_Inbox(self, peer, sock) for peer, sock in sorted(self.ends.items())]
        self.relayed = 0
        self.received = 0

    def start(self, reactor) -> None:
        for inbox in self.inboxes:
            reactor.addReader(inbox)

    def stop(self, reactor) -> None:
        for inbox in self.inboxes:
            reactor.removeReader(inbox)
            inbox.socket = None

    def send(self, process: int, data: bytes, addr: tuple) -> str | None:
        """Hand ``data`` from ``addr`` to process ``process``: None when it
        is queued for it, else why not."""
        sock = self.ends.get(process)
        if sock is None:
            return "no such process"
        try:
            sock.send(encode(data, addr))
        except BlockingIOError:
            return "its queue is full: it is busy, restarting or gone"
        except OSError as exc:
            return exc.strerror or str(exc)
        self.relayed += 1
        return None

    def read(self, inbox: _Inbox) -> None:
        for _ in range(READS_PER_WAKEUP):
            sock = inbox.socket
            if sock is None:
                return
            try:
                message = sock.recv(MAX_RELAYED)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("cannot read requests handed over by RADIUS process {peer}: {error}",
                          peer=inbox.peer, error=exc.strerror or str(exc))
                return
            try:
                data, addr = decode(message)
            except (ValueError, UnicodeDecodeError) as exc:
                log.error("discarding a request handed over by RADIUS process {peer}: {reason}",
                          peer=inbox.peer, reason=str(exc))
                continue
            self.received += 1
            self.deliver(data, addr)
