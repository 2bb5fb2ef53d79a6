"""The BIOS/UEFI measurement log of a TPM 2.0 platform (TCG PC Client Platform
Firmware Profile, §10: ``/sys/kernel/security/tpm0/binary_bios_measurements``)
and its replay into PCR values.

Little-endian throughout.  A crypto-agile log starts with one legacy
TCG_PCR_EVENT (PCR 0, EV_NO_ACTION, a SHA-1-sized digest of zeros) whose
data is the ``Spec ID Event03`` structure naming each bank's digest size;
every further event is a TCG_PCR_EVENT2::

    PCRIndex (32) | EventType (32) | count (32) | count × (AlgorithmId (16)
    | digest) | EventSize (32) | Event

Also read: a log of TCG_PCR_EVENT2 records without that header (strongSwan's
IMC reads and its test logs are written so; the digest sizes are then the
known ones of each algorithm), and the TPM 1.2 SHA-1 log of TCG_PCR_EVENT
records only.

EV_NO_ACTION events are not extended; the ``StartupLocality`` one among them
says which locality started the TPM (PCR0's initial last byte).  Sizes and
counts are bounded, and every error names the offset where the log went
wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import Enum

from nac.pts.hashes import DIGEST_SIZES, HashAlgorithm
from nac.pts.pcr import PcrBank

__all__ = [
    "EV_NO_ACTION",
    "EV_SEPARATOR",
    "Event",
    "EventLog",
    "EventLogError",
    "LogFormat",
    "MAX_EVENTS",
    "MAX_EVENT_SIZE",
    "build_event2",
    "build_spec_id_event",
    "parse_event_log",
]

EV_PREBOOT_CERT = 0x0
EV_POST_CODE = 0x1
EV_NO_ACTION = 0x3
EV_SEPARATOR = 0x4
EV_ACTION = 0x5
EV_S_CRTM_VERSION = 0x8
EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
EV_EFI_ACTION = 0x80000007

#: Events one log may hold, and the largest event data: a real log has a few
#: hundred events of at most some kilobytes (a UEFI variable, a certificate).
MAX_EVENTS = 10_000
MAX_EVENT_SIZE = 1 << 20
_MAX_DIGESTS = 16

SPEC_ID_SIGNATURE = b"Spec ID Event03\0"
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\0"
_SHA1 = 0x0004


class EventLogError(ValueError):
    """A log that does not parse; ``offset`` is where the faulty record or field starts."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"event log: {reason} at byte {offset}")
        self.reason = reason
        self.offset = offset


class LogFormat(Enum):
    CRYPTO_AGILE = "crypto-agile"
    """Spec ID header, then TCG_PCR_EVENT2 records."""
    EVENT2_ONLY = "event2"
    """TCG_PCR_EVENT2 records without the header (strongSwan's reading)."""
    SHA1 = "sha1"
    """TPM 1.2: TCG_PCR_EVENT records only."""


@dataclass(frozen=True, slots=True)
class Event:
    pcr: int
    type: int
    digests: tuple[tuple[int, bytes], ...]
    """(TPM_ALG_ID, digest) pairs as logged."""
    data: bytes
    offset: int

    def digest(self, alg_id: int) -> bytes | None:
        for alg, value in self.digests:
            if alg == alg_id:
                return value
        return None


@dataclass(frozen=True, slots=True)
class EventLog:
    format: LogFormat
    events: tuple[Event, ...]
    digest_sizes: dict[int, int] = field(default_factory=dict)
    """The Spec ID header's banks (TPM_ALG_ID → digest size); empty without one."""

    @property
    def startup_locality(self) -> int:
        """The locality of the StartupLocality event (0 without one)."""
        for event in self.events:
            if event.type == EV_NO_ACTION and event.data.startswith(STARTUP_LOCALITY_SIGNATURE) \
                    and len(event.data) > len(STARTUP_LOCALITY_SIGNATURE):
                return event.data[len(STARTUP_LOCALITY_SIGNATURE)]
        return 0

    def measured(self) -> list[Event]:
        """The events that were extended (all but EV_NO_ACTION)."""
        return [e for e in self.events if e.type != EV_NO_ACTION]

    def replay(self, hash_algorithm: HashAlgorithm, startup_locality: int | None = None) -> PcrBank:
        """The PCRs of one bank as this log makes them; an event without that
        bank's digest is an error (the PCR could not be known)."""
        bank = PcrBank(hash_algorithm, self.startup_locality if startup_locality is None else startup_locality)
        for event in self.measured():
            digest = event.digest(hash_algorithm.tpm_alg)
            if digest is None:
                raise EventLogError(f"event has no {hash_algorithm} digest", event.offset)
            bank.extend(event.pcr, digest)
        return bank


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, size: int, what: str, at: int) -> bytes:
        if self.pos + size > len(self.data):
            raise EventLogError(f"{what} truncated", at)
        self.pos += size
        return self.data[self.pos - size:self.pos]

    def u32(self, what: str, at: int) -> int:
        return struct.unpack("<I", self.take(4, what, at))[0]

    def u16(self, what: str, at: int) -> int:
        return struct.unpack("<H", self.take(2, what, at))[0]


def _legacy_event(r: _Reader) -> Event:
    at = r.pos
    pcr, event_type = r.u32("PCRIndex", at), r.u32("EventType", at)
    digest = r.take(20, "digest", at)
    size = r.u32("EventSize", at)
    if size > MAX_EVENT_SIZE:
        raise EventLogError(f"event data of {size} bytes", at)
    return Event(pcr, event_type, ((_SHA1, digest),), r.take(size, "event data", at), at)


def _event2(r: _Reader, sizes: dict[int, int]) -> Event:
    at = r.pos
    pcr, event_type = r.u32("PCRIndex", at), r.u32("EventType", at)
    count = r.u32("digest count", at)
    if count > _MAX_DIGESTS:
        raise EventLogError(f"{count} digests in one event", at)
    digests = []
    for _ in range(count):
        alg_id = r.u16("AlgorithmId", at)
        size = sizes.get(alg_id)
        if size is None:
            raise EventLogError(f"digest of unknown size (algorithm 0x{alg_id:04x})", at)
        digests.append((alg_id, r.take(size, "digest", at)))
    size = r.u32("EventSize", at)
    if size > MAX_EVENT_SIZE:
        raise EventLogError(f"event data of {size} bytes", at)
    return Event(pcr, event_type, tuple(digests), r.take(size, "event data", at), at)


def _spec_id_sizes(data: bytes, at: int) -> dict[int, int]:
    r = _Reader(data, len(SPEC_ID_SIGNATURE))
    r.take(8, "Spec ID Event header", at)  # platform class, version, errata, uintn size
    count = r.u32("numberOfAlgorithms", at)
    if count > _MAX_DIGESTS:
        raise EventLogError(f"{count} banks in the Spec ID event", at)
    sizes = {}
    for _ in range(count):
        alg_id, size = r.u16("algorithmId", at), r.u16("digestSize", at)
        if size > 64 or alg_id in DIGEST_SIZES and DIGEST_SIZES[alg_id] != size:
            raise EventLogError(f"digest size {size} of algorithm 0x{alg_id:04x}", at)
        sizes[alg_id] = size
    return sizes


def parse_event_log(data: bytes, *, max_events: int = MAX_EVENTS) -> EventLog:
    """Parse a whole log; ``EventLogError`` when it does not parse or is too long."""
    r = _Reader(data)
    events: list[Event] = []
    fmt = LogFormat.EVENT2_ONLY
    sizes = dict(DIGEST_SIZES)
    spec_sizes: dict[int, int] = {}
    if len(data) >= 32:
        try:
            first: Event | None = _legacy_event(_Reader(data))
        except EventLogError:
            first = None  # not a legacy record: TCG_PCR_EVENT2 ones, or garbage
        if first is not None and first.type == EV_NO_ACTION and first.data.startswith(SPEC_ID_SIGNATURE):
            spec_sizes = sizes = _spec_id_sizes(first.data, 0)
            fmt = LogFormat.CRYPTO_AGILE
            r.pos = len(first.data) + 32
            events.append(first)
        elif not _looks_like_event2(data):
            fmt = LogFormat.SHA1
    while r.pos < len(data):
        if len(events) >= max_events:
            raise EventLogError(f"more than {max_events} events", r.pos)
        events.append(_legacy_event(r) if fmt is LogFormat.SHA1 else _event2(r, sizes))
    return EventLog(fmt, tuple(events), spec_sizes)


def _looks_like_event2(data: bytes) -> bool:
    """Whether a log without a Spec ID header reads as TCG_PCR_EVENT2 records:
    a small digest count followed by a known algorithm (a legacy record
    has its SHA-1 digest there)."""
    count, alg_id = struct.unpack_from("<IH", data, 8)
    return 1 <= count <= 8 and alg_id in DIGEST_SIZES


# -- writing (tests, and a collector's own log) ----------------------------------------------


def build_spec_id_event(digest_sizes: dict[int, int]) -> bytes:
    """The legacy first record with the ``Spec ID Event03`` data (PC Client
    class 0, spec version 2.0 errata 0, UINTN of 8 bytes)."""
    data = (SPEC_ID_SIGNATURE + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(digest_sizes))
            + b"".join(struct.pack("<HH", alg, size) for alg, size in digest_sizes.items()) + b"\0")
    return struct.pack("<II", 0, EV_NO_ACTION) + bytes(20) + struct.pack("<I", len(data)) + data


def build_event2(pcr: int, event_type: int, digests: dict[int, bytes], data: bytes) -> bytes:
    """One TCG_PCR_EVENT2 record."""
    return (struct.pack("<III", pcr, event_type, len(digests))
            + b"".join(struct.pack("<H", alg) + digest for alg, digest in digests.items())
            + struct.pack("<I", len(data)) + data)
