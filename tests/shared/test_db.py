"""The database engine every service uses."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import make_url

from woostore_shared.db import Database


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
