"""The provisioner's recipe, unchanged, on the Kubernetes driver: every PROVISION step, the
storefront check over real HTTP, then every DELETE step, on the fakes of the driver's seams.

WP-CLI in the fake pod is interpreted as the simulated cluster interprets it, and the
local Store API lists the products WP-CLI made, so a step that forgot something fails here.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.fakes import ExecCall, FakeHelm, FakeKube
from tests.cluster.store_api import FakeStore
from tests.cluster.support import CHART, LOCAL_PROFILE
from tests.support import DEFAULT_SETTINGS
from woostore_cluster import PermanentClusterError
from woostore_cluster.kubeapi import ExecResult
from woostore_cluster.kubernetes import KubernetesCluster
from woostore_cluster.simulated import SimulatedCluster
from woostore_provisioner.recipe import (
    CREDENTIALS_SECRET,
    DELETE,
    PROVISION,
    SAMPLE_PRODUCTS,
    StoreJob,
)
from woostore_shared.secrets import CredentialCipher


class WordPressPod:
    """WP-CLI in the store's pod: the simulated cluster's interpreter over one state, plus
    the order deletion the storefront check asks for."""

    def __init__(self, store: FakeStore) -> None:
        self.state: dict[str, Any] = {}
        self.store = store
        store.products = self.products

    def products(self) -> list[dict[str, Any]]:
        return [
            {"id": 11 + i, "name": p["name"], "is_purchasable": True, "is_in_stock": True}
            for i, p in enumerate(self.state.get("products", []))
        ]

    def __call__(self, call: ExecCall) -> ExecResult:
        assert call.command[:2] == ["wp", "--path=/var/www/html"]
        words = call.command[2:]
        if words[:3] == ["wc", "shop_order", "delete"]:
            self.store.orders.pop(int(words[3]))
            return ExecResult(0, f"Success: Deleted shop_order {words[3]}.", "")
        result = SimulatedCluster._interpret_wp(self.state, words, call.stdin)
        # WP-CLI prints errors on stderr
        if result.ok:
            return ExecResult(0, result.stdout, "")
        return ExecResult(result.exit_code, "", result.stdout)


def make_job(
    cluster: KubernetesCluster, store: FakeStore, values_files: tuple[Path, ...] = ()
) -> StoreJob:
    slug = "acme-coffee-1a2b3c"
    return StoreJob(
        store_id=str(uuid.uuid4()),
        name="Acme Coffee",
        slug=slug,
        namespace=f"store-{slug}",
        host=store.url.removeprefix("http://"),
        storefront_url=store.url,
        cluster=cluster,
        chart=CHART,
        cipher=CredentialCipher("test-secret-key"),
        settings=DEFAULT_SETTINGS,
        values_files=values_files,
    )


async def test_the_recipe_provisions_verifies_and_deletes_a_store(
    driver: KubernetesCluster, kube: FakeKube, helm: FakeHelm, store_api: FakeStore
) -> None:
    pod = WordPressPod(store_api)
    kube.exec_handler = pod
    job = make_job(driver, store_api, values_files=(LOCAL_PROFILE,))

    for step in PROVISION.steps:
        await step.run(job)

    assert kube.namespaces[job.namespace].labels["woostore.io/store-id"] == job.store_id
    assert set(kube.secrets[(job.namespace, CREDENTIALS_SECRET)]) == {
        "db-password", "db-root-password", "admin-password",
    }  # fmt: skip
    assert helm.status(job.namespace) == "deployed"
    assert helm.values_seen[0].path == LOCAL_PROFILE
    assert len(pod.state["products"]) == len(SAMPLE_PRODUCTS)
    assert pod.state["gateways"] == {"cod": True}
    assert any(path.endswith("/checkout") for _, path, _ in store_api.requests)
    assert store_api.orders == {}  # the test order was deleted

    # Provisioning again (a redelivered message) changes nothing that matters.
    for step in PROVISION.steps:
        await step.run(job)
    assert len(pod.state["products"]) == len(SAMPLE_PRODUCTS)

    for step in DELETE.steps:
        await step.run(job)

    assert kube.namespaces == {}
    assert helm.status(job.namespace) is None
    assert not await driver.namespace_exists(job.namespace)


async def test_verification_fails_with_the_stores_own_reason(
    driver: KubernetesCluster, kube: FakeKube, store_api: FakeStore
) -> None:
    kube.exec_handler = WordPressPod(store_api)
    store_api.cod_enabled = False
    job = make_job(driver, store_api)

    *setup, verify = PROVISION.steps
    for step in setup:
        await step.run(job)
    with pytest.raises(PermanentClusterError, match="Cash on delivery is not available"):
        await verify.run(job)
