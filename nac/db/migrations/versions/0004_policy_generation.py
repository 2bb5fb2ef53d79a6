"""Policy generation: a counter that every change to products, packages or
versions moves on (database triggers, whoever makes the change: nac-admin,
another server, an operator's SQL), so servers can keep package verdicts in
memory and know when to forget them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: the tables whose rows the OS IMV's package verdicts are made of
WATCHED = ("products", "packages", "versions")
EVENTS = ("INSERT", "UPDATE", "DELETE")


def upgrade() -> None:
    op.create_table(
        "policy_generation",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("generation", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.execute("INSERT INTO policy_generation (id, generation) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION nac_policy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE policy_generation SET generation = generation + 1 WHERE id = 1;
                RETURN NULL;
            END $$""")
        for table in WATCHED:
            # once per statement: a bulk import moves it on once
            op.execute(f"CREATE TRIGGER nac_policy_{table} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                       f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION nac_policy_changed()")
    else:
        # SQLite has row triggers only
        for table in WATCHED:
            for event in EVENTS:
                op.execute(f"CREATE TRIGGER nac_policy_{table}_{event.lower()} AFTER {event} ON {table} "
                           f"BEGIN UPDATE policy_generation SET generation = generation + 1 WHERE id = 1; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER nac_policy_{table} ON {table}")
        op.execute("DROP FUNCTION nac_policy_changed()")
    else:
        for table in WATCHED:
            for event in EVENTS:
                op.execute(f"DROP TRIGGER nac_policy_{table}_{event.lower()}")
    op.drop_table("policy_generation")
