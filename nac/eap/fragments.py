"""The Flags/Version framing and fragmentation that EAP-TTLS, EAP-TNC and
PT-EAP share.

EAP-TTLS (RFC 5281 §9.1) and EAP-TNC (TCG IF-T for EAP, as hostap and
strongSwan speak it) put a flags octet first: L (0x80, a 4-byte Message
Length follows), M (0x40, more fragments follow), S (0x20, start) and a
3-bit version.  PT-EAP (RFC 7171 §3.3) has only S, as its first bit (0x80),
and no length field; strongSwan still sets M (0x40) when it must split a
message, so that is understood too.

A fragment is answered by an "ACK": a packet whose type-data is the flags
octet alone.  :class:`FragmentChannel` does both directions for the server:
it reassembles what the peer sends (answering fragments with ACKs) within a
size limit, and splits what the server sends into fragments of at most
``fragment_size`` type-data bytes, as hostapd's ``fragment_size`` counts them
(flags octet and length field included).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from nac.log import Logger, LogLevel

__all__ = [
    "EAP_TNC",
    "EAP_TTLS",
    "Fragment",
    "FragmentChannel",
    "FragmentError",
    "Framing",
    "MIN_FRAGMENT_SIZE",
    "PT_EAP",
    "Received",
]

log = Logger(namespace="nac.eap")

_LENGTH = struct.Struct(">I")
VERSION_MASK = 0x07
MAX_TYPE_DATA = 0xFFFF - 5
"""Type-data bytes of the largest EAP packet."""
MIN_FRAGMENT_SIZE = 16
"""Smallest ``fragment_size``: the flags, a Message Length and some data."""


class FragmentError(Exception):
    """A framing or reassembly violation; ``offset`` is in the type-data."""

    def __init__(self, reason: str, offset: int = 0):
        super().__init__(f"{reason} (offset {offset})")
        self.reason = reason
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Fragment:
    """One packet's type-data, decoded.

    ``flags`` is the whole octet as received (reserved bits and all);
    ``bare`` marks a packet without even the flags octet (hostapd's EAP-TNC
    accepts such ACKs).
    """

    flags: int
    data: bytes = b""
    message_length: int | None = None
    bare: bool = False


@dataclass(frozen=True, slots=True)
class Framing:
    """Where a method keeps its flags."""

    name: str
    version: int
    start: int
    more: int
    length: int | None

    def parse(self, type_data: bytes) -> Fragment:
        if not type_data:
            return Fragment(self.version, bare=True)
        flags = type_data[0]
        if self.length is not None and flags & self.length:
            if len(type_data) < 5:
                raise FragmentError(f"{self.name} packet too short for its Message Length", 1)
            (length,) = _LENGTH.unpack_from(type_data, 1)
            return Fragment(flags, bytes(type_data[5:]), length)
        return Fragment(flags, bytes(type_data[1:]))

    def build(self, fragment: Fragment) -> bytes:
        if fragment.bare:
            return b""
        flags = fragment.flags
        if fragment.message_length is not None:
            if self.length is None:
                raise ValueError(f"{self.name} has no Message Length field")
            return bytes((flags | self.length,)) + _LENGTH.pack(fragment.message_length) + fragment.data
        return bytes((flags,)) + fragment.data

    def start_packet(self) -> bytes:
        """The server's first Request: S and the version."""
        return bytes((self.start | self.version,))

    def ack(self) -> bytes:
        return bytes((self.version,))

    def is_start(self, fragment: Fragment) -> bool:
        return not fragment.bare and bool(fragment.flags & self.start)

    def is_more(self, fragment: Fragment) -> bool:
        return not fragment.bare and bool(fragment.flags & self.more)


EAP_TTLS = Framing("EAP_TTLS", version=0, start=0x20, more=0x40, length=0x80)
EAP_TNC = Framing("EAP_TNC", version=1, start=0x20, more=0x40, length=0x80)
PT_EAP = Framing("EAP_PT_EAP", version=1, start=0x80, more=0x40, length=None)


@dataclass(frozen=True, slots=True)
class Received:
    """What one peer packet amounts to.

    Either ``send`` is set: type-data the server must send now (its ACK of a
    peer fragment, or its next fragment after the peer's ACK); or
    ``message`` is set: a whole message from the peer (``b""`` for an empty
    packet that acknowledged nothing, such as a TTLS peer's reply to an
    MS-CHAP2-Success or a TNC client's last acknowledgement).
    """

    send: bytes | None = None
    message: bytes | None = None


class FragmentChannel:
    """Both directions of one method's fragmented messages, server side."""

    def __init__(self, framing: Framing, *, fragment_size: int | None, max_message_size: int):
        if fragment_size is not None and fragment_size < MIN_FRAGMENT_SIZE:
            raise ValueError(f"fragment_size must leave room for data (at least {MIN_FRAGMENT_SIZE})")
        self.framing = framing
        self.fragment_size = min(fragment_size or MAX_TYPE_DATA, MAX_TYPE_DATA)
        self.max_message_size = max_message_size
        self._in: bytearray | None = None
        self._in_expected: int | None = None
        self._out: memoryview | None = None

    @property
    def sending(self) -> bool:
        """True while fragments of an outgoing message wait for the peer's ACKs."""
        return self._out is not None

    @property
    def receiving(self) -> bool:
        """True between a peer's first and last fragment."""
        return self._in is not None

    # -- outgoing ---------------------------------------------------------------------

    def send(self, message: bytes) -> bytes:
        """Type-data of the first (or only) packet of ``message``."""
        if self._out is not None:
            raise RuntimeError(f"{self.framing.name}: previous message still being sent")
        if len(message) + 1 <= self.fragment_size:
            return bytes((self.framing.version,)) + message
        self._out = memoryview(message)
        return self._next(first=True, total=len(message))

    def _next(self, *, first: bool = False, total: int = 0) -> bytes:
        f = self.framing
        out = self._out
        room = self.fragment_size - 1
        header = bytes((f.version,))
        if first and f.length is not None:
            room -= 4
            header = bytes((f.version | f.length,)) + _LENGTH.pack(total)
        if len(out) > room:
            self._out = out[room:]
            return bytes((header[0] | f.more,)) + header[1:] + out[:room]
        self._out = None
        return header + out

    # -- incoming ---------------------------------------------------------------------

    def receive(self, type_data: bytes) -> Received:
        """Handle one peer packet; raises :class:`FragmentError`."""
        f = self.framing
        frag = f.parse(type_data)
        if self._out is not None:
            if frag.data or frag.message_length is not None:
                raise FragmentError(f"{f.name} data received while waiting for a fragment ACK", 1)
            return Received(send=self._next())
        if frag.bare or (not frag.data and frag.message_length is None and not f.is_more(frag)):
            # an ACK-shaped packet that acknowledges nothing; its version is not checked
            # (strongSwan sends PT-EAP ACKs with version 0)
            if self._in is not None:
                raise FragmentError(f"{f.name} empty packet in the middle of a fragmented message", 0)
            if f.is_start(frag):
                raise FragmentError(f"{f.name} packet from the peer with the Start flag", 0)
            return Received(message=b"")
        if frag.flags & VERSION_MASK != f.version:
            raise FragmentError(f"received {f.name} packet with unsupported version "
                                f"v{frag.flags & VERSION_MASK}", 0)
        if f.is_start(frag):
            raise FragmentError(f"{f.name} packet from the peer with the Start flag", 0)
        more = f.is_more(frag)
        if frag.message_length is not None:
            if frag.message_length > self.max_message_size:
                raise FragmentError(f"{f.name} Message Length {frag.message_length} exceeds the "
                                    f"{self.max_message_size}-byte limit", 1)
            if self._in is None:
                if frag.message_length < len(frag.data) or (not more and frag.message_length != len(frag.data)):
                    raise FragmentError(f"{f.name} Message Length {frag.message_length} does not match "
                                        f"the {len(frag.data)} bytes sent", 1)
                self._in_expected = frag.message_length
        if more and not frag.data:
            raise FragmentError(f"{f.name} fragment without data", 0)
        if self._in is None:
            if not more:
                return Received(message=frag.data)
            self._in = bytearray()
        self._in += frag.data
        size = len(self._in)
        limit = self._in_expected if self._in_expected is not None else self.max_message_size
        if size > limit:
            self._reset_in()
            raise FragmentError(f"{f.name} fragments exceed the {limit}-byte message", 0)
        if more:
            if LogLevel.debug in Logger.enabled:
                log.debug("received {name} fragment ({n} bytes, {total} so far); sending acknowledgement",
                          name=f.name, n=len(frag.data), total=size)
            return Received(send=f.ack())
        if self._in_expected is not None and size != self._in_expected:
            expected = self._in_expected
            self._reset_in()
            raise FragmentError(f"{f.name} message of {size} bytes, Message Length said {expected}", 0)
        message = bytes(self._in)
        self._reset_in()
        return Received(message=message)

    def _reset_in(self) -> None:
        self._in = None
        self._in_expected = None
