"""``make run`` itself, as a user starts it: a second one on the same data folder is refused
and the first carries on, and a terminal hanging up stops every process the first started,
as Ctrl-C does (``tests/bench/test_footprint.py`` stops it with Ctrl-C)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from woostore_devstack.embedded import free_port

REPO = Path(__file__).resolve().parents[2]
READY = "WooStore is running."
DEADLINE = 120.0  # to the banner, or for every process to be gone


@dataclass
class MakeRun:
    process: subprocess.Popen[str]
    data_dir: Path
    env: dict[str, str]
    said: list[str]

    def started(self) -> list[psutil.Process]:
        """Every process it runs: make's, the launcher's (the services, NATS), and PostgreSQL
        (its postmaster runs detached) with its children."""
        top = psutil.Process(self.process.pid)
        postmaster_pid = int((self.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        postmaster = psutil.Process(postmaster_pid)
        return [top, *top.children(recursive=True), postmaster, *postmaster.children()]


def _wait_for(condition: Callable[[], bool], what: Callable[[], str]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what())
        time.sleep(0.1)


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[MakeRun]:
    """``make run`` in a folder of its own, on ports of its own, in a process group of its own
    (a terminal's), running until its banner; whatever is left of it is stopped after."""
    make = shutil.which("make")
    assert make is not None, "make is not installed: this tests `make run` itself"
    env = {
        **os.environ,
        "WOOSTORE_DATA_DIR": str(tmp_path / "data"),
        "WOOSTORE_API_PORT": str(free_port()),
        "WOOSTORE_NOTIFIER_PORT": str(free_port()),
        "WOOSTORE_WARM_POOL_SIZE": "0",  # nothing to do: it starts, and waits
    }
    process = subprocess.Popen(
        [make, "--no-print-directory", "run"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    said: list[str] = []

    def read() -> None:  # all of it, so a full pipe never stops the services' logging
        assert process.stdout is not None
        said.extend(process.stdout)

    threading.Thread(target=read, daemon=True).start()
    run = MakeRun(process, tmp_path / "data", env, said)
    started: list[psutil.Process] = []
    try:
        _wait_for(lambda: any(READY in line for line in said) or process.poll() is not None,
                  lambda: f"make run was not ready: {''.join(said[-20:])}")  # fmt: skip
        assert process.poll() is None, "".join(said[-20:])
        started = run.started()
        yield run
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=DEADLINE)
        for left in psutil.wait_procs(started, timeout=10)[1]:
            left.kill()  # what a failed test left behind must not outlive it


def _running(process: psutil.Process) -> bool:
    """Whether it still runs. One that ended but is not reaped yet (a zombie) does not: make
    and PostgreSQL's postmaster are reaped by whoever adopted them, in its time."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_second_make_run_on_the_same_data_folder_is_refused(make_run: MakeRun) -> None:
    again = subprocess.run(
        [str(REPO / ".venv" / "bin" / "woostore-run")],
        env=make_run.env, capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip

    assert again.returncode == 1
    launcher = [p for p in make_run.started() if "woostore-run" in " ".join(p.cmdline())]
    assert f"another woostore-run (pid {launcher[0].pid}) runs on" in again.stderr
    assert make_run.process.poll() is None  # the first runs on, untouched
    assert "exited" not in "".join(make_run.said)


def test_a_terminal_hanging_up_stops_everything_make_run_started(make_run: MakeRun) -> None:
    started = make_run.started()
    assert len(started) > 8  # make, the launcher, 4 services, NATS, PostgreSQL's processes

    os.killpg(make_run.process.pid, signal.SIGHUP)  # as a closed terminal sends its group

    _wait_for(lambda: not any(_running(process) for process in started),
              lambda: f"still running: {[p.name() for p in started if _running(p)]}")  # fmt: skip
