"""Policies per group: named checks (policies) applied to groups
(enforcements, with a maximum age), products' default groups, the latest
result of each check per device, per-group enforcement values (RADIUS
Filter-Id / VLAN, IKEv2 traffic selectors, Session-Timeout), a settings
table with the default group (a built-in group ``default`` is made), API
tokens and the audit log of the HTTP API.

The enforcements table of 0001 (never written by nac: rules without a
policy) is replaced by one referring to policies.  Row 2 of
policy_generation moves on with every change to groups, their members,
policies, enforcements and settings (triggers, as in 0004), so servers
keep the group policy in memory and see changes at the next assessment.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
RECOMMENDATION = sa.SmallInteger()

#: the tables the group policy kept in memory is made of
WATCHED = ("groups", "group_devices", "group_identities", "group_products", "policies", "enforcements",
           "settings")
EVENTS = ("INSERT", "UPDATE", "DELETE")
GENERATION_ROW = 2


def upgrade() -> None:
    op.drop_index("ix_enforcements_group_id", table_name="enforcements")
    op.drop_table("enforcements")
    with op.batch_alter_table("groups") as batch:
        batch.add_column(sa.Column("filter_id_allow", sa.String(253), nullable=True))
        batch.add_column(sa.Column("filter_id_isolate", sa.String(253), nullable=True))
        batch.add_column(sa.Column("vlan_allow", sa.String(64), nullable=True))
        batch.add_column(sa.Column("vlan_isolate", sa.String(64), nullable=True))
        batch.add_column(sa.Column("allow_ts", sa.Text(), nullable=True))
        batch.add_column(sa.Column("isolate_ts", sa.Text(), nullable=True))
        batch.add_column(sa.Column("session_timeout", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("description", sa.Text(), server_default="", nullable=False))
    op.create_table(
        "group_products",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE",
                                name="fk_group_products_group_id_groups"),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], ondelete="CASCADE",
                                name="fk_group_products_product_id_products"),
        sa.PrimaryKeyConstraint("group_id", "product_id", name="pk_group_products"),
    )
    op.create_index("ix_group_products_product_id", "group_products", ["product_id"])
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("argument", sa.Text(), server_default="", nullable=False),
        sa.Column("rec_fail", RECOMMENDATION, nullable=False),
        sa.Column("rec_noresult", RECOMMENDATION, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_policies"),
        sa.UniqueConstraint("name", name="uq_policies_name"),
    )
    op.create_table(
        "enforcements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("policy_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("max_age", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rec_fail", RECOMMENDATION, nullable=True),
        sa.Column("rec_noresult", RECOMMENDATION, nullable=True),
        sa.ForeignKeyConstraint(["policy_id"], ["policies.id"], ondelete="CASCADE",
                                name="fk_enforcements_policy_id_policies"),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE",
                                name="fk_enforcements_group_id_groups"),
        sa.PrimaryKeyConstraint("id", name="pk_enforcements"),
        sa.UniqueConstraint("policy_id", "group_id", name="uq_enforcements_policy_id_group_id"),
    )
    op.create_index("ix_enforcements_group_id", "enforcements", ["group_id"])
    op.create_table(
        "policy_results",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("policy_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("time", TIMESTAMP, nullable=False),
        sa.Column("recommendation", RECOMMENDATION, nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE",
                                name="fk_policy_results_device_id_devices"),
        sa.ForeignKeyConstraint(["policy_id"], ["policies.id"], ondelete="CASCADE",
                                name="fk_policy_results_policy_id_policies"),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="SET NULL",
                                name="fk_policy_results_session_id_sessions"),
        sa.PrimaryKeyConstraint("device_id", "policy_id", name="pk_policy_results"),
    )
    op.create_index("ix_policy_results_policy_id", "policy_results", ["policy_id"])
    op.create_table(
        "settings",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_settings"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("last_used", TIMESTAMP, nullable=True),
        sa.Column("revoked", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("name", name="uq_api_tokens_name"),
        sa.UniqueConstraint("digest", name="uq_api_tokens_digest"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", TIMESTAMP, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("resource", sa.String(64), nullable=False),
        sa.Column("target", sa.String(1024), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("peer", sa.String(64), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_time", "audit_log", ["time"])

    # the built-in default group (an existing group of that name becomes it)
    bind = op.get_bind()
    default_id = bind.execute(sa.text("SELECT id FROM groups WHERE name = 'default'")).scalar()
    if default_id is None:
        bind.execute(sa.text("INSERT INTO groups (name, description) VALUES ('default', "
                             "'Endpoints in no other group; its empty values are the configuration''s')"))
        default_id = bind.execute(sa.text("SELECT id FROM groups WHERE name = 'default'")).scalar()
    bind.execute(sa.text("INSERT INTO settings (name, value) VALUES ('default_group', :id)"),
                 {"id": str(default_id)})

    op.execute(f"INSERT INTO policy_generation (id, generation) VALUES ({GENERATION_ROW}, 0)")
    bump = f"UPDATE policy_generation SET generation = generation + 1 WHERE id = {GENERATION_ROW}"
    if bind.dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION nac_group_policy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {bump};
                RETURN NULL;
            END $$""")
        for table in WATCHED:
            op.execute(f"CREATE TRIGGER nac_group_policy_{table} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                       f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION nac_group_policy_changed()")
    else:
        for table in WATCHED:
            for event in EVENTS:
                op.execute(f"CREATE TRIGGER nac_group_policy_{table}_{event.lower()} AFTER {event} ON {table} "
                           f"BEGIN {bump}; END")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER nac_group_policy_{table} ON {table}")
        op.execute("DROP FUNCTION nac_group_policy_changed()")
    else:
        for table in WATCHED:
            for event in EVENTS:
                op.execute(f"DROP TRIGGER nac_group_policy_{table}_{event.lower()}")
    op.execute(f"DELETE FROM policy_generation WHERE id = {GENERATION_ROW}")
    op.drop_index("ix_audit_log_time", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("api_tokens")
    op.drop_table("settings")
    op.drop_index("ix_policy_results_policy_id", table_name="policy_results")
    op.drop_table("policy_results")
    op.drop_index("ix_enforcements_group_id", table_name="enforcements")
    op.drop_table("enforcements")
    op.drop_table("policies")
    op.drop_index("ix_group_products_product_id", table_name="group_products")
    op.drop_table("group_products")
    with op.batch_alter_table("groups") as batch:
        for column in ("description", "session_timeout", "isolate_ts", "allow_ts", "vlan_isolate",
                       "vlan_allow", "filter_id_isolate", "filter_id_allow"):
            batch.drop_column(column)
    op.create_table(
        "enforcements",
        sa.Column("id", sa.Integer(), nullable=False),
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
