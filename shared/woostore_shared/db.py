"""The database engine. Migrations are ``migrating.py``, apart: only ``woostore-setup`` and
the tests need Alembic, which would add about 12 MB to every service."""

from __future__ import annotations

import select
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, cast

import psycopg
from sqlalchemy import event, make_url, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from woostore_shared.connecting import (
    CLIENT_SILENCE_LIMITS,
    CLOSED_WHEN_IDLE,
    IDLE_LIMIT_SINCE,
    MAX_CONNECTIONS,
    POOL_WAIT_SECONDS,
    session_limits,
)
from woostore_shared.settings import Settings

PING_AFTER_IDLE = 10.0  # seconds; see _look_before_use
_GIVEN_BACK_AT = "woostore_given_back_at"  # the pool entry's info key: when it came back
_ENDED_WHEN_IDLE = "woostore_ended_when_idle"  # and whether PostgreSQL ends it idle


class Database:
    def __init__(
        self,
        url: str,
        application: str = "",
        *,
        ping_after_idle: float = PING_AFTER_IDLE,
        closed_when_idle: float = CLOSED_WHEN_IDLE,
        connections: int = MAX_CONNECTIONS,
    ) -> None:
        """``application`` names the connections (``pg_stat_activity.application_name``), so an
        operator sees which service holds which; a name the URL or PGAPPNAME gives wins.

        Each connection is looked at as it is taken from the pool (:func:`_look_before_use`),
        so one that is gone is replaced before a statement fails on it. One that sat idle
        longer than ``ping_after_idle`` seconds is also pinged, and PostgreSQL ends a
        session idle for ``closed_when_idle`` seconds (0: never). The process holds at most
        ``connections`` at once; a statement waits for one up to ``POOL_WAIT_SECONDS``."""
        given = make_url(url).query
        connect_args = {
            name: value for name, value in CLIENT_SILENCE_LIMITS.items() if name not in given
        }
        if application:
            connect_args["fallback_application_name"] = application
        self.engine: AsyncEngine = create_async_engine(
            url,
            # Every connection a process opens is kept, up to the 15 it may hold. With 5 kept
            # and 10 more opened on demand, each of those closed as it came back: 16 creates
            # in flight opened 210 connections for 300 creates (PostgreSQL starts a process
            # for each), and took 50 creates/s where it now takes 71.
            pool_size=connections,
            max_overflow=0,
            pool_timeout=POOL_WAIT_SECONDS,
            # The connection given back last is taken first: those a burst opened and the
            # load no longer needs stay idle until PostgreSQL ends them (CLOSED_WHEN_IDLE).
            # Taken in turn, every one was used every few seconds and none was ever idle.
            pool_use_lifo=True,
            connect_args=connect_args,
            # A failed statement's error names its SQL, not its parameters: they held a
            # journal write's whole events (logged at each retry), and may hold what a
            # store keeps encrypted.
            hide_parameters=True,
        )
        _look_before_use(self.engine, ping_after_idle, drop_after_idle=closed_when_idle / 2)
        event.listen(
            self.engine.sync_engine, "connect", partial(_limit_the_servers_wait, closed_when_idle)
        )
        # Reads run outside a transaction: no BEGIN and ROLLBACK round trips, and the
        # connection keeps its prepared statements, which psycopg drops at every ROLLBACK.
        self._reads = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @classmethod
    def of_service(cls, settings: Settings, application: str) -> Database:
        """A service's database, as its settings say."""
        return cls(
            settings.database_url, application, closed_when_idle=settings.database_idle_seconds
        )

    def session(self) -> AsyncSession:
        """A session for reads. Each statement stands alone (autocommit), so nothing it ran
        could be undone: it writes nothing. Writes go through a ``UnitOfWork``
        (unit_of_work.py), or ``transaction`` for the few that stand apart. Held idle
        between its statements for ``closed_when_idle``, PostgreSQL ends it."""
        return AsyncSession(self._reads, expire_on_commit=False)

    def transaction(self) -> AsyncSession:
        """A session whose statements make one transaction, committed or rolled back whole."""
        return AsyncSession(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def standalone(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """psycopg's own connection, in autocommit as ``session``'s (each statement stands
        alone, its own transaction), taken from the same pool and looked at as any is. Only
        for the statements every request or every create makes (a key's lookup, a cold
        create's one statement, ``UnitOfWork``; a new store's place in the queue):
        SQLAlchemy's work on a statement costs more than PostgreSQL's, 0.4 ms of a 0.7 ms
        lookup (docs/benchmarks.md, Bursts). A psycopg error is raised as SQLAlchemy's DBAPIError
        (without the statement), so a client is told the same; a connection found closed is
        dropped from the pool (SQLAlchemy would drop every connection opened before it)."""
        async with self._reads.connect() as connection:
            driver = cast(
                psycopg.AsyncConnection[Any],
                (await connection.get_raw_connection()).driver_connection,
            )
            try:
                yield driver
            except psycopg.Error as error:
                if driver.closed:
                    await connection.invalidate()
                raise as_sqlalchemy_error(error, driver) from error

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _limit_the_servers_wait(
    closed_when_idle: float, dbapi: Any, record: ConnectionPoolEntry
) -> None:
    """Give PostgreSQL the connection's limits (``connecting.session_limits``) as it opens."""
    version = dbapi.info.server_version
    if version >= IDLE_LIMIT_SINCE:
        record.info[_ENDED_WHEN_IDLE] = closed_when_idle > 0  # so the pool drops it first
    dbapi.autocommit = True
    cursor = dbapi.cursor()
    try:
        cursor.execute(session_limits(version, closed_when_idle))
    finally:
        cursor.close()
        dbapi.autocommit = False


def _look_before_use(engine: AsyncEngine, ping_after_idle: float, drop_after_idle: float) -> None:
    """Refuse, as it is taken from the pool, a connection that is gone; the pool then opens
    another (``DisconnectionError``) where a statement on it would have failed.

    - **Closed by PostgreSQL** (a restart, ``pg_terminate_backend``): always looked for,
      without a round trip (:func:`_closed_by_server`).
    - **Lost without a word** (a NAT's or a load balancer's idle timeout, minutes at the
      least): only a round trip finds it, so a connection idle longer than
      ``ping_after_idle`` is pinged (``SELECT 1``). One given back moments ago is not:
      under load every connection is, and a ping before each use cost the API 3 round
      trips a create and the provisioner 18 a store.
    - **About to be ended by PostgreSQL** for being idle (``CLOSED_WHEN_IDLE``, where the
      server has the limit): one idle longer than ``drop_after_idle`` is dropped, not
      pinged, so that the server never ends a session between a ping and the statement
      after it."""
    dialect = engine.dialect
    pool = engine.sync_engine.pool

    def given_back(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        record.info[_GIVEN_BACK_AT] = time.monotonic()

    def taken(dbapi: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        _closed_by_server(record)
        # Taken off as it is read: one opened again in its place (dropped, or its ping
        # failed) has not sat idle.
        given_back_at = record.info.pop(_GIVEN_BACK_AT, None)  # none yet: opened just now
        idle = 0.0 if given_back_at is None else time.monotonic() - given_back_at
        if idle > drop_after_idle and record.info.get(_ENDED_WHEN_IDLE):
            raise DisconnectionError("idle long enough for PostgreSQL to end it soon")
        if idle > ping_after_idle:
            try:
                dialect.do_ping(dbapi)
            except dialect.loaded_dbapi.Error as error:
                raise DisconnectionError("the connection did not answer a ping") from error

    event.listen(pool, "checkin", given_back)
    event.listen(pool, "checkout", taken)


def _closed_by_server(record: ConnectionPoolEntry) -> None:
    """Refuse a connection PostgreSQL has closed: a server stopping or restarting (or
    ``pg_terminate_backend``) says why and closes the socket, so an idle connection has
    something to read. Little else comes unasked (no LISTEN here; a setting reported after
    a reload), and that only costs a new connection. A poll that does not wait: no round
    trip."""
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


def as_sqlalchemy_error(
    error: psycopg.Error, driver: psycopg.AsyncConnection[Any]
) -> StatementError:
    """psycopg's ``error``, raised by a statement on psycopg's own connection, as SQLAlchemy
    raises it (without the statement): a client is told the same whichever ran it."""
    closed = bool(driver.closed)
    return DBAPIError.instance(None, None, error, psycopg.Error, connection_invalidated=closed)


def broken_constraint(error: DBAPIError) -> str | None:
    """The name of the constraint (or unique index) a statement broke, as PostgreSQL reports
    it: how a refusal is told apart from another of the same kind."""
    name: str | None = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
    return name
