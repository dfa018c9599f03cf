"""Store use cases: what the API does with the database and the event stream."""

from __future__ import annotations

import base64
import re
import secrets
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, get_args

from prometheus_client import Counter
from sqlalchemy import ARRAY, ColumnElement, DateTime, Uuid, any_, bindparam, func, tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Compiled
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from woostore_api.access.service import live_tenant
from woostore_api.audit.service import record
from woostore_api.auth import Caller
from woostore_api.problems import (
    addresses_exhausted,
    copied_across_tenants,
    forbidden,
    idempotency_key_reused,
    invalid_cursor,
    no_credentials,
    not_found,
)
from woostore_api.stores import quotas
from woostore_api.stores.schemas import (
    PhaseTimes,
    SettingsChange,
    StepTime,
    StepTimes,
    StoreCreate,
    Surroundings,
)
from woostore_shared import lifecycle
from woostore_shared.access import Principal
from woostore_shared.db import Database, broken_constraint
from woostore_shared.events import Change, Phase, StoreRef
from woostore_shared.models import (
    DELETED_TENANTS_HOLD_NO_STORES,
    BackupDeletion,
    BackupStatus,
    BackupTrigger,
    IdempotencyKey,
    Store,
    StoreBackup,
    StoreChange,
    StoreEvent,
    StoreStatus,
    StoreStep,
)
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import sha256_hex
from woostore_shared.settings import ClusterMode, Settings
from woostore_shared.store_settings import StoreSettings
from woostore_shared.transitions import credentials_readable
from woostore_shared.unit_of_work import UnitOfWork

SLUG_BASE_MAX = 30
STORES_REQUESTED = Counter("woostore_stores_requested_total", "Stores requested through the API")
POOL_CLAIMS = Counter(
    "woostore_pool_claims_total",
    "Creates that took a store from the warm pool, or missed",
    ["result"],
)
_SLUG_ATTEMPTS = 5
STEP_TIMES_WINDOW = 50  # each step's latest runs its median is of
# Every dashboard asks, and the figures move slowly; short enough that a new platform's first
# stores give estimates to the next at once.
STEP_TIMES_REMEMBERED_SECONDS = 5.0


def slugify(name: str) -> str:
    """A DNS label from any name: ASCII-folded, lower case, hyphens, never empty."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    base = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:SLUG_BASE_MAX].strip("-")
    return base or "store"


@dataclass(frozen=True)
class Created:
    """A store asked for, with what its resource shows beyond its row."""

    store: Store
    surroundings: Surroundings
    replayed: bool = False  # made by an earlier request with the same Idempotency-Key


async def create_store(
    outbox: Outbox,
    caller: Caller,
    request: StoreCreate,
    settings: Settings,
    *,
    idempotency_key: str | None = None,
) -> Created:
    """Queue a store in the caller's tenant (an admin's: any tenant it names)."""
    tenant_id = await _tenant_for(outbox.db, caller.principal, request.tenant_id)
    # Fields left out do not count: a retry from before `settings` existed still matches.
    fingerprint = sha256_hex(request.model_dump_json(exclude_none=True))
    if idempotency_key is not None:
        earlier = await _store_for_key(outbox.db, tenant_id, idempotency_key, fingerprint)
        if earlier is not None:
            return await _replayed(outbox.db, earlier)
    base = slugify(request.name)
    cold = not settings.warm_pool_size and request.from_backup is None
    for _ in range(_SLUG_ATTEMPTS):
        slug = f"{base}-{secrets.token_hex(3)}"  # unique platform-wide; the suffix avoids guessing
        try:
            async with quotas.creating(outbox, caller.principal, settings, cold=cold) as uow:
                store = await _claim_or_request(
                    uow, tenant_id, slug, request, settings, admin=caller.principal.is_admin
                )
                if idempotency_key is not None:  # a concurrent request with it fails the commit
                    uow.insert(
                        IdempotencyKey(
                            tenant_id=tenant_id,
                            key=idempotency_key,
                            request_sha256=fingerprint,
                            store_id=store.id,
                        )
                    )
                copied = {"from_backup": str(store.from_backup_id)} if store.from_backup_id else {}
                record(
                    uow, caller, "store.create", f"store/{store.id}", tenant_id,
                    name=store.name, slug=store.slug, **copied,
                )  # fmt: skip
            STORES_REQUESTED.inc()  # counted once made, whatever happens to the answer
            if settings.warm_pool_size and request.from_backup is None:
                POOL_CLAIMS.labels("claimed" if store.origin == "pool" else "missed").inc()
            # A new store has no change yet, only perhaps a place in the queue (and a copy,
            # its source). Read after the commit, so that stores queued ahead of it and
            # committed meanwhile count.
            queue = await _queue_places(outbox.db, [store])
            copied_from = {}
            if store.from_backup_id is not None:  # not a query more for every other create
                async with outbox.db.session() as session:
                    copied_from = await _copied_from(session, [store])
            return Created(store, Surroundings(queue=queue, copied_from=copied_from))
        except IntegrityError as error:
            if broken_constraint(error) == DELETED_TENANTS_HOLD_NO_STORES:  # deleted meanwhile
                raise not_found(f"tenant {tenant_id}") from error
            if idempotency_key is not None:
                earlier = await _store_for_key(outbox.db, tenant_id, idempotency_key, fingerprint)
                if earlier is not None:
                    return await _replayed(outbox.db, earlier)
    raise addresses_exhausted()


async def _replayed(db: Database, store: Store) -> Created:
    """An earlier request's store, as it is now: it may have changed since."""
    return Created(store, await surroundings(db, [store]), replayed=True)


async def _tenant_for(db: Database, principal: Principal, named: uuid.UUID | None) -> uuid.UUID:
    if named is None or named == principal.tenant_id:
        return principal.tenant_id
    if not principal.is_admin:
        raise forbidden("a tenant key makes stores in its own tenant only")
    async with db.session() as session:
        await live_tenant(session, named)
    return named


async def _claim_or_request(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    slug: str,
    request: StoreCreate,
    settings: Settings,
    *,
    admin: bool,
) -> Store:
    """A store from the warm pool when one fits, else a new one queued (within the platform's
    caps); a copy of a backup is always a new one. A taken slug fails the unit either way."""
    simulated = settings.cluster_mode is ClusterMode.SIMULATED
    from_backup = None
    if request.from_backup is not None:  # a copy: never from the pool, its source's settings
        from_backup, source = await _backup_to_copy(
            uow, tenant_id, request.from_backup, admin=admin
        )
        # The backup's settings: what the copy's WordPress options hold (the source's own,
        # for a backup from before they were recorded).
        chosen = StoreSettings.model_validate(from_backup.settings or source.settings)
    else:
        chosen = settings.store_defaults.with_choices(request.settings)
    if settings.warm_pool_size and from_backup is None:
        claimed = await lifecycle.claim(
            uow,
            tenant_id=tenant_id,
            name=request.name,
            slug=slug,
            type=request.type,
            simulated=simulated,
            chart_version=settings.store_chart_version,
            base_domain=settings.base_domain,
            settings=chosen,
        )
        if claimed is not None:
            return claimed
    return await lifecycle.request(
        uow,
        tenant_id=tenant_id,
        name=request.name,
        slug=slug,
        type=request.type,
        simulated=simulated,
        settings=chosen,
        from_backup=from_backup,
    )


async def _backup_to_copy(
    uow: UnitOfWork, tenant_id: uuid.UUID, backup_id: uuid.UUID, *, admin: bool
) -> tuple[StoreBackup, Store]:
    """A backup a new store of ``tenant_id`` may be made from, and its store: one of the
    tenant's own. To a tenant another's does not exist, as for reading it; an admin, who
    sees every tenant's, is told whose it is."""
    backup = await uow.session.get(StoreBackup, backup_id)
    source = await uow.session.get(Store, backup.store_id) if backup else None
    if backup is None or source is None:
        raise not_found(f"backup {backup_id}")
    if source.tenant_id != tenant_id:
        if admin and source.tenant_id is not None:
            raise copied_across_tenants(backup_id, source.tenant_id)
        raise not_found(f"backup {backup_id}")
    return backup, source


async def _store_for_key(
    db: Database, tenant_id: uuid.UUID, key: str, fingerprint: str
) -> Store | None:
    async with db.session() as session:
        found = await session.get(IdempotencyKey, (tenant_id, key))
        if found is None:
            return None
        if found.request_sha256 != fingerprint:
            raise idempotency_key_reused()
        return await session.get(Store, found.store_id)


def encode_cursor(store: Store) -> str:
    """Where the next page starts: after this store, in newest-first order. Opaque to clients."""
    return base64.urlsafe_b64encode(f"{store.created_at.isoformat()}|{store.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created_at, store_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created_at), uuid.UUID(store_id)
    except ValueError as error:
        raise invalid_cursor() from error


def _owned_by(tenant_id: uuid.UUID | None) -> ColumnElement[bool]:
    """One tenant's stores (None: every tenant's); the warm pool's are nobody's."""
    if tenant_id is not None:
        return col(Store.tenant_id) == tenant_id
    return col(Store.tenant_id).is_not(None)


def _named_like(text: str) -> ColumnElement[bool]:
    """Names holding ``text``, whatever the case; ``%`` and ``_`` in it match themselves."""
    escaped = re.sub(r"([\\%_])", r"\\\1", text)
    return col(Store.name).ilike(f"%{escaped}%", escape="\\")


async def list_stores(
    db: Database,
    tenant_id: uuid.UUID | None,
    statuses: list[StoreStatus] | None,
    limit: int,
    cursor: str | None = None,
    name: str | None = None,
) -> tuple[list[Store], str | None]:
    """A page of one tenant's stores (None: every tenant's), newest first, and the cursor of
    the next page; only those in ``statuses`` (none given: every status but deleted) and whose
    name holds ``name``, if given."""
    query = (
        select(Store)
        .where(_owned_by(tenant_id))
        .order_by(col(Store.created_at).desc(), col(Store.id).desc())
        .limit(limit + 1)  # one more tells whether a next page exists
    )
    if name:
        query = query.where(_named_like(name))
    if statuses:
        query = query.where(col(Store.status).in_(statuses))
    else:  # a deleted store is kept for its history, not to crowd every list
        query = query.where(col(Store.status) != StoreStatus.DELETED)
    if cursor is not None:
        created_at, store_id = _decode_cursor(cursor)
        query = query.where(tuple_(col(Store.created_at), col(Store.id)) < (created_at, store_id))
    async with db.session() as session:
        stores = list(await session.exec(query))
    if len(stores) > limit:
        return stores[:limit], encode_cursor(stores[limit - 1])
    return stores, None


async def count_stores(db: Database, tenant_id: uuid.UUID | None) -> dict[StoreStatus, int]:
    """How many of one tenant's stores (None: every tenant's) are in each status."""
    query = (
        select(col(Store.status), func.count())
        .where(_owned_by(tenant_id))
        .group_by(col(Store.status))
    )
    async with db.session() as session:
        return {status: count for status, count in await session.exec(query)}


# The phases this version names. One a newer replica journals (mid-rollout) is left out of the
# figures: this one could not answer with its name.
_KNOWN_PHASES = frozenset(get_args(Phase))


async def step_times(db: Database) -> StepTimes:
    """What each step took lately, platform-wide: the median over its latest
    ``STEP_TIMES_WINDOW`` measured runs, in one query however long the journal is."""
    recency = func.row_number().over(
        partition_by=(col(StoreStep.phase), col(StoreStep.name)),
        order_by=col(StoreStep.completed_at).desc(),
    )
    runs = (
        select(StoreStep, recency.label("recency"))
        .where(col(StoreStep.seconds).is_not(None))  # journalled before steps were measured
        .where(col(StoreStep.phase).in_(_KNOWN_PHASES))
        .subquery()
    )
    latest_position = func.min(runs.c.position).filter(runs.c.recency == 1)
    # select() is typed for four columns at most; the class takes any number.
    query = (
        Select[Phase, str, int, float, int](
            runs.c.phase,
            runs.c.name,
            latest_position,
            func.percentile_cont(0.5).within_group(runs.c.seconds),
            func.count(),
        )
        .where(runs.c.recency <= STEP_TIMES_WINDOW)
        .group_by(runs.c.phase, runs.c.name)
        .order_by(runs.c.phase, latest_position)
    )
    by_phase: dict[Phase, list[StepTime]] = {}
    async with db.session() as session:
        for phase, name, position, median, samples in await session.exec(query):
            by_phase.setdefault(phase, []).append(
                StepTime(
                    name=name,
                    position=position,
                    median_seconds=round(median, 2),
                    samples=samples,
                )
            )
    return StepTimes(
        window=STEP_TIMES_WINDOW,
        phases=[
            PhaseTimes(
                phase=phase,
                steps=steps,
                median_total_seconds=round(sum(step.median_seconds for step in steps), 2),
            )
            for phase, steps in by_phase.items()
        ],
    )


async def surroundings(db: Database, stores: Sequence[Store]) -> Surroundings:
    """What the resources of ``stores`` show beyond their rows: the places of queued stores
    in the one queue all tenants share (1-based, oldest first; a store claimed from the warm
    pool is not in it), each one's last change, and a copy's source."""
    queue = await _queue_places(db, stores)
    async with db.session() as session:
        return Surroundings(
            queue=queue,
            last_changes=await _last_changes(session, stores),
            copied_from=await _copied_from(session, stores),
        )


def _places_in_the_queue() -> Compiled:
    """The places of the queued stores ``ids``, from ``oldest`` to ``newest`` of them (each a
    store's queued_at and id): the count of queue entries before the oldest, plus the row
    numbers from it on, all read from ix_stores_status_queued. As plain SQL for psycopg
    (``Database.standalone``): every create reads its store's, and SQLAlchemy's work on the
    statement cost more than PostgreSQL's."""
    entered = tuple_(col(Store.queued_at), col(Store.id))

    def bound(name: str) -> ColumnElement[Any]:
        return tuple_(
            bindparam(f"{name}_at", type_=DateTime(timezone=True)),
            bindparam(f"{name}_id", type_=Uuid()),
        )

    oldest, newest = bound("oldest"), bound("newest")
    ahead = select(func.count()).where(lifecycle.in_the_cold_queue(), entered < oldest)
    numbered = (
        select(
            col(Store.id),
            func.row_number().over(order_by=(col(Store.queued_at), col(Store.id))).label("n"),
        )
        .where(lifecycle.in_the_cold_queue(), entered.between(oldest, newest))
        .subquery()
    )
    places = select(numbered.c.id, ahead.scalar_subquery() + numbered.c.n).where(
        numbered.c.id == any_(bindparam("ids", type_=ARRAY(Uuid())))
    )
    return places.compile(dialect=_PSYCOPG)


# Built once: every create and every page with a queued store runs it, and building it costs
# the API more than the database's work on it. Its own values (the statuses the queue is of)
# go with those of each run, as the database takes them: an enum's value, not its name.
_PSYCOPG = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
_PLACES_IN_THE_QUEUE = _places_in_the_queue()
# Compiled once, it has no list to expand per run (an IN of values would need one).
assert "POSTCOMPILE" not in _PLACES_IN_THE_QUEUE.string
_QUEUE_FIXED_PARAMS = {
    name: value.value if isinstance(value, Enum) else value
    for name, value in _PLACES_IN_THE_QUEUE.params.items()
    if value is not None
}


async def _queue_places(db: Database, stores: Sequence[Store]) -> dict[uuid.UUID, int]:
    queued = [store for store in stores if lifecycle.waits_in_the_cold_queue(store)]
    if not queued:
        return {}
    oldest = min((store.queued_at, store.id) for store in queued)
    newest = max((store.queued_at, store.id) for store in queued)
    bound = {
        "oldest_at": oldest[0], "oldest_id": oldest[1],
        "newest_at": newest[0], "newest_id": newest[1],
        "ids": [store.id for store in queued],
    }  # fmt: skip
    async with db.standalone() as connection:
        found = await connection.execute(_PLACES_IN_THE_QUEUE.string, _QUEUE_FIXED_PARAMS | bound)
        rows = await found.fetchall()
    return {store_id: int(place) for store_id, place in rows}


async def _last_changes(
    session: AsyncSession, stores: Sequence[Store]
) -> dict[uuid.UUID, StoreChange]:
    latest = (
        select(col(StoreChange.store_id), func.max(StoreChange.requested_at).label("at"))
        .where(col(StoreChange.store_id).in_([store.id for store in stores]))
        .group_by(col(StoreChange.store_id))
        .subquery()
    )
    last = await session.exec(
        select(StoreChange).join(
            latest,
            (col(StoreChange.store_id) == latest.c.store_id)
            & (col(StoreChange.requested_at) == latest.c.at),
        )
    )
    return {change.store_id: change for change in last}


async def _copied_from(session: AsyncSession, stores: Sequence[Store]) -> dict[uuid.UUID, StoreRef]:
    """The store each copy among ``stores`` was made from a backup of (in its own tenant:
    a copy is made from one of its tenant's stores only)."""
    backups = {store.from_backup_id for store in stores if store.from_backup_id is not None}
    if not backups:
        return {}
    found = await session.exec(
        select(StoreBackup.id, Store.id, Store.name)
        .join(Store, col(Store.id) == col(StoreBackup.store_id))
        .where(col(StoreBackup.id).in_(backups))
    )
    sources = {backup: StoreRef(id=store, name=name) for backup, store, name in found}
    return {
        store.id: sources[store.from_backup_id]
        for store in stores
        if store.from_backup_id in sources
    }


async def get_store(db: Database, store_id: uuid.UUID, principal: Principal) -> Store:
    """The store, if the principal may see it; another tenant's store does not exist for it."""
    async with db.session() as session:
        store = await session.get(Store, store_id)
    if store is None or not principal.sees(store.tenant_id):
        raise not_found(f"store {store_id}")
    return store


async def read_credentials(outbox: Outbox, caller: Caller, store_id: uuid.UUID) -> str:
    """The store's encrypted admin password, once it is ready; the reading is audited."""
    async with UnitOfWork.begin(outbox) as uow:
        store = await uow.session.get(Store, store_id)
        if store is None or not caller.principal.sees(store.tenant_id):
            raise not_found(f"store {store_id}")
        # The same rule gives the store resource its `credentials` action.
        if not credentials_readable(store.status, store.admin_password_encrypted is not None):
            raise no_credentials(store.status, store.admin_password_encrypted is not None)
        encrypted = store.admin_password_encrypted
        assert encrypted is not None  # credentials_readable checked it
        record(uow, caller, "store.credentials.read", f"store/{store.id}", store.owner)
    return encrypted


async def store_events(db: Database, store: Store, latest: int) -> tuple[list[StoreEvent], bool]:
    """The ``latest`` of the store's events since its owner asked for it, oldest first, and
    whether it has earlier ones. A store claimed from the warm pool has a history from before
    (its events were nobody's), which is not shown."""
    async with db.session() as session:
        rows = list(
            await session.exec(
                select(StoreEvent)
                .where(col(StoreEvent.store_id) == store.id)
                .where(col(StoreEvent.time) >= store.created_at)
                .order_by(col(StoreEvent.time).desc(), col(StoreEvent.id).desc())
                .limit(latest + 1)  # one more tells whether earlier ones exist
            )
        )
    return rows[:latest][::-1], len(rows) > latest


async def request_change(
    outbox: Outbox,
    caller: Caller,
    store_id: uuid.UUID,
    change: Change,
    settings: Settings,
    chosen: SettingsChange | None = None,
) -> Store:
    """Ask for an upgrade, a rollback or a settings change (to the settings ``chosen``) of
    a ready store, within the tenant's change rate."""
    async with quotas.changing(outbox, caller.principal, settings) as uow:
        await _visible_store(uow, caller, store_id)
        store = await lifecycle.start_change(uow, store_id, change, chosen)
        record(uow, caller, f"store.{change}", f"store/{store.id}", store.owner, **_asked(chosen))
    return store


def _asked(chosen: SettingsChange | None) -> dict[str, Any]:
    """What a settings change asked for, as the audit log keeps it: an admin's new email
    address said to have changed (or to be the default again), not written (the store's
    readers see it in the API)."""
    asked = chosen.chosen() if chosen else {}
    if "admin_email" in asked:
        asked["admin_email"] = "changed" if asked["admin_email"] else "default"
    return asked


async def request_backup(
    outbox: Outbox, caller: Caller, store_id: uuid.UUID, settings: Settings
) -> StoreBackup:
    """Ask for a backup of a ready store, within the tenant's change rate."""
    async with quotas.changing(outbox, caller.principal, settings) as uow:
        await _visible_store(uow, caller, store_id)
        backup = await lifecycle.start_backup(uow, store_id, BackupTrigger.REQUESTED)
        store = await uow.session.get(Store, store_id)
        assert store is not None  # start_backup locked it
        record(
            uow, caller, "store.backup", f"store/{store.id}", store.owner,
            backup_id=str(backup.id),
        )  # fmt: skip
    return backup


async def request_restore(
    outbox: Outbox, caller: Caller, store_id: uuid.UUID, backup_id: uuid.UUID, settings: Settings
) -> Store:
    """Ask to return a ready store to one of its complete backups, within the change rate."""
    async with quotas.changing(outbox, caller.principal, settings) as uow:
        await _visible_store(uow, caller, store_id)
        store = await lifecycle.start_restore(uow, store_id, backup_id)
        record(
            uow, caller, "store.restore", f"store/{store.id}", store.owner,
            backup_id=str(backup_id),
        )  # fmt: skip
    return store


async def delete_backup(
    outbox: Outbox, caller: Caller, store_id: uuid.UUID, backup_id: uuid.UUID
) -> StoreBackup:
    """Delete one of a store's backups (not one being made or restored from)."""
    async with UnitOfWork.begin(outbox) as uow:
        await _visible_store(uow, caller, store_id)
        backup, deleted = await lifecycle.delete_backup(
            uow, store_id, backup_id, BackupDeletion.REQUESTED
        )
        store = await uow.session.get(Store, store_id)
        assert store is not None  # delete_backup locked it
        if deleted:  # asked again (its answer lost, say): nothing changed, nothing to audit
            record(
                uow, caller, "store.delete_backup", f"store/{store.id}", store.owner,
                backup_id=str(backup_id),
            )  # fmt: skip
    return backup


async def list_backups(outbox: Outbox, caller: Caller, store_id: uuid.UUID) -> list[StoreBackup]:
    """The store's backups, newest first: complete ones, and those under way, failed, damaged
    or being deleted (not those deleted)."""
    async with UnitOfWork.begin(outbox) as uow:
        await _visible_store(uow, caller, store_id)
        rows = await uow.session.exec(
            select(StoreBackup)
            .where(col(StoreBackup.store_id) == store_id)
            .where(col(StoreBackup.status) != BackupStatus.DELETED)
            .order_by(col(StoreBackup.requested_at).desc())
        )
        return list(rows)


async def read_backup(
    outbox: Outbox, caller: Caller, store_id: uuid.UUID, backup_id: uuid.UUID
) -> StoreBackup:
    async with UnitOfWork.begin(outbox) as uow:
        await _visible_store(uow, caller, store_id)
        backup = await uow.session.get(StoreBackup, backup_id)
        if backup is None or backup.store_id != store_id:
            raise not_found(f"backup {backup_id}")
        return backup


async def retry_store(
    outbox: Outbox, caller: Caller, store_id: uuid.UUID, settings: Settings
) -> Store:
    """Ask for a failed store again, within the create rates and the store caps."""
    async with quotas.creating(outbox, caller.principal, settings) as uow:
        await _visible_store(uow, caller, store_id)
        store = await lifecycle.retry(uow, store_id)
        record(uow, caller, "store.retry", f"store/{store.id}", store.owner)
    return store


async def request_deletion(outbox: Outbox, caller: Caller, store_id: uuid.UUID) -> Store:
    async with UnitOfWork.begin(outbox) as uow:
        await _visible_store(uow, caller, store_id)
        store, requested = await lifecycle.request_deletion(uow, store_id)
        if requested:
            record(uow, caller, "store.delete", f"store/{store.id}", store.owner)
    return store


async def _visible_store(uow: UnitOfWork, caller: Caller, store_id: uuid.UUID) -> Store:
    """The store, or 404 for one the caller may not see, as for one that does not exist. (A
    store's tenant never changes, so this needs no lock; the change locks the row.)"""
    store = await uow.session.get(Store, store_id)
    if store is None or not caller.principal.sees(store.tenant_id):
        raise not_found(f"store {store_id}")
    return store
