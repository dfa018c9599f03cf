"""The warm pool and backups under kill -9: a claim cut mid-way ends with one owner or none,
and a backup or restore cut mid-way ends whole; backup storage that cannot be reached fails
clearly. On the real processes, NATS, PostgreSQL and restic, checked as in test_faults.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from tests.faults.conftest import (
    TYPE,
    Api,
    Json,
    Platform,
    StartPlatform,
    cluster_state,
    exactly_once_problems,
    kill_provisioner,
    nothing_stuck,
    outcomes,
    settled_records,
    simulated_cluster,
    steps_cut,
    wait_for_stores,
    wait_mid_run,
    wait_until,
)
from woostore_cluster import STORE_ID_LABEL as STORE_ID
from woostore_shared.backups import BackupStorage

pytestmark = pytest.mark.faults


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
        # Refills leave one provisioning slot free for owners: with three, the pool's two
        # fill side by side, in one cold store's time (claims have a lane of their own).
        WOOSTORE_MAX_STORES_IN_FLIGHT=str(POOL_SIZE + 1),
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
        scratch_dir=platform.data_dir / "test-restic",
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
