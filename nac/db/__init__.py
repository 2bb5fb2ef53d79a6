"""nac's policy database (SQLAlchemy 2, Alembic migrations).

* :mod:`nac.db.models` — the tables;
* :mod:`nac.db.engine` — :func:`make_engine`, :func:`upgrade`, :class:`SchemaError`;
* :mod:`nac.db.store` — :class:`PolicyDb` (blocking) and :class:`PolicyStore`
  (the same in a thread pool, Deferreds, ``IPolicyStore``);
* :mod:`nac.db.outage` — the database away: transient errors, :class:`StoreUnavailable`,
  the rate-limited log of outages;
* :mod:`nac.db.passwords` — scrypt password hashes.
"""

from nac.db.engine import (
    DatabaseUnavailable,
    SchemaError,
    check_schema,
    current_revision,
    head_revision,
    make_engine,
    upgrade,
)
from nac.db.outage import StoreUnavailable
from nac.db.store import AlreadyExists, NotFound, PolicyDb, PolicyStore, StoreError

__all__ = [
    "AlreadyExists",
    "DatabaseUnavailable",
    "NotFound",
    "PolicyDb",
    "PolicyStore",
    "SchemaError",
    "StoreError",
    "StoreUnavailable",
    "check_schema",
    "current_revision",
    "head_revision",
    "make_engine",
    "upgrade",
]
