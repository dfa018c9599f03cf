"""``woostore-run`` (what ``make run`` calls): the whole platform on one machine.

1. Reuses or creates the admin token and secret key (kept in the data folder, mode 0600).
2. Starts embedded NATS (JetStream on disk, fsync always) and PostgreSQL under the data
   folder, unless WOOSTORE_NATS_URL / WOOSTORE_DATABASE_URL point elsewhere; either is
   started again whenever it dies.
3. Migrates the database and declares the JetStream topology (``woostore-setup``).
4. Runs the four services as separate processes with prefixed logs, until Ctrl-C (or SIGTERM,
   or the terminal hanging up). A service that exits is started again after a growing delay;
   one that keeps exiting stops the whole platform, saying why.

One launcher runs on a data folder at a time: a second is refused, naming the first. Nor
does it start while another program holds the API's or the notifier's port. What an earlier
launcher killed outright left running on the folder is stopped first.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from woostore_devstack.embedded import (
    STORE_CHART,
    TOOLS_BIN,
    NatsServer,
    Postgres,
    free_port,
    start_nats,
    start_postgres,
)
from woostore_devstack.settings_reader import LaunchSettings, read_settings

SERVICES = ("api", "provisioner", "reaper", "notifier")
_COLOURS = {"api": 36, "provisioner": 35, "reaper": 33, "notifier": 32}
_STOP_GRACE = 15.0
_PROC = Path("/proc")
_EXEC_SECONDS = 1.0  # for a process just started to have a command line (it takes ms)
READY_NOTICE_SECONDS = 30.0  # how often make run says what it still waits for
# A new store on `make run` comes from the warm pool in seconds; 0 turns the pool off.
WARM_POOL_SIZE = 2
# What stops the platform as Ctrl-C does: SIGTERM (`kill`, a supervisor, or make passing its
# own on) and SIGHUP (the terminal closed, an SSH session dropped). Left to their default
# they ended the launcher alone, and the services, PostgreSQL and NATS ran on without it.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def hold_data_dir(data_dir: Path) -> TextIO:
    """Hold ``data_dir`` for this launcher's life (the lock goes with the process, however it
    ends). A second launcher on the folder would start its services beside the first's, on
    the same ports and the same PostgreSQL, and the two would fight over every store."""
    lock = (data_dir / "woostore-run.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise SystemExit(
            f"woostore-run: another woostore-run (pid {holder}) runs on {data_dir}; stop it "
            "first, or give this one a folder of its own (WOOSTORE_DATA_DIR)"
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


class Started:
    """The processes this launcher started, with their command lines, kept in the data folder
    (``woostore-run.pids``). A launcher killed outright (SIGKILL, the OOM killer) cannot stop
    them: the services run in sessions of their own, and NATS is never told to stop. The next
    launcher on the folder stops them (:meth:`stop_leftovers`) before it starts its own: the
    ports would be taken, and a second NATS on the same JetStream folder would damage the
    streams."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "woostore-run.pids"
        self.processes: dict[str, tuple[int, str]] = {}  # name -> (pid, command line)

    def add(self, name: str, pid: int) -> None:
        """Record a process just started, by its command line once its exec is done."""
        self.processes[name] = (pid, _command_line_once_started(pid))
        self.path.write_text(json.dumps(self.processes))

    def stop_leftovers(self, grace: float = _STOP_GRACE) -> list[str]:
        """Stops what the last launcher recorded and still runs as it started it (the same
        command line: not a process that took a freed pid); the names of those stopped."""
        if not self.path.exists():
            return []
        recorded: dict[str, tuple[int, str]] = json.loads(self.path.read_text())
        # A line never read (no /proc: not Linux) identifies nothing: such a pid is left alone.
        left = {
            name: pid
            for name, (pid, line) in recorded.items()
            if line and _command_line(pid) == line
        }
        for pid in left.values():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(_command_line(pid) for pid in left.values()):
            if time.monotonic() > deadline:
                for pid in left.values():
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        self.path.unlink()
        return sorted(left)


def _command_line_once_started(pid: int) -> str:
    """The command line of a process whose start has just returned. The kernel gives it one
    late in the exec, after Popen has returned: read at once, it was empty in about 1 start
    in 25 on idle cores and 9 in 10 on busy ones, and a leftover recorded so was never
    stopped.
    Not the argv it was given: a script's is its interpreter's. "" if it ended meanwhile,
    or where there is no /proc."""
    give_up = time.monotonic() + _EXEC_SECONDS
    while not (line := _command_line(pid)) and _PROC.exists() and time.monotonic() < give_up:
        time.sleep(0.001)
    return line


def _command_line(pid: int) -> str:
    """Its command line, or "" once it has ended (a zombie's is empty too)."""
    try:
        return (_PROC / str(pid) / "cmdline").read_text()
    except OSError:
        return ""


def ports_taken(settings: LaunchSettings) -> list[str]:
    """The API's and the notifier's addresses another program listens on already, each with
    the setting that moves it. Without this a taken port (8000 is many a dev server's) made
    the service exit at start, again and again, for half a minute before the launcher gave up.
    Each address the host names is tried as the service will bind it (``localhost``: IPv4 and
    IPv6); any error but "in use" is left for the service to report."""
    taken = []
    for variable, host, port in (
        ("WOOSTORE_API_PORT", settings.api_host, settings.api_port),
        ("WOOSTORE_NOTIFIER_PORT", settings.notifier_host, settings.notifier_port),
    ):
        if any(_in_use(address) for address in _addresses(host, port)):
            taken.append(f"{host}:{port} (set {variable} to move it)")
    return taken


def _addresses(host: str, port: int) -> list[tuple[socket.AddressFamily, Any]]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return []
    return [(family, address) for family, _, _, _, address in found]


def _in_use(address: tuple[socket.AddressFamily, Any]) -> bool:
    family, where = address
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: a port left in TIME_WAIT by an earlier run is not taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            probe.bind(where)
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def load_or_create_secrets(data_dir: Path) -> dict[str, str]:
    """Generated once, then reused, so a second ``make run`` keeps the same token."""
    path = data_dir / "secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    # Hex, not URL-safe base64: a token beginning with "-" would be taken for an option by a
    # shell command's parser (`woostore --token -x…`).
    values = {"admin_token": secrets.token_hex(32), "secret_key": secrets.token_urlsafe(32)}
    path.touch(mode=0o600)
    path.write_text(json.dumps(values))
    return values


def service_environment(
    settings: LaunchSettings, nats_url: str, database_url: str
) -> dict[str, str]:
    data_dir = settings.data_dir
    stored = load_or_create_secrets(data_dir)
    env = dict(os.environ)
    env.update(
        # The checkout's helm first on PATH, put there by the launcher itself, not only by
        # make: started as `.venv/bin/woostore-run`, the provisioner found no helm, and out
        # of the checkout the reaper found no chart; either stopped the platform.
        PATH=os.pathsep.join([str(TOOLS_BIN), env.get("PATH", os.defpath)]),
        WOOSTORE_DATA_DIR=str(data_dir),
        WOOSTORE_NATS_URL=nats_url,
        WOOSTORE_DATABASE_URL=database_url,
        WOOSTORE_ADMIN_TOKEN=settings.admin_token or stored["admin_token"],
        WOOSTORE_SECRET_KEY=settings.secret_key or stored["secret_key"],
    )
    env.setdefault("WOOSTORE_STORE_CHART", str(STORE_CHART))
    env.setdefault("WOOSTORE_WARM_POOL_SIZE", str(WARM_POOL_SIZE))
    # No proxy stands before this API: its clients connect from loopback themselves, and
    # trusting loopback (the services' default, for a proxy beside the API) let any of them
    # write another address into the audit log (a user's review).
    env.setdefault("WOOSTORE_FORWARDED_ALLOW_IPS", "")
    if sys.stderr.isatty():
        env.setdefault("WOOSTORE_LOG_FORMAT", "console")
    return env


async def _relay_output(name: str, stream: asyncio.StreamReader) -> None:
    prefix = f"{name:>11} | "
    if sys.stdout.isatty():
        prefix = f"\x1b[{_COLOURS.get(name, 37)}m{name:>11} |\x1b[0m "

    async for line in stream:
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def wait_until_ready(name: str, url: str, notice_every: float = READY_NOTICE_SECONDS) -> None:
    """Until ``url`` (service ``name``'s /readyz) answers 200, saying every ``notice_every``
    seconds what it answers meanwhile: a slow start is never a silent one."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    notice_at = began + notice_every
    while True:
        ready, answer = await asyncio.to_thread(_look_at, url)
        if ready:
            return
        if loop.time() >= notice_at:
            _say(f"the {name} is not ready after {loop.time() - began:.0f} s: {answer}")
            notice_at += notice_every
        await asyncio.sleep(0.2)


async def when_all_ready(urls: dict[str, str], notice_every: float = READY_NOTICE_SECONDS) -> None:
    """Until every service's /readyz (``urls``, by name) answers 200. Every one, not the
    API's alone: a service restarting in a loop (helm missing, say) would otherwise sit
    under a banner saying WooStore runs."""
    await asyncio.gather(*(wait_until_ready(name, url, notice_every) for name, url in urls.items()))


def _look_at(url: str) -> tuple[bool, str]:
    """One look at a readiness endpoint: whether it is ready, and if not, what it said. The
    standard library's client, not httpx: the launcher stays resident as long as the platform,
    and httpx with what it imports would add about 7 MB to it (bench/footprint.py) for these
    few requests at start."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own http URL)
            return bool(response.status == 200), ""
    except urllib.error.HTTPError as error:  # an error status: the body names what fails
        return False, f"{error.code} {error.read().decode(errors='replace')[:200]}"
    except OSError as error:  # refused or timed out
        return False, str(error)


@dataclass(frozen=True)
class RestartPolicy:
    """How a service that exited is started again: after a delay that doubles from
    ``first_delay`` up to ``longest_delay`` (back to the first once it ran ``healthy_after``
    seconds), until it has exited more than ``max_crashes`` times within ``window`` seconds:
    then the launcher gives up and stops, as restarting would not help."""

    first_delay: float = 1.0
    longest_delay: float = 30.0
    healthy_after: float = 60.0
    max_crashes: int = 5
    window: float = 300.0


@dataclass
class Restarts:
    """``policy`` kept for one process (a service, a server): when it ended lately, and how
    long it waits before its next start."""

    policy: RestartPolicy
    ends: list[float] = field(default_factory=list)
    started: float = 0.0
    delay: float | None = None  # the policy's first at its first end

    def ended(self, now: float) -> float | None:
        """It ended at ``now``: the delay before it starts again, or None if it ended more
        than ``max_crashes`` times within the window (``ends`` counts them)."""
        if self.delay is None or now - self.started >= self.policy.healthy_after:
            self.delay = self.policy.first_delay
        self.ends = [at for at in self.ends if now - at < self.policy.window] + [now]
        if len(self.ends) > self.policy.max_crashes:
            return None
        wait, self.delay = self.delay, min(self.delay * 2, self.policy.longest_delay)
        return wait


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None  # the one running now, if any
    relays: list[asyncio.Task[None]] = field(default_factory=list)
    started: Started | None = None  # where each process it starts is recorded

    async def start(self) -> asyncio.subprocess.Process:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the launcher only; it stops the services
        )
        assert self.process.stdout is not None  # piped
        if self.started is not None:
            self.started.add(self.name, self.process.pid)
        self.relays.append(asyncio.create_task(_relay_output(self.name, self.process.stdout)))
        return self.process


def _said(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


async def keep_running(service: Service, policy: RestartPolicy, stopping: asyncio.Event) -> str:
    """Runs ``service``, starting it again whenever it exits, until ``stopping`` is set
    (then returns ""), or until it keeps crashing (then returns why)."""
    loop = asyncio.get_running_loop()
    restarts = Restarts(policy)
    while not stopping.is_set():
        restarts.started = loop.time()
        process = await service.start()
        exited = asyncio.ensure_future(process.wait())
        told = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({exited, told}, return_when=asyncio.FIRST_COMPLETED)
        told.cancel()
        if not exited.done():
            exited.cancel()
            return ""  # the caller stops it
        delay = restarts.ended(loop.time())
        if delay is None:
            return (
                f"{service.name} {_said(exited.result())}, its {len(restarts.ends)}th exit "
                f"within {policy.window:g} s"
            )
        _say(f"{service.name} {_said(exited.result())}; starting it again in {delay:g} s")
        with suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
    return ""


async def supervise(
    services: list[Service],
    policy: RestartPolicy,
    stopping: asyncio.Event,
    when_ready: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> int:
    """Keeps every service running until ``stopping`` is set (0) or one keeps crashing (1),
    then stops them all. ``when_ready`` runs once, alongside."""
    keepers = {asyncio.create_task(keep_running(s, policy, stopping)): s for s in services}
    ready = asyncio.create_task(when_ready()) if when_ready else None
    done, _ = await asyncio.wait(keepers, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    for task in done:
        if task.result():
            _say(f"{task.result()}; stopping everything")
            status = 1
    stopping.set()
    await asyncio.gather(*keepers)
    if ready is not None:
        ready.cancel()
    running = [s.process for s in services if s.process and s.process.returncode is None]
    for process in running:
        process.terminate()
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), _STOP_GRACE)
    except TimeoutError:
        for process in running:
            if process.returncode is None:
                process.kill()
                await process.wait()
    await asyncio.gather(*(r for s in services for r in s.relays), return_exceptions=True)
    return status


@dataclass(frozen=True)
class Kept:
    """A server ``make run`` started itself (NATS, PostgreSQL), which it starts again,
    where it was and on its data, whenever it ends."""

    name: str  # as the operator reads it: "NATS"
    ended: Callable[[], str | None]  # how it ended ("was killed by SIGKILL"); None: it runs
    start_again: Callable[[], None]


def kept_nats(nats: NatsServer, started: Started) -> Kept:
    def ended() -> str | None:
        code = nats.process.poll()
        return None if code is None else _said(code)

    def start_again() -> None:
        nats.restart()
        started.add("nats-server", nats.process.pid)

    return Kept("NATS", ended, start_again)


def kept_postgres(postgres: Postgres) -> Kept:
    # The postmaster is no child of the launcher (pg_ctl starts it detached): how it ended
    # is not known, only that it did.
    return Kept("PostgreSQL", lambda: None if postgres.running else "stopped", postgres.restart)


# A server that died is started again after half a second, then, dying again, after a
# growing delay; one that ends a sixth time within five minutes (a start that fails ends it
# too: a killed postmaster's backends may still hold its memory) stops the platform, saying
# why: about 15 s of failed starts, or six deaths.
EMBEDDED_RESTARTS = RestartPolicy(first_delay=0.5, longest_delay=8.0)


async def keep_embedded_running(
    kept: list[Kept],
    stopping: asyncio.Event,
    policy: RestartPolicy = EMBEDDED_RESTARTS,
    every: float = 0.5,
) -> str:
    """Starts each of ``kept`` again whenever it ends, as ``policy`` says, until
    ``stopping`` is set (then returns ""), or until one keeps ending (then stops the
    platform and returns why). Each died unnoticed before: every service said `nats
    unreachable`, or answered 503 naming the database, until Ctrl-C."""
    keeping = [_Keeping(part, Restarts(policy)) for part in kept]
    while not stopping.is_set():
        with suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every)
        for one in keeping:
            if stopping.is_set():
                break
            if why := await one.look(stopping):
                stopping.set()
                return why
    return ""


@dataclass
class _Keeping:
    """One server kept running, under its restarts' policy."""

    part: Kept
    restarts: Restarts

    async def look(self, stopping: asyncio.Event) -> str:
        """Starts the server again if it ended; why to give up if it keeps ending."""
        how = self.part.ended()
        if how is None:
            return ""
        loop = asyncio.get_running_loop()
        delay = self.restarts.ended(loop.time())
        if delay is None:
            ends, window = len(self.restarts.ends), self.restarts.policy.window
            return f"{self.part.name} {how}, its {ends}th end within {window:g} s"
        _say(f"{self.part.name} {how}; starting it again on its data in {delay:g} s")
        with suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
        self.restarts.started = loop.time()
        try:
            await asyncio.to_thread(self.part.start_again)
        except Exception as error:  # said; it has not started, so it ends again
            _say(f"{self.part.name} did not start: {error}")
        return ""


# Python as each service runs it here, each a little smaller (docs/benchmarks.md, the
# footprint of `make run`); the operator's own environment wins (set one empty to undo it).
# - No column ranges in code objects (about 1 MB a service): a traceback loses its ^^^ marks.
# - -OO but in the API (about 2-6 MB a service): no docstrings, no asserts. The API writes its
#   OpenAPI and AsyncAPI documents from docstrings; no other service reads one, and their
#   asserts only narrow types. `make install` compiles the bytecode -OO reads, which
#   PYTHONDONTWRITEBYTECODE would otherwise have each start compile again.
_SMALLER_PYTHON = {"PYTHONNODEBUGRANGES": "1"}
_NEED_DOCSTRINGS = {"api"}


def python_options(name: str) -> dict[str, str]:
    """The Python settings (environment variables) service ``name`` runs with."""
    if name in _NEED_DOCSTRINGS:
        return dict(_SMALLER_PYTHON)
    return {**_SMALLER_PYTHON, "PYTHONOPTIMIZE": "2"}


async def run_services(
    env: dict[str, str],
    settings: LaunchSettings,
    started: Started,
    kept: list[Kept] | None = None,
) -> int:
    bin_dir = Path(sys.executable).parent
    # Each service serves /healthz, /readyz and /metrics on an ops port of its own.
    ops_ports = {name: free_port() for name in SERVICES}
    services = [
        Service(name, [str(bin_dir / f"woostore-{name}")],
                {**python_options(name), **env, "WOOSTORE_OPS_PORT": str(port)}, started=started)
        for name, port in ops_ports.items()
    ]  # fmt: skip
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stopping.set)

    async def banner() -> None:
        await when_all_ready(
            {name: f"http://{settings.ops_host}:{port}/readyz" for name, port in ops_ports.items()}
        )
        ops = {name: f"http://{settings.ops_host}:{port}" for name, port in ops_ports.items()}
        _print_banner(env, settings, ops)

    keeper = asyncio.create_task(keep_embedded_running(kept or [], stopping))
    status = await supervise(services, RestartPolicy(), stopping, banner)
    stopping.set()
    if why := await keeper:
        _say(why)
        status = 1
    return status


def _say(line: str) -> None:
    print(f"woostore-run: {line}", flush=True)


def _admin_token(env: dict[str, str], settings: LaunchSettings) -> str:
    """The token itself on a terminal; where to read it when the output goes to a file or a
    pipe, which may be kept on disk for anyone to read (a user's review)."""
    if sys.stdout.isatty():
        return env["WOOSTORE_ADMIN_TOKEN"]
    if settings.admin_token:
        return "the one WOOSTORE_ADMIN_TOKEN gives"
    return f"in {settings.data_dir / 'secrets.json'} (shown on a terminal only)"


# The banner goes to terminals and log files; an operator's own NATS or PostgreSQL URL may
# carry a password or a NATS token, each shown as ``***``.
_QUERY_SECRETS = re.compile(r"(?i)([?&](?:password|sslpassword)=)[^&]*")


def nats_shown(urls: str) -> str:
    """Each server of a NATS URL (or of comma-separated ones, with or without a scheme, as
    the client takes them) without its token (``nats://token@host``) or password."""
    shown = []
    for url in urls.split(","):
        scheme, _, rest = url.strip().rpartition("://")
        authority, slash, path = rest.partition("/")
        user, at, host = authority.rpartition("@")
        if at:
            name, colon, _ = user.partition(":")
            authority = f"{name}:***@{host}" if colon else f"***@{host}"
        shown.append(f"{scheme}{'://' if scheme else ''}{authority}{slash}{path}")
    return ",".join(shown)


def postgres_shown(url: str) -> str:
    """A PostgreSQL URL as ``psql`` takes it, without its password, wherever it is: after
    the user (unencoded, it may hold any character but ``@``, as SQLAlchemy reads it) or
    in the query."""
    scheme, _, rest = url.partition("://")
    user, at, after = rest.partition("@")
    name, _, password = user.partition(":")
    if at and password and "/" not in name:  # a user part, not an @ further on
        rest = f"{name}:***@{after}"
    return _QUERY_SECRETS.sub(r"\1***", f"{scheme.split('+')[0]}://{rest}")


def _print_banner(env: dict[str, str], settings: LaunchSettings, ops: dict[str, str]) -> None:
    # Each service's /healthz, /readyz and /metrics, on a port of its own picked at start.
    ops_lines = "".join(f"    {name:<12} {url}/metrics\n" for name, url in ops.items())
    nats, postgres = env["WOOSTORE_NATS_URL"], env["WOOSTORE_DATABASE_URL"]
    print(
        "\n"
        f"  WooStore is running.  Dashboard: http://{settings.api_host}:{settings.api_port}/\n"
        f"  Admin token: {_admin_token(env, settings)}\n"
        f"  Event stream: {settings.events_url}\n"
        f"  NATS (store events on stream STORES): {nats_shown(nats)}\n"
        f"  PostgreSQL (psql takes this URL): {postgres_shown(postgres)}\n"
        f"  Ops (/healthz, /readyz, /metrics of each service):\n{ops_lines}"
        "  Press Ctrl-C to stop.\n",
        flush=True,
    )


def main() -> None:
    settings = read_settings()
    data_dir = settings.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file on the way, no such mount, no permission
        raise SystemExit(f"WOOSTORE_DATA_DIR: cannot use {data_dir}: {error.strerror}") from None
    _stop_as_ctrl_c_does()
    with ExitStack() as running:
        try:
            status = _run(settings, data_dir, running)
        finally:  # however it ends, NATS and PostgreSQL stop next (``running`` unwinds)
            _already_stopping()
    raise SystemExit(status)


def _run(settings: LaunchSettings, data_dir: Path, running: ExitStack) -> int:
    """Starts the platform, with what stops each part pushed on ``running``, and supervises
    it until it stops; its exit status."""
    running.enter_context(hold_data_dir(data_dir))
    started = Started(data_dir)
    if left := started.stop_leftovers():
        _say(f"stopped what a woostore-run ended outright left running: {', '.join(left)}")
    if taken := ports_taken(settings):
        raise SystemExit(
            "woostore-run: another program listens on " + " and ".join(taken)
            + "; stop it, or give WooStore other ports"
        )  # fmt: skip
    kept: list[Kept] = []
    nats_url = settings.nats_url
    if not nats_url:
        nats = start_nats(data_dir / "nats")
        running.callback(nats.stop)
        started.add("nats-server", nats.process.pid)
        kept.append(kept_nats(nats, started))
        nats_url = nats.url
    database_url = settings.database_url
    if not database_url:
        postgres = start_postgres(data_dir / "postgres", alone=True)  # held: hold_data_dir
        running.callback(postgres.stop)
        kept.append(kept_postgres(postgres))
        database_url = postgres.url
    env = service_environment(settings, nats_url, database_url)
    setup = Path(sys.executable).parent / "woostore-setup"
    if subprocess.run([str(setup)], env=env, check=False).returncode != 0:
        raise SystemExit("woostore-setup failed")
    return asyncio.run(run_services(env, settings, started, kept))


def _stop_as_ctrl_c_does() -> None:
    """While it starts, each stop signal unwinds what was started, as Ctrl-C does."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.default_int_handler)


def _already_stopping() -> None:
    """Once the services have stopped, a second Ctrl-C (or another stop signal) must not cut
    NATS's or PostgreSQL's stop short: PostgreSQL would run on. Ignored, so pg_ctl, which
    inherits that, is not cut short either."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
