"""Rates as GCRA, counted in PostgreSQL: a full allowance at once, then one request per
interval as it refills; no double burst where a minute ends; a refused request counted
against no rate; exact under concurrency. Times are given, so no test waits for a clock."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client
from sqlmodel import col, select

from woostore_api.problems import Problem
from woostore_api.stores.quotas import Rate, limited
from woostore_shared.db import Database
from woostore_shared.models import RateLimit, Store, StoreStatus
from woostore_shared.outbox import Outbox

START = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def outbox(database: Database, nats_client: Client) -> Outbox:
    return Outbox(database, nats_client, source="/tests")


def per_minute(allowed: int, counter: str = "key/wsk_test/creates") -> Rate:
    return Rate(counter, allowed, "creates-per-minute", f"{allowed} a minute")


IN = "admitted"  # not True: True == 1, and a refusal saying "wait 1 s" would pass for it


async def admitted(outbox: Outbox, *rates: Rate, at: datetime) -> str | int:
    """IN if the request is admitted, else the seconds its refusal says to wait."""
    try:
        async with limited(outbox, *rates, now=at):
            pass
    except Problem as refused:
        headers = refused.headers or {}
        return int(headers["Retry-After"]) if refused.status == 429 else refused.status
    return IN


async def test_a_full_allowance_at_once_then_one_request_per_interval(outbox: Outbox) -> None:
    rate = per_minute(3)  # one every 20 s
    at_once = [await admitted(outbox, rate, at=START) for _ in range(4)]
    assert at_once == [IN, IN, IN, 20]
    assert await admitted(outbox, rate, at=START + timedelta(seconds=19)) == 1
    assert await admitted(outbox, rate, at=START + timedelta(seconds=20)) == IN
    assert await admitted(outbox, rate, at=START + timedelta(seconds=21)) == 19
    # Idle long enough, the whole allowance is back.
    later = START + timedelta(minutes=5)
    assert [await admitted(outbox, rate, at=later) for _ in range(4)] == [IN, IN, IN, 20]


@pytest.mark.parametrize("allowed", [7, 9, 13, 36, 60, 1000])
async def test_a_burst_gets_the_whole_allowance_whatever_its_size(
    outbox: Outbox, allowed: int
) -> None:
    """A minute does not divide into 7 (or 9, 13, 36) whole microseconds: rounded up, the
    interval put the last request of a full burst a few microseconds past the allowance."""
    rate = per_minute(allowed)
    burst = [await admitted(outbox, rate, at=START) for _ in range(allowed + 1)]
    assert burst[:allowed] == [IN] * allowed
    assert burst[allowed] == math.ceil(rate.interval.total_seconds())


async def test_the_end_of_a_minute_lets_no_second_burst_through(outbox: Outbox) -> None:
    rate = per_minute(3)
    just_before = START + timedelta(seconds=59.9)
    assert [await admitted(outbox, rate, at=just_before) for _ in range(3)] == [IN] * 3
    # A fixed window would start counting again here and admit three more.
    just_after = START + timedelta(seconds=60.1)
    assert await admitted(outbox, rate, at=just_after) == 20


async def test_a_request_refused_by_one_rate_is_counted_against_none(
    outbox: Outbox, database: Database
) -> None:
    key, tenant = per_minute(60, "key/wsk_one/creates"), per_minute(1, "tenant/t/creates")
    assert await admitted(outbox, key, tenant, at=START) == IN
    assert await admitted(outbox, key, tenant, at=START) == 60
    async with database.session() as session:
        tat = (
            await session.exec(select(RateLimit.tat).where(col(RateLimit.counter) == key.counter))
        ).one()
    assert tat == START + key.interval  # the key's one admitted request, not two


async def test_concurrent_requests_are_admitted_exactly_up_to_the_allowance(
    outbox: Outbox,
) -> None:
    rate = per_minute(5)
    results = await asyncio.gather(*(admitted(outbox, rate, at=START) for _ in range(20)))
    assert results.count(IN) == 5
    assert all(result == IN or (isinstance(result, int) and result >= 1) for result in results)


@pytest.mark.parametrize("read_first", [True, False], ids=["read-first", "at-commit"])
async def test_a_request_past_its_rate_is_refused_and_only_work_done_is_counted(
    outbox: Outbox, database: Database, read_first: bool
) -> None:
    """``limited``: an admitted request is counted as its work commits, and work that fails
    is counted against nothing. Read first, a spent rate refuses at once, so the work (a
    pooled store claimed, say) never starts; refused as the work commits, the work is
    rolled back with it (its new store is never written)."""
    rate = per_minute(2)
    worked: list[str] = []

    async def request(name: str, fails: bool = False) -> None:
        async with limited(outbox, rate, read_first=read_first, now=START) as uow:
            worked.append(name)
            uow.insert(new_store(name))
            if fails:
                raise RuntimeError(name)

    with pytest.raises(RuntimeError):
        await request("failed", fails=True)
    await request("first")
    await request("second")  # the failed one took none of the two
    with pytest.raises(Problem) as refused:
        await request("third")

    assert worked == ["failed", "first", "second"] if read_first else [
        "failed", "first", "second", "third",
    ]  # fmt: skip
    assert refused.value.status == 429
    assert (refused.value.headers or {})["Retry-After"] == "30"
    async with database.session() as session:
        made = set(await session.exec(select(Store.name).where(col(Store.name).like("rated-%"))))
    assert made == {"rated-first", "rated-second"}


def new_store(name: str) -> Store:
    return Store(
        tenant_id=None, name=f"rated-{name}", slug=f"rated-{name}", namespace=f"rated-{name}",
        status=StoreStatus.POOLED, simulated=True, settings={}, correlation_id=name,
    )  # fmt: skip
