"""Initial schema: users, devices, policy, sessions and results, SWIMA, reference hashes.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Migrations do not import the models (they change); these are the column
# types the models' TypeDecorators (UtcDateTime, IntEnumType) sit on.
TIMESTAMP = sa.DateTime(timezone=True)
RECOMMENDATION = sa.SmallInteger()
NAME = sa.String(255)
IDENTITY = sa.String(1024)


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), nullable=False)


def upgrade() -> None:
    # -- accounts and endpoints ----------------------------------------------------------
    op.create_table(
        "users",
        _id(),
        sa.Column("name", NAME, nullable=False),
        sa.Column("password_hash", NAME, nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "products",
        _id(),
        sa.Column("name", NAME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
        sa.UniqueConstraint("name", name="uq_products_name"),
    )
    op.create_table(
        "devices",
        _id(),
        sa.Column("device_id", NAME, nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("first_seen", TIMESTAMP, nullable=False),
        sa.Column("last_seen", TIMESTAMP, nullable=False),
        sa.Column("trusted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], ondelete="SET NULL",
                                name="fk_devices_product_id_products"),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.UniqueConstraint("device_id", name="uq_devices_device_id"),
    )
    op.create_index("ix_devices_product_id", "devices", ["product_id"])

    # -- groups and enforcement rules ----------------------------------------------------
    op.create_table(
        "groups",
        _id(),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["parent_id"], ["groups.id"], ondelete="SET NULL",
                                name="fk_groups_parent_id_groups"),
        sa.PrimaryKeyConstraint("id", name="pk_groups"),
        sa.UniqueConstraint("name", name="uq_groups_name"),
    )
    op.create_index("ix_groups_parent_id", "groups", ["parent_id"])
    op.create_table(
        "group_devices",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE",
                                name="fk_group_devices_group_id_groups"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE",
                                name="fk_group_devices_device_id_devices"),
        sa.PrimaryKeyConstraint("group_id", "device_id", name="pk_group_devices"),
    )
    op.create_index("ix_group_devices_device_id", "group_devices", ["device_id"])
    op.create_table(
        "group_identities",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("identity", IDENTITY, nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE",
                                name="fk_group_identities_group_id_groups"),
        sa.PrimaryKeyConstraint("group_id", "identity", name="pk_group_identities"),
    )
    op.create_index("ix_group_identities_identity", "group_identities", ["identity"])
    op.create_table(
        "enforcements",
        _id(),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("policy_type", sa.String(32), nullable=False),
        sa.Column("argument", sa.Text(), server_default="", nullable=False),
        sa.Column("recheck_interval", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rec_fail", RECOMMENDATION, nullable=False),
        sa.Column("rec_noresult", RECOMMENDATION, nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE",
                                name="fk_enforcements_group_id_groups"),
        sa.PrimaryKeyConstraint("id", name="pk_enforcements"),
    )
    op.create_index("ix_enforcements_group_id", "enforcements", ["group_id"])

    # -- package policy ------------------------------------------------------------------
    op.create_table(
        "packages",
        _id(),
        sa.Column("name", NAME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_packages"),
        sa.UniqueConstraint("name", name="uq_packages_name"),
    )
    op.create_table(
        "versions",
        _id(),
        sa.Column("package_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("release", NAME, nullable=False),
        sa.Column("security", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("blacklisted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("time", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["package_id"], ["packages.id"], ondelete="CASCADE",
                                name="fk_versions_package_id_packages"),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], ondelete="CASCADE",
                                name="fk_versions_product_id_products"),
        sa.PrimaryKeyConstraint("id", name="pk_versions"),
        # also the index of the OS IMV's lookups by (package, product)
        sa.UniqueConstraint("package_id", "product_id", "release",
                            name="uq_versions_package_id_product_id_release"),
    )
    op.create_index("ix_versions_product_id", "versions", ["product_id"])

    # -- assessments ---------------------------------------------------------------------
    op.create_table(
        "sessions",
        _id(),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("identity", IDENTITY, nullable=True),
        sa.Column("auth_method", sa.String(32), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("transport", sa.String(16), nullable=False),
        sa.Column("peer_address", sa.String(64), nullable=False),
        sa.Column("peer_port", sa.Integer(), nullable=False),
        sa.Column("started", TIMESTAMP, nullable=False),
        sa.Column("ended", TIMESTAMP, nullable=True),
        sa.Column("recommendation", RECOMMENDATION, nullable=True),
        sa.Column("evaluation", RECOMMENDATION, nullable=True),
        sa.Column("access", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="SET NULL",
                                name="fk_sessions_device_id_devices"),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_device_id", "sessions", ["device_id"])
    op.create_index("ix_sessions_identity", "sessions", ["identity"])
    op.create_index("ix_sessions_started", "sessions", ["started"])
    op.create_table(
        "results",
        _id(),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("imv_id", sa.Integer(), nullable=False),
        sa.Column("imv_name", sa.String(64), nullable=False),
        sa.Column("recommendation", RECOMMENDATION, nullable=False),
        sa.Column("evaluation", RECOMMENDATION, nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("reason_language", sa.String(32), server_default="", nullable=False),
        sa.Column("remediation", sa.Text(), server_default="", nullable=False),
        sa.Column("forced", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE",
                                name="fk_results_session_id_sessions"),
        sa.PrimaryKeyConstraint("id", name="pk_results"),
        sa.UniqueConstraint("session_id", "imv_id", name="uq_results_session_id_imv_id"),
    )
    op.create_table(
        "measurements",
        _id(),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("imv_name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE",
                                name="fk_measurements_session_id_sessions"),
        sa.PrimaryKeyConstraint("id", name="pk_measurements"),
    )
    op.create_index("ix_measurements_session_id", "measurements", ["session_id"])

    # -- SWIMA ---------------------------------------------------------------------------
    op.create_table(
        "sw_identifiers",
        _id(),
        sa.Column("tag_id", sa.String(1024), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"], ondelete="SET NULL",
                                name="fk_sw_identifiers_version_id_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_sw_identifiers"),
        sa.UniqueConstraint("tag_id", name="uq_sw_identifiers_tag_id"),
    )
    op.create_index("ix_sw_identifiers_version_id", "sw_identifiers", ["version_id"])
    op.create_table(
        "swid_tags",
        _id(),
        sa.Column("identifier_id", sa.Integer(), nullable=False),
        sa.Column("xml", sa.Text(), nullable=False),
        sa.Column("updated", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["identifier_id"], ["sw_identifiers.id"], ondelete="CASCADE",
                                name="fk_swid_tags_identifier_id_sw_identifiers"),
        sa.PrimaryKeyConstraint("id", name="pk_swid_tags"),
        sa.UniqueConstraint("identifier_id", name="uq_swid_tags_identifier_id"),
    )
    op.create_table(
        "device_software",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("identifier_id", sa.Integer(), nullable=False),
        sa.Column("installed", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("first_seen", TIMESTAMP, nullable=False),
        sa.Column("last_seen", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE",
                                name="fk_device_software_device_id_devices"),
        sa.ForeignKeyConstraint(["identifier_id"], ["sw_identifiers.id"], ondelete="CASCADE",
                                name="fk_device_software_identifier_id_sw_identifiers"),
        sa.PrimaryKeyConstraint("device_id", "identifier_id", name="pk_device_software"),
    )
    op.create_index("ix_device_software_identifier_id", "device_software", ["identifier_id"])
    op.create_table(
        "swima_states",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("last_eid", sa.BigInteger(), nullable=False),
        sa.Column("updated", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE",
                                name="fk_swima_states_device_id_devices"),
        sa.PrimaryKeyConstraint("device_id", name="pk_swima_states"),
    )

    # -- attestation reference values ----------------------------------------------------
    op.create_table(
        "files",
        _id(),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_files"),
        sa.UniqueConstraint("path", name="uq_files_path"),
    )
    op.create_table(
        "file_hashes",
        _id(),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], ondelete="CASCADE",
                                name="fk_file_hashes_file_id_files"),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], ondelete="CASCADE",
                                name="fk_file_hashes_product_id_products"),
        sa.PrimaryKeyConstraint("id", name="pk_file_hashes"),
    )
    op.create_index("ix_file_hashes_file_id_product_id_algorithm", "file_hashes",
                    ["file_id", "product_id", "algorithm"])


def downgrade() -> None:
    for table in ("file_hashes", "files", "swima_states", "device_software", "swid_tags",
                  "sw_identifiers", "measurements", "results", "sessions", "versions",
                  "packages", "enforcements", "group_identities", "group_devices", "groups",
                  "devices", "products", "users"):
        op.drop_table(table)
