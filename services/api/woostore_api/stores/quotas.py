"""Limits on what stores are asked for: create rates per key and per tenant, a change
(upgrade or rollback) rate per tenant, and caps on live and queued stores.

All hold across API replicas and under any concurrency, because PostgreSQL does the
counting: a rate is GCRA (the generic cell rate algorithm, a token bucket kept as one
timestamp) updated by one conditional upsert in the statement that commits the request's
work, and the caps are counts the database keeps as stores change and checks as a creating
transaction commits (``limited``). A request refused for any reason, a cap's included, is
counted against no rate.

A rate of N a minute allows N at once, then one every 60/N seconds as the allowance refills.
A fixed one-minute window, as before, let 2N through in a moment across a minute's end.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
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
Limited = AbstractAsyncContextManager[UnitOfWork]
_CAPS = ("tenant_store_limit", "max_live_stores", "max_queued_stores")  # settings, in the database

# GCRA: a counter's theoretical arrival time (tat) moves one interval on per request admitted,
# and a request is admitted while the tat it leaves is at most a period ahead of now: a full
# allowance is ``allowed`` requests at once. The request's commit statement takes all of its
# rates (``UnitOfWork.commit_with``); a counter the upsert does not return is refused, and
# the query after it fails the statement naming the first such (``rate_refused``, migration
# 0032), so the request's work is rolled back with it. ON CONFLICT sees only the row a counter
# would start with, so a counter's interval is that row's tat less now. (A statement of their
# own, whose answer the API read before committing, cost a create two round trips:
# docs/benchmarks.md, Bursts.)
_TAKE = (
    "rates_admitted AS (INSERT INTO rate_limits (counter, tat)"
    " SELECT counter, :rates_now + step FROM unnest(CAST(:rates_counters AS varchar[]),"
    " CAST(:rates_steps AS interval[])) AS asked (counter, step)"
    " ON CONFLICT (counter) DO UPDATE"
    " SET tat = greatest(rate_limits.tat, :rates_now) + (excluded.tat - :rates_now)"
    " WHERE greatest(rate_limits.tat, :rates_now) + (excluded.tat - :rates_now)"
    " <= :rates_now + :rates_period RETURNING counter),"
    " rates_refused AS MATERIALIZED (SELECT rate_refused(counter) FROM"
    " unnest(CAST(:rates_counters AS varchar[])) WITH ORDINALITY AS asked (counter, n)"
    " WHERE counter NOT IN (SELECT counter FROM rates_admitted) ORDER BY n LIMIT 1)"
)
PAST_A_RATE = "WS430"  # rate_refused's SQLSTATE
_COUNTERS = text(
    "SELECT counter, tat FROM rate_limits WHERE counter = ANY(CAST(:counters AS varchar[]))"
)
# The caps the transaction is held to, named by its commit statement, and so set before it
# commits, where they are checked. Transaction-local (set_config's third argument), so a
# pooled connection carries nothing on; a cap named NULL is none.
_CAPS_NAMED = (
    "caps AS MATERIALIZED (SELECT "
    + ", ".join(f"set_config('woostore.{cap}', :{cap}, true)" for cap in _CAPS)
    + ")"
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
        a request leaves it at most a period ahead (``_TAKE``), so a full allowance is
        ``allowed`` requests at once."""
        return PERIOD - self.interval


@asynccontextmanager
async def limited(
    outbox: Outbox,
    *rates: Rate,
    caps: Settings | None = None,
    read_first: bool = False,
    now: datetime | None = None,
) -> AsyncIterator[UnitOfWork]:
    """A unit of work counted against ``rates`` as it commits, and held to the store caps
    ``caps`` names (checked as it commits too: ``CAP_REFUSALS``). Past a rate or a cap the
    unit is rolled back whole, and the client told why (429, or 409 for its tenant's cap);
    a request refused for any reason is counted against no rate, so a client waiting out
    Retry-After gets in. With ``read_first``, a rate already spent refuses the request
    before its work, read and not locked: a create past its rate must not hold a pooled
    store while it waits to be refused."""
    now = now or utcnow()
    try:
        async with UnitOfWork.begin(outbox) as uow:
            if read_first:
                await _refuse_if_spent(uow.session, rates, now)
            yield uow
            if rates:
                uow.commit_with(
                    "rates_refused", _TAKE,
                    rates_counters=[rate.counter for rate in rates],
                    rates_steps=[rate.interval for rate in rates],
                    rates_now=now, rates_period=PERIOD,
                )  # fmt: skip
            if caps is not None:
                uow.commit_with(
                    "caps", _CAPS_NAMED, **{cap: str(getattr(caps, cap)) for cap in _CAPS}
                )
    except DBAPIError as error:
        refusal = await _refusal_of(outbox, error, rates, now)
        if refusal is None:
            raise
        raise refusal from None


async def _refuse_if_spent(session: AsyncSession, rates: tuple[Rate, ...], now: datetime) -> None:
    connection = await session.connection()
    found = await connection.execute(_COUNTERS, {"counters": [rate.counter for rate in rates]})
    tats: dict[str, datetime] = {counter: tat for counter, tat in found}
    for rate in rates:
        if rate.counter in tats and tats[rate.counter] - now > rate.burst:
            raise _refusal(rate, tats[rate.counter], now)


async def _refusal_of(
    outbox: Outbox, error: DBAPIError, rates: tuple[Rate, ...], now: datetime
) -> Problem | None:
    """The client's answer to a commit refused past a rate or a cap; None for any other
    error."""
    diagnosis = getattr(error.orig, "diag", None)
    sqlstate = getattr(error.orig, "sqlstate", None)
    if diagnosis is None or sqlstate not in (PAST_A_RATE, PAST_A_CAP):
        return None
    if sqlstate == PAST_A_RATE:
        rate = next(rate for rate in rates if rate.counter == diagnosis.message_detail)
        async with outbox.db.session() as session:
            connection = await session.connection()
            found = await connection.execute(_COUNTERS, {"counters": [rate.counter]})
            tat = found.one().tat  # the refusing counter exists: it refused
        return _refusal(rate, tat, now)
    limit, cap = diagnosis.message_primary, int(diagnosis.message_detail)
    words, retry_after = CAP_REFUSALS[limit]
    detail = words.format(stores=how_many(cap, "store"))
    if retry_after is None:
        return cap_reached(limit, cap, detail)
    return limit_reached(limit, cap, detail, retry_after)


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


def creating(
    outbox: Outbox, principal: Principal, settings: Settings, *, cold: bool = False
) -> Limited:
    """A unit of work that makes a store (or asks for one again): within the store caps,
    and counted against the create rates. A spent rate refuses it before its work, but for
    a ``cold`` create (no store to claim from the warm pool, none to copy from): its work
    is the one statement that also takes its rates."""
    return limited(outbox, *_create_rates(principal, settings), caps=settings, read_first=not cold)


def changing(outbox: Outbox, principal: Principal, settings: Settings) -> Limited:
    """A unit of work that changes a store (an upgrade, a rollback, a backup, a restore),
    counted against the tenant's change rate; a spent rate refuses it before its work."""
    return limited(outbox, *_change_rates(principal, settings), read_first=True)
