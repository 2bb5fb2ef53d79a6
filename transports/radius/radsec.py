"""RadSec framing, sans-IO: RADIUS packets over a TLS byte stream (RFC 6614 §2.1).

Over TCP a RADIUS packet is delimited by nothing but its own Length field
(RFC 6614 §2.1, RFC 6613 §2.1): feed the decrypted stream to
:meth:`RadsecStream.receive_data`; it returns the whole packets it holds,
however the stream was cut (a packet across several reads, several packets in
one), and keeps the rest for the next read.  A Length below the 20-byte header
or above 4096 (RFC 6613 §2.1 keeps RFC 2865's limit) cannot be resynchronised
on a stream: :class:`RadsecFramingError` names it and the offset, and the
connection must be closed (RFC 6613 §2.4: invalid packets close the
connection rather than being skipped).

The secret of every packet on a RadSec connection is ``radsec``
(:data:`RADSEC_SECRET`, RFC 6614 §2.3); the NAS is who its TLS client
certificate names.  Nothing here touches a socket, TLS or a clock.
"""

from __future__ import annotations

import struct

from transports.radius.packet import HEADER_SIZE, MAX_PACKET_SIZE

__all__ = ["RADSEC_PORT", "RADSEC_SECRET", "RadsecFramingError", "RadsecStream"]

#: IANA's port for RADIUS over TLS (RFC 6614 §2.1)
RADSEC_PORT = 2083
#: the shared secret of every RadSec packet (RFC 6614 §2.3)
RADSEC_SECRET = b"radsec"

_LENGTH = struct.Struct(">H")


class RadsecFramingError(Exception):
    """The stream holds no RADIUS packet at ``offset`` (from the start of
    the connection's stream): the connection must be closed."""

    def __init__(self, reason: str, offset: int):
        super().__init__(f"{reason} (at byte {offset} of the stream)")
        self.reason = reason
        self.offset = offset


class RadsecStream:
    """Cuts one direction of a RadSec connection into RADIUS packets."""

    def __init__(self, max_packet_size: int = MAX_PACKET_SIZE):
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()
        # bytes of the stream already handed out as packets
        self._consumed = 0
        self.failed: RadsecFramingError | None = None

    @property
    def pending(self) -> int:
        """Bytes received that are not yet a whole packet."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> list[bytes]:
        """The whole packets ``data`` completes, in order.

        :raises RadsecFramingError: at a Length no packet can have; the
            stream is then unusable (every later call raises it again).
        """
        if self.failed is not None:
            raise self.failed
        buffer = self._buffer
        buffer += data
        packets = []
        pos = 0
        while len(buffer) - pos >= 4:
            (length,) = _LENGTH.unpack_from(buffer, pos + 2)
            if length < HEADER_SIZE or length > self.max_packet_size:
                del buffer[:pos]
                self._consumed += pos
                self.failed = RadsecFramingError(
                    f"RADIUS Length {length} is outside {HEADER_SIZE}..{self.max_packet_size}", self._consumed + 2)
                raise self.failed
            if len(buffer) - pos < length:
                break
            packets.append(bytes(buffer[pos:pos + length]))
            pos += length
        if pos:
            del buffer[:pos]
            self._consumed += pos
        return packets
