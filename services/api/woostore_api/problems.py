"""Errors as RFC 9457 problem details, rendered by one set of handlers.

Code raises :class:`Problem` (or lets FastAPI raise its own); nothing else writes error
bodies. Unexpected exceptions become a bare 500 whose body reveals nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from woostore_shared.logging import get_logger

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://woostore.dev/problems/"
log = get_logger(__name__)


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        kind: str,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.headers = headers
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind
        self.extensions = extensions


def not_found(what: str) -> Problem:
    return Problem(404, "Not found", f"{what} does not exist", kind="not-found")


def forbidden(detail: str) -> Problem:
    return Problem(403, "Forbidden", detail, kind="forbidden")


def _render(
    request: Request,
    status: int,
    title: str,
    detail: str,
    kind: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": TYPE_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def problem(request: Request, error: Problem) -> JSONResponse:
        return _render(
            request,
            error.status,
            error.title,
            error.detail,
            error.kind,
            error.headers,
            **error.extensions,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [{"location": list(e["loc"]), "message": e["msg"]} for e in error.errors()]
        detail = "; ".join(f"{'.'.join(map(str, e['location']))}: {e['message']}" for e in errors)
        return _render(request, 422, "Invalid request", detail, "invalid-request", errors=errors)

    @app.exception_handler(HTTPException)
    async def http(request: Request, error: HTTPException) -> JSONResponse:
        return _render(
            request,
            error.status_code,
            str(error.detail),
            str(error.detail),
            f"http-{error.status_code}",
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return _render(
            request, 500, "Internal error", "the error was logged; retry later", "internal"
        )
