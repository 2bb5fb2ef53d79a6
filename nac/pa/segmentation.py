"""IF-M Segmentation (TCG IF-M Segmentation Specification), sans-IO.

An attribute too large for one PA-TNC message travels as a series of
Segment Envelopes sharing a Base Attribute ID (24 bits): the first (START)
segment begins with the base attribute's 12-byte header, every segment but
the last has MORE set, and the receiver asks for each further segment with
a Next Segment attribute (or gives up with its Cancel flag).
:class:`Segmenter` is the sending side, :class:`Reassembler` the receiving
side; both only turn attributes into attributes.

How many bytes fit in one segment (strongSwan 6's arithmetic, which the
captured sessions show): the Max Segment Size of a contract counts the
segment bytes of one Segment Envelope, after its 4-byte header.  A peer
whose PA-TNC messages may be M bytes long offers M - 24 (PA-TNC message
header 8, Segment Envelope attribute header 12, envelope header 4).  Over
PB-TNC, M is the batch limit B less 32 (batch header 8, PB message header
12, PB-PA header 12), so a segment carries B - 56 bytes: 32,698 for a
32,754-byte batch limit, 65,466 for strongSwan's default of 65,522.  The
captures show 44,976 over IF-TNCCS 1.1 (strongSwan's 45,000-byte messages)
and 2,097,080 over PT-TLS.

What unfinished attributes hold is bounded three ways: by
``max_attribute_size`` and ``max_pending`` per :class:`Reassembler`, by a
:class:`ReassemblyBudget` of bytes per connection, itself inside one of the
whole process (``[nac] segment_memory_per_connection``, ``segment_memory``),
and by a deadline: an attribute not complete ``timeout`` seconds after its
first segment is dropped (:meth:`Reassembler.expire`).  A segment beyond a
budget, like every other violation, raises :class:`PaTncError`, which the
IMV answers with a PA-TNC Error attribute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from nac.pa.message import (
    ATTRIBUTE_HEADER_SIZE,
    MESSAGE_HEADER_SIZE,
    PaAttribute,
    PaTncError,
    PaTncErrorCode,
    parse_attribute,
)
from nac.pa.tcg import (
    NO_LIMIT,
    SEGMENT_ENVELOPE_HEADER_SIZE,
    MaxAttributeSizeRequest,
    MaxAttributeSizeResponse,
    NextSegment,
    SegmentEnvelope,
)

__all__ = [
    "DEFAULT_MAX_ATTRIBUTE_SIZE",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_SEGMENT_MEMORY",
    "DEFAULT_SEGMENT_MEMORY_PER_CONNECTION",
    "DEFAULT_SEGMENT_TIMEOUT",
    "ReassemblyBudget",
    "Reassembler",
    "Segmenter",
    "contract_response",
    "max_segment_size_for_batch",
    "max_segment_size_for_message",
    "needs_segmentation",
]

#: PB-TNC batch header + PB-TNC message header + PB-PA header (RFC 5793 §4).
PB_TNC_OVERHEAD = 8 + 12 + 12
#: PA-TNC message header + Segment Envelope attribute header + envelope header.
SEGMENT_OVERHEAD = MESSAGE_HEADER_SIZE + ATTRIBUTE_HEADER_SIZE + SEGMENT_ENVELOPE_HEADER_SIZE

DEFAULT_MAX_ATTRIBUTE_SIZE = 8 * 1024 * 1024
DEFAULT_MAX_PENDING = 16
#: Bytes of unfinished segmented attributes in one process (``[nac] segment_memory``).
DEFAULT_SEGMENT_MEMORY = 256 * 1024 * 1024
#: ... and in one connection, over all its IMVs (``[nac] segment_memory_per_connection``).
DEFAULT_SEGMENT_MEMORY_PER_CONNECTION = 32 * 1024 * 1024
#: Seconds from the first segment of an attribute to its last (``[nac] segment_timeout``).
DEFAULT_SEGMENT_TIMEOUT = 120.0


def max_segment_size_for_message(max_message_size: int) -> int:
    """Max Segment Size to offer when PA-TNC messages may be ``max_message_size`` bytes."""
    return max_message_size - SEGMENT_OVERHEAD


def max_segment_size_for_batch(max_batch_size: int) -> int:
    """Max Segment Size to offer when PB-TNC batches may be ``max_batch_size`` bytes."""
    return max_segment_size_for_message(max_batch_size - PB_TNC_OVERHEAD)


def contract_response(request: MaxAttributeSizeRequest, max_message_size: int) -> MaxAttributeSizeResponse:
    """The Max Attribute Size Response accepting ``request``: its attribute
    size, and its segment size unless segments that large would not fit
    our PA-TNC messages of ``max_message_size`` bytes."""
    max_segment = request.max_segment_size
    ours = max_segment_size_for_message(max_message_size)
    if max_segment != NO_LIMIT and max_segment > ours:
        max_segment = ours  # a segment must fit one of our PA-TNC messages
    return MaxAttributeSizeResponse(request.max_attribute_size, max_segment)


def needs_segmentation(attribute_size: int, max_segment_size: int) -> bool:
    """Whether a built attribute of ``attribute_size`` bytes must be segmented.

    Sent whole it takes the room of a full Segment Envelope as long as its
    value is at most the segment size plus the 4-byte envelope header.
    """
    if max_segment_size == NO_LIMIT:
        return False
    return attribute_size - ATTRIBUTE_HEADER_SIZE > max_segment_size + SEGMENT_ENVELOPE_HEADER_SIZE


class Segmenter:
    """Sends one base attribute as Segment Envelopes (the sending side).

    Send :meth:`first_segment`, then answer each Next Segment from the peer
    with :meth:`on_next_segment`, which gives the next envelope, or None
    once the peer cancelled or everything was sent.
    """

    def __init__(self, attribute: PaAttribute | bytes, *, base_attribute_id: int, max_segment_size: int) -> None:
        data = attribute if isinstance(attribute, bytes) else attribute.build()
        if len(data) < ATTRIBUTE_HEADER_SIZE:
            raise ValueError("a base attribute has at least its 12-byte header")
        if not ATTRIBUTE_HEADER_SIZE <= max_segment_size < len(data):
            # the header is never split, and a single segment needs no envelope
            raise ValueError(f"{len(data)}-byte attribute cannot be segmented in {max_segment_size}-byte segments")
        if not 0 <= base_attribute_id <= 0xFFFFFF:
            raise ValueError("Base Attribute ID has 24 bits")
        self.base_attribute_id = base_attribute_id
        self.max_segment_size = max_segment_size
        self.cancelled = False
        self._data = data
        self._sent = 0

    @property
    def size(self) -> int:
        """Size of the whole base attribute."""
        return len(self._data)

    @property
    def done(self) -> bool:
        return self.cancelled or self._sent == len(self._data)

    def first_segment(self, space: int | None = None) -> SegmentEnvelope:
        """The START envelope; ``space``: room left in the PA-TNC message for it
        (headers included), when less than a full segment fits."""
        if self._sent:
            raise ValueError("the first segment was already sent")
        size = self.max_segment_size
        if space is not None:
            size = min(size, space - ATTRIBUTE_HEADER_SIZE - SEGMENT_ENVELOPE_HEADER_SIZE)
        if size < ATTRIBUTE_HEADER_SIZE:
            raise ValueError(f"no room for a first segment in {space} bytes")
        return self._envelope(size, start=True)

    def next_segment(self) -> SegmentEnvelope | None:
        if not self._sent:
            return self.first_segment()
        if self.done:
            return None
        return self._envelope(self.max_segment_size, start=False)

    def on_next_segment(self, request: NextSegment) -> SegmentEnvelope | None:
        """The envelope answering ``request`` (None after a Cancel or the last one)."""
        if request.base_attribute_id != self.base_attribute_id:
            raise ValueError(f"Next Segment for base attribute {request.base_attribute_id}, "
                             f"not {self.base_attribute_id}")
        if request.cancel:
            self.cancelled = True
            return None
        return self.next_segment()

    def __iter__(self) -> Iterator[SegmentEnvelope]:
        """Every envelope in order, as if the peer asked for each."""
        while (envelope := self.next_segment()) is not None:
            yield envelope

    def _envelope(self, size: int, *, start: bool) -> SegmentEnvelope:
        chunk = self._data[self._sent:self._sent + size]
        self._sent += len(chunk)
        return SegmentEnvelope(self.base_attribute_id, chunk, more=self._sent < len(self._data), start=start)


class ReassemblyBudget:
    """Bytes that unfinished segmented attributes may hold: at most
    ``limit`` here and within every ``parent`` (a connection's budget
    inside the process's).  ``timeout`` (seconds, None: none) is how long
    an attribute may take from its first segment to its last, on
    ``clock`` (monotonic seconds).  ``name`` says in errors which limit
    it is."""

    __slots__ = ("limit", "parent", "name", "timeout", "clock", "held", "closed")

    def __init__(self, limit: int, parent: ReassemblyBudget | None = None, *, name: str = "reassembly budget",
                 timeout: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.parent = parent
        self.name = name
        self.timeout = timeout
        self.clock = clock
        self.held = 0
        self.closed = False

    def child(self, limit: int, *, name: str) -> ReassemblyBudget:
        """A budget of ``limit`` bytes within this one, with its timeout and clock."""
        return ReassemblyBudget(limit, self, name=name, timeout=self.timeout, clock=self.clock)

    def reserve(self, size: int) -> ReassemblyBudget | None:
        """Take ``size`` bytes; None when they were taken, else the budget
        (this one or a parent) without room for them (nothing is taken)."""
        if self.closed:
            return self
        budget: ReassemblyBudget | None = self
        while budget is not None:
            if budget.held + size > budget.limit:
                return budget
            budget = budget.parent
        budget = self
        while budget is not None:
            budget.held += size
            budget = budget.parent
        return None

    def release(self, size: int) -> None:
        """Give back ``size`` bytes taken with :meth:`reserve`."""
        if self.closed:
            return  # close() gave back everything already
        budget: ReassemblyBudget | None = self
        while budget is not None:
            budget.held = max(0, budget.held - size)
            budget = budget.parent

    def close(self) -> None:
        """Give back everything this budget holds (its connection ended);
        nothing is taken from it afterwards."""
        if not self.closed:
            if self.parent is not None:
                self.parent.release(self.held)
            self.held = 0
            self.closed = True


class _Pending:
    __slots__ = ("length", "parts", "received", "started")

    def __init__(self, length: int, first: bytes, started: float) -> None:
        self.length = length
        self.parts = [first]
        self.received = len(first)
        self.started = started


class Reassembler:
    """Collects Segment Envelopes per Base Attribute ID (the receiving side).

    :meth:`add` returns None while more segments are due (answer with
    ``NextSegment(envelope.base_attribute_id)``), and the parsed base
    attribute once its last segment arrived.  Violations raise
    :class:`PaTncError` (Invalid Parameter) and drop that base attribute:
    like strongSwan, errors name the segmented attribute through the message
    header 0xffffffff + Base Attribute ID (32 bits) and offsets inside the
    base attribute.  ``max_attribute_size`` bounds one base attribute,
    ``max_pending`` how many are being reassembled at once, ``budget`` (a
    :class:`ReassemblyBudget`) the bytes they hold together with those of
    the connection's other reassemblers, and its ``timeout`` how long one
    may take (see :meth:`expire`).
    """

    def __init__(
        self,
        *,
        max_attribute_size: int = DEFAULT_MAX_ATTRIBUTE_SIZE,
        max_pending: int = DEFAULT_MAX_PENDING,
        budget: ReassemblyBudget | None = None,
    ) -> None:
        self.max_attribute_size = max_attribute_size
        self.max_pending = max_pending
        self.budget = budget
        self._pending: dict[int, _Pending] = {}

    @property
    def pending(self) -> tuple[int, ...]:
        """Base Attribute IDs still waiting for segments."""
        return tuple(self._pending)

    def received(self, base_attribute_id: int) -> int:
        """Bytes of that base attribute received so far (0 when unknown)."""
        pending = self._pending.get(base_attribute_id)
        return 0 if pending is None else pending.received

    def cancel(self, base_attribute_id: int) -> NextSegment:
        """Forget a base attribute; returns the Next Segment (Cancel) to send."""
        self._drop(base_attribute_id)
        return NextSegment(base_attribute_id, cancel=True)

    def clear(self) -> None:
        """Forget every base attribute (the IMV's state is replaced)."""
        for base_id in list(self._pending):
            self._drop(base_id)

    def expire(self) -> dict[int, PaTncError]:
        """Drop the base attributes whose first segment is older than the
        budget's timeout: Base Attribute ID -> the error to answer (and log)."""
        budget = self.budget
        if budget is None or budget.timeout is None or not self._pending:
            return {}
        now = budget.clock()
        errors = {}
        for base_id, pending in list(self._pending.items()):
            if now - pending.started >= budget.timeout:
                self._drop(base_id)
                errors[base_id] = _error(base_id, 1, f"base attribute ID {base_id} was not complete within "
                                                     f"{budget.timeout:g} s ({pending.received} of "
                                                     f"{pending.length} bytes received)")
        return errors

    def _drop(self, base_id: int) -> None:
        pending = self._pending.pop(base_id, None)
        if pending is not None and self.budget is not None:
            self.budget.release(pending.received)

    def _charge(self, base_id: int, size: int) -> None:
        if self.budget is None:
            return
        full = self.budget.reserve(size)
        if full is not None:
            raise _error(base_id, 1, f"segment of {size} bytes exceeds the {full.limit}-byte {full.name} "
                                     f"of unfinished segmented attributes ({full.held} bytes held)")

    def add(self, envelope: SegmentEnvelope) -> PaAttribute | None:
        base_id = envelope.base_attribute_id
        if envelope.start and base_id in self._pending:
            # like strongSwan: the attribute in progress goes on
            raise _error(base_id, 1, f"base attribute ID {base_id} is already in use")
        try:
            if envelope.start:
                pending = self._start(envelope)
            else:
                pending = self._pending.get(base_id)
                if pending is None:
                    raise _error(base_id, 1, f"no segments pending for base attribute ID {base_id}")
                if pending.received + len(envelope.segment) > pending.length:
                    raise _error(base_id, pending.length,
                                 f"segments exceed the {pending.length}-byte base attribute")
                self._charge(base_id, len(envelope.segment))
                pending.parts.append(envelope.segment)
                pending.received += len(envelope.segment)
            if pending.received > pending.length:
                raise _error(base_id, pending.length, f"segments exceed the {pending.length}-byte base attribute")
            if envelope.more:
                if pending.received == pending.length:
                    raise _error(base_id, 0, "MORE flag set after the last byte of the base attribute")
                return None
            if pending.received < pending.length:
                raise _error(base_id, 8, f"last segment leaves the base attribute {pending.received} "
                                         f"of {pending.length} bytes long")
            self._drop(base_id)
            data = b"".join(pending.parts)
            try:
                attribute, _ = parse_attribute(data, 0)
            except PaTncError as err:
                err.message_header = _base_header(base_id)
                raise
            return attribute
        except PaTncError:
            self._drop(base_id)
            raise

    def _start(self, envelope: SegmentEnvelope) -> _Pending:
        base_id, segment = envelope.base_attribute_id, envelope.segment
        if len(self._pending) >= self.max_pending:
            raise _error(base_id, 1, f"more than {self.max_pending} segmented attributes at once")
        if len(segment) < ATTRIBUTE_HEADER_SIZE:
            raise _error(base_id, 0, "first segment is shorter than the base attribute header")
        length = int.from_bytes(segment[8:12], "big")
        if length < ATTRIBUTE_HEADER_SIZE:
            raise _error(base_id, 8, f"base attribute length {length} is shorter than its header")
        if length > self.max_attribute_size:
            raise _error(base_id, 8, f"base attribute of {length} bytes exceeds the "
                                     f"{self.max_attribute_size}-byte limit")
        if len(segment) > length:
            raise _error(base_id, length, f"segments exceed the {length}-byte base attribute")
        self._charge(base_id, len(segment))
        pending = _Pending(length, segment, self.budget.clock() if self.budget is not None else 0.0)
        self._pending[base_id] = pending
        return pending


def _base_header(base_id: int) -> bytes:
    return b"\xff\xff\xff\xff" + base_id.to_bytes(4, "big")


def _error(base_id: int, offset: int, reason: str) -> PaTncError:
    return PaTncError(PaTncErrorCode.INVALID_PARAMETER, reason, offset=offset, message_header=_base_header(base_id))
