"""How the CLI tells what the API refused: the problem's title and detail, when asking again
may do (Retry-After), and the problem itself, as sent (with Retry-After as a member), with
--json. A real HTTP server answers as the API does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from tests.cli.conftest import Result, run
from tests.support import served
from woostore_cli.main import main

STORE = "0f6d3b9e-2c4a-4f1e-9b7d-5a8c1e2f3d40"
BUSY = {  # as the API refuses to delete a store while a copy of its backup is being made
    "type": "https://woostore.dev/problems/invalid-state",
    "title": "Store cannot be deleted now",
    "status": 409,
    "detail": "store s-1 cannot be deleted while store s-2 is being made from one of its "
    "backups; it can be once that store is made (ready, or failed)",
    "instance": f"/api/v1/stores/{STORE}",
}


async def refusing(problem: dict[str, Any], headers: dict[str, str], *argv: str) -> Result:
    """``woostore ARGV`` against a server that answers every DELETE of a store so."""

    async def refuse(_: Request) -> JSONResponse:
        return JSONResponse(
            problem, problem["status"], headers, media_type="application/problem+json"
        )

    app = Starlette(routes=[Route("/api/v1/stores/{store_id}", refuse, methods=["DELETE"])])
    async with served(app) as url:
        return await asyncio.to_thread(run, *argv, "--url", url, "--token=t")


async def test_a_refusal_says_when_to_ask_again() -> None:
    said = await refusing(BUSY, {"Retry-After": "60"}, "delete", STORE)

    assert said.code == 1
    assert said.out == ""
    assert said.err == (
        "Store cannot be deleted now: store s-1 cannot be deleted while store s-2 is being made"
        " from one of its backups; it can be once that store is made (ready, or failed) (ask "
        "again in 60 s)\n"
    )


async def test_a_refusal_without_retry_after_says_no_time() -> None:
    full = {**BUSY, "title": "Limit reached", "detail": "this tenant has its maximum of 10 stores"}

    said = await refusing(full, {}, "delete", STORE)

    assert said.err == "Limit reached: this tenant has its maximum of 10 stores\n"


async def test_with_json_a_refusal_is_the_problem_as_the_api_sent_it() -> None:
    said = await refusing(BUSY, {"Retry-After": "60"}, "delete", STORE, "--json")

    assert said.code == 1
    assert said.out == ""  # stdout holds only what a command answers
    assert json.loads(said.err) == {**BUSY, "retry_after": 60}  # the header, as a member


async def test_a_token_is_sent_without_the_space_or_newline_around_it() -> None:
    """A token copied with its newline, or read from an env file with a trailing space, was
    refused by the HTTP client, whose error printed it whole, as "cannot reach" (exit 2)."""
    seen: list[str] = []

    async def session(request: Request) -> JSONResponse:
        seen.append(request.headers["Authorization"])
        me = {"actor": "wsk_1", "role": "tenant", "tenant_name": "acme", "tenant_id": "t-1"}
        return JSONResponse(me)

    app = Starlette(routes=[Route("/api/v1/session", session)])
    async with served(app) as url:
        said = await asyncio.to_thread(run, "whoami", "--url", url, "--token= a-token\n")

    assert (said.code, seen) == (0, ["Bearer a-token"])


@pytest.mark.parametrize("token", ["tøken-secret", "a-token\nsecret", "Bearer secret"])
def test_a_token_no_header_carries_is_refused_without_being_shown(
    token: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Non-ASCII, it ended in a traceback; with a newline inside, the HTTP client's error
    printed it. From the environment as from --token."""
    monkeypatch.setenv("WOOSTORE_TOKEN", token)

    with pytest.raises(SystemExit) as refused:
        main(["whoami", "--url", "http://127.0.0.1:9"])

    assert refused.value.code == 2  # a usage error
    said = capsys.readouterr().err
    assert "argument --token: " in said
    assert "secret" not in said


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["show", "nope"],
            "argument ID: not a store's id (a UUID): 'nope'; woostore list shows them",
        ),
        (
            ["restore", STORE, "b-1"],
            "argument BACKUP_ID: not a backup's id (a UUID): 'b-1'; woostore backups list "
            "STORE_ID shows them",
        ),
    ],
)
def test_an_id_that_is_no_uuid_is_a_usage_error_before_asking(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was answered with the API's validator's words about path parameters (a user's
    review): 'path.store_id: Input should be a valid UUID, invalid character...'."""
    with pytest.raises(SystemExit) as refused:
        main([*argv, "--url", "http://127.0.0.1:9", "--token", "t"])

    assert refused.value.code == 2
    assert capsys.readouterr().err.endswith(f"error: {said}\n")


@pytest.mark.parametrize("argv", [["create", "Shop"], ["keys", "create", "ci"]])
async def test_a_tenant_that_cannot_be_read_ends_the_command_before_anything_is_made(
    argv: list[str],
) -> None:
    """Whether the tenant is suspended is read first: read after the store (or the key) was
    made, a failure ended a create that had succeeded, its id unsaid, and running it again
    made a second store (a diff review)."""
    made: list[str] = []

    async def unavailable(_: Request) -> JSONResponse:
        problem = {"title": "Database unavailable", "status": 503, "detail": "try again"}
        return JSONResponse(problem, 503, media_type="application/problem+json")

    async def make(request: Request) -> JSONResponse:
        made.append(request.url.path)
        return JSONResponse({}, 500)

    app = Starlette(
        routes=[
            Route("/api/v1/tenants/{tenant_id}", unavailable),
            Route("/api/v1/stores", make, methods=["POST"]),
            Route("/api/v1/keys", make, methods=["POST"]),
        ]
    )
    async with served(app) as url:
        tenant = "5d1c7a2e-8b3f-4e6a-9c0d-1f2e3a4b5c6d"
        said = await asyncio.to_thread(run, *argv, "--tenant", tenant, "--url", url, "--token=t")

    # A 503 exits as no answer does (a user's review: 1, as a failed store).
    assert (said.code, said.err) == (2, "Database unavailable: try again\n")
    assert made == []


@pytest.mark.parametrize(("unavailable", "code"), [(3, 0), (4, 2)])
async def test_a_read_answered_503_is_asked_again_after_the_wait_the_api_names(
    unavailable: int, code: int
) -> None:
    """The API answers 503 with Retry-After while its database restarts (a second or two):
    `woostore wait` and `list` gave up at once, with exit 1 (a user's review). A read is
    asked again up to three times; a change is not (it may have been made)."""
    asked: list[str] = []

    async def store(request: Request) -> JSONResponse:
        asked.append(request.method)
        if len(asked) <= unavailable:
            problem = {"title": "Database unavailable", "status": 503, "detail": "retry"}
            return JSONResponse(problem, 503, {"Retry-After": "0"}, "application/problem+json")
        return JSONResponse({"id": STORE, "name": "Shop", "status": "ready"})

    app = Starlette(routes=[Route("/api/v1/stores/{store_id}", store, methods=["GET", "DELETE"])])
    async with served(app) as url:
        said = await asyncio.to_thread(run, "show", STORE, "--json", "--url", url, "--token=t")
        assert (said.code, len(asked)) == (code, 4)
        asked.clear()
        deleting = await asyncio.to_thread(run, "delete", STORE, "--url", url, "--token=t")
    assert (deleting.code, asked) == (2, ["DELETE"])


@pytest.mark.parametrize("later", ["Wed, 21 Oct 2099 07:28:00 GMT", "\u00b2"])
async def test_a_503_from_a_proxy_is_told_without_its_retry_after(later: str) -> None:
    """A proxy's 503 (HTML, Retry-After a date) ended `--json` in a traceback (a diff
    review): only the API's seconds are read as a wait."""

    async def proxy(_: Request) -> HTMLResponse:
        return HTMLResponse("<h1>Service Unavailable</h1>", 503, {"Retry-After": later})

    app = Starlette(routes=[Route("/api/v1/stores/{store_id}", proxy)])
    async with served(app) as url:
        said = await asyncio.to_thread(run, "show", STORE, "--json", "--url", url, "--token=t")
    assert (said.code, json.loads(said.err)) == (
        2, {"title": "HTTP 503", "status": 503, "detail": "Service Unavailable"}
    )  # fmt: skip


async def test_a_create_answered_503_names_the_key_that_makes_it_once() -> None:
    """Its database gone at the commit, the API may have made the store it answers 503
    for: run again without the key, the create would make a second (a diff review)."""

    async def unavailable(_: Request) -> JSONResponse:
        problem = {"title": "Database unavailable", "status": 503, "detail": "retry"}
        return JSONResponse(problem, 503, {"Retry-After": "2"}, "application/problem+json")

    app = Starlette(routes=[Route("/api/v1/stores", unavailable, methods=["POST"])])
    async with served(app) as url:
        argv = ("create", "Shop", "--idempotency-key", "k-1", "--url", url, "--token=t")
        said = await asyncio.to_thread(run, *argv)
        as_json = await asyncio.to_thread(run, *argv, "--json")
    assert (said.code, said.err) == (2, (
        "Database unavailable: retry; it may have made the store: run it again with "
        "--idempotency-key k-1 to be answered with that one rather than make another "
        "(ask again in 2 s)\n"
    ))  # fmt: skip
    assert json.loads(as_json.err)["idempotency_key"] == "k-1"


async def test_a_create_refused_for_want_of_an_address_names_no_key() -> None:
    """That 503 says no store was made: the key's advice would be wrong there."""

    async def exhausted(_: Request) -> JSONResponse:
        problem = {
            "type": "https://woostore.dev/problems/slug-exhausted", "title": "Busy",
            "status": 503, "detail": "could not allocate a unique address; retry",
        }  # fmt: skip
        return JSONResponse(problem, 503, media_type="application/problem+json")

    app = Starlette(routes=[Route("/api/v1/stores", exhausted, methods=["POST"])])
    async with served(app) as url:
        said = await asyncio.to_thread(run, "create", "Shop", "--url", url, "--token=t")
    assert (said.code, said.err) == (2, "Busy: could not allocate a unique address; retry\n")
