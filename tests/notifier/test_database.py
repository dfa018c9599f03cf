"""The notifier's database (psycopg's pool, no SQLAlchemy): its connections behave as every
other service's (tests/shared/test_db.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg

from tests.support import until
from woostore_notifier.database import PlainDatabase
from woostore_shared.connecting import (
    CLIENT_SILENCE_LIMITS,
    CLOSED_WHEN_IDLE,
    SERVER_SILENCE_LIMITS,
)


@asynccontextmanager
async def plain_database(database_url: str, **options: float) -> AsyncIterator[PlainDatabase]:
    db = PlainDatabase(database_url, "woostore-notifier", **options)
    await db.open()
    try:
        yield db
    finally:
        await db.dispose()


async def backend_pid(db: PlainDatabase) -> int:
    async with db.plain_reads() as connection:
        row = await (await connection.execute("SELECT pg_backend_pid()")).fetchone()
    assert row is not None
    return int(row[0])


async def test_connections_are_named_and_limited_as_every_services(database_url: str) -> None:
    async with plain_database(database_url) as db, db.plain_reads() as connection:
        client = connection.info.get_parameters()
        shown = await connection.execute(
            "SELECT current_setting('application_name'), current_setting('idle_session_timeout')"
        )
        sources = await connection.execute(
            "SELECT name, source FROM pg_settings WHERE name = ANY(%s)",
            [list(SERVER_SILENCE_LIMITS)],
        )
        named, idle_limit = await shown.fetchone() or ("", "")
        server = dict(await sources.fetchall())

    assert named == "woostore-notifier"
    assert idle_limit == "1min"  # CLOSED_WHEN_IDLE: a quiet notifier keeps no server process
    assert {name: client.get(name) for name in CLIENT_SILENCE_LIMITS} == CLIENT_SILENCE_LIMITS
    assert server == dict.fromkeys(SERVER_SILENCE_LIMITS, "session")


async def test_a_connection_postgresql_closed_is_replaced_without_a_ping(
    database_url: str,
) -> None:
    async with plain_database(database_url, ping_after_idle=3600) as db:
        pooled = await backend_pid(db)
        with psycopg.connect(database_url, autocommit=True) as admin:
            ended = admin.execute("SELECT pg_terminate_backend(%s, 30000)", (pooled,)).fetchone()
        assert ended == (True,)

        assert await backend_pid(db) != pooled  # and no error: the pool replaced it


async def test_a_connection_postgresql_ended_for_idling_is_replaced_unseen(
    database_url: str,
) -> None:
    async with plain_database(database_url, closed_when_idle=1) as db:
        idled = await backend_pid(db)
        with psycopg.connect(database_url, autocommit=True) as admin:
            await until(
                lambda: admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (idled,)
                ).fetchone() == (0,),
                "PostgreSQL ends the idle session",
            )  # fmt: skip

        assert await backend_pid(db) != idled


async def test_a_connection_idle_near_the_servers_limit_is_dropped_as_it_is_taken(
    database_url: str,
) -> None:
    async with plain_database(database_url, ping_after_idle=3600) as db:
        idled = await backend_pid(db)
        kept = await backend_pid(db)
        for connection in list(db._given_back):
            db._given_back[connection] -= CLOSED_WHEN_IDLE  # given back a minute ago

        assert kept == idled  # given back moments ago: kept
        assert await backend_pid(db) != idled  # a new session, and no error


async def test_a_connection_idle_past_the_limit_is_pinged_as_it_is_taken(
    database_url: str,
) -> None:
    """A connection lost without a word answers no ping: one idle long enough to have been
    is pinged before use. One given back moments ago is not."""
    for ping_after_idle, pinged in ((0, True), (3600, False)):
        async with plain_database(database_url, ping_after_idle=ping_after_idle) as db:
            marked = await backend_pid(db)
            async with db.plain_reads():  # taken: the one connection the pool holds
                with psycopg.connect(database_url, autocommit=True) as admin:
                    row = admin.execute(
                        "SELECT query FROM pg_stat_activity WHERE pid = %s", (marked,)
                    ).fetchone()
        assert row is not None
        assert (row[0] == "SELECT 1") is pinged, row
