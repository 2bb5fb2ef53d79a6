"""The Linux IMA measurement list (``/sys/kernel/security/ima/binary_runtime_measurements``),
its templates, its replay into PCR 10 and the boot aggregate.

Each record, in the host's byte order (little-endian on the machines nac
knows)::

    PCR (32) | template hash (20: SHA-1) | name length (32) | template name
    | [template data length (32)] | template data

The ``ima`` template (legacy) has no data length; its data is the file's
SHA-1 digest (20) and the file name with a 32-bit length, and what it hashes
is the digest and the name NUL-padded to 256 bytes.  Every other template's
data is its fields, each with a 32-bit length, and it hashes that data as
logged: ``ima-ng`` is ``d-ng`` (``"<algorithm>:\\0" ‖ digest``) and ``n-ng``
(name ‖ NUL); ``ima-sig`` adds ``sig`` (an IMA signature, may be empty);
``ima-buf`` adds ``buf``.

PCR 10 of the SHA-1 bank is extended with the template hash; current kernels
extend every other bank with that bank's hash of the template data (older
ones with the SHA-1 hash zero-padded: ``padded``).  An entry whose template
hash is all zeros records a measurement violation (ToMToU, open writers):
the kernel extended all ones instead.

The boot aggregate (the first entry, ``boot_aggregate``) is a file digest
made by the kernel over PCR 0-7 of the bank (PCR 0-9 for other banks than
SHA-1 since Linux 5.8).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from nac.pts.hashes import SHA1, HashAlgorithm, by_name
from nac.pts.pcr import PcrBank

__all__ = [
    "BOOT_AGGREGATE",
    "IMA_PCR",
    "ImaEntry",
    "ImaLogError",
    "MAX_ENTRIES",
    "boot_aggregates",
    "build_entry",
    "parse_ima_log",
    "replay",
    "template_data",
    "template_hash",
]

IMA_PCR = 10
BOOT_AGGREGATE = "boot_aggregate"
MAX_ENTRIES = 100_000
#: The largest template data of one entry (ima-buf may carry a key or a policy).
MAX_TEMPLATE_DATA = 1 << 20
_MAX_TEMPLATE_NAME = 32
_MAX_FIELDS = 16
#: The legacy ``ima`` template's file name field: 255 characters and a NUL.
_LEGACY_NAME_SIZE = 256
_NG_TEMPLATES = ("ima-ng", "ima-sig", "ima-buf", "ima-modsig")


class ImaLogError(ValueError):
    """A list that does not parse; ``offset`` is where the faulty record starts."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"IMA log: {reason} at byte {offset}")
        self.reason = reason
        self.offset = offset


@dataclass(frozen=True, slots=True)
class ImaEntry:
    pcr: int
    template_hash: bytes
    """The SHA-1 template hash as logged (zeros: a violation)."""
    template: str
    data: bytes
    """The template data as it is hashed."""
    digest_algorithm: str
    """The file digest's algorithm (``sha256``; ``sha1`` for the ``ima`` template)."""
    file_digest: bytes
    filename: str
    signature: bytes | None = None
    """The ``sig`` field of ``ima-sig`` (b"" when the file had none)."""
    offset: int = 0

    @property
    def violation(self) -> bool:
        return not any(self.template_hash)

    def extend_digest(self, hash_algorithm: HashAlgorithm, *, padded: bool = False) -> bytes:
        """What this entry extended PCR 10 of ``hash_algorithm``'s bank with."""
        if self.violation:
            return b"\xff" * hash_algorithm.size
        if hash_algorithm == SHA1:
            return self.template_hash
        if padded:
            return self.template_hash.ljust(hash_algorithm.size, b"\0")
        return hash_algorithm.hash(self.data)


def _field(value: bytes) -> bytes:
    return struct.pack("<I", len(value)) + value


def template_data(template: str, algorithm: str, digest: bytes, filename: str,
                  signature: bytes | None = None) -> bytes:
    """The data a template hashes, for a file ``digest`` of ``algorithm``
    (``sha256``) and ``filename``: ``ima`` (SHA-1 digests only), ``ima-ng``
    or ``ima-sig`` (``signature``: b"" when none)."""
    name = filename.encode()
    if template == "ima":
        if len(name) >= _LEGACY_NAME_SIZE:
            name = name[:_LEGACY_NAME_SIZE - 1]
        return digest + name.ljust(_LEGACY_NAME_SIZE, b"\0")
    data = _field(algorithm.encode() + b":\0" + digest) + _field(name + b"\0")
    if template == "ima-sig":
        data += _field(signature or b"")
    elif template != "ima-ng":
        raise ValueError(f"template {template!r} is not one nac builds")
    return data


def template_hash(hash_algorithm: HashAlgorithm, template: str, algorithm: str, digest: bytes, filename: str,
                  signature: bytes | None = None) -> bytes:
    """A template's hash in one bank: what an entry for this file extends."""
    return hash_algorithm.hash(template_data(template, algorithm, digest, filename, signature))


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int, what: str, at: int) -> bytes:
        if self.pos + size > len(self.data):
            raise ImaLogError(f"{what} truncated", at)
        self.pos += size
        return self.data[self.pos - size:self.pos]

    def u32(self, what: str, at: int) -> int:
        return struct.unpack("<I", self.take(4, what, at))[0]


def _text(raw: bytes, what: str, at: int) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        # file names are bytes to the kernel; keep them readable and unique
        return raw.decode("utf-8", "backslashreplace")


def _ng_fields(data: bytes, at: int) -> list[bytes]:
    fields, pos = [], 0
    while pos < len(data):
        if len(fields) >= _MAX_FIELDS or pos + 4 > len(data):
            raise ImaLogError("template data fields do not add up", at)
        size = struct.unpack_from("<I", data, pos)[0]
        if pos + 4 + size > len(data):
            raise ImaLogError("template field overruns the template data", at)
        fields.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    return fields


def _entry(r: _Reader) -> ImaEntry:
    at = r.pos
    pcr = r.u32("PCR", at)
    digest = r.take(20, "template hash", at)
    name_size = r.u32("template name length", at)
    if not 0 < name_size <= _MAX_TEMPLATE_NAME:
        raise ImaLogError(f"template name of {name_size} bytes", at)
    template = _text(r.take(name_size, "template name", at), "template name", at)
    if template == "ima":
        file_digest = r.take(20, "file digest", at)
        size = r.u32("file name length", at)
        if size >= _LEGACY_NAME_SIZE:
            raise ImaLogError(f"file name of {size} bytes in an 'ima' entry", at)
        raw_name = r.take(size, "file name", at)
        return ImaEntry(pcr, digest, template, file_digest + raw_name.ljust(_LEGACY_NAME_SIZE, b"\0"), "sha1",
                        file_digest, _text(raw_name, "file name", at), None, at)
    size = r.u32("template data length", at)
    if size > MAX_TEMPLATE_DATA:
        raise ImaLogError(f"template data of {size} bytes", at)
    data = r.take(size, "template data", at)
    fields = _ng_fields(data, at)
    if template not in _NG_TEMPLATES or len(fields) < 2:
        # a template nac does not read: kept, without a file digest
        return ImaEntry(pcr, digest, template, data, "", b"", "", None, at)
    algorithm, colon, file_digest = fields[0].partition(b":\0")
    if not colon:
        raise ImaLogError("d-ng field without '<algorithm>:'", at)
    name = fields[1][:-1] if fields[1].endswith(b"\0") else fields[1]
    signature = fields[2] if template in ("ima-sig", "ima-modsig") and len(fields) > 2 else None
    return ImaEntry(pcr, digest, template, data, _text(algorithm, "algorithm", at), file_digest,
                    _text(name, "file name", at), signature, at)


def parse_ima_log(data: bytes, *, max_entries: int = MAX_ENTRIES) -> tuple[ImaEntry, ...]:
    """Every entry of a binary measurement list; ``ImaLogError`` when it does not parse or is too long."""
    r = _Reader(data)
    entries: list[ImaEntry] = []
    while r.pos < len(data):
        if len(entries) >= max_entries:
            raise ImaLogError(f"more than {max_entries} entries", r.pos)
        entries.append(_entry(r))
    return tuple(entries)


def replay(entries, hash_algorithm: HashAlgorithm, *, bank: PcrBank | None = None, padded: bool = False) -> PcrBank:
    """Extend each entry into its PCR of ``bank`` (a new one by default)."""
    bank = bank if bank is not None else PcrBank(hash_algorithm)
    for entry in entries:
        bank.extend(entry.pcr, entry.extend_digest(hash_algorithm, padded=padded))
    return bank


def boot_aggregates(bank: PcrBank) -> tuple[bytes, ...]:
    """The boot aggregate digests the kernel may have made from ``bank``:
    over PCR 0-7, and for other banks than SHA-1 also over PCR 0-9."""
    counts = (8,) if bank.hash_algorithm == SHA1 else (10, 8)
    return tuple(bank.hash_algorithm.hash(*bank.values_of(range(count))) for count in counts)


def build_entry(template: str, algorithm: str, digest: bytes, filename: str, *, signature: bytes | None = None,
                pcr: int = IMA_PCR, violation: bool = False) -> bytes:
    """One record of a binary measurement list, as the kernel writes it."""
    data = template_data(template, algorithm, digest, filename, signature)
    logged = bytes(20) if violation else SHA1.hash(data)
    header = struct.pack("<I", pcr) + logged + _field(template.encode())
    if template == "ima":
        name = filename.encode()[:_LEGACY_NAME_SIZE - 1]
        return header + digest + _field(name)
    return header + _field(data)


def digest_algorithm(entry: ImaEntry) -> HashAlgorithm | None:
    """The file digest's algorithm, when nac computes it."""
    return by_name(entry.digest_algorithm) if entry.digest_algorithm else None
