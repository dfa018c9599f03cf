"""Errors as RFC 9457 problem details, rendered by one set of handlers.

Code raises :class:`Problem` (or lets FastAPI raise its own); nothing else writes error
bodies. Unexpected exceptions become a bare 500 whose body reveals nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from woostore_shared.access import TenantSuspended
from woostore_shared.lifecycle import (
    BackupInUse,
    BackupNotFound,
    BackupNotRestorable,
    CopyCannotBeMadeAgain,
    CopyUnderWay,
    InvalidTransition,
    NothingToRollBackTo,
    StillCleaningUp,
)
from woostore_shared.logging import get_logger
from woostore_shared.models import StoreStatus
from woostore_shared.problems import (
    METHOD_NOT_ALLOWED,
    PROBLEM_JSON,
    TYPE_BASE,
    database_unavailable,
    http_problem,
    problem_for,
)
from woostore_shared.store_settings import StateOfNoCountry
from woostore_shared.transitions import credentials_readable

log = get_logger(__name__)
_SCHEMA_NAME = "ProblemDetails"
# "Store cannot be <done> now", by the status a refused change would have led to.
_DONE_BY_TARGET = {
    StoreStatus.DELETING: "deleted",
    StoreStatus.UPDATING: "changed",
    StoreStatus.BACKING_UP: "backed up",
    StoreStatus.RESTORING: "restored",
    StoreStatus.QUEUED: "retried",
}
CLEAN_UP_RETRY_SECONDS = 10  # a clean-up takes seconds to minutes
BUSY_RETRY_SECONDS = 30  # a store's provisioning, change or backup takes a minute or more
# What a store at work ends as, by itself: a request refused now may be accepted then.
_ENDS_AS = {
    StoreStatus.QUEUED: {StoreStatus.READY, StoreStatus.FAILED},
    StoreStatus.PROVISIONING: {StoreStatus.READY, StoreStatus.FAILED},
    StoreStatus.UPDATING: {StoreStatus.READY},
    StoreStatus.BACKING_UP: {StoreStatus.READY},
    StoreStatus.RESTORING: {StoreStatus.READY},
}
# Statuses a sentence says otherwise than by name: "a store being backed up", not "a
# backing_up store" (nor "a updating store").
_BEING = {
    StoreStatus.UPDATING: "being changed",
    StoreStatus.BACKING_UP: "being backed up",
    StoreStatus.RESTORING: "being restored",
    StoreStatus.DELETING: "being deleted",
}
# A store that is no more, or soon: a refusal does not say when it could be changed.
_GONE = frozenset({StoreStatus.DELETING, StoreStatus.DELETED})
COPY_RETRY_SECONDS = 60  # a store made from a backup takes minutes
_WHY = {
    400: "The request is malformed: a body that is not UTF-8 JSON, a cursor no page gave.",
    401: "No valid credentials: a bearer token (an API key) or a session cookie is required.",
    403: "The caller may not do this (a tenant key outside its tenant, not an admin, or a "
    "session write from another origin).",
    404: "No such object, or it belongs to another tenant.",
    409: "The object exists already, or is not in a state that allows this; or a tenant's "
    "cap is full (`limit` names it).",
    413: "The request body is larger than the API takes (WOOSTORE_MAX_BODY_BYTES).",
    415: "The body was not sent as JSON (Content-Type: application/json).",
    422: "The request does not match this operation's parameters or body.",
    429: "A limit that waiting frees was reached (`limit` names it); retry after "
    "`Retry-After` seconds.",
    503: "Busy, or the database is unavailable; retry after `Retry-After` seconds.",
}


_RETRY_AFTER = {
    409: "Seconds after which asking again may be accepted; sent only when the object moves"
    " on by itself (a store at work, a copy or a clean-up under way).",
    429: "Seconds to wait before trying again.",
    503: "Seconds to wait before trying again.",
}


class ProblemDetails(BaseModel):
    """An RFC 9457 problem: the body of every error answer."""

    model_config = ConfigDict(
        extra="allow",  # a problem may carry more members: errors, limit, status_now...
        title=_SCHEMA_NAME,
        json_schema_extra={
            "examples": [
                {
                    "type": TYPE_BASE + "not-found",
                    "title": "Not found",
                    "status": 404,
                    "detail": "store 0b7e6a52-3c1f-4d2a-9a57-6f1e2d9c8b10 does not exist",
                    "instance": "/api/v1/stores/0b7e6a52-3c1f-4d2a-9a57-6f1e2d9c8b10",
                }
            ]
        },
    )

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str = Field(description="What went wrong, for people.")
    instance: str = Field(description="The path of the request.")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that can answer these problems, for the OpenAPI document."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": _WHY[status],
            "content": {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{_SCHEMA_NAME}"}}},
        }
        if status in _RETRY_AFTER:
            response["headers"] = {
                "Retry-After": {"description": _RETRY_AFTER[status], "schema": {"type": "integer"}}
            }
        responses[status] = response
    return responses


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


def _a_store(status: StoreStatus) -> str:
    """A store of ``status`` as a sentence says it: "a ready store", "a store being backed up"."""
    being = _BEING.get(status)
    return f"a store {being}" if being else f"a {status.value} store"


def not_found(what: str) -> Problem:
    return Problem(404, "Not found", f"{what} does not exist", kind="not-found")


def tenant_gone(name: str, deleted_at: datetime) -> Problem:
    """404 for a deleted tenant: gone, as one that never was, but said so (an admin finds it
    listed with include_deleted, and its history)."""
    detail = (
        f"tenant {name!r} was deleted at {deleted_at.isoformat(timespec='seconds')}; "
        "GET /tenants?include_deleted=true lists it"
    )
    return Problem(404, "Not found", detail, kind="not-found")


def unauthorized(detail: str, *, token_refused: bool = False) -> Problem:
    """A 401; ``token_refused``: a token was sent and is no valid key (RFC 6750 names that
    error, so a client knows to stop sending it rather than to add one)."""
    challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if token_refused else None
    return Problem(401, "Unauthorized", detail, kind="unauthorized", headers=challenge)


def no_credentials(status_now: StoreStatus, has_password: bool) -> Problem:
    """No credentials to read, and why: a deleted store's were not coming (a user's review:
    told they were available once it was ready), nor a serving store's never recorded."""
    if status_now in (StoreStatus.DELETING, StoreStatus.DELETED):
        detail = f"a {status_now.value} store's credentials go with it"
    elif credentials_readable(status_now, True) and not has_password:
        detail = "no admin password was recorded for this store"
    else:
        detail = "credentials are available once the store is ready"
    return Problem(
        409, "Store not ready", detail, kind="invalid-state", status_now=status_now.value
    )


def tenant_exists(name: str) -> Problem:
    return Problem(409, "Tenant exists", f"a tenant named {name!r} exists", kind="tenant-exists")


def tenant_not_deletable(detail: str) -> Problem:
    return Problem(409, "Tenant cannot be deleted now", detail, kind="tenant-not-deletable")


def tenant_not_suspendable(detail: str) -> Problem:
    return Problem(409, "Tenant cannot be suspended", detail, kind="tenant-not-suspendable")


def default_tenant_kept(change: str) -> Problem:
    """The admin token's tenant, which the docs and messages call ``default``: never
    deleted, nor renamed (another tenant could then take its name), nor suspended."""
    detail = f"the default tenant is the admin token's own: it cannot be {change}"
    return Problem(409, "Default tenant kept", detail, kind="default-tenant-kept")


def idempotency_key_reused() -> Problem:
    return Problem(
        422, "Idempotency key reused",
        "this Idempotency-Key was already used with a different request body",
        kind="idempotency-key-reused",
    )  # fmt: skip


def invalid_cursor() -> Problem:
    return Problem(
        400, "Invalid cursor", "use the next_cursor of a previous page", kind="invalid-cursor"
    )


_UNPARSED = "There was an error parsing the body"  # FastAPI's own detail
_WHY_UNPARSED: dict[type[BaseException], str] = {
    UnicodeDecodeError: "it is not UTF-8",
    RecursionError: "it nests too deep",
}


def _body_not_said_json(request: Request, error: RequestValidationError) -> bool:
    """A body FastAPI did not read as JSON, because its Content-Type did not say JSON (or
    was missing): every field then seemed missing ("Input should be a valid dictionary")."""
    said = request.headers.get("content-type", "").split(";")[0].strip().lower()
    sent = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in (
        request.headers
    )
    about_the_body = any(e["loc"][:1] == ("body",) for e in error.errors())
    is_json = said == "application/json" or said.endswith("+json")
    return sent and about_the_body and not is_json


def addresses_exhausted() -> Problem:
    return Problem(503, "Busy", "could not allocate a unique address; retry", kind="slug-exhausted")


def body_cut_off() -> Problem:
    return Problem(400, "Malformed body", "the request body was cut off", kind="malformed-body")


def head_refused() -> Problem:
    detail = "HEAD does not read this: it holds a secret, read (and audited) by GET alone"
    return Problem(
        405, "Method not allowed", detail, kind=METHOD_NOT_ALLOWED, headers={"Allow": "GET"}
    )


def unknown_parameters(unknown: list[str], taken: list[str]) -> Problem:
    takes = f"it takes {', '.join(taken)}" if taken else "it takes none"
    errors = [
        {"location": ["query", name], "message": f"this operation takes no {name}; {takes}"}
        for name in unknown
    ]
    detail = "; ".join(f"query.{e['location'][1]}: {e['message']}" for e in errors)
    return Problem(422, "Invalid request", detail, kind="invalid-request", errors=errors)


def takes_no_body() -> Problem:
    detail = "this operation takes no body; it acts on what the path names"
    return Problem(
        422, "Invalid request", detail, kind="invalid-request",
        errors=[{"location": ["body"], "message": detail}],
    )  # fmt: skip


# The 503's detail when the database did not take a session's end. Its cookie is deleted all
# the same; a copy of it still opens the session until it expires, or its key is revoked.
SESSION_NOT_ENDED = (
    "the session could not be ended on the server; this cookie is deleted all the same, "
    "and a copy of it opens the session until it expires or its key is revoked"
)


def copied_across_tenants(backup_id: uuid.UUID, tenant_id: uuid.UUID) -> Problem:
    """For an admin, who sees every tenant's backups: a tenant's own is all it may copy."""
    detail = (
        f"backup {backup_id} is of tenant {tenant_id}'s store: a copy is made in the tenant "
        f"whose backup it is (tenant_id {tenant_id}; the CLI's --tenant)"
    )
    return Problem(
        422, "Invalid request", detail, kind="invalid-request",
        errors=[{"location": ["body", "from_backup"], "message": detail}],
    )  # fmt: skip


def forbidden(detail: str) -> Problem:
    return Problem(403, "Forbidden", detail, kind="forbidden")


def content_too_large(max_bytes: int) -> Problem:
    return Problem(
        413,
        "Content too large",
        f"the request body is larger than {max_bytes} bytes",
        kind="content-too-large",
        max_bytes=max_bytes,
    )


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    """The answer to ``problem``, for code that runs outside the app's exception handlers."""
    return problem_for(
        request,
        problem.status,
        problem.title,
        problem.detail,
        problem.kind,
        problem.headers,
        **problem.extensions,
    )


def limit_reached(limit: str, allowed: int, detail: str, retry_after: int) -> Problem:
    """429: a rate, or a cap that frees up by itself (``limit`` names it, ``allowed`` says
    how much it allows), with when to ask again."""
    return Problem(
        429, "Limit reached", detail, kind="limit-reached",
        headers={"Retry-After": str(retry_after)}, limit=limit, allowed=allowed,
    )  # fmt: skip


def cap_reached(limit: str, allowed: int, detail: str) -> Problem:
    """409: a cap that only its owner's action frees (deleting a store, revoking a key).
    Not a 429: waiting never helps, and a client that retries 429s would retry for ever."""
    return Problem(409, "Limit reached", detail, kind="limit-reached", limit=limit, allowed=allowed)


# SQLSTATE classes of the database's state, not of the statement: a connection lost or
# refused (08), a transaction to run again (40), resources short (53), the server stopping or
# a statement cancelled (57). Others an OperationalError carries, such as 54 (a program limit
# exceeded), fail the same way however often they are sent.
_UNAVAILABLE_CLASSES = frozenset({"08", "40", "53", "57"})


def _database_unavailable(error: DBAPIError) -> bool:
    if error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError):
        return False
    sqlstate = getattr(error.orig, "sqlstate", None)  # None: no answer from a server at all
    return sqlstate is None or sqlstate[:2] in _UNAVAILABLE_CLASSES


def _document_problems(app: FastAPI) -> None:
    """Add the schema that :func:`problem_responses` refers to, to the OpenAPI document, and
    what any operation taking a body may answer however it is declared: 400 for a body that
    is no JSON, 413 past the body limit, 415 for one not sent as JSON."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        cached = app.openapi_schema is not None
        document = build()
        if not cached:
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas[_SCHEMA_NAME] = ProblemDetails.model_json_schema()
            for path in document.get("paths", {}).values():
                for operation in path.values():
                    if "requestBody" in operation:
                        for status in (400, 413, 415):
                            operation["responses"][str(status)] = problem_responses(status)[status]
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it


def install_problem_handlers(app: FastAPI) -> None:
    _document_problems(app)

    @app.exception_handler(Problem)
    async def problem(request: Request, error: Problem) -> JSONResponse:
        return problem_response(request, error)

    @app.exception_handler(TenantSuspended)
    async def suspended(request: Request, _: TenantSuspended) -> JSONResponse:
        # Where a key or a session is looked up (authenticate, signing in): refused as a
        # revoked key is, with the reason, which its holder can do nothing about but wait.
        return problem_response(request, unauthorized(TenantSuspended.detail, token_refused=True))

    @app.exception_handler(InvalidTransition)
    async def invalid_state(request: Request, error: InvalidTransition) -> JSONResponse:
        done = _DONE_BY_TARGET.get(error.target, f"made {error.target.value}")
        *others, last = sorted(_BEING.get(s, s.value) for s in error.allowed_from)
        allowed = f"{', '.join(others)} or {last}" if others else last
        # A store at work moves on by itself: asking again then may be accepted (a retry of an
        # upgrading store never is: it ends ready, and only a failed store is retried; nor is
        # anything of a store to be deleted as its work ends).
        ends_as = _ENDS_AS.get(error.current, set())
        may_do = not ends_as.isdisjoint(error.allowed_from) and not error.deleted_next
        later = {"Retry-After": str(BUSY_RETRY_SECONDS)} if may_do else None
        detail = f"{_a_store(error.current)} cannot be {done}; it can be when it is {allowed}"
        if error.current in _GONE:  # it never will be
            detail = f"{_a_store(error.current)} cannot be {done}"
        if error.deleted_next:
            # Busy: its work ends by itself. Ready or failed: a copy of its backup is made.
            when = (
                "it is deleted as it ends"
                if error.current in _ENDS_AS
                else "its deletion was asked for, and starts once no copy reads its backups"
            )
            detail = f"{_a_store(error.current)}, to be deleted, cannot be {done}: {when}"
        return problem_for(
            request,
            409,
            f"Store cannot be {done} now",
            detail,
            "invalid-state",
            headers=later,
            status_now=error.current.value,
        )

    @app.exception_handler(BackupNotFound)
    async def backup_not_found(request: Request, error: BackupNotFound) -> JSONResponse:
        return problem_for(request, 404, "Not found", str(error), "not-found")

    @app.exception_handler(BackupNotRestorable)
    async def backup_not_restorable(request: Request, error: BackupNotRestorable) -> JSONResponse:
        title = "Backup cannot be restored or copied"
        return problem_for(request, 409, title, str(error), "invalid-state")

    @app.exception_handler(CopyCannotBeMadeAgain)
    async def copy_cannot_be_made_again(
        request: Request, error: CopyCannotBeMadeAgain
    ) -> JSONResponse:
        return problem_for(request, 409, "Store cannot be retried", str(error), "invalid-state")

    @app.exception_handler(BackupInUse)
    async def backup_in_use(request: Request, error: BackupInUse) -> JSONResponse:
        # Made or restored from, it is free within minutes, by itself: ask again then.
        return problem_for(
            request, 409, "Backup cannot be deleted now", str(error), "invalid-state",
            headers={"Retry-After": str(BUSY_RETRY_SECONDS)},
        )  # fmt: skip

    @app.exception_handler(CopyUnderWay)
    async def copy_under_way(request: Request, error: CopyUnderWay) -> JSONResponse:
        return problem_for(
            request, 409, f"{error.kind.capitalize()} cannot be deleted now", str(error),
            "invalid-state",
            headers={"Retry-After": str(COPY_RETRY_SECONDS)},
        )  # fmt: skip

    @app.exception_handler(StateOfNoCountry)
    async def state_of_no_country(request: Request, error: StateOfNoCountry) -> JSONResponse:
        # A state named alone, found not to be one of the store's country's as it is read:
        # told as the request's own checks tell it.
        return problem_for(
            request, 422, "Invalid request", f"body.state: {error}", "invalid-request",
            errors=[{"location": ["body", "state"], "message": str(error)}],
        )  # fmt: skip

    @app.exception_handler(NothingToRollBackTo)
    async def nothing_to_roll_back_to(request: Request, error: NothingToRollBackTo) -> JSONResponse:
        return problem_for(request, 409, "Nothing to roll back to", str(error), "invalid-state")

    @app.exception_handler(StillCleaningUp)
    async def still_cleaning_up(request: Request, error: StillCleaningUp) -> JSONResponse:
        return problem_for(
            request,
            409,
            "Store is still being cleaned up",
            f"{error}: it can be retried once its clean-up has finished (its cleaned_up event)",
            "invalid-state",
            headers={"Retry-After": str(CLEAN_UP_RETRY_SECONDS)},
            status_now=StoreStatus.FAILED.value,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        if _body_not_said_json(request, error):
            said = request.headers.get("content-type")
            return problem_for(
                request, 415, "Unsupported media type",
                f"the body must be JSON, sent as Content-Type: application/json"
                f" (it was sent as {said or 'nothing named'})",
                "unsupported-media-type",
            )  # fmt: skip
        unreadable = next((e for e in error.errors() if e["type"] == "json_invalid"), None)
        if unreadable is not None:  # no JSON at all: nothing to say of any field
            why = unreadable.get("ctx", {}).get("error", "")
            return problem_for(
                request,
                400,
                "Malformed body",
                f"the body is not JSON: {why} (at character {unreadable['loc'][-1]})",
                "malformed-body",
            )
        # A validator's own words, without pydantic's "Value error, " before them.
        errors = [
            {"location": list(e["loc"]), "message": e["msg"].removeprefix("Value error, ")}
            for e in error.errors()
        ]
        detail = "; ".join(f"{'.'.join(map(str, e['location']))}: {e['message']}" for e in errors)
        return problem_for(
            request, 422, "Invalid request", detail, "invalid-request", errors=errors
        )

    @app.exception_handler(HTTPException)
    async def http(request: Request, error: HTTPException) -> JSONResponse:
        if error.status_code == 400 and error.detail == _UNPARSED and error.__cause__:
            # FastAPI's answer to a body json.loads could not read, but for a JSON syntax
            # error (handled above): not UTF-8, nested past Python's recursion limit.
            why = _WHY_UNPARSED.get(type(error.__cause__), "it could not be read")
            detail = f"the body is not JSON: {why}"
            return problem_for(request, 400, "Malformed body", detail, "malformed-body")
        return http_problem(request, error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_for(
            request, 500, "Internal error", "the error was logged; retry later", "internal"
        )

    @app.exception_handler(DBAPIError)
    async def database(request: Request, error: DBAPIError) -> JSONResponse:
        # A connection lost or refused, PostgreSQL restarting, a deadlock: the request may be
        # sent again (a create safely with its Idempotency-Key: one lost at its commit may
        # have been made).
        if not _database_unavailable(error):
            return await unexpected(request, error)
        log.warning("database unavailable", path=request.url.path, error=type(error.orig).__name__)
        return database_unavailable(request)

    @app.exception_handler(PoolTimeout)
    async def no_connection_free(request: Request, error: PoolTimeout) -> JSONResponse:
        # Every connection this process may hold stayed in use for as long as a request waits
        # for one (woostore_shared.connecting.POOL_WAIT_SECONDS): a moment's overload, or a stuck
        # database. Not the client's fault, nor the code's.
        log.warning("no database connection free", path=request.url.path)
        return database_unavailable(
            request, "every connection to the database stayed in use; retry"
        )
