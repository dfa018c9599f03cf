"""/api/v1/audit: who did what to which object, when, and from where."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from woostore_api.access.schemas import NO_CONTROLS
from woostore_api.access.service import tenant_scope
from woostore_api.audit import service
from woostore_api.auth import CurrentCaller
from woostore_api.deps import DatabaseDep
from woostore_api.problems import problem_responses
from woostore_shared.models import Role

router = APIRouter(prefix="/audit", tags=["audit"])


_ENTRY: JsonDict = {
    "id": 42,
    "time": "2026-11-26T09:02:00Z",
    "tenant_id": "7c2d9e41-5a3b-4c6d-8e7f-9a0b1c2d3e4f",
    "actor": "wsk_3f9a1c2b7d4e",
    "actor_role": "tenant",
    "action": "store.create",
    "target": "store/0b7e6a52-3c1f-4d2a-9a57-6f1e2d9c8b10",
    "source_ip": "203.0.113.7",
    "user_agent": "woostore-cli",
    "details": {"name": "Corner Shop", "slug": "corner-shop-3f9a1c"},
}


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_ENTRY]})

    id: int
    time: datetime
    tenant_id: uuid.UUID
    actor: str = Field(description='The API key\'s prefix, or "admin-token".')
    actor_role: Role
    action: str = Field(examples=["store.create"])
    target: str = Field(examples=["store/0b7e6a52-…", "key/wsk_3f9a1c2b7d4e"])
    source_ip: str | None = None
    user_agent: str | None = None
    details: dict[str, Any]


class AuditPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_ENTRY], "next_cursor": 42}]}
    )

    items: list[AuditEntryOut]
    next_cursor: int | None = Field(default=None, description="Pass as ?cursor= for older entries.")


@router.get("", response_model=AuditPage, responses=problem_responses(400, 401, 403, 404, 422))
async def list_audit_entries(
    db: DatabaseDep,
    caller: CurrentCaller,
    tenant_id: Annotated[
        uuid.UUID | None,
        Query(
            description="Admins: one tenant's entries (default: all); a tenant that"
            " never was: 404.",
        ),
    ] = None,
    target: Annotated[
        str | None,
        Query(max_length=100, pattern=NO_CONTROLS, description='One object, e.g. "store/<id>".'),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> AuditPage:
    """Newest first. A tenant sees its own tenant's entries; an admin sees everyone's."""
    scope = await tenant_scope(db, caller, tenant_id)
    rows = await service.entries(db, scope, target, limit, cursor)
    page = rows[:limit]
    # A cursor only when more are left: a last page exactly `limit` long said there was more.
    next_cursor = page[-1].id if len(rows) > limit else None
    return AuditPage(
        items=[AuditEntryOut.model_validate(row, from_attributes=True) for row in page],
        next_cursor=next_cursor,
    )
