"""The database engine. Migrations are ``migrating.py``, apart: only ``woostore-setup`` and
the tests need Alembic, which would add about 12 MB to every service."""

from __future__ import annotations

import select
from typing import Any

import psycopg
from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlmodel.ext.asyncio.session import AsyncSession

MAX_CONNECTIONS = 15  # a process's, each service's


class Database:
    def __init__(self, url: str, application: str = "", *, ping_first: bool = True) -> None:
        """``application`` names the connections (``pg_stat_activity.application_name``), so an
        operator sees which service holds which; a name the URL or PGAPPNAME gives wins.

        ``ping_first`` tests each connection as it is taken from the pool with a round trip (a
        ``SELECT 1``), so a connection lost any way is replaced before a statement fails on
        it. Without it a connection is only looked at where it is (:func:`_closed_by_server`):
        that finds one PostgreSQL closed (a restart), not one lost without a word (a NAT's
        idle timeout), whose first statement fails. Where every piece of work retries that
        anyway, the round trip is not worth its cost: the provisioner pinged 18 times a
        store."""
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_pre_ping=ping_first,
            # Every connection a process opens is kept, up to the 15 it may hold. With 5 kept
            # and 10 more opened on demand, each of those closed as it came back: 16 creates
            # in flight opened 210 connections for 300 creates (PostgreSQL starts a process
            # for each), and took 50 creates/s where it now takes 71.
            pool_size=MAX_CONNECTIONS,
            max_overflow=0,
            connect_args={"fallback_application_name": application} if application else {},
        )
        if not ping_first:
            event.listen(self.engine.sync_engine.pool, "checkout", _closed_by_server)
        # Reads run outside a transaction: no BEGIN and ROLLBACK round trips, and the
        # connection keeps its prepared statements, which psycopg drops at every ROLLBACK.
        self._reads = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    def session(self) -> AsyncSession:
        """A session for reads. Each statement stands alone (autocommit), so nothing it ran
        could be undone: it writes nothing. Writes go through a ``UnitOfWork``
        (unit_of_work.py), or ``transaction`` for the few that stand apart."""
        return AsyncSession(self._reads, expire_on_commit=False)

    def transaction(self) -> AsyncSession:
        """A session whose statements make one transaction, committed or rolled back whole."""
        return AsyncSession(self.engine, expire_on_commit=False)

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _closed_by_server(
    _dbapi: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    """Refuse, as it is taken from the pool, a connection PostgreSQL has closed: a server
    stopping or restarting (or ``pg_terminate_backend``) says why and closes the socket, so an
    idle connection has something to read. The pool then replaces it (``DisconnectionError``),
    where a statement on it would fail. Little else comes unasked (no LISTEN here; a setting
    reported after a reload), and that only costs a new connection. A poll that does not
    wait: no round trip."""
    connection = record.driver_connection
    try:
        socket = connection.pgconn.socket if connection is not None else -1
    except psycopg.Error:  # closed on this side already
        socket = -1
    if socket < 0:
        raise DisconnectionError("the connection is closed")
    waiting = select.poll()
    waiting.register(socket, select.POLLIN)
    if waiting.poll(0):
        raise DisconnectionError("PostgreSQL closed the connection")
