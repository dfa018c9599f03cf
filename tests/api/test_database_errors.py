"""What a client is told when the database fails a request: a 503 to retry when the failure
is the database's state (unreachable, restarting, a connection lost), a 500 otherwise."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.api.http import problem
from woostore_api.problems import install_problem_handlers
from woostore_devstack.embedded import free_port
from woostore_shared import db as db_module
from woostore_shared.connecting import MAX_CONNECTIONS
from woostore_shared.db import Database
from woostore_shared.problems import DATABASE_RETRY_SECONDS

PASSWORD = "s3cret-not-to-be-shown"


async def answer_to(db: Database, statement: str, *, plain: bool = False) -> httpx.Response:
    """What a route running ``statement`` on ``db`` answers, behind the API's error handlers:
    through SQLAlchemy, or ``plain`` on psycopg's own connection (``Database.standalone``,
    the key lookups')."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/work")
    async def work() -> None:
        if plain:
            async with db.standalone() as connection:
                await connection.execute(statement.encode())
            return
        async with db.engine.connect() as connection:
            await connection.execute(text(statement))

    # Not raised in the test: the app's catch-all answers 500 and then re-raises, as it must
    # for the server to log it.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get("/work")
    finally:
        await db.dispose()


EITHER_WAY = pytest.mark.parametrize("plain", [False, True], ids=["sqlalchemy", "plain"])


@EITHER_WAY
async def test_a_database_out_of_reach_is_a_503_to_retry_that_names_no_secret(
    plain: bool,
) -> None:
    nowhere = f"postgresql+psycopg://woostore:{PASSWORD}@127.0.0.1:{free_port()}/woostore"

    answer = await answer_to(Database(nowhere), "SELECT 1", plain=plain)

    body = problem(answer, 503)
    assert body["type"].endswith("/database-unavailable")
    assert answer.headers["Retry-After"] == str(DATABASE_RETRY_SECONDS)
    assert PASSWORD not in answer.text
    assert "127.0.0.1" not in answer.text  # nor where the database is


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM no_such_table",  # a ProgrammingError
        # An OperationalError (54011, a program limit): it fails the same way every time.
        "SELECT " + ", ".join(["1"] * 1700),
    ],
    ids=["no-such-table", "too-many-columns"],
)
@EITHER_WAY
async def test_a_statement_the_database_rejects_stays_an_internal_error(
    database_url: str, statement: str, plain: bool
) -> None:
    """A fault of the code, not the database's state: retrying would not help."""
    answer = await answer_to(Database(database_url), statement, plain=plain)

    body = problem(answer, 500)
    assert "no_such_table" not in answer.text
    assert "Retry-After" not in answer.headers
    assert body["type"].endswith("/internal")


async def test_a_request_that_finds_every_connection_in_use_is_a_503_to_retry(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection the process may hold stays in use past the wait: the client is told
    to come back, as for a database out of reach, not that the API failed."""
    monkeypatch.setattr(db_module, "POOL_WAIT_SECONDS", 0.2)
    db = Database(database_url)
    async with AsyncExitStack() as held:
        for _ in range(MAX_CONNECTIONS):
            await held.enter_async_context(db.engine.connect())

        answer = await answer_to(db, "SELECT 1")

    body = problem(answer, 503)
    assert body["type"].endswith("/database-unavailable")
    assert "in use" in body["detail"]
    assert answer.headers["Retry-After"] == str(DATABASE_RETRY_SECONDS)


async def test_a_plain_read_whose_connection_is_lost_is_a_503_and_the_pool_gets_a_new_one(
    database_url: str,
) -> None:
    """psycopg's own connection (``standalone``) ended by the server as a statement runs: the
    client is told to retry, as through SQLAlchemy, and the lost connection is not handed out
    again (the next read works, on a new one)."""
    db = Database(database_url)
    try:
        async with db.standalone() as connection:
            backend = await (await connection.execute("SELECT pg_backend_pid()")).fetchone()
        assert backend is not None
        invalidated: list[bool] = []
        answer = await answer_to_lost(db, backend[0], invalidated)
        body = problem(answer, 503)
        assert body["type"].endswith("/database-unavailable")
        assert invalidated == [True]  # dropped from the pool, not given back

        async with db.standalone() as connection:
            again = await (await connection.execute("SELECT pg_backend_pid()")).fetchone()
        assert again is not None
        assert again[0] != backend[0]
    finally:
        await db.dispose()


async def answer_to_lost(db: Database, backend: int, invalidated: list[bool]) -> httpx.Response:
    """A route whose plain read's session is ended (``pg_terminate_backend``) as it reads;
    whether the error it raises says its connection was invalidated, in ``invalidated``."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/work")
    async def work() -> None:
        try:
            async with db.standalone() as connection:
                # The same connection the test saw: the pool hands back the one given back last.
                assert connection.info.backend_pid == backend
                async with db.engine.connect() as other:
                    # Waits until it is gone, so the next statement cannot come first.
                    await other.execute(text(f"SELECT pg_terminate_backend({backend}, 30000)"))
                await connection.execute("SELECT 1")
        except DBAPIError as error:
            invalidated.append(error.connection_invalidated)
            raise

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return await client.get("/work")
