"""/api/v1/audit: who did what to which object, when, and from where."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from woostore_api.audit import service
from woostore_api.auth import CurrentCaller, tenant_scope
from woostore_shared.models import Role

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditEntryOut(BaseModel):
    id: int
    time: datetime
    tenant_id: uuid.UUID
    actor: str = Field(description='The API key\'s prefix, or "admin-token".')
    actor_role: Role
    action: str = Field(examples=["store.create"])
    target: str = Field(examples=["store/0b7e…", "key/wsk_…"])
    source_ip: str | None
    user_agent: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: int | None = Field(description="Pass as ?cursor= for older entries.")


@router.get("", response_model=AuditPage)
async def list_audit_entries(
    request: Request,
    caller: CurrentCaller,
    tenant_id: Annotated[
        uuid.UUID | None, Query(description="Admins: one tenant's entries (default: all).")
    ] = None,
    target: Annotated[
        str | None, Query(max_length=100, description='One object, e.g. "store/<id>".')
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[
        int | None, Query(ge=1, description="next_cursor of the previous page")
    ] = None,
) -> AuditPage:
    """Newest first. A tenant sees its own tenant's entries; an admin sees everyone's."""
    scope = tenant_scope(caller, tenant_id)
    rows = await service.entries(request.app.state.db, scope, target, limit, cursor)
    next_cursor = rows[-1].id if len(rows) == limit else None
    return AuditPage(
        items=[AuditEntryOut.model_validate(row, from_attributes=True) for row in rows],
        next_cursor=next_cursor,
    )
