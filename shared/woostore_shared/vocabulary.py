"""The platform's words for what its rows hold (a store's status, a key's role, why a backup
was taken), without the ORM: ``models`` describes the tables in them, and what never reads
a table through it (the notifier, the events it forwards) imports them from here. SQLAlchemy
and the models are about 22 MB of a process (docs/benchmarks.md, the footprint of ``make
run``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

DEFAULT_TENANT_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreStatus(StrEnum):
    QUEUED = "queued"
    PROVISIONING = "provisioning"
    READY = "ready"
    UPDATING = "updating"  # a ready store being upgraded or rolled back
    BACKING_UP = "backing_up"  # a ready store being backed up; it keeps serving meanwhile
    RESTORING = "restoring"  # a ready store being returned to one of its backups
    POOLED = "pooled"  # ready in the warm pool, owned by no tenant until it is claimed
    FAILED = "failed"
    DELETING = "deleting"
    DELETED = "deleted"


class Role(StrEnum):
    ADMIN = "admin"  # every tenant's stores, tenants, keys and the whole audit log
    TENANT = "tenant"  # its own tenant's stores, keys and audit entries only


class BackupTrigger(StrEnum):
    REQUESTED = "requested"  # its owner asked for it
    SCHEDULED = "scheduled"  # the store's daily backup
    BEFORE_UPGRADE = "before_upgrade"
    BEFORE_ROLLBACK = "before_rollback"
    BEFORE_SETTINGS = "before_settings"  # the store as it was, kept by a settings change first
    BEFORE_RESTORE = "before_restore"  # the store as it was, kept by a restore first


class BackupDeletion(StrEnum):
    """Why a backup was deleted (its store's deletion takes every backup with it)."""

    REQUESTED = "requested"  # its owner asked
    RETENTION = "retention"  # kept by none of the operator's retention rules


class BackupStatus(StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"  # every part and the manifest are stored
    FAILED = "failed"
    # Complete once, then found unreadable as a restore or a copy read it: never offered again
    DAMAGED = "damaged"
    DELETING = "deleting"  # deleted, its data not yet removed from the store's repository
    DELETED = "deleted"  # nothing of it is kept
