"""How long each step takes lately, for the dashboard's estimates: the medians of each step's
latest measured runs over every store, read by any caller and remembered for a while."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from tests.api.conftest import NewTenant
from tests.api.http import STORES, problem
from tests.support import create_store
from woostore_api.remembered import Remembered
from woostore_shared.db import Database
from woostore_shared.models import StoreStep, utcnow
from woostore_shared.outbox import Outbox

STEP_TIMES = f"{STORES}/step-times"


async def make_stores(database: Database, nats_client: Client, count: int) -> list[uuid.UUID]:
    outbox = Outbox(database, nats_client, source="/tests")
    return [(await create_store(outbox, f"Shop {n}")).id for n in range(count)]


async def journal(
    database: Database,
    stores: list[uuid.UUID],
    phase: str,
    name: str,
    runs: list[tuple[int | None, float | None]],
) -> None:
    """Journal ``name``'s ``runs`` (position, seconds), oldest first, one store each."""
    first = utcnow() - timedelta(hours=1)
    async with database.session() as session:
        for n, (position, seconds) in enumerate(runs):
            session.add(
                StoreStep(
                    store_id=stores[n],
                    phase=phase,
                    name=name,
                    completed_at=first + timedelta(seconds=n),
                    position=position,
                    seconds=seconds,
                )
            )
        await session.commit()


def step(name: str, position: int, *, median_seconds: float, samples: int) -> dict[str, Any]:
    return {
        "name": name,
        "position": position,
        "median_seconds": median_seconds,
        "samples": samples,
    }


async def test_each_step_takes_the_median_of_its_latest_fifty_measured_runs_in_recipe_order(
    client: httpx.AsyncClient, database: Database, nats_client: Client
) -> None:
    stores = await make_stores(database, nats_client, 54)
    # Two slow runs too old to count, the latest fifty (1 to 50 s), and, newest of all, two
    # runs journalled before steps were measured: they take no place in the window.
    await journal(
        database,
        stores,
        "provision",
        "namespace",
        [(1, 1000.0)] * 2 + [(1, float(s)) for s in range(1, 51)] + [(None, None)] * 2,
    )
    await journal(database, stores, "provision", "credentials", [(2, 9.0), (2, 2.0), (2, 4.0)])
    # The recipe changed: the step's place is where it ran last.
    await journal(database, stores, "provision", "helm_release", [(2, 10.0), (3, 20.0)])
    await journal(database, stores, "delete", "namespace_delete", [(2, 7.5)])
    await journal(database, stores, "delete", "helm_uninstall", [(1, 0.2), (1, 0.3)])
    # A phase whose steps were all journalled before they were measured is not shown, nor
    # one a newer version journals (mid-rollout), which this one cannot name.
    await journal(database, stores, "upgrade", "helm_upgrade", [(None, None)] * 3)
    await journal(database, stores, "resize", "volumes", [(1, 3.0)])

    response = await client.get(STEP_TIMES)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "window": 50,
        "phases": [
            {
                "phase": "delete",
                "steps": [
                    step("helm_uninstall", 1, median_seconds=0.25, samples=2),
                    step("namespace_delete", 2, median_seconds=7.5, samples=1),
                ],
                "median_total_seconds": 7.75,
            },
            {
                "phase": "provision",
                "steps": [
                    step("namespace", 1, median_seconds=25.5, samples=50),
                    step("credentials", 2, median_seconds=4.0, samples=3),
                    step("helm_release", 3, median_seconds=15.0, samples=2),
                ],
                "median_total_seconds": 44.5,
            },
        ],
    }


async def test_any_signed_in_caller_reads_the_same_figures_and_nobody_else(
    client: httpx.AsyncClient,
    new_tenant: NewTenant,
    anonymous: httpx.AsyncClient,
    database: Database,
    nats_client: Client,
) -> None:
    stores = await make_stores(database, nats_client, 1)
    await journal(database, stores, "provision", "namespace", [(1, 0.5)])
    tenant = await new_tenant("theirs")

    as_tenant = await tenant.get(STEP_TIMES)

    assert as_tenant.status_code == 200, as_tenant.text
    assert as_tenant.json()["phases"][0]["steps"][0]["median_seconds"] == 0.5
    assert as_tenant.json() == (await client.get(STEP_TIMES)).json()
    problem(await anonymous.get(STEP_TIMES), 401)


async def test_the_figures_are_remembered_rather_than_measured_for_every_caller(
    client: httpx.AsyncClient, database: Database, nats_client: Client
) -> None:
    stores = await make_stores(database, nats_client, 2)
    await journal(database, stores, "provision", "namespace", [(1, 0.5)])
    first = (await client.get(STEP_TIMES)).json()

    await journal(database, stores[1:], "provision", "credentials", [(2, 3.0)])

    assert (await client.get(STEP_TIMES)).json() == first


# --- what is remembered -----------------------------------------------------------------------


class Measurements:
    """Stands in for a query: counts its runs; each says it ``began``, waits for ``finish``
    and answers the count."""

    def __init__(self) -> None:
        self.runs = 0
        self.began = asyncio.Event()
        self.finish = asyncio.Event()
        self.finish.set()

    async def __call__(self) -> int:
        self.runs += 1
        self.began.set()
        await self.finish.wait()
        return self.runs


async def test_an_answer_is_measured_again_once_it_is_older_than_its_seconds() -> None:
    now = 100.0
    measure = Measurements()
    remembered = Remembered(measure, seconds=30, clock=lambda: now)

    assert await remembered.get() == 1
    now += 29.9
    assert await remembered.get() == 1
    now += 0.1
    assert await remembered.get() == 2


async def test_callers_during_a_measurement_share_it() -> None:
    measure = Measurements()
    measure.finish.clear()
    remembered = Remembered(measure, seconds=30)

    waiting = asyncio.gather(*(remembered.get() for _ in range(3)))
    await measure.began.wait()  # the first caller's measurement runs after all three asked
    measure.finish.set()

    assert await waiting == [1, 1, 1]
    assert measure.runs == 1


async def test_a_failed_measurement_is_not_remembered() -> None:
    runs = 0

    async def failing_once() -> int:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise ConnectionError("the database went away")
        return runs

    remembered = Remembered(failing_once, seconds=30)

    with pytest.raises(ConnectionError):
        await remembered.get()
    assert await remembered.get() == 2
