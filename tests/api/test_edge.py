"""The API's edge: the limit on request bodies, the /docs page, and the headers of every
answer (security headers, no caching of secrets)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from nats.aio.client import Client
from starlette.requests import Request

from tests.api.http import STORES, problem
from tests.support import ADMIN_TOKEN
from woostore_api.edge import refuse_an_ignored_body
from woostore_api.main import STATIC, create_app
from woostore_api.problems import Problem
from woostore_shared.settings import Settings

CHUNK = b" " * 1024
SESSION = "/api/v1/session"
SECURE_SESSION = "__Host-woostore_session"
PLAIN_SESSION = "woostore_session"


class Chunks:
    """A request body sent in chunks with no Content-Length; counts what the API pulled."""

    def __init__(self, count: int, first: bytes = b"") -> None:
        self.count = count
        self.first = first
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index in range(self.count):
            self.pulled += 1
            yield self.first if index == 0 and self.first else CHUNK


@pytest.fixture
def limit(settings: Settings) -> int:
    return settings.max_body_bytes


async def test_a_declared_length_over_the_limit_is_refused_before_authentication_unread(
    anonymous: httpx.AsyncClient, limit: int
) -> None:
    body = Chunks(count=limit // len(CHUNK) * 1000)  # 1000 times the limit

    response = await anonymous.post(
        STORES, content=body, headers={"Content-Length": str(body.count * len(CHUNK))}
    )

    details = problem(response, 413)  # not 401: nobody asked who sent it
    assert details["max_bytes"] == limit
    assert body.pulled <= 1


async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(
    anonymous: httpx.AsyncClient, limit: int
) -> None:
    body = Chunks(count=limit // len(CHUNK) * 1000)

    response = await anonymous.post(STORES, content=body)

    assert "content-length" not in response.request.headers
    problem(response, 413)
    assert body.pulled <= limit // len(CHUNK) + 2, "the API read on past its limit"


async def test_a_chunked_body_within_the_limit_reaches_the_route(
    client: httpx.AsyncClient, limit: int
) -> None:
    payload = b'{"name": "Chunked Shop"}'
    body = Chunks(count=limit // len(CHUNK) - 1, first=payload)

    response = await client.post(STORES, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 202, response.text
    assert response.json()["name"] == "Chunked Shop"


async def test_a_body_of_exactly_the_limit_is_taken(client: httpx.AsyncClient, limit: int) -> None:
    payload = b'{"name": "Exact Shop"}'
    body = payload + b" " * (limit - len(payload))

    response = await client.post(STORES, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 202, response.text


async def test_the_limit_is_the_max_body_bytes_setting(settings: Settings) -> None:
    # Refusing needs nothing of the lifespan: the app is not started.
    app = create_app(settings.model_copy(update={"max_body_bytes": 16}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:
        response = await http.post(STORES, json={"name": "Seventeen bytes!"})

    assert problem(response, 413)["max_bytes"] == 16


# --- /docs ----------------------------------------------------------------------------------


async def test_the_docs_page_loads_swagger_ui_from_the_api_itself(
    anonymous: httpx.AsyncClient,
) -> None:
    page = await anonymous.get("/docs")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert urls
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "<script>" not in page.text, "an inline script (the CSP allows files only)"
    for url in urls:
        assert (await anonymous.get(url)).status_code == 200, url
    bundle = await anonymous.get("/docs/assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text


async def test_the_docs_can_be_turned_off_and_the_openapi_document_stays(
    settings: Settings,
) -> None:
    app = create_app(settings.model_copy(update={"api_docs": False}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:
        for url in ("/docs", "/docs/assets/swagger-ui-bundle.js", "/redoc"):
            assert (await http.get(url)).status_code == 404, url
        assert (await http.get("/openapi.json")).status_code == 200


# --- the headers of every response ------------------------------------------------------------


async def test_every_answer_forbids_framing_sniffing_and_referrers(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient, settings: Settings
) -> None:
    answers = [
        await anonymous.get("/"),
        await anonymous.get("/static/app.js"),
        await anonymous.get("/docs"),
        await anonymous.get(STORES),  # a 401 problem
        await anonymous.post(STORES, content=b" " * (settings.max_body_bytes + 1)),  # a 413
        await client.get(STORES),
        await anonymous.get("/nowhere"),
    ]

    for response in answers:
        where = f"{response.request.method} {response.request.url.path}"
        headers = response.headers
        assert headers["x-frame-options"] == "DENY", where
        assert headers["x-content-type-options"] == "nosniff", where
        assert headers["referrer-policy"] == "no-referrer", where
        policy = csp(headers["content-security-policy"])
        assert policy["frame-ancestors"] == ["'none'"], where
        assert policy["default-src"] == ["'none'"], where
        assert policy["script-src"] == ["'self'"], where
        assert policy["style-src"] == ["'self'"], where


async def test_the_dashboard_may_reach_the_event_stream_on_its_own_origin(
    anonymous: httpx.AsyncClient, settings: Settings
) -> None:
    events = urlsplit(settings.events_url)
    assert events.port != settings.api_port  # the notifier is another origin here

    policy = csp((await anonymous.get("/")).headers["content-security-policy"])

    assert policy["connect-src"] == ["'self'", f"{events.scheme}://{events.netloc}"]


@pytest.mark.parametrize("page", ["index.html", "docs.html"])
def test_the_pages_have_no_inline_script_or_style(page: str) -> None:
    html = (STATIC / page).read_text()

    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html
    assert " style=" not in html
    assert re.findall(r"\son[a-z]+=", html) == []  # event handler attributes


async def test_the_dashboard_modules_are_served_as_what_they_are_whatever_the_host_guesses(
    anonymous: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nosniff, a browser runs a module script only when it is served as JavaScript, and
    applies a stylesheet only when served as CSS; a host's mime.types (or Windows' registry)
    may say text/plain."""
    monkeypatch.setattr("starlette.responses.guess_type", lambda _path: ("text/plain", None))
    assert '<script type="module" src="/static/app.js">' in (STATIC / "index.html").read_text()
    scripts = sorted(STATIC.rglob("*.js"))
    assert len(scripts) > 5  # the entry point and its modules

    for script in scripts:
        path = f"/static/{script.relative_to(STATIC).as_posix()}"
        response = await anonymous.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "text/javascript; charset=utf-8", path
        for target in re.findall(r"^import .* from '(\.[^']+)';$", response.text, re.MULTILINE):
            assert (script.parent / target).is_file(), (path, target)
    style = await anonymous.get("/static/style.css")
    assert style.headers["content-type"] == "text/css; charset=utf-8"


async def test_the_dashboard_is_revalidated_before_a_cached_copy_is_used(
    anonymous: httpx.AsyncClient,
) -> None:
    """Its modules import each other: an old release's mixed with a new one's would not load."""
    page = await anonymous.get("/")
    module = await anonymous.get("/static/dashboard/stores.js")
    unchanged = await anonymous.get(
        "/static/dashboard/stores.js", headers={"If-None-Match": module.headers["etag"]}
    )

    assert unchanged.status_code == 304
    for response in (page, module, unchanged):
        assert response.headers["cache-control"] == "no-cache", response.request.url


def csp(header: str) -> dict[str, list[str]]:
    directives = (d.split() for d in header.split(";") if d.strip())
    return {name: values for name, *values in directives}


# --- answers carrying a secret are never cached --------------------------------------------


async def test_answers_carrying_a_secret_are_not_stored_by_any_cache(
    client: httpx.AsyncClient,
) -> None:
    # The store credentials' answer too: tests/api/test_api_stores.py
    key = await client.post("/api/v1/keys", json={"name": "ci"})

    secrets = [
        key,
        await client.post(SESSION, json={"token": key.json()["token"]}),
        await client.post("/api/v1/events/ticket"),
    ]

    for response in secrets:
        assert response.status_code < 300, response.text
        assert response.headers["cache-control"] == "no-store", response.request.url.path
    assert "cache-control" not in (await client.get(STORES)).headers


# --- the session cookie ----------------------------------------------------------------------


def browser(api: FastAPI, scheme: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url=f"{scheme}://api.test", **kwargs
    )


async def sign_in(http: httpx.AsyncClient, token: str) -> str:
    """Signs in; returns the Set-Cookie header."""
    response = await http.post(SESSION, json={"token": token})
    assert response.status_code == 200, response.text
    return response.headers["set-cookie"]


async def test_over_https_only_the_host_prefixed_session_cookie_counts(
    api: FastAPI, client: httpx.AsyncClient
) -> None:
    tenant = await client.post("/api/v1/tenants", json={"name": "planter"})
    key = await client.post(
        "/api/v1/keys", json={"name": "planter", "tenant_id": tenant.json()["id"]}
    )
    async with browser(api, "https") as own, browser(api, "https") as planter:
        cookie = await sign_in(own, ADMIN_TOKEN)
        await sign_in(planter, key.json()["token"])
        assert cookie.startswith(f"{SECURE_SESSION}=")
        assert {"secure", "path=/", "httponly", "samesite=strict"} <= attributes(cookie)
        assert not any(a.startswith("domain=") for a in attributes(cookie))
        assert (await own.get(SESSION)).json()["actor"] == "admin-token"
        planted = planter.cookies[SECURE_SESSION]

    # What a store on a sibling subdomain can set: the plain name, for the parent domain.
    async with browser(api, "https", cookies={PLAIN_SESSION: planted}) as victim:
        problem(await victim.get(SESSION), 401)
    async with browser(
        api, "https", cookies={PLAIN_SESSION: planted, SECURE_SESSION: own_value(cookie)}
    ) as victim:
        assert (await victim.get(SESSION)).json()["actor"] == "admin-token"


async def test_behind_a_tls_ingress_the_session_cookie_is_host_prefixed(
    api: FastAPI, settings: Settings
) -> None:
    api.state.settings = settings.model_copy(update={"dashboard_origin": "https://woostore.test"})
    async with browser(api, "http") as http:  # TLS ended at the ingress
        cookie = await sign_in(http, ADMIN_TOKEN)
        signed_out = await http.delete(SESSION)

    assert cookie.startswith(f"{SECURE_SESSION}=")
    assert {"secure", "path=/"} <= attributes(cookie)
    removal = signed_out.headers["set-cookie"]
    assert removal.startswith(f'{SECURE_SESSION}="";')
    assert {"secure", "path=/", "max-age=0"} <= attributes(removal)


async def test_over_plain_http_the_session_cookie_keeps_its_plain_name(api: FastAPI) -> None:
    async with browser(api, "http") as http:
        cookie = await sign_in(http, ADMIN_TOKEN)

    # Browsers refuse a __Host- cookie that is not Secure, and a plain-HTTP cookie cannot be.
    assert cookie.startswith(f"{PLAIN_SESSION}=")
    assert "secure" not in attributes(cookie)
    assert "path=/" in attributes(cookie)


def attributes(set_cookie: str) -> set[str]:
    return {part.strip().lower() for part in set_cookie.split(";")[1:]}


def own_value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


# --- the client behind a proxy -----------------------------------------------------------------


@pytest.fixture
async def behind_proxy(settings: Settings, nats_client: Client) -> AsyncIterator[FastAPI]:
    """The API trusting one proxy, 10.1.2.3, for the client's address and scheme."""
    app = create_app(settings.model_copy(update={"forwarded_allow_ips": "10.1.2.3"}))
    async with app.router.lifespan_context(app):
        yield app


@pytest.mark.parametrize(
    ("peer", "recorded"), [("10.1.2.3", "203.0.113.7"), ("10.9.9.9", "10.9.9.9")]
)
async def test_the_audit_log_believes_x_forwarded_for_only_from_a_trusted_proxy(
    behind_proxy: FastAPI, peer: str, recorded: str
) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=behind_proxy, client=(peer, 40000)),
        base_url="http://api.test",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", **forwarded},
    ) as http:
        signed_in = await http.post(SESSION, json={"token": ADMIN_TOKEN})
        [entry] = (await http.get("/api/v1/audit")).json()["items"]

    assert entry["action"] == "session.create"
    assert entry["source_ip"] == recorded
    # The scheme follows the same trust: the trusted proxy's HTTPS gets the __Host- cookie.
    name = SECURE_SESSION if peer == "10.1.2.3" else PLAIN_SESSION
    assert signed_in.headers["set-cookie"].startswith(f"{name}=")


async def test_a_client_gone_mid_body_is_refused_not_an_internal_error() -> None:
    """An operation that takes no body reads it to refuse one it would ignore: a client
    that goes away meanwhile gets (nobody reads it) a 400, not an unhandled error logged."""

    async def upgrade() -> None:  # as /upgrade is: it takes no body
        pass

    route = APIRoute("/stores/{store_id}/upgrade", upgrade, methods=["POST"])

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    request = Request({"type": "http", "method": "POST", "headers": [], "route": route}, gone)

    with pytest.raises(Problem) as refused:
        await refuse_an_ignored_body(request)
    assert refused.value.status == 400


async def test_no_query_parameter_the_document_offers_is_refused_as_unknown(
    api: FastAPI, client: httpx.AsyncClient
) -> None:
    """Unknown query parameters are found from each route's own dependencies
    (``refuse_unknown_parameters``): one an app- or router-wide dependency took would be in
    the OpenAPI document, and refused (a diff review). Every GET is asked with every query
    parameter its document offers: its values may be refused, never its names."""
    asked = 0
    for path, operations in api.openapi()["paths"].items():
        get = operations.get("get", {})
        names = [p["name"] for p in get.get("parameters", []) if p["in"] == "query"]
        if not names:
            continue
        url = re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", path)
        answer = await client.get(url, params={name: "1" for name in names})
        assert "takes no" not in answer.text, (path, answer.text)
        asked += 1
    assert asked >= 5  # the lists: stores, audit, tenants, keys, backups...
