"""RADIUS accounting (RFC 2866) and Change-of-Authorization (RFC 5176):
accounting_sessions, one row per NAS session (by NAS and Acct-Session-Id),
with the outcome of the last CoA-Request or Disconnect-Request sent for it;
sessions.station, the Calling-Station-Id of a RADIUS assessment, which links
an accounting session to the device assessed.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("station", sa.String(253), nullable=True))
    op.create_table(
        "accounting_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("nas", sa.String(64), nullable=False),
        sa.Column("nas_address", sa.String(64), nullable=False),
        sa.Column("acct_session_id", sa.String(253), nullable=False),
        sa.Column("nas_port", sa.BigInteger(), nullable=True),
        sa.Column("nas_port_id", sa.String(253), nullable=True),
        sa.Column("calling_station_id", sa.String(253), nullable=True),
        sa.Column("called_station_id", sa.String(253), nullable=True),
        sa.Column("user_name", sa.String(253), nullable=True),
        sa.Column("framed_ip_address", sa.String(64), nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("assessment_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started", TIMESTAMP, nullable=True),
        sa.Column("stopped", TIMESTAMP, nullable=True),
        sa.Column("updated", TIMESTAMP, nullable=False),
        sa.Column("session_time", sa.BigInteger(), nullable=True),
        sa.Column("input_octets", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("output_octets", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("terminate_cause", sa.Integer(), nullable=True),
        sa.Column("coa_action", sa.String(16), nullable=True),
        sa.Column("coa_result", sa.Text(), nullable=True),
        sa.Column("coa_time", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="SET NULL",
                                name="fk_accounting_sessions_device_id_devices"),
        sa.ForeignKeyConstraint(["assessment_id"], ["sessions.id"], ondelete="SET NULL",
                                name="fk_accounting_sessions_assessment_id_sessions"),
        sa.PrimaryKeyConstraint("id", name="pk_accounting_sessions"),
        sa.UniqueConstraint("nas", "acct_session_id", name="uq_accounting_sessions_nas_acct_session_id"),
    )
    op.create_index("ix_accounting_sessions_device_id", "accounting_sessions", ["device_id"])
    op.create_index("ix_accounting_sessions_updated", "accounting_sessions", ["updated"])
    op.create_index("ix_accounting_sessions_calling_station_id", "accounting_sessions", ["calling_station_id"])


def downgrade() -> None:
    op.drop_index("ix_accounting_sessions_calling_station_id", table_name="accounting_sessions")
    op.drop_index("ix_accounting_sessions_updated", table_name="accounting_sessions")
    op.drop_index("ix_accounting_sessions_device_id", table_name="accounting_sessions")
    op.drop_table("accounting_sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("station")
