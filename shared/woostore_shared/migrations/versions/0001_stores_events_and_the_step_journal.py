"""stores, events and the step journal

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "stores",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("slug", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "provisioning",
                "ready",
                "failed",
                "deleting",
                "deleted",
                name="store_status",
            ),
            nullable=False,
        ),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("step_name", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("step_title", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("step_index", sa.Integer(), nullable=True),
        sa.Column("step_total", sa.Integer(), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False, server_default="0"),
        sa.Column("storefront_url", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("admin_url", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("failure_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("admin_password_encrypted", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("correlation_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provisioning_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    op.create_index("ix_stores_status", "stores", ["status"], unique=False)
    op.create_index("ix_stores_tenant_created", "stores", ["tenant_id", "created_at"], unique=False)
    op.create_table(
        "store_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stream_sequence", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_store_events_store_time", "store_events", ["store_id", "time"], unique=False
    )
    op.create_index(
        "ix_store_events_unpublished",
        "store_events",
        ["time"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "store_steps",
        sa.Column("store_id", sa.Uuid(), nullable=False),
        sa.Column("phase", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
        ),
        sa.PrimaryKeyConstraint("store_id", "phase", "name"),
    )
    # Stores belong to tenants from the start; until tenant management exists, every store
    # belongs to this one (its id is DEFAULT_TENANT_ID in models.py).
    op.execute(
        "INSERT INTO tenants (id, name, created_at) "
        "VALUES ('00000000-0000-0000-0000-000000000001', 'default', now())"
    )


def downgrade() -> None:
    op.drop_table("store_steps")
    op.drop_index(
        "ix_store_events_unpublished",
        table_name="store_events",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_index("ix_store_events_store_time", table_name="store_events")
    op.drop_table("store_events")
    op.drop_index("ix_stores_tenant_created", table_name="stores")
    op.drop_index("ix_stores_status", table_name="stores")
    op.drop_table("stores")
    op.drop_table("tenants")
    sa.Enum(name="store_status").drop(op.get_bind())
