"""``make bench``, the cost of a store (issue #13): the CPU every process of the platform
spends on one store at time scale 0, where it goes, and stores a second with the default
provisioning limit, and with 16 in flight across 1, 2 and 3 provisioner replicas (plotted).

What it does is METHOD below, which docs/benchmarks.md shows with the figures.
``uv run python -m bench.store_cost`` runs this part alone and rewrites its section.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats
import psutil
from nats.aio.msg import Msg

from bench.common import postgres_processes, rewrite_section, table
from woostore_devstack.embedded import REPO
from woostore_devstack.platform import SERVICES, Platform, running_services
from woostore_shared.topology import STREAM_NAME, WORK_STREAM

RESULTS = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "benchmarks-store-cost.png"
TARGET_CPU = 0.1  # core-seconds a store, helm excluded (issue #13)
SETTINGS = {"WOOSTORE_SIM_TIME_SCALE": "0", "WOOSTORE_LOG_LEVEL": "WARNING"}


@dataclass(frozen=True)
class Sizes:
    stores: int = 60  # 30 left the figures to wander by a fifth from run to run
    warm: int = 3  # made first and not counted: imports, caches and connections warm up


@dataclass
class Run:
    """One platform making ``stores`` stores: its wall time and each process's CPU seconds."""

    stores: int
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # by process (helm: apart)
    streams: dict[str, tuple[int, int]] = field(default_factory=dict)  # (messages, bytes) added

    @property
    def per_second(self) -> float:
        return self.stores / self.seconds

    def per_store(self, name: str) -> float:
        return self.cpu[name] / self.stores

    @property
    def without_helm(self) -> float:
        return sum(seconds for name, seconds in self.cpu.items() if name != "helm") / self.stores


def _cpu(process: psutil.Process, children: bool = False) -> float:
    times = process.cpu_times()
    if children:  # processes it started and waited for: helm, for a provisioner
        return times.children_user + times.children_system
    return times.user + times.system


def _readings(platform: Platform) -> dict[str, float]:
    cpu: dict[str, float] = {"helm": 0.0}
    for name, popen in platform.processes.items():
        process = psutil.Process(popen.pid)
        service = name.split("-")[0]  # replicas ("provisioner-2") add up under their service
        cpu[service] = cpu.get(service, 0.0) + _cpu(process)
        cpu["helm"] += _cpu(process, children=True)
    cpu["nats"] = _cpu(psutil.Process(platform.nats.process.pid))
    cpu["postgres"] = sum(_cpu(process) for process in postgres_processes(platform.postgres.pgdata))
    return cpu


async def _streams(platform: Platform) -> dict[str, tuple[int, int]]:
    """The JetStream streams' sizes: (messages, bytes) each, as the server counts them."""
    client = await nats.connect(servers=platform.env["WOOSTORE_NATS_URL"].split(","))
    try:
        js = client.jetstream()
        sizes = {}
        for name in (STREAM_NAME, WORK_STREAM):
            state = (await js.stream_info(name)).state
            sizes[name] = (state.messages, state.bytes)
        return sizes
    finally:
        await client.close()


async def _make(platform: Platform, count: int, first: int) -> None:
    """Ask for ``count`` stores at once, and wait until each is ready. The wait listens for
    the stores' ``ready`` (or ``failed``) events on NATS: polling the API instead would put
    the client's own requests into the API's and PostgreSQL's CPU figures."""
    client = await nats.connect(servers=platform.env["WOOSTORE_NATS_URL"].split(","))
    ready: set[str] = set()
    failed: list[str] = []
    heard_one = asyncio.Event()

    async def heard(message: Msg) -> None:
        kind, _, store_id = message.subject.removeprefix("store.").partition(".")
        if kind == "ready":
            ready.add(store_id)
        else:
            failed.append(store_id)
        heard_one.set()

    try:
        await client.subscribe("store.ready.*", cb=heard)
        await client.subscribe("store.failed.*", cb=heard)
        await client.flush()  # the server has both before the first store is asked for
        asked: set[str] = set()
        async with httpx.AsyncClient(
            base_url=platform.api_url, headers=platform.headers, timeout=60
        ) as api:
            for n in range(count):
                answer = await api.post("/api/v1/stores", json={"name": f"Cost {first + n}"})
                asked.add(answer.raise_for_status().json()["id"])
        async with asyncio.timeout(600):
            while not (failed or asked <= ready):
                heard_one.clear()
                await heard_one.wait()
        if failed:
            raise RuntimeError(f"stores failed: {failed}")
    finally:
        await client.close()


def measure_one(sizes: Sizes, replicas: int = 1, in_flight: int | None = None) -> Run:
    settings = dict(SETTINGS)
    if in_flight is not None:
        settings["WOOSTORE_MAX_STORES_IN_FLIGHT"] = str(in_flight)
    with (
        tempfile.TemporaryDirectory() as folder,
        running_services(Path(folder), SERVICES, settings) as platform,
    ):
        for n in range(2, replicas + 1):
            platform.start("provisioner", name=f"provisioner-{n}")
        platform.wait_ready()
        asyncio.run(_make(platform, sizes.warm, 0))
        before, streams_before = _readings(platform), asyncio.run(_streams(platform))
        began = time.perf_counter()
        asyncio.run(_make(platform, sizes.stores, sizes.warm))
        run = Run(sizes.stores, time.perf_counter() - began)
        after, streams_after = _readings(platform), asyncio.run(_streams(platform))
        run.cpu = {name: after[name] - before.get(name, 0.0) for name in after}
        run.streams = {
            name: (count - streams_before[name][0], size - streams_before[name][1])
            for name, (count, size) in streams_after.items()
        }
        return run


WIDE = 16  # stores in flight across the replicas, where replicas are compared


@dataclass(frozen=True)
class Figures:
    default: Run  # one provisioner, the default limit of 2 stores in flight
    by_replicas: dict[int, Run]  # WIDE in flight, across this many provisioner replicas


def measure(sizes: Sizes | None = None, replicas: tuple[int, ...] = (1, 2, 3)) -> Figures:
    sizes = sizes or Sizes()
    return Figures(
        default=measure_one(sizes),
        by_replicas={n: measure_one(sizes, replicas=n, in_flight=WIDE) for n in replicas},
    )


METHOD = """\
The whole platform (`running_services`: the four services on embedded NATS and
PostgreSQL) with the simulated cluster at time scale 0, so no step waits: what is left is
the platform's own work, and the simulator's. A few stores are made first and not counted;
then the stores are asked for at once and timed until the last is ready (heard as its
`ready` event on NATS: polling the API would add the client's requests to its figures).
Each process's CPU time (user and system, from psutil) is read before and after: every
service, NATS, and PostgreSQL's postmaster with all its backends. `helm` is the
provisioners' children (the simulated cluster renders the store chart with `helm
template`), reported on its own.

The JetStream rows are what each stream's state (messages, bytes, as the server counts
them) grew by while the counted stores were made: `STORES` (events, kept 30 days) and
`WORK` (work orders, kept 7 days): a platform making N stores a day holds about 30 N times
the first and 7 N times the second, the first at most `WOOSTORE_EVENTS_STREAM_MAX_BYTES`
(1 GiB: about 55,000 stores' events) before its oldest events are dropped.

The simulator's work (its state in SQLite, the rendered manifests parsed) is in the
provisioner's figure: the real driver talks to an API server instead. To see where a
process's time goes, `py-spy record -p <pid> -f raw` while this runs.

The replicas are compared at 16 stores in flight (the limit holds across them), each in a
platform of its own. At time scale 0 no step waits, so the pipeline is bound by CPU: on
the 2 cores these figures come from, a second or third replica adds no throughput, and
running more stores side by side costs each of them more CPU. On a real cluster a store
spends its minutes waiting on pods, and replicas and the limit are what let more stores
wait at once.
"""


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _provisioners(replicas: int) -> str:
    return f"{replicas} provisioner{'s' if replicas > 1 else ''}"


def plot(figures: Figures, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: draw to a file
    import matplotlib.pyplot as plt

    replicas = list(figures.by_replicas)
    runs = [figures.by_replicas[n] for n in replicas]
    figure, (rate, cost) = plt.subplots(1, 2, figsize=(11, 4.2))
    rate.plot(replicas, [run.per_second for run in runs], "o-", label=f"{WIDE} in flight")
    rate.plot([1], [figures.default.per_second], "s", label="the default: 2 in flight")
    rate.set(xlabel="provisioner replicas", ylabel="stores a second", ylim=(0, None),
             xticks=replicas, title="Pipeline throughput (time scale 0)")  # fmt: skip
    cost.plot(replicas, [run.without_helm * 1000 for run in runs], "o-", label=f"{WIDE} in flight")
    cost.plot([1], [figures.default.without_helm * 1000], "s", label="the default: 2 in flight")
    cost.axhline(TARGET_CPU * 1000, color="red", linewidth=0.8, label="target")
    cost.set(xlabel="provisioner replicas", ylabel="CPU a store, helm excluded (ms)",
             ylim=(0, None), xticks=replicas, title="The cost of a store")  # fmt: skip
    rate.legend(fontsize="small")
    cost.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def section(figures: Figures, plot_path: Path | None = PLOT) -> str:
    default = figures.default
    shown = sorted((name for name in default.cpu if name != "helm"), key=default.per_store)
    rows = [(f"{name}: CPU a store", _ms(default.per_store(name))) for name in reversed(shown)]
    verdict = "met" if default.without_helm <= TARGET_CPU else "**not met**"
    rows += [
        (f"All of them (target ≤ {_ms(TARGET_CPU)})", f"{_ms(default.without_helm)} ({verdict})"),
        ("`helm template`, apart", _ms(default.per_store("helm"))),
        (f"Stores a second, 1 provisioner, 2 in flight ({default.stores} stores)",
         f"{default.per_second:.2f}"),
    ]  # fmt: skip
    for replicas, run in figures.by_replicas.items():
        rows.append(
            (f"Stores a second, {_provisioners(replicas)}, {WIDE} in flight ({run.stores} stores)",
             f"{run.per_second:.2f} (CPU a store, helm excluded: {_ms(run.without_helm)})")
        )  # fmt: skip
    for name, (messages, size) in default.streams.items():
        rows.append(
            (f"JetStream stream {name}: added a store",
             f"{messages / default.stores:.1f} messages, {size / default.stores / 1024:.1f} KiB")
        )  # fmt: skip
    written = "Written by `make bench` too (`bench/store_cost.py`)."
    image = ""
    if plot_path is not None:
        plot(figures, plot_path)
        image = f"![Throughput and CPU a store against replicas]({plot_path.name})\n\n"
    return f"## The cost of a store\n\n{written}\n\n{table(rows)}\n{image}{METHOD}\n"


def main() -> None:
    rewrite_section(RESULTS, section(measure()))


if __name__ == "__main__":
    main()
