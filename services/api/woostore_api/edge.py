"""The API's edge: a limit on what comes in, the headers of what goes out, and how long
each route takes."""

from __future__ import annotations

import os
import time
from pathlib import PurePath
from urllib.parse import urlsplit

from fastapi import Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import Histogram
from secure import (
    ContentSecurityPolicy,
    ReferrerPolicy,
    Secure,
    XContentTypeOptions,
    XFrameOptions,
)
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from woostore_api.problems import (
    body_cut_off,
    content_too_large,
    head_refused,
    problem_response,
    takes_no_body,
    unknown_parameters,
)
from woostore_shared.settings import Settings

REQUEST_SECONDS = Histogram(
    "woostore_api_request_duration_seconds",
    "API requests by method, route (its template) and status",
    ["method", "route", "status"],
)


ROUTE_KEY = "woostore.route"  # the box in the request's scope the route's template goes in


class RequestMetrics:
    """Times every HTTP request by the route it matched: ``/api/v1/stores/{store_id}``, never
    the id; ``unmatched`` for a request no route handled (a 404, or refused before routing).
    The router works on copies of the scope, so the route is handed back in a box the copies
    share (:func:`note_route`, a dependency of every route)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began, status, route = time.perf_counter(), 500, {"path": "unmatched"}
        scope[ROUTE_KEY] = route

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            REQUEST_SECONDS.labels(scope["method"], route["path"], str(status)).observe(
                time.perf_counter() - began
            )


async def note_route(request: Request) -> None:
    """The matched route's template, for :class:`RequestMetrics`. A route of an included
    router knows its path below the router's prefix; the prefix (static: ``/api/v1``) is the
    request path's leading segments. ``async`` though it awaits nothing: FastAPI would run a
    plain function in its thread pool, a thread hop on every request."""
    box = request.scope.get(ROUTE_KEY)
    path = getattr(request.scope.get("route"), "path", None)
    if not isinstance(box, dict) or not isinstance(path, str):
        return
    segments = request.scope["path"].split("/")
    prefix = segments[: len(segments) - len(path.split("/")) + 1]
    box["path"] = "/".join(prefix) + path if len(prefix) > 1 else path


def _query_parameters(dependant: Dependant) -> list[str]:
    """The query parameters an operation takes: its own and its dependencies'."""
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names.update(_query_parameters(dependency))
    return sorted(names)


def refuse_unknown_parameters(request: Request) -> None:
    """A query parameter the operation does not take is refused, not ignored: an admin's
    `?tenant=` (for `tenant_id`) listed every tenant's stores, and `?stauts=failed` every
    status (a user's review). Checked once the caller is authenticated (auth.py)."""
    route = request.scope.get("route")
    if not request.query_params or not isinstance(route, APIRoute):
        return
    taken = _query_parameters(route.dependant)  # a few short lists: microseconds
    if unknown := sorted(set(request.query_params) - set(taken)):
        raise unknown_parameters(unknown, taken)


# What a client may send to an operation that takes no body: nothing, or JSON saying nothing.
_NO_BODY = frozenset({b"", b"{}", b"null"})
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})  # whose bodies HTTP gives no meaning


async def refuse_an_ignored_body(request: Request) -> None:
    """An operation that takes no body refuses one it would ignore: ``{"chart_version":
    "0.1.0"}`` sent to /upgrade upgraded to the platform's chart as if it had been read.
    Checked once the caller is authenticated (auth.py), so a stranger gets a 401 first."""
    route = request.scope.get("route")
    if getattr(route, "body_field", True) is not None or request.method in _BODILESS:
        return  # the operation reads its body (or none was matched)
    try:
        body = await request.body()
    except ClientDisconnect:  # cut off mid-body: nothing asked for is done
        raise body_cut_off() from None
    if body.strip() not in _NO_BODY:
        raise takes_no_body()


class HeadAsGet:
    """HEAD answered as GET is, without its body (RFC 9110: a server answering GET answers
    HEAD too). FastAPI's routes take GET alone, so `curl -I` and an uptime check's HEAD got
    405."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET", ASKED_HEAD: True}, receive, headers_only)


ASKED_HEAD = "woostore.asked_head"  # in the scope of a HEAD that HeadAsGet made a GET


async def not_for_head(request: Request) -> None:
    """For a GET that reads a secret to send it (a store's admin password), and audits the
    reading: a HEAD would do both for nothing, as often as an uptime check asks."""
    if request.scope.get(ASKED_HEAD):
        raise head_refused()


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413, before anything parses it or
    checks who sent it: at once when the declared Content-Length is over, and as soon as a
    body without one (chunked) passes the limit. An unauthenticated client can then make
    the API hold at most ``max_bytes`` of its body.

    Pure ASGI: it never buffers a body the app would stream, except one without a declared
    length, and that only up to the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None:
            # The server hands the app exactly the declared length, never more.
            if declared > self.max_bytes:
                await self._refuse(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away while sending
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replaying(bytes(body), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(Request(scope), content_too_large(self.max_bytes))
        await response(scope, receive, send)


def _declared_length(scope: Scope) -> int | None:
    try:
        return int(Headers(scope=scope)["content-length"])
    except (KeyError, ValueError):
        return None


def _replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the body already read handed over first, in one message."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def security_headers(settings: Settings) -> Secure:
    """The headers of every response. The dashboard and /docs load scripts and styles from
    this origin only (no inline ones), may not be framed by any page (a store on the same
    site included), and talk only to this origin and the event stream's."""
    events = urlsplit(settings.events_url)
    policy = (
        ContentSecurityPolicy()
        .default_src("'none'")
        .script_src("'self'")
        .style_src("'self'")
        .img_src("'self'", "data:")  # the page's empty favicon; Swagger UI's icons
        .connect_src("'self'", f"{events.scheme}://{events.netloc}")
        .form_action("'self'")
        .base_uri("'none'")
        .frame_ancestors("'none'")
    )
    return Secure(
        csp=policy,
        xfo=XFrameOptions().deny(),
        xcto=XContentTypeOptions().nosniff(),
        referrer=ReferrerPolicy().no_referrer(),
    )


async def no_store(response: Response) -> None:
    """For answers that carry a secret (a password, a new key, a session): no cache, the
    browser's or a proxy's, keeps a copy."""
    response.headers["Cache-Control"] = "no-store"


_ASSET_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


# Cached copies are checked (a 304 when unchanged) before use: the dashboard is a set of
# modules importing each other, and a mix of an old and a new release's does not load.
REVALIDATE = {"Cache-Control": "no-cache"}


class Assets(StaticFiles):
    """Static files whose scripts and stylesheets are always served as such. With ``nosniff``
    a browser runs a script (a module script in any case) or applies a stylesheet only when
    its type says so, and what :mod:`mimetypes` guesses depends on the host: its mime.types,
    or on Windows the registry, which may say ``text/plain`` for ``.js``. Caches revalidate
    them (:data:`REVALIDATE`)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        kind = _ASSET_TYPES.get(PurePath(full_path).suffix)
        if kind is not None and response.status_code != 304:
            response.headers["content-type"] = kind
        response.headers.update(REVALIDATE)
        return response
