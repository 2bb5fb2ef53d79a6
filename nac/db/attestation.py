"""The attestation part of the policy database: AIKs, reference file hashes,
the attestation history.

Every function takes an ORM session (``PolicyDb.run`` / ``PolicyStore.run``
run it in a transaction) and returns plain values.  ``nac-admin attest``
enrolls AIKs and imports reference hashes with them; the attestation IMV
looks AIKs and references up and records each attestation.

Reference hashes (:class:`~nac.db.models.FileHash`) belong to a product
(``Debian 12 x86_64``) or, with no product, to every product; a file may
have several (releases of it), any of which is accepted.  The IMV keeps
those it looked up in a :class:`ReferenceCache` while the reference
generation (migration 0010: triggers on files, file_hashes and products)
stays the same.
"""

from __future__ import annotations

import datetime
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from nac.db.models import (
    IDENTIFIER_LENGTH,
    NAME_LENGTH,
    Aik,
    Attestation,
    Device,
    File,
    FileHash,
    PolicyGeneration,
    Product,
    has_control_characters,
    utcnow,
)
from nac.db.store import NotFound, StoreError
from nac.ifimv import EvaluationResult
from nac.pts.evidence import ImaReferences
from nac.pts.hashes import HashAlgorithm

__all__ = [
    "AikInfo",
    "AikRecord",
    "AttestationInfo",
    "MAX_DIGEST_HEX",
    "ReferenceCache",
    "ReferenceImport",
    "ReferenceLookup",
    "aik_for",
    "aik_keyid",
    "delete_aik",
    "import_file_hashes",
    "list_aiks",
    "list_attestations",
    "record_attestation",
    "reference_digests",
    "reference_generation",
    "register_aik",
    "set_aik_trusted",
]

#: Paths looked up per SQL statement.
SQL_CHUNK = 500
MAX_DIGEST_HEX = 128
_ALGORITHMS = ("sha1", "sha256", "sha384", "sha512")


def aik_keyid(public_key_der: bytes) -> str:
    """The AIK's key ID: hex SHA-1 over its DER SubjectPublicKeyInfo (strongSwan's)."""
    return hashlib.sha1(public_key_der).hexdigest()


@dataclass(frozen=True, slots=True)
class AikInfo:
    keyid: str
    trusted: bool
    device: str | None
    product: str | None
    description: str
    created: datetime.datetime
    last_seen: datetime.datetime | None


@dataclass(frozen=True, slots=True)
class AikRecord:
    """What the IMV needs of a registered AIK."""

    id: int
    keyid: str
    public_key: bytes
    trusted: bool
    product: str | None
    """The product whose reference values apply (the AIK's, else its device's)."""


@dataclass(frozen=True, slots=True)
class AttestationInfo:
    id: int
    keyid: str | None
    device: str | None
    session_id: int | None
    created: datetime.datetime
    evaluation: EvaluationResult
    summary: str
    details: Any


@dataclass(frozen=True, slots=True)
class ReferenceImport:
    product: str | None
    files: int
    """Files seen."""
    added: int
    """Reference digests added (the others were known)."""


def _info(row: Aik) -> AikInfo:
    return AikInfo(row.keyid, row.trusted, row.device.device_id if row.device else None,
                   row.product.name if row.product else None, row.description, row.created, row.last_seen)


def _text(what: str, value: str, limit: int) -> str:
    if not value or len(value) > limit or has_control_characters(value):
        raise StoreError(f"unusable {what} {value!r}")
    return value


def _named(session: orm.Session, model, **unique):
    """The row of ``model`` with these unique column values, added if missing."""
    row = session.scalar(sa.select(model).filter_by(**unique))
    if row is None:
        row = model(**unique)
        session.add(row)
    return row


def _aik_row(session: orm.Session, keyid: str) -> Aik:
    row = session.scalar(sa.select(Aik).where(Aik.keyid == keyid.lower()))
    if row is None:
        raise NotFound(f"no AIK with key ID {keyid!r} (see `nac-admin attest aik list`)")
    return row


def register_aik(session: orm.Session, public_key_der: bytes, *, device: str | None = None,
                 product: str | None = None, trusted: bool = False, description: str | None = None) -> AikInfo:
    """Register an AIK (its DER public key), or update the registered one:
    its device (created if new), product and trust.  ``None`` keeps what
    is recorded."""
    keyid = aik_keyid(public_key_der)
    row = session.scalar(sa.select(Aik).where(Aik.keyid == keyid))
    if row is None:
        row = Aik(keyid=keyid, public_key=public_key_der, trusted=trusted, description=description or "")
        session.add(row)
    else:
        row.trusted = trusted or row.trusted
        if description is not None:
            row.description = description
    if device is not None:
        row.device = _named(session, Device, device_id=_text("device id", device, NAME_LENGTH))
    if product is not None:
        row.product = _named(session, Product, name=_text("product", product, NAME_LENGTH))
    session.flush()
    return _info(row)


def set_aik_trusted(session: orm.Session, keyid: str, trusted: bool) -> AikInfo:
    row = _aik_row(session, keyid)
    row.trusted = trusted
    return _info(row)


def delete_aik(session: orm.Session, keyid: str) -> None:
    session.delete(_aik_row(session, keyid))


def list_aiks(session: orm.Session) -> list[AikInfo]:
    rows = session.scalars(sa.select(Aik).options(orm.joinedload(Aik.device), orm.joinedload(Aik.product))
                           .order_by(Aik.id))
    return [_info(row) for row in rows]


def aik_for(session: orm.Session, keyid: str) -> AikRecord | None:
    """The registered AIK of ``keyid``, or None."""
    row = session.scalar(sa.select(Aik).options(orm.joinedload(Aik.device).joinedload(Device.product),
                                                orm.joinedload(Aik.product))
                         .where(Aik.keyid == keyid))
    if row is None:
        return None
    product = row.product or (row.device.product if row.device else None)
    return AikRecord(row.id, row.keyid, row.public_key, row.trusted, product.name if product else None)


def import_file_hashes(session: orm.Session, product: str | None,
                       entries: Iterable[tuple[str, str, str]]) -> ReferenceImport:
    """Record reference digests: (path, algorithm, hex digest) of files as a
    known-good host has them, for ``product`` (None: for every product)."""
    product_id = None
    if product is not None:
        found = _named(session, Product, name=_text("product", product, NAME_LENGTH))
        session.flush()
        product_id = found.id
    wanted: dict[str, set[tuple[str, str]]] = {}
    for path, algorithm, digest in entries:
        _text("path", path, IDENTIFIER_LENGTH)
        if algorithm not in _ALGORITHMS:
            raise StoreError(f"unknown hash algorithm {algorithm!r} for {path!r}")
        digest = digest.lower()
        if len(digest) > MAX_DIGEST_HEX or any(c not in "0123456789abcdef" for c in digest):
            raise StoreError(f"digest of {path!r} is not hex")
        wanted.setdefault(path, set()).add((algorithm, digest))
    paths = sorted(wanted)
    file_ids: dict[str, int] = {}
    for start in range(0, len(paths), SQL_CHUNK):
        chunk = paths[start:start + SQL_CHUNK]
        file_ids.update((path, pk) for pk, path in session.execute(
            sa.select(File.id, File.path).where(File.path.in_(chunk))))
    missing = [path for path in paths if path not in file_ids]
    if missing:
        session.execute(sa.insert(File), [{"path": path} for path in missing])
        for start in range(0, len(missing), SQL_CHUNK):
            chunk = missing[start:start + SQL_CHUNK]
            file_ids.update((path, pk) for pk, path in session.execute(
                sa.select(File.id, File.path).where(File.path.in_(chunk))))
    by_id = {file_ids[path]: path for path in paths}
    known: set[tuple[int, str, str]] = set()
    ids = sorted(by_id)
    for start in range(0, len(ids), SQL_CHUNK):
        query = sa.select(FileHash.file_id, FileHash.algorithm, FileHash.digest).where(
            FileHash.file_id.in_(ids[start:start + SQL_CHUNK]))
        query = query.where(FileHash.product_id.is_(None) if product_id is None
                            else FileHash.product_id == product_id)
        known.update(tuple(row) for row in session.execute(query))
    rows = [{"file_id": file_id, "product_id": product_id, "algorithm": algorithm, "digest": digest}
            for file_id, path in by_id.items() for algorithm, digest in sorted(wanted[path])
            if (file_id, algorithm, digest) not in known]
    if rows:
        session.execute(sa.insert(FileHash), rows)
    return ReferenceImport(product, len(paths), len(rows))


_REFERENCES = (sa.select(File.path, FileHash.algorithm, FileHash.digest)
               .join(FileHash, FileHash.file_id == File.id)
               .where(File.path.in_(sa.bindparam("paths", expanding=True))))
_ANY_PRODUCT = _REFERENCES.where(FileHash.product_id.is_(None))
_OF_PRODUCT = _REFERENCES.where(sa.or_(FileHash.product_id.is_(None),
                                       FileHash.product_id == sa.bindparam("product_id")))
_REFERENCE_GENERATION = sa.select(PolicyGeneration.generation).where(PolicyGeneration.id == 3)


def reference_generation(connection) -> int:
    """The reference values' generation (migration 0010): it moves on with
    every change to files, their reference digests or products.
    ``connection``: a Connection or an ORM Session."""
    return connection.execute(_REFERENCE_GENERATION).scalar_one()


def reference_digests(session: orm.Session, product: str | None,
                      paths: Iterable[str]) -> dict[str, dict[str, set[bytes]]]:
    """path → algorithm → the reference digests of ``paths`` for
    ``product`` and for every product (only those for every product when
    ``product`` is None)."""
    product_id = None
    if product is not None:
        product_id = session.scalar(sa.select(Product.id).where(Product.name == product))
    # plain rows: no ORM bookkeeping for thousands of them
    connection = session.connection() if isinstance(session, orm.Session) else session
    query = _ANY_PRODUCT if product_id is None else _OF_PRODUCT
    unique = sorted(set(paths))
    found: dict[str, dict[str, set[bytes]]] = {}
    for start in range(0, len(unique), SQL_CHUNK):
        rows = connection.execute(query, {"paths": unique[start:start + SQL_CHUNK], "product_id": product_id}).all()
        for path, algorithm, digest in rows:
            try:
                value = bytes.fromhex(digest)
            except ValueError:
                continue  # not hex (written by hand): matches nothing
            by_algorithm = found.get(path)
            if by_algorithm is None:
                by_algorithm = found[path] = {}
            digests = by_algorithm.get(algorithm)
            if digests is None:
                by_algorithm[algorithm] = {value}
            else:
                digests.add(value)
    return found


@dataclass(frozen=True, slots=True)
class ReferenceLookup:
    """The references of one attestation's files."""

    digests: Mapping[str, Mapping[str, frozenset[bytes]]]
    """path → algorithm → reference digests (for File Measurements); a path without any may be missing."""
    ima: ImaReferences
    """The template hashes those digests give in the bank looked up for; every path asked for is in it."""


class _ProductReferences:
    """What is kept of one product: only ever added to, so that a thread
    reading it needs no lock (a change replaces the whole of it)."""

    __slots__ = ("digests", "ima")

    def __init__(self) -> None:
        self.digests: dict[str, Mapping[str, frozenset[bytes]]] = {}
        """path → algorithm → digests; an empty mapping: the file has none."""
        self.ima: dict[str, ImaReferences] = {}
        """By the bank's hash name."""


class ReferenceCache:
    """Reference digests of the files attestations measure, and the IMA
    template hashes they give per PCR bank, kept while the reference
    generation stays the same.

    An attestation of 10,000 IMA entries would otherwise look 10,000 paths
    up in the database and rebuild and hash each entry's template from its
    reference digests; with the files kept, checking an entry is a set
    lookup.  The first lookup in a new generation forgets everything (any
    change to files, reference digests or products, by ``nac-admin
    attest import``, another server or plain SQL, moves the generation on),
    so a changed or removed reference counts at the next attestation.

    At most ``size`` files (with or without references, of all products
    together) are kept, each with its template hashes for up to the four
    banks; when a product's new files do not fit, the products used least
    recently are forgotten, and what still does not fit is looked up in the
    database each time.  ``size`` 0: no cache.  Safe to share between the
    store's threads.
    """

    def __init__(self, size: int = 100_000):
        self.size = size
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._products: OrderedDict[str | None, _ProductReferences] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        """Files kept."""
        return self._count

    def _current(self, generation: int) -> bool:
        """Whether ``generation`` is the one kept, everything forgotten when
        it is newer (under the lock)."""
        if self._generation is None or generation > self._generation:
            self._products = OrderedDict()
            self._generation, self._count = generation, 0
        return generation == self._generation

    def kept(self, session, product: str | None, bank: HashAlgorithm) -> ReferenceLookup | None:
        """What is kept of ``product`` for ``bank``'s bank in the database's
        current reference generation, or None (run by PolicyStore.run): a
        verifier may judge with it and :meth:`lookup` the files it lacks."""
        if self.size <= 0:
            return None
        generation = reference_generation(session)
        with self._lock:
            entry = self._products.get(product) if self._current(generation) else None
            if entry is None or bank.name not in entry.ima:
                return None
            self._products.move_to_end(product)
            return ReferenceLookup(entry.digests, entry.ima[bank.name])

    def lookup(self, session, product: str | None, paths: Iterable[str],
               bank: HashAlgorithm) -> ReferenceLookup:
        """The references of ``paths`` for ``product`` (as
        :func:`reference_digests`) with their template hashes in ``bank``'s
        bank; run by PolicyStore.run in the store's thread."""
        paths = set(paths)
        if self.size <= 0:
            return self._uncached(session, product, paths, bank)
        # the generation first: references read after it are at least as new
        generation = reference_generation(session)
        with self._lock:
            entry = None
            if self._current(generation):  # not so in a transaction older than what is kept
                entry = self._products.get(product)
                if entry is None:
                    entry = self._products[product] = _ProductReferences()
                else:
                    self._products.move_to_end(product)
            digests = entry.digests if entry is not None else {}
            missing = [] if digests.keys() >= paths else [path for path in paths if path not in digests]
            self.hits += len(paths) - len(missing)
            self.misses += len(missing)
        if entry is None:
            return self._uncached(session, product, paths, bank)
        overflow: dict[str, Mapping[str, frozenset[bytes]]] = {}
        if missing:
            fetched = reference_digests(session, product, missing)
            rows = {path: {algorithm: frozenset(found) for algorithm, found in fetched.get(path, {}).items()}
                    for path in missing}
            overflow = {path: rows[path] for path in self._keep(generation, product, entry, rows)}
        if overflow:
            # more files than the cache holds: these are judged from what was read, and kept nowhere
            ima = ImaReferences(bank)
            for path in paths:
                ima.add(path, overflow[path] if path in overflow else digests[path])
            return ReferenceLookup({path: overflow[path] if path in overflow else digests[path] for path in paths},
                                   ima)
        ima = entry.ima.get(bank.name)
        if ima is None:
            ima = entry.ima.setdefault(bank.name, ImaReferences(bank))
        if not ima.names.issuperset(paths):
            for path in paths:
                ima.add(path, digests[path])
        return ReferenceLookup(digests, ima)

    def _keep(self, generation: int, product: str | None, entry: _ProductReferences,
              rows: dict[str, Mapping[str, frozenset[bytes]]]) -> list[str]:
        """Add as many of ``rows`` to ``entry`` as fit, forgetting the least
        recently used other products for room; the paths not kept."""
        with self._lock:
            if generation != self._generation or self._products.get(product) is not entry:
                return list(rows)  # forgotten meanwhile: what was read is not kept
            new = [path for path in rows if path not in entry.digests]
            while self._count + len(new) > self.size and len(self._products) > 1:
                oldest, dropped = next(iter(self._products.items()))
                if dropped is entry:
                    self._products.move_to_end(oldest)
                    continue
                del self._products[oldest]
                self._count -= len(dropped.digests)
            room = max(0, min(len(new), self.size - self._count))
            for path in new[:room]:
                entry.digests[path] = rows[path]
            self._count += room
            return [path for path in rows if path not in entry.digests]

    @staticmethod
    def _uncached(session, product: str | None, paths: set[str], bank: HashAlgorithm) -> ReferenceLookup:
        fetched = reference_digests(session, product, paths) if session is not None else {}
        digests = {path: {algorithm: frozenset(found) for algorithm, found in by_algorithm.items()}
                   for path, by_algorithm in fetched.items()}
        ima = ImaReferences(bank)
        for path in paths:
            ima.add(path, digests.get(path, {}))
        return ReferenceLookup(digests, ima)


def record_attestation(connection, keyid: str | None, session_id: int | None,
                       evaluation: EvaluationResult, summary: str, details: Any) -> int:
    """Keep one attestation's verdict and move the AIK's ``last_seen`` on
    (``connection``: a Core connection, as the store's write queue passes;
    an ORM session works too)."""
    aiks, attestations = Aik.__table__, Attestation.__table__
    now = utcnow()
    aik_id = connection.scalar(sa.select(aiks.c.id).where(aiks.c.keyid == keyid)) if keyid else None
    if aik_id is not None:
        connection.execute(sa.update(aiks).where(aiks.c.id == aik_id).values(last_seen=now))
    return connection.scalar(sa.insert(attestations).values(
        keyid=keyid, aik_id=aik_id, session_id=session_id, created=now, evaluation=evaluation,
        summary=summary, details=details).returning(attestations.c.id))


def list_attestations(session: orm.Session, *, keyid: str | None = None, device: str | None = None,
                      limit: int = 20) -> list[AttestationInfo]:
    """The newest attestations, of one AIK or one device's AIKs when given."""
    query = (sa.select(Attestation).options(orm.joinedload(Attestation.aik).joinedload(Aik.device))
             .order_by(Attestation.created.desc(), Attestation.id.desc()).limit(limit))
    if keyid is not None:
        query = query.where(Attestation.keyid == keyid.lower())
    if device is not None:
        query = query.join(Aik, Attestation.aik_id == Aik.id).join(Device, Aik.device_id == Device.id).where(
            Device.device_id == device)
    return [AttestationInfo(row.id, row.keyid, row.aik.device.device_id if row.aik and row.aik.device else None,
                            row.session_id, row.created, row.evaluation, row.summary, row.details)
            for row in session.scalars(query)]
