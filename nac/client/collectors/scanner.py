"""The Scanner IMC (IETF PA subtype Firewall): the open server ports, as
strongSwan's imc-scanner reports them.

strongSwan runs ``netstat -n -l -p -4 -6 --inet``; this reads the same
kernel tables directly: TCP sockets in state LISTEN from ``/proc/net/tcp``
and ``tcp6``, unconnected UDP sockets from ``/proc/net/udp`` and ``udp6``,
in that order, one Port Filter entry per protocol and port.  Sockets bound
to a loopback address cannot be reached from the network and are left out
(strongSwan skips 127.0.0.1, 127.0.1.1 and ::1).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from pathlib import Path

from nac.log import Logger

from nac.client.imc import PaTncImc, ReceivedPaMessage
from nac.pa import PaAttribute, PaSubtype, PaVendor
from nac.pa.ietf import AttributeRequest, IetfAttributeType, PortEntry, PortFilter

__all__ = ["DEFAULT_TCP_TABLES", "DEFAULT_UDP_TABLES", "ScannerImc", "open_ports"]

log = Logger(namespace="nac.client.scanner")

DEFAULT_TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
DEFAULT_UDP_TABLES = ("/proc/net/udp", "/proc/net/udp6")

TCP, UDP = 6, 17
_TCP_LISTEN = "0A"


def _address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # the kernel prints each 32-bit word of the address in host (little-endian) order
    raw = bytes.fromhex(hex_addr)
    return ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))


def _is_loopback(addr) -> bool:
    if addr.is_loopback:
        return True
    mapped = getattr(addr, "ipv4_mapped", None)
    return mapped is not None and mapped.is_loopback


def _sockets(path: str | Path, protocol: int) -> Iterable[int]:
    """Local ports of the listening sockets in one /proc/net table."""
    try:
        lines = Path(path).read_text().splitlines()[1:]
    except OSError as exc:
        log.debug("cannot read {path}: {err}", path=str(path), err=exc.strerror)
        return
    for line in lines:
        fields = line.split(None, 4)
        if len(fields) < 4:
            continue
        # the state and remote address decide first: a busy host has tens of
        # thousands of connected sockets and only a few listening ones
        if protocol == TCP:
            if fields[3] != _TCP_LISTEN:
                continue
        else:
            remote_hex, _, remote_port = fields[2].partition(":")
            if remote_port.strip("0") or remote_hex.strip("0"):
                continue  # a connected UDP socket is a client
        try:
            local_hex, local_port = fields[1].split(":")
            local = _address(local_hex)
            port = int(local_port, 16)
        except ValueError:
            log.warn("{path}: unreadable line {line!r}", path=str(path), line=line[:80])
            continue
        if _is_loopback(local):
            continue
        yield port


def open_ports(tcp: Sequence[str | Path] = DEFAULT_TCP_TABLES,
               udp: Sequence[str | Path] = DEFAULT_UDP_TABLES) -> tuple[PortEntry, ...]:
    """Listening TCP and bound UDP ports reachable from outside, TCP first,
    each (protocol, port) once, in table order."""
    seen: set[tuple[int, int]] = set()
    entries: list[PortEntry] = []
    for protocol, tables in ((TCP, tcp), (UDP, udp)):
        for table in tables:
            for port in _sockets(table, protocol):
                if (protocol, port) not in seen:
                    seen.add((protocol, port))
                    entries.append(PortEntry(protocol, port, False))
    return tuple(entries)


class ScannerImc(PaTncImc):
    """strongSwan's Scanner IMC: a Port Filter attribute (NOSKIP) of the
    open ports, first thing and whenever an IMV asks for one."""

    name = "Scanner"
    subtype = PaSubtype.FIREWALL

    def __init__(self, *, tcp: Sequence[str | Path] = DEFAULT_TCP_TABLES,
                 udp: Sequence[str | Path] = DEFAULT_UDP_TABLES):
        self.tcp = tuple(tcp)
        self.udp = tuple(udp)

    def port_filter(self) -> PortFilter:
        entries = open_ports(self.tcp, self.udp)
        log.debug("open ports: {ports}",
                  ports=", ".join(f"{'tcp' if e.protocol == TCP else 'udp'}/{e.port}" for e in entries) or "none")
        return PortFilter(entries, noskip=True)

    def handshake_attributes(self, connection) -> list[PaAttribute]:
        return [self.port_filter()]

    def reply_attributes(self, connection, message: ReceivedPaMessage,
                         attributes: tuple[PaAttribute, ...]) -> list[PaAttribute]:
        for attribute in attributes:
            if isinstance(attribute, AttributeRequest) and \
                    (PaVendor.IETF, IetfAttributeType.PORT_FILTER) in attribute.requested:
                return [self.port_filter()]
        return []
