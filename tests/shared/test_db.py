"""The database engine every service uses."""

from __future__ import annotations

import asyncio

import psycopg
from sqlalchemy import func, text
from sqlalchemy.engine import make_url
from sqlmodel import select

from woostore_shared.db import MAX_CONNECTIONS, Database


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
