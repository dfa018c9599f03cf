"""Provisioning stays correct when its processes die: kill -9 of the provisioner, again and
again, and restarts of nats-server and of PostgreSQL, on the real processes.

Each scenario starts the whole platform (``woostore_devstack.platform``), requests stores
through the API, injects the fault and then checks the outcome: every store ends in the
state it must, exactly once, in PostgreSQL and on the event stream, with exactly the
resources it should own in the simulated cluster, and nothing stuck. (The faults suite is in
several files so that the test workers share it: each file runs on one.)

Figures of each run (faults injected, outcomes, time) are written to
``<basetemp>/figures.jsonl`` and printed; ``-rP`` shows them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from tests.faults.conftest import (
    IN_FLIGHT_LIMIT,
    TERMINAL,
    Api,
    Json,
    StartPlatform,
    consumer_info,
    exactly_once_problems,
    kill_provisioner,
    most_provisioning_at_once,
    most_steps_running_at_once,
    nothing_stuck,
    outcomes,
    reaper_totals,
    resource_problems,
    settled_records,
    steps_cut,
    steps_rerun,
    wait_for_stores,
    wait_mid_run,
)

pytestmark = pytest.mark.faults


# -- 1. kill -9 of the provisioner, many times ------------------------------------------------

KILL_STORES = 4
KILLS = 6


async def test_provisioner_killed_mid_step_many_times_still_makes_each_store_once(
    start_platform: StartPlatform, figures: Json
) -> None:
    # A store takes ~7.5 s at this scale. A short AckWait (watch and lease renewal every 2 s)
    # lets killed work come back within the test's time; the kills are what is under test.
    platform = start_platform(WOOSTORE_SIM_TIME_SCALE="0.1", WOOSTORE_ACK_WAIT_SECONDS="6")
    seed = random.randrange(2**32)  # noqa: S311  (kill timing, not crypto)
    moments = random.Random(seed)  # noqa: S311
    figures.update(stores=KILL_STORES, seed=seed)
    async with Api(platform) as api:
        ids = [s["id"] for s in await api.create_stores(KILL_STORES, "Kill")]
        kills: list[datetime] = []
        started = time.monotonic()
        while len(kills) < KILLS:
            # A random moment 2-4 s into this provisioner's life: placing the kill is the point.
            await asyncio.sleep(moments.uniform(2, 4))
            now = await api.stores(ids)
            if all(s["status"] in TERMINAL for s in now.values()):
                break
            kills.append(datetime.now(UTC))
            kill_provisioner(platform)
            platform.start("provisioner")
            await asyncio.to_thread(platform.wait_ready)
        figures.update(kills=len(kills), kill_phase_seconds=round(time.monotonic() - started, 1))

        final = await wait_for_stores(api, platform, ids, deadline=120)
        figures["outcomes"] = outcomes(final)
        figures["all_terminal_after_seconds"] = round(time.monotonic() - started, 1)
        records = await settled_records(api, platform, ids)
        figures["steps_rerun"] = steps_rerun(records, ids)
        # In `provisioning` at once (the e2e measure), and actually worked on at once.
        figures["most_provisioning"] = most_provisioning_at_once(records, ids)
        figures["most_worked_on"] = most_steps_running_at_once(records, ids, kills)
        cut = steps_cut(records, ids, kills)
        figures["kills_mid_step"] = sum(1 for steps in cut if steps)
        figures["steps_cut"] = dict(Counter(step for steps in cut for step in steps))
        figures.update(reaper_totals(platform))
        info = await consumer_info(platform)
        figures["deliveries"] = info.delivered.consumer_seq if info.delivered else None
        figures["redelivered"] = info.num_redelivered

        # The faults did land: kills cut steps off half-way.
        assert figures["kills_mid_step"] >= KILLS // 3, f"kills missed the work: {cut}"
        problems = exactly_once_problems(records, ids)
        problems += resource_problems(platform, list(final.values()))
        assert not problems, "\n".join(problems)
        # The cluster never had more than the limit worked on at once, crashes or not.
        assert figures["most_worked_on"] <= IN_FLIGHT_LIMIT
        await nothing_stuck(api, platform)


# -- 2. nats-server restarted mid-run ---------------------------------------------------------

NATS_STORES = 4
NATS_DOWN_SECONDS = 3


@pytest.mark.parametrize("crash", [False, True], ids=["stop", "kill9"])
async def test_nats_restart_mid_run_loses_no_store(
    start_platform: StartPlatform, figures: Json, crash: bool
) -> None:
    platform = start_platform(WOOSTORE_SIM_TIME_SCALE="0.1", WOOSTORE_ACK_WAIT_SECONDS="6")
    figures.update(crash=crash)
    async with Api(platform) as api:
        ids = [s["id"] for s in await api.create_stores(NATS_STORES, "Nats")]
        await wait_mid_run(api, ids)
        started = time.monotonic()
        if crash:
            platform.nats.kill()
        else:
            platform.nats.stop()
        # Requested while NATS is down: accepted, its event left for the reaper's relay.
        ids.append((await api.create_store("Nats outage"))["id"])
        await asyncio.sleep(NATS_DOWN_SECONDS)  # how long the outage lasts: the fault itself
        platform.nats.restart(crash=crash)
        figures["nats_down_seconds"] = round(time.monotonic() - started, 1)
        figures["stores"] = len(ids)

        # The services come back by themselves: every /readyz (NATS check included) is 200.
        await asyncio.to_thread(platform.wait_ready, 30)
        figures["services_ready_after_seconds"] = round(time.monotonic() - started, 1)

        final = await wait_for_stores(api, platform, ids, deadline=120)
        figures["outcomes"] = outcomes(final)
        figures["all_terminal_after_seconds"] = round(time.monotonic() - started, 1)
        records = await settled_records(api, platform, ids)
        figures["steps_rerun"] = steps_rerun(records, ids)
        figures["most_provisioning"] = most_provisioning_at_once(records, ids)
        figures.update(reaper_totals(platform))

        problems = exactly_once_problems(records, ids)
        problems += resource_problems(platform, list(final.values()))
        assert not problems, "\n".join(problems)
        await nothing_stuck(api, platform)


# -- 3. PostgreSQL restarted mid-run ----------------------------------------------------------

PG_STORES = 4
PG_DOWN_SECONDS = 3


async def test_postgres_restart_mid_run_services_recover(
    start_platform: StartPlatform, figures: Json
) -> None:
    platform = start_platform(WOOSTORE_SIM_TIME_SCALE="0.1", WOOSTORE_ACK_WAIT_SECONDS="6")
    async with Api(platform) as api:
        ids = [s["id"] for s in await api.create_stores(PG_STORES, "Postgres")]
        await wait_mid_run(api, ids)
        started = time.monotonic()
        platform.postgres.stop()  # fast shutdown: every session is cut
        await asyncio.sleep(PG_DOWN_SECONDS)  # how long the outage lasts: the fault itself
        await asyncio.to_thread(platform.postgres.restart)  # same data, same socket
        figures["postgres_down_seconds"] = round(time.monotonic() - started, 1)

        await asyncio.to_thread(platform.wait_ready, 30)
        figures["services_ready_after_seconds"] = round(time.monotonic() - started, 1)
        # The API takes requests again without help (no retry here).
        ids.append((await api.create_store("Postgres after"))["id"])
        figures["stores"] = len(ids)

        final = await wait_for_stores(api, platform, ids, deadline=120)
        figures["outcomes"] = outcomes(final)
        figures["all_terminal_after_seconds"] = round(time.monotonic() - started, 1)
        records = await settled_records(api, platform, ids)
        figures["steps_rerun"] = steps_rerun(records, ids)
        figures["most_provisioning"] = most_provisioning_at_once(records, ids)
        figures.update(reaper_totals(platform))

        problems = exactly_once_problems(records, ids)
        problems += resource_problems(platform, list(final.values()))
        assert not problems, "\n".join(problems)
        await nothing_stuck(api, platform)
