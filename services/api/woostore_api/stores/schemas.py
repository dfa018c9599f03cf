"""What the REST API accepts and returns for stores."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from woostore_api.names import printable
from woostore_shared.events import Phase, StoreRef
from woostore_shared.models import BackupStatus, BackupTrigger, Store, StoreChange, StoreStatus
from woostore_shared.store_settings import StoreSettings, StoreSettingsIn
from woostore_shared.transitions import StoreAction, actions_of

STORES_PATH = "/api/v1/stores"  # where the API serves stores (main.py's prefix, this router's)
NAME_MAX = 50
_STORE_ID = "0b7e6a52-3c1f-4d2a-9a57-6f1e2d9c8b10"
_STEP: JsonDict = {"name": "woocommerce", "title": "Activating WooCommerce", "index": 6, "total": 9}
STORE_EXAMPLE: JsonDict = {
    "id": _STORE_ID,
    "name": "Corner Shop",
    "slug": "corner-shop-3f9a1c",
    "tenant_id": "7c2d9e41-5a3b-4c6d-8e7f-9a0b1c2d3e4f",
    "type": "woocommerce",
    "status": "provisioning",
    "simulated": True,
    "origin": "cold",
    "step": _STEP,
    "progress": 0.56,
    "waiting_cause": None,
    "queue_position": None,
    "storefront_url": None,
    "admin_url": None,
    "settings": {
        "currency": "INR",
        "country": "IN",
        "state": "KA",
        "language": "en_US",
        "admin_email": None,
        "sample_products": True,
    },
    "failure_reason": None,
    "cleaned_up_at": None,
    "last_change": None,
    "created_at": "2026-11-26T09:00:00Z",
    "updated_at": "2026-11-26T09:00:41Z",
    "requested_at": "2026-11-26T09:00:00Z",
    "ready_at": None,
    "ready_in_seconds": None,
    "delete_requested_at": None,
    "deleted_at": None,
    "actions": ["delete"],
    "links": {"self": f"{STORES_PATH}/{_STORE_ID}"},  # no credentials before it is ready
}


class StoreCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "My Shop", "type": "woocommerce"},
                {"name": "Mein Laden", "settings": {"currency": "EUR", "country": "DE"}},
            ]
        },
    )

    # The length is checked after NFC normalisation (in the validator): "é" typed as e and a
    # combining accent is one character. The schema still advertises the limit.
    name: str = Field(
        min_length=1,
        description=f"Shown to people; any script; at most {NAME_MAX} characters.",
        json_schema_extra={"maxLength": NAME_MAX},
    )
    type: Literal["woocommerce"] = "woocommerce"
    tenant_id: uuid.UUID | None = Field(
        default=None,
        description="Admins only: the tenant the store is made for, and counted against "
        "(default: the caller's own).",
    )
    settings: StoreSettingsIn | None = Field(
        default=None,
        description="The store's settings; each one left out takes the platform's default.",
    )
    from_backup: uuid.UUID | None = Field(
        default=None,
        description="A complete backup of one of the tenant's stores: the new store starts "
        "as a copy of that store as it was (products, orders, customers, uploads, settings), "
        "under its own name, address and admin password (a clone, a staging copy). Never "
        "taken from the warm pool; not with `settings`.",
    )

    @model_validator(mode="after")
    def _settings_or_a_backup(self) -> StoreCreate:
        if self.from_backup is not None and self.settings is not None:
            raise ValueError("a store made from a backup has the backed-up store's settings")
        return self

    @field_validator("name")
    @classmethod
    def _normal_and_printable(cls, name: str) -> str:
        return printable(name, NAME_MAX)


class SettingsChange(StoreSettingsIn):
    """Settings to give a ready store; each one left out stays as it is. A state named
    without a country is one of the store's country's."""

    STATE_ALONE = True

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"currency": "USD"}, {"country": "IN", "state": "KA"}, {"state": "MH"}]
        }
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> SettingsChange:
        if self.sample_products is not None:
            raise ValueError(
                "sample_products is how a store starts: its products are changed in WooCommerce"
            )
        if not self.chosen():
            raise ValueError(
                "name a setting to change: currency, country (and state), language or admin_email"
            )
        return self


class StepOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_STEP]})

    name: str
    title: str
    index: int
    total: int


class ChangeOut(BaseModel):
    kind: Literal["upgrade", "rollback", "settings", "restore"]
    result: Literal["changed", "failed"] | None = Field(
        description="How it ended: null while it is under way."
    )
    reason: str | None = Field(
        default=None,
        description="Why it failed (the store stayed ready), or what was found damaged.",
    )
    requested_at: datetime
    finished_at: datetime | None = None


_BACKUP: JsonDict = {
    "id": "9a3e1c5b-7d2f-4e8a-b6c0-1f4d2e3a5b7c",
    "trigger": "requested",
    "status": "complete",
    "requested_at": "2026-12-02T09:00:00Z",
    "finished_at": "2026-12-02T09:00:42Z",
    "reason": None,
    "size": 48213504,
    "chart_version": "0.2.0",
    "wordpress_version": "7.1.2",
    "woocommerce_version": "11.2.0",
}


class BackupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_BACKUP]})

    id: uuid.UUID
    trigger: BackupTrigger = Field(
        description="Why it was taken: asked for (requested), the daily one (scheduled), or "
        "before an upgrade, rollback or restore."
    )
    status: BackupStatus = Field(
        description="running; complete once every part and its manifest are stored (only "
        "then can it be restored); failed, with the reason; damaged, once a restore or a "
        "copy found it unreadable (never restored again), with what was found; deleting, "
        "once deleted (by its "
        "owner, or by the retention rules) until its data is removed; deleted (so is every "
        "backup of a deleted store)."
    )
    requested_at: datetime
    finished_at: datetime | None = None
    reason: str | None = Field(
        default=None,
        description="Why it failed (the store stayed ready), or what was found damaged.",
    )
    size: int | None = Field(
        default=None, description="Bytes it restores (database and uploads), once complete."
    )
    chart_version: str | None = Field(default=None, description="The store chart it ran.")
    wordpress_version: str | None = None
    woocommerce_version: str | None = None


class RestoreRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"backup_id": _BACKUP["id"]}]}
    )

    backup_id: uuid.UUID = Field(description="A complete backup of this store.")


class BackupList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_BACKUP]}]})

    items: list[BackupOut] = Field(description="Newest first.")


@dataclass(frozen=True)
class Surroundings:
    """What a store resource shows that is not on the store's row."""

    queue: Mapping[uuid.UUID, int] = field(default_factory=dict)  # queued stores' places
    last_changes: Mapping[uuid.UUID, StoreChange] = field(default_factory=dict)
    copied_from: Mapping[uuid.UUID, StoreRef] = field(default_factory=dict)  # copies' sources


def _asked_at(store: Store) -> datetime:
    """When the store's owner last asked for it. A claim by a replica older than
    ``requested_at`` (migration 0022, run before the rollout) left it at the pooled store's
    making, hours back maybe; such a claim still set ``created_at`` to its own time."""
    return max(store.requested_at, store.created_at)


class StoreOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [STORE_EXAMPLE]})

    id: uuid.UUID
    name: str
    slug: str
    tenant_id: uuid.UUID = Field(
        description="Its owner (an admin's lists hold every tenant's stores)."
    )
    type: str
    status: StoreStatus
    simulated: bool = Field(description="True when the store runs on the simulated cluster.")
    origin: Literal["cold", "pool", "backup"] = Field(
        description=(
            "Where the store came from: made from scratch (cold), taken from the platform's "
            "warm pool of stores made in advance and made its owner's (pool): seconds, not "
            "minutes; or made from a backup of another store (backup: `from_backup`)."
        )
    )
    from_backup: uuid.UUID | None = Field(
        default=None, description="The backup it was made from (origin backup)."
    )
    from_store: StoreRef | None = Field(
        default=None, description="The store that backup is of (origin backup)."
    )
    step: StepOut | None = None
    progress: float = Field(ge=0, le=1)
    waiting_cause: str | None = Field(
        default=None,
        description="Why the current step waits on the cluster, in plain words, while known "
        '("Waiting for cluster capacity: ...", "Cannot download the image ...").',
    )
    queue_position: int | None = Field(
        default=None,
        description="While queued to be made: 1 is next to start. Stores start 2 at a time, "
        "in the order they entered the queue (a retried store queues again, behind those "
        "waiting). None for a store claimed from the warm pool: it waits in no queue, and is "
        "ready in seconds. "
        "Counted as the answer is made: a store queued ahead whose create is not yet "
        "committed is not.",
    )
    chart_version: str | None = Field(
        default=None, description="Version of the store chart its release runs."
    )
    release_revision: int | None = Field(
        default=None,
        description=(
            "The Helm release revision WooStore last deployed for it. An upgrade that failed "
            "adds two revisions to helm's history (the failed one, and helm's rollback to "
            "this one) and leaves this as it was."
        ),
    )
    change: Literal["upgrade", "rollback", "settings", "restore"] | None = Field(
        default=None, description="While updating or restoring: the change under way."
    )
    storefront_url: str | None = None
    admin_url: str | None = None
    settings: StoreSettings = Field(
        description="Its settings: the owner's choices over the platform's defaults, as made"
        " or last changed (POST /stores/{id}/settings; while that runs, the new ones)."
    )
    failure_reason: str | None = Field(default=None, description="Why the store failed.")
    cleaned_up_at: datetime | None = Field(
        default=None,
        description=(
            "A failed store: when its clean-up finished, leaving nothing of it in the cluster "
            "(null while the clean-up runs)."
        ),
    )
    last_change: ChangeOut | None = Field(
        default=None,
        description="Its latest upgrade, rollback, settings change or restore, and how it ended.",
    )
    created_at: datetime
    updated_at: datetime
    requested_at: datetime = Field(
        description="When its owner last asked for it: made (or claimed from the warm pool), "
        "or retried after a failure. What its owner waits for counts from here."
    )
    ready_at: datetime | None = None
    ready_in_seconds: float | None = Field(
        default=None,
        description="How long its owner waited: from the request (the latest, for a retried "
        "store) to ready.",
    )
    delete_requested_at: datetime | None = Field(
        default=None,
        description="When its deletion was asked for. A store asked to be deleted while an "
        "upgrade, a rollback or a restore runs keeps its status until that ends, and is "
        "deleted then; a backup is stopped for it; a ready or failed store a new store is "
        "being made from is deleted once no copy reads its backups.",
    )
    deleted_at: datetime | None = None
    actions: list[StoreAction] = Field(
        description=(
            "What the store accepts now, for a client to offer: delete (or cancel, while "
            "queued or provisioning; while it is updating, backing up or restoring, once that "
            "ends), upgrade, rollback (when its release has an earlier revision), settings, "
            "backup, restore (when it has a complete backup; its list of backups says which), "
            "retry (failed, its clean-up finished), credentials. Advice only: a request the "
            "store does not accept is still refused with 409. Every event about the store "
            "carries it too (`data.actions`), as the store accepts after the event."
        ),
    )
    links: dict[str, str] = Field(
        description="`self`, and `credentials` while the admin login can be read."
    )

    @classmethod
    def of(cls, store: Store, around: Surroundings) -> StoreOut:
        step = None
        if store.step_name and store.step_index and store.step_total:
            step = StepOut(
                name=store.step_name,
                title=store.step_title or store.step_name,
                index=store.step_index,
                total=store.step_total,
            )
        base = f"{STORES_PATH}/{store.id}"
        asked = _asked_at(store)
        return cls(
            **store.model_dump(
                include={
                    "id", "name", "slug", "tenant_id", "type", "status", "simulated", "origin",
                    "progress", "waiting_cause", "chart_version", "release_revision", "change",
                    "settings",
                    "storefront_url", "admin_url", "failure_reason", "cleaned_up_at",
                    "created_at", "updated_at", "ready_at", "delete_requested_at", "deleted_at",
                }
            ),
            step=step,
            requested_at=asked,
            from_backup=store.from_backup_id,
            from_store=around.copied_from.get(store.id),
            queue_position=around.queue.get(store.id),
            ready_in_seconds=(
                round((store.ready_at - asked).total_seconds(), 1)
                if store.ready_at
                else None
            ),
            last_change=(
                ChangeOut.model_validate(change, from_attributes=True)
                if (change := around.last_changes.get(store.id))
                else None
            ),
            actions=(actions := actions_of(store)),
            links={
                "self": base,
                # Only while they can be read: a queued or deleted store's answered 409.
                **({"credentials": f"{base}/credentials"} if "credentials" in actions else {}),
            },
        )  # fmt: skip


_EVENT: JsonDict = {
    "id": "5d1c7f0e-2b8a-4f7e-9c41-0a6b3e2d1f90",
    "type": "io.woostore.store.progress",
    "time": "2026-11-26T09:00:41Z",
    "sequence": 4127,
    "data": {
        "status": "provisioning",
        "phase": "provision",
        "step": _STEP,
        "state": "started",
        "progress": 0.56,
    },
}


class EventOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EVENT]})

    id: uuid.UUID
    type: str
    time: datetime
    data: dict[str, Any]
    sequence: int | None = Field(
        description="Its place in the event stream: the `id` the notifier's stream sends it "
        "with. To follow the store on from what this answer shows, open the stream with "
        "`Last-Event-ID` (or `?last_event_id=`) the highest one. Null for a moment after the "
        "event is written, until it is published: follow on from an earlier one then, and "
        "skip the events (by `id`) already seen."
    )


class StoreDetail(StoreOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**STORE_EXAMPLE, "events": [_EVENT], "earlier_events": False}]
        }
    )

    events: list[EventOut]
    earlier_events: bool = Field(
        description="Whether the store has events before the first of `events`: ask for more"
        " with `?events=` (up to 1000)."
    )


class StoreList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [STORE_EXAMPLE], "next_cursor": "MjAyNi0xMS0yNlQwOTowMDo..."}]
        }
    )

    items: list[StoreOut]
    next_cursor: str | None = Field(
        default=None, description="Pass as ?cursor= for the next page; null at the end."
    )


class StoreCounts(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"total": 3, "by_status": {"ready": 2, "queued": 1}}]}
    )

    total: int = Field(description="Stores not deleted.")
    by_status: dict[StoreStatus, int] = Field(
        description="Stores in each status, deleted ones too; a status no store has is left out."
    )


_STEP_TIMES: JsonDict = {
    "window": 50,
    "phases": [
        {
            "phase": "personalise",
            "steps": [
                {"name": "owner", "position": 1, "median_seconds": 3.2, "samples": 50},
                {"name": "language", "position": 2, "median_seconds": 0.4, "samples": 50},
                {"name": "verify", "position": 3, "median_seconds": 2.1, "samples": 48},
            ],
            "median_total_seconds": 5.7,
        }
    ],
}


class StepTime(BaseModel):
    name: str
    position: int = Field(description="The step's place in its recipe (1 is first), as last run.")
    median_seconds: float = Field(description="The median of its latest runs' times.")
    samples: int = Field(description="How many runs the median is of: at most the window.")


class PhaseTimes(BaseModel):
    phase: Phase
    steps: list[StepTime] = Field(description="Its measured steps, in their recipe's order.")
    median_total_seconds: float = Field(description="The sum of its steps' medians.")


class StepTimes(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_STEP_TIMES]})

    window: int = Field(description="How many of each step's latest runs its median is of.")
    phases: list[PhaseTimes] = Field(description="Each phase with a measured step, by name.")


class Credentials(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"username": "admin", "password": "q8Vn-3kLx0aZr7TmWb2pYc4d"}]
        }
    )

    username: str
    password: str


class Platform(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "cluster": "simulated",
                    "events_url": "http://127.0.0.1:8001/api/v1/events",
                    "base_domain": "127.0.0.1.nip.io",
                    "version": "0.1.0",
                    "store_chart_version": "0.2.0",
                }
            ]
        }
    )

    cluster: Literal["simulated", "kubernetes"]
    events_url: str
    base_domain: str
    version: str
    store_chart_version: str = Field(
        description="The store chart this platform ships: new stores get it, and an upgrade"
        " moves a store to it. A store already on it is upgraded to the same chart again: a"
        " new revision with the platform's values as they are now."
    )


class Ticket(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ticket": "eyJzdWIiOiI...", "expires_in": 60}]}
    )

    ticket: str
    expires_in: int
