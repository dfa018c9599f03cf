"""The recipe's steps are idempotent, keep secrets out of values and arguments, and verify.

Run on the simulated cluster (time scale 0) with the real helm and the real chart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import sqlite3
import uuid
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.support import DEFAULT_SETTINGS
from woostore_cluster import (
    PermanentClusterError,
    Release,
    WpResult,
    install_seconds,
    rollback_seconds,
)
from woostore_cluster.kubernetes import KubernetesCluster
from woostore_cluster.simulated import SimulatedCluster
from woostore_provisioner.recipe import (
    CHANGES,
    CREDENTIALS_SECRET,
    DELETE,
    PERSONALISE,
    PROVISION,
    SAMPLE_PRODUCTS,
    Step,
    StoreJob,
    TimeLimits,
    add_sample_products,
    create_credentials,
    install_release,
    verify_storefront,
)
from woostore_shared.secrets import CredentialCipher
from woostore_shared.store_settings import StoreSettingsIn

CIPHER = CredentialCipher("test-secret-key")


def make_job(cluster: SimulatedCluster, chart: Path, slug: str = "acme-coffee-1a2b3c") -> StoreJob:
    host = f"{slug}.127.0.0.1.nip.io"
    return StoreJob(
        store_id=str(uuid.uuid4()),
        name="Acme Coffee",
        slug=slug,
        namespace=f"store-{slug}",
        host=host,
        storefront_url=f"http://{host}",
        cluster=cluster,
        chart=chart,
        cipher=CIPHER,
        limits=TimeLimits(rollout=300),
        settings=DEFAULT_SETTINGS,
    )


def snapshot(cluster: SimulatedCluster, namespace: str) -> dict[str, Any]:
    """Everything the cluster holds for a namespace, except the release's revision number
    (``helm upgrade`` counts every install, as Helm does)."""
    with closing(sqlite3.connect(cluster.state_file)) as db:
        namespaces = db.execute(
            "SELECT labels, phase FROM namespaces WHERE name=?", (namespace,)
        ).fetchall()
        objects = db.execute(
            "SELECT kind, name, body FROM objects WHERE namespace=? ORDER BY kind, name",
            (namespace,),
        ).fetchall()
        releases = db.execute(
            "SELECT name, status FROM releases WHERE namespace=?", (namespace,)
        ).fetchall()
        wordpress = db.execute(
            "SELECT state FROM wordpress WHERE namespace=?", (namespace,)
        ).fetchall()
    return {
        "namespaces": namespaces,
        "objects": [(kind, name, json.loads(body)) for kind, name, body in objects],
        "releases": releases,
        "wordpress": [json.loads(state) for (state,) in wordpress],
    }


def wordpress_state(cluster: SimulatedCluster, namespace: str) -> dict[str, Any]:
    (state,) = snapshot(cluster, namespace)["wordpress"]
    assert isinstance(state, dict)
    return state


async def product_count(job: StoreJob) -> int:
    result = await job.cluster.wp(job.namespace, ["wc", "product", "list", "--format=count"])
    assert result.ok, result.stdout
    return int(result.stdout)


class RecordingSimulatedCluster(SimulatedCluster):
    """Records what reaches the cluster: the values each release is rendered with, and every
    WP-CLI command line with its standard input."""

    def __init__(self, state_dir: Path, **options: Any) -> None:
        super().__init__(state_dir, **options)
        self.rendered_values: list[dict[str, Any]] = []
        self.wp_calls: list[tuple[list[str], str | None]] = []

    async def _helm_template(self, release: Release) -> list[dict[str, Any]]:
        self.rendered_values.append(dict(release.values))
        return await super()._helm_template(release)

    async def wp(self, namespace: str, args: Sequence[str], stdin: str | None = None) -> WpResult:
        self.wp_calls.append((list(args), stdin))
        return await super().wp(namespace, args, stdin)


async def test_every_provision_step_run_twice_in_a_row_changes_nothing_the_second_time(
    cluster: SimulatedCluster, chart: Path
) -> None:
    """Each step may run again after a crash: the second run leaves the cluster as it was."""
    job = make_job(cluster, chart)
    passwords: list[str] = []

    async def run(step: Step) -> None:
        learned = await step.run(job) or {}
        if "admin_password_encrypted" in learned:
            passwords.append(CIPHER.decrypt(learned["admin_password_encrypted"]))

    for step in PROVISION.steps:
        await run(step)
        after_first = snapshot(cluster, job.namespace)
        await run(step)
        assert snapshot(cluster, job.namespace) == after_first, step.name

    secret = await cluster.read_secret(job.namespace, CREDENTIALS_SECRET)
    assert passwords == [secret["admin-password"]] * 2
    assert await product_count(job) == len(SAMPLE_PRODUCTS) == 3
    state = wordpress_state(cluster, job.namespace)
    assert state["plugins"] == ["woocommerce"]
    assert state["gateways"] == {"cod": True}
    assert state["admin_password_sha256"] == (
        hashlib.sha256(secret["admin-password"].encode()).hexdigest()
    )


async def test_the_whole_recipe_run_twice_gives_the_same_store(
    cluster: SimulatedCluster, chart: Path
) -> None:
    """A message redelivered after success runs every step again: still one store, 3 products,
    the same admin password."""
    job = make_job(cluster, chart)
    first_learned = [await step.run(job) or {} for step in PROVISION.steps]
    first = snapshot(cluster, job.namespace)
    first_password = CIPHER.decrypt(first_learned[1]["admin_password_encrypted"])

    learned = [await step.run(job) or {} for step in PROVISION.steps]

    assert snapshot(cluster, job.namespace) == first
    assert CIPHER.decrypt(learned[1]["admin_password_encrypted"]) == first_password
    secret = await cluster.read_secret(job.namespace, CREDENTIALS_SECRET)
    assert secret["admin-password"] == first_password
    assert await product_count(job) == 3
    check = await cluster.check_storefront(job.namespace, job.storefront_url)
    assert (check.status_code, check.products, check.order_placed) == (200, 3, True)


async def test_adding_products_after_a_crash_half_way_adds_only_the_missing_ones(
    cluster: SimulatedCluster, chart: Path
) -> None:
    job = make_job(cluster, chart)
    for step in PROVISION.steps[: [s.name for s in PROVISION.steps].index("sample_products")]:
        await step.run(job)
    first_name, first_price = SAMPLE_PRODUCTS[0]
    created = await cluster.wp(
        job.namespace,
        ["wc", "product", "create", f"--name={first_name}", f"--regular_price={first_price}"],
    )
    assert created.ok  # the first attempt got this far, then the provisioner died

    await add_sample_products(job)

    assert await product_count(job) == 3
    names = [product["name"] for product in wordpress_state(cluster, job.namespace)["products"]]
    assert names == [name for name, _ in SAMPLE_PRODUCTS]


async def test_credentials_made_by_an_earlier_attempt_are_the_ones_kept(
    cluster: SimulatedCluster, chart: Path
) -> None:
    """After a crash the Secret the first attempt made counts, and the store row learns it."""
    job = make_job(cluster, chart)
    await PROVISION.steps[0].run(job)
    earlier = {"db-password": "a", "db-root-password": "b", "admin-password": "earlier-admin"}
    await cluster.ensure_secret(job.namespace, CREDENTIALS_SECRET, earlier)

    learned = await create_credentials(job)

    assert await cluster.read_secret(job.namespace, CREDENTIALS_SECRET) == earlier
    assert CIPHER.decrypt(learned["admin_password_encrypted"]) == "earlier-admin"


async def test_passwords_reach_the_cluster_only_through_the_secret_and_stdin(
    cluster_dir: Path, helm_binary: str, chart: Path
) -> None:
    """No password is among the values a release is rendered with, in a rendered manifest
    other than the Secret, or on a WP-CLI command line; the admin password goes on stdin."""
    cluster = RecordingSimulatedCluster(cluster_dir, helm_binary=helm_binary, time_scale=0)
    job = make_job(cluster, chart)
    for step in PROVISION.steps:
        await step.run(job)
    secret = await cluster.read_secret(job.namespace, CREDENTIALS_SECRET)
    passwords = list(secret.values())
    assert len(passwords) == 3
    assert all(len(password) >= 16 for password in passwords)

    assert len(cluster.rendered_values) == 1
    assert cluster.rendered_values[0]["credentialsSecret"] == CREDENTIALS_SECRET
    rendered = json.dumps(cluster.rendered_values)
    manifests = json.dumps(
        [body for kind, _, body in snapshot(cluster, job.namespace)["objects"] if kind != "Secret"]
    )
    command_lines = json.dumps([args for args, _ in cluster.wp_calls])
    for password in passwords:
        assert password not in rendered
        assert password not in manifests
        assert password not in command_lines
    stdins = [stdin for args, stdin in cluster.wp_calls if stdin is not None]
    assert stdins == [secret["admin-password"] + "\n"]


async def test_a_recipe_that_skips_activating_woocommerce_fails_verification(
    cluster: SimulatedCluster, chart: Path
) -> None:
    """Steps after the skipped one fail, and so does the final check: never a false Ready."""
    job = make_job(cluster, chart)
    failed: dict[str, str] = {}

    for step in PROVISION.steps:
        if step.name == "woocommerce":
            continue
        try:
            await step.run(job)
        except PermanentClusterError as error:
            failed[step.name] = str(error)

    assert set(failed) == {"cash_on_delivery", "sample_products", "verify"}
    assert "'wc' is not a registered wp command" in failed["cash_on_delivery"]
    assert failed["verify"] == "the Store API lists 0 products, expected 3"


async def test_verification_fails_without_cash_on_delivery(
    cluster: SimulatedCluster, chart: Path
) -> None:
    job = make_job(cluster, chart)
    for step in PROVISION.steps:
        await step.run(job)
    disabled = await cluster.wp(
        job.namespace, ["wc", "payment_gateway", "update", "cod", "--enabled=false"]
    )
    assert disabled.ok

    with pytest.raises(PermanentClusterError, match="cash-on-delivery test order"):
        await verify_storefront(job)


async def test_verification_fails_while_the_storefront_is_down(
    cluster: SimulatedCluster, chart: Path
) -> None:
    job = make_job(cluster, chart)
    for step in PROVISION.steps[:4]:  # up to the rollout: WordPress is not installed yet
        await step.run(job)

    with pytest.raises(PermanentClusterError, match="storefront answered 503"):
        await verify_storefront(job)


async def test_every_delete_step_run_twice_removes_the_store_once(
    cluster: SimulatedCluster, chart: Path
) -> None:
    job = make_job(cluster, chart)
    other = make_job(cluster, chart, slug="other-shop-4d5e6f")
    for store in (job, other):
        for step in PROVISION.steps:
            await step.run(store)
    other_before = snapshot(cluster, other.namespace)

    for step in DELETE.steps:
        await step.run(job)
        await step.run(job)

    assert not await cluster.namespace_exists(job.namespace)
    assert snapshot(cluster, job.namespace) == {
        "namespaces": [],
        "objects": [],
        "releases": [],
        "wordpress": [],
    }
    assert snapshot(cluster, other.namespace) == other_before


async def test_the_owners_settings_reach_the_store_and_no_sample_products_leaves_none(
    cluster: SimulatedCluster, chart: Path
) -> None:
    """Currency, country and state, language and the admin's address, as WP-CLI would set
    them; without sample products the order is still placed, with a test product removed
    after it, and verifying again after a crash half-way still works."""
    chosen = StoreSettingsIn(
        currency="EUR",
        country="DE",
        language="de_DE",
        admin_email="owner@example.com",
        sample_products=False,
    )
    job = dataclasses.replace(
        make_job(cluster, chart), settings=DEFAULT_SETTINGS.with_choices(chosen)
    )
    for step in PROVISION.steps:
        await step.run(job)
    await PROVISION.steps[-1].run(job)  # verified again: a redelivery after the last step

    state = wordpress_state(cluster, job.namespace)
    assert state["options"]["woocommerce_currency"] == "EUR"
    assert state["options"]["woocommerce_default_country"] == "DE"  # the default's KA dropped
    assert state["options"]["woocommerce_coming_soon"] == "no"
    assert (state["language"], state["admin_email"]) == ("de_DE", "owner@example.com")
    assert state["options"]["admin_email"] == "owner@example.com"
    assert state.get("products") == []


def test_each_step_running_helm_allows_all_its_helm_run_may_take() -> None:
    """WOOSTORE_ROLLOUT_TIMEOUT_SECONDS is helm's --timeout; the steps' deadlines follow it,
    each beyond the longest its helm run takes, a failed install's rollback included, so no
    step deadline cuts helm off half-way (which leaves a release pending)."""
    cold = TimeLimits(rollout=900)  # a cluster pulling images on first use
    steps = {
        (recipe.phase, step.name): step
        for recipe in (PROVISION, PERSONALISE, *CHANGES.values())
        for step in recipe.steps
    }
    # The wait, the rollback waiting as long again, and what a crash left pending cleared.
    assert install_seconds(900) > 3 * 900
    for installs in (("provision", "helm_release"), ("personalise", "owner"),
                     ("upgrade", "helm_upgrade")):  # fmt: skip
        assert steps[installs].deadline(cold) > install_seconds(900), installs
    assert steps[("rollback", "helm_rollback")].deadline(cold) > rollback_seconds(900)
    for phase in ("provision", "upgrade", "rollback"):
        assert steps[(phase, "rollout")].deadline(cold) > 900, phase
    assert steps[("provision", "verify")].deadline(cold) == 120  # no helm: its own limit


def test_the_uninstall_step_allows_all_the_kubernetes_driver_may_take() -> None:
    """Deleting a store, the driver may first wait for its rights in the namespace (a new
    RoleBinding), then run helm uninstall with its own limit: cut off half-way, the release
    is left uninstalling."""
    driver = inspect.signature(KubernetesCluster).parameters
    longest = (
        driver["bind_timeout"].default
        + driver["uninstall_timeout"].default
        + driver["helm_grace"].default
    )
    uninstall = next(step for step in DELETE.steps if step.name == "helm_uninstall")

    assert uninstall.deadline(TimeLimits(rollout=300)) > longest


async def test_helm_is_given_the_rollout_timeout(
    cluster: SimulatedCluster, chart: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given: list[float] = []
    install = cluster.install_release

    async def recorded(release: Release, timeout: float) -> None:  # noqa: ASYNC109  (the Cluster signature)
        given.append(timeout)
        await install(release, timeout)

    monkeypatch.setattr(cluster, "install_release", recorded)
    job = dataclasses.replace(make_job(cluster, chart), limits=TimeLimits(rollout=42))
    await cluster.ensure_namespace(job.namespace, {})

    await install_release(job)

    assert given == [42]
