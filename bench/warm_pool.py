"""``make bench``, the warm pool (issue #10): how long an owner waits for a store claimed from
the warm pool at the simulator's realistic timings (time scale 1), beside a cold start, and
how long the pool takes to fill again once a burst of claims empties it.

What it does, phase by phase, is METHOD below, which docs/benchmarks.md shows with the
figures. ``uv run python -m bench.warm_pool`` runs this part alone and prints its section.
"""

from __future__ import annotations

import asyncio
import itertools
import platform as host
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
from psycopg.rows import TupleRow

from bench.common import EventLog, Seen, percentile, table
from woostore_devstack.platform import BIN, SERVICES, Platform, running_platform
from woostore_shared.settings import Settings
from woostore_shared.topology import PERSONALISATIONS_IN_FLIGHT

CLAIMS = 20
# Segments of a claim that are WooStore's own work, not the cluster's (see breakdown).
PLATFORM_SEGMENTS = frozenset({"api", "pickup", "between", "ending", "delivery"})
AT_ONCE = PERSONALISATIONS_IN_FLIGHT
REFILL_POOL = 2  # the pool `make run` keeps
IN_FLIGHT: int = Settings.model_fields["max_stores_in_flight"].default
REAPER_INTERVAL: float = Settings.model_fields["reaper_interval_seconds"].default
COLD_STORES = IN_FLIGHT  # all start at once: none waits for a slot
TARGET_P99 = 5.0  # seconds, issue #10
POLL = 0.25  # seconds between two looks at the pool in PostgreSQL
FILL_DEADLINE = 300.0
REFILL_DEADLINE = 600.0


@dataclass(frozen=True)
class Trip:
    """One owner's new store, from just before its POST until the client read ``ready``."""

    store_id: str
    posted_at: float
    ready: Seen
    ready_in_seconds: float  # the server's: the store resource's, from its request to ready

    @property
    def seconds(self) -> float:
        return self.ready.at - self.posted_at


@dataclass(frozen=True)
class Refill:
    """A store the reaper asked for to refill the pool, in seconds after the burst."""

    asked: float
    started: float
    pooled: float


@dataclass(frozen=True)
class PoolFigures:
    claims: list[Trip]
    breakdown: list[list[tuple[str, str, float]]]  # per claim: (segment, title, seconds)
    burst: list[Trip]
    refill_seconds: float
    refills: list[Refill]
    cold: list[Trip]
    client_cpu_seconds: float
    phase_seconds: dict[str, float]

    @property
    def wall_seconds(self) -> float:
        return sum(self.phase_seconds.values())


async def own_store(api: httpx.AsyncClient, events: EventLog, name: str, origin: str) -> Trip:
    posted_at = time.time()  # the clock the services stamp their events with
    response = await api.post("/api/v1/stores", json={"name": name})
    if response.status_code != 202:
        raise RuntimeError(f"POST /stores answered {response.status_code}: {response.text}")
    store = response.json()
    if store["origin"] != origin:
        raise RuntimeError(f"{name} is a {store['origin']} store, not a {origin} one")
    ready = await events.wait_for(store["id"], "ready")
    resource = (await api.get(f"/api/v1/stores/{store['id']}")).json()
    return Trip(store["id"], posted_at, ready, resource["ready_in_seconds"])


def breakdown(trip: Trip, events: EventLog) -> list[tuple[str, str, float]]:
    """Where a claim's time went, from its events' timestamps: they add up to the time from
    the POST until the client read ``ready``."""
    seen = events.by_store[trip.store_id]
    requested = next(s for s in seen if s.kind == "requested")
    started: dict[str, Seen] = {}
    completed: dict[str, Seen] = {}
    for s in seen:
        if s.kind == "progress" and s.data["phase"] == "personalise":
            (started if s.data["state"] == "started" else completed).setdefault(
                s.data["step"]["name"], s
            )
    steps = sorted(started, key=lambda name: started[name].data["step"]["index"])
    first, last = started[steps[0]], completed[steps[-1]]
    return [
        ("api", "POST → claimed (the API's transaction)", requested.time - trip.posted_at),
        ("pickup", "claimed → first step started (work order, lane, lease)",
         first.time - requested.time),
        *(
            (name, started[name].data["step"]["title"], completed[name].time - started[name].time)
            for name in steps
        ),
        ("between", "between the steps (journal, events)",
         sum(started[b].time - completed[a].time for a, b in itertools.pairwise(steps))),
        ("ending", "last step → `ready`", trip.ready.time - last.time),
        ("delivery", "`ready` → read by the client (SSE)", trip.ready.at - trip.ready.time),
    ]  # fmt: skip


async def pooled_now(db: psycopg.AsyncConnection[TupleRow]) -> int:
    cursor = await db.execute(
        "SELECT count(*) FROM stores WHERE tenant_id IS NULL AND status = 'pooled'"
    )
    row = await cursor.fetchone()
    return row[0] if row else 0


async def refills_since(db: psycopg.AsyncConnection[TupleRow], since: float) -> list[Refill]:
    """The stores the reaper asked for after ``since``, and when each was started and pooled."""
    async with db.cursor() as cursor:
        await cursor.execute(
            "SELECT s.created_at, s.provisioning_started_at, e.time FROM stores s"
            " JOIN store_events e ON e.store_id = s.id AND e.type = 'io.woostore.store.pooled'"
            " WHERE s.tenant_id IS NULL AND s.created_at > %s ORDER BY s.created_at",
            (datetime.fromtimestamp(since, UTC),),
        )
        return [
            Refill(*(moment.timestamp() - since for moment in row))
            for row in await cursor.fetchall()
        ]


async def wait_for_pool(
    platform: Platform, db: psycopg.AsyncConnection[TupleRow], size: int, deadline: float
) -> float:
    """When PostgreSQL first showed ``size`` pooled stores."""
    give_up = time.monotonic() + deadline
    while (found := await pooled_now(db)) < size:
        platform.check_alive()
        if time.monotonic() > give_up:
            raise TimeoutError(f"the warm pool holds {found} of {size} after {deadline} s")
        await asyncio.sleep(POLL)
    return time.time()


def reconfigure(
    platform: Platform, stop: tuple[str, ...], start: tuple[str, ...], **settings: str | None
) -> None:
    """Stop services, change the platform's settings (None: back to the default), declare
    the JetStream topology for them (``woostore-setup`` changes only what differs: the
    provision lane's limit of stores in flight), start services and wait until all are
    ready."""
    for service in stop:
        platform.stop(service)
    for name, value in settings.items():
        if value is None:
            platform.env.pop(name, None)
        else:
            platform.env[name] = value
    subprocess.run([str(BIN / "woostore-setup")], env=platform.env, check=True)  # noqa: S603
    for service in start:
        platform.start(service)
    platform.wait_ready()


async def run_phases(platform: Platform, phases: dict[str, float], claims: int) -> PoolFigures:
    phase_start = time.monotonic()

    def phase_done(name: str) -> None:
        nonlocal phase_start
        phases[name] = time.monotonic() - phase_start
        phase_start = time.monotonic()

    cpu_start = time.process_time()
    async with (
        EventLog.following(platform) as events,
        await psycopg.AsyncConnection.connect(platform.postgres.url, autocommit=True) as db,
    ):
        async with httpx.AsyncClient(
            base_url=platform.api_url, headers=platform.headers, timeout=60
        ) as api:
            slots = asyncio.Semaphore(AT_ONCE)

            async def claim(n: int) -> Trip:
                async with slots:
                    return await own_store(api, events, f"Claimed {n}", "pool")

            trips = await asyncio.gather(*(claim(n) for n in range(claims)))
            phase_done("claims")

            await asyncio.to_thread(platform.start, "reaper")
            await asyncio.to_thread(platform.wait_ready)
            # The burst meets the reaper mid-rhythm, as an owner would, not at its first pass.
            await asyncio.sleep(1.5 * REAPER_INTERVAL)
            burst_at = time.time()
            burst = await asyncio.gather(
                *(own_store(api, events, f"Burst {n}", "pool") for n in range(REFILL_POOL))
            )
            refilled_at = await wait_for_pool(platform, db, REFILL_POOL, REFILL_DEADLINE)
            refills = await refills_since(db, burst_at)
            phase_done("refill")

        # The pool off at the API; the reaper stopped, or it would retire the pooled stores
        # beside the cold ones.
        await asyncio.to_thread(
            reconfigure, platform, ("api", "reaper"), ("api",), WOOSTORE_WARM_POOL_SIZE="0"
        )
        async with httpx.AsyncClient(
            base_url=platform.api_url, headers=platform.headers, timeout=60
        ) as api:
            cold = await asyncio.gather(
                *(own_store(api, events, f"Cold {n}", "cold") for n in range(COLD_STORES))
            )
        phase_done("cold")
        return PoolFigures(
            claims=trips,
            breakdown=[breakdown(trip, events) for trip in trips],
            burst=burst,
            refill_seconds=refilled_at - burst_at,
            refills=refills,
            cold=cold,
            client_cpu_seconds=time.process_time() - cpu_start,
            phase_seconds=phases,
        )


def measure(claims: int = CLAIMS, time_scale: float = 1) -> PoolFigures:
    """Every phase; the test runs them with fewer ``claims`` on a quicker simulated cluster."""
    phases: dict[str, float] = {}
    start = time.monotonic()
    fill = claims + REFILL_POOL
    with (
        tempfile.TemporaryDirectory() as folder,
        running_platform(
            Path(folder),
            WOOSTORE_LOG_LEVEL="WARNING",
            WOOSTORE_SIM_TIME_SCALE="0",
            WOOSTORE_WARM_POOL_SIZE=str(fill),
            WOOSTORE_MAX_STORES_IN_FLIGHT=str(fill + 1),  # refills leave one slot free
            WOOSTORE_REAPER_INTERVAL_SECONDS="0.5",
        ) as platform,
    ):

        async def filled() -> None:
            async with await psycopg.AsyncConnection.connect(
                platform.postgres.url, autocommit=True
            ) as db:
                await wait_for_pool(platform, db, fill, FILL_DEADLINE)

        asyncio.run(filled())
        reconfigure(
            platform,
            SERVICES,
            ("api", "provisioner", "notifier"),  # the reaper starts for the refill
            WOOSTORE_SIM_TIME_SCALE=str(time_scale),
            WOOSTORE_WARM_POOL_SIZE=str(REFILL_POOL),
            WOOSTORE_MAX_STORES_IN_FLIGHT=None,
            WOOSTORE_REAPER_INTERVAL_SECONDS=None,
        )
        phases["fill"] = time.monotonic() - start
        figures = asyncio.run(run_phases(platform, phases, claims))
    phases["stop"] = time.monotonic() - start - sum(phases.values())  # figures' own dict
    return figures


def _p50_p99(values: list[float]) -> str:
    return f"{percentile(values, 0.5):.1f} / {percentile(values, 0.99):.1f} s"


def _each(values: list[float]) -> str:
    return " and ".join(f"{value:.1f} s" for value in values)


def section(figures: PoolFigures) -> str:
    claims = [trip.seconds for trip in figures.claims]
    cold = sorted(figures.cold, key=lambda trip: trip.seconds)
    p99 = percentile(claims, 0.99)
    ratio = statistics.median(t.seconds for t in cold) / statistics.median(claims)
    delivery = [trip.ready.at - trip.ready.time for trip in figures.claims]
    mean_claim = statistics.mean(claims)
    own = statistics.mean(
        sum(seconds for name, _, seconds in claim if name in PLATFORM_SEGMENTS)
        for claim in figures.breakdown
    )
    phases = figures.phase_seconds
    rows = [
        (f"Claims measured ({AT_ONCE} at a time)", f"{len(claims)}"),
        ("Claim, POST → `ready` read by the client, p50 / p99", _p50_p99(claims)),
        (
            "Claim, the server's `ready_in_seconds`, p50 / p99",
            _p50_p99([trip.ready_in_seconds for trip in figures.claims]),
        ),
        ("Claim, slowest", f"{max(claims):.1f} s"),
        (
            "... WooStore's own part of a claim, mean (API, lane, journal, events, SSE)",
            f"{own:.2f} s of {mean_claim:.1f} s ({own / mean_claim:.1%}); the rest is cluster work",
        ),
        (
            f"Target: p99 under {TARGET_P99:.0f} s",
            "met" if p99 < TARGET_P99 else f"missed, {p99 / TARGET_P99:.1f} times over",
        ),
        (
            f"Cold start, pool off, POST → `ready` ({len(cold)} at once)",
            _each([trip.seconds for trip in cold]),
        ),
        ("... the server's `ready_in_seconds`", _each([t.ready_in_seconds for t in cold])),
        ("... cold median over claim median", f"{ratio:.1f} times"),
        (
            f"Refill of a pool of {REFILL_POOL} after a burst of {REFILL_POOL} claims emptied it",
            f"{figures.refill_seconds:.1f} s",
        ),
        ("... the reaper asked for the refills after", _each([r.asked for r in figures.refills])),
        (
            "... each refill, started → `pooled`",
            _each([r.pooled - r.started for r in figures.refills]),
        ),
        ("... the burst's claims, POST → `ready`", _each([t.seconds for t in figures.burst])),
        (
            "The client: `ready` written → read off SSE, p50 / max",
            f"{percentile(delivery, 0.5) * 1000:.0f} / {max(delivery) * 1000:.0f} ms",
        ),
        ("The client's CPU time, claims to cold", f"{figures.client_cpu_seconds:.1f} s"),
        (
            "Wall time of this part (" + ", ".join(phases) + ")",
            " + ".join(f"{s:.0f}" for s in phases.values()) + f" = {figures.wall_seconds:.0f} s",
        ),
    ]
    return (
        "## Warm pool\n\n"
        + METHOD
        + f"\n\nLast run: {time.strftime('%Y-%m-%d')} on {host.machine()}, "
        f"{host.python_implementation()} {host.python_version()}.\n\n"
        + table(rows)
        + "\n### Where a claim's time goes\n\n"
        + STEPS_INTRO
        + "\n\n"
        + steps_table(figures.breakdown)
    )


def steps_table(per_claim: list[list[tuple[str, str, float]]]) -> str:
    """Each segment's median and slowest over the claims, and its share of the mean claim."""
    titles = {name: title for name, title, _ in per_claim[0]}
    seconds = {
        name: [s for claim in per_claim for n, _, s in claim if n == name] for name in titles
    }
    total = sum(statistics.mean(values) for values in seconds.values())
    lines = [
        f"| {titles[name]} | {statistics.median(values):.2f} s | {max(values):.2f} s"
        f" | {statistics.mean(values) / total:.0%} |"
        for name, values in seconds.items()
    ]
    return (
        "| Segment | Median | Slowest | Share of the mean claim |\n|---|---|---|---|\n"
        + "\n".join(lines)
        + "\n"
    )


METHOD = f"""\
Written by `make bench` too (`bench/warm_pool.py`): how long an owner waits for a store
claimed from the warm pool, with the simulated cluster at its realistic timings
(`WOOSTORE_SIM_TIME_SCALE=1`: a cold store takes about 75 s), beside a cold start in the
same run, and how long the pool takes to fill again after a burst of claims empties it.

One platform (`running_platform`: the four services on embedded NATS and PostgreSQL), in
four phases:

1. **Fill** (not measured): the reaper fills a pool of {CLAIMS + REFILL_POOL} at time scale
   0, with a provisioning slot for each store (and the one refills leave) and a reaper pass
   every 0.5 s. A claim only needs what a pooled store *is*, which is the same at any time
   scale. Then every service is restarted with time scale 1, a pool of {REFILL_POOL}, and
   the platform's defaults for the rest ({IN_FLIGHT} stores provisioning at once, a reaper
   pass every {REAPER_INTERVAL:.0f} s), and `woostore-setup` puts the provision lane's limit
   back to {IN_FLIGHT}.
2. **Claims**: {CLAIMS} owners (the admin token) each `POST /api/v1/stores`, {AT_ONCE} at a
   time (the personalise lane's width, so none waits for a slot), and follow the store on
   the event stream until `ready`, as `woostore create --wait` does; the client's time is
   from just before the POST until it read `ready`, the server's is the store resource's
   `ready_in_seconds` (request to ready). With {CLAIMS} claims the p99 is the slowest. The
   reaper is stopped meanwhile, so no refill runs beside the claims and the pool's extra
   stores are not retired.
3. **Refill**: the reaper started and, {1.5 * REAPER_INTERVAL:.1f} s later (so the burst meets
   it between passes, not at its first), {REFILL_POOL} owners at once empty the pool, of
   `make run`'s size; PostgreSQL is read every {POLL} s until it holds {REFILL_POOL} stores `pooled`
   again (`stores.tenant_id IS NULL`), timed from just before the burst's POSTs. Refills
   share the provisioning limit and leave one slot free for owners: {IN_FLIGHT - 1} at a time
   here, each a cold store's time, after up to one reaper pass.
4. **Cold**: the API restarted with `WOOSTORE_WARM_POOL_SIZE=0` and the reaper stopped (the
   pooled stores stay, nothing else runs); {COLD_STORES} owners at once, as many as may
   provision at once, so neither waits for a slot.

The client is one asyncio process with one SSE connection; its CPU time and how late it read
each `ready` show whether it held anything up."""

STEPS_INTRO = """\
Each claim's time, split by the timestamps of its events (`requested`, each personalise
step's `started` and `completed`, `ready`) and when the client read `ready`: the segments add
up to the client's time. On the simulator each cluster operation sleeps its realistic
duration (±20 %): a WP-CLI command about 1 s, `wp search-replace` 2 s, the storefront
check 3 s, a helm upgrade that restarts nothing 3 s. WooStore's own work is the first two
and the last three rows; each row between is a personalise step, one cluster operation or
several in a row."""


if __name__ == "__main__":  # this part alone, printed: `uv run python -m bench.warm_pool`
    print(section(measure()))
