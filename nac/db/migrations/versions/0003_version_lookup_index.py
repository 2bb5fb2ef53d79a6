"""The OS IMV's release lookups: versions indexed by (package, product,
release, security, blacklisted), every column the lookup reads, so that
SQLite and PostgreSQL answer it from the index alone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_versions_lookup", "versions",
                    ["package_id", "product_id", "release", "security", "blacklisted"])


def downgrade() -> None:
    op.drop_index("ix_versions_lookup", table_name="versions")
