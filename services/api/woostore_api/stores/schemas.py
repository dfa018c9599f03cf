"""What the REST API accepts and returns for stores."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from woostore_shared.models import Store, StoreStatus

NAME_MAX = 50
# Zero-width (non-)joiners belong to emoji sequences and to Persian and Indic words.
_JOINERS = frozenset({"\u200c", "\u200d"})
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})


def _joins(name: str, i: int) -> bool:
    """Whether ``name[i]`` is a joiner between two visible characters."""
    if name[i] not in _JOINERS or not 0 < i < len(name) - 1:
        return False
    return all(unicodedata.category(c)[0] not in "CZ" for c in (name[i - 1], name[i + 1]))


class StoreCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "My Shop", "type": "woocommerce"}]},
    )

    # The length is checked after NFC normalisation (in the validator): "é" typed as e and a
    # combining accent is one character. The schema still advertises the limit.
    name: str = Field(
        min_length=1,
        description=f"Shown to people; any script; at most {NAME_MAX} characters.",
        json_schema_extra={"maxLength": NAME_MAX},
    )
    type: Literal["woocommerce"] = "woocommerce"

    @field_validator("name")
    @classmethod
    def _normal_and_printable(cls, name: str) -> str:
        if len(name) > 4 * NAME_MAX:  # far past any composition: refuse before normalising
            raise ValueError(f"must be at most {NAME_MAX} characters")
        name = unicodedata.normalize("NFC", name).strip()
        if not name:
            raise ValueError("must contain a visible character")
        # Control, format, surrogate and private-use characters are refused; unassigned ones
        # (Cn) are not, since they include emoji newer than this Python's Unicode tables.
        if any(
            unicodedata.category(c) in _REFUSED_CATEGORIES and not _joins(name, i)
            for i, c in enumerate(name)
        ):
            raise ValueError("must not contain control or invisible format characters")
        if len(name) > NAME_MAX:
            raise ValueError(f"must be at most {NAME_MAX} characters")
        return name


class StepOut(BaseModel):
    name: str
    title: str
    index: int
    total: int


class StoreOut(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    type: str
    status: StoreStatus
    simulated: bool = Field(description="True when the store runs on the simulated cluster.")
    step: StepOut | None
    progress: float = Field(ge=0, le=1)
    queue_position: int | None = Field(
        default=None, description="While queued: 1 is next to start. Stores start 2 at a time."
    )
    storefront_url: str | None
    admin_url: str | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None
    deleted_at: datetime | None
    links: dict[str, str]

    @classmethod
    def of(cls, store: Store, queue: dict[uuid.UUID, int] | None = None) -> StoreOut:
        step = None
        if store.step_name and store.step_index and store.step_total:
            step = StepOut(
                name=store.step_name,
                title=store.step_title or store.step_name,
                index=store.step_index,
                total=store.step_total,
            )
        base = f"/api/v1/stores/{store.id}"
        return cls(
            **store.model_dump(
                include={
                    "id", "name", "slug", "type", "status", "simulated", "progress",
                    "storefront_url", "admin_url", "failure_reason",
                    "created_at", "updated_at", "ready_at", "deleted_at",
                }
            ),
            step=step,
            queue_position=(queue or {}).get(store.id),
            links={"self": base, "credentials": f"{base}/credentials"},
        )  # fmt: skip


class EventOut(BaseModel):
    id: uuid.UUID
    type: str
    time: datetime
    data: dict[str, Any]


class StoreDetail(StoreOut):
    events: list[EventOut]


class StoreList(BaseModel):
    items: list[StoreOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )


class Credentials(BaseModel):
    username: str
    password: str


class Platform(BaseModel):
    cluster: Literal["simulated", "kubernetes"]
    events_url: str
    base_domain: str
    version: str


class Ticket(BaseModel):
    ticket: str
    expires_in: int
