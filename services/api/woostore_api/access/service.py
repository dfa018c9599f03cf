"""Tenant and API key use cases. Every change is audited in its own transaction."""

from __future__ import annotations

import uuid

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from woostore_api.access.schemas import KeyCreate, TenantCreate, TenantUpdate
from woostore_api.audit.service import record
from woostore_api.auth import Caller
from woostore_api.problems import (
    cap_reached,
    default_tenant_kept,
    forbidden,
    not_found,
    tenant_exists,
    tenant_gone,
    tenant_not_deletable,
    tenant_not_suspendable,
)
from woostore_shared.access import NewKey, Principal, new_key, spend
from woostore_shared.db import Database, broken_constraint
from woostore_shared.models import (
    DEFAULT_TENANT_ID,
    TENANT_NAMES_UNIQUE,
    ApiKey,
    Role,
    Store,
    StoreStatus,
    Tenant,
    utcnow,
)
from woostore_shared.outbox import Outbox
from woostore_shared.problems import how_many
from woostore_shared.secrets import OpenedTicket
from woostore_shared.settings import Settings
from woostore_shared.unit_of_work import UnitOfWork


async def create_tenant(outbox: Outbox, caller: Caller, body: TenantCreate) -> Tenant:
    try:
        async with UnitOfWork.begin(outbox) as uow:
            tenant = Tenant(name=body.name, store_limit=body.store_limit)
            uow.session.add(tenant)
            await uow.session.flush()  # a taken name fails here
            record(
                uow, caller, "tenant.create", f"tenant/{tenant.id}", tenant.id,
                name=tenant.name, store_limit=tenant.store_limit,
            )  # fmt: skip
    except IntegrityError as error:
        if broken_constraint(error) != TENANT_NAMES_UNIQUE:
            raise
        raise tenant_exists(body.name) from error
    return tenant


async def list_tenants(db: Database, *, include_deleted: bool = False) -> list[Tenant]:
    listed = select(Tenant).order_by(col(Tenant.created_at))
    if not include_deleted:
        listed = listed.where(col(Tenant.deleted_at).is_(None))
    async with db.session() as session:
        return list(await session.exec(listed))


async def get_tenant(db: Database, tenant_id: uuid.UUID) -> Tenant:
    async with db.session() as session:
        return await live_tenant(session, tenant_id)


async def live_tenant(
    session: AsyncSession, tenant_id: uuid.UUID, *, for_update: bool = False
) -> Tenant:
    """A tenant not deleted: a deleted one is not found (a 404 that says it was deleted),
    changed or given anything (its row stays for the audit log and its stores' rows)."""
    tenant = await session.get(Tenant, tenant_id, with_for_update=for_update)
    if tenant is None:
        raise not_found(f"tenant {tenant_id}")
    if tenant.deleted_at is not None:
        raise tenant_gone(tenant.name, tenant.deleted_at)
    return tenant


async def tenant_scope(
    db: Database, caller: Caller, requested: uuid.UUID | None
) -> uuid.UUID | None:
    """The tenant a listing covers: any one (or all, None) for an admin; a tenant key's own,
    whatever it asked for, refusing outright to read another tenant's. A tenant that never
    was is not found (404): a list of its stores, keys or entries would say, empty, that it
    has none. A deleted one's are listed: its history stays."""
    principal = caller.principal
    if not principal.is_admin:
        if requested not in (None, principal.tenant_id):
            raise forbidden("a tenant key reads only its own tenant's data")
        return principal.tenant_id
    if requested not in (None, principal.tenant_id):
        async with db.session() as session:
            if await session.get(Tenant, requested) is None:
                raise not_found(f"tenant {requested}")
    return requested


async def tenant_seen_by(db: Database, principal: Principal, tenant_id: uuid.UUID) -> Tenant:
    """Any tenant to an admin; to a tenant's key its own alone: another's does not exist for
    it, as another's store does not."""
    if not principal.is_admin and tenant_id != principal.tenant_id:
        raise not_found(f"tenant {tenant_id}")
    return await get_tenant(db, tenant_id)


async def update_tenant(
    outbox: Outbox, caller: Caller, tenant_id: uuid.UUID, body: TenantUpdate
) -> Tenant:
    """Rename a tenant, change its store limit, suspend or resume it: what ``body`` gives.
    What is as it was already changes nothing, and is not audited. A suspended tenant's keys
    are refused at once (woostore_shared.access: its sessions with them, its event streams
    as the notifiers hear of it); its stores are not touched."""
    asked = body.model_dump(include=body.model_fields_set)
    if tenant_id == DEFAULT_TENANT_ID and "name" in asked:
        raise default_tenant_kept("renamed")
    if asked.get("suspended"):
        if tenant_id == DEFAULT_TENANT_ID:
            raise default_tenant_kept("suspended")
        if tenant_id == caller.principal.tenant_id:
            raise tenant_not_suspendable(
                "a key cannot suspend its own tenant: use an admin key of another tenant"
            )
    try:
        async with UnitOfWork.begin(outbox) as uow:
            tenant = await live_tenant(uow.session, tenant_id, for_update=True)
            was = {"name": tenant.name, "store_limit": tenant.store_limit,
                   "suspended": tenant.suspended_at is not None}  # fmt: skip
            changes = {field: v for field, v in asked.items() if was[field] != v}
            if not changes:
                return tenant
            renamed = {"was_named": tenant.name} if "name" in changes else {}
            for field, value in changes.items():
                if field == "suspended":
                    tenant.suspended_at = utcnow() if value else None
                    if value:
                        uow.withdraw_access("tenant.suspend")
                else:
                    setattr(tenant, field, value)
            uow.session.add(tenant)
            await uow.session.flush()  # a taken name fails here
            record(
                uow, caller, "tenant.update", f"tenant/{tenant.id}", tenant.id,
                **changes, **renamed,
            )  # fmt: skip
    except IntegrityError as error:
        if broken_constraint(error) != TENANT_NAMES_UNIQUE or body.name is None:
            raise
        raise tenant_exists(body.name) from error
    return tenant


async def delete_tenant(outbox: Outbox, caller: Caller, tenant_id: uuid.UUID) -> Tenant:
    """Offboard a tenant whose stores are all deleted: its keys are revoked at once (its
    sessions and event streams end with them), its name is free for a new tenant, and its
    row stays, marked deleted, for the audit log. A store being made for it as this commits
    fails at its own commit (``ck_tenants_deleted_hold_no_stores``, migration 0026)."""
    if tenant_id == DEFAULT_TENANT_ID:
        raise default_tenant_kept("deleted")
    if tenant_id == caller.principal.tenant_id:
        raise tenant_not_deletable(
            "a key cannot delete its own tenant: use an admin key of another tenant"
        )
    async with UnitOfWork.begin(outbox) as uow:
        # Locked: a key made for it, or a cap changed, meanwhile waits and then finds it gone.
        tenant = await live_tenant(uow.session, tenant_id, for_update=True)
        stores_left, being_deleted = (
            await uow.session.exec(
                select(
                    func.count(),
                    func.count().filter(col(Store.status) == StoreStatus.DELETING),
                )
                .select_from(Store)
                .where(col(Store.tenant_id) == tenant_id, col(Store.status) != StoreStatus.DELETED)
            )
        ).one()
        if stores_left:
            left = f"tenant {tenant.name!r} still has {how_many(stores_left, 'store')}"
            raise tenant_not_deletable(
                f"{left}, all being deleted; try again once they are gone"
                if being_deleted == stores_left
                else f"{left}, counting those being deleted until they are gone; delete them first"
            )
        tenant.deleted_at = utcnow()
        uow.session.add(tenant)
        revoked = await uow.session.exec(
            update(ApiKey)
            .where(col(ApiKey.tenant_id) == tenant_id, col(ApiKey.revoked_at).is_(None))
            .values(revoked_at=tenant.deleted_at)
        )
        uow.withdraw_access("tenant.delete")
        record(
            uow, caller, "tenant.delete", f"tenant/{tenant.id}", tenant.id,
            name=tenant.name, keys_revoked=revoked.rowcount,
        )  # fmt: skip
    return tenant


async def create_key(
    outbox: Outbox, caller: Caller, body: KeyCreate, settings: Settings
) -> tuple[ApiKey, NewKey]:
    principal = caller.principal
    tenant_id = body.tenant_id or principal.tenant_id
    if not principal.is_admin and (body.role is Role.ADMIN or tenant_id != principal.tenant_id):
        raise forbidden("a tenant key can only create tenant keys for its own tenant")
    issued = new_key()
    async with UnitOfWork.begin(outbox) as uow:
        # Locking the tenant's row makes concurrent creations for it count in turn, on any
        # API replica, until this transaction ends (and waits out the tenant's deletion).
        await live_tenant(uow.session, tenant_id, for_update=True)
        await _check_key_limit(uow.session, tenant_id, settings.tenant_key_limit)
        key = ApiKey(
            tenant_id=tenant_id,
            name=body.name,
            role=body.role,
            prefix=issued.prefix,
            secret_sha256=issued.secret_sha256,
            created_by=principal.actor,
        )
        uow.session.add(key)
        record(
            uow, caller, "key.create", f"key/{key.prefix}", tenant_id,
            name=key.name, role=key.role.value,
        )  # fmt: skip
    return key, issued


def _managed_by(principal: Principal) -> SelectOfScalar[ApiKey]:
    """The keys a principal may list and revoke: an admin, every key; a tenant key, its own
    tenant's tenant keys. An admin key stays out of a tenant's reach, as if it did not exist."""
    query = select(ApiKey)
    if not principal.is_admin:
        query = query.where(
            col(ApiKey.tenant_id) == principal.tenant_id, col(ApiKey.role) == Role.TENANT
        )
    return query


async def _check_key_limit(session: AsyncSession, tenant_id: uuid.UUID, allowed: int) -> None:
    """Refuse a key past the tenant's cap: per-key limits mean nothing if keys are free."""
    live = (
        await session.exec(
            select(func.count())
            .select_from(ApiKey)
            .where(col(ApiKey.tenant_id) == tenant_id, col(ApiKey.revoked_at).is_(None))
        )
    ).one()
    if live >= allowed:
        raise cap_reached(
            "tenant-keys",
            allowed,
            f"this tenant has its maximum of {how_many(allowed, 'key')}; revoke one first",
        )


async def list_keys(
    db: Database, principal: Principal, tenant_id: uuid.UUID | None
) -> list[ApiKey]:
    query = _managed_by(principal).order_by(col(ApiKey.created_at))
    if tenant_id is not None:
        query = query.where(col(ApiKey.tenant_id) == tenant_id)
    async with db.session() as session:
        return list(await session.exec(query))


async def revoke_key(outbox: Outbox, caller: Caller, key_id: uuid.UUID) -> ApiKey:
    async with UnitOfWork.begin(outbox) as uow:
        query = _managed_by(caller.principal).where(col(ApiKey.id) == key_id).with_for_update()
        key = (await uow.session.exec(query)).first()
        if key is None:
            raise not_found(f"key {key_id}")
        if key.revoked_at is None:  # revoking twice is fine: one revocation
            key.revoked_at = utcnow()
            uow.session.add(key)
            uow.withdraw_access("key.revoke")
            record(uow, caller, "key.revoke", f"key/{key.prefix}", key.tenant_id)
    return key


async def sign_out(outbox: Outbox, caller: Caller, session: OpenedTicket) -> None:
    """End ``session`` for good: spent, as a used ticket is, so that a copy of its cookie
    (kept by a proxy, a shared machine, malware) opens nothing for the hours it had left."""
    async with UnitOfWork.begin(outbox) as uow:
        async with uow.plain() as connection:
            first = await spend(connection, [session])
        if first:  # else ended meanwhile: audited by that end
            record(
                uow, caller, "session.delete", f"key/{caller.principal.actor}",
                caller.principal.tenant_id,
            )  # fmt: skip


async def record_sign_in(outbox: Outbox, caller: Caller) -> None:
    async with UnitOfWork.begin(outbox) as uow:
        record(
            uow, caller, "session.create", f"key/{caller.principal.actor}",
            caller.principal.tenant_id,
        )  # fmt: skip
