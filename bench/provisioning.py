"""``make bench``: how much time the platform itself adds to a store, measured on the real
services with the simulated cluster at time scale 0 (every cluster operation instant), so
what is left is WooStore's own work: API, database, JetStream, helm template, events.

Figures are compared as ratios within one run (these machines are noisy) and written to
docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import json
import platform as host
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import backups, bursts, footprint, live_updates, scale, store_cost, warm_pool
from bench.common import EventLog, percentile, table
from woostore_devstack.embedded import REPO
from woostore_devstack.platform import Platform, running_platform

STORES = 20
CREATES_FOR_LATENCY = 50
BURST = 200  # as many parallel creates as the issue asks the caps to hold under
HELM_RUNS = 10
REALISTIC = 75.0  # the simulated recipe at time scale 1 (docs/architecture.md)
RESULTS = REPO / "docs" / "benchmarks.md"


def helm_template_seconds(platform: Platform) -> float:
    values = {"storeId": "bench", "host": "bench.example.test"}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(values, file)
        file.flush()
        argv = [
            platform.env["WOOSTORE_HELM_BINARY"],
            "template",
            "store",
            platform.env["WOOSTORE_STORE_CHART"],
            # As the simulated cluster renders it: in the store's own namespace (the chart
            # refuses a shared one), without the helm test hook.
            "--namespace",
            "store-bench",
            "--values",
            file.name,
            "--skip-tests",
        ]
        timings = []
        for _ in range(HELM_RUNS):
            start = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)  # noqa: S603  (our own argv)
            timings.append(time.perf_counter() - start)
    return statistics.median(timings)


async def measure(platform: Platform) -> dict[str, Any]:
    # The burst is measured, not limited: every create gets a connection of its own and as
    # long as it takes (httpx's defaults, 100 connections and 5 s, cut the slowest ones off).
    async with (
        EventLog.following(platform) as events,
        httpx.AsyncClient(
            base_url=platform.api_url,
            headers=platform.headers,
            timeout=60,
            limits=httpx.Limits(max_connections=BURST),
        ) as api,
    ):
        # Provisioning throughput: STORES at once, 2 in flight.
        sent: dict[str, float] = {}
        start = time.perf_counter()
        for n in range(STORES):
            before = time.time()  # the clock the services stamp events with
            store = (await api.post("/api/v1/stores", json={"name": f"Bench {n}"})).json()
            sent[store["id"]] = before
        for store_id in sent:
            await events.wait_for(store_id, "ready")
        all_ready = time.perf_counter() - start
        lags = [(await events.wait_for(i, "requested")).at - sent[i] for i in sent]

        # API create latency, with the provisioner idle again.
        latencies = []
        for n in range(CREATES_FOR_LATENCY):
            before = time.perf_counter()
            response = await api.post("/api/v1/stores", json={"name": f"Latency {n}"})
            latencies.append(time.perf_counter() - before)
            assert response.status_code == 202

        # A burst while the platform provisions: what a user feels when many arrive at once
        # (bench/bursts.py measures creates alone, against a bare endpoint).
        async def timed_create(n: int) -> float:
            before = time.perf_counter()
            response = await api.post("/api/v1/stores", json={"name": f"Burst {n}"})
            assert response.status_code == 202, response.text
            return time.perf_counter() - before

        burst_start = time.perf_counter()
        burst = await asyncio.gather(*(timed_create(n) for n in range(BURST)))
        burst_seconds = time.perf_counter() - burst_start
    per_store = all_ready / STORES * 2  # two run side by side
    return {
        "stores": STORES,
        "all_ready_seconds": all_ready,
        "platform_seconds_per_store": per_store,
        "create_p50_ms": percentile(latencies, 0.5) * 1000,
        "create_p95_ms": percentile(latencies, 0.95) * 1000,
        "requested_event_lag_p50_ms": percentile(lags, 0.5) * 1000,
        "requested_event_lag_p95_ms": percentile(lags, 0.95) * 1000,
        "burst_p50_ms": percentile(burst, 0.5) * 1000,
        "burst_p95_ms": percentile(burst, 0.95) * 1000,
        "burst_per_second": BURST / burst_seconds,
    }


def _pair(figures: dict[str, Any], name: str) -> str:
    return f"{figures[name + '_p50_ms']:.1f} / {figures[name + '_p95_ms']:.1f} ms"


def overhead_section() -> str:
    with (
        tempfile.TemporaryDirectory() as folder,
        running_platform(
            Path(folder), WOOSTORE_SIM_TIME_SCALE="0", WOOSTORE_LOG_LEVEL="WARNING"
        ) as platform,
    ):
        helm = helm_template_seconds(platform)
        figures = asyncio.run(measure(platform))
    per_store = figures["platform_seconds_per_store"]
    rows = [
        ("Stores provisioned (time scale 0, 2 in flight)", f"{figures['stores']}"),
        ("Wall time until all were ready", f"{figures['all_ready_seconds']:.2f} s"),
        ("Platform time per store (API, DB, JetStream, helm, events)", f"{per_store:.2f} s"),
        ("... share of a realistic store (75 s of cluster work)", f"{per_store / REALISTIC:.1%}"),
        ("`helm template` of the store chart (median of 10)", f"{helm:.3f} s"),
        ("... share of the platform time per store", f"{helm / per_store:.0%}"),
        ("POST /stores latency p50 / p95", _pair(figures, "create")),
        ("POST accepted → `requested` on SSE, p50 / p95", _pair(figures, "requested_event_lag")),
        (f"{BURST} parallel POST /stores: latency p50 / p95", _pair(figures, "burst")),
        ("... creates accepted per second during the burst", f"{figures['burst_per_second']:.0f}"),
        (
            "... burst p95 over a lone create's p50",
            f"{figures['burst_p95_ms'] / figures['create_p50_ms']:.0f} times",
        ),
    ]
    return (
        "# Benchmarks\n\n"
        "Written by `make bench` (`bench/provisioning.py`): the real services, NATS and\n"
        "PostgreSQL, with the simulated cluster at time scale 0, so the figures are WooStore's\n"
        "own overhead. Compare the ratios; absolute times vary with the machine.\n\n"
        f"Last run: {time.strftime('%Y-%m-%d')} on {host.machine()}, "
        f"{host.python_implementation()} {host.python_version()}.\n\n" + table(rows)
    )


def main() -> None:
    overhead = overhead_section()
    pool = warm_pool.section(warm_pool.measure())
    live = live_updates.section(live_updates.measure())
    kept = backups.section(backups.measure())
    scaled = scale.section(scale.measure())
    burst = bursts.section(bursts.measure())
    cost = store_cost.section(store_cost.measure())
    held = footprint.section(footprint.measure())
    RESULTS.write_text("\n".join([overhead, pool, live, kept, scaled, burst, cost, held]))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
