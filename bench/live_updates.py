"""``make bench``, live updates: the notifier's event stream (``GET /api/v1/events``) followed
by thousands of clients on one notifier process while stores report progress, and a restart
of that process under them (a reconnect storm).

What it does, phase by phase, is METHOD below, which docs/benchmarks.md shows with the
figures. ``uv run python -m bench.live_updates`` runs this part alone and rewrites its own
section of docs/benchmarks.md and its plot; ``--print`` prints the section instead;
``--clients 100,300 --storm 300`` picks the scales.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import platform as host
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import psutil
from nats.js.client import JetStreamContext

from bench.common import percentile, table, with_section
from bench.sse_fleet import (
    READ_EVERY,
    RETRY_JITTER,
    Connected,
    FleetReport,
    Followed,
    Order,
    Status,
    run_baseline,
    run_fleet,
)
from woostore_devstack.embedded import REPO
from woostore_devstack.platform import Platform, running_services
from woostore_shared.events import Progress, StepInfo, make_event
from woostore_shared.models import DEFAULT_TENANT_ID, StoreStatus
from woostore_shared.topology import STREAM_NAME

SCALES = (1_000, 5_000, 10_000)
STORM_CLIENTS = 5_000
PUBLISH_SECONDS = 30.0
EVENTS_PER_SECOND = 20  # about ten stores provisioning at once
STORES_AT_ONCE = 10
CONNECTIONS_PER_FLEET = 2_500  # one client process holds this many at most
TIMED_PER_FLEET = 50  # connections per fleet that time every event
CONNECTS_IN_FLIGHT = 100  # per fleet: opening connections, not yet answered
TARGET_CLIENTS = 10_000  # the target: this many on one process,
TARGET_P99 = 0.5  # ... the 99th percentile of publish → read under this (seconds),
TARGET_RSS = 10**9  # ... the notifier's resident memory at most 1 GB,
TARGET_STORM = 30.0  # ... and after a restart all back and caught up within this (seconds)
WARM_UP_EVENTS = 2 * EVENTS_PER_SECOND  # the storm's clients read these before the restart
DRAIN_DEADLINE = 30.0  # after the last publish, for the last events to reach every client
STORM_DEADLINE = 120.0  # after the restart, for every client to be back and caught up
PROCESS_START_DEADLINE = 30.0
POLL = 0.5  # seconds between two questions to the clients while waiting on them
SAMPLE = 0.2  # seconds between two readings of the servers' resident memory
RESULTS = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "benchmarks-live-updates.png"


@dataclass(frozen=True)
class Load:
    """One scale: ``clients`` connections following the stream while events are published."""

    clients: int
    connected: int
    refused: int
    failed: int
    first_failure: str | None
    connect_seconds: float
    published: int
    publish_seconds: float
    followed: list[Followed]
    latencies: list[float]
    baseline_latencies: list[float]
    notifier_peak_rss: int
    notifier_cpu_seconds: float  # while publishing
    nats_peak_rss: int
    nats_cpu_seconds: float  # while publishing
    machine_busy_cores: float  # all processes together, while publishing
    client_cpu_seconds: float  # all fleets, from their start to their report
    client_cpu_publishing: float  # all fleets, while publishing

    @property
    def delivered(self) -> int:
        return sum(f.events for f in self.followed)

    @property
    def complete(self) -> int:
        """Clients that got every event published, each once."""
        return sum(
            1 for f in self.followed if f.events == self.published and not f.missed | f.repeated
        )


@dataclass(frozen=True)
class Storm:
    """``clients`` following the stream while the notifier restarts under them."""

    clients: int
    connected: int
    published: int
    restart_seconds: float | None  # stop → the new process ready; None: not within the deadline
    followed: list[Followed]
    restarted_at: float  # time.time() just before the stop

    def after_restart(self, moments: list[float | None]) -> list[float]:
        return [m - self.restarted_at for m in moments if m is not None]

    @property
    def reconnected(self) -> list[float]:
        return self.after_restart([f.reconnected_at for f in self.followed])

    @property
    def caught_up(self) -> list[float]:
        return self.after_restart([f.caught_up_at for f in self.followed])

    @property
    def catching_up(self) -> list[float]:
        """Each client's replay: from its reconnect until it read a live event."""
        return [
            f.caught_up_at - f.reconnected_at
            for f in self.followed
            if f.caught_up_at is not None and f.reconnected_at is not None
        ]


@dataclass(frozen=True)
class LiveFigures:
    loads: list[Load]
    storm: Storm | None
    failures: dict[str, str]  # phase → why it gave no figures
    wall_seconds: float


def raise_file_limit() -> None:
    """Every connection is a descriptor in a client and in the notifier (which inherits this
    limit: it is started after)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def stream_limits(clients: int) -> dict[str, str]:
    """The notifier's settings that let one key hold ``clients`` streams."""
    return {
        name: str(clients)
        for name in (
            "WOOSTORE_MAX_EVENT_STREAMS",
            "WOOSTORE_EVENT_STREAMS_PER_KEY",
            "WOOSTORE_TENANT_EVENT_STREAMS",
        )
    }


def receive(pipe: Connection, deadline: float) -> Any:
    if not pipe.poll(deadline):
        raise TimeoutError(f"a client process did not answer within {deadline:.0f} s")
    return pipe.recv()


class Clients:
    """The fleets (processes of SSE connections) of one phase, as one."""

    def __init__(self, platform: Platform, clients: int) -> None:
        events_url = urlsplit(platform.events_url)
        assert events_url.hostname is not None
        assert events_url.port is not None
        context = multiprocessing.get_context("spawn")  # a fresh interpreter, no loop inherited
        fleets = math.ceil(clients / CONNECTIONS_PER_FLEET)
        self.pipes: list[Connection] = []
        self.processes: list[BaseProcess] = []
        for index in range(fleets):
            # The clients shared out evenly: fleet i holds connections i, i + fleets, ...
            connections = len(range(index, clients, fleets))
            order = Order(
                host=events_url.hostname,
                port=events_url.port,
                path=events_url.path,
                token=platform.token,
                connections=connections,
                timed=min(TIMED_PER_FLEET, connections),
                connects_in_flight=CONNECTS_IN_FLIGHT,
            )
            ours, theirs = context.Pipe()
            process = context.Process(target=run_fleet, args=(order, theirs), daemon=True)
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)
        self.psutil_processes = [psutil.Process(p.pid) for p in self.processes]

    def connected(self, deadline: float) -> list[Connected]:
        return [receive(pipe, deadline) for pipe in self.pipes]

    def status(self) -> list[Status]:
        for pipe in self.pipes:
            pipe.send("status")
        return [receive(pipe, PROCESS_START_DEADLINE) for pipe in self.pipes]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(process) for process in self.psutil_processes)

    def finish(self) -> list[FleetReport]:
        for pipe in self.pipes:
            pipe.send("finish")
        return [receive(pipe, PROCESS_START_DEADLINE) for pipe in self.pipes]

    def end(self) -> None:
        for process in self.processes:
            process.join(PROCESS_START_DEADLINE)
            if process.is_alive():
                process.kill()


@contextmanager
def clients_following(platform: Platform, clients: int) -> Iterator[Clients]:
    fleets = Clients(platform, clients)
    try:
        yield fleets
    finally:
        fleets.end()


@contextmanager
def baseline_following(platform: Platform) -> Iterator[Connection]:
    """A bare NATS subscriber, in its own process, subscribed once this is entered."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=run_baseline, args=(platform.nats.url, theirs), daemon=True)
    process.start()
    try:
        receive(ours, PROCESS_START_DEADLINE)
        yield ours
    finally:
        process.join(PROCESS_START_DEADLINE)
        if process.is_alive():
            process.kill()


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds used so far by the notifier, nats-server, the clients, and the whole
    machine (which shows whether its cores were all busy: then every figure is a floor)."""

    notifier: float
    nats_server: float
    clients: float
    machine: float

    @classmethod
    def now(cls, notifier: psutil.Process, nats_server: psutil.Process, fleets: Clients) -> CpuUse:
        machine = psutil.cpu_times()
        # Linux counts guests' time in user time too, and idle and iowait are not busy.
        not_busy = ("idle", "iowait", "guest", "guest_nice")
        return cls(
            cpu_seconds(notifier),
            cpu_seconds(nats_server),
            fleets.cpu_seconds(),
            sum(machine) - sum(getattr(machine, name, 0.0) for name in not_busy),
        )

    def since(self, before: CpuUse) -> CpuUse:
        return CpuUse(
            self.notifier - before.notifier,
            self.nats_server - before.nats_server,
            self.clients - before.clients,
            self.machine - before.machine,
        )


class Peaks:
    """The highest resident memory seen of each watched process, read every SAMPLE s; a
    process is looked up anew each time, so a restarted notifier is followed too."""

    def __init__(self, watched: dict[str, Callable[[], int | None]]) -> None:
        self.watched = watched
        self.peak = dict.fromkeys(watched, 0)
        self._processes: dict[int, psutil.Process] = {}

    async def watch(self) -> None:
        while True:
            for name, pid_now in self.watched.items():
                if (pid := pid_now()) is None:
                    continue
                try:
                    process = self._processes.setdefault(pid, psutil.Process(pid))
                    self.peak[name] = max(self.peak[name], process.memory_info().rss)
                except psutil.NoSuchProcess:
                    continue  # between a stop and the next start
            await asyncio.sleep(SAMPLE)


@contextmanager
def watching(platform: Platform) -> Iterator[Peaks]:
    def notifier() -> int | None:
        process = platform.processes.get("notifier")
        return process.pid if process else None

    peaks = Peaks({"notifier": notifier, "nats": lambda: platform.nats.process.pid})
    task = asyncio.get_running_loop().create_task(peaks.watch())
    try:
        yield peaks
    finally:
        task.cancel()


class Publisher:
    """CloudEvents straight to JetStream, as the outbox publishes them: ``STORES_AT_ONCE``
    stores of the admin's tenant reporting progress, EVENTS_PER_SECOND in all, on a fixed
    schedule (a slow publish does not push the later ones back)."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.sequences: list[int] = []
        self.stop = asyncio.Event()
        self.stores = [uuid.uuid4() for _ in range(STORES_AT_ONCE)]

    async def run(self, seconds: float = math.inf) -> None:
        start = time.monotonic()
        published = 0
        while not self.stop.is_set() and published < seconds * EVENTS_PER_SECOND:
            due = start + published / EVENTS_PER_SECOND
            try:
                await asyncio.wait_for(self.stop.wait(), max(0.0, due - time.monotonic()))
                return
            except TimeoutError:
                pass  # due: publish
            await self.publish_one(published)
            published += 1

    async def publish_one(self, index: int) -> None:
        step = StepInfo(name="install", title="Install", index=1, total=3)
        event = make_event(  # stamps ``time`` now, to the microsecond: the latency's start
            Progress(
                status=StoreStatus.PROVISIONING,
                phase="provision",
                step=step,
                state="started",
                progress=(index % 100) / 100,
            ),
            store_id=self.stores[index % STORES_AT_ONCE],
            tenant_id=DEFAULT_TENANT_ID,
            correlation_id=uuid.uuid4().hex,
            source="/bench/live-updates",
        )
        ack = await self.js.publish(
            event.nats_subject,
            event.model_dump_json().encode(),
            stream=STREAM_NAME,
            headers={"Nats-Msg-Id": str(event.id)},
        )
        self.sequences.append(ack.seq)


async def wait_until(
    fleets: Clients, done: Callable[[list[Status]], bool], deadline: float
) -> float | None:
    """Ask the clients every POLL s until ``done``; how long that took, None if never."""
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        if done(await asyncio.to_thread(fleets.status)):
            return time.monotonic() - start
        await asyncio.sleep(POLL)
    return None


async def start_notifier(platform: Platform, clients: int, deadline: float = 60) -> None:
    await asyncio.to_thread(platform.start, "notifier", **stream_limits(clients))
    await asyncio.to_thread(platform.wait_ready, deadline)


async def connect(fleets: Clients, clients: int) -> list[Connected]:
    # Generous: a notifier that made a JetStream consumer per connection took seconds each.
    return await asyncio.to_thread(fleets.connected, PROCESS_START_DEADLINE + clients / 20)


async def measure_load(
    platform: Platform, js: JetStreamContext, clients: int, seconds: float
) -> Load:
    await start_notifier(platform, clients)
    notifier = psutil.Process(platform.processes["notifier"].pid)
    nats_server = psutil.Process(platform.nats.process.pid)
    try:
        with (
            watching(platform) as peaks,
            baseline_following(platform) as baseline,
            clients_following(platform, clients) as fleets,
        ):
            connected = await connect(fleets, clients)
            connected_clients = sum(c.connected for c in connected)
            publisher = Publisher(js)
            before = CpuUse.now(notifier, nats_server, fleets)
            publish_start = time.monotonic()
            await publisher.run(seconds)
            publish_seconds = time.monotonic() - publish_start
            used = CpuUse.now(notifier, nats_server, fleets).since(before)
            expected = len(publisher.sequences) * connected_clients
            await wait_until(fleets, lambda s: sum(f.events for f in s) >= expected, DRAIN_DEADLINE)
            client_cpu = fleets.cpu_seconds()
            reports = await asyncio.to_thread(fleets.finish)
            baseline.send("finish")
            baseline_latencies: list[float] = await asyncio.to_thread(
                receive, baseline, PROCESS_START_DEADLINE
            )
    finally:
        await asyncio.to_thread(platform.stop, "notifier")
    failures = [c.first_failure for c in connected if c.first_failure]
    return Load(
        clients=clients,
        connected=connected_clients,
        refused=sum(c.refused for c in connected),
        failed=sum(c.failed for c in connected),
        first_failure=failures[0] if failures else None,
        connect_seconds=max(c.seconds for c in connected),
        published=len(publisher.sequences),
        publish_seconds=publish_seconds,
        followed=[f for r in reports for f in r.connections],
        latencies=[s for r in reports for s in r.latencies],
        baseline_latencies=baseline_latencies,
        notifier_peak_rss=peaks.peak["notifier"],
        notifier_cpu_seconds=used.notifier,
        nats_peak_rss=peaks.peak["nats"],
        nats_cpu_seconds=used.nats_server,
        machine_busy_cores=used.machine / publish_seconds,
        client_cpu_seconds=client_cpu,
        client_cpu_publishing=used.clients,
    )


async def measure_storm(platform: Platform, js: JetStreamContext, clients: int) -> Storm:
    await start_notifier(platform, clients)
    try:
        with clients_following(platform, clients) as fleets:
            connected = sum(c.connected for c in await connect(fleets, clients))
            publisher = Publisher(js)
            publishing = asyncio.create_task(publisher.run())
            warm = connected * WARM_UP_EVENTS
            if (
                await wait_until(fleets, lambda s: sum(f.events for f in s) >= warm, DRAIN_DEADLINE)
                is None
            ):
                raise TimeoutError("the storm's clients did not get their first events")
            restarted_at = time.time()
            restart_start = time.monotonic()
            await asyncio.to_thread(platform.stop, "notifier")
            restart_seconds: float | None = None
            try:
                await start_notifier(platform, clients, STORM_DEADLINE)
                restart_seconds = time.monotonic() - restart_start
            except TimeoutError:
                pass  # reported; the clients' own figures say what they saw meanwhile
            await wait_until(
                fleets,
                lambda s: sum(f.caught_up for f in s) >= connected,
                STORM_DEADLINE - (time.monotonic() - restart_start),
            )
            publisher.stop.set()
            await publishing
            expected = len(publisher.sequences) * connected
            await wait_until(fleets, lambda s: sum(f.events for f in s) >= expected, DRAIN_DEADLINE)
            reports = await asyncio.to_thread(fleets.finish)
    finally:
        await asyncio.to_thread(platform.stop, "notifier")
    return Storm(
        clients=clients,
        connected=connected,
        published=len(publisher.sequences),
        restart_seconds=restart_seconds,
        followed=[f for r in reports for f in r.connections],
        restarted_at=restarted_at,
    )


async def run_phases(
    platform: Platform, scales: tuple[int, ...], storm_clients: int, seconds: float
) -> tuple[list[Load], Storm | None, dict[str, str]]:
    """Every phase, each on a fresh notifier; a phase that fails (the notifier died, the
    clients never connected) is reported as such and the others still run."""
    loads: list[Load] = []
    storm = None
    failures: dict[str, str] = {}

    def failed(phase: str, error: Exception) -> None:
        failures[phase] = f"{type(error).__name__}: {error}"
        print(f"{phase} failed: {error!r}; the notifier's log ends:", file=sys.stderr)
        print(platform.log_tail("notifier"), file=sys.stderr)

    publisher = await nats.connect(platform.nats.url, name="bench-publisher")
    try:
        js = publisher.jetstream()
        for clients in scales:
            try:
                loads.append(await measure_load(platform, js, clients, seconds))
            except (TimeoutError, RuntimeError) as error:
                failed(f"{clients:,} clients", error)
        if storm_clients:
            try:
                storm = await measure_storm(platform, js, storm_clients)
            except (TimeoutError, RuntimeError) as error:
                failed(f"reconnect storm of {storm_clients:,}", error)
    finally:
        await publisher.close()
    return loads, storm, failures


def measure(
    scales: tuple[int, ...] = SCALES,
    storm_clients: int = STORM_CLIENTS,
    seconds: float = PUBLISH_SECONDS,
) -> LiveFigures:
    start = time.monotonic()
    raise_file_limit()
    with (
        tempfile.TemporaryDirectory() as folder,
        # NATS, PostgreSQL (the notifier checks keys there) and the topology; the notifier is
        # started by each phase, with limits for its clients.
        running_services(Path(folder), (), {"WOOSTORE_LOG_LEVEL": "WARNING"}) as platform,
    ):
        loads, storm, failures = asyncio.run(run_phases(platform, scales, storm_clients, seconds))
    return LiveFigures(loads, storm, failures, time.monotonic() - start)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def _p50_p99(latencies: list[float]) -> str:
    if not latencies:
        return "none read"
    return f"{_ms(percentile(latencies, 0.5))} / {_ms(percentile(latencies, 0.99))}"


def _mb(size: int) -> str:
    return f"{size / 10**6:.0f} MB"


def _ratio(latencies: list[float], baseline: list[float]) -> str:
    if not latencies or not baseline:
        return "n/a"
    return f"{percentile(latencies, 0.99) / percentile(baseline, 0.99):.1f} times"


def _load_rows(load: Load) -> list[str]:
    expected = load.published * load.connected
    cpu_share = load.notifier_cpu_seconds / load.publish_seconds
    fleets = math.ceil(load.clients / CONNECTIONS_PER_FLEET)
    refused = f"{load.refused} refused, {load.failed} failed"
    if load.first_failure:
        refused += f" (first: {load.first_failure})"
    return [
        f"{load.connected:,}",
        refused,
        f"{load.connect_seconds:.1f} s",
        f"{load.published} in {load.publish_seconds:.1f} s",
        f"{load.delivered:,} of {expected:,}",
        f"{load.complete:,} of {load.clients:,}",
        _p50_p99(load.latencies),
        _p50_p99(load.baseline_latencies),
        _ratio(load.latencies, load.baseline_latencies),
        _mb(load.notifier_peak_rss),
        f"{load.notifier_cpu_seconds:.1f} s ({cpu_share:.0%} of a core)",
        _mb(load.nats_peak_rss),
        f"{load.nats_cpu_seconds:.1f} s",
        f"{load.client_cpu_publishing:.1f} s while publishing "
        f"({load.client_cpu_publishing / load.publish_seconds / fleets:.0%} of a core each); "
        f"{load.client_cpu_seconds:.1f} s in all; {fleets} process{'es' if fleets > 1 else ''}",
        f"{load.machine_busy_cores:.1f} of {psutil.cpu_count()}",
    ]


LOAD_MEASURES = [
    "Clients connected and following",
    "... connections refused / failed",
    "... time to connect them all",
    f"Events published ({EVENTS_PER_SECOND} a second)",
    "Events read, of published times connected",
    "Clients that read every event, once",
    "Publish → read by an SSE client, p50 / p99",
    "Publish → read by a bare NATS subscriber (baseline), p50 / p99",
    "... SSE p99 over baseline p99",
    "Notifier's peak resident memory",
    "Notifier's CPU while publishing",
    "nats-server's peak resident memory",
    "nats-server's CPU while publishing",
    "Client processes' CPU",
    "Cores busy while publishing, all processes",
]


def load_table(loads: list[Load]) -> str:
    columns = [_load_rows(load) for load in loads]
    head = "| Measure | " + " | ".join(f"{load.clients:,} clients" for load in loads) + " |"
    rule = "|---|" + "---|" * len(loads)
    lines = [
        f"| {measure} | " + " | ".join(column[row] for column in columns) + " |"
        for row, measure in enumerate(LOAD_MEASURES)
    ]
    return "\n".join([head, rule, *lines]) + "\n"


def target_verdict(loads: list[Load]) -> str:
    at_target = next((load for load in loads if load.clients == TARGET_CLIENTS), None)
    if at_target is None:
        return f"not measured: no run at {TARGET_CLIENTS:,} clients"
    misses = []
    if at_target.complete < TARGET_CLIENTS:
        misses.append(f"{at_target.complete:,} clients read every event")
    if not at_target.latencies:
        misses.append("no latency measured")
    elif (p99 := percentile(at_target.latencies, 0.99)) >= TARGET_P99:
        misses.append(f"p99 {p99 / TARGET_P99:.1f} times the target")
    if at_target.notifier_peak_rss > TARGET_RSS:
        misses.append(f"memory {at_target.notifier_peak_rss / TARGET_RSS:.1f} times the target")
    return "met" if not misses else "missed: " + ", ".join(misses)


def _spread(seconds: list[float]) -> str:
    if not seconds:
        return "none"
    return f"{statistics.median(seconds):.1f} / {max(seconds):.1f} s"


def storm_table(storm: Storm) -> str:
    followed = storm.followed
    complete = sum(1 for f in followed if f.events == storm.published and not f.missed | f.repeated)
    back_in_time = sum(1 for s in storm.caught_up if s <= TARGET_STORM)
    everyone = len(storm.caught_up) == storm.clients and back_in_time == storm.clients
    missed = sum(f.missed for f in followed)
    verdict = (
        "met"
        if everyone and complete == storm.clients
        else f"missed: {back_in_time:,} of {storm.clients:,} back and caught up in time, "
        f"{complete:,} read every event once"
    )
    rows = [
        ("Clients connected and following", f"{storm.connected:,} of {storm.clients:,}"),
        (
            "Notifier restart, stop → the new process ready",
            f"not within {STORM_DEADLINE:.0f} s"
            if storm.restart_seconds is None
            else f"{storm.restart_seconds:.1f} s",
        ),
        ("Clients reconnected", f"{len(storm.reconnected):,}"),
        ("... restart → reconnected, median / slowest", _spread(storm.reconnected)),
        ("... restart → caught up (read an event published after it came back)",
         _spread(storm.caught_up)),
        ("... reconnected → caught up (its replay), median / slowest", _spread(storm.catching_up)),
        ("Reconnect attempts / refused / failed (all clients)",
         f"{sum(f.reconnect_attempts for f in followed):,} / "
         f"{sum(f.refused_reconnects for f in followed):,} / "
         f"{sum(f.failed_reconnects for f in followed):,}"),
        ("... why they failed (each client's first failure: clients)", _failures(followed)),
        (f"Events published ({EVENTS_PER_SECOND} a second, throughout)", f"{storm.published}"),
        ("Clients that read every event, once", f"{complete:,} of {storm.clients:,}"),
        ("Events missed, all clients together", f"{missed:,}"),
        ("Events read twice, all clients together", f"{sum(f.repeated for f in followed):,}"),
        ("`refetch` events (a resume the notifier could not serve)",
         f"{sum(f.refetches for f in followed):,}"),
        (f"Target: all back and caught up within {TARGET_STORM:.0f} s, none missing an event",
         verdict),
    ]  # fmt: skip
    return table(rows)


def _failures(followed: list[Followed]) -> str:
    reasons = Counter(f.reconnect_failure for f in followed if f.reconnect_failure)
    return "; ".join(f"{why}: {count:,}" for why, count in reasons.most_common(3)) or "none"


def plot(loads: list[Load], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: draw to a file
    import matplotlib.pyplot as plt

    clients = [load.clients for load in loads]
    figure, (latency, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, per_load, style in (
        ("SSE", [load.latencies for load in loads], "o-"),
        ("NATS baseline", [load.baseline_latencies for load in loads], "s--"),
    ):
        for share, shade in ((0.5, 0.5), (0.99, 1.0)):
            values = [percentile(v, share) * 1000 if v else math.nan for v in per_load]
            latency.plot(clients, values, style, alpha=shade, label=f"{name} p{share * 100:.0f}")
    latency.axhline(TARGET_P99 * 1000, color="red", linewidth=0.8, label="target p99")
    latency.set(xlabel="clients", ylabel="publish → read (ms)", yscale="log",
                title="Event latency")  # fmt: skip
    latency.legend(fontsize="small")
    memory.plot(clients, [load.notifier_peak_rss / 10**6 for load in loads], "o-",
                label="notifier peak RSS")  # fmt: skip
    memory.plot(clients, [load.nats_peak_rss / 10**6 for load in loads], "s--",
                label="nats-server peak RSS")  # fmt: skip
    memory.axhline(TARGET_RSS / 10**6, color="red", linewidth=0.8, label="target")
    memory.set(xlabel="clients", ylabel="MB", title="Memory")
    cpu = memory.twinx()
    cpu.plot(clients, [100 * load.notifier_cpu_seconds / load.publish_seconds for load in loads],
             "^:", color="grey", label="notifier CPU (% of a core)")  # fmt: skip
    cpu.set_ylabel("% of one core while publishing")
    handles = memory.get_legend_handles_labels()
    more = cpu.get_legend_handles_labels()
    memory.legend(handles[0] + more[0], handles[1] + more[1], fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def section(figures: LiveFigures, plot_path: Path | None = PLOT) -> str:
    """The section of docs/benchmarks.md; draws the plot to ``plot_path`` unless None."""
    parts = [
        "## Live updates\n\n",
        METHOD,
        f"\n\nLast run: {time.strftime('%Y-%m-%d')} on {host.machine()} "
        f"({psutil.cpu_count()} cores), {host.python_implementation()} "
        f"{host.python_version()}; wall time {figures.wall_seconds:.0f} s.\n\n",
    ]
    if figures.loads:
        parts += [
            "### Clients following the stream\n\n",
            load_table(figures.loads),
            f"\nTarget ({TARGET_CLIENTS:,} clients on one process, p99 under "
            f"{TARGET_P99 * 1000:.0f} ms, at most {TARGET_RSS / 10**9:.0f} GB): "
            f"{target_verdict(figures.loads)}.\n",
        ]
        if plot_path is not None:
            plot(figures.loads, plot_path)
            parts.append(f"\n![Latency and memory by clients]({plot_path.name})\n")
    if figures.storm is not None:
        parts += [
            f"\n### Reconnect storm: the notifier restarted under {figures.storm.clients:,} "
            "clients\n\n",
            storm_table(figures.storm),
        ]
    if figures.failures:
        parts.append("\n### Phases without figures\n\n")
        parts += [f"- {phase}: {reason}\n" for phase, reason in figures.failures.items()]
    return "".join(parts)


METHOD = f"""\
Written by `make bench` too (`bench/live_updates.py`, the clients in `bench/sse_fleet.py`):
how many clients one notifier process carries on `GET /api/v1/events`, how late they read
each event, what that costs the notifier, and what happens when it restarts under them.

NATS, PostgreSQL and `woostore-setup` from `running_platform`, and only the notifier: each
phase starts a fresh notifier process whose stream limits (`WOOSTORE_MAX_EVENT_STREAMS`,
`WOOSTORE_EVENT_STREAMS_PER_KEY`, `WOOSTORE_TENANT_EVENT_STREAMS`) equal its clients.

- **Clients**: processes of their own, {CONNECTIONS_PER_FLEET:,} connections at most in each,
  all on raw asyncio protocols (no HTTP library per connection), opened {CONNECTS_IN_FLIGHT}
  at a time per process, all with the admin token, so all follow the whole stream. Each
  connection keeps only what it needs to check it got every event once: it reads the `id:`
  lines of complete frames and checks each event's is the last plus one (an id with no
  data, the first frame's or a ping's, is where the stream is: none may be skipped), and it
  reads its socket every {READ_EVERY} s, not at each frame: the kernel holds the frames
  meanwhile, so the notifier's work is the same, while a read of several frames costs the
  client little more than a read of one (at {EVENTS_PER_SECOND} events a second, reads are
  what a client's CPU goes on). Up to
  {TIMED_PER_FLEET} connections per process also time every event: from the CloudEvent's
  `time`, stamped to the microsecond by the publisher just before it publishes, to the
  moment the frame was read (one clock: one machine). Their CPU time is reported, to show
  whether they, not the notifier, were the limit.
- **Publisher**: once every client is connected, progress events of {STORES_AT_ONCE} stores of
  the admin's tenant straight to JetStream (stream `STORES`, subject
  `store.progress.<id>`, with `Nats-Msg-Id`), as the outbox publishes them,
  {EVENTS_PER_SECOND} a second on a fixed schedule (about ten stores provisioning at once).
  Then the clients are given {DRAIN_DEADLINE:.0f} s to read the last ones.
- **Baseline**: a bare NATS core subscriber on `store.>`, in its own process, times the same
  events in the same run: the floor the notifier adds its work to. The SSE p99 is compared
  to it as a ratio, as these machines are noisy.
- **Server figures**: the notifier's and nats-server's resident memory, read every
  {SAMPLE} s from connecting to the end (the peak), and the notifier's CPU seconds while
  publishing, also as a share of one core.
- **Reconnect storm**: clients connected and following, publishing throughout; after each
  read {WARM_UP_EVENTS} events the notifier process is stopped and started again. Each client
  comes back as EventSource does, after the stream's `retry:` (2 to 5 s, at random)
  plus up to {RETRY_JITTER:.0%} jitter, with `Last-Event-ID` its last id, and tries
  again as often as it must; one that times nothing sees the drop at its next read, up to
  {READ_EVERY} s late. A client is *caught up* once it reads an event published after it
  came back (it reads every frame as it comes until then); its ids must follow each other
  across the restart."""


def clients_list(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.live_updates",
        description="The notifier's event stream under many clients. Rewrites its own "
        "section of docs/benchmarks.md and its plot, unless --print.",
    )
    parser.add_argument(
        "--clients",
        type=clients_list,
        default=SCALES,
        help="clients at each scale, comma-separated "
        f"(default: {','.join(str(n) for n in SCALES)})",
    )
    parser.add_argument(
        "--storm",
        type=int,
        default=STORM_CLIENTS,
        help="clients for the reconnect storm, 0 for none (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=PUBLISH_SECONDS,
        help="seconds of publishing at each scale (default: %(default)s)",
    )
    parser.add_argument(
        "--print",
        action="store_true",
        help="print the section; write neither docs/benchmarks.md nor the plot",
    )
    arguments = parser.parse_args()
    figures = measure(arguments.clients, arguments.storm, arguments.seconds)
    if arguments.print:
        print(section(figures, plot_path=None))
    else:
        RESULTS.write_text(with_section(RESULTS.read_text(), section(figures)))
        print(f"wrote its section of {RESULTS} and {PLOT}")


if __name__ == "__main__":
    main()
