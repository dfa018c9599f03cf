"""The notifier's database (psycopg's connections, no SQLAlchemy): named and limited as
every other service's (tests/shared/test_db.py), and none kept open between statements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg

from tests.support import until
from woostore_notifier.database import PlainDatabase
from woostore_shared.connecting import CLIENT_SILENCE_LIMITS, SERVER_SILENCE_LIMITS

NAME = "woostore-notifier"


@asynccontextmanager
async def plain_database(database_url: str) -> AsyncIterator[PlainDatabase]:
    db = PlainDatabase(database_url, NAME)
    await db.open()
    try:
        yield db
    finally:
        await db.dispose()


def sessions_of_the_notifier(database_url: str) -> list[int]:
    with psycopg.connect(database_url, autocommit=True) as admin:
        found = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (NAME,)
        ).fetchall()
    return [pid for (pid,) in found]


async def test_connections_are_named_and_limited_as_every_services(database_url: str) -> None:
    async with plain_database(database_url) as db, db.standalone() as connection:
        client = connection.info.get_parameters()
        sources = await connection.execute(
            "SELECT name, source FROM pg_settings WHERE name = ANY(%s)",
            [list(SERVER_SILENCE_LIMITS)],
        )
        server = dict(await sources.fetchall())
        assert sessions_of_the_notifier(database_url) != []  # this one, by its name

    assert {name: client.get(name) for name in CLIENT_SILENCE_LIMITS} == CLIENT_SILENCE_LIMITS
    assert server == dict.fromkeys(SERVER_SILENCE_LIMITS, "session")


async def test_no_connection_is_kept_to_go_stale_between_statements(database_url: str) -> None:
    """A pool keeping them found each PostgreSQL ended while idle (or lost in a restart) as
    it was taken, and psycopg's waited 1, 2, then 4 s before the next: a lookup after a quiet
    minute waited seconds, or failed (a review)."""
    async with plain_database(database_url) as db:
        for _ in range(3):
            await db.ping()
            # Its server process ends a moment after the connection closes: waited for. A
            # pool keeping it would keep it for a minute, past this deadline.
            await until(
                lambda: sessions_of_the_notifier(database_url) == [],
                "the notifier's session ends with its statement",
                deadline=10,
            )
