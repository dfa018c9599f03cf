"""``make bench``, the platform's footprint (issue #13): how long ``make run`` takes to be
ready with its dependencies installed, and the memory of every process it runs once the
platform is idle.

What it does is METHOD below, which docs/benchmarks.md shows with the figures.
``uv run python -m bench.footprint`` runs this part alone and rewrites its section.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

from bench.common import postgres_processes, rewrite_section, table
from woostore_devstack.embedded import free_port
from woostore_devstack.launcher import WARM_POOL_SIZE
from woostore_shared.models import StoreStatus

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "benchmarks.md"
TARGET_RSS_MB = 450  # idle make run, every process together (issue #13)
READY_LINE = "WooStore is running."
READY_SECONDS = 120.0
IDLE_SECONDS = 600.0
# After the pool is full, a little over a minute: an idle platform is one nobody has used
# for a while, and PostgreSQL has ended the sessions its services stopped using by then
# (woostore_shared.connecting.CLOSED_WHEN_IDLE, 60 s).
SETTLE_SECONDS = 70.0
MB = 1 << 20
TAIL_LINES = 40  # of make run's output, in the error when it does not get ready


@dataclass
class Usage:
    """Memory of the processes of one kind (a service, NATS, PostgreSQL's postmaster and its
    backends...), in bytes."""

    pids: list[int] = field(default_factory=list)
    rss: int = 0
    pss: int = 0
    uss: int = 0

    @property
    def processes(self) -> int:
        return len(self.pids)

    def add(self, process: psutil.Process) -> None:
        memory = process.memory_full_info()
        self.pids.append(process.pid)
        self.rss += memory.rss
        self.pss += memory.pss
        self.uss += memory.uss


@dataclass
class Figures:
    ready_seconds: float
    idle_after_seconds: float
    pooled: int
    usage: dict[str, Usage] = field(default_factory=dict)

    def total(self, measure: str) -> int:
        return sum(getattr(usage, measure) for usage in self.usage.values())


def _kind(process: psutil.Process) -> str:
    """What a process of ``make run`` is, by its command line."""
    words = process.cmdline()
    if not words:
        return process.name()
    program = Path(words[0]).name
    if program == "python" or program.startswith("python3"):
        program = Path(words[1]).name if len(words) > 1 else program
    if program == "woostore-run":
        return "launcher"
    return program.removeprefix("woostore-")


def _postmaster_pid(data_dir: Path) -> list[str]:
    """PostgreSQL's pid file: its pid, data folder, start time, port, socket folder..."""
    return (data_dir / "postgres" / "postmaster.pid").read_text().splitlines()


def _read_usage(top: psutil.Process, data_dir: Path) -> dict[str, Usage]:
    usage: dict[str, Usage] = defaultdict(Usage)
    for process in [top, *top.children(recursive=True)]:
        usage[_kind(process)].add(process)
    for process in postgres_processes(data_dir / "postgres"):
        usage["postgres"].add(process)
    return dict(usage)


def _wait_for_line(make: subprocess.Popen[str], line: str, seconds: float) -> None:
    """Read ``make run``'s output until ``line``; a thread reads on and drops the rest (a
    full pipe would stop the services' logging). Past ``seconds``, or if it ends, the error
    ends with its last lines: what it said it was waiting for.

    Lines come through a queue a thread fills, not select() and readline(): readline reads
    ahead into a buffer select() does not see, so a last line read ahead (the banner, once
    it came after every service had started) waited there for the next output, a minute or
    more later."""
    assert make.stdout is not None
    stdout = make.stdout
    lines: queue.Queue[str] = queue.Queue()
    found = threading.Event()

    def read() -> None:
        for text in stdout:
            if not found.is_set():
                lines.put(text)
        lines.put("")  # the end

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + seconds
    said: deque[str] = deque(maxlen=TAIL_LINES)
    while (left := deadline - time.monotonic()) > 0:
        try:
            text = lines.get(timeout=left)
        except queue.Empty:
            break
        if not text:
            tail = "".join(said)
            raise RuntimeError(f"make run ended ({make.wait()}) before it was ready:\n{tail}")
        if line in text:
            found.set()
            return
        said.append(text)
    raise TimeoutError(f"make run was not ready within {seconds:.0f} s:\n{''.join(said)}")


def _pool_state(data_dir: Path) -> tuple[int, int]:
    """(stores pooled, stores with work under way)."""
    port, socket_dir = _postmaster_pid(data_dir)[3:5]
    with psycopg.connect(host=socket_dir, port=port, user="postgres", dbname="postgres") as db:
        row = db.execute(
            "SELECT count(*) FILTER (WHERE status = %s),"
            " count(*) FILTER (WHERE status <> ALL(%s)) FROM stores",
            (StoreStatus.POOLED.value, [StoreStatus.POOLED.value, StoreStatus.READY.value]),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _wait_until_idle(data_dir: Path, pool: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pooled, busy = _pool_state(data_dir)
        if pooled >= pool and busy == 0:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the warm pool did not fill to {pool} within {seconds:.0f} s")


def _make_binary() -> str:
    found = shutil.which("make")
    if found is None:
        raise RuntimeError("make is not installed: this measures `make run` itself")
    return found


def measure(environment: dict[str, str] | None = None, settle: float = SETTLE_SECONDS) -> Figures:
    """``make run`` in a folder of its own, on ports of its own, otherwise as it comes (plus
    ``environment``), to ready, then to idle; its memory read; then stopped with Ctrl-C."""
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder) / "data"
        env = {
            **os.environ,
            "WOOSTORE_DATA_DIR": str(data_dir),
            "WOOSTORE_API_PORT": str(free_port()),
            "WOOSTORE_NOTIFIER_PORT": str(free_port()),
            **(environment or {}),
        }
        pool = int(env.get("WOOSTORE_WARM_POOL_SIZE", WARM_POOL_SIZE))
        began = time.monotonic()
        make = subprocess.Popen(  # noqa: S603  (our own command line)
            [_make_binary(), "--no-print-directory", "run"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, stopped as Ctrl-C would
        )
        try:
            _wait_for_line(make, READY_LINE, READY_SECONDS)
            ready = time.monotonic() - began
            _wait_until_idle(data_dir, pool, IDLE_SECONDS)
            idle = time.monotonic() - began
            time.sleep(settle)  # not a race: the platform is measured idle over this while
            usage = _read_usage(psutil.Process(make.pid), data_dir)
            return Figures(ready, idle, pool, usage)
        finally:
            os.killpg(make.pid, signal.SIGINT)
            make.wait(timeout=60)


ORDER = ("api", "provisioner", "reaper", "notifier", "launcher", "uv", "make", "nats-server",
         "postgres")  # fmt: skip

METHOD = """\
`make run` as it comes, with its dependencies installed, in a data folder and on ports of
its own. *Ready* is the launcher's banner ("WooStore is running.", printed once every
service answers `/readyz`). The platform is *idle* once its warm pool of `make run`'s size is full
and no store has work under way (read from PostgreSQL), and 70 s more have passed (the
services' idle database sessions end after 60 s, `woostore_shared.connecting.CLOSED_WHEN_IDLE`); the
simulated cluster runs at `make run`'s time scale. Then each process's resident set (RSS),
proportional set (PSS: shared pages split between the processes sharing them) and unique
set (USS) is read (psutil, `/proc/<pid>/smaps_rollup`): every process under `make`, and
PostgreSQL's postmaster with its children (it runs detached). RSS counts a page shared by
several processes once in each, so the RSS total overstates what the machine gives; PSS adds
up to it. Then Ctrl-C (SIGINT to the process group) stops it all.

Where it went down, from 455 MB RSS (347 MB PSS, measured alone) in the run before: the
services run a smaller Python (`woostore_devstack.launcher.python_options`). In runs taken
in turns, 455.1 MB RSS before and 438.4 after (USS 294.4 and 278.9):
- Every service, 1-2 MB: no column ranges in its code objects (`PYTHONNODEBUGRANGES`; Python
  drops them as it loads the bytecode, so none is compiled again). A traceback loses its
  `^^^` marks, nothing else; 5 MB in all alone.
- The provisioner, the reaper and the notifier, 2-6 MB each: `-OO`, no docstrings and no
  asserts (theirs only narrow types). The API keeps its docstrings, which its OpenAPI
  document is written from. `make install` compiles the bytecode `-OO` reads (`.opt-2.pyc`,
  about 24 MB of disk and 30 s once): without it each start compiled every module again,
  which is why `PYTHONOPTIMIZE=2` once measured 2-4 MB a service. 13 MB in all alone.

Before that, from 473 MB RSS (350 MB PSS, measured alone):
- PostgreSQL, one process fewer (65 MB RSS to 52): the reaper works on one connection, whose
  session holds its leader lock and runs its passes (`woostore_reaper/leadership.py`); it
  kept a second for its passes before. A backend is 15-19 MB of RSS, half of it its own
  (the catalog it has read, its plans).
- The launcher, 26 MB to 22: it speaks plain HTTP on the loopback and hashes nothing, so
  OpenSSL (`ssl`, `_hashlib`, with libssl and libcrypto), which asyncio and hashlib load
  whenever it is there, is kept from loading in it (`woostore_devstack/run.py`).

Before that, from 498 MB RSS (373 MB PSS):
- The notifier, 85 MB to 62: it runs its few statements (a key's lookup, tickets spent, the
  keys of open streams) in plain SQL on psycopg's connections (`woostore_notifier/database.py`),
  and never loads SQLAlchemy or the models (about 21 MB; an import-linter contract and
  `tests/shared/test_what_services_load.py` keep them out). It no longer loads yaml either.
- Each service, up to 2 MB, and ready in 3.4 s from 4.3: `make install` compiles the
  workspace's own sources (uv compiles only the libraries it installs, and these machines
  forbid Python to write its bytecode cache, so each start compiled them again).

Before that, from 535 MB RSS (401 MB PSS):
- The API and the reaper, about 7 MB each: pycountry keeps every table it reads for good
  (about 12 MB, languages and subdivisions most). The store settings' checks now read each
  table once and keep its codes as one string (`store_settings._IsoCodes`).
- The launcher, 40 MB to 26: it reads its settings in a child process
  (`woostore_devstack.settings_reader`), so pydantic, pydantic-settings and yaml never load
  in it.
- Each server, about 1 MB: uvicorn loaded wsproto and h11 for WebSocket, which no service
  speaks (`ws="none"`).

Before that, from 682 MB RSS (452 MB PSS) to 535 MB (401 MB PSS):
- PostgreSQL, 128 MB RSS in 11 processes before, each backend 15-19 MB of RSS: the pools
  took their connections in turn, so every one a burst or the warm pool's filling had
  opened was used every few seconds and kept. They now take the one given back last, and
  PostgreSQL ends a session idle 60 s (`woostore_shared.connecting.CLOSED_WHEN_IDLE`): idle,
  the reaper's two were left (its leader lock's, and the one its passes used). Most of a
  backend's RSS is the server's code and the shared memory it touched, counted again in
  each, so fewer processes lower the RSS total much more than the PSS one.
- The API, about 7 MB: cryptography loads when an owner first reads a password.
- Each service, about 4 MB: rich, installed for the CLI, is left unimported
  (`woostore_shared/unimported.py`).
- The embedded server's small settings (`SMALL_SERVER`: 16 MB of shared buffers, no I/O
  workers, no logical replication launcher), and pycountry's tables loaded by the API and
  the reaper alone.

What is left is mostly four Python processes of 60-100 MB, each with its
own copy of the interpreter, pydantic, psycopg and the NATS client (SQLAlchemy too, but for
the notifier): the issue rules out merging them. Of a service's memory, about 22 MB is
shared libraries (the interpreter, pydantic-core, psycopg's libpq and OpenSSL), counted in
each RSS; about 45 MB is Python's small objects (the code, classes and functions of some
900 modules, SQLAlchemy the largest at 7 MB of bytecode); the rest is larger allocations
(pydantic's validators among them). The provisioner loads cryptography (about 7 MB) to
encrypt credentials. Measured and not taken: autovacuum off (9 MB); `malloc_trim`
every 15 s in each service (4 MB in all: 3 in the API, 1 in the reaper, none in the
others), once when idle (2 MB); `PYTHONMALLOC=malloc` (10 MB more); `MALLOC_ARENA_MAX=2`
(nothing); `shared_buffers` 8 MB (1.3 MB); psutil kept unimported in the services
(OpenTelemetry's SDK loads it for a detector none enables: 3.6 MB, but the tests and the
embedded PostgreSQL need it in the same processes); no server-side prepared statements on the
reaper's connection (under 1 MB of its backend); the provisioner encrypting
credentials through ctypes calls into OpenSSL rather than cryptography (8 MB, hand-written
crypto); the store settings' checks finding codes in pycountry's JSON by pattern rather
than through pycountry's tables (3 MB in the API, 2 in the reaper); no uvloop (about 2 MB in
the API and the notifier, for a slower event loop). The largest single process left apart
from the services is nats-server (about 21 MB, all its own: `GOGC` changed nothing).
"""


def _mb(value: int) -> str:
    return f"{value / MB:.0f} MB"


def section(figures: Figures) -> str:
    kinds = sorted(figures.usage, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER))
    rows = [
        ("`make run` → ready (the banner)", f"{figures.ready_seconds:.1f} s"),
        (f"... → idle (warm pool of {figures.pooled} full)", f"{figures.idle_after_seconds:.1f} s"),
    ]
    for kind in kinds:
        usage = figures.usage[kind]
        count = f" ({usage.processes} processes)" if usage.processes > 1 else ""
        rows.append(
            (f"{kind}{count}: RSS / PSS / USS",
             f"{_mb(usage.rss)} / {_mb(usage.pss)} / {_mb(usage.uss)}")
        )  # fmt: skip
    rss = figures.total("rss")
    verdict = "met" if rss <= TARGET_RSS_MB * MB else "**not met**"
    rows += [
        (f"All of them, RSS (target ≤ {TARGET_RSS_MB} MB)", f"{_mb(rss)} ({verdict})"),
        ("All of them, PSS (what the machine gives them)", _mb(figures.total("pss"))),
    ]
    written = "Written by `make bench` too (`bench/footprint.py`)."
    return f"## The footprint of `make run`\n\n{written}\n\n{table(rows)}\n{METHOD}\n"


def main() -> None:
    rewrite_section(RESULTS, section(measure()))


if __name__ == "__main__":
    main()
