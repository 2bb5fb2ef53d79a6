"""Alembic environment for nac's policy database.

nac configures Alembic in code (:func:`nac.db.engine.alembic_config`) and
passes an open connection in ``config.attributes["connection"]``, inside the
caller's transaction.  Without one (Alembic's own command line with a
``sqlalchemy.url``), an engine is made the way nac makes it.  New revisions
are written with ``alembic revision --autogenerate`` against the models.
"""

from alembic import context

from nac.db.engine import make_engine
from nac.db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        **kwargs,
    )


def run_offline() -> None:
    """Emit SQL for a DBA instead of running it (``alembic upgrade --sql``)."""
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    # SQLite cannot ALTER most things: batch mode rebuilds tables instead.
    # nac's SQLite engine issues a real BEGIN, so DDL is transactional there too.
    _configure(connection=connection, render_as_batch=sqlite,
               transactional_ddl=True if sqlite else None)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
