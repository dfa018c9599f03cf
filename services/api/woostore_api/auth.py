"""Authentication: a bearer token (an API key or the admin token), or the dashboard's session
cookie. Every route asks for a :class:`Caller`; admin-only routes ask for an admin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from woostore_api.deps import AuthenticatorDep, SessionsDep, SettingsDep, settings_of
from woostore_api.edge import refuse_an_ignored_body, refuse_unknown_parameters
from woostore_api.problems import forbidden, unauthorized
from woostore_shared.access import Principal
from woostore_shared.secrets import InvalidTicket
from woostore_shared.settings import Settings

SESSION_COOKIE = "woostore_session"
# Over HTTPS the session cookie has the __Host- prefix: a browser takes such a cookie only
# Secure, for path /, with no Domain, so a page on another host (a store on a sibling
# subdomain of the same site) cannot set one the dashboard would read. Browsers refuse the
# prefix without Secure, so plain HTTP (make run on the loopback) keeps the plain name.
SECURE_SESSION_COOKIE = "__Host-" + SESSION_COOKIE
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_bearer = HTTPBearer(
    auto_error=False, description="An API key (wsk_...), or the admin token (WOOSTORE_ADMIN_TOKEN)."
)


def secure_cookies(request: HTTPConnection) -> bool:
    # Behind a TLS-terminating ingress the request itself may be plain HTTP.
    settings = settings_of(request)
    return request.url.scheme == "https" or settings.allowed_origin.startswith("https://")


def session_cookie(request: HTTPConnection) -> str:
    """The session cookie's name on this request: only this one is read or written."""
    return SECURE_SESSION_COOKIE if secure_cookies(request) else SESSION_COOKIE


class _SessionCookie(APIKeyCookie):
    async def __call__(self, request: HTTPConnection) -> str | None:
        return self.check_api_key(request.cookies.get(session_cookie(request)))


_cookie = _SessionCookie(
    name=SECURE_SESSION_COOKIE,
    auto_error=False,
    description=f"The dashboard's session (POST /session); `{SESSION_COOKIE}` over plain HTTP.",
)


@dataclass(frozen=True)
class Caller:
    """The principal behind a request, and where the request came from (for the audit log)."""

    principal: Principal
    source_ip: str | None
    user_agent: str | None


def caller_of(request: Request, principal: Principal) -> Caller:
    user_agent = request.headers.get("user-agent")
    return Caller(
        principal=principal,
        source_ip=request.client.host if request.client else None,
        user_agent=user_agent[:200] if user_agent else None,
    )


def refuse_another_origin(request: Request, settings: Settings) -> None:
    """A cookie rides along on cross-site requests; SameSite=Strict stops that in current
    browsers, and this refuses a write whose Origin is another site in any browser."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin not in (own, settings.allowed_origin):
        raise forbidden("a session cookie is accepted only from the dashboard's own origin")


async def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: Annotated[str | None, Depends(_cookie)],
    authenticator: AuthenticatorDep,
    sessions: SessionsDep,
    settings: SettingsDep,
) -> Caller:
    if bearer is not None:
        principal = await authenticator.by_token(bearer.credentials)
        if principal is None:
            raise unauthorized(
                "the bearer token is not a valid API key or was revoked", token_refused=True
            )
    elif session is not None:
        try:
            opened = sessions.open(session)
        except InvalidTicket as error:
            raise unauthorized("the session expired; sign in again") from error
        principal = await authenticator.by_session(opened)
        if principal is None:
            raise unauthorized(
                "the session was signed out, or the key behind it revoked; sign in again"
            )
        if request.method not in _SAFE_METHODS:
            refuse_another_origin(request, settings)
    else:
        raise unauthorized("a bearer token (an API key) or a session cookie is required")
    # Once the caller is known: an unauthenticated request is a 401 whatever it asks.
    await refuse_an_ignored_body(request)
    refuse_unknown_parameters(request)
    return caller_of(request, principal)


async def authenticate_admin(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
    if not caller.principal.is_admin:
        raise forbidden("this needs an admin key")
    return caller


CurrentCaller = Annotated[Caller, Depends(authenticate)]
AdminCaller = Annotated[Caller, Depends(authenticate_admin)]
