"""Re-evaluation after a policy change: the installed packages each device
reported last (``device_packages``, rewritten only when its digest
changes), and one row per re-evaluation of the live endpoints
(``reevaluations``), which one nac instance of several claims.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "device_packages",
        sa.Column("device_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("product", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("packages", sa.JSON(), nullable=False),
        sa.Column("updated", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE",
                                name="fk_device_packages_device_id_devices"),
        sa.PrimaryKeyConstraint("device_id", name="pk_device_packages"),
    )
    op.create_table(
        "reevaluations",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("instance", sa.String(64), nullable=True),
        sa.Column("started", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_reevaluations"),
    )
    op.create_index("ix_reevaluations_started", "reevaluations", ["started"])


def downgrade() -> None:
    op.drop_index("ix_reevaluations_started", table_name="reevaluations")
    op.drop_table("reevaluations")
    op.drop_table("device_packages")
