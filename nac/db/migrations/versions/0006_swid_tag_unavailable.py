"""A device remembers which software's SWID tag it could not provide:
device_software.tag_unavailable, the time it last answered a request for
the tag without it, so that the SWIMA IMV does not ask every assessment
(NULL for rows before, which are asked again once).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_software") as batch:
        batch.add_column(sa.Column("tag_unavailable", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_software") as batch:
        batch.drop_column("tag_unavailable")
