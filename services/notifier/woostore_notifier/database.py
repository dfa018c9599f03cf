"""The notifier's database: psycopg's own connections, without SQLAlchemy.

The notifier runs a handful of plain statements (``access``: a key's lookup, tickets spent,
the keys of open streams), so SQLAlchemy and the models would be about 21 MB of it for
nothing (docs/benchmarks.md, the footprint of ``make run``).

It keeps no connection open between them: each statement opens one, and closes it after.
It asks rarely (a key it found is remembered for 30 s, tickets are spent a batch at once,
the keys of open streams are checked every 30 s: ``keys.py``), so a connection each costs
little (2 ms a statement on the embedded server, 0.6 ms of it the notifier's CPU, against
0.2 ms pooled), and nothing is left to go stale. A pool keeping them had to tell, as each was
taken, whether PostgreSQL had ended it while idle (as it ends every service's idle
session, ``connecting.CLOSED_WHEN_IDLE``) or restarted meanwhile, and psycopg's pool waits
a second, then two, then four, before trying another after each it refuses: a lookup after
a quiet minute waited seconds, or failed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncNullConnectionPool

from woostore_shared.connecting import (
    CLIENT_SILENCE_LIMITS,
    MAX_CONNECTIONS,
    POOL_WAIT_SECONDS,
    session_limits,
)

Connection = psycopg.AsyncConnection[Any]


class PlainDatabase:
    def __init__(self, url: str, application: str) -> None:
        """As ``db.Database``: ``application`` names the connections unless the URL or
        PGAPPNAME does, and each end gives up on a silent other as every service's does."""
        conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        given = conninfo_to_dict(conninfo)
        kwargs: dict[str, Any] = {
            name: value for name, value in CLIENT_SILENCE_LIMITS.items() if name not in given
        }
        kwargs |= {"fallback_application_name": application, "autocommit": True}
        self._connections = AsyncNullConnectionPool(
            conninfo,
            kwargs=kwargs,
            max_size=MAX_CONNECTIONS,  # open at once; more wait, as for any service's pool
            timeout=POOL_WAIT_SECONDS,
            configure=_limit_the_servers_wait,
            name=application,
            open=False,
        )

    async def open(self) -> None:
        await self._connections.open()

    @asynccontextmanager
    async def standalone(self) -> AsyncIterator[Connection]:
        """A connection of its own, in autocommit: each statement stands alone."""
        async with self._connections.connection() as connection:
            yield connection

    async def ping(self) -> None:
        async with self.standalone() as connection:
            await connection.execute("SELECT 1")

    async def dispose(self) -> None:
        await self._connections.close()


async def _limit_the_servers_wait(connection: Connection) -> None:
    """PostgreSQL's side of the silence limits, as every service's connection has them."""
    await connection.execute(session_limits(connection.info.server_version))
