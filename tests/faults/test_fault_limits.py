"""Provisioning keeps its limits under faults: a step that hangs fails by its deadline and
frees its slot, three provisioner replicas never run more than two stores at once, and a
replica told to stop (SIGTERM) hands its store to another at once. On the real processes,
NATS and PostgreSQL, checked as in test_faults.py.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from datetime import datetime

import pytest

from tests.faults.conftest import (
    IN_FLIGHT_LIMIT,
    TYPE,
    Api,
    Json,
    StartPlatform,
    consumer_info,
    exactly_once_problems,
    json_log,
    leftovers,
    most_provisioning_at_once,
    nothing_stuck,
    outcomes,
    reaper_totals,
    resource_problems,
    settled_records,
    wait_for_stores,
    wait_mid_run,
    wait_until,
)
from woostore_provisioner.recipe import PROVISION

pytestmark = pytest.mark.faults


def _time(event: Json) -> datetime:
    return datetime.fromisoformat(event["time"])


# -- 4. a step that hangs ---------------------------------------------------------------------

HANG_DEADLINE = 8
HUNG_STORES = 3  # one more than the in-flight limit: the third waits for a slot to free
AFTER_STORES = 2
DEADLINE_SLACK = 5  # seconds: reaper passes run every second


async def test_hanging_step_fails_by_deadline_cleans_up_and_frees_its_slot(
    start_platform: StartPlatform, figures: Json
) -> None:
    # A store takes ~3.75 s at this scale, well within the deadline once the fault is gone.
    platform = start_platform(
        WOOSTORE_SIM_TIME_SCALE="0.05",
        WOOSTORE_SIM_FAULTS='{"wait_for_rollout": "hang"}',
        WOOSTORE_PROVISION_DEADLINE_SECONDS=str(HANG_DEADLINE),
        WOOSTORE_REAPER_INTERVAL_SECONDS="1",
        WOOSTORE_ACK_WAIT_SECONDS="3",  # the provisioner watches the store every second
    )
    figures.update(stores=HUNG_STORES + AFTER_STORES, deadline_seconds=HANG_DEADLINE)
    async with Api(platform) as api:
        hung = [s["id"] for s in await api.create_stores(HUNG_STORES, "Hang")]
        started = time.monotonic()
        failed = await wait_for_stores(api, platform, hung, deadline=60)
        figures["hung_outcomes"] = outcomes(failed)
        figures["hung_all_failed_after_seconds"] = round(time.monotonic() - started, 1)

        # Each was failed by its deadline, with a reason naming it, at the step that hung.
        problems: list[str] = []
        for store in failed.values():
            reason = store["failure_reason"] or ""
            if store["status"] != "failed" or not re.search(
                rf"\b{HANG_DEADLINE}(\.0+)?\s*s\b|deadline", reason
            ):
                problems.append(f"{store['slug']}: {store['status']}, reason {reason!r}")

        # Its namespace is cleaned up: nothing of it left in the cluster.
        async def cleaned() -> bool:
            return not any(leftovers(platform, f"store-{s['slug']}") for s in failed.values())

        await wait_until(cleaned, 30, "the failed stores' namespaces are cleaned up")
        figures["cleaned_up_after_seconds"] = round(time.monotonic() - started, 1)

        # Its slot is freed: the messages are settled while the faulty provisioner still runs.
        async def slots_free() -> bool:
            info = await consumer_info(platform)
            return info.num_ack_pending == 0 and info.num_pending == 0

        await wait_until(slots_free, 30, "the hung stores' messages are settled")

        records = await settled_records(api, platform, hung)
        problems += exactly_once_problems(records, hung, outcome="failed")
        figures.update(reaper_totals(platform))
        lateness: list[float] = []
        for store_id in hung:
            history = records.history(store_id)
            begun = next(e for e in history if e["type"] == TYPE + "progress")
            failure = next(e for e in history if e["type"] == TYPE + "failed")
            if failure["data"].get("step") != "rollout":
                problems.append(f"{store_id}: failed at {failure['data'].get('step')!r}")
            lateness.append((_time(failure) - _time(begun)).total_seconds() - HANG_DEADLINE)
        figures["failed_after_deadline_seconds"] = [round(late, 1) for late in lateness]
        # By its deadline: not before it, and within a few reaper passes after it.
        if not all(-0.5 < late < DEADLINE_SLACK for late in lateness):
            problems.append(f"failed {lateness} s after the {HANG_DEADLINE} s deadline")
        assert most_provisioning_at_once(records, hung) <= IN_FLIGHT_LIMIT
        assert not problems, "\n".join(problems)

        # Without the fault, new stores get the freed slots and become ready.
        platform.stop("provisioner")
        platform.start("provisioner", WOOSTORE_SIM_FAULTS="{}")
        await asyncio.to_thread(platform.wait_ready)
        after = [s["id"] for s in await api.create_stores(AFTER_STORES, "After hang")]
        final = await wait_for_stores(api, platform, after, deadline=60)
        figures["after_outcomes"] = outcomes(final)
        figures["seconds_to_ready_after_restart"] = round(time.monotonic() - started, 1)
        records = await settled_records(api, platform, after)
        problems = exactly_once_problems(records, after)
        problems += resource_problems(platform, list(final.values()), gone=list(failed.values()))
        assert not problems, "\n".join(problems)
        await nothing_stuck(api, platform)


# -- 5. three provisioner replicas ------------------------------------------------------------

REPLICAS = 3
REPLICA_STORES = 8
PROVISION_STEPS = len(PROVISION.steps)


async def test_three_replicas_never_exceed_two_stores_in_flight(
    start_platform: StartPlatform, figures: Json
) -> None:
    platform = start_platform(WOOSTORE_SIM_TIME_SCALE="0.05")
    names = ["provisioner"] + [f"provisioner-{n}" for n in range(2, REPLICAS + 1)]
    for name in names[1:]:
        platform.start("provisioner", name=name)
    await asyncio.to_thread(platform.wait_ready)
    figures.update(stores=REPLICA_STORES, replicas=REPLICAS)
    async with Api(platform) as api:
        ids = [s["id"] for s in await api.create_stores(REPLICA_STORES, "Replica")]
        started = time.monotonic()
        final = await wait_for_stores(api, platform, ids, deadline=120)
        figures["outcomes"] = outcomes(final)
        figures["all_terminal_after_seconds"] = round(time.monotonic() - started, 1)
        records = await settled_records(api, platform, ids)
        figures["most_provisioning"] = most_provisioning_at_once(records, ids)
        figures.update(reaper_totals(platform))

        # Who did the work: each store made ready by exactly one replica.
        ready_by: dict[str, list[str]] = {}
        for name in names:
            for line in json_log(platform.data_dir / f"{name}.log"):
                if line.get("event") == "store ready":
                    ready_by.setdefault(line["store_id"], []).append(name)
        figures["stores_per_replica"] = dict(Counter(n for by in ready_by.values() for n in by))

        problems = exactly_once_problems(records, ids)
        problems += resource_problems(platform, list(final.values()))
        for store_id in ids:
            if len(ready_by.get(store_id, [])) != 1:
                problems.append(f"{store_id} made ready by {ready_by.get(store_id)}")
            progress = [
                (e["data"]["step"]["index"], e["data"]["state"])
                for e in records.history(store_id)
                if e["type"] == TYPE + "progress"
            ]
            expected = [
                (index, state)
                for index in range(1, PROVISION_STEPS + 1)
                for state in ("started", "completed")
            ]
            if progress != expected:
                problems.append(f"{store_id}: steps ran {progress}")
        assert not problems, "\n".join(problems)
        # Never more than the limit at once, however many replicas, and the limit was reached.
        assert figures["most_provisioning"] == IN_FLIGHT_LIMIT
        await nothing_stuck(api, platform)


# -- 6. SIGTERM hands the work back ---------------------------------------------------------

HANDOVER_ACK_WAIT = 60  # a redelivery would take this long; the hand-back must not


async def test_sigterm_hands_the_store_in_flight_to_another_replica_at_once(
    start_platform: StartPlatform, figures: Json
) -> None:
    platform = start_platform(
        WOOSTORE_SIM_TIME_SCALE="0.3", WOOSTORE_ACK_WAIT_SECONDS=str(HANDOVER_ACK_WAIT)
    )
    async with Api(platform) as api:
        [store] = await api.create_stores(1, "Handover")
        await wait_mid_run(api, [store["id"]], step=4)  # rollout: about 10 s here
        platform.start("provisioner", name="provisioner-2")
        await asyncio.to_thread(platform.wait_ready)

        stopping = time.monotonic()
        await asyncio.to_thread(platform.stop, "provisioner")  # SIGTERM, then wait for exit
        figures["stop_seconds"] = round(time.monotonic() - stopping, 1)

        final = await wait_for_stores(api, platform, [store["id"]], deadline=HANDOVER_ACK_WAIT)
        figures["ready_after_sigterm_seconds"] = round(time.monotonic() - stopping, 1)
        figures["outcomes"] = outcomes(final)
        records = await settled_records(api, platform, [store["id"]])
        problems = exactly_once_problems(records, [store["id"]])
        problems += resource_problems(platform, list(final.values()))
        assert not problems, "\n".join(problems)

    assert figures["stop_seconds"] < 10, "the provisioner did not stop promptly on SIGTERM"
    # Ready well before the AckWait a redelivery would have needed: the step was handed back.
    assert figures["ready_after_sigterm_seconds"] < HANDOVER_ACK_WAIT * 0.6
    handed_back = json_log(platform.data_dir / "provisioner.log")
    assert any(line.get("event") == "handing the store back: shutting down" for line in handed_back)
