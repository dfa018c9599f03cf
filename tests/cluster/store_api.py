"""A small HTTP server imitating a WooCommerce store's storefront and Store API, served for
real on a loopback port (uvicorn), so the storefront check talks HTTP as it would to a store.

It keeps the rules the check depends on: ``GET /cart`` hands out a ``Cart-Token`` and a
``Nonce``; cart writes and checkout without a known ``Cart-Token`` are refused (401, as
WooCommerce refuses a missing nonce); checkout needs items, addresses and an enabled
payment method, and creates an order the test can then see deleted.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.cluster.tls import Tls

API = "/wp-json/wc/store/v1"


def problem(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "data": {"status": status}}, status)


@dataclass
class FakeStore:
    # The products the Store API lists: {"id", "name", ...}; a callable reads them live.
    products: Callable[[], list[dict[str, Any]]] = lambda: [
        {"id": 11, "name": "Organic Coffee Beans", "is_purchasable": True, "is_in_stock": True}
    ]
    home_status: int = 200
    cod_enabled: bool = True
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    carts: dict[str, list[int]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    issued: list[tuple[str, str]] = field(default_factory=list)  # (Cart-Token, Nonce) answered
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(101))
    # Path -> Location: the next request for the path is answered 307 to it, once.
    redirects: dict[str, str] = field(default_factory=dict)
    url: str = ""

    def app(self) -> Starlette:
        return Starlette(
            middleware=[Middleware(BaseHTTPMiddleware, dispatch=self.redirect)],
            routes=[
                Route("/", self.home),
                Route(f"{API}/products", self.list_products),
                Route(f"{API}/cart", self.cart),
                Route(f"{API}/cart/add-item", self.add_item, methods=["POST"]),
                Route(f"{API}/checkout", self.checkout, methods=["POST"]),
            ],
        )

    async def redirect(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        location = self.redirects.pop(request.url.path, None)
        if location is None:
            return await call_next(request)
        self._log(request)
        return RedirectResponse(location, 307)

    def _log(self, request: Request) -> None:
        self.requests.append((request.method, request.url.path, dict(request.headers)))

    def _session(self, request: Request) -> str | None:
        token = request.headers.get("cart-token")
        return token if token in self.carts else None

    def _tokens(self, response: Response, token: str) -> Response:
        nonce = secrets.token_hex(5)  # a fresh nonce with every answer
        response.headers["Cart-Token"] = token
        response.headers["Nonce"] = nonce
        self.issued.append((token, nonce))
        return response

    async def home(self, request: Request) -> Response:
        self._log(request)
        return HTMLResponse("<html><body>A WooStore shop</body></html>", self.home_status)

    async def list_products(self, request: Request) -> Response:
        self._log(request)
        return JSONResponse(self.products())

    async def cart(self, request: Request) -> Response:
        self._log(request)
        token = self._session(request) or secrets.token_urlsafe(16)
        self.carts.setdefault(token, [])
        return self._tokens(JSONResponse({"items": self.carts[token]}), token)

    async def add_item(self, request: Request) -> Response:
        self._log(request)
        token = self._session(request)
        if token is None:
            return problem(401, "woocommerce_rest_missing_nonce", "Missing the Nonce header.")
        body = await request.json()
        if body.get("id") not in {p["id"] for p in self.products()}:
            return problem(400, "woocommerce_rest_cart_invalid_product", "No such product.")
        self.carts[token].append(int(body["id"]))
        return self._tokens(JSONResponse({"items": self.carts[token]}, 201), token)

    async def checkout(self, request: Request) -> Response:
        self._log(request)
        token = self._session(request)
        if token is None:
            return problem(401, "woocommerce_rest_missing_nonce", "Missing the Nonce header.")
        body = await request.json()
        billing = body.get("billing_address") or {}
        if not self.carts[token]:
            return problem(400, "woocommerce_rest_cart_empty", "The cart is empty.")
        if not billing.get("email") or not billing.get("country"):
            return problem(400, "rest_invalid_param", "Invalid parameter(s): billing_address")
        if body.get("payment_method") != "cod" or not self.cod_enabled:
            return problem(
                400,
                "woocommerce_rest_checkout_invalid_payment_method",
                "<strong>Cash on delivery</strong> is not available for this order.",
            )
        order_id = next(self._ids)
        self.orders[order_id] = {"items": list(self.carts[token]), "billing": billing}
        self.carts[token] = []
        answer = {
            "order_id": order_id,
            "status": "processing",
            "payment_method": "cod",
            "payment_result": {"payment_status": "success", "payment_details": []},
        }
        return self._tokens(JSONResponse(answer), token)


@asynccontextmanager
async def serve(app: Starlette, tls: Tls | None = None) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port until the block ends; yields its base URL
    (https with ``tls``' server certificate, http without)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    certificate: dict[str, Any] = (
        {} if tls is None else {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
    )
    # log_config=None and no log_level: either would reconfigure uvicorn's loggers for the
    # whole test process (a level, handlers that stop propagating), not for this server.
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, lifespan="off", access_log=False, **certificate)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # uvicorn offers no event to wait on
                if task.done():
                    task.result()  # it died: say why
                await asyncio.sleep(0.01)
        yield f"{'http' if tls is None else 'https'}://{host}:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def serving(store: FakeStore) -> AsyncIterator[FakeStore]:
    """Serve ``store`` on a free loopback port until the block ends."""
    async with serve(store.app()) as url:
        store.url = url
        yield store
