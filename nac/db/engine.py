"""Opening the database and bringing its schema up to date.

SQLite is the embedded default; PostgreSQL (``postgresql+psycopg://``) serves
several nac instances sharing one policy.  The schema is created and changed
only by the Alembic migrations shipped in ``nac/db/migrations``; the
configuration is built here, so no ``alembic.ini`` is needed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

__all__ = [
    "MIGRATIONS",
    "SQLITE_BUSY_TIMEOUT_MS",
    "DatabaseUnavailable",
    "SchemaError",
    "alembic_config",
    "check_schema",
    "current_revision",
    "display_url",
    "head_revision",
    "make_engine",
    "sqlite_path",
    "upgrade",
]

MIGRATIONS = Path(__file__).resolve().with_name("migrations")

#: How long a SQLite writer waits for another (nac-admin next to the server).
SQLITE_BUSY_TIMEOUT_MS = 10_000

# Any fixed number: serialises concurrent upgrades of one PostgreSQL database.
_PG_UPGRADE_LOCK = 0x6E6163


class SchemaError(Exception):
    """The database schema is missing, older or newer than this nac expects."""

    def __init__(self, message: str, revision: str | None = None, head: str | None = None):
        super().__init__(message)
        self.revision = revision
        self.head = head


class DatabaseUnavailable(Exception):
    """The database URL cannot be used (missing driver, unsupported backend)."""


def display_url(url: str | URL) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<invalid database URL>"


def sqlite_path(url: str | URL) -> str | None:
    """The file of a SQLite URL; None for other URLs and in-memory databases."""
    try:
        url = sa.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        return None
    if database.startswith("file:"):
        return None  # a SQLite URI: the caller knows what it does
    return database


def make_engine(url: str | URL, *, inline: bool = False, timeout: float | None = None) -> Engine:
    """An Engine for ``url``, set up for nac's concurrent use.

    SQLite: WAL journal (readers do not block the writer), foreign keys
    enforced, a busy timeout, real transactions (``BEGIN IMMEDIATE``, so
    DDL is transactional and two writers wait instead of failing with
    "database is locked" halfway through), and the file's directory
    created (mode 0700).  An in-memory SQLite database (``sqlite://``) is
    a single connection shared by all: for tests and one-thread tools only.
    ``postgresql://`` means psycopg 3.

    ``inline``: an engine for the server's own thread (SQLite files only,
    see :class:`nac.db.store.PolicyStore`): it never waits for a lock (a
    locked database fails at once, with "database is locked") and never
    checkpoints the write-ahead log itself, which takes file syncs; the
    database thread does that.

    ``timeout`` (the server's ``[nac] db_timeout``): how long a SQLite
    writer waits for the lock (instead of :data:`SQLITE_BUSY_TIMEOUT_MS`)
    and how long connecting to PostgreSQL may take (``connect_timeout``,
    unless the URL sets it).
    """
    try:
        url = sa.make_url(url)
    except sa.exc.ArgumentError:
        # not echoed: an unparsable URL cannot have its password masked
        raise DatabaseUnavailable(
            "not a database URL of the form dialect[+driver]://...") from None
    backend = url.get_backend_name()
    if inline and (backend != "sqlite" or sqlite_path(url) is None):
        raise ValueError(f"{display_url(url)}: only a SQLite database file has an inline engine")
    if backend == "sqlite":
        busy = SQLITE_BUSY_TIMEOUT_MS if timeout is None else max(1, int(timeout * 1000))
        return _sqlite_engine(url, inline=inline, busy_timeout_ms=busy)
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        connect_args = {}
        if timeout is not None and "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = max(1, math.ceil(timeout))
        try:
            return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        except ImportError as exc:
            raise DatabaseUnavailable(
                f"{display_url(url)}: the PostgreSQL driver is not installed "
                f"(pip install 'psycopg[binary]'): {exc}") from None
    try:
        return sa.create_engine(url)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise DatabaseUnavailable(f"{display_url(url)}: not a database URL nac can use "
                                  f"(sqlite or postgresql): {exc}") from None


def _sqlite_engine(url: URL, *, inline: bool = False, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    path = sqlite_path(url)
    kwargs: dict = {}
    if path is None and not (url.database or "").startswith("file:"):
        # one shared connection, or every connection would see its own empty database
        kwargs["poolclass"] = sa.pool.StaticPool
    if path is not None:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, mode=0o700, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False}, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, connection_record):
        # Take transaction control away from the sqlite3 module, which would
        # not BEGIN before DDL; the "begin" hook below does it instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {0 if inline else busy_timeout_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")  # safe with WAL
            if inline:
                cursor.execute("PRAGMA wal_autocheckpoint = 0")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(connection):
        # Writers take the write lock up front (no deadlock upgrading a read
        # lock); reads (PolicyDb.read) do not, so under WAL they go on while
        # another process writes.
        if connection.get_execution_options().get("nac_read_only"):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# -- migrations --------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None):
    """An Alembic Config for nac's migrations, optionally bound to ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this nac knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    return {script.revision for script in scripts.walk_revisions()}


def current_revision(engine: Engine | Connection) -> str | None:
    """The schema revision stamped in the database, None if it has no nac schema."""
    from alembic.runtime.migration import MigrationContext

    if isinstance(engine, Connection):
        return MigrationContext.configure(engine).get_current_revision()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_schema(engine: Engine | Connection) -> str:
    """Return the revision if the schema is this nac's newest, else raise :class:`SchemaError`."""
    revision = current_revision(engine)
    head = head_revision()
    if revision == head:
        return revision
    where = display_url(engine.engine.url if isinstance(engine, Connection) else engine.url)
    if revision is None:
        raise SchemaError(f"the database {where} has no nac schema: run `nac-admin init`",
                          revision, head)
    if revision in _known_revisions():
        raise SchemaError(f"the database {where} is at schema revision {revision}, this nac "
                          f"needs {head}: run `nac-admin init`", revision, head)
    raise SchemaError(f"the database {where} is at schema revision {revision!r}, unknown to "
                      f"this nac (made by a newer version?); `nac-admin init` of a matching "
                      f"nac version is needed", revision, head)


def upgrade(engine_or_url: Engine | str | URL) -> str:
    """Run the migrations up to the newest revision (idempotent); returns it.

    Everything happens in one transaction: a failed upgrade leaves the
    database as it was.
    """
    from alembic import command
    from alembic.util import CommandError

    own = not isinstance(engine_or_url, Engine)
    engine = make_engine(engine_or_url) if own else engine_or_url
    try:
        revision = current_revision(engine)
        if revision is not None and revision not in _known_revisions():
            check_schema(engine)  # raises the "unknown revision" SchemaError
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_UPGRADE_LOCK})")
            try:
                command.upgrade(alembic_config(connection), "head")
            except CommandError as exc:
                raise SchemaError(f"cannot upgrade {display_url(engine.url)}: {exc}") from None
            return current_revision(connection)
    finally:
        if own:
            engine.dispose()
