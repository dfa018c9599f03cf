"""The notifier's database: psycopg's own pool, without SQLAlchemy.

The notifier runs a handful of plain statements (``access``: a key's lookup, tickets spent,
the keys of open streams), so SQLAlchemy and the models would be about 22 MB of it for
nothing (docs/benchmarks.md, the footprint of ``make run``). Its connections behave as every
other service's (``connecting``): the same limits on a silent other end, the same idle limit
on the server, and the same look as one is taken from the pool.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from woostore_shared.connecting import (
    CLIENT_SILENCE_LIMITS,
    CLOSED_WHEN_IDLE,
    MAX_CONNECTIONS,
    PING_AFTER_IDLE,
    POOL_WAIT_SECONDS,
    closed_by_server,
    session_limits,
)
from woostore_shared.settings import Settings

Connection = psycopg.AsyncConnection[Any]


class PlainDatabase:
    def __init__(
        self,
        url: str,
        application: str,
        *,
        ping_after_idle: float = PING_AFTER_IDLE,
        closed_when_idle: float = CLOSED_WHEN_IDLE,
    ) -> None:
        """As ``db.Database``: ``application`` names the connections unless the URL or
        PGAPPNAME does; one idle longer than ``ping_after_idle`` seconds is pinged as it is
        taken, and PostgreSQL ends a session idle for ``closed_when_idle`` (0: never)."""
        conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        given = conninfo_to_dict(conninfo)
        kwargs: dict[str, Any] = {
            name: value for name, value in CLIENT_SILENCE_LIMITS.items() if name not in given
        }
        kwargs |= {"fallback_application_name": application, "autocommit": True}
        self._ping_after_idle = ping_after_idle
        self._closed_when_idle = closed_when_idle
        self._given_back: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()
        self._pool = AsyncConnectionPool(
            conninfo,
            kwargs=kwargs,
            # None kept open while idle: PostgreSQL ends them (closed_when_idle).
            min_size=0,
            max_size=MAX_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
            configure=self._limit_the_servers_wait,
            check=self._look_before_use,
            name=application,
            open=False,
        )

    @classmethod
    def of_service(cls, settings: Settings, application: str) -> PlainDatabase:
        return cls(
            settings.database_url, application, closed_when_idle=settings.database_idle_seconds
        )

    async def open(self) -> None:
        await self._pool.open()

    @asynccontextmanager
    async def plain_reads(self) -> AsyncIterator[Connection]:
        """A connection in autocommit: each statement stands alone."""
        async with self._pool.connection() as connection:
            yield connection
        self._given_back[connection] = time.monotonic()

    async def ping(self) -> None:
        async with self.plain_reads() as connection:
            await connection.execute("SELECT 1")

    async def dispose(self) -> None:
        await self._pool.close()

    async def _limit_the_servers_wait(self, connection: Connection) -> None:
        limits = session_limits(self._closed_when_idle, connection.info.server_version)
        await connection.execute(limits)

    async def _look_before_use(self, connection: Connection) -> None:
        """Refuse a connection that is gone, as ``db._look_before_use`` does: closed by
        PostgreSQL (seen without a round trip), idle long enough for PostgreSQL to end it
        soon (dropped unasked), or lost without a word (only a ping finds it, so one idle
        longer than ``ping_after_idle`` is pinged). One refused is closed, and the pool
        opens another."""
        idle = time.monotonic() - self._given_back.pop(connection, time.monotonic())
        why = closed_by_server(connection)
        if why is None and self._closed_when_idle and idle > self._closed_when_idle / 2:
            why = "idle long enough for PostgreSQL to end it soon"
        if why is None and idle > self._ping_after_idle:
            try:
                await connection.execute("SELECT 1")
            except psycopg.Error:
                why = "the connection did not answer a ping"
        if why is not None:
            await connection.close()  # else the pool would put it back, and give it again
            raise psycopg.OperationalError(why)
