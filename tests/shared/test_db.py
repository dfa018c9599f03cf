"""The database engine every service uses."""

from __future__ import annotations

import asyncio
import socket

import psycopg
import pytest
from sqlalchemy import event, func, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import select

from tests.support import until
from woostore_shared import db as db_module
from woostore_shared.connecting import (
    CLIENT_SILENCE_LIMITS,
    CLOSED_WHEN_IDLE,
    MAX_CONNECTIONS,
    SERVER_SILENCE_LIMITS,
)
from woostore_shared.db import Database
from woostore_shared.settings import Settings


async def application_name(db: Database) -> str:
    async with db.engine.connect() as connection:
        name = (await connection.execute(text("SHOW application_name"))).scalar_one()
    await db.dispose()
    return str(name)


async def test_connections_carry_the_services_name_unless_the_url_gives_one(
    database_url: str,
) -> None:
    named = make_url(database_url).update_query_dict({"application_name": "operators-choice"})

    assert await application_name(Database(database_url, "woostore-api")) == "woostore-api"
    assert (
        await application_name(
            Database(named.render_as_string(hide_password=False), "woostore-api")
        )
        == "operators-choice"
    )


async def test_a_failed_statements_error_does_not_show_its_parameters(database_url: str) -> None:
    """They were shown whole, in warnings logged at each retry (a user's review found a
    journal write's events in one)."""
    db = Database(database_url, "woostore-test")
    try:
        async with db.engine.connect() as connection:
            with pytest.raises(DBAPIError) as failed:
                await connection.execute(
                    text("SELECT CAST(:value AS text), 1 / 0"), {"value": "hidden-value-7"}
                )
    finally:
        await db.dispose()

    assert "division by zero" in str(failed.value)
    assert "SELECT CAST" in str(failed.value)  # what failed is still said
    assert "hidden-value-7" not in str(failed.value)


async def test_connections_opened_for_a_burst_are_kept_for_the_next(database_url: str) -> None:
    """Opening a connection costs PostgreSQL a process: one opened for a burst stays."""

    def opened() -> int:
        with psycopg.connect(database_url, autocommit=True) as connection:
            row = connection.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        assert row is not None
        return int(row[0]) + 1  # this one too

    async def read() -> None:
        async with db.session() as session:
            await session.exec(select(func.pg_sleep(0.01)))  # held while all are out

    db = Database(database_url)
    before = opened()
    for _ in range(10):
        await asyncio.gather(*(read() for _ in range(MAX_CONNECTIONS)))
    await db.dispose()

    assert opened() - before <= MAX_CONNECTIONS + 1


async def backend_pid(db: Database) -> int:
    async with db.session() as session:
        return int((await session.exec(select(func.pg_backend_pid()))).one())


async def test_a_pooled_connection_postgresql_closed_is_replaced_without_a_ping(
    database_url: str,
) -> None:
    """After a restart every pooled connection is dead. One given back moments ago (not
    pinged) is found closed where it sits and replaced before a statement fails on it."""
    db = Database(database_url, ping_after_idle=3600)
    try:
        pooled = await backend_pid(db)
        with psycopg.connect(database_url, autocommit=True) as admin:
            # Returns once the backend has ended (PostgreSQL waits, up to 30 s).
            ended = admin.execute("SELECT pg_terminate_backend(%s, 30000)", (pooled,)).fetchone()
        assert ended == (True,)

        assert await backend_pid(db) != pooled  # and no error: the pool replaced it
    finally:
        await db.dispose()


async def test_connections_a_burst_opened_are_left_idle_for_postgresql_to_end(
    database_url: str,
) -> None:
    """The connection given back last is taken first: under a lighter load after a burst the
    same one serves, and the others idle until PostgreSQL ends them. Taken in turn, each was
    used every few seconds, so an idle platform kept every process it had ever opened."""
    db = Database(database_url)
    try:
        async with asyncio.TaskGroup() as burst:
            for _ in range(4):
                burst.create_task(sleeping_read(db))
        served = {await backend_pid(db) for _ in range(10)}
        ended = await idle_limit(db)
    finally:
        await db.dispose()

    assert len(served) == 1
    assert ended == "1min"  # CLOSED_WHEN_IDLE, as PostgreSQL shows it


async def sleeping_read(db: Database) -> None:
    async with db.session() as session:
        await session.exec(select(func.pg_sleep(0.05)))  # held while the others are taken


async def idle_limit(db: Database) -> str:
    async with db.engine.connect() as connection:
        return str((await connection.execute(text("SHOW idle_session_timeout"))).scalar_one())


async def test_a_connection_postgresql_ended_for_idling_is_replaced_unseen(
    database_url: str,
) -> None:
    db = Database(database_url, closed_when_idle=1)
    try:
        idled = await backend_pid(db)
        with psycopg.connect(database_url, autocommit=True) as admin:
            await until(
                lambda: admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (idled,)
                ).fetchone() == (0,),
                "PostgreSQL ends the idle session",
            )  # fmt: skip

        assert await backend_pid(db) != idled  # and no error: the pool replaced it
    finally:
        await db.dispose()


async def test_a_connection_idle_near_the_servers_limit_is_dropped_as_it_is_taken(
    database_url: str,
) -> None:
    """Pinged instead, it could answer and then have its session ended by PostgreSQL before
    the statement after the ping: dropped at half the limit, it never meets that end."""
    db = Database(database_url)

    @event.listens_for(db.engine.sync_engine.pool, "checkin")
    def a_minute_ago(_dbapi: object, record: ConnectionPoolEntry) -> None:
        record.info[db_module._GIVEN_BACK_AT] -= CLOSED_WHEN_IDLE  # after the pool's own

    try:
        idled = await backend_pid(db)
        assert await backend_pid(db) != idled  # a new session, and no error
    finally:
        await db.dispose()


async def test_an_operator_may_keep_idle_sessions_open(database_url: str) -> None:
    """WOOSTORE_DATABASE_IDLE_SECONDS=0: PostgreSQL ends no idle session of the service's, so
    the pool keeps one idle for an hour (pinged, not dropped) for the next burst."""
    settings = Settings(database_url=database_url, database_idle_seconds=0)
    db = Database.of_service(settings, "woostore-test")

    @event.listens_for(db.engine.sync_engine.pool, "checkin")
    def an_hour_ago(_dbapi: object, record: ConnectionPoolEntry) -> None:
        record.info[db_module._GIVEN_BACK_AT] -= 3600

    try:
        idled = await backend_pid(db)
        assert await idle_limit(db) == "0"
        assert await backend_pid(db) == idled
    finally:
        await db.dispose()


async def last_statement_seen_as_taken(db: Database, database_url: str) -> str:
    """What PostgreSQL last ran on a pooled connection by the time the pool hands it out,
    before any statement of the taker's."""
    marked = await backend_pid(db)  # runs a statement, then gives the connection back
    async with db.engine.connect():  # taken: the one connection the pool holds
        with psycopg.connect(database_url, autocommit=True) as admin:
            row = admin.execute(
                "SELECT query FROM pg_stat_activity WHERE pid = %s", (marked,)
            ).fetchone()
    assert row is not None
    return str(row[0])


async def test_a_connection_idle_past_the_limit_is_pinged_as_it_is_taken(
    database_url: str,
) -> None:
    """A connection lost without a word (a NAT's idle timeout) answers no ping: one idle
    long enough to have been is pinged before use. One given back moments ago is not."""
    for ping_after_idle, pinged in ((0, True), (3600, False)):
        db = Database(database_url, ping_after_idle=ping_after_idle)
        try:
            last = await last_statement_seen_as_taken(db, database_url)
        finally:
            await db.dispose()
        # The ping's text is the dialect's (";" for psycopg): what matters is that the last
        # statement is no longer the one run before the connection was given back.
        assert ("pg_backend_pid" not in last) is pinged, last


async def silence_limits(db: Database) -> tuple[dict[str, str], dict[str, str]]:
    """The limits on a silent other end a pooled connection was opened with: libpq's
    parameters, and whence PostgreSQL's settings for its session come."""
    async with db.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        client: dict[str, str] = driver.info.get_parameters()
        # Where each setting comes from: PostgreSQL shows a Unix socket's (the tests') as 0.
        sources = await connection.execute(
            text("SELECT name, source FROM pg_settings WHERE name = ANY(:names)"),
            {"names": list(SERVER_SILENCE_LIMITS)},
        )
        server = {str(name): str(source) for name, source in sources}
    await db.dispose()
    return client, server


async def test_connections_give_up_on_a_silent_other_end_unless_the_url_says_otherwise(
    database_url: str,
) -> None:
    """What this machine cannot show for real (a peer that vanishes without a word needs a
    dropped packet): that each end of every connection holds the limits that find one, and
    that an operator's URL can set this end's own."""
    client, server = await silence_limits(Database(database_url))
    assert {name: client.get(name) for name in CLIENT_SILENCE_LIMITS} == CLIENT_SILENCE_LIMITS
    assert server == dict.fromkeys(SERVER_SILENCE_LIMITS, "session")

    tuned = make_url(database_url).update_query_dict({"keepalives_idle": "5"})
    client, _ = await silence_limits(Database(tuned.render_as_string(hide_password=False)))
    assert client["keepalives_idle"] == "5"
    assert client["tcp_user_timeout"] == CLIENT_SILENCE_LIMITS["tcp_user_timeout"]


async def test_a_database_that_never_answers_fails_a_connection_in_seconds() -> None:
    """A host that takes the connection and says nothing (a database stuck, a proxy in front
    of nothing): the kernel accepts it for a listening socket that never reads. Without a
    limit psycopg waits 130 s."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        db = Database(f"postgresql+psycopg://woostore:unused@127.0.0.1:{port}/woostore")
        try:
            with pytest.raises(OperationalError):
                await asyncio.wait_for(db.ping(), timeout=60)
        finally:
            await db.dispose()
