"""Sessions name the nac instance and process that assessed:
sessions.instance (``[nac] instance``) and sessions.process (0 the main
process, k worker k), NULL for sessions before; an index of the open
sessions of each instance and process, which a process closes as
"interrupted" when it starts again after a crash.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("instance", sa.String(64), nullable=True))
        batch.add_column(sa.Column("process", sa.SmallInteger(), nullable=True))
    op.create_index("ix_sessions_open", "sessions", ["instance", "process"],
                    sqlite_where=sa.text("ended IS NULL"), postgresql_where=sa.text("ended IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_sessions_open", table_name="sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("process")
        batch.drop_column("instance")
