"""Remote attestation: the TPMs' Attestation Identity Keys (aiks: key ID,
public key, device, product, trusted flag) and the attestation history
(attestations: AIK, session, time, verdict, what was found).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "aiks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("keyid", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("trusted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("last_seen", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="SET NULL",
                                name="fk_aiks_device_id_devices"),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], ondelete="SET NULL",
                                name="fk_aiks_product_id_products"),
        sa.PrimaryKeyConstraint("id", name="pk_aiks"),
        sa.UniqueConstraint("keyid", name="uq_aiks_keyid"),
    )
    op.create_index("ix_aiks_device_id", "aiks", ["device_id"])
    op.create_index("ix_aiks_product_id", "aiks", ["product_id"])
    op.create_table(
        "attestations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("keyid", sa.String(64), nullable=True),
        sa.Column("aik_id", sa.Integer(), nullable=True),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("evaluation", sa.SmallInteger(), nullable=False),
        sa.Column("summary", sa.Text(), server_default="", nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["aik_id"], ["aiks.id"], ondelete="SET NULL",
                                name="fk_attestations_aik_id_aiks"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="SET NULL",
                                name="fk_attestations_session_id_sessions"),
        sa.PrimaryKeyConstraint("id", name="pk_attestations"),
    )
    op.create_index("ix_attestations_keyid", "attestations", ["keyid"])
    op.create_index("ix_attestations_aik_id", "attestations", ["aik_id"])
    op.create_index("ix_attestations_session_id", "attestations", ["session_id"])
    op.create_index("ix_attestations_created", "attestations", ["created"])


def downgrade() -> None:
    op.drop_table("attestations")
    op.drop_table("aiks")
