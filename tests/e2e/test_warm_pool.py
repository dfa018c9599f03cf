"""The warm pool end to end, on the real processes: the reaper fills it, `woostore create
--wait` takes a pooled store and reports how fast, the store is its owner's in the cluster
(address, name, password, settings), and the pool refills; with the pool empty, a create is
a cold start."""

from __future__ import annotations

import hashlib
import io
import re
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout

import httpx
import psycopg
import pytest

from woostore_cli.main import main as woostore
from woostore_cluster import STORE_ID_LABEL
from woostore_cluster.simulated import SimulatedCluster
from woostore_devstack.platform import Platform, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
POOL_SIZE = 2


@pytest.fixture
def platform(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Platform]:
    """With a warm pool; a test may add settings (``indirect`` parametrisation)."""
    with running_platform(
        tmp_path_factory.mktemp("platform"),
        WOOSTORE_SIM_TIME_SCALE="0.05",
        WOOSTORE_WARM_POOL_SIZE=str(POOL_SIZE),
        WOOSTORE_REAPER_INTERVAL_SECONDS="0.5",
        **getattr(request, "param", {}),
    ) as running:
        yield running


def pooled(platform: Platform) -> list[str]:
    """The ids of the stores waiting in the warm pool, read from PostgreSQL."""
    with psycopg.connect(platform.postgres.url) as db:
        rows = db.execute(
            "SELECT id::text FROM stores WHERE tenant_id IS NULL AND status = 'pooled'"
        )
        return [row[0] for row in rows]


def wait_for_pool(platform: Platform, deadline: float = 60) -> list[str]:
    give_up = time.monotonic() + deadline
    while len(found := pooled(platform)) < POOL_SIZE:
        platform.check_alive()
        assert time.monotonic() < give_up, f"the warm pool holds {found} after {deadline} s"
        time.sleep(0.2)
    return found


def cli(platform: Platform, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = woostore([*args, "--url", platform.api_url, f"--token={platform.token}"])
    return code, out.getvalue() + err.getvalue()


def test_a_created_store_comes_from_the_warm_pool_made_its_owners(platform: Platform) -> None:
    in_pool = wait_for_pool(platform)

    code, output = cli(
        platform, "create", "Corner Shop", "--wait", "--currency", "EUR", "--country", "DE",
        "--no-sample-products",
    )  # fmt: skip

    assert code == 0, output
    assert re.search(
        r"Corner Shop \(simulated\) is ready in \d+\.\d s from the warm pool\.", output
    )
    api = httpx.Client(base_url=platform.api_url, headers=platform.headers)
    [store] = [s for s in api.get("/api/v1/stores").json()["items"] if s["name"] == "Corner Shop"]
    assert store["id"] in in_pool
    assert (store["origin"], store["status"]) == ("pool", "ready")
    assert store["ready_in_seconds"] is not None
    assert store["storefront_url"].startswith(f"http://{store['slug']}.")  # the owner's host
    password = api.get(f"/api/v1/stores/{store['id']}/credentials").json()["password"]

    cluster = SimulatedCluster(
        platform.data_dir / "simcluster",
        helm_binary=platform.env["WOOSTORE_HELM_BINARY"],
        time_scale=0,
    )
    [namespace] = [
        name for name, labels in cluster.namespaces().items()
        if labels.get(STORE_ID_LABEL) == store["id"]
    ]  # fmt: skip
    assert not namespace.endswith(store["slug"])  # made in the pool, under the pool's name
    wordpress = cluster.wordpress_state(namespace)
    assert wordpress["url"] == store["storefront_url"]
    assert wordpress["title"] == "Corner Shop"
    assert wordpress["admin_password_sha256"] == hashlib.sha256(password.encode()).hexdigest()
    assert wordpress["options"]["woocommerce_currency"] == "EUR"
    assert wordpress["options"]["woocommerce_default_country"] == "DE"
    assert wordpress.get("products", []) == []  # the owner wants no sample products
    assert wordpress.get("orders", []) == []
    ingress = cluster.manifests(namespace, "Ingress")
    assert [rule["host"] for i in ingress for rule in i["spec"]["rules"]] == [
        store["storefront_url"].removeprefix("http://")
    ]

    # The pool refills with new stores; the claimed one never returns to it.
    refilled = wait_for_pool(platform)
    assert store["id"] not in refilled


def test_with_the_pool_empty_a_create_is_a_cold_start(platform: Platform) -> None:
    wait_for_pool(platform)
    api = httpx.Client(base_url=platform.api_url, headers=platform.headers)
    made = [api.post("/api/v1/stores", json={"name": f"Rush {i}"}).json() for i in range(3)]

    assert [m["origin"] for m in made] == ["pool", "pool", "cold"]
    code, output = cli(platform, "show", made[2]["id"])
    assert code == 0
    assert "made from scratch" in output


@pytest.mark.parametrize(
    "platform", [{"WOOSTORE_SIM_FAULTS": '{"wp woostore personalise": "error"}'}], indirect=True
)
def test_a_pooled_store_that_cannot_be_made_the_owners_falls_back_to_a_cold_start(
    platform: Platform,
) -> None:
    in_pool = wait_for_pool(platform)

    code, output = cli(platform, "create", "Second Chance", "--wait")

    assert code == 0, output
    assert "could not be used" in output
    assert re.search(r"Second Chance \(simulated\) is ready in \d+\.\d s\.$", output, re.M)
    api = httpx.Client(base_url=platform.api_url, headers=platform.headers)
    [store] = [s for s in api.get("/api/v1/stores").json()["items"] if s["name"] == "Second Chance"]
    assert store["id"] in in_pool  # the same store, for the same owner
    assert (store["origin"], store["status"]) == ("cold", "ready")
    cluster = SimulatedCluster(
        platform.data_dir / "simcluster",
        helm_binary=platform.env["WOOSTORE_HELM_BINARY"],
        time_scale=0,
    )
    give_up = time.monotonic() + 30
    while True:  # the discarded namespace is removed on the removal lane
        homes = [
            name for name, labels in cluster.namespaces().items()
            if labels.get(STORE_ID_LABEL) == store["id"]
        ]  # fmt: skip
        if homes == [f"store-{store['slug']}"]:
            break
        assert time.monotonic() < give_up, f"the store's namespaces: {homes}"
        time.sleep(0.2)
