"""The embedded servers make run and the tests start."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import still_runs
from woostore_devstack.embedded import start_nats, start_postgres


def test_nats_started_on_a_port_another_server_holds_is_an_error_not_that_server(
    tmp_path: Path,
) -> None:
    """free_port() gives a port that another process may take before nats-server binds it;
    that process answers on the port, but it is not our server."""
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]
        with pytest.raises(RuntimeError, match="nats-server exited"):
            start_nats(tmp_path / "nats", port=port)


def test_nats_started_on_a_free_port_is_ready_to_serve(tmp_path: Path) -> None:
    server = start_nats(tmp_path / "nats")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
            assert client.recv(4).startswith(b"INFO")  # the NATS protocol's greeting
    finally:
        server.stop()


def test_postgresql_is_stopped_after_a_process_that_used_it_died_without_letting_go(
    tmp_path: Path,
) -> None:
    """A launcher killed while PostgreSQL ran stayed among its users for good, and no later
    one stopped PostgreSQL: it ran on after every Ctrl-C."""
    pgdata = tmp_path / "postgres"
    start_postgres(pgdata).stop()
    died = subprocess.Popen(["true"])  # a process that has ended: its pid is no one's now
    died.wait()
    (pgdata / ".handle_pids.json").write_text(json.dumps([died.pid]))

    postgres = start_postgres(pgdata)
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    postgres.stop()

    deadline = time.monotonic() + 30  # pg_ctl waits for its stop; the exit follows at once
    try:
        while still_runs(postmaster):
            assert time.monotonic() < deadline, "PostgreSQL runs on"
            time.sleep(0.05)
    finally:
        if still_runs(postmaster):  # the test failed: it must not outlive it
            os.kill(postmaster, signal.SIGKILL)
