"""PB-TNC batches (RFC 5793 §4.1): an 8-byte header and zero or more messages."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from nac.pb.messages import (
    _REGISTRY,
    MESSAGE_HEADER_SIZE,
    PB_TNC_VERSION,
    RESERVED_TYPE,
    RESERVED_VENDOR,
    PbErrorCode,
    PbExperimental,
    PbMessage,
    PbMessageType,
    PbTncError,
    PbVendor,
    UnknownPbMessage,
    fast_constructor,
    make_pa,
    make_unknown,
    pb_pa_header_error,
)

__all__ = ["BATCH_HEADER_SIZE", "BatchType", "Direction", "PbBatch", "PbErrorCode", "PbTncError"]

BATCH_HEADER_SIZE = 8
_BATCH_HEADER = struct.Struct(">BBxBI")
_MSG_HEADER = struct.Struct(">III")
_PA_HEADER = struct.Struct(">IIHH")
_D_BIT = 0x80
# plain ints: comparing with these is cheaper than with enum members
_IETF = int(PbVendor.IETF)
_PB_PA = int(PbMessageType.PA)


class BatchType(IntEnum):
    """PB-TNC B-Type (RFC 5793 §4.1)."""

    CDATA = 1
    SDATA = 2
    RESULT = 3
    CRETRY = 4
    SRETRY = 5
    CLOSE = 6


class Direction(IntEnum):
    """The D bit of the batch header: 1 means the batch comes from the server."""

    TO_SERVER = 0
    TO_CLIENT = 1

    @property
    def label(self) -> str:
        return "client-to-server" if self is Direction.TO_SERVER else "server-to-client"


# enum lookups by value without the cost of calling the enum class
_BATCH_TYPES: tuple[BatchType | None, ...] = (None, *BatchType, *(None,) * (16 - 1 - len(BatchType)))
_DIRECTIONS = (Direction.TO_SERVER, Direction.TO_CLIENT)


@dataclass(frozen=True, slots=True)
class PbBatch:
    """One PB-TNC batch (RFC 5793 §4.1).

    ``message_offsets`` holds the batch offset of each message when the batch
    was parsed (empty when built locally); it is left out of equality.
    """

    HEADER_SIZE: ClassVar[int] = BATCH_HEADER_SIZE

    batch_type: BatchType
    direction: Direction
    messages: tuple[PbMessage, ...] = ()
    version: int = PB_TNC_VERSION
    message_offsets: tuple[int, ...] = field(default=(), compare=False, repr=False)
    # The bytes a parsed batch came from, when build() would reproduce them
    # exactly (see parse); the batch and its messages are immutable, so
    # build() can return them as they are.  Never set on a batch built locally.
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)

    # -- decoding -----------------------------------------------------------

    @classmethod
    def parse_header(cls, data: bytes) -> tuple[int, Direction, BatchType, int]:
        """Check a batch header; return (version, direction, batch type, length).

        Raises ``PbTncError`` the way RFC 5793 §4.1 says to answer: fatal
        Version Not Supported for a version other than 2, fatal Invalid
        Parameter pointing at the B-Type for an unknown batch type.
        """
        if len(data) < BATCH_HEADER_SIZE:
            raise PbTncError.invalid_parameter(0, f"{len(data)} bytes are too few for a PB-TNC batch header")
        version, flags, btype, length = _BATCH_HEADER.unpack_from(data)
        if version != PB_TNC_VERSION:
            raise PbTncError.version_not_supported(version)
        batch_type = _BATCH_TYPES[btype & 0x0F]  # B-Type is the low 4 bits; the rest is Reserved
        if batch_type is None:
            # strongSwan answers an unknown B-Type the same way
            raise PbTncError.invalid_parameter(3, f"unknown PB-TNC batch type {btype & 0x0F}")
        return version, _DIRECTIONS[flags >> 7], batch_type, length

    @classmethod
    def parse(
        cls,
        data: bytes,
        *,
        max_size: int | None = None,
        max_messages: int = 10000,
        expect_direction: Direction | None = None,
    ) -> PbBatch:
        """Decode a whole batch; raises only ``PbTncError``.

        Unknown message types become ``UnknownPbMessage``: whether a NOSKIP
        one is fatal is the state machine's call (``first_unsupported_noskip``).
        With ``expect_direction``, a batch whose D bit says otherwise is a
        fatal Invalid Parameter at offset 1 (as strongSwan answers it).
        """
        # Every batch of every connection comes through here, so the common
        # case is checked inline, with as few calls as possible; anything
        # unusual goes to the code that names the field at fault
        # (parse_header, _message_header_error, the message classes).
        if type(data) is not bytes:
            data = bytes(data)
        total = len(data)
        if total < BATCH_HEADER_SIZE:
            cls.parse_header(data)  # raises
        version, flags, btype, length = _BATCH_HEADER.unpack_from(data)
        batch_type = _BATCH_TYPES[btype & 0x0F]  # B-Type is the low 4 bits; the rest is Reserved
        if version != PB_TNC_VERSION or batch_type is None:
            cls.parse_header(data)  # raises
        direction = _DIRECTIONS[flags >> 7]
        if expect_direction is not None and direction != expect_direction:
            raise PbTncError.invalid_parameter(1, f"batch is {direction.label}, expected {expect_direction.label}")
        if max_size is not None and length > max_size:
            raise PbTncError.invalid_parameter(4, f"batch length {length} exceeds the maximum of {max_size}")
        if length != total:
            raise PbTncError.invalid_parameter(4, f"batch length {length} does not match the {total} bytes received")

        # ``verbatim``: whether build() would give back exactly ``data``, so
        # the batch keeps it and a parse → build round trip costs nothing.
        # It holds unless a reserved bit is set (build() writes zeros there)
        # or a message's value may have one (not _REBUILDS_EXACTLY).
        verbatim = not (flags & 0x7F or btype & 0xF0 or data[2])
        messages: list[PbMessage] = []
        offsets: list[int] = []
        registry = _REGISTRY
        unpack = _MSG_HEADER.unpack_from
        unpack_pa = _PA_HEADER.unpack_from
        pos = BATCH_HEADER_SIZE
        while pos < total:
            if total - pos < MESSAGE_HEADER_SIZE or len(messages) >= max_messages:
                raise _message_header_error(data, pos, len(messages), max_messages)
            first, msg_type, msg_len = unpack(data, pos)
            end = pos + msg_len
            vendor = first & 0xFFFFFF
            if msg_len < MESSAGE_HEADER_SIZE or end > total or vendor == RESERVED_VENDOR or msg_type == RESERVED_TYPE:
                raise _message_header_error(data, pos, len(messages), max_messages)
            if first & 0x7F000000:
                verbatim = False
            if msg_type == _PB_PA and vendor == _IETF and msg_len >= 24:
                # PB-PA (RFC 5793 §4.5) is nearly every message a batch
                # carries: parsed here, without a call.  One too short for
                # its 12-byte header goes to PbPa.parse_value, which says so.
                pa_first, subtype, collector, validator = unpack_pa(data, pos + 12)
                pa_vendor = pa_first & 0xFFFFFF
                if pa_vendor == RESERVED_VENDOR or subtype == RESERVED_TYPE:
                    raise pb_pa_header_error(pa_vendor, subtype, pos + 12)
                if pa_first & 0x7F000000:
                    verbatim = False
                msg: PbMessage = make_pa(pa_vendor, subtype, collector, validator, data[pos + 24:end],
                                         pa_first >= 0x80000000, first >= 0x80000000)
            else:
                message_class = registry.get((vendor, msg_type))
                if message_class is None:
                    msg = make_unknown(vendor, msg_type, data[pos + 12:end], first >= 0x80000000)
                else:
                    msg = message_class.parse_value(data[pos + 12:end], noskip=first >= 0x80000000,
                                                    offset=pos + 12)
                    if not message_class._REBUILDS_EXACTLY:
                        verbatim = False
            messages.append(msg)
            offsets.append(pos)
            pos = end
        return _make_batch(batch_type, direction, tuple(messages), version, tuple(offsets),
                           data if verbatim else None)

    # -- encoding -----------------------------------------------------------

    def build(self) -> bytes:
        if self._wire is not None:
            return self._wire
        body = b"".join([m.build() for m in self.messages])
        header = _BATCH_HEADER.pack(
            self.version,
            _D_BIT if self.direction == Direction.TO_CLIENT else 0,
            self.batch_type,
            BATCH_HEADER_SIZE + len(body),
        )
        return header + body

    @property
    def size(self) -> int:
        """Encoded size in bytes (header included)."""
        if self._wire is not None:
            return len(self._wire)
        return BATCH_HEADER_SIZE + sum(m.size for m in self.messages)

    # -- helpers for the state machine --------------------------------------

    def offsets(self) -> tuple[int, ...]:
        """Batch offset of each message (as parsed, or as ``build`` lays them out)."""
        if len(self.message_offsets) == len(self.messages):
            return self.message_offsets
        result, pos = [], BATCH_HEADER_SIZE
        for msg in self.messages:
            result.append(pos)
            pos += msg.size
        return tuple(result)

    def first_unsupported_noskip(self) -> tuple[int, PbMessage] | None:
        """The first message that must be refused with Unsupported Mandatory Message.

        That is an unknown message type with NOSKIP set, or a NOSKIP
        PB-Experimental (RFC 5793 §4.4).  Returns (batch offset, message).
        """
        for pos, msg in zip(self.offsets(), self.messages):
            if msg.noskip and isinstance(msg, (UnknownPbMessage, PbExperimental)):
                return pos, msg
        return None

    def unsupported_noskip_error(self) -> PbTncError | None:
        """``first_unsupported_noskip`` as the error to answer with, if any."""
        found = self.first_unsupported_noskip()
        if found is None:
            return None
        pos, msg = found
        return PbTncError.unsupported_mandatory_message(pos, msg.msg_vendor, msg.msg_type)

    def misplaced_result_messages(self) -> tuple[tuple[int, PbMessage], ...]:
        """Result-only messages (§4.6-§4.8, §4.11) found outside a RESULT batch."""
        if self.batch_type == BatchType.RESULT:
            return ()
        return tuple((pos, m) for pos, m in zip(self.offsets(), self.messages) if m.RESULT_ONLY)

    @staticmethod
    def fits(current_size: int, message: PbMessage, max_size: int) -> bool:
        """Whether ``message`` still fits a batch of ``current_size`` bytes."""
        return current_size + message.size <= max_size

    @classmethod
    def fill(
        cls,
        batch_type: BatchType,
        direction: Direction,
        messages: tuple[PbMessage, ...] | list[PbMessage],
        max_size: int,
    ) -> tuple[PbBatch, tuple[PbMessage, ...]]:
        """Take messages in order while they fit ``max_size``; return (batch, rest).

        A first message larger than ``max_size`` on its own stays in the rest,
        so the caller sees an empty batch and can decide (split the PA message
        or fail).
        """
        size, taken = BATCH_HEADER_SIZE, 0
        for msg in messages:
            size += msg.size
            if size > max_size:
                break
            taken += 1
        return cls(batch_type, direction, tuple(messages[:taken])), tuple(messages[taken:])


def _message_header_error(data: bytes, pos: int, count: int, max_messages: int) -> PbTncError:
    """What is wrong with the message header at ``pos`` (RFC 5793 §4.2)."""
    total = len(data)
    if total - pos < MESSAGE_HEADER_SIZE:
        return PbTncError.invalid_parameter(pos, f"{total - pos} bytes are too few for a PB-TNC message header")
    if count >= max_messages:
        return PbTncError.local_error(f"more than {max_messages} messages in one batch")
    first, msg_type, msg_len = _MSG_HEADER.unpack_from(data, pos)
    if msg_len < MESSAGE_HEADER_SIZE:
        return PbTncError.invalid_parameter(pos + 8, f"message length {msg_len} is below the 12-byte header")
    if pos + msg_len > total:
        return PbTncError.invalid_parameter(pos + 8, f"message length {msg_len} overruns the batch")
    if first & 0xFFFFFF == RESERVED_VENDOR:
        return PbTncError.invalid_parameter(pos + 1, "PB-TNC Vendor ID 0xffffff is reserved")
    if msg_type == RESERVED_TYPE:
        return PbTncError.invalid_parameter(pos + 4, "PB-TNC Message Type 0xffffffff is reserved")
    raise AssertionError(f"no fault in the message header at {pos}")  # pragma: no cover


_make_batch = fast_constructor(PbBatch)
