"""What the benchmarks share: the store events as a client reads them off the event stream,
percentiles, and the tables of docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from httpx_sse import aconnect_sse

from woostore_devstack.platform import Platform


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """PostgreSQL's postmaster, found by its pid file, and its children (the services' pooled
    connections among them): the embedded server runs detached, under no service."""
    postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    return [postmaster, *postmaster.children(recursive=True)]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def table(rows: list[tuple[str, str]]) -> str:
    lines = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return "| Measure | Value |\n|---|---|\n" + lines + "\n"


def with_section(document: str, section: str) -> str:
    """``document`` (markdown) with its ``## `` section of the same heading as ``section``
    replaced by it, or with it appended: one benchmark run alone rewrites only its own."""
    heading = section.split("\n", 1)[0]
    lines = document.splitlines(keepends=True)
    start = next((n for n, line in enumerate(lines) if line.rstrip("\n") == heading), None)
    if start is None:
        return document.rstrip("\n") + "\n\n" + section
    end = next((n for n in range(start + 1, len(lines)) if lines[n].startswith("## ")), len(lines))
    following = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + following if following else "")


def rewrite_section(results: Path, found: str) -> None:
    """A benchmark run alone: rewrite its section of ``results`` (``--print``: print it)."""
    if "--print" in sys.argv:
        print(found)
    else:
        results.write_text(with_section(results.read_text(), found))
        print(f"wrote its section of {results}")


@dataclass(frozen=True)
class Seen:
    """An event, and when the client read it (``time.time()``, the clock the services stamp
    their events with: they run on this machine)."""

    at: float
    event: dict[str, Any]

    @property
    def kind(self) -> str:
        kind: str = self.event["type"].rsplit(".", 1)[-1]
        return kind

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.event["data"]
        return data

    @property
    def time(self) -> float:
        """When the service wrote the event."""
        return datetime.fromisoformat(self.event["time"]).timestamp()


class StoreFailed(Exception):
    pass


class EventLog:
    """Every store event the caller may see, in the order read from one SSE connection: the
    way a client follows its stores (``woostore create --wait``, the dashboard)."""

    def __init__(self) -> None:
        self.by_store: dict[str, list[Seen]] = {}
        self._changed = asyncio.Condition()
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    @asynccontextmanager
    async def following(cls, platform: Platform) -> AsyncIterator[EventLog]:
        log = cls()
        connected = asyncio.Event()
        log._listener = asyncio.create_task(log._listen(platform, connected))
        await asyncio.wait_for(connected.wait(), 10)
        try:
            yield log
        finally:
            log._listener.cancel()

    async def _listen(self, platform: Platform, connected: asyncio.Event) -> None:
        try:
            async with (
                httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
                aconnect_sse(
                    client, "GET", platform.events_url, headers=platform.headers
                ) as source,
            ):
                connected.set()
                async for message in source.aiter_sse():
                    if message.data:
                        seen = Seen(time.time(), json.loads(message.data))
                        async with self._changed:
                            self.by_store.setdefault(seen.event["subject"], []).append(seen)
                            self._changed.notify_all()
        finally:
            async with self._changed:
                self._changed.notify_all()  # waiters learn the stream ended

    def first(self, store_id: str, kind: str) -> Seen | None:
        return next((s for s in self.by_store.get(store_id, []) if s.kind == kind), None)

    async def wait_for(self, store_id: str, kind: str) -> Seen:
        """The store's first event of this kind; StoreFailed if the store fails instead."""

        def arrived() -> bool:
            done = self._listener is None or self._listener.done()
            return done or any(s.kind in (kind, "failed") for s in self.by_store.get(store_id, []))

        async with self._changed:
            await self._changed.wait_for(arrived)
        if failed := self.first(store_id, "failed"):
            raise StoreFailed(f"store {store_id} failed: {failed.data.get('reason')}")
        if (seen := self.first(store_id, kind)) is None:
            raise RuntimeError("the event stream ended")
        return seen
