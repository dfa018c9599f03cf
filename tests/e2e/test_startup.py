"""A service started while NATS cannot be reached keeps trying, says so in its log and on
/readyz, and still stops at once when told to (SIGTERM), as Kubernetes tells a pod: it used
to wait, deaf to SIGTERM, until it was killed. Each service as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import ADMIN_TOKEN, SECRET_KEY
from woostore_devstack.embedded import free_port

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
DEADLINE_SECONDS = 30.0


@pytest.mark.parametrize("service", ["api", "notifier", "reaper", "provisioner"])
def test_a_service_waiting_for_nats_says_so_and_stops_when_told(
    service: str, tmp_path: Path
) -> None:
    ops_port = free_port()
    env = {
        **os.environ,
        "WOOSTORE_NATS_URL": f"nats://127.0.0.1:{free_port()}",  # nothing listens there
        "WOOSTORE_DATABASE_URL": f"postgresql://woostore@127.0.0.1:{free_port()}/woostore",
        "WOOSTORE_ADMIN_TOKEN": ADMIN_TOKEN,
        "WOOSTORE_SECRET_KEY": SECRET_KEY,
        "WOOSTORE_DATA_DIR": str(tmp_path),
        "WOOSTORE_API_PORT": str(free_port()),
        "WOOSTORE_NOTIFIER_PORT": str(free_port()),
        "WOOSTORE_OPS_PORT": str(ops_port),
        "WOOSTORE_LOG_FORMAT": "json",
    }
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / f"woostore-{service}")], env=env, stdout=out, stderr=out
        )
    try:
        give_up = time.monotonic() + DEADLINE_SECONDS
        while b"nats unreachable, trying again" not in log.read_bytes():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < give_up, log.read_text()
            time.sleep(0.1)
        ready = httpx.get(f"http://127.0.0.1:{ops_port}/readyz", timeout=5)
        assert ready.status_code == 503
        body = ready.json()
        # The API, once started, does without NATS (its outbox): there it is "degraded", and
        # the API is not ready as it is still starting.
        assert "nats" in (body.get("degraded", {}) if service == "api" else body["failing"])

        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        assert time.monotonic() - stopped_at < 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
