"""The embedded servers make run and the tests start."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tests.support import still_runs
from woostore_devstack.embedded import Postgres, start_nats, start_postgres


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


def test_nats_started_again_on_its_folder_listens_where_it_did_while_that_port_is_free(
    tmp_path: Path,
) -> None:
    """A program following the events kept the URL of the last start, and knocked on the old
    port for ever once make run started again on a new one (found by a user review)."""
    first = start_nats(tmp_path / "nats")
    with socket.create_connection(("127.0.0.1", first.port), timeout=5) as consumer:
        first.stop()  # it closes the connection first: its end waits on the port (TIME_WAIT)
        # Read to the end, as a client does: closing with data unread would reset the
        # connection, and leave nothing waiting. (The server may reset it itself.)
        with contextlib.suppress(ConnectionResetError):
            while consumer.recv(4096):
                pass
    # The kernel ends the old connection on its own time: until it has (a moment), the port
    # is not free to anyone, as it would not be to a make run started that soon.
    _wait_until_bindable(first.port)
    again = start_nats(tmp_path / "nats")
    again.stop()
    with socket.create_server(("127.0.0.1", again.port)):  # taken by another program now
        elsewhere = start_nats(tmp_path / "nats")
    elsewhere.stop()

    assert again.port == first.port, (first.port, again.port)
    assert elsewhere.port != first.port


def _wait_until_bindable(port: int, seconds: float = 10.0) -> None:
    """Until a server could listen on ``port`` (as nats-server binds, with SO_REUSEADDR)."""
    deadline = time.monotonic() + seconds
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.01)


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


def setting(postgres: Postgres, name: str) -> str:
    """What the running server says of one of its settings."""
    with psycopg.connect(postgres.url) as connection:
        row = connection.execute(f"SHOW {name}").fetchone()
    assert row is not None
    return str(row[0])


def test_postgresql_runs_small_from_its_first_start_and_keeps_what_an_operator_added(
    tmp_path: Path,
) -> None:
    """make run's server and the tests' hold tens of megabytes: no 128 MB of shared buffers,
    no I/O workers, no logical replication launcher. A setting of the operator's own in
    postgresql.conf stays, and a later start does not write the settings again."""
    pgdata = tmp_path / "postgres"
    postgres = start_postgres(pgdata)
    try:
        shown = {
            name: setting(postgres, name)
            for name in ("shared_buffers", "io_method", "max_logical_replication_workers")
        }
        with psycopg.connect(postgres.url) as connection:
            workers = connection.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE backend_type IN ('io worker', 'logical replication launcher')"
            ).fetchone()
        assert shown == {
            "shared_buffers": "16MB",
            "io_method": "sync",
            "max_logical_replication_workers": "0",
        }
        assert workers == (0,)
    finally:
        postgres.stop()
    config = pgdata / "postgresql.conf"
    config.write_text(config.read_text() + "work_mem = '8MB'\n")
    written = (pgdata / "woostore.conf").stat().st_mtime_ns

    again = start_postgres(pgdata)
    try:
        assert setting(again, "work_mem") == "8MB"
    finally:
        again.stop()
    assert (pgdata / "woostore.conf").stat().st_mtime_ns == written
    assert config.read_text().count("include_if_exists = 'woostore.conf'") == 1


def test_postgresql_another_process_uses_is_not_restarted_and_gets_its_settings_later(
    tmp_path: Path,
) -> None:
    """Restarting stops the server only for its last user: with another one, the settings
    were written and never applied, and no later start wrote them again."""
    pgdata = tmp_path / "postgres"
    first = start_postgres(pgdata)
    users = pgdata / ".handle_pids.json"
    first.stop()
    (pgdata / "woostore.conf").unlink()  # as a data folder from before the settings
    users.write_text(json.dumps([1]))  # init: another user, alive for as long as the test runs

    held = start_postgres(pgdata)
    try:
        assert setting(held, "shared_buffers") == "128MB"
        assert not (pgdata / "woostore.conf").exists()  # to be written again, not forgotten
    finally:
        users.write_text(json.dumps([os.getpid()]))  # the other user gone
        held.stop()

    alone = start_postgres(pgdata)
    try:
        assert setting(alone, "shared_buffers") == "16MB"
    finally:
        alone.stop()
