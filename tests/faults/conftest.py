"""Fault injection on the real platform: helpers to start it, inject faults, wait with
deadlines, and check that every store was provisioned exactly once.

Waiting polls the API (PostgreSQL, the truth), which keeps working through NATS faults.
What went out on the event stream is checked afterwards by replaying the whole stream
through the notifier's SSE endpoint, from the first sequence to the last one JetStream holds.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Iterator, Sequence
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import nats
import pytest
from httpx_sse import aconnect_sse
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError

from woostore_cluster.simulated import SimulatedCluster
from woostore_devstack.platform import Platform, running_platform
from woostore_notifier.frames import HIDDEN, LEGACY_REPLAY_HEADER

__all__ = [
    "STREAM",
    "TERMINAL",
    "TYPE",
    "WORK_STREAM",
    "Api",
    "Json",
    "Platform",
    "Records",
    "cluster_state",
    "consumer_info",
    "exactly_once_problems",
    "json_log",
    "kill_provisioner",
    "leftovers",
    "most_provisioning_at_once",
    "most_steps_running_at_once",
    "nats_client",
    "nothing_stuck",
    "outcomes",
    "reaper_totals",
    "resource_problems",
    "settled_records",
    "simulated_cluster",
    "steps_cut",
    "steps_rerun",
    "wait_for_stores",
    "wait_mid_run",
    "wait_until",
]

Json = dict[str, Any]
TYPE = "io.woostore.store."
TERMINAL = frozenset({"ready", "failed", "deleted"})
PROVISION_CONSUMER = "provision"  # on the stream WORK
WORK_STREAM = "WORK"
STREAM = "STORES"
SAMPLE_PRODUCTS = 3
_OUTCOME = pytest.StashKey[str]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_OUTCOME] = report.outcome
    return report


@pytest.fixture
def figures(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Json]:
    """What a scenario did and what came of it; appended to ``<basetemp>/figures.jsonl``
    and printed (``-rP`` shows it), for docs/reliability.md."""
    found: Json = {}
    started = time.monotonic()
    yield found
    found["outcome"] = request.node.stash.get(_OUTCOME, "error")
    found["seconds"] = round(time.monotonic() - started, 1)
    line = json.dumps({"test": request.node.name, **found}, default=str)
    with (tmp_path_factory.getbasetemp() / "figures.jsonl").open("a") as out:
        out.write(line + "\n")
    print(f"FIGURES {line}")


StartPlatform = Callable[..., Platform]  # what the start_platform fixture gives a test
IN_FLIGHT_LIMIT = 2  # WOOSTORE_MAX_STORES_IN_FLIGHT's default: the consumer's max_ack_pending


@pytest.fixture
def start_platform(
    tmp_path_factory: pytest.TempPathFactory, figures: Json
) -> Iterator[StartPlatform]:
    """Start the whole platform with extra WOOSTORE_* settings; it stops after the test, and
    the test errors then if any service process has exited meanwhile."""
    with ExitStack() as stack:

        def start(nats_nodes: int = 1, **settings: str) -> Platform:
            data_dir = tmp_path_factory.mktemp("p")  # short: PostgreSQL's socket lives in it
            figures["data_dir"] = str(data_dir)
            return stack.enter_context(running_platform(data_dir, nats_nodes, **settings))

        yield start


# -- the API ---------------------------------------------------------------------------------


class Api:
    """The REST API, with reads that ride out a restarting PostgreSQL."""

    def __init__(self, platform: Platform) -> None:
        self.client = httpx.AsyncClient(
            base_url=platform.api_url, headers=platform.headers, timeout=10
        )

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.client.aclose()

    async def get(self, path: str, deadline: float = 30) -> Any:
        give_up = time.monotonic() + deadline
        while True:
            try:
                response = await self.client.get(path)
                if response.status_code < 500:
                    response.raise_for_status()
                    return response.json()
                problem = f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as error:
                problem = repr(error)
            if time.monotonic() > give_up:
                raise AssertionError(f"GET {path} kept failing for {deadline}s: {problem}")
            await asyncio.sleep(0.5)

    async def create_store(self, name: str) -> Json:
        response = await self.client.post("/api/v1/stores", json={"name": name})
        assert response.status_code == 202, f"POST /stores: {response.status_code} {response.text}"
        store: Json = response.json()
        assert store["status"] == "queued"
        return store

    async def create_stores(self, count: int, prefix: str) -> list[Json]:
        return [await self.create_store(f"{prefix} {n}") for n in range(count)]

    async def stores(self, ids: list[str]) -> dict[str, Json]:
        listed = {s["id"]: s for s in (await self.get("/api/v1/stores?limit=500"))["items"]}
        missing = set(ids) - set(listed)
        assert not missing, f"stores vanished from the API: {sorted(missing)}"
        return {store_id: listed[store_id] for store_id in ids}

    async def all_stores(self) -> list[Json]:
        items: list[Json] = (await self.get("/api/v1/stores?limit=500"))["items"]
        return items


# -- waiting with deadlines -------------------------------------------------------------------


async def wait_until(
    probe: Callable[[], Awaitable[bool]], deadline: float, what: str, interval: float = 0.25
) -> None:
    """Poll ``probe`` until it is true; fail with ``what`` after ``deadline`` seconds."""
    give_up = time.monotonic() + deadline
    while True:
        if await probe():
            return
        if time.monotonic() > give_up:
            raise AssertionError(f"not true after {deadline}s: {what}")
        await asyncio.sleep(interval)


async def wait_for_stores(
    api: Api,
    platform: Platform,
    ids: list[str],
    deadline: float,
    done: frozenset[str] = TERMINAL,
) -> dict[str, Json]:
    """Until every store's status is in ``done``; on timeout, fail with a diagnosis."""
    give_up = time.monotonic() + deadline
    while True:
        platform.check_alive()
        now = await api.stores(ids)
        if all(store["status"] in done for store in now.values()):
            return now
        if time.monotonic() > give_up:
            stuck = [i for i in ids if now[i]["status"] not in done]
            raise AssertionError(
                f"{len(stuck)} of {len(ids)} stores not {sorted(done)} after {deadline}s\n"
                + await diagnosis(api, platform, stuck)
            )
        await asyncio.sleep(0.5)


async def diagnosis(api: Api, platform: Platform, ids: list[str]) -> str:
    """What a failure report needs: each store's state and events, the consumer, the logs."""
    lines: list[str] = []
    for store_id in ids:
        store = await api.get(f"/api/v1/stores/{store_id}")
        kinds = Counter(e["type"].removeprefix(TYPE) for e in store["events"])
        step = (store.get("step") or {}).get("name")
        lines.append(
            f"store {store_id} {store['slug']}: {store['status']} at step {step}, "
            f"reason={store['failure_reason']!r}, events={dict(kinds)}"
        )
        for log_line in log_lines(platform, store_id)[-8:]:
            lines.append(f"    {log_line[:400]}")
    try:
        info = await consumer_info(platform)
        lines.append(
            f"consumer {PROVISION_CONSUMER}: ack_pending={info.num_ack_pending} "
            f"pending={info.num_pending} redelivered={info.num_redelivered}"
        )
    except Exception as error:  # the diagnosis must not hide the failure it explains
        lines.append(f"consumer info unavailable: {error!r}")
    return "\n".join(lines)


def log_lines(platform: Platform, needle: str) -> list[str]:
    """Lines of every service log under the data dir mentioning ``needle``, by time."""
    found: list[tuple[str, str]] = []
    for path in sorted(platform.data_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if needle in line:
                try:
                    stamp = str(json.loads(line).get("timestamp", ""))
                except ValueError:
                    stamp = ""
                found.append((stamp, f"{path.stem}: {line}"))
    return [line for _, line in sorted(found, key=lambda item: item[0])]


def json_log(path: Path) -> list[Json]:
    """The structured (JSON) lines of a service log; library lines in other formats skipped."""
    records: list[Json] = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def reaper_totals(platform: Platform) -> dict[str, int]:
    """What the reaper repaired, summed from its ``reaped`` log lines."""
    keys = ("events_relayed", "replayed", "dead_letters", "failed_by_deadline")
    totals = Counter({f"reaper_{key}": 0 for key in keys})
    for line in json_log(platform.data_dir / "reaper.log"):
        if line.get("event") == "reaped":
            for key in keys:
                totals[f"reaper_{key}"] += int(line.get(key, 0))
    return dict(totals)


# -- faults -----------------------------------------------------------------------------------


def kill_provisioner(platform: Platform, name: str = "provisioner") -> None:
    """kill -9: no shutdown hook runs, in-flight messages stay unacked, leases stay held."""
    process = platform.processes.pop(name)
    assert process.poll() is None, f"{name} had exited by itself:\n{platform.log_tail(name)}"
    process.kill()
    assert process.wait(timeout=10) == -9


# -- the outcome --------------------------------------------------------------------------


async def wait_mid_run(api: Api, ids: list[str], step: int = 3) -> None:
    """Until some store is provisioning at ``step`` or later (a fault then lands mid-run)."""

    async def probe() -> bool:
        now = await api.stores(ids)
        return any(
            s["status"] == "provisioning" and (s["step"] or {}).get("index", 0) >= step
            for s in now.values()
        )

    await wait_until(probe, 30, f"a store provisioning at step {step} or later")


async def nothing_stuck(api: Api, platform: Platform, deadline: float = 30) -> None:
    """No store anywhere in a non-terminal state, and the provisioning consumer has nothing
    delivered-but-unsettled and nothing waiting."""

    async def settled() -> bool:
        info = await consumer_info(platform)
        return info.num_ack_pending == 0 and info.num_pending == 0

    await wait_until(settled, deadline, "the provisioner consumer settles (no pending messages)")
    busy = [(s["slug"], s["status"]) for s in await api.all_stores() if s["status"] not in TERMINAL]
    assert not busy, f"stores left in a non-terminal state: {busy}"


def outcomes(stores: dict[str, Json]) -> dict[str, int]:
    return dict(Counter(s["status"] for s in stores.values()))


# -- the event stream and JetStream ----------------------------------------------------------


async def nats_client(platform: Platform) -> NatsClient:
    """A connection to the platform's NATS: any node still running, in a cluster."""
    alive = [node.url for node in platform.nats_nodes if node.alive]
    return await nats.connect(alive, connect_timeout=5, max_reconnect_attempts=0)


async def consumer_info(platform: Platform, durable: str = PROVISION_CONSUMER) -> ConsumerInfo:
    client = await nats_client(platform)
    try:
        info: ConsumerInfo = await client.jetstream().consumer_info(WORK_STREAM, durable)
    finally:
        await client.close()
    return info


async def last_shown_sequence(platform: Platform) -> int:
    """The sequence of the stream's last event the notifier shows an admin. A warm-pool
    store's events are shown to nobody (``woostore_notifier.frames``): a replay waiting for
    one of those never got it, and failed at its deadline, whenever a pool refill's step was
    the newest event (the stream holds events only: lost work is sent again on WORK, never
    repeated here)."""
    client = await nats_client(platform)
    try:
        stream = client.jetstream()
        seq: int = (await stream.stream_info(STREAM)).state.last_seq
        while seq > 0:
            with suppress(NotFoundError):  # an event pruned by retention
                message = await stream.get_msg(STREAM, seq)
                tenant = json.loads(message.data or b"{}").get("tenantid")
                if LEGACY_REPLAY_HEADER not in (message.headers or {}) and tenant not in (
                    None,
                    HIDDEN,
                ):
                    return seq
            seq -= 1
    finally:
        await client.close()
    return 0


async def read_stream(platform: Platform, deadline: float = 30) -> list[tuple[int, Json]]:
    """Every event in the stream, replayed through the notifier from sequence 1."""
    last = await last_shown_sequence(platform)
    received: list[tuple[int, Json]] = []
    if last == 0:
        return received
    async with (
        asyncio.timeout(deadline),
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
        aconnect_sse(
            client,
            "GET",
            platform.events_url,
            headers=platform.headers,
            params={"last_event_id": "0"},
        ) as source,
    ):
        source.response.raise_for_status()
        async for message in source.aiter_sse():
            if not message.data:
                continue
            received.append((int(message.id), json.loads(message.data)))
            if int(message.id) >= last:
                break
    return received


@dataclass
class Records:
    """Each store as the API tells it (with its event history, from PostgreSQL), and the
    event stream as the notifier replays it."""

    stores: dict[str, Json]
    stream: list[tuple[int, Json]]

    def history(self, store_id: str) -> list[Json]:
        events: list[Json] = self.stores[store_id]["events"]
        return events

    def streamed(self, store_id: str) -> list[Json]:
        return [e for _, e in self.stream if e["subject"] == store_id]


async def settled_records(
    api: Api, platform: Platform, ids: list[str], deadline: float = 60
) -> Records:
    """Once every event recorded in PostgreSQL is also on the stream (the reaper's relay
    publishes what a writer could not, after a grace period)."""
    give_up = time.monotonic() + deadline
    while True:
        stores = {i: await api.get(f"/api/v1/stores/{i}") for i in ids}
        stream = await read_stream(platform)
        streamed = {e["id"] for _, e in stream}
        missing = [
            (store_id, e["type"].removeprefix(TYPE), e["time"])
            for store_id, store in stores.items()
            for e in store["events"]
            if e["id"] not in streamed
        ]
        if not missing:
            return Records(stores, stream)
        if time.monotonic() > give_up:
            raise AssertionError(
                f"{len(missing)} recorded events never reached the stream after {deadline}s: "
                f"{missing[:10]}"
            )
        await asyncio.sleep(1)


def exactly_once_problems(records: Records, ids: list[str], outcome: str = "ready") -> list[str]:
    """Each store ended ``outcome`` exactly once, in its history and on the stream; every
    event is on the stream once (lost work is sent again on WORK, never repeated as an
    event); history and stream hold the same events; nothing follows the outcome in the
    history but, after a failure, its clean-up."""
    problems: list[str] = []
    duplicated = [
        (e["type"].removeprefix(TYPE), e["id"])
        for e in {e["id"]: e for _, e in records.stream}.values()
        if sum(1 for _, other in records.stream if other["id"] == e["id"]) > 1
    ]
    if duplicated:
        problems.append(f"events published more than once: {duplicated[:10]}")
    other = {"ready": "failed", "failed": "ready"}.get(outcome)
    for store_id in ids:
        store = records.stores[store_id]
        history, streamed = records.history(store_id), records.streamed(store_id)
        label = f"store {store['slug']}"
        if store["status"] != outcome:
            problems.append(f"{label}: status {store['status']}, not {outcome}")
        for where, events in (("history", history), ("stream", streamed)):
            types = [e["type"].removeprefix(TYPE) for e in events]
            if types.count(outcome) != 1:
                problems.append(f"{label}: {types.count(outcome)} {outcome} events in its {where}")
            if other and other in types:
                problems.append(f"{label}: a {other} event in its {where}")
        types = [e["type"].removeprefix(TYPE) for e in history]
        if outcome in types:
            after = history[types.index(outcome) + 1 :]
            if any(not _part_of_the_clean_up(e) for e in after):
                problems.append(f"{label}: events after {outcome} in its history: {types}")
        if {e["id"] for e in history} != {e["id"] for e in streamed}:
            problems.append(f"{label}: history and stream differ")
    return problems


def _part_of_the_clean_up(event: Json) -> bool:
    kind = str(event["type"]).removeprefix(TYPE)
    return kind == "cleaned_up" or (kind == "progress" and event["data"]["phase"] == "clean_up")


def _time(event: Json) -> datetime:
    return datetime.fromisoformat(event["time"])


def most_provisioning_at_once(records: Records, ids: list[str]) -> int:
    """From the events' times, as tests/e2e does: a store provisions from its first progress
    event to its ready/failed event."""
    edges: list[tuple[datetime, int]] = []
    for store_id in ids:
        events = records.history(store_id)
        start = next((e for e in events if e["type"] == TYPE + "progress"), None)
        end = next((e for e in events if e["type"] in (TYPE + "ready", TYPE + "failed")), None)
        if start is None:
            continue  # failed before it started
        assert end is not None, f"store {store_id} never finished"
        edges += [(_time(start), +1), (_time(end), -1)]
    running = peak = 0
    for _, change in sorted(edges):  # at equal times, ends (-1) sort before starts
        running += change
        peak = max(peak, running)
    return peak


def most_steps_running_at_once(records: Records, ids: list[str], cuts: list[datetime]) -> int:
    """Stores actually being worked on at once: a step runs from its ``started`` event to the
    store's next event, or to the first of ``cuts`` (the moments the only worker was killed)
    after it, whichever comes first."""
    edges: list[tuple[datetime, int]] = []
    for store_id in ids:
        events = sorted(records.history(store_id), key=_time)
        for index, event in enumerate(events):
            if event["type"] != TYPE + "progress" or event["data"]["state"] != "started":
                continue
            if event["data"]["phase"] != "provision":
                continue  # a failed store's clean-up runs on the removal lane, not in a slot
            start = _time(event)
            ends = [_time(later) for later in events[index + 1 : index + 2]]
            ends += [cut for cut in cuts if cut > start][:1]
            if ends:
                edges += [(start, +1), (min(ends), -1)]
    running = peak = 0
    for _, change in sorted(edges):
        running += change
        peak = max(peak, running)
    return peak


def steps_cut(records: Records, ids: list[str], kills: list[datetime]) -> list[list[str]]:
    """For each kill, the steps it cut off: started by the provisioner it killed (after the
    kill before) and not finished before it."""
    cut: list[list[str]] = []
    for previous, kill in zip([datetime.min.replace(tzinfo=UTC), *kills], kills, strict=False):
        found = []
        for store_id in ids:
            before = sorted((e for e in records.history(store_id) if _time(e) < kill), key=_time)
            last = before[-1] if before else None
            if (
                last is not None
                and last["type"] == TYPE + "progress"
                and last["data"]["state"] == "started"
                and _time(last) > previous
            ):
                found.append(last["data"]["step"]["name"])
        cut.append(found)
    return cut


def steps_rerun(records: Records, ids: list[str], steps: int = 9) -> int:
    """Provision steps started more than once (work redone after an interruption)."""
    started = [
        e
        for i in ids
        for e in records.history(i)
        if e["type"] == TYPE + "progress"
        and e["data"]["phase"] == "provision"
        and e["data"]["state"] == "started"
    ]
    return len(started) - steps * len(ids)


# -- the simulated cluster --------------------------------------------------------------------


def simulated_cluster(platform: Platform) -> SimulatedCluster:
    return SimulatedCluster(
        platform.data_dir / "simcluster",
        helm_binary=platform.env["WOOSTORE_HELM_BINARY"],
        time_scale=0,
    )


@dataclass
class NamespaceState:
    labels: dict[str, str]
    objects: int
    secrets: int
    releases: list[tuple[str, str]]
    wordpress: Json | None


def cluster_state(platform: Platform) -> dict[str, NamespaceState]:
    cluster = simulated_cluster(platform)
    namespaces = cluster.namespaces()
    with closing(sqlite3.connect(cluster.state_file, timeout=30)) as db:

        def rows(query: str, namespace: str) -> list[tuple[Any, ...]]:
            return db.execute(query, (namespace,)).fetchall()

        state: dict[str, NamespaceState] = {}
        for name, labels in namespaces.items():
            wordpress = rows("SELECT state FROM wordpress WHERE namespace=?", name)
            state[name] = NamespaceState(
                labels=labels,
                objects=cluster.object_count(name),
                secrets=rows(
                    "SELECT count(*) FROM objects WHERE namespace=? AND kind='Secret'", name
                )[0][0],
                releases=[
                    (r[0], r[1])
                    for r in rows("SELECT name, status FROM releases WHERE namespace=?", name)
                ],
                wordpress=json.loads(wordpress[0][0]) if wordpress else None,
            )
        return state


def leftovers(platform: Platform, namespace: str) -> list[str]:
    """What remains of a namespace that should be gone, in any table of the cluster."""
    cluster = simulated_cluster(platform)
    found = []
    if namespace in cluster.namespaces():
        found.append("namespace")
    if cluster.object_count(namespace):
        found.append(f"{cluster.object_count(namespace)} objects")
    with closing(sqlite3.connect(cluster.state_file, timeout=30)) as db:
        for table in ("releases", "wordpress"):
            query = f"SELECT count(*) FROM {table} WHERE namespace=?"  # noqa: S608  (fixed names)
            if db.execute(query, (namespace,)).fetchone()[0]:
                found.append(f"{table} rows")
    return found


def resource_problems(
    platform: Platform, ready: Sequence[Json], gone: Sequence[Json] = ()
) -> list[str]:
    """Each ready store owns exactly one complete namespace; nothing else exists; the
    namespaces of ``gone`` stores left nothing behind."""
    state = cluster_state(platform)
    problems: list[str] = []
    expected = {f"store-{s['slug']}": s for s in ready}
    owners = Counter(ns.labels.get("woostore.io/store-id") for ns in state.values())
    for name in sorted(set(state) - set(expected)):
        problems.append(f"namespace {name} belongs to no ready store: {state[name]}")
    for name, store in expected.items():
        ns = state.get(name)
        label = f"store {store['slug']}"
        if ns is None:
            problems.append(f"{label}: namespace {name} missing")
            continue
        if owners[store["id"]] != 1:
            problems.append(f"{label}: {owners[store['id']]} namespaces labelled with its id")
        if ns.secrets != 1:
            problems.append(f"{label}: {ns.secrets} Secrets")
        if ns.releases != [("store", "deployed")]:
            problems.append(f"{label}: releases {ns.releases}")
        wp = ns.wordpress or {}
        products = wp.get("products", [])
        if len(products) != SAMPLE_PRODUCTS:
            problems.append(f"{label}: {len(products)} products: {products}")
        if not wp.get("installed") or wp.get("plugins") != ["woocommerce"]:
            problems.append(f"{label}: WordPress state {wp}")
    for store in gone:
        left = leftovers(platform, f"store-{store['slug']}")
        if left:
            problems.append(f"store {store['slug']}: left behind {left}")
    return problems
