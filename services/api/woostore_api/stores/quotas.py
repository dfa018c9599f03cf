"""Limits on what stores are asked for: create rates per key and per tenant, a change
(upgrade or rollback) rate per tenant, and caps on live and queued stores.

All hold across API replicas and under any concurrency, because PostgreSQL does the
counting: a rate is GCRA (the generic cell rate algorithm, a token bucket kept as one
timestamp) updated by one conditional upsert in the transaction that carries the request
out, and the caps are counts the database keeps as stores change and checks as a creating
transaction commits (``within_caps``). A request refused for any reason, a cap's included,
is counted against no rate.

A rate of N a minute allows N at once, then one every 60/N seconds as the allowance refills.
A fixed one-minute window, as before, let 2N through in a moment across a minute's end.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Interval, String, bindparam, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from woostore_api.problems import Problem, limit_reached
from woostore_shared.access import Principal
from woostore_shared.models import RateLimit, utcnow
from woostore_shared.outbox import Outbox
from woostore_shared.settings import Settings
from woostore_shared.unit_of_work import UnitOfWork

PERIOD = timedelta(minutes=1)  # rates are counted per minute
_CAPS = ("tenant_store_limit", "max_live_stores", "max_queued_stores")  # settings, in the database

# Statements built once, as every create and change runs them: building one costs the API
# more than the database's work on it. What varies is bound at each execution.
_NOW = bindparam("now", type_=DateTime(timezone=True))
_INTERVAL = bindparam("interval", type_=Interval())
_ARRIVAL = func.greatest(RateLimit.tat, _NOW)
# GCRA: the counter's theoretical arrival time (tat) moves one interval on per request
# admitted; a request is admitted while tat is at most ``burst`` ahead of now.
_ADMIT = (
    insert(RateLimit)
    .values(counter=bindparam("counter", type_=String()), tat=_NOW + _INTERVAL)
    .on_conflict_do_update(
        index_elements=["counter"],
        set_={"tat": _ARRIVAL + _INTERVAL},
        where=bindparam("burst", type_=Interval()) >= _ARRIVAL - _NOW,
    )
    .returning(col(RateLimit.tat))
    # As a plain statement: an ORM insert run with parameters would be taken for a bulk one,
    # whose parameters SQLAlchemy reworks at every run.
    .execution_options(dml_strategy="raw")
)
_COUNTERS = select(RateLimit.counter, RateLimit.tat).where(
    col(RateLimit.counter).in_(bindparam("counters", expanding=True))
)
# Transaction-local (the third argument): a pooled connection carries nothing on.
_SET_CAPS = select(
    *(func.set_config(f"woostore.{cap}", bindparam(cap, type_=String()), True) for cap in _CAPS)
)


@dataclass(frozen=True)
class Rate:
    """Requests one counter allows per minute, and how a refusal names the limit."""

    counter: str  # what is counted, e.g. "key/wsk_3f9a1c2b7d4e/creates"
    allowed: int
    limit: str
    detail: str

    @property
    def interval(self) -> timedelta:
        """How often the allowance gains one request."""
        return PERIOD / self.allowed

    @property
    def burst(self) -> timedelta:
        """How far ahead of now the counter's next arrival may be and still admit one: a
        full allowance is ``allowed`` requests at once."""
        return self.interval * (self.allowed - 1)


@asynccontextmanager
async def counted(
    session: AsyncSession, *rates: Rate, now: datetime | None = None
) -> AsyncIterator[None]:
    """The request's work, counted against ``rates`` in the transaction that carries it out.
    A rate already spent refuses it at once, read and not locked, before any work (a create
    past its rate must not hold a pooled store while it waits to be refused); the counters
    are then taken last (``take``), their rows locked only until the commit. A request
    refused for any reason is counted against none: a client waiting out Retry-After gets
    in."""
    now = now or utcnow()
    found = await session.exec(_COUNTERS, params={"counters": [rate.counter for rate in rates]})
    tats = dict(found.all())
    for rate in rates:
        if rate.counter in tats and tats[rate.counter] - now > rate.burst:
            raise _refusal(rate, tats[rate.counter], now)
    yield
    await take(session, *rates, now=now)


async def take(session: AsyncSession, *rates: Rate, now: datetime | None = None) -> None:
    """Count a request against every rate; past any of them it is refused (and the caller's
    transaction, rolled back, counts it against none)."""
    now = now or utcnow()
    for rate in rates:
        bound = {
            "counter": rate.counter, "now": now, "interval": rate.interval, "burst": rate.burst,
        }  # fmt: skip
        if (await session.exec(_ADMIT, params=bound)).first() is None:
            tat = (await session.exec(
                select(RateLimit.tat).where(col(RateLimit.counter) == rate.counter)
            )).one()  # fmt: skip
            raise _refusal(rate, tat, now)


def _refusal(rate: Rate, tat: datetime, now: datetime) -> Problem:
    wait = (tat - rate.burst - now).total_seconds()
    return limit_reached(rate.limit, rate.allowed, rate.detail, max(1, math.ceil(wait)))


def _create_rates(principal: Principal, settings: Settings) -> tuple[Rate, ...]:
    """A store creation's: the key's rate and its tenant's (a tenant's keys share one, so
    minting more keys does not buy more creations)."""
    return (
        Rate(
            f"key/{principal.actor}/creates",
            settings.creates_per_minute,
            "creates-per-minute",
            f"this key may create {settings.creates_per_minute} stores a minute",
        ),
        Rate(
            f"tenant/{principal.tenant_id}/creates",
            settings.tenant_creates_per_minute,
            "tenant-creates-per-minute",
            f"this tenant may create {settings.tenant_creates_per_minute} stores a minute",
        ),
    )


def _change_rates(principal: Principal, settings: Settings) -> tuple[Rate, ...]:
    """A change's (an upgrade, a rollback, a backup, a restore): the caller's tenant's rate,
    as all tenants share the provisioners that carry them out."""
    return (
        Rate(
            f"tenant/{principal.tenant_id}/changes",
            settings.tenant_changes_per_minute,
            "tenant-changes-per-minute",
            f"this tenant may upgrade or roll back {settings.tenant_changes_per_minute} "
            "stores a minute",
        ),
    )


# The refusal of each cap: its words and when to ask again. A store frees a live slot only
# when someone deletes one; a queue slot frees within minutes.
CAP_REFUSALS = {
    "tenant-stores": ("this tenant has its maximum of {cap} stores; delete one first", 300),
    "platform-stores": ("the platform holds its maximum of {cap} stores", 300),
    "queued-stores": ("{cap} stores are waiting to start; try again shortly", 60),
}
PAST_A_CAP = "WS429"  # the SQLSTATE count_stores raises


@asynccontextmanager
async def creating(
    outbox: Outbox, principal: Principal, settings: Settings
) -> AsyncIterator[UnitOfWork]:
    """A unit of work that makes a store (or asks for one again): within the store caps,
    and counted against the create rates."""
    async with (
        within_caps(outbox, settings) as uow,
        counted(uow.session, *_create_rates(principal, settings)),
    ):
        yield uow


@asynccontextmanager
async def changing(
    outbox: Outbox, principal: Principal, settings: Settings
) -> AsyncIterator[UnitOfWork]:
    """A unit of work that changes a store (an upgrade, a rollback, a backup, a restore),
    counted against the tenant's change rate."""
    async with (
        UnitOfWork.begin(outbox) as uow,
        counted(uow.session, *_change_rates(principal, settings)),
    ):
        yield uow


@asynccontextmanager
async def within_caps(outbox: Outbox, settings: Settings) -> AsyncIterator[UnitOfWork]:
    """A unit of work whose commit is refused past a store cap: its tenant's, the platform's
    live stores or the queue's, as the client's 429. The database counts as stores change
    (the count_stores trigger, migration 0018) and checks at COMMIT, the only moment it holds
    the platform's count, so creations in different tenants go on in parallel. A store
    claimed from the warm pool was counted against the platform while pooled; it counts
    against its owner's cap now."""
    try:
        async with UnitOfWork.begin(outbox) as uow:
            caps = {cap: str(getattr(settings, cap)) for cap in _CAPS}
            await uow.session.exec(_SET_CAPS, params=caps)
            yield uow
    except DBAPIError as error:
        diagnosis = getattr(error.orig, "diag", None)
        if getattr(error.orig, "sqlstate", None) != PAST_A_CAP or diagnosis is None:
            raise
        limit, cap = diagnosis.message_primary, int(diagnosis.message_detail)
        words, retry_after = CAP_REFUSALS[limit]
        raise limit_reached(limit, cap, words.format(cap=cap), retry_after) from None
