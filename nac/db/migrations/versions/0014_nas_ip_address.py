"""The NAS-IP-Address (or NAS-IPv6-Address) a NAS reports in its
accounting, kept with the accounting session: a CoA-Request or
Disconnect-Request identifies the NAS by it (RFC 5176 §3), not by the
address its packets came from, which differs behind NAT or on a NAS with
several addresses (hostapd checks it against its own_ip_addr).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounting_sessions") as batch:
        batch.add_column(sa.Column("nas_ip_address", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounting_sessions") as batch:
        batch.drop_column("nas_ip_address")
