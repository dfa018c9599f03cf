"""/api/v1/stores: create, list, read, delete, and the owner's credentials; how many stores are
in each status and how long their steps take."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status
from pydantic import BeforeValidator, WithJsonSchema

from woostore_api.access.service import tenant_scope
from woostore_api.auth import CurrentCaller
from woostore_api.deps import CipherDep, DatabaseDep, OutboxDep, SettingsDep, StepTimesDep
from woostore_api.edge import no_store, not_for_head
from woostore_api.problems import problem_responses
from woostore_api.stores import service
from woostore_api.stores.schemas import (
    NAME_MAX,
    STORES_PATH,
    BackupList,
    BackupOut,
    Credentials,
    EventOut,
    RestoreRequest,
    SettingsChange,
    StepTimes,
    StoreCounts,
    StoreCreate,
    StoreDetail,
    StoreList,
    StoreOut,
)
from woostore_shared.models import StoreStatus

router = APIRouter(prefix="/stores", tags=["stores"])


# What an owner's store can be: every status but the warm pool's, whose stores are no one's
# until claimed.
OWNERS_STATUSES = tuple(s.value for s in StoreStatus if s is not StoreStatus.POOLED)


def _an_owners(status: object) -> object:
    """A status an owner's store can have. Asking for the warm pool's was answered by an empty
    page, as if the pool were empty; and an unknown status was told the valid ones, `pooled`
    among them."""
    if status == StoreStatus.POOLED:
        raise ValueError(
            "no owner's store is pooled: the warm pool's stores are no one's until claimed,"
            " and the woostore_pool_stores metric counts them"
        )
    if status not in OWNERS_STATUSES:
        *others, last = (f"'{s}'" for s in OWNERS_STATUSES)
        raise ValueError(f"Input should be {', '.join(others)} or {last}")  # as pydantic says
    return status


OwnersStatus = Annotated[
    StoreStatus,
    BeforeValidator(_an_owners),
    WithJsonSchema({"type": "string", "enum": list(OWNERS_STATUSES)}),
]


# A store's events GET /stores/{id} shows unless asked for others: its making (11 steps, each
# a progress event) and a few dozen changes or backups. A store kept for years has thousands.
EVENTS_SHOWN = 100
EVENTS_MOST = 1000


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StoreOut,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 429, 503),
)
async def create_store(
    body: StoreCreate,
    response: Response,
    caller: CurrentCaller,
    outbox: OutboxDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="Retry-safe creation: the same key and body give the same store.",
        ),
    ] = None,
) -> StoreOut:
    """Queue a new store in the caller's tenant. It is provisioned in the background; follow
    it on the event stream. Past a rate (the key's or the tenant's) or the queue's length
    the answer is 429 with ``Retry-After``; at the tenant's or the platform's store cap it
    is 409 (``limit-reached``, naming the cap), which only deleting a store frees. A copy
    (``from_backup``) of a backup that is not complete, or whose store is being deleted, is
    refused with 409."""
    created = await service.create_store(
        outbox, caller, body, settings, idempotency_key=idempotency_key
    )
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    made = StoreOut.of(created.store, created.surroundings)
    response.headers["Location"] = made.links["self"]  # where to follow it
    return made


@router.get("", response_model=StoreList, responses=problem_responses(400, 401, 403, 404, 422))
async def list_stores(
    db: DatabaseDep,
    caller: CurrentCaller,
    status: Annotated[
        list[OwnersStatus] | None,
        Query(
            description="Only stores in these statuses (repeat it for several). Without it,"
            " every status but `deleted`: ask for `deleted` to list deleted stores. `pooled`"
            " is refused: the warm pool's stores are no one's (see the woostore_pool_stores"
            " metric)."
        ),
    ] = None,
    tenant_id: Annotated[
        uuid.UUID | None,
        Query(
            description="Admins: one tenant's stores (default: all); a tenant that never was: 404.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=NAME_MAX,
            pattern=r"^[^\x00]*$",  # PostgreSQL text holds no NUL: a 422, not a 500
            description="Only stores whose name holds this, any case.",
        ),
    ] = None,
) -> StoreList:
    """The tenant's stores (an admin's: every tenant's), newest first, a page at a time;
    deleted ones only when asked for by status."""
    scope = await tenant_scope(db, caller, tenant_id)
    stores, next_cursor = await service.list_stores(db, scope, status, limit, cursor, q)
    around = await service.surroundings(db, stores)
    return StoreList(items=[StoreOut.of(s, around) for s in stores], next_cursor=next_cursor)


@router.get("/counts", response_model=StoreCounts, responses=problem_responses(401, 403, 404, 422))
async def count_stores(
    db: DatabaseDep,
    caller: CurrentCaller,
    tenant_id: Annotated[
        uuid.UUID | None,
        Query(
            description="Admins: one tenant's stores (default: all); a tenant that never was: 404.",
        ),
    ] = None,
) -> StoreCounts:
    """How many stores the tenant (an admin: every tenant, or the one asked for) has in each
    status: what a dashboard shows without reading every store."""
    by_status = await service.count_stores(db, await tenant_scope(db, caller, tenant_id))
    total = sum(n for status, n in by_status.items() if status is not StoreStatus.DELETED)
    return StoreCounts(total=total, by_status=by_status)


@router.get("/step-times", response_model=StepTimes, responses=problem_responses(401, 422))
async def read_step_times(step_times: StepTimesDep, _: CurrentCaller) -> StepTimes:
    """How long each step of each phase (provisioning, copying a backup, personalising,
    changing, removing a store) took lately: the median of its latest runs over every store,
    which a dashboard adds up to estimate the time a store's remaining steps take.
    Platform-wide figures that name no store and no tenant, so every caller reads the same, a
    tenant key too; measured again at most every 5 seconds."""
    return await step_times.get()


@router.get("/{store_id}", response_model=StoreDetail, responses=problem_responses(401, 404, 422))
async def get_store(
    store_id: uuid.UUID,
    db: DatabaseDep,
    caller: CurrentCaller,
    events: Annotated[
        int,
        Query(
            ge=0,
            le=EVENTS_MOST,
            description="How many of the store's latest events to include, oldest first (0:"
            " none). A store kept for years has thousands; `earlier_events` says whether"
            " some were left out.",
        ),
    ] = EVENTS_SHOWN,
) -> StoreDetail:
    """The store, with its latest events: its history, newest last."""
    store = await service.get_store(db, store_id, caller.principal)
    shown, earlier = await service.store_events(db, store, events)
    around = await service.surroundings(db, [store])
    return StoreDetail(
        **StoreOut.of(store, around).model_dump(),
        events=[
            EventOut(
                id=e.id,
                type=e.type,
                time=e.time,
                data=e.envelope["data"],
                sequence=e.stream_sequence,
            )
            for e in shown
        ],
        earlier_events=earlier,
    )


@router.delete(
    "/{store_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StoreOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_store(store_id: uuid.UUID, outbox: OutboxDep, caller: CurrentCaller) -> StoreOut:
    """Delete the store and everything it owns (namespace, volumes, release, backups). A
    queued or provisioning store is cancelled. A store being upgraded, rolled back or
    restored is deleted once that work ends; one being backed up, once its backup is
    stopped; a ready or failed one a new store is being made from (the copy reads its
    backup), once that store is made. It keeps its status meanwhile, with
    ``delete_requested_at`` set. Asked again once asked for, it changes nothing and answers
    the same."""
    store = await service.request_deletion(outbox, caller, store_id)
    return StoreOut.of(store, await service.surroundings(outbox.db, [store]))


@router.post(
    "/{store_id}/upgrade",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StoreOut,
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
async def upgrade_store(
    store_id: uuid.UUID, outbox: OutboxDep, settings: SettingsDep, caller: CurrentCaller
) -> StoreOut:
    """Upgrade a ready store's Helm release to the chart the platform ships now. The store is
    `updating` meanwhile and ends `ready` either way; a failed upgrade is rolled back by helm
    and announced as `change_failed` with the reason. Past the tenant's change rate the answer
    is 429 with ``Retry-After``."""
    store = await service.request_change(outbox, caller, store_id, "upgrade", settings)
    return StoreOut.of(store, await service.surroundings(outbox.db, [store]))


@router.post(
    "/{store_id}/rollback",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StoreOut,
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
async def rollback_store(
    store_id: uuid.UUID, outbox: OutboxDep, settings: SettingsDep, caller: CurrentCaller
) -> StoreOut:
    """Roll a ready store's Helm release back to the revision before the deployed one (after
    an upgrade: the chart it had before). Rolling back twice returns to where it started.
    Past the tenant's change rate the answer is 429 with ``Retry-After``."""
    store = await service.request_change(outbox, caller, store_id, "rollback", settings)
    return StoreOut.of(store, await service.surroundings(outbox.db, [store]))


@router.post(
    "/{store_id}/settings",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StoreOut,
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
async def change_store_settings(
    store_id: uuid.UUID,
    chosen: SettingsChange,
    outbox: OutboxDep,
    settings: SettingsDep,
    caller: CurrentCaller,
) -> StoreOut:
    """Give a ready store other settings (currency, country and state, language, admin
    email); each one left out stays as it is, and a state named alone is one of the store's
    country's (422 if not). Like an upgrade, it backs the store up first,
    then sets them in WooCommerce and WordPress and places a test order: the store is
    `updating` meanwhile, its `settings` the new ones, and it ends `ready` either way. A
    change that fails (`change_failed`, with the reason) puts the store's `settings` back,
    and in the shop those it set (should that fail too, the reason says so). Only those named
    are set in the shop, even as the store has them (the shop may hold others, changed in
    WooCommerce); those left out stay as the shop has them. Past the tenant's change rate:
    429 with ``Retry-After``."""
    store = await service.request_change(outbox, caller, store_id, "settings", settings, chosen)
    return StoreOut.of(store, await service.surroundings(outbox.db, [store]))


@router.post(
    "/{store_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StoreOut,
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
async def retry_store(
    store_id: uuid.UUID, outbox: OutboxDep, settings: SettingsDep, caller: CurrentCaller
) -> StoreOut:
    """Make a failed store again from scratch, under the same id, name and address: it is
    `queued` again, as a new store is. Only once its clean-up has finished (409 before, with
    ``Retry-After``). It counts as a create: the create rates and the store caps apply. A
    copy is made again from the same backup: refused (409) once that is gone."""
    store = await service.retry_store(outbox, caller, store_id, settings)
    return StoreOut.of(store, await service.surroundings(outbox.db, [store]))


@router.post(
    "/{store_id}/backups",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BackupOut,
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
async def create_backup(
    store_id: uuid.UUID,
    outbox: OutboxDep,
    settings: SettingsDep,
    caller: CurrentCaller,
    response: Response,
) -> BackupOut:
    """Back a ready store up: its database, dumped in one transaction while the store keeps
    serving, and its uploads, compressed and encrypted in the store's own repository. The
    store is `backing_up` meanwhile and ends `ready` either way; the backup is `complete` once
    every part has been read back and its manifest stored. It counts against the tenant's
    change rate (429 with ``Retry-After`` past it)."""
    backup = await service.request_backup(outbox, caller, store_id, settings)
    response.headers["Location"] = f"{STORES_PATH}/{store_id}/backups/{backup.id}"
    return BackupOut.model_validate(backup)


@router.post(
    "/{store_id}/restore",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StoreOut,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 429),
)
async def restore_store(
    store_id: uuid.UUID,
    body: RestoreRequest,
    outbox: OutboxDep,
    settings: SettingsDep,
    caller: CurrentCaller,
) -> StoreOut:
    """Return a ready store to one of its complete backups: every part is checked against
    the backup's manifest first (one that does not match changes nothing), the store is
    backed up as it is (its safety backup, listed with its backups), then its database and
    uploads are replaced and a test order is placed. The store is `restoring` meanwhile and
    ends `ready` either way, announced as `restored` or `restore_failed`. A backup of
    another store is not found (404); one that is not complete is refused (409)."""
    store = await service.request_restore(outbox, caller, store_id, body.backup_id, settings)
    return StoreOut.of(store, await service.surroundings(outbox.db, [store]))


@router.get(
    "/{store_id}/backups",
    response_model=BackupList,
    responses=problem_responses(401, 404, 422),
)
async def list_backups(store_id: uuid.UUID, outbox: OutboxDep, caller: CurrentCaller) -> BackupList:
    """The store's backups, newest first: complete ones, and those under way, failed,
    damaged or being deleted."""
    backups = await service.list_backups(outbox, caller, store_id)
    return BackupList(items=[BackupOut.model_validate(backup) for backup in backups])


@router.get(
    "/{store_id}/backups/{backup_id}",
    response_model=BackupOut,
    responses=problem_responses(401, 404, 422),
)
async def get_backup(
    store_id: uuid.UUID, backup_id: uuid.UUID, outbox: OutboxDep, caller: CurrentCaller
) -> BackupOut:
    return BackupOut.model_validate(await service.read_backup(outbox, caller, store_id, backup_id))


@router.delete(
    "/{store_id}/backups/{backup_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BackupOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_backup(
    store_id: uuid.UUID, backup_id: uuid.UUID, outbox: OutboxDep, caller: CurrentCaller
) -> BackupOut:
    """Delete one of the store's backups: from now on it is not restorable (`deleting`, and
    listed so until its data is gone), and its data is removed from the store's repository as
    soon as the store is not busy (`deleted`). Announced as `backup_deleted`; asking again,
    before or after its data is gone, changes nothing and answers the backup as it is. One
    being made, restored from, or copied to a new store, is refused (409): it can be deleted
    once that ends. The operator's retention rules delete old backups the same way."""
    backup = await service.delete_backup(outbox, caller, store_id, backup_id)
    return BackupOut.model_validate(backup)


@router.get(
    "/{store_id}/credentials",
    response_model=Credentials,
    responses=problem_responses(401, 404, 409, 422),
    dependencies=[Depends(no_store), Depends(not_for_head)],
)
async def get_credentials(
    store_id: uuid.UUID, outbox: OutboxDep, cipher: CipherDep, caller: CurrentCaller
) -> Credentials:
    """The store's WordPress admin login, for its owner: once it is ready, and while an
    upgrade, a rollback, a backup or a restore runs on it (409 otherwise). Never part of
    events or logs; each reading is in the audit log."""
    encrypted = await service.read_credentials(outbox, caller, store_id)
    return Credentials(username="admin", password=cipher.decrypt(encrypted))
