"""Database models: PostgreSQL is the source of truth for every store.

The schema itself is owned by the Alembic migrations in ``migrations/``; these classes
describe it for queries.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Column, DateTime, Enum, Index, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# Defined apart, without the ORM, and named here too: a table's columns hold them.
from woostore_shared.vocabulary import DEFAULT_TENANT_ID as DEFAULT_TENANT_ID
from woostore_shared.vocabulary import BackupDeletion as BackupDeletion
from woostore_shared.vocabulary import BackupStatus as BackupStatus
from woostore_shared.vocabulary import BackupTrigger as BackupTrigger
from woostore_shared.vocabulary import Role as Role
from woostore_shared.vocabulary import StoreStatus as StoreStatus
from woostore_shared.vocabulary import utcnow as utcnow

# Every store namespace's name starts so; helm/platform's admission policy lets the
# provisioner and the reaper make and delete no others.
NAMESPACE_PREFIX = "store-"


def namespace_for(slug: str) -> str:
    """The namespace a store is made in, from the slug it is made with."""
    return NAMESPACE_PREFIX + slug


def _optional_timestamp() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


# A store made for a tenant as it is deleted fails its commit on this (migration 0026).
DELETED_TENANTS_HOLD_NO_STORES = "ck_tenants_deleted_hold_no_stores"
TENANT_NAMES_UNIQUE = "ux_tenants_name"  # among the tenants not deleted


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"
    __table_args__ = (
        # A deleted tenant's name can be a new tenant's (migration 0026).
        Index(
            TENANT_NAMES_UNIQUE, "name", unique=True, postgresql_where=text("deleted_at IS NULL")
        ),
        CheckConstraint("deleted_at IS NULL OR live_stores = 0", DELETED_TENANTS_HOLD_NO_STORES),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=100)
    # Live stores this tenant may have; None means the platform's default.
    store_limit: int | None = None
    # Its stores that count against that cap, kept by the database as they change (the
    # count_stores trigger, migration 0018); never written here.
    live_stores: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    # Set once its stores are gone and it is deleted: its row stays, for the audit log and
    # its stores' rows; /tenants finds it only when asked to (include_deleted), and nothing
    # is made for it.
    deleted_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    # Set while an admin has it suspended: its keys are refused (its stores keep serving)
    # until it is resumed (migration 0027).
    suspended_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class PlatformCounts(SQLModel, table=True):
    """The platform's stores that count against its caps: one row, kept by the database as
    stores change (the count_stores trigger, migration 0018); never written here."""

    __tablename__ = "store_counts"

    one_row: bool = Field(default=True, primary_key=True)
    live: int  # stores holding (or about to hold) cluster resources, pooled ones included
    queued: int  # owners' cold stores waiting to start


class Store(SQLModel, table=True):
    __tablename__ = "stores"
    __table_args__ = (
        Index("ix_stores_tenant_created", "tenant_id", "created_at"),
        # Lists filtered by status, newest first (migration 0019).
        Index(
            "ix_stores_status_created",
            "status",
            "created_at",
            "id",
            postgresql_include=["tenant_id", "claimed_at"],
        ),
        # A queued store's place is counted from it alone (migration 0020).
        Index(
            "ix_stores_status_queued",
            "status",
            "queued_at",
            "id",
            postgresql_include=["tenant_id", "claimed_at"],
        ),
        Index("ix_stores_unowned", "created_at", postgresql_where=text("tenant_id IS NULL")),
        # Deletions waiting for a copy of the store's backup, for the reaper (migration 0025).
        Index(
            "ix_stores_deletion_waiting",
            "delete_requested_at",
            postgresql_where=text(
                "delete_requested_at IS NOT NULL AND status IN ('ready', 'failed')"
            ),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # None while the store is in the warm pool (pool.py): no tenant's until it is claimed.
    tenant_id: uuid.UUID | None = Field(default=None, foreign_key="tenants.id")
    name: str = Field(max_length=50)
    slug: str = Field(max_length=40, unique=True)
    # Where the store's resources live: "store-<slug>" of the slug it was made with (a claimed
    # store takes its owner's slug and host, and keeps the namespace).
    namespace: str = Field(max_length=63, unique=True)
    # "cold"; "pool": made in advance; "backup": a copy of another store, from its backup.
    origin: str = Field(default="cold", max_length=10)
    type: str = Field(default="woocommerce", max_length=20)
    status: StoreStatus = Field(
        sa_column=Column(
            Enum(StoreStatus, name="store_status", values_callable=lambda e: [m.value for m in e]),
            nullable=False,
        )
    )
    simulated: bool
    # The owner's choices over the platform's defaults, all filled in (store_settings.py).
    settings: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    step_name: str | None = None
    step_title: str | None = None
    step_index: int | None = None
    step_total: int | None = None
    progress: float = 0.0  # share of the current phase's steps completed
    # Why the current step waits on the cluster, in its owner's words, while it is known.
    waiting_cause: str | None = None
    # The store's Helm release as last deployed, and the change under way while updating.
    chart_version: str | None = Field(default=None, max_length=40)
    release_revision: int | None = None
    change: str | None = Field(default=None, max_length=20)  # "upgrade" or "rollback"
    rollback_revision: int | None = None  # the revision a rollback under way returns to
    # The release's first revision that is its owner's (None: 1). A store claimed from the
    # warm pool has the pool's before it; a rollback never goes back to those.
    first_revision: int | None = None
    storefront_url: str | None = None
    admin_url: str | None = None
    failure_reason: str | None = None  # why the store failed (a change's outcome: StoreChange)
    # Fernet token (see credentials.py); the plain password lives only in the store's Secret.
    admin_password_encrypted: str | None = None
    correlation_id: str
    # The attempt working on the store, so a redelivered message never runs beside it.
    lease_owner: str | None = None
    lease_expires_at: datetime | None = _optional_timestamp()
    # Times the reaper re-published lost work; past a limit the store is failed instead.
    replays: int = 0
    # Its complete backups (not deleted): a restore is offered while it has one. Counted by
    # lifecycle.py at every change of a backup's status it makes.
    complete_backups: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    # When it last became queued (made, retried, claimed or fallen back to a cold start): its
    # place in the cold queue is counted by it. When it was made, for a store never queued.
    queued_at: datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    # When its owner last asked for it: made, claimed from the pool, or retried. Its owner's
    # wait (and its time to ready) counts from here; a claim that falls back does not reset it.
    requested_at: datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    provisioning_started_at: datetime | None = _optional_timestamp()
    claimed_at: datetime | None = _optional_timestamp()  # taken from the warm pool
    # The backup of another store of its tenant it is made from (a clone, a staging copy),
    # and whether that backup can no longer be copied (found damaged, deleted, or its store's
    # deletion asked for): a failed copy is then not offered a retry.
    from_backup_id: uuid.UUID | None = None
    from_backup_lost: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    # A pooled store's last passed verification; the pool keeper verifies idle ones again.
    verified_at: datetime | None = _optional_timestamp()
    ready_at: datetime | None = _optional_timestamp()
    # When its deletion was asked for. A store asked while a change, a backup or a restore
    # runs keeps its status until that work ends, and is deleted then (transitions.py).
    delete_requested_at: datetime | None = _optional_timestamp()
    deleted_at: datetime | None = _optional_timestamp()
    # A failed store's resources are removed by a clean-up on the removal lane; this says it
    # finished, so nothing has to guess whether a failed store's namespace is still wanted.
    cleaned_up_at: datetime | None = _optional_timestamp()

    @property
    def owner(self) -> uuid.UUID:
        """The tenant of a store that has one: any store an API caller can reach."""
        if self.tenant_id is None:
            raise LookupError(f"store {self.id} is in the warm pool: it has no owner")
        return self.tenant_id


class StoreEvent(SQLModel, table=True):
    """Every event about a store, written in the transaction that changed the store (outbox).

    ``published_at`` stays empty until JetStream acknowledged it; the reaper's relay
    publishes whatever the writer could not.
    """

    __tablename__ = "store_events"
    __table_args__ = (
        Index("ix_store_events_store_time", "store_id", "time"),
        Index("ix_store_events_time", "time"),  # the oldest first, for pruning
        Index(
            "ix_store_events_unpublished",
            "time",
            postgresql_where=text("published_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(primary_key=True)
    store_id: uuid.UUID = Field(foreign_key="stores.id")
    subject: str
    type: str
    time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    envelope: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    published_at: datetime | None = _optional_timestamp()
    stream_sequence: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class WorkOrderRecord(SQLModel, table=True):
    """A work order (see ``work.py``) as the outbox keeps it: written in the transaction that
    made it necessary and published after the commit; the relay publishes what was not."""

    __tablename__ = "work_orders"
    __table_args__ = (
        Index("ix_work_orders_unpublished", "time", postgresql_where=text("published_at IS NULL")),
    )

    id: uuid.UUID = Field(primary_key=True)
    store_id: uuid.UUID = Field(foreign_key="stores.id")
    lane: str = Field(max_length=20)
    correlation_id: str = Field(max_length=64)
    time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    published_at: datetime | None = _optional_timestamp()
    # The trace the order continues (W3C Trace Context, see tracing.py).
    traceparent: str | None = Field(default=None, max_length=55)
    tracestate: str | None = Field(default=None, max_length=512)


class StoreChange(SQLModel, table=True):
    """An upgrade, a rollback or a settings change of a store (or its restore), and how it
    ended: ``result`` is empty while it is under way, then ``changed`` or ``failed`` (with
    the reason; the store stays ready)."""

    __tablename__ = "store_changes"
    __table_args__ = (Index("ix_store_changes_store_requested", "store_id", "requested_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    store_id: uuid.UUID = Field(foreign_key="stores.id")
    kind: str = Field(max_length=20)  # "upgrade", "rollback", "settings" or "restore"
    requested_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    finished_at: datetime | None = _optional_timestamp()
    result: str | None = Field(default=None, max_length=20)
    reason: str | None = Field(default=None, sa_type=Text)
    chart_version: str | None = Field(default=None, max_length=40)  # after the change
    revision: int | None = None
    backup_id: uuid.UUID | None = None  # a restore's: the backup it returns the store to
    # A settings change's: the store's settings before it, put back if it fails.
    settings_before: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSONB, nullable=True)
    )
    # A settings change's: the names of the settings asked for, the only ones it sets (None:
    # asked for before changes kept them, all of them).
    settings_asked: list[str] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))


def _text_enum(enum: type[StrEnum]) -> Enum:
    """An enum stored as its values in a VARCHAR: a new value needs no migration."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda members: [member.value for member in members],
    )


class StoreBackup(SQLModel, table=True):
    """One backup of a store, from when it was asked for. What it holds lives in the store's
    backup repository (``backups.py``), whose manifest is the proof that it is complete; this
    row is what the API lists, and how long a backup took, and why one failed."""

    __tablename__ = "store_backups"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    store_id: uuid.UUID = Field(foreign_key="stores.id", index=True)
    trigger: BackupTrigger = Field(sa_column=Column(_text_enum(BackupTrigger), nullable=False))
    status: BackupStatus = Field(
        default=BackupStatus.RUNNING, sa_column=Column(_text_enum(BackupStatus), nullable=False)
    )
    requested_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    finished_at: datetime | None = _optional_timestamp()
    reason: str | None = None  # why it failed, or how it was found damaged
    size: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))  # bytes
    chart_version: str | None = Field(default=None, max_length=40)
    wordpress_version: str | None = Field(default=None, max_length=20)
    woocommerce_version: str | None = Field(default=None, max_length=20)
    # The store's settings as it was backed up (what its WordPress options held): a restore
    # gives them back to the store, and a copy is made with them. None: a backup from before
    # they were recorded (the store's own then).
    settings: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))


class StoreStep(SQLModel, table=True):
    """The step journal: a row per completed step, so a redelivered message resumes."""

    __tablename__ = "store_steps"

    store_id: uuid.UUID = Field(foreign_key="stores.id", primary_key=True)
    phase: str = Field(primary_key=True, max_length=20)
    name: str = Field(primary_key=True, max_length=40)
    completed_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    # The step's place in its recipe (1 is first) and how long it ran in the attempt that
    # completed it: what recent stores' steps took is how long the next one's should take.
    # None for steps journalled before they were measured.
    position: int | None = None
    seconds: float | None = None


class IdempotencyKey(SQLModel, table=True):
    """A client's ``Idempotency-Key`` on POST /stores: the same key with the same body gives
    the same store; with another body, an error. Keys are per tenant."""

    __tablename__ = "idempotency_keys"

    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", primary_key=True)
    key: str = Field(primary_key=True, max_length=255)
    request_sha256: str = Field(max_length=64)
    store_id: uuid.UUID = Field(foreign_key="stores.id")
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class ApiKey(SQLModel, table=True):
    """A revocable API key. Only a hash of the secret is kept; the key is shown once."""

    __tablename__ = "api_keys"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id", index=True)
    name: str = Field(max_length=100)
    role: Role = Field(
        sa_column=Column(
            Enum(Role, name="api_key_role", values_callable=lambda e: [m.value for m in e]),
            nullable=False,
        )
    )
    # The public start of the key ("wsk_" and 8 hex digits): how it is found and shown.
    prefix: str = Field(max_length=16, unique=True)
    secret_sha256: str = Field(max_length=64)
    created_by: str = Field(max_length=100)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    revoked_at: datetime | None = _optional_timestamp()


class AuditEntry(SQLModel, table=True):
    """Who did what to which object, when, and from where. Written in the transaction that
    made the change, so the log and the data never disagree."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_id", "tenant_id", "id"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    time: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    tenant_id: uuid.UUID = Field(foreign_key="tenants.id")
    actor: str = Field(max_length=100)  # a key's prefix, or "admin-token"
    actor_role: Role = Field(
        sa_column=Column(
            Enum(Role, name="api_key_role", values_callable=lambda e: [m.value for m in e]),
            nullable=False,
        )
    )
    action: str = Field(max_length=40)
    target: str = Field(max_length=100)  # e.g. "store/<id>", "key/<prefix>"
    source_ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=200)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))


class RateLimit(SQLModel, table=True):
    """One rate's state (a key's creates, a tenant's changes...) as GCRA keeps it: the
    theoretical arrival time of the next request, past which the counter's allowance is
    full again. Kept in PostgreSQL so every API replica shares the limit."""

    __tablename__ = "rate_limits"

    counter: str = Field(primary_key=True, max_length=100)  # e.g. "tenant/<id>/creates"
    tat: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class SpentTicket(SQLModel, table=True):
    """An event-stream ticket that opened a stream, kept until it expires: a ticket opens one
    stream once, on whichever notifier replica it reaches first."""

    __tablename__ = "spent_tickets"
    __table_args__ = (Index("ix_spent_tickets_expires_at", "expires_at"),)  # forgotten oldest first

    id: str = Field(primary_key=True, max_length=32)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
