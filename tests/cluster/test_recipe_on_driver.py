"""The provisioner's recipe, unchanged, on the Kubernetes driver: every PROVISION step, the
storefront check over real HTTP, then every DELETE step, on the fakes of the driver's seams.

WP-CLI in the fake pod is interpreted as the simulated cluster interprets it, and the
local Store API lists the products WP-CLI made, so a step that forgot something fails here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.fakes import ExecCall, FakeHelm, FakeKube
from tests.cluster.store_api import FakeStore
from tests.cluster.support import CHART, LOCAL_PROFILE
from tests.support import DEFAULT_SETTINGS
from woostore_cluster import PermanentClusterError
from woostore_cluster.kubeobjects import ExecResult
from woostore_cluster.kubernetes import KubernetesCluster
from woostore_cluster.simulated import SimulatedCluster
from woostore_provisioner.recipe import (
    ADMIN_USER,
    CREDENTIALS_SECRET,
    DELETE,
    PROVISION,
    SAMPLE_PRODUCTS,
    SETTINGS,
    StoreJob,
    TimeLimits,
    install_release,
)
from woostore_shared.secrets import CredentialCipher, generate_password


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
        limits=TimeLimits(rollout=300),
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


async def test_a_claim_of_the_provisioned_store_runs_on_the_driver(
    driver: KubernetesCluster, kube: FakeKube, helm: FakeHelm, store_api: FakeStore
) -> None:
    """The calls the personalise recipe makes on a ready store: the upgrade to the owner's
    host and name, the rollout, WP-CLI (the new password on stdin only), the Secret, the
    storefront check. What WP-CLI did is read back from the interpreted WordPress."""
    pod = WordPressPod(store_api)
    kube.exec_handler = pod
    job = make_job(driver, store_api)
    for step in PROVISION.steps:
        await step.run(job)
    pool_url = pod.state["url"]
    kube.exec_calls.clear()
    owner = dataclasses.replace(job, name="Acme Coffee ☕", host="acme-42.shops.example.test")
    password = generate_password()

    await install_release(owner)
    await driver.wait_for_rollout(owner.namespace, timeout=300)
    replaced = await driver.wp(
        owner.namespace,
        ["search-replace", pool_url, "http://acme-42.shops.example.test", "--all-tables",
         "--skip-columns=guid"],
    )  # fmt: skip
    await driver.wp(owner.namespace, ["option", "update", "blogname", owner.name])
    await driver.wp(
        owner.namespace, ["user", "update", "admin", "--prompt=user_pass"], password + "\n"
    )
    await driver.update_secret(owner.namespace, CREDENTIALS_SECRET, {"admin-password": password})
    await driver.wp(owner.namespace, ["woostore", "shuffle-salts"])
    orders = await driver.wp(
        owner.namespace,
        ["wc", "shop_order", "list", "--format=json", "--fields=id", f"--user={ADMIN_USER}"],
    )
    check = await driver.check_storefront(owner.namespace, store_api.url)

    assert helm.status(job.namespace) == "deployed"
    assert len(helm.releases[(job.namespace, "store")]) == 2  # one upgrade more
    values = json.loads(helm.values_seen[-1].text)
    assert (values["host"], values["storeName"]) == ("acme-42.shops.example.test", owner.name)
    assert replaced.stdout == "Success: Made 2 replacements."
    assert pod.state["url"] == pod.state["siteurl"] == "http://acme-42.shops.example.test"
    assert pod.state["title"] == owner.name
    assert pod.state["admin_password_sha256"] == hashlib.sha256(password.encode()).hexdigest()
    secret = kube.secrets[(job.namespace, CREDENTIALS_SECRET)]
    assert secret["admin-password"] == password
    assert {"db-password", "db-root-password"} <= secret.keys()  # kept
    assert json.loads(orders.stdout) == []
    assert check.order_placed
    assert store_api.orders == {}
    # The password went on stdin, never into a command line.
    assert all(password not in " ".join(call.command) for call in kube.exec_calls)
    assert [call.stdin for call in kube.exec_calls if call.stdin] == [password + "\n"]


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


async def test_a_settings_change_of_the_provisioned_store_runs_on_the_driver(
    driver: KubernetesCluster, kube: FakeKube, store_api: FakeStore
) -> None:
    """The settings recipe's steps after its backup, as WP-CLI runs them in the pod: the
    options, the admin user's email, the language installed and made active, then back to
    WordPress's own; the store verified with them."""
    pod = WordPressPod(store_api)
    kube.exec_handler = pod
    job = make_job(driver, store_api)
    for step in PROVISION.steps:
        await step.run(job)
    chosen = job.settings.model_copy(
        update={"currency": "EUR", "country": "DE", "state": None, "language": "de_DE",
                "admin_email": "owner@example.com"}
    )  # fmt: skip
    kube.exec_calls.clear()

    for step in SETTINGS.steps[1:]:
        await step.run(dataclasses.replace(job, settings=chosen))

    options = pod.state["options"]
    assert (options["woocommerce_currency"], options["woocommerce_default_country"]) == (
        "EUR", "DE",
    )  # fmt: skip
    assert options["admin_email"] == pod.state["admin_user_email"] == "owner@example.com"
    assert pod.state["language"] == "de_DE"
    assert ["wp", "--path=/var/www/html", "language", "core", "install", "de_DE", "--activate"] in [
        call.command for call in kube.exec_calls
    ]
    english = chosen.model_copy(update={"language": "en_US"})
    await SETTINGS.steps[1].run(dataclasses.replace(job, settings=english))
    assert pod.state["language"] == "en_US"
