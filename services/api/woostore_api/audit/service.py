"""The audit log: written inside the transaction that made the change, read a page at a time."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlmodel import col, select

from woostore_api.auth import Caller
from woostore_api.problems import invalid_cursor
from woostore_shared.db import Database
from woostore_shared.models import AuditEntry
from woostore_shared.unit_of_work import UnitOfWork


def record(
    uow: UnitOfWork,
    caller: Caller,
    action: str,
    target: str,
    tenant_id: uuid.UUID,
    **details: Any,
) -> None:
    """Add an entry to the caller's unit of work: it commits, or vanishes, with the change."""
    uow.audit(
        AuditEntry(
            tenant_id=tenant_id,
            actor=caller.principal.actor,
            actor_role=caller.principal.role,
            action=action,
            target=target,
            source_ip=caller.source_ip,
            user_agent=caller.user_agent,
            details=details,
        )
    )


# An entry's id, as next_cursor gives it: a PostgreSQL bigint, from 1.
_ENTRY_ID = re.compile(r"[1-9][0-9]{0,18}")
_BIGINT_MAX = 2**63 - 1


def _decode_cursor(cursor: str) -> int:
    """The id of the entry the page starts below. Anything else is a cursor no page gave,
    answered as the stores' list answers one: one mistake, one answer, wherever it is made."""
    if _ENTRY_ID.fullmatch(cursor) is None or int(cursor) > _BIGINT_MAX:
        raise invalid_cursor()
    return int(cursor)


async def entries(
    db: Database,
    tenant_id: uuid.UUID | None,
    target: str | None,
    limit: int,
    cursor: str | None,
) -> list[AuditEntry]:
    """Newest first, up to ``limit`` and one more, which tells whether a next page exists,
    after ``cursor`` (a previous page's next_cursor); ``tenant_id`` None means every tenant
    (admins only)."""
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit + 1)
    if tenant_id is not None:
        query = query.where(col(AuditEntry.tenant_id) == tenant_id)
    if target is not None:
        query = query.where(col(AuditEntry.target) == target)
    if cursor is not None:
        query = query.where(col(AuditEntry.id) < _decode_cursor(cursor))
    async with db.session() as session:
        return list(await session.exec(query))
