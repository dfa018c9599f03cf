"""End to end: five stores through the API, on the real services, NATS and PostgreSQL."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import EventLog, Platform
from woostore_cluster.simulated import SimulatedCluster
from woostore_provisioner.recipe import PROVISION

pytestmark = pytest.mark.e2e

STORES = 5
PROVISION_STEPS = len(PROVISION.steps)
TYPE = "io.woostore.store."


def _time(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["time"])


def most_provisioning_at_once(log: EventLog, store_ids: list[str]) -> int:
    """From the events: a store provisions from its first progress event to ready/failed."""
    edges: list[tuple[datetime, int]] = []
    for store_id in store_ids:
        events = [e for _, e in log.of_store(store_id)]
        start = next(e for e in events if e["type"] == TYPE + "progress")
        end = next(e for e in events if e["type"] in (TYPE + "ready", TYPE + "failed"))
        edges += [(_time(start), +1), (_time(end), -1)]
    running = peak = 0
    for _, change in sorted(edges, key=lambda edge: (edge[0], edge[1])):  # ends before starts
        running += change
        peak = max(peak, running)
    return peak


async def test_five_stores_become_ready_two_at_a_time_and_one_is_deleted(
    platform: Platform, event_log: EventLog
) -> None:
    async with httpx.AsyncClient(base_url=platform.api_url, headers=platform.headers) as api:
        created = [
            (await api.post("/api/v1/stores", json={"name": f"Shop {n}"})).json()
            for n in range(STORES)
        ]
        ids = [store["id"] for store in created]
        assert all(store["status"] == "queued" for store in created)

        def all_ready(received: list[tuple[int, dict[str, Any]]]) -> bool:
            ready = {e["subject"] for _, e in received if e["type"] == TYPE + "ready"}
            failed = [e for _, e in received if e["type"] == TYPE + "failed"]
            assert not failed, f"a store failed: {failed}"
            return ready >= set(ids)

        await event_log.wait_for(all_ready, deadline=120)

        # They all became ready, and the API agrees.
        listed = {s["id"]: s for s in (await api.get("/api/v1/stores")).json()["items"]}
        assert {listed[i]["status"] for i in ids} == {"ready"}
        assert all(listed[i]["storefront_url"].endswith(".127.0.0.1.nip.io") for i in ids)

        # Never more than 2 provisioning at the same moment, and the limit was reached.
        assert most_provisioning_at_once(event_log, ids) == 2

        # The stream delivered every progress event, in order, with increasing ids.
        sequences = [seq for seq, _ in event_log.received]
        assert sequences == sorted(set(sequences))  # increasing, no duplicates
        for store_id in ids:
            events = [e for _, e in event_log.of_store(store_id)]
            progress = [
                (e["data"]["step"]["index"], e["data"]["state"])
                for e in events
                if e["type"] == TYPE + "progress"
            ]
            expected = [
                (index, state)
                for index in range(1, PROVISION_STEPS + 1)
                for state in ("started", "completed")
            ]
            assert progress == expected
            assert [e["type"] for e in events][-1] == TYPE + "ready"
            history = (await api.get(f"/api/v1/stores/{store_id}")).json()["events"]
            assert [h["id"] for h in history] == [e["id"] for e in events]

        # Deleting a store reaches deleted and removes its simulated resources.
        doomed = listed[ids[0]]
        cluster = SimulatedCluster(
            platform.data_dir / "simcluster",
            helm_binary=platform.env["WOOSTORE_HELM_BINARY"],
            time_scale=0,
        )
        namespace = f"store-{doomed['slug']}"
        assert namespace in cluster.namespaces()
        assert (await api.delete(f"/api/v1/stores/{doomed['id']}")).status_code == 202

        def deleted(received: list[tuple[int, dict[str, Any]]]) -> bool:
            return any(
                e["subject"] == doomed["id"] and e["type"] == TYPE + "deleted" for _, e in received
            )

        await event_log.wait_for(deleted, deadline=60)
        assert (await api.get(f"/api/v1/stores/{doomed['id']}")).json()["status"] == "deleted"
        assert namespace not in cluster.namespaces()
        assert cluster.object_count(namespace) == 0
        others = {f"store-{listed[i]['slug']}" for i in ids[1:]}
        assert others <= set(cluster.namespaces())

    # The reaper counts its passes (WooStoreReaperFailing): here each has gone through.
    async with httpx.AsyncClient(base_url=platform.ops_urls["reaper"]) as ops:
        metrics = (await ops.get("/metrics")).text
    done = re.search(r'^woostore_reaper_passes_total\{result="done"\} (\S+)$', metrics, re.M)
    assert done is not None, metrics
    assert float(done[1]) > 0

    # Each service names its connections, for an operator reading pg_stat_activity. The
    # notifier keeps none open between its statements: tests/notifier/test_database.py.
    with psycopg.connect(platform.postgres.url) as db:
        names = {row[0] for row in db.execute("SELECT application_name FROM pg_stat_activity")}
    assert {f"woostore-{s}" for s in ("api", "provisioner", "reaper")} <= names
