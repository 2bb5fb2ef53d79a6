"""Migration 0005: sessions name the NAS that relayed the endpoint.  A
database at revision 0004 with sessions in it is upgraded in place (its
sessions keep every value, without a NAS); new sessions record the NAS's
short name (SQLite; PostgreSQL too when NAC_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from alembic import command
from twisted.trial import unittest

from nac.db import PolicyDb
from nac.db import engine as db_engine
from nac.db import models as m
from tests.test_db import DatabaseMixin, PostgresBackend, SqliteBackend, decision, peer


class SessionNasMigrationMixin(DatabaseMixin):
    migrate = False

    def test_upgrade_from_0004_keeps_the_sessions(self):
        with self.engine.begin() as connection:
            command.upgrade(db_engine.alembic_config(connection), "0004")
        self.assertEqual(db_engine.current_revision(self.engine), "0004")
        columns = {c["name"] for c in sa.inspect(self.engine).get_columns("sessions")}
        self.assertNotIn("nas", columns)
        with self.engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO sessions (connection_id, identity, auth_method, transport, peer_address, peer_port, "
                "started, reason) VALUES (3, 'carol', 'eap-ttls/pap', 'radius', '192.0.2.1', 1812, "
                "'2026-11-01 10:00:00', '')"))

        self.assertEqual(db_engine.upgrade(self.engine), db_engine.head_revision())
        db = PolicyDb(self.engine)
        [old] = db.list_sessions()
        self.assertEqual((old.connection_id, old.identity, old.transport, old.peer_address, old.peer_port, old.nas),
                         (3, "carol", "radius", "192.0.2.1", 1812, None))

        sid = db.session_started(dataclasses.replace(peer(transport="radius"), nas="sw1"), 4)
        db.session_decided(sid, decision())
        newest, _ = db.list_sessions()
        self.assertEqual((newest.id, newest.nas), (sid, "sw1"))
        self.assertEqual(db.session_results(sid)[0].nas, "sw1")
        # a session from a transport without a NAS
        self.assertIsNone(db.session_results(db.session_started(peer(), 5))[0].nas)

    def test_downgrade_to_0004_drops_the_column_and_keeps_the_rows(self):
        db_engine.upgrade(self.engine)
        PolicyDb(self.engine).session_started(dataclasses.replace(peer(transport="radius"), nas="sw1"), 4)
        with self.engine.begin() as connection:
            command.downgrade(db_engine.alembic_config(connection), "0004")
        self.assertNotIn("nas", {c["name"] for c in sa.inspect(self.engine).get_columns("sessions")})
        with self.engine.connect() as connection:
            self.assertEqual(connection.scalar(sa.select(sa.func.count()).select_from(sa.table("sessions"))), 1)

    def test_the_model_declares_the_column(self):
        self.assertIn("nas", m.AssessmentSession.__table__.columns)


class SqliteSessionNasMigrationTests(SqliteBackend, SessionNasMigrationMixin, unittest.TestCase):
    pass


class PostgresSessionNasMigrationTests(PostgresBackend, SessionNasMigrationMixin, unittest.TestCase):
    pass
