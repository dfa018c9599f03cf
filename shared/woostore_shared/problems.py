"""RFC 9457 problem answers, the same from every service that answers HTTP."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match, Mount

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://woostore.dev/problems/"


def how_many(count: int, noun: str) -> str:
    """``count`` of a regular English ``noun``, as a limit's detail names it: "1 store",
    "10 stores" (a cap may be set to 1, and "its maximum of 1 stores" reads as a fault)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem answer; ``extra`` adds members (``instance``, ``limit``, ``allowed``...)."""
    if status == 401:  # RFC 9110: a 401 names the scheme that would be accepted
        headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


METHOD_NOT_ALLOWED = "method-not-allowed"  # the problem type of every 405
DATABASE_RETRY_SECONDS = 2  # a connection is replaced at once; a restart takes seconds


def problem_for(
    request: Request,
    status: int,
    title: str,
    detail: str,
    kind: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The answer to ``request``: a problem of the platform's type ``kind``, at its path."""
    return problem_response(
        status, title, detail, type_=TYPE_BASE + kind, headers=headers,
        instance=request.url.path, **extra,
    )  # fmt: skip


def http_problem(request: Request, error: HTTPException) -> JSONResponse:
    """Starlette's own refusals (a 404, a 405 with its Allow) as problems, in the words and
    types of the platform's own: a path no route serves is ``not-found`` as a store no one
    may see is, not "http-404" titled "Not Found" with the same words for detail."""
    headers = dict(error.headers or {})
    method, path = request.method, request.url.path
    if error.status_code == 404:
        return problem_for(request, 404, "Not found", f"nothing is served at {path}", "not-found")
    if error.status_code == 405:
        if taken := _methods_taken(request):
            headers["Allow"] = ", ".join(taken)
        allowed = headers.get("Allow")  # a mount's own 405 names its own (static files')
        detail = f"{path} does not take {method}" + (f"; it takes {allowed}" if allowed else "")
        return problem_for(
            request, 405, "Method not allowed", detail, METHOD_NOT_ALLOWED, headers=headers
        )
    return problem_for(
        request, error.status_code, str(error.detail), str(error.detail),
        f"http-{error.status_code}", headers=headers,
    )  # fmt: skip


def _methods_taken(request: Request) -> list[str]:
    """Every method some route takes at the request's path, each asked of the routes as a
    request of that method (the public way: FastAPI keeps included routers' routes nested).
    Starlette's own 405 named only the first route's: `PUT /stores` said `Allow: POST`,
    though GET is listed there too. A mount takes every method to what it serves, which
    answers its own 405 (static files: `Allow: GET, HEAD`): none is named for it."""
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    taken = {
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
               for route in routes)
    }  # fmt: skip
    if "GET" in taken:  # HEAD is answered wherever GET is (the API's HeadAsGet, Starlette's)
        taken.add("HEAD")
    return sorted(taken)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


UNREACHABLE_DATABASE = "the database could not be reached or gave up on the request; retry"


def database_unavailable(request: Request, detail: str = UNREACHABLE_DATABASE) -> JSONResponse:
    """The answer to a request the database could not serve for now (unreachable, restarting,
    every connection in use): a 503 the client may send again shortly, from the API and the
    notifier alike."""
    return problem_for(
        request, 503, "Database unavailable", detail, "database-unavailable",
        headers={"Retry-After": str(DATABASE_RETRY_SECONDS)},
    )  # fmt: skip
