"""The whole platform as real processes: nats-server, PostgreSQL and the four services,
each service started by its own console command and configured only by environment."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from woostore_devstack.platform import Platform, running_platform

__all__ = ["TIME_SCALE", "EventLog", "Platform", "platform"]

TIME_SCALE = "0.05"  # a simulated store is ready in a few seconds


@pytest.fixture
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(
        tmp_path_factory.mktemp("platform"), WOOSTORE_SIM_TIME_SCALE=TIME_SCALE
    ) as running:
        yield running


@dataclass
class EventLog:
    """Every SSE message received, as (sse id, CloudEvent)."""

    received: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_for(
        self, predicate: Callable[[list[tuple[int, dict[str, Any]]]], bool], deadline: float
    ) -> None:
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: predicate(self.received)), deadline
            )

    def of_store(self, store_id: str) -> list[tuple[int, dict[str, Any]]]:
        return [(seq, e) for seq, e in self.received if e["subject"] == store_id]


@pytest.fixture
async def event_log(platform: Platform) -> AsyncIterator[EventLog]:
    """An SSE subscriber connected before the test acts, collecting everything."""
    log = EventLog()
    connected = asyncio.Event()

    async def listen() -> None:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
            aconnect_sse(client, "GET", platform.events_url, headers=platform.headers) as source,
        ):
            source.response.raise_for_status()
            connected.set()
            async for message in source.aiter_sse():
                if not message.data:
                    continue
                async with log.changed:
                    log.received.append((int(message.id), json.loads(message.data)))
                    log.changed.notify_all()

    task = asyncio.create_task(listen())
    done, _ = await asyncio.wait(
        {task, asyncio.create_task(connected.wait())},
        timeout=10,
        return_when=asyncio.FIRST_COMPLETED,
    )
    if task in done:
        task.result()
    assert connected.is_set(), "event stream did not connect"
    yield log
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
