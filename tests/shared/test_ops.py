"""/readyz answers within its checks' timeout whatever hangs, and names what the service can
do without apart from what makes it unready."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping

import httpx

from woostore_shared.ops import ReadinessCheck, serve_ops

HANGS_SECONDS = 3600.0
CANCEL_TAKES_SECONDS = 30.0  # a query cancelled on a hung PostgreSQL waits about as long


async def readyz(
    checks: Mapping[str, ReadinessCheck], reported: Mapping[str, ReadinessCheck] | None = None
) -> httpx.Response:
    """One /readyz of ops endpoints serving ``checks`` (and ``reported``), stopped after."""
    ops = await serve_ops("127.0.0.1", 0, checks, reported)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ops.port}") as client:
            return await client.get("/readyz")
    finally:
        await ops.stop()


async def test_a_hung_check_is_answered_as_timed_out_and_never_started_twice() -> None:
    started = 0

    async def hung() -> None:
        """As a ping of a hung PostgreSQL: no answer, and slow to be cancelled."""
        nonlocal started
        started += 1
        try:
            await asyncio.sleep(HANGS_SECONDS)
        except asyncio.CancelledError:
            await asyncio.sleep(CANCEL_TAKES_SECONDS)
            raise

    async def fine() -> None:
        return None

    ops = await serve_ops("127.0.0.1", 0, {"database": hung, "started": fine})
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ops.port}") as client:
            for _ in range(3):
                began = time.monotonic()
                answer = await client.get("/readyz", timeout=10)
                assert time.monotonic() - began < 5  # 2 s and no more: it was 2 s plus 30
                assert answer.status_code == 503
                assert answer.json() == {
                    "status": "unready", "failing": {"database": "TimeoutError"}
                }  # fmt: skip
        assert started == 1  # each probe found it still running: nothing piled up
    finally:
        await asyncio.wait_for(ops.stop(), CANCEL_TAKES_SECONDS + 10)


async def test_a_reported_check_failing_leaves_the_service_ready_naming_it() -> None:
    async def gone() -> None:
        raise ConnectionError("nats")

    async def fine() -> None:
        return None

    answer = await readyz({"database": fine}, reported={"nats": gone})
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ready", "failing": {}, "degraded": {"nats": "ConnectionError"}
    }  # fmt: skip


async def test_a_check_failing_before_it_awaits_is_a_failing_check_not_an_error() -> None:
    """The provisioner's NATS check reads its broker's connection, which raises until it
    first connects: /readyz answered 500 instead of naming it."""

    def not_yet() -> Awaitable[object]:
        raise ConnectionError("no connection yet")

    answer = await readyz({"nats": not_yet})
    assert answer.status_code == 503
    assert answer.json() == {"status": "unready", "failing": {"nats": "ConnectionError"}}


async def test_the_ops_endpoints_speak_no_websocket() -> None:
    """A WebSocket handshake is answered as the plain request it also is: uvicorn loads no
    WebSocket implementation for a service (wsproto and h11, about 1 MB a process)."""
    ops = await serve_ops("127.0.0.1", 0, {})
    handshake = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ops.port}") as client:
            answer = await client.get("/healthz", headers=handshake)
        assert answer.status_code == 200  # a WebSocket server refuses it: no WebSocket route
    finally:
        await ops.stop()
