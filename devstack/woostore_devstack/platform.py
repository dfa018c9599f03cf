"""The whole platform as real processes on free ports, for end-to-end tests and benchmarks.

Unlike ``woostore-run`` (one fixed set of ports, logs to the terminal), every service here
runs from its own console command with its own log file, so a test can stop, kill or
restart any one of them.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from woostore_devstack.embedded import (
    REPO,
    STORE_CHART,
    TOOLS_BIN,
    NatsServer,
    Postgres,
    free_port,
    start_nats,
    start_nats_cluster,
    start_postgres,
)

BIN = Path(sys.executable).parent
SERVICES = ("api", "provisioner", "reaper", "notifier")


@dataclass
class Platform:
    data_dir: Path
    nats: NatsServer
    postgres: Postgres
    env: dict[str, str]
    token: str
    api_url: str
    events_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ops_urls: dict[str, str] = field(default_factory=dict)
    # Every NATS node: ``nats`` alone, or the nodes of a cluster (``nats`` is the first).
    nats_nodes: list[NatsServer] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self, service: str, name: str | None = None, **overrides: str) -> None:
        """Start ``service`` as process ``name`` (a second replica needs its own name)."""
        name = name or service
        port = free_port()  # /healthz, /readyz and /metrics of this process
        env = {**self.env, **overrides, "WOOSTORE_OPS_PORT": str(port)}
        self.ops_urls[name] = f"http://127.0.0.1:{port}"
        log = (self.data_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [str(BIN / f"woostore-{service}")], env=env, stdout=log, stderr=log, cwd=REPO
        )

    def readiness_urls(self) -> list[str]:
        return [f"{url}/readyz" for url in self.ops_urls.values()]

    def wait_ready(self, deadline: float = 60) -> None:
        give_up = time.monotonic() + deadline
        for url in self.readiness_urls():
            while True:
                self.check_alive()
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > give_up:
                    raise TimeoutError(f"{url} not ready after {deadline}s")
                time.sleep(0.1)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}:\n{self.log_tail(name)}"
                )

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.data_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, *names: str, timeout: float = 20) -> None:
        """Stop these services, each told at once (each takes a few tenths of a second to
        end its work, which a suite pays at every platform it starts), then waited for."""
        processes = [self.processes[name] for name in names]  # each one started, or none
        for name in names:
            del self.processes[name], self.ops_urls[name]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        self.stop(*self.processes)


@contextmanager
def running_platform(data_dir: Path, nats_nodes: int = 1, **settings: str) -> Iterator[Platform]:
    """Start NATS, PostgreSQL, ``woostore-setup`` and the four services; stop them all after.

    ``settings`` are extra WOOSTORE_* variables, e.g. ``WOOSTORE_SIM_TIME_SCALE="0.05"``.
    With ``nats_nodes`` 3, NATS is a three-node cluster keeping three copies of each stream.
    """
    with running_services(data_dir, SERVICES, settings, nats_nodes) as platform:
        yield platform


@contextmanager
def running_services(
    data_dir: Path, services: tuple[str, ...], settings: Mapping[str, str], nats_nodes: int = 1
) -> Iterator[Platform]:
    """As ``running_platform``, with only ``services`` started: a benchmark of one service
    has the others' work neither in its figures nor in its noise."""
    if nats_nodes == 1:
        nodes = [start_nats(data_dir / "nats")]
    else:
        nodes = start_nats_cluster(data_dir / "nats", nats_nodes)
        settings = {"WOOSTORE_JETSTREAM_REPLICAS": str(nats_nodes), **settings}
    nats = nodes[0]
    postgres = start_postgres(data_dir / "pg")
    api_port, notifier_port = free_port(), free_port()
    token = secrets.token_hex(32)  # never begins with "-", which a CLI would take for an option
    env = {
        **os.environ,
        "WOOSTORE_DATA_DIR": str(data_dir),
        "WOOSTORE_NATS_URL": ",".join(node.url for node in nodes),
        "WOOSTORE_DATABASE_URL": postgres.url,
        "WOOSTORE_ADMIN_TOKEN": token,
        "WOOSTORE_SECRET_KEY": secrets.token_urlsafe(32),
        "WOOSTORE_API_PORT": str(api_port),
        "WOOSTORE_NOTIFIER_PORT": str(notifier_port),
        "WOOSTORE_HELM_BINARY": str(TOOLS_BIN / "helm"),
        "WOOSTORE_STORE_CHART": str(STORE_CHART),
        "WOOSTORE_LOG_FORMAT": "json",
        # Suites and benchmarks make stores in bursts with one key; the limits have their own
        # tests (tests/api/test_access.py) and any caller can set them here.
        "WOOSTORE_CREATES_PER_MINUTE": "10000",
        "WOOSTORE_TENANT_CREATES_PER_MINUTE": "10000",
        "WOOSTORE_TENANT_CHANGES_PER_MINUTE": "10000",
        "WOOSTORE_TENANT_STORE_LIMIT": "1000",
        "WOOSTORE_MAX_LIVE_STORES": "1000",
        "WOOSTORE_MAX_QUEUED_STORES": "1000",
        **settings,
    }
    platform = Platform(
        data_dir=data_dir,
        nats=nats,
        postgres=postgres,
        env=env,
        token=token,
        api_url=f"http://127.0.0.1:{api_port}",
        events_url=f"http://127.0.0.1:{notifier_port}/api/v1/events",
        nats_nodes=nodes,
    )
    try:
        subprocess.run([str(BIN / "woostore-setup")], env=env, check=True)
        for service in services:
            platform.start(service)
        platform.wait_ready()
        yield platform
        platform.check_alive()
    finally:
        platform.stop_all()
        for node in nodes:
            node.stop()
        postgres.stop()
