"""The embedded servers make run and the tests start."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from woostore_devstack.embedded import start_nats


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
