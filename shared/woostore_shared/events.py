"""The event contract: CloudEvents 1.0 in structured JSON mode.

Subjects are ``store.<event>.<store_id>``; the CloudEvent ``type`` is
``io.woostore.store.<event>`` and its ``subject`` is the store id. ``data`` always carries
the store's ``status`` after the event and the ``actions`` it accepts then, so a consumer can
follow a store from events alone.
See docs/architecture.md for the table of events.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from woostore_shared import tracing
from woostore_shared.transitions import StoreAction
from woostore_shared.vocabulary import BackupDeletion, BackupTrigger, StoreStatus, utcnow

STREAM_SUBJECT_PREFIX = "store"
# The ``tenantid`` of events about stores in the warm pool, which no tenant owns: the nil
# UUID, which no tenant has, so no tenant's stream ever shows them.
NO_TENANT = uuid.UUID(int=0)
TYPE_PREFIX = "io.woostore.store."


class EventName(StrEnum):
    REQUESTED = "requested"
    PROGRESS = "progress"
    READY = "ready"
    POOLED = "pooled"  # made for the warm pool; no tenant sees it
    FELL_BACK = "fell_back"  # a claimed store could not be made its owner's: made cold instead
    FAILED = "failed"
    CLEANED_UP = "cleaned_up"  # what a failed store left in the cluster is gone
    DELETE_REQUESTED = "delete_requested"
    DELETE_QUEUED = "delete_queued"  # asked while its work (or a copy) runs: deleted after
    DELETED = "deleted"
    CHANGE_REQUESTED = "change_requested"  # an upgrade or rollback of a ready store
    CHANGED = "changed"
    CHANGE_FAILED = "change_failed"
    BACKUP_STARTED = "backup_started"
    BACKUP_COMPLETED = "backup_completed"
    BACKUP_FAILED = "backup_failed"
    RESTORE_REQUESTED = "restore_requested"
    RESTORED = "restored"
    RESTORE_FAILED = "restore_failed"
    BACKUP_DELETED = "backup_deleted"  # by its owner, or by the retention policy
    BACKUP_DAMAGED = "backup_damaged"  # found unreadable as a restore or a copy read it
    SOURCE_LOST = "source_lost"  # a copy's backup can be copied no more: no retry


class StepInfo(BaseModel):
    name: str
    title: str
    index: int  # 1-based
    total: int


class StoreRef(BaseModel):
    """A store named: its id, and its name as its owner knows it."""

    id: uuid.UUID
    name: str


class StoreSummary(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    type: str
    status: StoreStatus
    simulated: bool
    created_at: datetime
    # "pool": a store made in advance and claimed for its owner; "backup": made from one
    origin: str = "cold"
    requested_at: datetime | None = Field(
        default=None,
        description="When its owner asked for it (this event's request: made, claimed or "
        "retried), from which their wait counts. None in events recorded before stores kept it.",
    )
    from_backup: uuid.UUID | None = Field(
        default=None,
        validation_alias=AliasChoices("from_backup", "from_backup_id"),  # the store's column
        description="The backup a store of origin backup is made from (another store's).",
    )
    from_store: StoreRef | None = Field(
        default=None, description="The store whose backup a store of origin backup is made from."
    )


class EventBody(BaseModel):
    """What every event's data has besides the store's ``status`` after it: the ``actions``
    the store accepts then (the store resource's), filled in when the event is recorded, so a
    client following events never has to read the store again to know what it may ask."""

    actions: list[StoreAction] = Field(
        default_factory=list, description="What the store accepts after this event"
    )


class Requested(EventBody):
    status: Literal[StoreStatus.QUEUED] = StoreStatus.QUEUED
    store: StoreSummary


Change = Literal["upgrade", "rollback", "settings"]


Phase = Literal[
    "provision",
    "clone",
    "personalise",
    "reverify",
    "upgrade",
    "rollback",
    "settings",
    "backup",
    "restore",
    "delete",
    "clean_up",
]
# The statuses a store has while a worker runs a recipe on it. A failed store's clean-up
# shows progress too; the store stays failed throughout.
WorkingStatus = Literal[
    StoreStatus.PROVISIONING,
    StoreStatus.UPDATING,
    StoreStatus.BACKING_UP,
    StoreStatus.RESTORING,
    StoreStatus.DELETING,
    StoreStatus.FAILED,
]


class Progress(EventBody):
    status: WorkingStatus
    phase: Phase
    step: StepInfo
    state: Literal["started", "completed"]  # of the step
    progress: float  # 0..1, share of the phase's steps completed
    # While a started step waits on the cluster: why, in words the store's owner understands
    # ("Cannot download the image ..."); an event with none says the wait is no longer known.
    cause: str | None = None


class Ready(EventBody):
    status: Literal[StoreStatus.READY] = StoreStatus.READY
    storefront_url: str
    admin_url: str
    chart_version: str | None = None  # of the store's Helm release
    revision: int | None = None


class Pooled(EventBody):
    """Made and verified for the warm pool, waiting for an owner."""

    status: Literal[StoreStatus.POOLED] = StoreStatus.POOLED
    chart_version: str | None = None


class FellBack(EventBody):
    """The store claimed from the warm pool could not be made its owner's (``reason``): it is
    discarded, and the owner's store is made from scratch instead, queued like a new one."""

    status: Literal[StoreStatus.QUEUED] = StoreStatus.QUEUED
    reason: str


class Failed(EventBody):
    status: Literal[StoreStatus.FAILED] = StoreStatus.FAILED
    reason: str
    step: str | None = None


class CleanedUp(EventBody):
    """Nothing the failed store made is left in the cluster; the store stays failed."""

    status: Literal[StoreStatus.FAILED] = StoreStatus.FAILED


class DeleteRequested(EventBody):
    status: Literal[StoreStatus.DELETING] = StoreStatus.DELETING


class DeleteQueued(EventBody):
    """Its owner asked to delete it while a change, a backup or a restore runs, or while a
    new store is made from one of its backups: that work ends first (a backup is stopped),
    or that store is made, then the store is deleted (``delete_requested`` follows)."""

    status: Literal[
        StoreStatus.UPDATING,
        StoreStatus.BACKING_UP,
        StoreStatus.RESTORING,
        StoreStatus.READY,
        StoreStatus.FAILED,
    ]


class Deleted(EventBody):
    status: Literal[StoreStatus.DELETED] = StoreStatus.DELETED


# The events of what may change a store's settings (a settings change, a restore) carry them
# as they are after the event, so a client following events never reads the store again to
# show them; other events leave them out. Without the admin's email address: the API shows
# it to the store's readers, and the event streams, kept for days, do not.
EventSettings = Annotated[
    dict[str, Any] | None,
    Field(
        exclude_if=lambda settings: settings is None,
        description="A settings change's or a restore's: the store's settings after this event"
        " (without admin_email).",
    ),
]


class ChangeRequested(EventBody):
    status: Literal[StoreStatus.UPDATING] = StoreStatus.UPDATING
    change: Change
    backup_id: uuid.UUID  # the store as it was before, backed up first
    settings: EventSettings = None


class Changed(EventBody):
    status: Literal[StoreStatus.READY] = StoreStatus.READY
    change: Change
    chart_version: str
    revision: int  # of the store's Helm release
    settings: EventSettings = None


class ChangeFailed(EventBody):
    """The store is ready as before: helm restored the release it had (a settings change:
    the store keeps the settings it had, though some may have been applied to the shop)."""

    status: Literal[StoreStatus.READY] = StoreStatus.READY
    change: Change
    reason: str
    settings: EventSettings = None


# What starts a backup of its own: its owner, or the schedule. The backup a change or a
# restore takes first (before_upgrade, ...) is announced by that change's event (backup_id,
# safety_backup_id), never by a backup_started.
OwnBackupTrigger = Literal[BackupTrigger.REQUESTED, BackupTrigger.SCHEDULED]


class BackupStarted(EventBody):
    status: Literal[StoreStatus.BACKING_UP] = StoreStatus.BACKING_UP
    backup_id: uuid.UUID
    trigger: OwnBackupTrigger


class BackupCompleted(EventBody):
    """Every part and the manifest are stored: the backup can be restored."""

    status: Literal[StoreStatus.READY] = StoreStatus.READY
    backup_id: uuid.UUID
    size: int  # bytes, before compression


class BackupFailed(EventBody):
    """No backup was made (what was stored of it is never listed); the store is as before."""

    status: Literal[StoreStatus.READY] = StoreStatus.READY
    backup_id: uuid.UUID
    reason: str


class RestoreRequested(EventBody):
    status: Literal[StoreStatus.RESTORING] = StoreStatus.RESTORING
    backup_id: uuid.UUID  # what the store returns to
    safety_backup_id: uuid.UUID  # the store as it was before, backed up first


class Restored(EventBody):
    """The store holds the backup's database and uploads again, and took a test order."""

    status: Literal[StoreStatus.READY] = StoreStatus.READY
    backup_id: uuid.UUID
    settings: EventSettings = None


class RestoreFailed(EventBody):
    """The restore could not be finished (``reason`` says where); the safety backup holds the
    store as it was before."""

    status: Literal[StoreStatus.READY] = StoreStatus.READY
    backup_id: uuid.UUID
    reason: str


class BackupDeleted(EventBody):
    """The backup is deleted: never listed or restorable again. Its data is removed from the
    store's repository as soon as the store is not busy (its status until then: deleting)."""

    status: StoreStatus  # the store's, which deleting a backup does not change
    backup_id: uuid.UUID
    reason: BackupDeletion


class BackupDamaged(EventBody):
    """A complete backup was found damaged as a restore or a copy read it (restic found its
    data altered or gone, or a part unlike its manifest): never restored or copied again, and
    listed as damaged, ``reason`` saying what was found, until it is deleted."""

    status: StoreStatus  # the store's, which finding a backup damaged does not change
    backup_id: uuid.UUID
    reason: str


# Why a copy's backup can be copied no more: deleted, found damaged, or going with its store,
# whose deletion was asked for.
SourceLoss = Literal["backup_deleted", "backup_damaged", "store_deleted"]


class SourceLost(EventBody):
    """The backup this copy is made from can be copied no more (``reason``): failed, or
    failing later, the copy is offered no retry (deleting it is what is left). Told to each
    copy failed or not made yet, after the event of its cause."""

    status: StoreStatus  # the copy's (queued, provisioning or failed), which this keeps
    backup_id: uuid.UUID
    reason: SourceLoss


EventData = (
    Requested
    | Progress
    | Ready
    | Pooled
    | FellBack
    | Failed
    | CleanedUp
    | DeleteRequested
    | DeleteQueued
    | Deleted
    | ChangeRequested
    | Changed
    | ChangeFailed
    | BackupStarted
    | BackupCompleted
    | BackupFailed
    | RestoreRequested
    | Restored
    | RestoreFailed
    | BackupDeleted
    | BackupDamaged
    | SourceLost
)

_NAMES: dict[type[BaseModel], EventName] = {
    Requested: EventName.REQUESTED,
    Progress: EventName.PROGRESS,
    Ready: EventName.READY,
    Pooled: EventName.POOLED,
    FellBack: EventName.FELL_BACK,
    Failed: EventName.FAILED,
    CleanedUp: EventName.CLEANED_UP,
    DeleteRequested: EventName.DELETE_REQUESTED,
    DeleteQueued: EventName.DELETE_QUEUED,
    Deleted: EventName.DELETED,
    ChangeRequested: EventName.CHANGE_REQUESTED,
    Changed: EventName.CHANGED,
    ChangeFailed: EventName.CHANGE_FAILED,
    BackupStarted: EventName.BACKUP_STARTED,
    BackupCompleted: EventName.BACKUP_COMPLETED,
    BackupFailed: EventName.BACKUP_FAILED,
    RestoreRequested: EventName.RESTORE_REQUESTED,
    Restored: EventName.RESTORED,
    RestoreFailed: EventName.RESTORE_FAILED,
    BackupDeleted: EventName.BACKUP_DELETED,
    BackupDamaged: EventName.BACKUP_DAMAGED,
    SourceLost: EventName.SOURCE_LOST,
}


def subject_for(name: EventName, store_id: uuid.UUID) -> str:
    return f"{STREAM_SUBJECT_PREFIX}.{name.value}.{store_id}"


class CloudEvent(BaseModel):
    """A structured-mode CloudEvent, with our two extension attributes."""

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID
    source: str
    type: str
    subject: str
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: str
    tenantid: str
    data: dict[str, Any]
    # The CloudEvents distributed-tracing extension: the trace of the request behind the
    # event (W3C Trace Context), left out when there is none.
    traceparent: str | None = None
    tracestate: str | None = None

    @model_serializer(mode="wrap")
    def _without_absent_extensions(self, handler: SerializerFunctionWrapHandler) -> Any:
        dumped = handler(self)
        for name in ("traceparent", "tracestate"):
            if dumped.get(name) is None:
                dumped.pop(name, None)
        return dumped

    @property
    def store_id(self) -> uuid.UUID:
        return uuid.UUID(self.subject)

    @property
    def name(self) -> EventName:
        return EventName(self.type.removeprefix(TYPE_PREFIX))

    @property
    def nats_subject(self) -> str:
        return subject_for(self.name, self.store_id)


def make_event(
    data: EventData,
    *,
    store_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    correlation_id: str,
    source: str,
) -> CloudEvent:
    trace = tracing.current_carrier()
    return CloudEvent(
        id=uuid.uuid4(),
        source=source,
        type=TYPE_PREFIX + _NAMES[type(data)].value,
        subject=str(store_id),
        time=utcnow(),
        correlationid=correlation_id,
        tenantid=str(tenant_id or NO_TENANT),
        data=data.model_dump(mode="json"),
        traceparent=trace.get("traceparent"),
        tracestate=trace.get("tracestate"),
    )


# Why the notifier cannot serve an event stream's resume point (Last-Event-ID), sent as the
# data of its ``refetch`` frame: events it missed are gone from the stream (aged-out), could
# not be read (unreadable), are from a stream lost and begun again (unknown-id), or are older
# than the notifier replays (older-than-window). The client reads the stores again.
RefetchReason = Literal["aged-out", "unreadable", "unknown-id", "older-than-window"]


class RefetchData(BaseModel):
    """The data of an event stream's ``refetch`` frame."""

    reason: RefetchReason


# Why the notifier ended a stream for good: its key's access was withdrawn.
EndReason = Literal["access-withdrawn"]
# How: a program may wait for a suspended tenant to be resumed; a revoked key or a deleted
# tenant never opens a stream again.
Withdrawal = Literal["key-revoked", "tenant-suspended", "tenant-deleted"]


class EndData(BaseModel):
    """The data of an event stream's last frame, ``end``, where the notifier ends it for
    good: reconnecting would be refused."""

    reason: EndReason
    cause: Withdrawal
    detail: str  # for people
