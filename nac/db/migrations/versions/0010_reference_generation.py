"""Reference generation: row 3 of policy_generation moves on with every
change to the attestation's reference values (files, file_hashes, and
products, whose names key them), by triggers as in 0004, so the
attestation IMV keeps reference digests in memory and sees a changed or
removed one at the next attestation.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: the tables the reference digests kept in memory are made of
WATCHED = ("files", "file_hashes", "products")
EVENTS = ("INSERT", "UPDATE", "DELETE")
GENERATION_ROW = 3


def upgrade() -> None:
    op.execute(f"INSERT INTO policy_generation (id, generation) VALUES ({GENERATION_ROW}, 0)")
    bump = f"UPDATE policy_generation SET generation = generation + 1 WHERE id = {GENERATION_ROW}"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION nac_references_changed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {bump};
                RETURN NULL;
            END $$""")
        for table in WATCHED:
            # once per statement: a bulk import moves it on once
            op.execute(f"CREATE TRIGGER nac_references_{table} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                       f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION nac_references_changed()")
    else:
        # SQLite has row triggers only
        for table in WATCHED:
            for event in EVENTS:
                op.execute(f"CREATE TRIGGER nac_references_{table}_{event.lower()} AFTER {event} ON {table} "
                           f"BEGIN {bump}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER nac_references_{table} ON {table}")
        op.execute("DROP FUNCTION nac_references_changed()")
    else:
        for table in WATCHED:
            for event in EVENTS:
                op.execute(f"DROP TRIGGER nac_references_{table}_{event.lower()}")
    op.execute(f"DELETE FROM policy_generation WHERE id = {GENERATION_ROW}")
