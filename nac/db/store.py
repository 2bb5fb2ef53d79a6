"""The policy store: nac's database operations, blocking and off the reactor.

:class:`PolicyDb` is the blocking API, one transaction per call; nac-admin
uses it directly.  :class:`PolicyStore` is what the server uses: the same
operations run by :class:`PolicyDb` in a dedicated thread pool, returning
Deferreds (``nac.interfaces.IPolicyStore``).  IMVs with queries of their own
pass a function to :meth:`PolicyStore.run`, which calls it with an ORM
session inside a transaction in the pool.
"""

from __future__ import annotations

import collections
import datetime
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from twisted.application import service
from twisted.internet import defer, threads
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from nac.escape import printable
from nac.log import Logger
from nac.db import engine as db_engine
from nac.db.models import (
    ABORTED,
    IDENTIFIER_LENGTH,
    INTERRUPTED,
    NAME_LENGTH,
    AssessmentSession,
    Device,
    Group,
    GroupDevice,
    GroupIdentity,
    ImvResult,
    Measurement,
    Package,
    PolicyGeneration,
    Product,
    User,
    Version,
    has_control_characters,
    utcnow,
)
from nac.db.outage import (
    DatabaseHealth,
    QueueFull,
    StoreUnavailable,
    conflict,
    describe,
    log_store_failure,
    transient,
    unavailable,
)
from nac.db.passwords import VerifiedCredentials, hash_password, verify_password
from nac.db.secrets import SecretBox, SecretKeyError
from nac.ifimv import ActionRecommendation, EvaluationResult
from nac.interfaces import IPolicyStore

__all__ = [
    "AlreadyExists",
    "DEFAULT_QUEUE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WAIT",
    "DeviceInfo",
    "GroupInfo",
    "GroupMemberInfo",
    "NotFound",
    "PackageImport",
    "PolicyDb",
    "PolicyStore",
    "ResultInfo",
    "SessionInfo",
    "StoreError",
    "StoreUnavailable",
    "UserInfo",
    "VersionInfo",
]

log = Logger(namespace="nac.db")

_SESSIONS = AssessmentSession.__table__
_RESULTS = ImvResult.__table__
_DEVICES = Device.__table__
_PRODUCTS = Product.__table__
_PRODUCT_PK = sa.select(_PRODUCTS.c.id).where(_PRODUCTS.c.name == sa.bindparam("name"))
_DEVICE_PK = sa.select(_DEVICES.c.id).where(_DEVICES.c.device_id == sa.bindparam("device_id"))
_EAP_SECRET_ROW = sa.select(User.eap_secret, User.enabled).where(User.name == sa.bindparam("name"))
_PASSWORD_ROW = sa.select(User.password_hash, User.enabled).where(User.name == sa.bindparam("name"))
_USER_INFO = sa.select(User.name, User.enabled, User.created, User.eap_secret.is_not(None))

T = TypeVar("T")


class StoreError(Exception):
    """An operation on the policy database was refused; the message says why."""


class AlreadyExists(StoreError):
    pass


class NotFound(StoreError):
    pass


# -- plain values returned to callers (no ORM objects leave a transaction) ----------------


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    enabled: bool
    created: datetime.datetime
    eap: bool = False
    """Whether the user has an EAP secret (EAP-MD5 / EAP-MSCHAPv2)."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: int
    device_id: str
    product: str | None
    trusted: bool
    first_seen: datetime.datetime
    last_seen: datetime.datetime
    description: str


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: int
    connection_id: int
    identity: str | None
    auth_method: str
    transport: str
    peer_address: str
    peer_port: int
    device: str | None
    """The device's Device ID, once an IMV reported it."""
    started: datetime.datetime
    ended: datetime.datetime | None
    recommendation: ActionRecommendation | None
    evaluation: EvaluationResult | None
    access: str | None
    reason: str
    nas: str | None = None
    """The short name of the NAS that relayed the endpoint (RADIUS), if it has one."""
    instance: str | None = None
    """The nac instance that assessed (``[nac] instance``; None before migration 0008)."""
    process: int | None = None
    """Which of its processes: 0 the main one, k worker k."""


@dataclass(frozen=True, slots=True)
class ResultInfo:
    imv_id: int
    imv_name: str
    recommendation: ActionRecommendation
    evaluation: EvaluationResult
    reason: str
    reason_language: str
    remediation: str
    forced: bool


def _session_info(row: AssessmentSession) -> SessionInfo:
    return SessionInfo(
        id=row.id, connection_id=row.connection_id, identity=row.identity,
        auth_method=row.auth_method, transport=row.transport, peer_address=row.peer_address,
        peer_port=row.peer_port, device=row.device.device_id if row.device else None,
        started=row.started, ended=row.ended, recommendation=row.recommendation,
        evaluation=row.evaluation, access=row.access, reason=row.reason, nas=row.nas,
        instance=row.instance, process=row.process)


def _check_name(what: str, name: str, limit: int) -> str:
    if not isinstance(name, str) or not name:
        raise StoreError(f"{what} must not be empty")
    if len(name) > limit:
        raise StoreError(f"{what} is longer than {limit} characters")
    if has_control_characters(name):
        raise StoreError(f"{what} must not contain control characters")
    return name


def _remediation_text(entries) -> str:
    lines = []
    for entry in entries:
        lines.extend(text for text in (entry.instructions, entry.uri) if text)
    return "\n".join(lines)


# Verified when the user is unknown, so that a login takes as long either way
# and does not tell which user names exist.
_NO_SUCH_USER_HASH: str | None = None


def _no_such_user_hash() -> str:
    global _NO_SUCH_USER_HASH
    if _NO_SUCH_USER_HASH is None:
        _NO_SUCH_USER_HASH = hash_password(b"")
    return _NO_SUCH_USER_HASH


def check_against(verified: VerifiedCredentials | None, name: str, password: str | bytes,
                  row: tuple[str, bool] | None) -> bool:
    """The password check proper (a deliberately slow scrypt unless ``verified``
    remembers it); an unknown user costs the same as a known one."""
    if row is None:
        verify_password(password, _no_such_user_hash())
        return False
    stored, enabled = row
    if verified is not None:
        matches = verified.verify(name, password, stored)
    else:
        matches = verify_password(password, stored)
    return matches and enabled


_GENERATION = sa.select(PolicyGeneration.generation).where(PolicyGeneration.id == 1)


def policy_generation(connection) -> int:
    """The package policy's generation (migration 0004): it moves on with
    every change to products, packages or versions, so verdicts made from
    them hold while it stays the same.  ``connection``: a Connection or an
    ORM Session."""
    return connection.execute(_GENERATION).scalar_one()


# -- what an assessment writes (functions of a Connection in a transaction) ----------------


class _Hot:
    """A statement the server runs for every assessment, compiled once per
    database dialect and run straight on the driver's cursor.

    SQLAlchemy's execution machinery costs several times what SQLite takes
    to run such a statement, and an assessment runs a dozen of them; the
    SQL and the value conversions (time stamps, enums, booleans, JSON) are
    still SQLAlchemy's own, taken from the compiled statement.  ``keys``:
    the columns an INSERT is given, every time all of them.

    The conversions come from a SQLAlchemy 2 compiler attribute
    (``_bind_processors``); should a release not have it, the statement
    runs through SQLAlchemy as any other (``tests/test_db.py`` compares
    what both ways store).
    """

    __slots__ = ("statement", "keys", "_made")

    def __init__(self, statement, keys: Sequence[str] | None = None):
        self.statement = statement
        self.keys = list(keys) if keys is not None else None
        self._made: dict = {}

    def _compiled(self, dialect):
        made = self._made.get(type(dialect))
        if made is None:
            compiled = self.statement.compile(dialect=dialect, column_keys=self.keys)
            processors = getattr(compiled, "_bind_processors", None)
            order = getattr(compiled, "positiontup", None) if dialect.positional else None
            if processors is None or (dialect.positional and order is None):
                made = False  # SQLAlchemy's own execution, below
            else:
                made = (compiled.string, None if order is None else list(order), dict(processors))
            self._made[type(dialect)] = made
        return made

    @staticmethod
    def _arguments(made, params: dict):
        _sql, order, processors = made
        if processors:
            params = {key: processors[key](value) if key in processors else value
                      for key, value in params.items()}
        return params if order is None else [params[key] for key in order]

    def cursor(self, connection, params: dict):
        """The driver's cursor, the statement run with ``params`` on it,
        in ``connection``'s transaction."""
        made = self._compiled(connection.dialect)
        if not made:
            return connection.execute(self.statement, params)
        cursor = connection.connection.cursor()
        cursor.execute(made[0], self._arguments(made, params))
        return cursor

    def rowcount(self, connection, params: dict) -> int:
        cursor = self.cursor(connection, params)
        try:
            return cursor.rowcount
        finally:
            cursor.close()

    def first(self, connection, params: dict):
        """The first row (a tuple), None without one."""
        cursor = self.cursor(connection, params)
        try:
            return cursor.fetchone()
        finally:
            cursor.close()

    def scalar(self, connection, params: dict):
        row = self.first(connection, params)
        return None if row is None else row[0]

    def many(self, connection, rows: list[dict]) -> None:
        made = self._compiled(connection.dialect)
        if not made:
            connection.execute(self.statement, rows)
            return
        cursor = connection.connection.cursor()
        try:
            cursor.executemany(made[0], [self._arguments(made, params) for params in rows])
        finally:
            cursor.close()


_B = sa.bindparam
_INSERT_SESSION = _Hot(sa.insert(_SESSIONS).returning(_SESSIONS.c.id), (
    "connection_id", "identity", "auth_method", "transport", "peer_address", "peer_port", "nas", "started",
    "reason", "instance", "process", "station"))
_END_SESSION = _Hot(sa.update(_SESSIONS).where(_SESSIONS.c.id == _B("b_id")).values(
    ended=_B("b_ended"), recommendation=_B("b_recommendation"), evaluation=_B("b_evaluation"),
    access=_B("b_access"), reason=_B("b_reason")))
_END_UNDECIDED = _Hot(sa.update(_SESSIONS).where(
    _SESSIONS.c.id == _B("b_id"), _SESSIONS.c.ended.is_(None)).values(
    ended=_B("b_ended"), access=_B("b_access"), reason=_B("b_reason")))
_BIND_DEVICE = _Hot(sa.update(_SESSIONS).where(_SESSIONS.c.id == _B("b_id")).values(device_id=_B("b_device")))
_DELETE_RESULTS = _Hot(sa.delete(_RESULTS).where(_RESULTS.c.session_id == _B("b_id")))
_INSERT_RESULTS = _Hot(sa.insert(_RESULTS), (
    "session_id", "imv_id", "imv_name", "recommendation", "evaluation", "reason", "reason_language",
    "remediation", "forced"))
_SESSION_DEVICE_SEEN = _Hot(sa.update(_DEVICES).where(
    _DEVICES.c.id == sa.select(_SESSIONS.c.device_id).where(_SESSIONS.c.id == _B("b_id")).scalar_subquery()
).values(last_seen=_B("b_seen")))
_DEVICE_SEEN = _Hot(sa.update(_DEVICES).where(_DEVICES.c.id == _B("b_id")).values(last_seen=_B("b_seen")))
_DEVICE_SEEN_ON = _Hot(sa.update(_DEVICES).where(_DEVICES.c.id == _B("b_id")).values(
    last_seen=_B("b_seen"), product_id=_B("b_product")))
_INSERT_MEASUREMENT = _Hot(sa.insert(Measurement.__table__).returning(Measurement.__table__.c.id), (
    "session_id", "imv_name", "kind", "payload", "created"))
_HOT_PRODUCT_PK = _Hot(_PRODUCT_PK)
_HOT_DEVICE_PK = _Hot(_DEVICE_PK)
_HOT_PASSWORD_ROW = _Hot(_PASSWORD_ROW)
_HOT_EAP_SECRET_ROW = _Hot(_EAP_SECRET_ROW)


def record_session_start(connection, peer, connection_id: int, instance: str | None = None,
                         process: int | None = None) -> int:
    """Insert the session row of an assessment of ``peer`` (a PeerInfo) by
    process ``process`` of nac instance ``instance``; its id."""
    nas = getattr(peer, "nas", None)
    station = getattr(peer, "station", None)
    return _INSERT_SESSION.scalar(connection, {
        "connection_id": connection_id,
        "identity": peer.identity[:IDENTIFIER_LENGTH] if peer.identity else None,
        "auth_method": (peer.auth_method or "none")[:32], "transport": peer.transport[:16],
        "peer_address": str(peer.address)[:64], "peer_port": int(peer.port or 0),
        "nas": nas[:64] if nas else None, "started": utcnow(), "reason": "",
        "instance": instance[:64] if instance else None, "process": process,
        "station": printable(station)[:253] if station else None})


def record_abort(connection, session_id: int, reason: str) -> bool:
    """End a session that has no decision (the endpoint or its transport
    gave up) as :data:`~nac.db.models.ABORTED`; a decided session is left
    as it is.  Whether it was ended here."""
    return _END_UNDECIDED.rowcount(connection, {
        "b_id": session_id, "b_ended": utcnow(), "b_access": ABORTED, "b_reason": reason}) > 0


def close_orphans(connection, instance: str, process: int | None, reason: str,
                  started_before: datetime.datetime | None = None) -> int:
    """End the open sessions of nac instance ``instance`` (its process
    ``process`` only, or all of them with None) started before
    ``started_before`` as :data:`~nac.db.models.INTERRUPTED`: that process
    starts (then), so whatever it had open was cut by its end.  How many."""
    where = [_SESSIONS.c.instance == instance, _SESSIONS.c.ended.is_(None)]
    if started_before is not None:
        where.append(_SESSIONS.c.started < started_before)
    if process is not None:
        where.append(_SESSIONS.c.process == process)
    return connection.execute(sa.update(_SESSIONS).where(*where).values(
        ended=utcnow(), access=INTERRUPTED, reason=reason)).rowcount


def _usable_name(name) -> bool:
    """Whether ``name`` passes :func:`_check_name` as a device id or product."""
    return isinstance(name, str) and 0 < len(name) <= NAME_LENGTH and not has_control_characters(name)


def lock_rows(connection, writes: Sequence[tuple[Callable[..., Any], tuple]]) -> None:
    """Take the row locks that ``writes`` (run next, in ``connection``'s
    transaction) will need, in one fixed order: products by name, then
    devices by Device ID (byte order), creating the missing ones.

    Several nac instances on one PostgreSQL database commit the writes of
    many assessments in one transaction each; locking the devices as the
    writes come would lock A then B in one instance and B then A in
    another, which deadlocks.  Taken up front in one order, a transaction
    waits for the other instead.  SQLite needs none of this: a writer holds
    the whole database.
    """
    if connection.dialect.name != "postgresql":
        return
    products: set[str] = set()
    devices: set[str] = set()
    decided = []
    for fn, args in writes:
        if fn is record_device:
            device_id, product = args[1], args[2] if len(args) > 2 else None
            if _usable_name(device_id):
                devices.add(device_id)
                if product is not None and _usable_name(product):
                    products.add(product)
        elif fn is record_decision:
            decided.append(args[0])
    if decided:
        devices.update(connection.scalars(
            sa.select(_DEVICES.c.device_id).join(_SESSIONS, _SESSIONS.c.device_id == _DEVICES.c.id)
            .where(_SESSIONS.c.id.in_(decided))))
    if products:
        # only the missing ones: the generation triggers on products fire
        # once per INSERT statement, even one that inserts nothing, and a
        # moved-on generation empties the policy caches of every server
        products -= set(connection.scalars(sa.select(_PRODUCTS.c.name).where(_PRODUCTS.c.name.in_(products))))
    if products:
        connection.execute(postgresql.insert(_PRODUCTS).values(
            [{"name": name} for name in sorted(products)]).on_conflict_do_nothing())
    if devices:
        # Python orders strings by code point, as the "C" collation orders UTF-8
        ordered = sorted(devices)
        now = utcnow()
        # VALUES rows are inserted, and their keys locked, in the order given
        connection.execute(postgresql.insert(_DEVICES).values([{
            "device_id": device_id, "product_id": None, "first_seen": now, "last_seen": now,
            "trusted": False, "description": ""} for device_id in ordered]).on_conflict_do_nothing())
        connection.execute(sa.select(_DEVICES.c.id).where(_DEVICES.c.device_id.in_(ordered))
                           .order_by(_DEVICES.c.device_id.collate("C")).with_for_update()).all()


def record_decision(connection, session_id: int, decision) -> None:
    """The final decision of a session and each IMV's result (replacing an earlier decision)."""
    now = utcnow()
    results = [{
        "session_id": session_id,
        "imv_id": verdict.imv_id,
        "imv_name": verdict.imv_name[:64],
        "recommendation": ActionRecommendation(verdict.recommendation),
        "evaluation": EvaluationResult(verdict.evaluation),
        "reason": verdict.reason or "",
        "reason_language": (getattr(verdict, "reason_language", "") or "")[:32],
        "remediation": _remediation_text(r for r in decision.remediation if r.imv_id == verdict.imv_id),
        "forced": bool(verdict.forced),
    } for verdict in decision.imv_results]
    updated = _END_SESSION.rowcount(connection, {
        "b_id": session_id, "b_ended": now,
        "b_recommendation": ActionRecommendation(decision.recommendation),
        "b_evaluation": EvaluationResult(decision.evaluation),
        "b_access": decision.access,
        "b_reason": "\n".join(text for text, _language in decision.reasons)})
    if updated == 0:
        raise NotFound(f"no session {session_id}")
    _DELETE_RESULTS.rowcount(connection, {"b_id": session_id})
    if results:
        _INSERT_RESULTS.many(connection, results)
    _SESSION_DEVICE_SEEN.rowcount(connection, {"b_id": session_id, "b_seen": now})


def record_device(connection, session_id: int, device_id: str, product: str | None = None) -> int:
    """Bind a session to the device an IMV identified (created if new, its
    product too); the device's row id."""
    _check_name("device id", device_id, NAME_LENGTH)
    if product is not None:
        _check_name("product", product, NAME_LENGTH)
    now = utcnow()
    product_pk = None
    if product is not None:
        product_pk = _HOT_PRODUCT_PK.scalar(connection, {"name": product})
        if product_pk is None:
            product_pk = _row_id(connection, _PRODUCT_PK, {"name": product}, _PRODUCTS, {"name": product})
    device_pk = _HOT_DEVICE_PK.scalar(connection, {"device_id": device_id})
    if device_pk is None:
        device_pk = _row_id(connection, _DEVICE_PK, {"device_id": device_id}, _DEVICES, {
            "device_id": device_id, "product_id": product_pk, "first_seen": now, "last_seen": now,
            "trusted": False, "description": ""})
    elif product_pk is None:
        _DEVICE_SEEN.rowcount(connection, {"b_id": device_pk, "b_seen": now})
    else:
        _DEVICE_SEEN_ON.rowcount(connection, {"b_id": device_pk, "b_seen": now, "b_product": product_pk})
    if _BIND_DEVICE.rowcount(connection, {"b_id": session_id, "b_device": device_pk}) == 0:
        raise NotFound(f"no session {session_id}")
    return device_pk


def _row_id(connection, query, params: dict, table: sa.Table, values: dict) -> int:
    """The id ``query`` finds, after inserting ``values`` into ``table`` if
    it finds none.  A row another server inserted meanwhile (PostgreSQL)
    is taken as it is: the insert does nothing on a unique conflict."""
    found = connection.scalar(query, params)
    if found is not None:
        return found
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(dialect.insert(table).values(**values).on_conflict_do_nothing())
    return connection.scalar(query, params)


def record_measurement(connection, session_id: int, imv_name: str, kind: str, payload: Any) -> int:
    """Keep what an IMV measured in a session (``payload``: JSON-able); the row id."""
    return _INSERT_MEASUREMENT.scalar(connection, {
        "session_id": session_id, "imv_name": imv_name[:64], "kind": kind[:64], "payload": payload,
        "created": utcnow()})


class PolicyDb:
    """Blocking access to the policy database; each method is one transaction.

    A transaction PostgreSQL rolls back for a deadlock or a serialization
    failure (SQLSTATE 40P01 / 40001) runs again, up to
    :attr:`CONFLICT_RETRIES` times after a short random pause that doubles
    each time (:attr:`conflicts` counts them).
    """

    CONFLICT_RETRIES = 5
    CONFLICT_PAUSE = 0.05
    """Seconds before the first retry of a conflicting transaction (about)."""

    def __init__(self, engine: Engine, verified: VerifiedCredentials | None = None,
                 secrets: SecretBox | None = None):
        self.engine = engine
        self.conflicts = 0
        """Transactions run again after a deadlock or serialization failure."""
        self.split_batches = 0
        """Batches (:meth:`write_batch`) that failed and ran write by write."""
        self.secrets = secrets
        """Seals and opens EAP secrets (None: EAP secrets unavailable)."""
        self._sessions = orm.sessionmaker(engine, expire_on_commit=False)
        self.verified = verified
        """Cache of verified passwords (servers pass one; nac-admin does not)."""

    @contextmanager
    def transaction(self) -> Iterator[orm.Session]:
        """An ORM session in a transaction, committed on success, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` in one transaction (run again
        after a deadlock: ``fn`` must not keep anything of a first try)."""
        return self.retrying(self._run_once, fn, *args, **kwargs)

    def _run_once(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.transaction() as session:
            return fn(session, *args, **kwargs)

    def retrying(self, transaction: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``transaction(*args, **kwargs)``, run again when the database
        rolled it back for a deadlock or serialization failure."""
        attempt = 0
        while True:
            try:
                return transaction(*args, **kwargs)
            except Exception as exc:
                if attempt >= self.CONFLICT_RETRIES or not conflict(exc):
                    raise
            self.conflicts += 1
            time.sleep(self.CONFLICT_PAUSE * 2 ** attempt * random.uniform(0.5, 1.5))
            attempt += 1

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(connection, *args, **kwargs)`` in a read-only transaction on a
        plain Connection: no ORM session, and on SQLite no write lock."""
        with self.engine.connect() as connection:
            return fn(connection.execution_options(nac_read_only=True), *args, **kwargs)

    def check_schema(self) -> str:
        """The schema revision; :class:`~nac.db.engine.SchemaError` if not this nac's."""
        return db_engine.check_schema(self.engine)

    # -- users -------------------------------------------------------------------------

    def check_password(self, name: str, password: str | bytes) -> bool:
        """True only for an enabled user whose password matches."""
        return check_against(self.verified, name, password, self.password_row(name))

    def eap_secret(self, name: str) -> str | None:
        """The EAP password of enabled user ``name``; None when there is no
        such user, it is disabled or has no EAP secret, or the secret does
        not open with this key (logged: the key file is wrong)."""
        row = self.read(lambda connection: _HOT_EAP_SECRET_ROW.first(connection, {"name": name}))
        if row is None or not row[1] or row[0] is None or self.secrets is None:
            return None
        try:
            return self.secrets.open(name, row[0])
        except SecretKeyError as exc:
            log.error("{error}", error=str(exc))
            return None

    def password_row(self, name: str) -> tuple[str, bool] | None:
        """(stored password hash, enabled) of user ``name``, None if there is none."""
        row = self.read(lambda connection: _HOT_PASSWORD_ROW.first(connection, {"name": name}))
        return None if row is None else (row[0], bool(row[1]))

    def add_user(self, name: str, password: str | bytes, *, eap: bool = False) -> UserInfo:
        """Add a user; with ``eap`` the password also serves EAP-MD5 and
        EAP-MSCHAPv2, which need it back: it is then also stored sealed
        under the secret key (:mod:`nac.db.secrets`)."""
        _check_name("user name", name, NAME_LENGTH)
        if not password:
            raise StoreError("the password must not be empty")
        eap_secret = None
        if eap:
            if self.secrets is None:
                raise StoreError("no secret key to seal EAP secrets with")
            text = password.decode("utf-8") if isinstance(password, bytes) else password
            eap_secret = self.secrets.seal(name, text)
        # hashed before the transaction: scrypt is slow and needs no lock
        password_hash = hash_password(password)
        try:
            with self.transaction() as session:
                if session.scalar(sa.select(User.id).where(User.name == name)) is not None:
                    raise AlreadyExists(f"user {name!r} already exists")
                user = User(name=name, password_hash=password_hash, eap_secret=eap_secret,
                            created=utcnow(), enabled=True)
                session.add(user)
                session.flush()
                return UserInfo(user.name, user.enabled, user.created, eap_secret is not None)
        except sa.exc.IntegrityError:
            # another writer added the same name between our check and insert
            raise AlreadyExists(f"user {name!r} already exists") from None

    def delete_user(self, name: str) -> None:
        with self.transaction() as session:
            deleted = session.execute(sa.delete(User).where(User.name == name)).rowcount
            if not deleted:
                raise NotFound(f"no user {name!r}")

    def set_password(self, name: str, password: str | bytes) -> UserInfo:
        """Give user ``name`` a new password; a user with an EAP secret gets
        it sealed anew, so SASL, PAP and EAP-MD5/MSCHAPv2 all take the new
        password and none the old one.

        No server needs telling: every login reads the user's row, and a
        remembered verification (:class:`VerifiedCredentials`) holds only
        for the stored hash it was made against, which this replaces.
        """
        if not password:
            raise StoreError("the password must not be empty")
        with self.transaction() as session:
            has_eap = session.scalar(sa.select(User.eap_secret.is_not(None)).where(User.name == name))
        if has_eap is None:
            raise NotFound(f"no user {name!r}")
        eap_secret = None
        if has_eap:
            if self.secrets is None:
                raise StoreError(f"user {name!r} has an EAP secret, and there is no secret key to seal "
                                 "the new one with")
            text = password.decode("utf-8") if isinstance(password, bytes) else password
            eap_secret = self.secrets.seal(name, text)
        password_hash = hash_password(password)  # slow: outside the transaction
        with self.transaction() as session:
            user = session.scalar(sa.select(User).where(User.name == name))
            if user is None:
                raise NotFound(f"no user {name!r}")
            if (user.eap_secret is not None) != has_eap:
                raise StoreError(f"user {name!r} was changed meanwhile; try again")
            user.password_hash = password_hash
            user.eap_secret = eap_secret
            return UserInfo(user.name, user.enabled, user.created, has_eap)

    def set_enabled(self, name: str, enabled: bool) -> UserInfo:
        """Enable or disable user ``name``.  A disabled user's logins are
        refused from the next one on, by every server sharing the database:
        each login reads the flag with the user's row."""
        with self.transaction() as session:
            user = session.scalar(sa.select(User).where(User.name == name))
            if user is None:
                raise NotFound(f"no user {name!r}")
            user.enabled = enabled
            return UserInfo(user.name, user.enabled, user.created, user.eap_secret is not None)

    def list_users(self) -> list[UserInfo]:
        with self.transaction() as session:
            rows = session.execute(_USER_INFO.order_by(User.name))
            return [UserInfo(*row) for row in rows]

    def user(self, name: str) -> UserInfo:
        """User ``name``; NotFound when there is none."""
        with self.transaction() as session:
            row = session.execute(_USER_INFO.where(User.name == name)).first()
            if row is None:
                raise NotFound(f"no user {name!r}")
            return UserInfo(*row)

    # -- assessments -------------------------------------------------------------------

    # Every write an assessment makes is a plain Core statement (the ORM's
    # unit of work would cost more than the rest of the assessment), in a
    # function of a Connection so the server can commit many in one
    # transaction (PolicyStore's write queue).

    def session_started(self, peer, connection_id: int) -> int:
        """Record the start of an assessment of ``peer`` (a PeerInfo); its session id."""
        return self.write(record_session_start, peer, connection_id)

    def session_decided(self, session_id: int, decision) -> None:
        """Record the final decision and each IMV's result.

        A later decision of the same session (after a handshake retry)
        replaces the earlier one.
        """
        return self.write(record_decision, session_id, decision)

    def device_seen(self, session_id: int, device_id: str, product: str | None = None) -> int:
        """Bind a session to the device an IMV identified (created if new); the device's row id."""
        return self.write(record_device, session_id, device_id, product)

    def add_measurement(self, session_id: int, imv_name: str, kind: str, payload: Any) -> int:
        """Keep what an IMV measured in a session (``payload``: JSON-able); the row id."""
        return self.write(record_measurement, session_id, imv_name, kind, payload)

    def session_aborted(self, session_id: int, reason: str) -> bool:
        """End a session without decision as aborted (:func:`record_abort`)."""
        return self.write(record_abort, session_id, reason)

    def close_orphans(self, instance: str, process: int | None = None, reason: str = "",
                      started_before: datetime.datetime | None = None) -> int:
        """End the open sessions of ``instance`` (its ``process``, or all) as
        interrupted (:func:`close_orphans`); how many."""
        return self.write(close_orphans, instance, process, reason, started_before)

    def write(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in a transaction of its own."""
        return self.retrying(self._write_once, fn, *args)

    def _write_once(self, fn: Callable[..., T], *args: Any) -> T:
        with self.engine.begin() as connection:
            return fn(connection, *args)

    def write_batch(self, writes: list[tuple[Callable[..., Any], tuple]]) -> list[tuple[bool | None, Any]]:
        """Run each ``(fn, args)`` of ``writes`` as :meth:`write` does, all in
        one transaction: one commit for many (:meth:`write_batch_once`, run
        again after a deadlock).

        Should a write fail, the batch is rolled back and each write runs
        again in a transaction of its own, so a bad write costs the others
        nothing.  For each write, (True, its result), (False, the Failure)
        or, when the database became unavailable at that write, (None, the
        exception) for it and every write after it: none of those was
        done, and they can be run again in the same order later.  When the
        database is unavailable for the batch, the exception is raised
        (:func:`nac.db.outage.transient`) and nothing was done.
        """
        if len(writes) > 1:
            try:
                return self.retrying(self.write_batch_once, writes)
            except Exception as exc:
                if transient(exc):
                    raise
            self.split_batches += 1
        results: list[tuple[bool | None, Any]] = []
        for index, (fn, args) in enumerate(writes):
            try:
                results.append((True, self.write(fn, *args)))
            except Exception as exc:
                if transient(exc):
                    results.extend((None, exc) for _ in writes[index:])
                    break
                results.append((False, Failure()))
        return results

    def write_batch_once(self, writes: list[tuple[Callable[..., Any], tuple]]) -> list[tuple[bool, Any]]:
        """:meth:`write_batch` in one transaction only: should a write fail
        (or the database be locked), nothing is kept and the exception is
        raised.  For each write, (True, its result).  The rows the writes
        update are locked first, in one order (:func:`lock_rows`)."""
        with self.engine.begin() as connection:
            lock_rows(connection, writes)
            return [(True, fn(connection, *args)) for fn, args in writes]

    def checkpoint(self) -> tuple[int, int, int]:
        """Copy what the SQLite write-ahead log holds into the database file
        as far as no reader needs it (``PRAGMA wal_checkpoint(PASSIVE)``,
        outside any transaction): (busy, frames in the log, frames copied)."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                return tuple(cursor.fetchone())
            finally:
                cursor.close()
        finally:
            raw.close()

    def list_sessions(self, limit: int = 20) -> list[SessionInfo]:
        """The newest ``limit`` sessions, newest first."""
        with self.transaction() as session:
            rows = session.scalars(
                sa.select(AssessmentSession)
                .options(orm.joinedload(AssessmentSession.device))
                .order_by(AssessmentSession.started.desc(), AssessmentSession.id.desc())
                .limit(limit))
            return [_session_info(r) for r in rows]

    def session_results(self, session_id: int) -> tuple[SessionInfo, list[ResultInfo]]:
        with self.transaction() as session:
            row = session.get(AssessmentSession, session_id)
            if row is None:
                raise NotFound(f"no session {session_id}")
            results = [
                ResultInfo(r.imv_id, r.imv_name, r.recommendation, r.evaluation, r.reason,
                           r.reason_language, r.remediation, r.forced)
                for r in row.results]
            return _session_info(row), results

    def list_devices(self) -> list[DeviceInfo]:
        with self.transaction() as session:
            rows = session.scalars(
                sa.select(Device).options(orm.joinedload(Device.product)).order_by(Device.id))
            return [
                DeviceInfo(d.id, d.device_id, d.product.name if d.product else None, d.trusted,
                           d.first_seen, d.last_seen, d.description)
                for d in rows]

    # -- package policy (nac-admin packages) ---------------------------------------------

    def import_packages(self, product: str, releases: Iterable[tuple[str, str]], *,
                        security: bool = False) -> PackageImport:
        """Record releases of packages on ``product`` (created if new): what a
        Debian archive's Packages file or a host's ``dpkg-query -W`` lists.
        With ``security`` the releases are marked as security releases, which
        makes older releases outdated for the OS IMV.  Blacklist flags stay."""
        _check_name("product", product, NAME_LENGTH)
        wanted: dict[tuple[str, str], None] = {}
        for name, release in releases:
            _check_name("package name", name, NAME_LENGTH)
            _check_name(f"version of package {name!r}", release, NAME_LENGTH)
            wanted[(name, release)] = None
        now = utcnow()
        with self.transaction() as session:
            product_row = _get_or_create(session, Product, name=product)
            session.flush()
            names = sorted({name for name, _ in wanted})
            ids = _package_ids(session, names)
            new_names = [name for name in names if name not in ids]
            if new_names:
                # the new ids come back from the insert itself: looking them up in
                # the same transaction made PostgreSQL scan the unanalysed table
                rows = session.execute(
                    sa.insert(Package.__table__).returning(Package.__table__.c.id, Package.__table__.c.name),
                    [{"name": n} for n in new_names])
                ids.update({name: id_ for id_, name in rows})
            existing: dict[tuple[int, str], tuple[int, bool]] = {}
            for chunk in _chunks(sorted(set(ids.values()))):
                rows = session.execute(
                    sa.select(Version.id, Version.package_id, Version.release, Version.security)
                    .where(Version.product_id == product_row.id, Version.package_id.in_(chunk)))
                for version_id, package_id, release, is_security in rows:
                    existing[(package_id, release)] = (version_id, bool(is_security))
            added, marked = [], []
            for name, release in wanted:
                found = existing.get((ids[name], release))
                if found is None:
                    added.append({"package_id": ids[name], "product_id": product_row.id,
                                  "release": release, "security": security, "blacklisted": False,
                                  "time": now})
                elif security and not found[1]:
                    marked.append(found[0])
            if added:
                session.execute(sa.insert(Version.__table__), added)
            for chunk in _chunks(marked):
                session.execute(sa.update(Version.__table__)
                                .where(Version.__table__.c.id.in_(chunk)).values(security=True))
            return PackageImport(product=product, releases=len(wanted), packages_added=len(new_names),
                                 versions_added=len(added), versions_marked=len(marked),
                                 unchanged=len(wanted) - len(added) - len(marked))

    def blacklist_package(self, product: str, name: str, release: str | None = None, *,
                          blacklisted: bool = True) -> VersionInfo:
        """Forbid one release of a package on ``product``, or every release
        (``release`` None: strongSwan's ``*``); ``blacklisted=False`` lifts it."""
        _check_name("product", product, NAME_LENGTH)
        _check_name("package name", name, NAME_LENGTH)
        release = "*" if release is None else _check_name("version", release, NAME_LENGTH)
        with self.transaction() as session:
            product_id = _product_id(session, product)
            query = (sa.select(Version).join(Package, Version.package_id == Package.id)
                     .where(Package.name == name, Version.product_id == product_id,
                            Version.release == release))
            version = session.scalar(query)
            if not blacklisted:
                if version is None or not version.blacklisted:
                    raise NotFound(f"package {name!r} {_release_text(release)} is not blacklisted "
                                   f"on {product!r}")
                info = VersionInfo(product, name, release, version.security, False, version.time)
                if release == "*":
                    session.delete(version)  # exists only to carry the blacklisting
                else:
                    version.blacklisted = False
                return info
            if version is None:
                package = _get_or_create(session, Package, name=name)
                version = Version(package=package, product_id=product_id, release=release,
                                  security=False, blacklisted=True, time=utcnow())
                session.add(version)
            version.blacklisted = True
            session.flush()
            return VersionInfo(product, name, release, version.security, True, version.time)

    def list_packages(self, product: str | None = None, name: str | None = None, *,
                      blacklisted_only: bool = False, limit: int | None = None) -> list[VersionInfo]:
        """Known releases, by product, package and release."""
        with self.transaction() as session:
            query = (sa.select(Product.name, Package.name, Version.release, Version.security,
                               Version.blacklisted, Version.time)
                     .join(Version, Version.product_id == Product.id)
                     .join(Package, Version.package_id == Package.id)
                     .order_by(Product.name, Package.name, Version.release))
            if product is not None:
                query = query.where(Version.product_id == _product_id(session, product))
            if name is not None:
                query = query.where(Package.name == name)
            if blacklisted_only:
                query = query.where(Version.blacklisted == sa.true())
            if limit is not None:
                query = query.limit(limit)
            return [VersionInfo(*row) for row in session.execute(query)]

    # -- groups (nac-admin group) --------------------------------------------------------

    def add_group(self, name: str, parent: str | None = None) -> GroupInfo:
        _check_name("group name", name, GROUP_NAME_LENGTH)
        try:
            with self.transaction() as session:
                if session.scalar(sa.select(Group.id).where(Group.name == name)) is not None:
                    raise AlreadyExists(f"group {name!r} already exists")
                parent_id = None if parent is None else _group_id(session, parent)
                session.add(Group(name=name, parent_id=parent_id))
                session.flush()
                return GroupInfo(name, parent, 0, 0)
        except sa.exc.IntegrityError:
            raise AlreadyExists(f"group {name!r} already exists") from None

    def delete_group(self, name: str) -> None:
        """Delete a group and its memberships; its subgroups lose their parent."""
        with self.transaction() as session:
            group_id = _group_id(session, name)
            session.execute(sa.update(Group.__table__).where(Group.__table__.c.parent_id == group_id)
                            .values(parent_id=None))
            session.execute(sa.delete(Group.__table__).where(Group.__table__.c.id == group_id))

    def list_groups(self) -> list[GroupInfo]:
        with self.transaction() as session:
            parent = orm.aliased(Group)
            devices = (sa.select(sa.func.count()).where(GroupDevice.group_id == Group.id)
                       .correlate(Group).scalar_subquery())
            identities = (sa.select(sa.func.count()).where(GroupIdentity.group_id == Group.id)
                          .correlate(Group).scalar_subquery())
            rows = session.execute(
                sa.select(Group.name, parent.name, devices, identities)
                .outerjoin(parent, Group.parent_id == parent.id).order_by(Group.name))
            return [GroupInfo(*row) for row in rows]

    def add_group_member(self, group: str, *, device: str | None = None,
                         identity: str | None = None) -> GroupMemberInfo:
        """Put a device (its Device ID) or an identity into ``group``."""
        kind, member = _member(device, identity)
        try:
            with self.transaction() as session:
                group_id = _group_id(session, group)
                if kind == "device":
                    device_pk = _device_pk(session, member)
                    if session.get(GroupDevice, (group_id, device_pk)) is not None:
                        raise AlreadyExists(f"device {member!r} is already in group {group!r}")
                    session.add(GroupDevice(group_id=group_id, device_id=device_pk))
                else:
                    if session.get(GroupIdentity, (group_id, member)) is not None:
                        raise AlreadyExists(f"identity {member!r} is already in group {group!r}")
                    session.add(GroupIdentity(group_id=group_id, identity=member))
                session.flush()
                return GroupMemberInfo(group, kind, member)
        except sa.exc.IntegrityError:
            raise AlreadyExists(f"{kind} {member!r} is already in group {group!r}") from None

    def delete_group_member(self, group: str, *, device: str | None = None,
                            identity: str | None = None) -> None:
        kind, member = _member(device, identity)
        with self.transaction() as session:
            group_id = _group_id(session, group)
            if kind == "device":
                row = session.get(GroupDevice, (group_id, _device_pk(session, member)))
            else:
                row = session.get(GroupIdentity, (group_id, member))
            if row is None:
                raise NotFound(f"{kind} {member!r} is not in group {group!r}")
            session.delete(row)

    def group_members(self, group: str) -> list[GroupMemberInfo]:
        """The devices (by Device ID), then the identities of ``group``."""
        with self.transaction() as session:
            group_id = _group_id(session, group)
            devices = session.scalars(
                sa.select(Device.device_id).join(GroupDevice, GroupDevice.device_id == Device.id)
                .where(GroupDevice.group_id == group_id).order_by(Device.device_id))
            identities = session.scalars(
                sa.select(GroupIdentity.identity).where(GroupIdentity.group_id == group_id)
                .order_by(GroupIdentity.identity))
            return ([GroupMemberInfo(group, "device", d) for d in devices]
                    + [GroupMemberInfo(group, "identity", i) for i in identities])


# -- package policy and groups: values and query helpers -------------------------------------

#: Names and IDs looked up per statement (bound parameters).
SQL_CHUNK = 500
GROUP_NAME_LENGTH = Group.__table__.c.name.type.length


@dataclass(frozen=True, slots=True)
class PackageImport:
    """What :meth:`PolicyDb.import_packages` did."""

    product: str
    releases: int
    """distinct (package, release) pairs given"""
    packages_added: int
    versions_added: int
    versions_marked: int
    """known releases newly marked as security releases"""
    unchanged: int


@dataclass(frozen=True, slots=True)
class VersionInfo:
    product: str
    package: str
    release: str
    """the release, or '*' for a blacklisting of every release"""
    security: bool
    blacklisted: bool
    time: datetime.datetime


@dataclass(frozen=True, slots=True)
class GroupInfo:
    name: str
    parent: str | None
    devices: int
    identities: int


@dataclass(frozen=True, slots=True)
class GroupMemberInfo:
    group: str
    kind: str
    """'device' or 'identity'"""
    member: str


def _chunks(items: list, size: int = SQL_CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _package_ids(session: orm.Session, names: list[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for chunk in _chunks(names):
        ids.update((name, pk) for pk, name in session.execute(
            sa.select(Package.id, Package.name).where(Package.name.in_(chunk))))
    return ids


def _release_text(release: str) -> str:
    return "(every release)" if release == "*" else f"release {release!r}"


def _product_id(session: orm.Session, product: str) -> int:
    product_id = session.scalar(sa.select(Product.id).where(Product.name == product))
    if product_id is None:
        known = session.scalars(sa.select(Product.name).order_by(Product.name).limit(10)).all()
        hint = f"; known products: {', '.join(repr(k) for k in known)}" if known else \
            "; products appear with `nac-admin packages import` or a device's first assessment"
        raise NotFound(f"no product {product!r}{hint}")
    return product_id


def _group_id(session: orm.Session, name: str) -> int:
    group_id = session.scalar(sa.select(Group.id).where(Group.name == name))
    if group_id is None:
        raise NotFound(f"no group {name!r}")
    return group_id


def _device_pk(session: orm.Session, device_id: str) -> int:
    pk = session.scalar(sa.select(Device.id).where(Device.device_id == device_id))
    if pk is None:
        raise NotFound(f"no device {device_id!r} (devices are known from their first assessment: "
                       f"see `nac-admin devices list`)")
    return pk


def _member(device: str | None, identity: str | None) -> tuple[str, str]:
    if (device is None) == (identity is None):
        raise StoreError("give a device or an identity")
    if device is not None:
        return "device", _check_name("device id", device, NAME_LENGTH)
    return "identity", _check_name("identity", identity, IDENTIFIER_LENGTH)


def _get_or_create(session: orm.Session, model, **unique):
    """The row of ``model`` with the ``unique`` column values, inserted if missing.

    The insert runs in a savepoint: when another nac instance inserted the
    same row meanwhile (PostgreSQL), its row is used instead.
    """
    query = sa.select(model).filter_by(**unique)
    row = session.scalar(query)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = model(**unique)
            session.add(row)
    except sa.exc.IntegrityError:
        row = session.scalar(query)
        if row is None:
            raise
    return row


class HeldConnectionDb(PolicyDb):
    """:class:`PolicyDb` for one thread (the inline engine's, the reactor's):
    its write transactions and reads go through two connections it keeps
    open, one for each, instead of taking one from the engine's pool each
    time (the check-out, reset and check-in cost more than a short
    transaction's statements).  A connection whose work failed is closed
    and a new one taken next time."""

    def __init__(self, engine: Engine, verified: VerifiedCredentials | None = None,
                 secrets: SecretBox | None = None):
        super().__init__(engine, verified, secrets)
        self._writer = None
        self._reader = None

    def write_batch_once(self, writes: list[tuple[Callable[..., Any], tuple]]) -> list[tuple[bool, Any]]:
        if self._writer is None:
            self._writer = self.engine.connect()
        try:
            with self._writer.begin():
                return [(True, fn(self._writer, *args)) for fn, args in writes]
        except BaseException:
            self._drop("_writer")
            raise

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._reader is None:
            self._reader = self.engine.connect().execution_options(nac_read_only=True)
        try:
            result = fn(self._reader, *args, **kwargs)
            if self._reader.in_transaction():
                self._reader.rollback()  # end the read (SQLAlchemy began one): keep no snapshot open
            return result
        except BaseException:
            self._drop("_reader")
            raise

    def _drop(self, name: str) -> None:
        connection = getattr(self, name)
        setattr(self, name, None)
        try:
            connection.close()
        except Exception:
            pass  # a broken connection: the pool discards it

    def close(self) -> None:
        """Close the held connections (the engine can be disposed after)."""
        for name in ("_writer", "_reader"):
            if getattr(self, name) is not None:
                self._drop(name)


class WriteQueue:
    """The server's assessment writes, committed together (group commit),
    kept until the database takes them.

    A write waits while the batch before it runs in the store's pool; then
    all the writes that arrived meanwhile go in one transaction
    (:meth:`PolicyDb.write_batch`), at most ``max_batch`` at a time.  An idle
    queue sends a write at once, or with ``call_soon`` (the server's: the
    end of the reactor turn) together with the others made in the same
    turn, so a lone assessment waits for nothing; a busy server makes one
    commit (and one trip to the pool) for many assessments.  Each write
    still gets its own result or failure.

    With ``inline`` (:meth:`PolicyDb.write_batch_once` of an engine that
    never waits for a lock) a batch is first tried right where it is sent;
    if that raises (the database is locked, or a write failed and was
    rolled back with the others), the pool runs it as before.

    Writes the database cannot take now (unreachable, restarting, locked:
    :func:`nac.db.outage.transient`) are not failed: they go back to the
    head of the queue, in their order, and the queue tries again after a
    pause that doubles from ``retry[0]`` to ``retry[1]`` seconds
    (``call_later``), as long as it takes; ``health`` says so in the log
    once per interval.  What waits is bounded: beyond ``max_queued``
    writes a new one fails at once with :class:`~nac.db.outage.QueueFull`
    (0: no bound).

    A batch that starts sessions also reads the package policy's generation
    (:func:`policy_generation`) in its transaction, before those sessions
    learn their ids: :attr:`generation` is then at least the one in force
    when each of them started, so an assessment that has its session id
    can use it instead of reading it again.
    """

    def __init__(self, db: PolicyDb, defer_to_pool: Callable[..., defer.Deferred], max_batch: int = 256,
                 call_soon: Callable[[Callable[[], None]], Any] | None = None,
                 inline: Callable[[list], list] | None = None, *,
                 call_later: Callable[[float, Callable[[], None]], Any] | None = None,
                 max_queued: int = 0, health: DatabaseHealth | None = None,
                 retry: tuple[float, float] = (0.1, 2.0)):
        self._db = db
        self._defer_to_pool = defer_to_pool
        self._inline = inline
        self.max_batch = max_batch
        self.max_queued = max_queued
        self.retry = retry
        self._call_soon = call_soon
        self._call_later = call_later
        self.health = health if health is not None else DatabaseHealth(queued=lambda: self.queued)
        self._waiting: collections.deque[tuple[Callable[..., Any], tuple, defer.Deferred]] = collections.deque()
        self._running = 0
        self._soon = False
        self._again = None
        """The delayed call that tries again after a failure (None: not waiting)."""
        self._failures = 0
        self._committed = 0
        self.stopping = False
        self._idle_waiters: list[defer.Deferred] = []
        self.batches = 0
        """Transactions committed so far (for tests and figures)."""
        self.postponed = 0
        """Writes the database could not take at once, tried again (for tests and figures)."""
        self.generation: int | None = None
        """The package policy's generation as the newest batch that started
        sessions read it (None before the first)."""

    @property
    def queued(self) -> int:
        """Writes not yet committed: waiting, or in a batch under way."""
        return len(self._waiting) + self._running

    def submit(self, fn: Callable[..., T], *args: Any) -> defer.Deferred:
        """Deferred firing with ``fn(connection, *args)`` once committed."""
        if self.max_queued and len(self._waiting) >= self.max_queued:
            self.health.queue_full(self.max_queued)
            return defer.fail(QueueFull(f"QueueFull: {self.max_queued} writes wait for the database"))
        d = defer.Deferred()
        self._waiting.append((fn, args, d))
        self._kick()
        return d

    def _kick(self) -> None:
        if self._running or self._soon or self._again is not None or not self._waiting:
            return
        if self._call_soon is None:
            self._send()
        else:
            # the other writes of this turn of the reactor (an IMV's
            # device and measurements, the decision) go along
            self._soon = True
            self._call_soon(self._send_soon)

    def _send_soon(self) -> None:
        self._soon = False
        if not self._running and self._again is None and self._waiting:
            self._send()

    def idle(self) -> defer.Deferred:
        """Fires once every write submitted so far is committed (or failed)."""
        if not self.queued:
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle_waiters.append(d)
        return d

    def flush(self) -> None:
        """Send every waiting write now, without waiting for the running
        batch or a pause after a failure (the store is stopping: its pool
        runs what was queued).  When the database is unavailable, what it
        does not take is lost, and the log says how much."""
        self.stopping = True
        if self._again is not None:
            if self._again.active():
                self._again.cancel()
            self._again = None
        while self._waiting:
            self._send()

    def _send(self) -> None:
        batch = [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]
        self._running += len(batch)
        self.batches += 1
        writes = [(fn, args) for fn, args, _ in batch]
        starts = any(fn is record_session_start for fn, _args in writes)
        if starts:
            writes.append((policy_generation, ()))
        d = None
        if self._inline is not None:
            try:
                d = defer.succeed(self._inline(writes))
            except Exception:
                pass  # nothing was kept: the pool runs the batch
        if d is None:
            d = self._defer_to_pool(self._write_last if self.stopping else self._db.write_batch, writes)
        d.addCallbacks(self._deliver, self._lost, callbackArgs=(batch, starts), errbackArgs=(batch,))
        d.addErrback(lambda failure: log.failure("delivering the results of {n} writes failed", failure,
                                                 n=len(batch)))
        d.addBoth(self._sent, len(batch))

    def _write_last(self, writes: list) -> list:
        """:meth:`PolicyDb.write_batch` while stopping, in the pool's thread:
        what the database does not take is lost, and this says so in the log
        (the reactor may not run the batch's callbacks any more)."""
        try:
            results = self._db.write_batch(writes)
        except Exception as exc:
            if transient(exc):
                self._say_lost(len(writes), exc)
            raise
        later = [value for ok, value in results if ok is None]
        if later:
            self._say_lost(len(later), later[0])
        return results

    @staticmethod
    def _say_lost(count: int, error: BaseException) -> None:
        log.error("{n} writes to the policy database are lost: it is unavailable ({kind}) and nac is "
                  "stopping", n=count, kind=unavailable(error).kind)

    def _deliver(self, results: list, batch: list, starts: bool) -> None:
        if starts:
            ok, generation = results.pop()
            self.generation = generation if ok else None
        later, error = [], None
        for entry, (ok, value) in zip(batch, results):
            if ok is None:
                later.append(entry)
                error = value
            elif ok:
                self._committed += 1
                entry[2].callback(value)
            else:
                entry[2].errback(value)
        if later:
            self._postpone(later, error)
        else:
            self._failures = 0

    def _lost(self, failure: Failure, batch: list) -> None:
        if transient(failure.value):
            self._postpone(batch, failure.value)
            return
        for _fn, _args, waiting in batch:
            waiting.errback(failure)

    def _postpone(self, entries: list, error: BaseException) -> None:
        """``entries`` were not done: they go first again, once the pause is over."""
        self.postponed += len(entries)
        self._waiting.extendleft(reversed(entries))
        self.health.failed(error)
        if self.stopping or self._call_later is None:
            self._abandon(error, said=self.stopping)
            return
        pause = min(self.retry[1], self.retry[0] * 2 ** self._failures)
        self._failures += 1
        if self._again is None:
            self._again = self._call_later(pause, self._try_again)

    def _try_again(self) -> None:
        self._again = None
        if not self._running and self._waiting:
            self._send()

    def _abandon(self, error: BaseException, said: bool = False) -> None:
        """Fail every waiting write: the queue cannot try again (``said``:
        the log knows already)."""
        lost, self._waiting = list(self._waiting), collections.deque()
        if not said:
            self._say_lost(len(lost), error)
        for _fn, _args, waiting in lost:
            waiting.errback(unavailable(error))

    def _sent(self, _result, size: int) -> None:
        self._running -= size
        if self._running:
            return  # flush() sent several at once
        if self._committed:
            committed, self._committed = self._committed, 0
            self.health.succeeded(committed)
        if self._again is not None:
            return  # pausing after a failure
        if self._waiting:
            if self._call_soon is None:
                self._send()
            elif not self._soon:
                # writes the last batch's results led to: the rest of this
                # turn's go along
                self._soon = True
                self._call_soon(self._send_soon)
        elif self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)


#: ``[nac] db_wait``: seconds a decision waits for its record to commit.
DEFAULT_WAIT = 2.0
#: ``[nac] db_timeout``: seconds a lookup waits for the database.
DEFAULT_TIMEOUT = 5.0
#: ``[nac] db_queue``: most writes waiting for the database.
DEFAULT_QUEUE = 20000


@implementer(IPolicyStore)
class PolicyStore(service.Service):
    """:class:`PolicyDb` off the reactor: every method returns a Deferred.

    The store runs its writes and transactions in ``threadpool`` (default:
    a new pool of 1–4 threads named ``nac-db``) and its reads in a pool of
    their own (``nac-db-read``), so that a read never queues behind a write
    waiting for a lock; it starts them in :meth:`start` and stops them in
    :meth:`stop`, so pass only a pool dedicated to it.  Calls made before
    :meth:`start` wait in the pools' queues.  As a Service, starting and
    stopping it does the same; :meth:`start` also stops the pools when the
    reactor shuts down, should nobody call :meth:`stop`.

    ``inline`` (``[nac] db_inline``), with a SQLite database file: the
    assessments' writes and the user lookups of a login run first in the
    caller's thread (the reactor's) on an engine of their own that never
    waits for a lock.  They are short (a few indexed statements, no file
    sync), and handing them to a thread costs more than running them: the
    two threads take turns at the GIL for every SQLite call.  Should the
    database be locked (another process writing, the pool's own work) or
    anything fail, the pool runs the operation as before.  The pool also
    checkpoints the write-ahead log every :attr:`CHECKPOINT_EVERY` inline
    write transactions, which the inline engine never does (it syncs files).

    When the database is away (see :mod:`nac.db.outage`): the assessments'
    writes wait in the :class:`WriteQueue` until it is back (at most
    ``max_queued`` of them); a lookup (:meth:`read`, :meth:`run`, a user's
    row) fails with :class:`~nac.db.outage.StoreUnavailable` when the
    database fails or has not answered within ``timeout`` seconds, so that
    nobody waits longer; :meth:`bounded_wait` lets the core hold a decision
    until it is recorded for at most ``wait`` seconds.  :attr:`health`
    logs it all, once per failure kind and interval.

    ``instance`` (``[nac] instance``) and ``process`` (0: the main process,
    k: worker k) are written into every session this store starts; on
    :meth:`start`, the sessions they left open when they last stopped
    (killed, crashed) are closed as interrupted — of every process of the
    instance when ``process`` is 0, which the workers restart with.
    """

    name = "policy-store"

    CHECKPOINT_EVERY = 64

    def __init__(self, engine: Engine, threadpool: ThreadPool | None = None, reactor=None,
                 credential_cache_ttl: float = 300.0, secrets: SecretBox | None = None,
                 inline: bool = True, *, instance: str | None = None, process: int = 0,
                 wait: float = DEFAULT_WAIT, timeout: float = DEFAULT_TIMEOUT,
                 max_queued: int = DEFAULT_QUEUE):
        self.db = PolicyDb(engine, VerifiedCredentials(credential_cache_ttl), secrets)
        self.instance = instance
        self.process = process
        self.wait = wait
        self.timeout = timeout
        self.inline_db: HeldConnectionDb | None = None
        """The same database on the inline engine (None: everything in the pool)."""
        if inline and engine.dialect.name == "sqlite" and db_engine.sqlite_path(engine.url) is not None:
            self.inline_db = HeldConnectionDb(db_engine.make_engine(engine.url, inline=True), self.db.verified,
                                              secrets)
        self.inline_runs = 0
        """Operations run inline so far (for tests and figures)."""
        self.inline_fallbacks = 0
        """Inline attempts the pool took over."""
        self.checkpoints = 0
        """Write-ahead log checkpoints the pool made for the inline writes."""
        self._since_checkpoint = 0
        self._checkpointing = False
        # SQLite has one writer at a time: more threads would only queue on
        # its lock (busy-waiting), so its writes go through one thread;
        # readers do not wait for it (write-ahead log)
        single = engine.dialect.name == "sqlite"
        self.threadpool = threadpool if threadpool is not None else ThreadPool(
            minthreads=1, maxthreads=1 if single else 4, name="nac-db")
        self.read_pool = ThreadPool(minthreads=0, maxthreads=2 if single else 4, name="nac-db-read")
        # scrypt checks run beside the queries, not in front of them
        self.auth_pool = ThreadPool(minthreads=0, maxthreads=2, name="nac-auth")
        self._reactor = reactor
        self._shutdown_trigger = None
        self._orphans_closed = False
        #: ``listener(session_id, decision)`` called once a decision is committed
        self.decision_listeners: list[Callable[[int, Any], None]] = []
        self.health = DatabaseHealth(lambda: self.reactor.seconds(), queued=lambda: self.writes.queued)
        self.writes = WriteQueue(self.db, self._defer,
                                 call_soon=lambda fn: self.reactor.callLater(0, fn),
                                 inline=None if self.inline_db is None else self._inline_batch,
                                 call_later=lambda delay, fn: self.reactor.callLater(delay, fn),
                                 max_queued=max_queued, health=self.health)

    @property
    def reactor(self):
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        return self._reactor

    # -- lifetime ----------------------------------------------------------------------

    def start(self) -> None:
        for pool in (self.threadpool, self.read_pool, self.auth_pool):
            if not pool.started:
                pool.start()
        if self._shutdown_trigger is None:
            self._shutdown_trigger = self.reactor.addSystemEventTrigger(
                "during", "shutdown", self._stop_at_shutdown)
        if self.instance is not None and not self._orphans_closed:
            self._orphans_closed = True
            self._close_orphans()

    def _close_orphans(self) -> defer.Deferred:
        # first in the queue, and only what started before now: should the
        # database be away, this waits while the sessions of this run (and
        # of the main process's workers) begin
        whose = "" if self.process == 0 else f" (process {self.process})"
        reason = f"nac instance '{self.instance}'{whose} stopped before the assessment ended"
        d = self.writes.submit(close_orphans, self.instance, self.process or None, reason, utcnow())

        def closed(count: int) -> None:
            if count:
                log.warn("closed {count} session(s) of nac instance '{instance}'{whose} left open when it "
                         "last stopped (recorded as '{access}')", count=count, instance=self.instance,
                         whose=whose, access=INTERRUPTED)

        d.addCallbacks(closed, lambda failure: log_store_failure(
            log, failure, "closing the sessions left open by the last run failed"))
        return d

    def stop(self) -> None:
        """Stop the pools, after the queries and writes already queued have run."""
        if self.threadpool.started:
            self.writes.flush()
        if self._shutdown_trigger is not None:
            self.reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        for pool in (self.threadpool, self.read_pool, self.auth_pool):
            if pool.started:
                pool.stop()
        if self.inline_db is not None:
            self.inline_db.close()
            self.inline_db.engine.dispose()  # it reconnects should anything come later

    def _stop_at_shutdown(self) -> None:
        self._shutdown_trigger = None
        self.stop()

    def startService(self) -> None:
        super().startService()
        self.start()

    def stopService(self):
        super().stopService()
        self.stop()

    # -- waiting for the database, bounded -------------------------------------------------

    def _defer(self, fn: Callable[..., T], *args: Any, **kwargs: Any):
        return threads.deferToThreadPool(self.reactor, self.threadpool, fn, *args, **kwargs)

    def _defer_read(self, fn: Callable[..., T], *args: Any, **kwargs: Any):
        return threads.deferToThreadPool(self.reactor, self.read_pool, fn, *args, **kwargs)

    def _bounded(self, d: defer.Deferred) -> defer.Deferred:
        """``d``'s result, except that a transient failure becomes
        :class:`StoreUnavailable` (reported to :attr:`health`), and so does
        no answer within :attr:`timeout` seconds (the work goes on, its
        result is dropped)."""
        result = defer.Deferred()
        timer = None

        def done(value):
            if timer is not None and timer.active():
                timer.cancel()
            if isinstance(value, Failure):
                if transient(value.value):
                    error = unavailable(value.value)
                    self.health.failed(error)
                    value = Failure(error)
            else:
                self.health.succeeded()
            if not result.called:
                if isinstance(value, Failure):
                    result.errback(value)
                else:
                    result.callback(value)

        def expired():
            if not result.called:
                error = StoreUnavailable(f"TimeoutError: no answer within {self.timeout:g} s "
                                         f"([nac] db_timeout)")
                self.health.failed(error)
                result.errback(error)

        if not d.called and self.timeout > 0:
            timer = self.reactor.callLater(self.timeout, expired)
        d.addBoth(done)
        return result

    def bounded_wait(self, d: defer.Deferred) -> defer.Deferred:
        """Fires with None once ``d`` fired or :attr:`wait` seconds passed,
        whichever comes first; never fails.  The core holds a decision on
        it until its record is committed (``[nac] db_wait``)."""
        if d.called or self.wait <= 0:
            return defer.succeed(None)
        result = defer.Deferred()

        def release(_value=None):
            if not result.called:
                result.callback(None)
            if timer.active():
                timer.cancel()
            return _value

        timer = self.reactor.callLater(self.wait, release)
        d.addBoth(release)
        return result

    # -- operations --------------------------------------------------------------------

    def _quick(self, method: str, *args: Any):
        """Deferred firing with ``PolicyDb.<method>(*args)`` (a read): inline
        when it can be, else in the read pool; bounded (:meth:`_bounded`)."""
        if self.inline_db is not None:
            try:
                return defer.succeed(self._inline(method, *args))
            except Exception:
                pass
        return self._bounded(self._defer_read(getattr(self.db, method), *args))

    def _inline(self, method: str, *args: Any):
        try:
            result = getattr(self.inline_db, method)(*args)
        except Exception as exc:
            self.inline_fallbacks += 1
            log.debug("policy database: {method} goes to the database thread ({error})",
                      method=method, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise
        self.inline_runs += 1
        return result

    def _inline_batch(self, writes: list) -> list:
        results = self._inline("write_batch_once", writes)
        self._since_checkpoint += 1
        if self._since_checkpoint >= self.CHECKPOINT_EVERY and not self._checkpointing:
            self._checkpoint()
        return results

    def _checkpoint(self) -> None:
        self._checkpointing = True
        self._since_checkpoint = 0

        def done(result):
            self._checkpointing = False
            if isinstance(result, Failure):
                if transient(result.value):
                    log.debug("checkpointing the write-ahead log: {error}", error=describe(result.value))
                else:
                    log.failure("checkpointing the policy database's write-ahead log failed", result)
            else:
                self.checkpoints += 1

        self._defer(self.db.checkpoint).addBoth(done)

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any):
        """Deferred firing with ``fn(session, *args, **kwargs)``, run in one
        transaction (again after a deadlock); StoreUnavailable when the
        database cannot, or does not answer in time (:meth:`_bounded`)."""
        return self._bounded(self._defer(self.db.run, fn, *args, **kwargs))

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any):
        """Deferred firing with ``fn(connection, *args, **kwargs)``
        (:meth:`PolicyDb.read`), bounded as :meth:`run`."""
        return self._bounded(self._defer_read(self.db.read, fn, *args, **kwargs))

    @property
    def policy_generation(self) -> int | None:
        """The package policy's generation in force when the sessions with
        an id so far started, or a later one (:attr:`WriteQueue.generation`);
        None when not known."""
        return self.writes.generation

    def check_schema(self):
        """Deferred firing with the schema revision, or failing with SchemaError."""
        return self._defer(self.db.check_schema)

    def eap_secret(self, name: str):
        """Deferred firing with the EAP password of enabled user ``name`` or
        None; None too when the user's row cannot be read (the database is
        away), so that the login fails."""
        return self._quick("eap_secret", name).addErrback(self._unreadable, None)

    def check_password(self, name: str, password: str | bytes):
        """Deferred firing with True only for an enabled user with this password.

        The user's row is read (inline or in the database pool); a password
        verified recently is recognised at once, any other goes through
        scrypt in a pool of its own so slow checks never hold up the queries.
        A row that cannot be read (the database is away) fails the login.
        """
        verified = self.db.verified

        def check(row):
            if row is not None and verified is not None and verified.known(name, password, row[0]):
                return row[1]
            return threads.deferToThreadPool(self.reactor, self.auth_pool, check_against,
                                             verified, name, password, row)

        return self._quick("password_row", name).addCallbacks(check, self._unreadable, errbackArgs=(False,))

    @staticmethod
    def _unreadable(failure: Failure, answer):
        """``answer`` for a lookup the database could not make (logged by
        :attr:`health`, once per interval)."""
        failure.trap(StoreUnavailable)
        return answer

    def session_started(self, peer, connection_id: int):
        d = self.writes.submit(record_session_start, peer, connection_id, self.instance, self.process)

        def started(session_id: int) -> int:
            log.debug("Connection ID {cid} from {peer} recorded as session {sid}",
                      cid=connection_id, peer=peer.address, sid=session_id)
            return session_id

        return d.addCallback(started)

    def session_decided(self, session_id: int, decision):
        d = self.writes.submit(record_decision, session_id, decision)
        if self.decision_listeners:
            d.addCallback(self._decided, session_id, decision)
        return d

    def _decided(self, result, session_id: int, decision):
        # after the commit: a listener (RADIUS CoA) reads what was recorded
        self.notify_decision(session_id, decision)
        return result

    def notify_decision(self, session_id: int, decision) -> None:
        """Tell the :attr:`decision_listeners` of the committed decision of
        session ``session_id``: this process's, or one a worker process
        made (a :class:`~nac.tnccs.assessment.RelayedDecision`, see
        :func:`nac.processes.decision_relay`)."""
        for listener in list(self.decision_listeners):
            try:
                listener(session_id, decision)
            except Exception:
                log.failure("a listener of recorded decisions failed")

    def session_aborted(self, session_id: int, reason: str):
        return self.writes.submit(record_abort, session_id, reason)

    def device_seen(self, session_id: int, device_id: str, product: str | None = None):
        return self.writes.submit(record_device, session_id, device_id, product)

    def add_measurement(self, session_id: int, imv_name: str, kind: str, payload: Any):
        return self.writes.submit(record_measurement, session_id, imv_name, kind, payload)

    def keep_device_packages(self, session_id: int, product: str, digest: str, packages):
        """Keep the package list of the device of session ``session_id``
        (:func:`nac.db.reevaluation.keep_device_packages`)."""
        from nac.db.reevaluation import keep_device_packages

        return self.writes.submit(keep_device_packages, session_id, product, digest, packages)

    def import_packages(self, product: str, releases, *, security: bool = False):
        return self._defer(self.db.import_packages, product, list(releases), security=security)

    def blacklist_package(self, product: str, name: str, release: str | None = None, *,
                          blacklisted: bool = True):
        return self._defer(self.db.blacklist_package, product, name, release, blacklisted=blacklisted)

    def list_packages(self, product: str | None = None, name: str | None = None, *,
                      blacklisted_only: bool = False, limit: int | None = None):
        return self._defer(self.db.list_packages, product, name, blacklisted_only=blacklisted_only,
                           limit=limit)

    def add_group(self, name: str, parent: str | None = None):
        return self._defer(self.db.add_group, name, parent)

    def delete_group(self, name: str):
        return self._defer(self.db.delete_group, name)

    def list_groups(self):
        return self._defer(self.db.list_groups)

    def add_group_member(self, group: str, *, device: str | None = None, identity: str | None = None):
        return self._defer(self.db.add_group_member, group, device=device, identity=identity)

    def delete_group_member(self, group: str, *, device: str | None = None,
                            identity: str | None = None):
        return self._defer(self.db.delete_group_member, group, device=device, identity=identity)

    def group_members(self, group: str):
        return self._defer(self.db.group_members, group)
