"""``make run`` itself, as a user starts it: a second one on the same data folder is refused
and the first carries on, a terminal hanging up stops every process the first started, as
Ctrl-C does (``tests/bench/test_footprint.py`` stops it with Ctrl-C), and a port another
program holds is named before anything starts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from tests.support import still_runs
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


def _make() -> str:
    make = shutil.which("make")
    assert make is not None, "make is not installed: this tests `make run` itself"
    return make


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[MakeRun]:
    """``make run`` in a folder of its own, on ports of its own."""
    env = {
        **os.environ,
        "WOOSTORE_DATA_DIR": str(tmp_path / "data"),
        "WOOSTORE_API_PORT": str(free_port()),
        "WOOSTORE_NOTIFIER_PORT": str(free_port()),
        "WOOSTORE_WARM_POOL_SIZE": "0",  # nothing to do: it starts, and waits
    }
    env.pop("XDG_RUNTIME_DIR", None)  # as in a container, or an SSH session as root
    with running(env) as run:
        yield run


@contextlib.contextmanager
def running(env: dict[str, str]) -> Iterator[MakeRun]:
    """``make run`` with ``env``, in a process group of its own (a terminal's), running until
    its banner; whatever is left of it is stopped after."""
    process = subprocess.Popen(
        [_make(), "--no-print-directory", "run"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    said: list[str] = []

    def read() -> None:  # all of it, so a full pipe never stops the services' logging
        assert process.stdout is not None
        said.extend(process.stdout)

    threading.Thread(target=read, daemon=True).start()
    run = MakeRun(process, Path(env["WOOSTORE_DATA_DIR"]), env, said)
    started: list[psutil.Process] = []
    try:
        _wait_for(lambda: any(READY in line for line in said) or process.poll() is not None,
                  lambda: f"make run was not ready: {''.join(said[-20:])}")  # fmt: skip
        assert process.poll() is None, "".join(said[-20:])
        started = run.started()
        yield run
    finally:
        # What a failed test left behind must not outlive it: the services and PostgreSQL
        # run in sessions of their own, out of the group's reach.
        if not started and process.poll() is None:
            with contextlib.suppress(psutil.Error, OSError, IndexError, ValueError):
                started = run.started()  # as far as it got
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for left in psutil.wait_procs(started, timeout=10)[1]:
            with contextlib.suppress(psutil.NoSuchProcess):
                left.kill()


def test_the_banner_names_every_services_ops_endpoints(make_run: MakeRun) -> None:
    """They are on ports picked at start: an operator had to find them in the log."""
    _wait_for(lambda: any("Press Ctrl-C" in line for line in make_run.said),
              lambda: "".join(make_run.said[-20:]))  # fmt: skip
    banner = "".join(make_run.said)
    ops = dict(re.findall(r"^ +(api|provisioner|reaper|notifier) +(http://\S+)/metrics$",
                          banner, re.MULTILINE))  # fmt: skip
    assert sorted(ops) == ["api", "notifier", "provisioner", "reaper"], banner
    for url in ops.values():
        assert httpx.get(f"{url}/readyz", timeout=5).json()["status"] == "ready"
    # Nothing for the operator to act on: platformdirs' warning that XDG_RUNTIME_DIR is
    # unset was printed by each process that started PostgreSQL.
    assert "Warning" not in banner, banner
    # Output to a pipe (a log file, often) says where the admin token is, not the token.
    secrets = make_run.data_dir / "secrets.json"
    token = json.loads(secrets.read_text())["admin_token"]
    assert token not in banner
    assert f"  Admin token: in {secrets} (shown on a terminal only)\n" in banner
    # The runbook's queries need PostgreSQL's address, which was printed nowhere.
    [postgres] = re.findall(r"^  PostgreSQL \(psql takes this URL\): (\S+)$", banner, re.MULTILINE)
    with psycopg.connect(postgres) as connection:
        assert connection.execute("SELECT count(*) FROM stores").fetchone() == (0,)


def test_ctrl_c_stops_the_services_before_nats_and_none_of_them_complains(
    make_run: MakeRun,
) -> None:
    """Ctrl-C reaches the terminal's whole process group. NATS was in it and stopped first,
    so every service, still running, warned that NATS was gone, and the provisioner ended
    with a traceback."""
    os.killpg(make_run.process.pid, signal.SIGINT)  # as a terminal's Ctrl-C
    make_run.process.wait(timeout=DEADLINE)

    def closed() -> set[str]:  # the services that said so (the setup says so too, earlier)
        return {
            line.split("|")[0].strip() for line in make_run.said
            if "|" in line and "nats connection closed" in line
        }  # fmt: skip

    _wait_for(lambda: closed() == {"api", "reaper", "notifier"},  # each as it stops
              lambda: "".join(make_run.said[-30:]))  # fmt: skip

    said = "".join(make_run.said)
    assert "nats disconnected" not in said
    assert "nats unreachable" not in said
    assert "Traceback" not in said


def test_a_second_make_run_on_the_same_data_folder_is_refused(make_run: MakeRun) -> None:
    again = subprocess.run(
        [str(REPO / ".venv" / "bin" / "woostore-run")],
        env=make_run.env, capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip

    assert again.returncode == 1
    [launcher] = psutil.Process(make_run.process.pid).children()  # make runs the launcher
    assert f"another woostore-run (pid {launcher.pid}) runs on" in again.stderr
    # By its whole path, which `pkill -f` finds (a relative one matched no pattern a user wrote).
    assert str(REPO / ".venv" / "bin" / "woostore-run") in launcher.cmdline()
    assert make_run.process.poll() is None  # the first runs on, untouched
    exits = [line for line in make_run.said if "starting it again" in line or "stopping" in line]
    assert exits == []  # not a service of it exited


def test_a_terminal_hanging_up_stops_everything_make_run_started(make_run: MakeRun) -> None:
    started = make_run.started()
    assert len(started) > 8  # make, the launcher, 4 services, NATS, PostgreSQL's processes

    os.killpg(make_run.process.pid, signal.SIGHUP)  # as a closed terminal sends its group

    pids = [process.pid for process in started]
    _wait_for(lambda: not any(still_runs(pid) for pid in pids),
              lambda: f"still running: {[pid for pid in pids if still_runs(pid)]}")  # fmt: skip


def test_what_a_launcher_killed_outright_left_running_is_stopped_by_the_next(
    make_run: MakeRun,
) -> None:
    """Killed with SIGKILL (the OOM killer's way), the launcher stops nothing: its services
    (in sessions of their own) and NATS ran on. The next make run on the folder stops them
    before it starts its own."""
    [launcher] = psutil.Process(make_run.process.pid).children()
    left = [p for p in launcher.children() if "postgres" not in p.name()]  # services, NATS
    assert len(left) == 5, [p.cmdline() for p in left]

    launcher.kill()
    make_run.process.wait(timeout=DEADLINE)  # make ends with its child
    assert all(still_runs(process.pid) for process in left)  # what was left behind

    with running(make_run.env) as again:
        said = "".join(again.said)
        assert "stopped what a woostore-run ended outright left running: api, nats-server," in said
        assert not [process.pid for process in left if still_runs(process.pid)]


def test_a_port_another_program_listens_on_is_named_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other_program:
        other_program.bind(("127.0.0.1", free_port()))
        other_program.listen()
        port = other_program.getsockname()[1]
        run = subprocess.Popen(
            [_make(), "--no-print-directory", "run"], cwd=REPO, text=True,
            env={**os.environ, "WOOSTORE_DATA_DIR": str(tmp_path / "data"),
                 "WOOSTORE_API_PORT": str(port), "WOOSTORE_NOTIFIER_PORT": str(free_port())},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            said, _ = run.communicate(timeout=DEADLINE)
        finally:
            if run.poll() is None:  # it started anyway: stopped, so nothing outlives the test
                os.killpg(run.pid, signal.SIGINT)
                run.wait(timeout=DEADLINE)

    assert run.returncode != 0
    assert f"another program listens on 127.0.0.1:{port} (set WOOSTORE_API_PORT" in said
    assert not (tmp_path / "data" / "postgres").exists()  # nothing was started
