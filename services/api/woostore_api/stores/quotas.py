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

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from woostore_api.problems import Problem, cap_reached, limit_reached
from woostore_shared.access import Principal
from woostore_shared.models import utcnow
from woostore_shared.outbox import Outbox
from woostore_shared.problems import how_many
from woostore_shared.settings import Settings
from woostore_shared.unit_of_work import UnitOfWork

PERIOD = timedelta(minutes=1)  # rates are counted per minute
_CAPS = ("tenant_store_limit", "max_live_stores", "max_queued_stores")  # settings, in the database

# GCRA: a counter's theoretical arrival time (tat) moves one interval on per request admitted,
# and a request is admitted while the tat it leaves is at most a period ahead of now: a full
# allowance is ``allowed`` requests at once. One statement takes all of a request's rates; a
# counter it does not return refused. ON CONFLICT sees only the row a counter would start
# with, so a counter's interval is that row's tat less now. (A statement for each rate cost a
# create a round trip each: docs/benchmarks.md, Bursts.)
_ADMIT = text(
    "INSERT INTO rate_limits (counter, tat) SELECT counter, :now + step FROM"
    " unnest(CAST(:counters AS varchar[]), CAST(:steps AS interval[])) AS asked (counter, step)"
    " ON CONFLICT (counter) DO UPDATE"
    " SET tat = greatest(rate_limits.tat, :now) + (excluded.tat - :now)"
    " WHERE greatest(rate_limits.tat, :now) + (excluded.tat - :now) <= :now + :period"
    " RETURNING counter"
)
_COUNTERS = text(
    "SELECT counter, tat FROM rate_limits WHERE counter = ANY(CAST(:counters AS varchar[]))"
)
# The caps the transaction is held to, named as the request's counters are read: one round
# trip, not two. Transaction-local (set_config's third argument), so a pooled connection
# carries nothing on; a cap named NULL is none. The LEFT JOIN keeps the row that names them
# where no counter exists yet.
_CAPS_AND_COUNTERS = text(
    "SELECT counter, tat FROM (SELECT "  # noqa: S608  (fixed text, no input)
    + ", ".join(f"set_config('woostore.{cap}', :{cap}, true)" for cap in _CAPS)
    + ") AS caps LEFT JOIN rate_limits ON counter = ANY(CAST(:counters AS varchar[]))"
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
        """How often the allowance gains one request: rounded down to the microsecond, so
        that ``allowed`` intervals never pass a period (rounded up, for 7 a minute, say, the
        seventh request of a burst found the counter 3 µs past it, and was refused)."""
        return PERIOD // self.allowed

    @property
    def burst(self) -> timedelta:
        """How far ahead of now the counter's next arrival may be and still admit one: what
        a request leaves it at most a period ahead (``_ADMIT``), so a full allowance is
        ``allowed`` requests at once."""
        return PERIOD - self.interval


@asynccontextmanager
async def counted(
    session: AsyncSession,
    *rates: Rate,
    caps: Settings | None = None,
    now: datetime | None = None,
) -> AsyncIterator[None]:
    """The request's work, counted against ``rates`` in the transaction that carries it out,
    and held to the store caps ``caps`` names (``within_caps``). A rate already spent refuses
    it at once, read and not locked, before any work (a create past its rate must not hold a
    pooled store while it waits to be refused); the counters are then taken last (``take``),
    their rows locked only until the commit. A request refused for any reason is counted
    against none: a client waiting out Retry-After gets in."""
    now = now or utcnow()
    named = {cap: None if caps is None else str(getattr(caps, cap)) for cap in _CAPS}
    connection = await session.connection()
    found = await connection.execute(
        _CAPS_AND_COUNTERS, {**named, "counters": [rate.counter for rate in rates]}
    )
    tats: dict[str, datetime] = {counter: tat for counter, tat in found if counter is not None}
    for rate in rates:
        if rate.counter in tats and tats[rate.counter] - now > rate.burst:
            raise _refusal(rate, tats[rate.counter], now)
    yield
    await take(session, *rates, now=now)


async def take(session: AsyncSession, *rates: Rate, now: datetime | None = None) -> None:
    """Count a request against every rate; past any of them it is refused (and the caller's
    transaction, rolled back, counts it against none)."""
    now = now or utcnow()
    connection = await session.connection()
    counters = [rate.counter for rate in rates]
    taken = await connection.execute(
        _ADMIT,
        {
            "counters": counters, "steps": [rate.interval for rate in rates],
            "now": now, "period": PERIOD,
        },
    )  # fmt: skip
    admitted = set(taken.scalars())
    if refused := [rate for rate in rates if rate.counter not in admitted]:
        found = await connection.execute(_COUNTERS, {"counters": counters})
        tats: dict[str, datetime] = {counter: tat for counter, tat in found}
        raise _refusal(refused[0], tats[refused[0].counter], now)


def _refusal(rate: Rate, tat: datetime, now: datetime) -> Problem:
    wait = (tat - rate.burst - now).total_seconds()
    return limit_reached(rate.limit, rate.allowed, rate.detail, max(1, math.ceil(wait)))


def _create_rates(principal: Principal, settings: Settings) -> tuple[Rate, ...]:
    """A store creation's: the key's rate and its tenant's (a tenant's keys share one, so
    minting more keys does not buy more creations)."""
    per_key = how_many(settings.creates_per_minute, "store")
    per_tenant = how_many(settings.tenant_creates_per_minute, "store")
    return (
        Rate(
            f"key/{principal.actor}/creates",
            settings.creates_per_minute,
            "creates-per-minute",
            f"this key may create {per_key} a minute",
        ),
        Rate(
            f"tenant/{principal.tenant_id}/creates",
            settings.tenant_creates_per_minute,
            "tenant-creates-per-minute",
            f"this tenant may create {per_tenant} a minute",
        ),
    )


def _change_rates(principal: Principal, settings: Settings) -> tuple[Rate, ...]:
    """A change's (an upgrade, a rollback, a settings change, a backup, a restore): the
    caller's tenant's rate, as all tenants share the provisioners that carry them out."""
    allowed = how_many(settings.tenant_changes_per_minute, "change")
    return (
        Rate(
            f"tenant/{principal.tenant_id}/changes",
            settings.tenant_changes_per_minute,
            "tenant-changes-per-minute",
            f"this tenant may ask for {allowed} a minute: "
            "upgrades, rollbacks, settings changes, backups and restores together",
        ),
    )


# The refusal of each cap: its words, and when to ask again if waiting frees it. A tenant's
# store frees a slot only when the tenant deletes one (a 409); the platform's slots free as
# any tenant deletes a store, and a queue slot within minutes.
CAP_REFUSALS: dict[str, tuple[str, int | None]] = {
    "tenant-stores": (
        "this tenant has reached its limit of {stores}, counting those being deleted until "
        "they are gone: delete stores first, or ask an admin to raise the limit",
        None,
    ),
    # Shared: others' deletions (and the warm pool's) free it, so waiting may help.
    "platform-stores": ("the platform holds its maximum of {stores}", 300),
    "queued-stores": (
        "the queue holds its maximum of {stores} waiting to start; try again shortly",
        60,
    ),
}
PAST_A_CAP = "WS429"  # the SQLSTATE count_stores raises


@asynccontextmanager
async def creating(
    outbox: Outbox, principal: Principal, settings: Settings
) -> AsyncIterator[UnitOfWork]:
    """A unit of work that makes a store (or asks for one again): within the store caps,
    and counted against the create rates."""
    async with (
        within_caps(outbox) as uow,
        counted(uow.session, *_create_rates(principal, settings), caps=settings),
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
async def within_caps(outbox: Outbox) -> AsyncIterator[UnitOfWork]:
    """A unit of work whose commit is refused past a store cap its transaction names
    (``counted``): its tenant's, the platform's live stores or the queue's, as the client's
    409 or 429 (``CAP_REFUSALS``). The database counts as stores change (the count_stores
    trigger, migration 0018) and checks at COMMIT, the only moment it holds the platform's
    count, so creations in different tenants go on in parallel. A store claimed from the
    warm pool was counted against the platform while pooled; it counts against its owner's
    cap now."""
    try:
        async with UnitOfWork.begin(outbox) as uow:
            yield uow
    except DBAPIError as error:
        diagnosis = getattr(error.orig, "diag", None)
        if getattr(error.orig, "sqlstate", None) != PAST_A_CAP or diagnosis is None:
            raise
        limit, cap = diagnosis.message_primary, int(diagnosis.message_detail)
        words, retry_after = CAP_REFUSALS[limit]
        detail = words.format(stores=how_many(cap, "store"))
        if retry_after is None:
            raise cap_reached(limit, cap, detail) from None
        raise limit_reached(limit, cap, detail, retry_after) from None
