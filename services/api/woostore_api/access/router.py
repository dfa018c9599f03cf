"""/api/v1/tenants, /api/v1/keys and /api/v1/session: who may use WooStore, and how."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from woostore_api.access import service
from woostore_api.access.schemas import (
    KeyCreate,
    KeyList,
    KeyOut,
    NewKeyOut,
    SessionCreate,
    TenantCreate,
    TenantOut,
    TenantUpdate,
    WhoAmI,
)
from woostore_api.auth import (
    AdminCaller,
    Caller,
    CurrentCaller,
    caller_of,
    refuse_another_origin,
    secure_cookies,
    session_cookie,
)
from woostore_api.deps import (
    AuthenticatorDep,
    DatabaseDep,
    OutboxDep,
    SessionsDep,
    SettingsDep,
)
from woostore_api.edge import no_store
from woostore_api.problems import SESSION_NOT_ENDED, problem_responses, unauthorized
from woostore_shared.access import Authenticator, Principal, TenantSuspended
from woostore_shared.db import Database
from woostore_shared.models import ApiKey, Tenant
from woostore_shared.problems import database_unavailable
from woostore_shared.secrets import InvalidTicket, OpenedTicket
from woostore_shared.settings import Settings

router = APIRouter()


def _tenant_out(tenant: Tenant, settings: Settings) -> TenantOut:
    cap = settings.tenant_store_limit if tenant.store_limit is None else tenant.store_limit
    return TenantOut(
        id=tenant.id,
        name=tenant.name,
        store_limit=tenant.store_limit,
        created_at=tenant.created_at,
        live_stores=tenant.live_stores,
        store_cap=cap,
        deleted_at=tenant.deleted_at,
        suspended_at=tenant.suspended_at,
    )


@router.post(
    "/tenants",
    status_code=status.HTTP_201_CREATED,
    response_model=TenantOut,
    tags=["tenants"],
    responses=problem_responses(400, 401, 403, 409, 422),
)
async def create_tenant(
    body: TenantCreate, outbox: OutboxDep, settings: SettingsDep, caller: AdminCaller
) -> TenantOut:
    """A new tenant. Give it keys with POST /keys."""
    tenant = await service.create_tenant(outbox, caller, body)
    return _tenant_out(tenant, settings)


@router.get(
    "/tenants",
    response_model=list[TenantOut],
    tags=["tenants"],
    responses=problem_responses(401, 403, 422),
)
async def list_tenants(
    db: DatabaseDep,
    settings: SettingsDep,
    _: AdminCaller,
    include_deleted: Annotated[
        bool,
        Query(
            description="Deleted tenants too (`deleted_at` set): the audit log, their deleted"
            " stores and their revoked keys still name them."
        ),
    ] = False,
) -> list[TenantOut]:
    """Every tenant, with its usage against its cap, oldest first."""
    tenants = await service.list_tenants(db, include_deleted=include_deleted)
    return [_tenant_out(t, settings) for t in tenants]


@router.get(
    "/tenants/{tenant_id}",
    response_model=TenantOut,
    tags=["tenants"],
    responses=problem_responses(401, 404, 422),
)
async def get_tenant(
    tenant_id: uuid.UUID, db: DatabaseDep, settings: SettingsDep, caller: CurrentCaller
) -> TenantOut:
    """One tenant, with its usage against its cap: any for an admin, its own for a tenant
    (another's answers 404, as if it did not exist)."""
    return _tenant_out(await service.tenant_seen_by(db, caller.principal, tenant_id), settings)


@router.patch(
    "/tenants/{tenant_id}",
    response_model=TenantOut,
    tags=["tenants"],
    responses=problem_responses(400, 401, 403, 404, 409, 422),
)
async def update_tenant(
    tenant_id: uuid.UUID,
    body: TenantUpdate,
    outbox: OutboxDep,
    settings: SettingsDep,
    caller: AdminCaller,
) -> TenantOut:
    """Rename a tenant, change its store limit (stores it already has are kept), suspend
    or resume it: the fields given, at least one. A suspended tenant's keys are refused (its
    sessions with them, its event streams within 30 s) and its stores keep serving, until it
    is resumed. Refused with 409: a name another tenant has; renaming or suspending the
    default tenant (the admin token's); a key suspending its own tenant."""
    tenant = await service.update_tenant(outbox, caller, tenant_id, body)
    return _tenant_out(tenant, settings)


@router.delete(
    "/tenants/{tenant_id}",
    response_model=TenantOut,
    tags=["tenants"],
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_tenant(
    tenant_id: uuid.UUID, outbox: OutboxDep, settings: SettingsDep, caller: AdminCaller
) -> TenantOut:
    """Delete a tenant whose stores are all deleted (409 while any is left): its keys are
    revoked at once, its name can be a new tenant's, and its audit log entries stay. After,
    it is neither read, changed nor given anything (404); it is listed by GET
    /tenants?include_deleted=true, and lists of stores, keys and audit entries narrowed to
    it still read its history."""
    return _tenant_out(await service.delete_tenant(outbox, caller, tenant_id), settings)


def _key_out(key: ApiKey) -> KeyOut:
    return KeyOut.model_validate(key, from_attributes=True)


@router.post(
    "/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=NewKeyOut,
    tags=["keys"],
    responses=problem_responses(400, 401, 403, 404, 409, 422),
    dependencies=[Depends(no_store)],
)
async def create_key(
    body: KeyCreate, outbox: OutboxDep, settings: SettingsDep, caller: CurrentCaller
) -> NewKeyOut:
    """A new API key. Its token is in this response only; WooStore keeps just a hash. A tenant
    at its cap of live keys gets 409 (``limit-reached``) until one is revoked."""
    key, issued = await service.create_key(outbox, caller, body, settings)
    return NewKeyOut(**_key_out(key).model_dump(), token=issued.token)


@router.get(
    "/keys",
    response_model=KeyList,
    tags=["keys"],
    responses=problem_responses(401, 403, 404, 422),
)
async def list_keys(
    db: DatabaseDep,
    caller: CurrentCaller,
    tenant_id: Annotated[
        uuid.UUID | None,
        Query(
            description="Admins: one tenant's keys (default: all); a tenant that never was: 404.",
        ),
    ] = None,
) -> KeyList:
    """Keys, revoked ones included, without their tokens. A tenant key sees its tenant's
    tenant keys, not the admin keys of its tenant."""
    scope = await service.tenant_scope(db, caller, tenant_id)
    keys = await service.list_keys(db, caller.principal, scope)
    return KeyList(items=[_key_out(k) for k in keys])


@router.delete(
    "/keys/{key_id}",
    response_model=KeyOut,
    tags=["keys"],
    responses=problem_responses(401, 403, 404, 422),
)
async def revoke_key(key_id: uuid.UUID, outbox: OutboxDep, caller: CurrentCaller) -> KeyOut:
    """Revoke a key at once: its requests, sessions and event streams stop being accepted."""
    return _key_out(await service.revoke_key(outbox, caller, key_id))


async def _whoami(db: Database, caller: Caller) -> WhoAmI:
    tenant = await service.get_tenant(db, caller.principal.tenant_id)
    principal = caller.principal
    return WhoAmI(
        actor=principal.actor, role=principal.role, tenant_id=tenant.id, tenant_name=tenant.name
    )


@router.post(
    "/session",
    response_model=WhoAmI,
    tags=["session"],
    responses=problem_responses(400, 401, 422),
    dependencies=[Depends(no_store)],
)
async def sign_in(
    body: SessionCreate,
    request: Request,
    response: Response,
    outbox: OutboxDep,
    authenticator: AuthenticatorDep,
    sessions: SessionsDep,
) -> WhoAmI:
    """Sign the dashboard in with a key: sets an HttpOnly, SameSite=Strict session cookie,
    `__Host-woostore_session` over HTTPS."""
    principal = await authenticator.by_token(body.token)
    if principal is None:
        raise unauthorized("that key is not valid or was revoked")
    caller = caller_of(request, principal)
    await service.record_sign_in(outbox, caller)
    response.set_cookie(
        session_cookie(request),
        sessions.issue(principal.subject),
        max_age=sessions.max_age,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
        path="/",  # the __Host- prefix requires it
    )
    return await _whoami(outbox.db, caller)


@router.get(
    "/session", response_model=WhoAmI, tags=["session"], responses=problem_responses(401, 422)
)
async def whoami(db: DatabaseDep, caller: CurrentCaller) -> WhoAmI:
    """Who the session cookie (or bearer token) belongs to."""
    return await _whoami(db, caller)


@router.delete(
    "/session",
    status_code=status.HTTP_204_NO_CONTENT,
    response_model=None,
    response_class=Response,  # no body, so no content type either
    tags=["session"],
    responses=problem_responses(403, 503),
)
async def sign_out(
    request: Request,
    response: Response,
    outbox: OutboxDep,
    authenticator: AuthenticatorDep,
    sessions: SessionsDep,
    settings: SettingsDep,
) -> Response | None:
    """Sign the dashboard out: the session ends on the server, so a copy of its cookie opens
    nothing any more, and the browser's cookie is deleted. A session already ended (or none)
    is signed out all the same, and one of a suspended tenant's key ends too (resumed, it
    would open again). The cookie is deleted even when the database cannot take the
    session's end (503: a copy of the cookie opens the session until it expires, or its key
    is revoked). Another site's page may not sign it out
    (403, as for any write with the cookie)."""
    cookie = request.cookies.get(session_cookie(request))
    if cookie:  # another site may not sign the dashboard out either
        refuse_another_origin(request, settings)
    try:
        opened = sessions.open(cookie) if cookie else None
    except InvalidTicket:
        opened = None  # expired or not ours: nothing left to end
    try:
        principal = await _holder(authenticator, opened)
        if opened is not None and principal is not None:  # else ended already, or never ours
            await service.sign_out(outbox, caller_of(request, principal), opened)
    except (DBAPIError, PoolTimeout):
        refused = database_unavailable(request, SESSION_NOT_ENDED)
        _forget_the_cookie(refused, request)
        return refused
    _forget_the_cookie(response, request)
    return None


async def _holder(authenticator: Authenticator, opened: OpenedTicket | None) -> Principal | None:
    """Whose open session ``opened`` is, a suspended tenant's key's too; None if none is."""
    if opened is None:
        return None
    try:
        return await authenticator.by_session(opened)
    except TenantSuspended as suspended:
        return suspended.refused


def _forget_the_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        session_cookie(request),
        path="/",
        secure=secure_cookies(request),
        httponly=True,
        samesite="strict",
    )
