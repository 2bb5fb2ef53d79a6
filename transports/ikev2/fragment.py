"""IKE message fragmentation (RFC 7383).

A protected message too big for the path is sent as several messages, each
with the same header (Message ID included) and one Encrypted Fragment
payload (SKF) holding a piece of the inner payload chain, sealed on its
own: the AAD/ICV covers the IKE header and the SKF header with Fragment
Number and Total Fragments (§2.5).  Only the first fragment's SKF Next
Payload names the first inner payload; the others carry 0.

``fragment_message`` cuts and seals; ``FragmentReassembly`` verifies each
fragment as it arrives (§2.6.2: before it is kept), holds the pieces of one
message within limits, and returns the inner payloads when all are there.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Protocol

from transports.ikev2.message import (
    HEADER_SIZE,
    IkeMessage,
    InvalidSyntax,
    Payload,
    PayloadType,
    build_payloads,
    parse_payloads,
)

__all__ = [
    "DEFAULT_FRAGMENT_SIZE",
    "MAX_FRAGMENTS",
    "FragmentReassembly",
    "InvalidFragment",
    "fragment_message",
    "message_budget",
]

_SKF_HEADER = struct.Struct(">BBHHH")
_SKF_HEADER_SIZE = 8
# strongSwan's charon.fragment_size default: the whole IP datagram of a fragment
DEFAULT_FRAGMENT_SIZE = 1280
# Most fragments nac sends or collects for one message (RFC 7383 §2.5 allows 65535).
MAX_FRAGMENTS = 64


class FragmentCipher(Protocol):
    def sealed_size(self, plaintext_length: int) -> int: ...

    def max_plaintext(self, space: int) -> int: ...

    def seal(self, aad: bytes, plaintext: bytes) -> bytes: ...

    def open(self, aad: bytes, sealed: bytes) -> bytes: ...


class InvalidFragment(InvalidSyntax):
    """A fragment RFC 7383 §2.6.2 says to discard (bad numbering, over the
    limits, out of place).  Dropped silently; the notify is only a label."""


def message_budget(datagram_size: int = DEFAULT_FRAGMENT_SIZE, *, ipv6: bool = False, nat_t: bool = False) -> int:
    """The IKE message size that keeps an IP datagram within ``datagram_size``:
    minus the IP header (20 or 40 bytes), UDP (8) and the non-ESP marker (4)
    on the NAT-T port."""
    return datagram_size - (40 if ipv6 else 20) - 8 - (4 if nat_t else 0)


def fragment_message(message: IkeMessage, inner: Sequence[Payload], protection: FragmentCipher,
                     max_message_size: int) -> list[bytes]:
    """``message`` (its header fields; it must have no unencrypted payloads)
    with ``inner`` cut into SKF-protected fragments of at most
    ``max_message_size`` bytes each, in order."""
    if message.payloads:
        raise ValueError("a fragmented message carries no unencrypted payloads")
    first_inner, plaintext = build_payloads(inner)
    chunk = protection.max_plaintext(max_message_size - HEADER_SIZE - _SKF_HEADER_SIZE)
    if chunk < 1:
        raise ValueError(f"fragments of {max_message_size} bytes cannot carry any data")
    pieces = [plaintext[i:i + chunk] for i in range(0, len(plaintext), chunk)] or [b""]
    total = len(pieces)
    if total > MAX_FRAGMENTS:
        raise ValueError(f"message needs {total} fragments, more than {MAX_FRAGMENTS}")
    fragments = []
    for number, piece in enumerate(pieces, 1):
        sealed_size = protection.sealed_size(len(piece))
        header = message.encode_header(PayloadType.SKF, HEADER_SIZE + _SKF_HEADER_SIZE + sealed_size)
        skf = _SKF_HEADER.pack(first_inner if number == 1 else PayloadType.NONE, 0,
                               _SKF_HEADER_SIZE + sealed_size, number, total)
        aad = header + skf
        fragments.append(aad + protection.seal(aad, piece))
    return fragments


class FragmentBudget:
    """Bytes of unfinished messages all reassemblies may hold together: each
    SA's reassembly is bounded (``max_size``), the responder's IKE SAs
    together by this, so many peers cannot make it buffer without end."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used = max(0, self.used - size)


class FragmentReassembly:
    """The fragments of one message, collected and checked (RFC 7383 §2.6).

    Feed every parsed message whose last payload is SKF with ``add``; the
    caller passes only fragments of the message it expects (the next
    request's Message ID).  Limits: ``max_fragments`` per message and
    ``max_size`` bytes of reassembled plaintext, and what ``budget`` (shared
    by every reassembly of a responder) has left.
    """

    __slots__ = ("max_fragments", "max_size", "_budget", "_message_id", "_total", "_first_payload", "_pieces",
                 "_size", "_exchange", "_flags")

    def __init__(self, max_fragments: int = MAX_FRAGMENTS, max_size: int = 65535,
                 budget: FragmentBudget | None = None) -> None:
        self.max_fragments = max_fragments
        self.max_size = max_size
        self._budget = None
        self._size = 0
        self._reset()
        self._budget = budget

    def _reset(self) -> None:
        if self._budget is not None and self._size:
            self._budget.give(self._size)
        self._message_id: int | None = None
        self._total = 0
        self._first_payload = PayloadType.NONE
        self._pieces: dict[int, bytes] = {}
        self._size = 0
        self._exchange = 0
        self._flags = 0

    @property
    def in_progress(self) -> bool:
        return bool(self._pieces)

    @property
    def received(self) -> int:
        """How many fragments of the current message are held."""
        return len(self._pieces)

    def clear(self) -> None:
        self._reset()

    def add(self, message: IkeMessage, protection: FragmentCipher) -> tuple[Payload, ...] | None:
        """Verify one fragment and keep it; the inner payloads once all
        fragments are in, else None.  ``IntegrityCheckFailed`` for a fragment
        that does not verify, ``InvalidFragment`` for one to discard, and
        ``InvalidSyntax``/``UnsupportedCriticalPayload`` if the reassembled
        chain is bad (the collected fragments are dropped then)."""
        fragment = message.fragment
        if fragment is None:
            raise InvalidFragment("message has no Encrypted Fragment payload")
        number, total = fragment.number, fragment.total
        if not 1 <= number <= total:
            raise InvalidFragment(f"Fragment Number {number} of {total}")
        if total > self.max_fragments:
            raise InvalidFragment(f"{total} fragments, more than {self.max_fragments}")
        if message.payloads[:-1]:
            raise InvalidFragment("unencrypted payloads beside the Encrypted Fragment payload")
        raw = message.raw or message.build()
        plaintext = protection.open(raw[:len(raw) - len(fragment.data)], fragment.data)
        if self._message_id != message.message_id:
            self._reset()
        elif total < self._total:
            # §2.6.2: a fragment of an older, coarser fragmentation of this message
            raise InvalidFragment(f"fragment of {total} when {self._total} are expected")
        elif total > self._total:
            # the sender re-fragmented smaller (PMTU discovery): start over
            self._reset()
        elif (message.exchange, message.flags) != (self._exchange, self._flags):
            raise InvalidFragment("fragment header differs from the other fragments")
        if not self._pieces:
            self._message_id = message.message_id
            self._total = total
            self._exchange = message.exchange
            self._flags = message.flags
        if number in self._pieces:
            return None  # a retransmitted fragment
        if self._size + len(plaintext) > self.max_size:
            self._reset()
            raise InvalidFragment(f"reassembled message larger than {self.max_size} bytes")
        if self._budget is not None and not self._budget.take(len(plaintext)):
            self._reset()
            raise InvalidFragment(f"the {self._budget.limit} bytes for unfinished fragmented messages of "
                                  "all IKE SAs are taken")
        self._pieces[number] = plaintext
        self._size += len(plaintext)
        if number == 1:
            self._first_payload = fragment.first_payload
        if len(self._pieces) < total:
            return None
        data = b"".join(self._pieces[i] for i in range(1, total + 1))
        first_payload = self._first_payload
        self._reset()
        return parse_payloads(first_payload, data)
