"""Provisioning stays correct under faults, on the real processes, NATS and PostgreSQL.

Each scenario starts the whole platform (``woostore_devstack.platform``), requests stores
through the API, injects a fault (kill -9 of the provisioner, a restart of nats-server or of
PostgreSQL, a step that hangs, several replicas racing) and then checks the outcome:
every store ends in the state it must, exactly once, in PostgreSQL and on the event stream,
with exactly the resources it should own in the simulated cluster, and nothing stuck.

Figures of each run (faults injected, outcomes, time) are written to
``<basetemp>/figures.jsonl`` and printed; ``-rP`` shows them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest

from tests.faults.conftest import (
    TERMINAL,
    TYPE,
    Api,
    Json,
    Platform,
    cluster_state,
    consumer_info,
    exactly_once_problems,
    json_log,
    kill_provisioner,
    leftovers,
    most_provisioning_at_once,
    most_steps_running_at_once,
    nothing_stuck,
    outcomes,
    reaper_totals,
    resource_problems,
    settled_records,
    simulated_cluster,
    steps_cut,
    steps_rerun,
    wait_for_stores,
    wait_mid_run,
    wait_until,
)
from woostore_cluster import STORE_ID_LABEL as STORE_ID
from woostore_provisioner.recipe import PROVISION
from woostore_shared.backups import BackupStorage

pytestmark = pytest.mark.faults

StartPlatform = Callable[..., Platform]
IN_FLIGHT_LIMIT = 2  # WOOSTORE_MAX_STORES_IN_FLIGHT's default: the consumer's max_ack_pending


def _time(event: Json) -> datetime:
    return datetime.fromisoformat(event["time"])


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


# -- 7. kill -9 mid-claim ---------------------------------------------------------------------

POOL_SIZE = 2


def _pool_rows(platform: Platform) -> list[tuple[str, str]]:
    """The stores no tenant owns, (id, status): the warm pool, read from PostgreSQL."""
    with psycopg.connect(platform.postgres.url) as db:
        rows = db.execute("SELECT id::text, status::text FROM stores WHERE tenant_id IS NULL")
        return [(store_id, status) for store_id, status in rows]


async def test_provisioner_killed_mid_claim_finishes_the_store_for_its_owner_alone(
    start_platform: StartPlatform, figures: Json
) -> None:
    """A claimed store whose personalisation is cut by kill -9 is finished for its owner by
    the next attempt: never half-made, never back in the pool, never given to two owners."""
    # At this scale a claim's steps take about 4 s: long enough for the kill to land in them.
    platform = start_platform(
        WOOSTORE_SIM_TIME_SCALE="0.5",
        WOOSTORE_ACK_WAIT_SECONDS="6",
        WOOSTORE_WARM_POOL_SIZE=str(POOL_SIZE),
        WOOSTORE_REAPER_INTERVAL_SECONDS="1",
    )

    async def pool_full() -> bool:
        return [s for _, s in _pool_rows(platform)].count("pooled") == POOL_SIZE

    async with Api(platform) as api:
        await wait_until(pool_full, 120, f"the warm pool holds {POOL_SIZE} stores")
        pooled = {store_id for store_id, _ in _pool_rows(platform)}
        started = time.monotonic()
        made = await api.create_stores(POOL_SIZE, "Claim")
        ids = [s["id"] for s in made]
        assert {s["origin"] for s in made} == {"pool"}
        assert set(ids) == pooled

        await wait_mid_run(api, ids, step=1)  # being personalised: cut it
        kills = [datetime.now(UTC)]
        kill_provisioner(platform)
        platform.start("provisioner")
        await asyncio.to_thread(platform.wait_ready)

        final = await wait_for_stores(api, platform, ids, deadline=60)
        figures["outcomes"] = outcomes(final)
        figures["ready_after_seconds"] = round(time.monotonic() - started, 1)
        records = await settled_records(api, platform, ids)
        figures["steps_cut"] = steps_cut(records, ids, kills)
        problems = exactly_once_problems(records, ids)
        state = cluster_state(platform)
        for store_id in ids:
            store = final[store_id]
            phases = {
                e["data"]["phase"]
                for e in records.history(store_id)
                if e["type"] == TYPE + "progress"
            }
            if phases != {"personalise"}:
                problems.append(f"{store['slug']}: phases {phases}")
            homes = [ns for ns in state.values() if ns.labels.get(STORE_ID) == store_id]
            if len(homes) != 1:
                problems.append(f"{store['slug']}: {len(homes)} namespaces")
                continue
            wordpress = homes[0].wordpress or {}
            if wordpress.get("url") != store["storefront_url"]:
                problems.append(f"{store['slug']}: WordPress at {wordpress.get('url')}")
            login = await api.get(f"/api/v1/stores/{store_id}/credentials")
            digest = hashlib.sha256(login["password"].encode()).hexdigest()
            if wordpress.get("admin_password_sha256") != digest:
                problems.append(f"{store['slug']}: the owner's password is not WordPress's")
        assert figures["steps_cut"] != [[]], "the kill missed the personalisation"
        assert not problems, "\n".join(problems)

        # Neither went back to the pool, which is refilling with new stores.
        assert not {store_id for store_id, _ in _pool_rows(platform)} & set(ids)


# -- 8. kill -9 during a backup and during a restore; backup storage unreachable ------------

UPLOAD_FILES = 6
UPLOAD_BYTES = 8 << 20  # per file: random, so restic can neither compress nor deduplicate it


async def _wait_at_step(api: Api, store_id: str, status: str, step: int) -> None:
    async def probe() -> bool:
        store = (await api.stores([store_id]))[store_id]
        return bool(store["status"] == status and (store["step"] or {}).get("index", 0) >= step)

    await wait_until(probe, 60, f"the store {status} at step {step} or later", interval=0.05)


async def _backup(api: Api, store_id: str, backup_id: str) -> Json:
    backup: Json = await api.get(f"/api/v1/stores/{store_id}/backups/{backup_id}")
    return backup


def _start_provisioner(platform: Platform, **settings: str) -> None:
    platform.start("provisioner", **settings)
    platform.wait_ready()


async def test_backups_and_restores_cut_by_kill_9_end_whole_and_storage_outages_fail_clearly(
    start_platform: StartPlatform, figures: Json
) -> None:
    platform = start_platform(WOOSTORE_SIM_TIME_SCALE="0.1", WOOSTORE_ACK_WAIT_SECONDS="6")
    sim = simulated_cluster(platform)
    storage = BackupStorage(
        str(platform.data_dir / "backups"),
        secret_key=platform.env["WOOSTORE_SECRET_KEY"],
        cache_dir=platform.data_dir / "test-restic-cache",
    )
    async with Api(platform) as api:
        store = await api.create_store("Kept Safe")
        store_id, namespace = store["id"], f"store-{store['slug']}"
        await wait_for_stores(api, platform, [store_id], deadline=60)
        uploads = sim.uploads(namespace)
        for n in range(UPLOAD_FILES):
            (uploads / f"photo-{n}.jpg").write_bytes(os.urandom(UPLOAD_BYTES))
        kept = [sim.place_order(namespace), sim.place_order(namespace)]

        # A backup cut by kill -9 while it stores the store's parts: the next attempt finishes
        # it, and it is listed complete once, whole.
        started = time.monotonic()
        backup_id = (await api.client.post(f"/api/v1/stores/{store_id}/backups")).json()["id"]
        await _wait_at_step(api, store_id, "backing_up", step=2)
        kill_provisioner(platform)
        assert (await _backup(api, store_id, backup_id))["status"] == "running"  # cut off
        _start_provisioner(platform)

        async def backed_up() -> bool:
            return bool((await _backup(api, store_id, backup_id))["status"] != "running")

        await wait_until(backed_up, 90, "the backup cut by kill -9 ended")
        figures["backup_seconds_with_a_kill"] = round(time.monotonic() - started, 1)
        assert (await _backup(api, store_id, backup_id))["status"] == "complete"
        backups = storage.of(uuid.UUID(store_id))
        manifests = await backups.manifests()
        assert [str(m.backup_id) for m in manifests] == [backup_id]
        await backups.verify(manifests[0])  # every part whole, as its manifest says

        # A restore cut by kill -9 while it loads the store's content: it resumes, and
        # exactly the backed-up orders and uploads are back.
        sim.place_order(namespace)
        (uploads / "photo-0.jpg").write_bytes(b"changed after the backup")
        started = time.monotonic()
        restoring = await api.client.post(
            f"/api/v1/stores/{store_id}/restore", json={"backup_id": backup_id}
        )
        assert restoring.status_code == 202, restoring.text
        await _wait_at_step(api, store_id, "restoring", step=2)
        kill_provisioner(platform)
        assert (await api.get(f"/api/v1/stores/{store_id}"))["status"] == "restoring"  # cut off
        _start_provisioner(platform)

        async def restored() -> bool:
            now = await api.get(f"/api/v1/stores/{store_id}")
            return bool(now["status"] == "ready" and now["last_change"]["result"])

        await wait_until(restored, 90, "the restore cut by kill -9 ended")
        figures["restore_seconds_with_a_kill"] = round(time.monotonic() - started, 1)
        after = await api.get(f"/api/v1/stores/{store_id}")
        assert (after["last_change"]["kind"], after["last_change"]["result"]) == (
            "restore", "changed",
        )  # fmt: skip
        assert [o["id"] for o in sim.wordpress_state(namespace)["orders"]] == kept
        assert len((uploads / "photo-0.jpg").read_bytes()) == UPLOAD_BYTES

        # Backup storage out of reach: the backup fails, saying why; the store stays ready.
        kill_provisioner(platform)
        _start_provisioner(platform, WOOSTORE_BACKUP_LOCATION="s3:http://127.0.0.1:1/gone")
        failing = (await api.client.post(f"/api/v1/stores/{store_id}/backups")).json()["id"]

        async def failed() -> bool:
            return bool((await _backup(api, store_id, failing))["status"] == "failed")

        await wait_until(failed, 60, "the backup to unreachable storage failed")
        reason = (await _backup(api, store_id, failing))["reason"]
        assert "connection refused" in reason, reason
        assert (await api.get(f"/api/v1/stores/{store_id}"))["status"] == "ready"
        await nothing_stuck(api, platform)
