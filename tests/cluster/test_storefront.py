"""The storefront check over real HTTP, against a local server imitating a WooCommerce
store's Store API: a real cash-on-delivery order is placed, then deleted with WP-CLI."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.cluster.fakes import ExecCall, FakeKube
from tests.cluster.store_api import FakeStore, serving
from woostore_cluster import PermanentClusterError, TransientClusterError
from woostore_cluster.kubeobjects import ExecResult
from woostore_cluster.kubernetes import KubernetesCluster
from woostore_cluster.storefront import same_store

NS = "store-acme-1a2b3c"


@pytest.fixture
def wordpress(kube: FakeKube, store_api: FakeStore) -> FakeKube:
    """A ready WordPress pod whose WP-CLI deletes orders from the local store."""
    kube.roll_out(NS)

    def wp(call: ExecCall) -> ExecResult:
        words = call.command[2:]  # after "wp --path=..."
        if words[:3] == ["wc", "shop_order", "delete"]:
            if store_api.orders.pop(int(words[3]), None) is None:
                return ExecResult(1, "", f"Error: Invalid ID. ({words[3]})")
            return ExecResult(0, f"Success: Deleted shop_order {words[3]}.", "")
        return ExecResult(1, "", f"Error: unexpected command {words}")

    kube.exec_handler = wp
    return kube


async def test_a_cod_order_is_placed_through_the_store_api_and_deleted(
    driver: KubernetesCluster, wordpress: FakeKube, store_api: FakeStore
) -> None:
    check = await driver.check_storefront(NS, store_api.url)

    assert (check.status_code, check.products, check.order_placed) == (200, 1, True)
    assert "placed and deleted" in check.detail
    assert store_api.orders == {}  # deleted again
    (delete,) = wordpress.exec_calls
    assert delete.command == [
        "wp", "--path=/var/www/html", "wc", "shop_order", "delete", "101", "--force=true",
        "--user=admin",
    ]  # fmt: skip
    paths = [path for _, path, _ in store_api.requests]
    assert paths == [
        "/",
        "/wp-json/wc/store/v1/products",
        "/wp-json/wc/store/v1/cart",
        "/wp-json/wc/store/v1/cart/add-item",
        "/wp-json/wc/store/v1/checkout",
    ]
    # The cart's token, and the newest nonce the store answered, travel with every write.
    (token, first_nonce), (_, second_nonce), _ = store_api.issued
    add_item, checkout = (headers for _, _, headers in store_api.requests[3:])
    assert (add_item["cart-token"], add_item["nonce"]) == (token, first_nonce)
    assert (checkout["cart-token"], checkout["nonce"]) == (token, second_nonce)


async def test_a_refused_checkout_reports_why(
    driver: KubernetesCluster, wordpress: FakeKube, store_api: FakeStore
) -> None:
    store_api.cod_enabled = False

    check = await driver.check_storefront(NS, store_api.url)

    assert (check.status_code, check.products, check.order_placed) == (200, 1, False)
    assert check.detail == (
        "checkout refused: 400 woocommerce_rest_checkout_invalid_payment_method: "
        "Cash on delivery is not available for this order."
    )
    assert wordpress.exec_calls == []  # nothing to delete


async def test_a_store_without_products_cannot_take_an_order(
    driver: KubernetesCluster, wordpress: FakeKube, store_api: FakeStore
) -> None:
    store_api.products = list

    check = await driver.check_storefront(NS, store_api.url)

    assert (check.status_code, check.products, check.order_placed) == (200, 0, False)
    assert check.detail == "no purchasable product to order"


async def test_a_broken_storefront_is_reported_with_its_status(
    driver: KubernetesCluster, wordpress: FakeKube, store_api: FakeStore
) -> None:
    store_api.home_status = 503

    check = await driver.check_storefront(NS, store_api.url)

    assert (check.status_code, check.order_placed) == (503, False)
    assert [path for _, path, _ in store_api.requests] == ["/"]


async def test_an_order_that_cannot_be_deleted_still_counts_and_says_so(
    driver: KubernetesCluster, wordpress: FakeKube, store_api: FakeStore
) -> None:
    wordpress.exec_handler = lambda call: ExecResult(1, "", "Error: Could not delete shop_order.")

    check = await driver.check_storefront(NS, store_api.url)

    assert check.order_placed
    assert "could not be deleted: Error: Could not delete shop_order." in check.detail


async def test_an_unreachable_storefront_is_transient(driver: KubernetesCluster) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(TransientClusterError, match="cannot reach the storefront"):
            await driver.check_storefront(NS, f"http://127.0.0.1:{port}")


async def test_a_redirect_on_the_stores_own_address_is_followed(
    driver: KubernetesCluster, wordpress: FakeKube, store_api: FakeStore
) -> None:
    store_api.redirects["/"] = f"{store_api.url}/"

    check = await driver.check_storefront(NS, store_api.url)

    assert check.order_placed
    assert [path for _, path, _ in store_api.requests[:2]] == ["/", "/"]


async def test_a_redirect_to_another_server_is_refused_and_nothing_is_sent_there(
    driver: KubernetesCluster, wordpress: FakeKube, store_api: FakeStore
) -> None:
    """The store sends checkout elsewhere (another port of the same address, as a harness
    reproduced): the order's body is never re-sent there, and nothing it would answer ends
    up in the reason."""
    async with serving(FakeStore()) as elsewhere:
        store_api.redirects["/wp-json/wc/store/v1/checkout"] = (
            f"{elsewhere.url}/wp-json/wc/store/v1/checkout"
        )

        with pytest.raises(PermanentClusterError) as refused:
            await driver.check_storefront(NS, store_api.url)

    port = elsewhere.url.rpartition(":")[2]
    assert str(refused.value) == (
        f"the storefront at {store_api.url} redirected (307) to another host, "
        f"http://127.0.0.1:{port}: not followed"
    )
    assert elsewhere.requests == []
    assert store_api.orders == {}


@pytest.mark.parametrize(
    ("target", "followed"),
    [
        ("http://acme.shops.example/shop/", True),
        ("https://acme.shops.example/", True),  # the TLS profile's canonical address
        ("https://acme.shops.example:8443/", False),
        ("http://acme.shops.example:8080/", False),
        ("http://other.shops.example/", False),
        ("http://acme.shops.example.evil.test/", False),
    ],
)
def test_only_the_stores_own_address_counts_as_the_store(target: str, followed: bool) -> None:
    assert same_store(httpx.URL("http://acme.shops.example"), httpx.URL(target)) is followed


def test_https_never_drops_to_http() -> None:
    store = httpx.URL("https://acme.shops.example")
    assert not same_store(store, httpx.URL("http://acme.shops.example/"))
