"""``make bench``, backups (issue #11): how fast a store's backup and its restore go through the
pipeline (the simulated cluster's real tar and dump, streamed into restic and back), and how
much memory the platform holds meanwhile, for a small store and a 1 GB one: flat, whatever a
store's size, is the target. Then the same through S3 (moto's server, on loopback).

What it does is METHOD below, which docs/benchmarks.md shows with the figures.
``uv run python -m bench.backups`` runs this part alone and prints its section.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from moto.server import ThreadedMotoServer

from bench.common import table
from woostore_cluster.simulated import SimulatedCluster
from woostore_devstack.embedded import free_port
from woostore_devstack.platform import SERVICES, Platform, running_services

SIZES_MB = (100, 1000)  # the uploads of a small store, and of a 1 GB one
S3_SIZES_MB = (100,)  # moto's S3 server keeps every object in its own memory
FILE_MB = 50  # uploads are files of this size: photos and downloads, at the large end
SAMPLE_SECONDS = 0.05  # how often the provisioner and its children's memory is read
DEADLINE = 900.0


@dataclass(frozen=True)
class Run:
    backend: str  # "folder" or "S3"
    size_mb: int
    backup_seconds: float
    restore_seconds: float
    provisioner_peak_mb: float  # resident memory, sampled, during the backup and the restore
    restic_peak_mb: float  # the largest restic process, sampled likewise
    backup_size_bytes: int


class MemoryWatch:
    """Samples the provisioner's resident memory, and that of the restic (and tar) processes
    it starts, in a thread of its own, until stopped."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.provisioner = 0
        self.restic = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                self.provisioner = max(self.provisioner, self.process.memory_info().rss)
                for child in self.process.children(recursive=True):
                    if child.name() == "restic":
                        self.restic = max(self.restic, child.memory_info().rss)
            except psutil.Error:
                continue  # a child ended between listing and reading it


def fill_uploads(folder: Path, size_mb: int) -> None:
    """Random bytes: neither restic's compression nor its deduplication makes them smaller."""
    file_mb = min(FILE_MB, size_mb)
    for n in range(size_mb // file_mb):
        (folder / f"upload-{size_mb}-{n}.bin").write_bytes(os.urandom(file_mb << 20))


async def wait_for(client: httpx.AsyncClient, path: str, done: str, field: str) -> dict[str, str]:
    give_up = time.monotonic() + DEADLINE
    while time.monotonic() < give_up:
        found: dict[str, str] = (await client.get(path)).json()
        if found.get(field) == done:
            return found
        if found.get(field) == "failed":
            raise RuntimeError(f"{path}: {found}")
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{path} not {done} after {DEADLINE} s")


async def one_store(platform: Platform, sim: SimulatedCluster, backend: str, size_mb: int) -> Run:
    async with httpx.AsyncClient(
        base_url=f"{platform.api_url}/api/v1", headers=platform.headers, timeout=30
    ) as client:
        store = (await client.post("/stores", json={"name": f"Bench {size_mb} MB"})).json()
        path = f"/stores/{store['id']}"
        await wait_for(client, path, "ready", "status")
        fill_uploads(sim.uploads(f"store-{store['slug']}"), size_mb)
        pid = platform.processes["provisioner"].pid

        with MemoryWatch(pid) as watch:
            started = time.monotonic()
            backup = (await client.post(f"{path}/backups")).json()
            done = await wait_for(client, f"{path}/backups/{backup['id']}", "complete", "status")
            backup_seconds = time.monotonic() - started

            started = time.monotonic()
            await client.post(f"{path}/restore", json={"backup_id": backup["id"]})
            await wait_for(client, path, "ready", "status")
            restore_seconds = time.monotonic() - started
        return Run(
            backend=backend,
            size_mb=size_mb,
            backup_seconds=backup_seconds,
            restore_seconds=restore_seconds,
            provisioner_peak_mb=watch.provisioner / 2**20,
            restic_peak_mb=watch.restic / 2**20,
            backup_size_bytes=int(done["size"]),
        )


def measure(
    sizes: tuple[int, ...] = SIZES_MB, s3_sizes: tuple[int, ...] = S3_SIZES_MB
) -> list[Run]:
    runs = _on_backend("folder", sizes, {})  # the default: backups/ under the data folder
    with _s3_server() as endpoint:
        location = {
            "WOOSTORE_BACKUP_LOCATION": f"s3:{endpoint}/woostore-bench/backups",
            "WOOSTORE_BACKUP_S3_ACCESS_KEY_ID": "woostore-bench",
            "WOOSTORE_BACKUP_S3_SECRET_ACCESS_KEY": "moto-takes-any-secret",
        }
        runs += _on_backend("S3", s3_sizes, location)
    return runs


def _on_backend(backend: str, sizes: tuple[int, ...], settings: dict[str, str]) -> list[Run]:
    with (
        tempfile.TemporaryDirectory(prefix="woostore-bench-backups-") as folder,
        running_services(
            Path(folder), SERVICES, {"WOOSTORE_SIM_TIME_SCALE": "0", **settings}
        ) as platform,
    ):
        sim = SimulatedCluster(
            platform.data_dir / "simcluster",
            helm_binary=platform.env["WOOSTORE_HELM_BINARY"],
            time_scale=0,
        )
        return [asyncio.run(one_store(platform, sim, backend, size)) for size in sizes]


@contextmanager
def _s3_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


METHOD = f"""\
The real services, NATS, PostgreSQL and restic, with the simulated cluster at time scale 0
(its operations instant, its content real). For each size, one store is made ready, its
uploads filled with random files of {FILE_MB} MB (neither compressible nor deduplicable), then:

1. **Backup**: `POST /stores/{{id}}/backups`, timed until the backup reads `complete`: the
   database dump and a tar of the uploads streamed into the store's restic repository (a
   folder), each part read back whole, the manifest stored.
2. **Restore**: `POST /stores/{{id}}/restore` to that backup, timed until the store is `ready`
   again: the backup checked whole, the safety backup (restic finds every byte stored
   already), the dump loaded, the uploads replaced by the real tar, a test order.

Meanwhile the provisioner's resident memory, and that of the largest restic process it
started, are read every {SAMPLE_SECONDS} s. Throughput is the store's size over the time.

The S3 rows do the same with `WOOSTORE_BACKUP_LOCATION` on an S3 bucket of moto's server
(`moto.server`, on loopback, in the benchmark's process): the S3 path through restic works
end to end at this size, but moto, a test double in Python keeping objects in memory, is the
limit there, so those figures say nothing of a real object store's speed."""


def section(runs: list[Run]) -> str:
    rows: list[tuple[str, str]] = []
    for run in runs:
        size = run.backup_size_bytes / 1e6
        store = f"{run.size_mb} MB store" + (" on S3 (moto)" if run.backend == "S3" else "")
        rows += [
            (f"{store}: backup", f"{run.backup_seconds:.1f} s "
             f"({size / run.backup_seconds:.0f} MB/s)"),
            (f"{store}: restore (with its safety backup)",
             f"{run.restore_seconds:.1f} s ({size / run.restore_seconds:.0f} MB/s)"),
            (f"{store}: provisioner peak memory (RSS)", f"{run.provisioner_peak_mb:.0f} MB"),
            (f"{store}: largest restic process (RSS)", f"{run.restic_peak_mb:.0f} MB"),
        ]  # fmt: skip
    on_folder = [run for run in runs if run.backend == "folder"]
    small, large = on_folder[0], on_folder[-1]
    rows.append(
        (
            f"Provisioner peak memory, {large.size_mb} MB over {small.size_mb} MB store",
            f"{large.provisioner_peak_mb / small.provisioner_peak_mb:.2f} times",
        )
    )
    return (
        "## Backups\n\n"
        "Written by `make bench` too (`bench/backups.py`): a store's backup and restore "
        "through the whole pipeline, and the platform's memory meanwhile.\n\n"
        + table(rows)
        + "\n"
        + METHOD
        + "\n"
    )


if __name__ == "__main__":  # this part alone, printed: `uv run python -m bench.backups`
    print(section(measure()))
