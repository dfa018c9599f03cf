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
    """After a restart every pooled connection is dead. Without a ping before each use (the
    provisioner's pool), one is found closed where it sits and replaced before a statement
    fails on it."""
    db = Database(database_url, ping_first=False)
    try:
        pooled = await backend_pid(db)
        with psycopg.connect(database_url, autocommit=True) as admin:
            # Returns once the backend has ended (PostgreSQL waits, up to 30 s).
            ended = admin.execute("SELECT pg_terminate_backend(%s, 30000)", (pooled,)).fetchone()
        assert ended == (True,)

        assert await backend_pid(db) != pooled  # and no error: the pool replaced it
    finally:
        await db.dispose()
