"""The simulated cluster behaves like the real one wherever the provisioner can tell.

Every test runs the real ``helm template`` on the real chart (helm/store), at time scale 0.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sqlite3
import stat
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from woostore_cluster import (
    INSTALLATION_LABEL,
    STORE_ID_LABEL,
    PermanentClusterError,
    Release,
    TransientClusterError,
)
from woostore_cluster.simulated import SimulatedCluster
from woostore_provisioner.recipe import CREDENTIALS_SECRET, RELEASE_NAME

NAMESPACE = "store-acme-1a2b3c"
OTHER_NAMESPACE = "store-other-4d5e6f"
LABELS = {"app.kubernetes.io/managed-by": "woostore"}
CREDENTIALS = {
    "db-password": "db-pass-one",
    "db-root-password": "db-root-pass-one",
    "admin-password": "admin-pass-one",
}


def release_for(namespace: str, chart: Path, host: str | None = None) -> Release:
    slug = namespace.removeprefix("store-")
    return Release(
        name=RELEASE_NAME,
        namespace=namespace,
        chart=chart,
        values={
            "storeId": slug,
            "storeName": f"Shop {slug}",
            "host": host or f"{slug}.shops.example.test",
            "credentialsSecret": CREDENTIALS_SECRET,
        },
    )


def stored_objects(cluster: SimulatedCluster, namespace: str) -> dict[tuple[str, str], Any]:
    """What ``kubectl get all,secrets -n <namespace>`` would show: (kind, name) -> object."""
    with closing(sqlite3.connect(cluster.state_file)) as db:
        rows = db.execute(
            "SELECT kind, name, body FROM objects WHERE namespace=?", (namespace,)
        ).fetchall()
    return {(kind, name): json.loads(body) for kind, name, body in rows}


def release_state(cluster: SimulatedCluster, namespace: str) -> tuple[str, int] | None:
    """What ``helm status`` would show: (status, revision), or None without a release."""
    with closing(sqlite3.connect(cluster.state_file)) as db:
        row = db.execute(
            "SELECT status, revision FROM releases WHERE namespace=? AND name=?",
            (namespace, RELEASE_NAME),
        ).fetchone()
    return None if row is None else (row[0], row[1])


async def deploy(cluster: SimulatedCluster, namespace: str, chart: Path) -> None:
    """Namespace, credentials, release and rollout: a store whose WordPress pod is ready."""
    await cluster.ensure_namespace(namespace, LABELS)
    await cluster.ensure_secret(namespace, CREDENTIALS_SECRET, CREDENTIALS)
    await cluster.install_release(release_for(namespace, chart), timeout=30)
    await cluster.wait_for_rollout(namespace, timeout=30)


async def install_wordpress_with_woocommerce(cluster: SimulatedCluster, namespace: str) -> None:
    install = await cluster.wp(
        namespace,
        ["core", "install", "--url=http://x.test", "--title=X", "--prompt=admin_password"],
        stdin="admin-pass-one\n",
    )
    assert install.ok, install.stdout
    assert (await cluster.wp(namespace, ["plugin", "activate", "woocommerce"])).ok


class ObservedCluster(SimulatedCluster):
    """A simulated cluster that tells when an operation has begun (where a fault strikes)."""

    def __init__(self, state_dir: Path, **options: Any) -> None:
        super().__init__(state_dir, **options)
        self.started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def _operate(self, operation: str, namespace: str) -> None:
        self.started[operation].set()
        await super()._operate(operation, namespace)


# -- state ---------------------------------------------------------------------------------


async def test_state_survives_a_new_instance_over_the_same_state_dir(
    cluster: SimulatedCluster, cluster_dir: Path, helm_binary: str, chart: Path
) -> None:
    """A restarted provisioner finds the namespaces, Secrets, releases and WordPress it made."""
    await deploy(cluster, NAMESPACE, chart)
    await install_wordpress_with_woocommerce(cluster, NAMESPACE)
    before = stored_objects(cluster, NAMESPACE)

    restarted = SimulatedCluster(cluster_dir, helm_binary=helm_binary, time_scale=0)

    assert await restarted.namespace_exists(NAMESPACE)
    assert restarted.namespaces() == {NAMESPACE: {**LABELS, INSTALLATION_LABEL: "default"}}
    assert await restarted.read_secret(NAMESPACE, CREDENTIALS_SECRET) == CREDENTIALS
    assert stored_objects(restarted, NAMESPACE) == before
    assert restarted.object_count(NAMESPACE) == len(before) > 1
    assert release_state(restarted, NAMESPACE) == ("deployed", 1)
    assert (await restarted.wp(NAMESPACE, ["core", "is-installed"])).ok
    assert (await restarted.wp(NAMESPACE, ["plugin", "is-active", "woocommerce"])).ok


def start_a_cluster(folder: Path, helm_binary: str, together: Barrier) -> None:
    together.wait()
    SimulatedCluster(folder, helm_binary=helm_binary, time_scale=0)


def test_processes_starting_together_on_a_new_state_all_start(
    cluster_dir: Path, helm_binary: str
) -> None:
    """The provisioner and the reaper start together. Two turning a new state file to WAL
    at once, one was refused at once ("database is locked", whatever the busy timeout) and
    its service exited (a CI run of stop 53): three at a time, 24 starts of 60 failed so."""
    forking = multiprocessing.get_context("fork")
    for attempt in range(50):
        together = forking.Barrier(3)
        folder = cluster_dir / str(attempt)
        started = [
            forking.Process(target=start_a_cluster, args=(folder, helm_binary, together))
            for _ in range(3)
        ]
        for process in started:
            process.start()
        for process in started:
            process.join(timeout=60)
        assert [process.exitcode for process in started] == [0, 0, 0], attempt


# -- releases ------------------------------------------------------------------------------


def modes(folder: Path) -> dict[str, int]:
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in [folder, *folder.iterdir()]}


@pytest.fixture
def state_left_readable(cluster_dir: Path) -> Iterator[Path]:
    """A folder and database an earlier version made 0755 and 0644, under umask 022."""
    old_umask = os.umask(0o022)
    try:
        cluster_dir.mkdir(mode=0o755)
        (cluster_dir / "cluster.sqlite3").touch(mode=0o644)
        yield cluster_dir
    finally:
        os.umask(old_umask)


async def test_only_its_owner_can_read_the_state_and_its_secrets(
    state_left_readable: Path, helm_binary: str
) -> None:
    """The state holds the stores' passwords: the folder is 0700, the database and SQLite's
    side files 0600, whatever the umask, and whatever an earlier version left."""
    cluster = SimulatedCluster(state_left_readable, helm_binary=helm_binary, time_scale=0)
    await cluster.ensure_namespace(NAMESPACE, LABELS)
    # A reader keeps the write-ahead log and its index from being removed at the end.
    with closing(sqlite3.connect(cluster.state_file)) as reader:
        reader.execute("SELECT count(*) FROM objects").fetchone()
        await cluster.ensure_secret(NAMESPACE, CREDENTIALS_SECRET, CREDENTIALS)
        found = modes(state_left_readable)

    assert found == {
        state_left_readable.name: 0o700,
        "cluster.sqlite3": 0o600,
        "cluster.sqlite3.setup": 0o600,  # the lock each process sets the state up under
        "cluster.sqlite3-wal": 0o600,
        "cluster.sqlite3-shm": 0o600,
    }


async def test_install_release_renders_the_real_chart(
    cluster: SimulatedCluster, chart: Path
) -> None:
    """The release's objects are what ``helm template`` renders, with the host that was given."""
    await cluster.ensure_namespace(NAMESPACE, LABELS)
    host = "my-shop.shops.example.test"

    await cluster.install_release(release_for(NAMESPACE, chart, host=host), timeout=30)

    objects = stored_objects(cluster, NAMESPACE)
    kinds = [kind for kind, _ in objects]
    assert kinds.count("Deployment") == 1
    assert kinds.count("StatefulSet") == 1
    ingresses = [body for (kind, _), body in objects.items() if kind == "Ingress"]
    assert len(ingresses) == 1
    assert [rule["host"] for rule in ingresses[0]["spec"]["rules"]] == [host]
    assert release_state(cluster, NAMESPACE) == ("deployed", 1)


async def test_installing_again_upgrades_the_release_to_the_next_revision(
    cluster: SimulatedCluster, chart: Path
) -> None:
    """``install_release`` is ``helm upgrade --install``: a second call is a new revision."""
    await cluster.ensure_namespace(NAMESPACE, LABELS)
    await cluster.install_release(release_for(NAMESPACE, chart), timeout=30)
    await cluster.install_release(
        release_for(NAMESPACE, chart, host="renamed.shops.example.test"), timeout=30
    )

    assert release_state(cluster, NAMESPACE) == ("deployed", 2)
    ingress = next(body for (kind, _), body in stored_objects(cluster, NAMESPACE).items()
                   if kind == "Ingress")  # fmt: skip
    assert ingress["spec"]["rules"][0]["host"] == "renamed.shops.example.test"


async def test_a_state_file_from_before_rollbacks_were_recorded_keeps_its_releases(
    cluster_dir: Path, helm_binary: str, chart: Path
) -> None:
    """``make run``'s data folder outlives an upgrade of the platform: its revisions table,
    written without ``rolled_back_to``, gains it and keeps every revision."""
    first = SimulatedCluster(cluster_dir, helm_binary=helm_binary, time_scale=0)
    await first.ensure_namespace(NAMESPACE, LABELS)
    await first.install_release(release_for(NAMESPACE, chart), timeout=30)
    with closing(sqlite3.connect(first.state_file)) as db:
        db.execute("ALTER TABLE revisions DROP COLUMN rolled_back_to")
        db.commit()

    later = SimulatedCluster(cluster_dir, helm_binary=helm_binary, time_scale=0)
    await later.install_release(release_for(NAMESPACE, chart), timeout=30)
    await later.rollback_release(NAMESPACE, RELEASE_NAME, 1, timeout=30)

    history = await later.release_history(NAMESPACE, RELEASE_NAME)
    assert [(r.revision, r.status, r.rolled_back_to) for r in history] == [
        (1, "superseded", None), (2, "superseded", None), (3, "deployed", 1),
    ]  # fmt: skip


async def test_a_bad_chart_path_is_a_permanent_error_with_helms_message(
    cluster: SimulatedCluster, tmp_path: Path
) -> None:
    await cluster.ensure_namespace(NAMESPACE, LABELS)
    missing = tmp_path / "no-such-chart"

    with pytest.raises(PermanentClusterError) as raised:
        await cluster.install_release(release_for(NAMESPACE, missing), timeout=30)

    assert str(raised.value) == f'helm template failed: Error: path "{missing}" not found'
    assert stored_objects(cluster, NAMESPACE) == {}


async def test_values_the_chart_rejects_are_a_permanent_error(
    cluster: SimulatedCluster, chart: Path
) -> None:
    """The chart's values.schema.json is enforced by the real helm: a bad host never installs."""
    await cluster.ensure_namespace(NAMESPACE, LABELS)

    with pytest.raises(PermanentClusterError, match="at '/host': 'Not A Host' does not match"):
        await cluster.install_release(release_for(NAMESPACE, chart, host="Not A Host"), timeout=30)

    assert stored_objects(cluster, NAMESPACE) == {}


async def test_a_release_needs_its_namespace(cluster: SimulatedCluster, chart: Path) -> None:
    with pytest.raises(PermanentClusterError, match=f'namespaces "{NAMESPACE}" not found'):
        await cluster.install_release(release_for(NAMESPACE, chart), timeout=30)


async def test_a_release_left_pending_install_by_a_crash_is_recovered_by_the_next_install(
    cluster_dir: Path, helm_binary: str, chart: Path
) -> None:
    """A provisioner killed mid-install leaves ``pending-install``; the next install clears it."""
    crashing = ObservedCluster(
        cluster_dir, helm_binary=helm_binary, time_scale=0, faults={"install_release": "hang"}
    )
    await crashing.ensure_namespace(NAMESPACE, LABELS)
    await crashing.ensure_secret(NAMESPACE, CREDENTIALS_SECRET, CREDENTIALS)
    install = asyncio.create_task(crashing.install_release(release_for(NAMESPACE, chart), 30))
    await asyncio.wait_for(crashing.started["install_release"].wait(), timeout=30)
    install.cancel()  # the provisioner dies while helm is applying the manifests
    with pytest.raises(asyncio.CancelledError):
        await install
    assert release_state(crashing, NAMESPACE) == ("pending-install", 1)
    with pytest.raises(PermanentClusterError, match="was the chart installed"):
        await crashing.wait_for_rollout(NAMESPACE, timeout=30)

    restarted = SimulatedCluster(cluster_dir, helm_binary=helm_binary, time_scale=0)
    await restarted.install_release(release_for(NAMESPACE, chart), timeout=30)

    assert release_state(restarted, NAMESPACE) == ("deployed", 2)
    await restarted.wait_for_rollout(NAMESPACE, timeout=30)
    assert (await restarted.wp(NAMESPACE, ["core", "is-installed"])).exit_code == 1


# -- secrets -------------------------------------------------------------------------------


async def test_ensure_secret_keeps_an_existing_secret(cluster: SimulatedCluster) -> None:
    """A second call (a retried step) never replaces the credentials the first call made."""
    await cluster.ensure_namespace(NAMESPACE, LABELS)
    await cluster.ensure_secret(NAMESPACE, CREDENTIALS_SECRET, CREDENTIALS)

    await cluster.ensure_secret(
        NAMESPACE, CREDENTIALS_SECRET, {key: "something-else" for key in CREDENTIALS}
    )

    assert await cluster.read_secret(NAMESPACE, CREDENTIALS_SECRET) == CREDENTIALS


async def test_a_secret_needs_its_namespace_and_a_missing_one_cannot_be_read(
    cluster: SimulatedCluster,
) -> None:
    with pytest.raises(PermanentClusterError, match="not found"):
        await cluster.ensure_secret(NAMESPACE, CREDENTIALS_SECRET, CREDENTIALS)
    with pytest.raises(PermanentClusterError, match=f"secret {NAMESPACE}/nope not found"):
        await cluster.read_secret(NAMESPACE, "nope")


# -- WP-CLI --------------------------------------------------------------------------------


async def test_wp_cli_needs_a_ready_wordpress_pod(cluster: SimulatedCluster, chart: Path) -> None:
    """Before the rollout there is no pod to exec into: a retryable error, not a failure."""
    await cluster.ensure_namespace(NAMESPACE, LABELS)
    await cluster.install_release(release_for(NAMESPACE, chart), timeout=30)

    with pytest.raises(TransientClusterError, match="no ready WordPress pod"):
        await cluster.wp(NAMESPACE, ["core", "is-installed"])


async def test_core_install_takes_the_admin_password_only_from_stdin(
    cluster: SimulatedCluster, chart: Path
) -> None:
    await deploy(cluster, NAMESPACE, chart)
    base = ["core", "install", "--url=http://x.test", "--title=X", "--admin_user=admin"]

    without_prompt = await cluster.wp(NAMESPACE, base, stdin="secret\n")
    without_stdin = await cluster.wp(NAMESPACE, [*base, "--prompt=admin_password"])
    in_args = await cluster.wp(NAMESPACE, [*base, "--admin_password=secret"], stdin="secret\n")

    for result in (without_prompt, without_stdin, in_args):
        assert result.exit_code == 1
        assert result.stdout == "Error: admin password expected on standard input"
    assert (await cluster.wp(NAMESPACE, ["core", "is-installed"])).exit_code == 1

    installed = await cluster.wp(NAMESPACE, [*base, "--prompt=admin_password"], stdin="secret\n")

    assert installed.ok
    assert (await cluster.wp(NAMESPACE, ["core", "is-installed"])).exit_code == 0


async def test_commands_other_than_core_install_fail_before_wordpress_is_installed(
    cluster: SimulatedCluster, chart: Path
) -> None:
    await deploy(cluster, NAMESPACE, chart)

    result = await cluster.wp(NAMESPACE, ["plugin", "activate", "woocommerce"])

    assert result.exit_code == 1
    assert "not installed" in result.stdout


async def test_wc_commands_fail_before_woocommerce_is_active(
    cluster: SimulatedCluster, chart: Path
) -> None:
    await deploy(cluster, NAMESPACE, chart)
    assert (
        await cluster.wp(
            NAMESPACE, ["core", "install", "--prompt=admin_password"], stdin="secret\n"
        )
    ).ok
    wc_commands = [
        ["wc", "product", "list", "--format=count", "--user=admin"],
        ["wc", "product", "create", "--name=Mug", "--regular_price=9.00", "--user=admin"],
        ["wc", "payment_gateway", "update", "cod", "--enabled=true", "--user=admin"],
    ]

    for args in wc_commands:
        result = await cluster.wp(NAMESPACE, args)
        assert result.exit_code == 1, args
        assert result.stdout == "Error: 'wc' is not a registered wp command."
    assert (await cluster.wp(NAMESPACE, ["plugin", "is-active", "woocommerce"])).exit_code == 1

    assert (await cluster.wp(NAMESPACE, ["plugin", "activate", "woocommerce"])).ok
    for args in wc_commands:
        assert (await cluster.wp(NAMESPACE, args)).ok, args
    listed = await cluster.wp(NAMESPACE, ["wc", "product", "list", "--format=count"])
    assert listed.stdout == "1"


async def test_only_woocommerce_can_be_activated(cluster: SimulatedCluster, chart: Path) -> None:
    await deploy(cluster, NAMESPACE, chart)
    await install_wordpress_with_woocommerce(cluster, NAMESPACE)

    result = await cluster.wp(NAMESPACE, ["plugin", "activate", "hello-dolly"])

    assert result.exit_code == 1
    assert "could not be found" in result.stdout


async def test_storefront_places_an_order_only_with_products_and_cash_on_delivery(
    cluster: SimulatedCluster, chart: Path
) -> None:
    url = "http://acme.shops.example.test"
    await deploy(cluster, NAMESPACE, chart)
    assert (await cluster.check_storefront(NAMESPACE, url)).status_code == 503
    await install_wordpress_with_woocommerce(cluster, NAMESPACE)

    async def set_cod(enabled: bool) -> None:
        flag = f"--enabled={'true' if enabled else 'false'}"
        assert (await cluster.wp(NAMESPACE, ["wc", "payment_gateway", "update", "cod", flag])).ok

    empty = await cluster.check_storefront(NAMESPACE, url)
    await set_cod(True)
    cod_without_products = await cluster.check_storefront(NAMESPACE, url)
    await set_cod(False)
    create = ["wc", "product", "create", "--name=Mug", "--regular_price=9.00"]
    assert (await cluster.wp(NAMESPACE, create)).ok
    products_without_cod = await cluster.check_storefront(NAMESPACE, url)
    await set_cod(True)
    both = await cluster.check_storefront(NAMESPACE, url)

    assert (empty.status_code, empty.products, empty.order_placed) == (200, 0, False)
    assert (cod_without_products.products, cod_without_products.order_placed) == (0, False)
    assert (products_without_cod.products, products_without_cod.order_placed) == (1, False)
    assert (both.status_code, both.products, both.order_placed) == (200, 1, True)


async def test_the_storefront_without_woocommerce_lists_no_products(
    cluster: SimulatedCluster, chart: Path
) -> None:
    await deploy(cluster, NAMESPACE, chart)
    assert (
        await cluster.wp(NAMESPACE, ["core", "install", "--prompt=admin_password"], stdin="pw\n")
    ).ok

    check = await cluster.check_storefront(NAMESPACE, "http://x.test")

    assert (check.status_code, check.products, check.order_placed) == (200, 0, False)


# -- faults --------------------------------------------------------------------------------


async def test_an_error_fault_on_the_rollout_is_a_permanent_error(
    cluster_dir: Path, helm_binary: str, chart: Path
) -> None:
    faulty = SimulatedCluster(
        cluster_dir, helm_binary=helm_binary, time_scale=0, faults={"wait_for_rollout": "error"}
    )
    await faulty.ensure_namespace(NAMESPACE, LABELS)
    await faulty.install_release(release_for(NAMESPACE, chart), timeout=30)

    for _ in range(2):  # every time, not only the first
        with pytest.raises(PermanentClusterError, match="ImagePullBackOff"):
            await faulty.wait_for_rollout(NAMESPACE, timeout=30)

    with pytest.raises(TransientClusterError, match="no ready WordPress pod"):
        await faulty.wp(NAMESPACE, ["core", "is-installed"])


async def test_a_transient_fault_fails_once_per_namespace_then_succeeds(
    cluster_dir: Path, helm_binary: str, chart: Path
) -> None:
    faulty = SimulatedCluster(
        cluster_dir,
        helm_binary=helm_binary,
        time_scale=0,
        faults={"install_release": "transient"},
    )
    for namespace in (NAMESPACE, OTHER_NAMESPACE):
        await faulty.ensure_namespace(namespace, LABELS)

    for namespace in (NAMESPACE, OTHER_NAMESPACE):
        with pytest.raises(TransientClusterError, match="simulated API server timeout") as raised:
            await faulty.install_release(release_for(namespace, chart), timeout=30)
        assert raised.value.delay > 0
        assert release_state(faulty, namespace) == ("pending-install", 1)

        await faulty.install_release(release_for(namespace, chart), timeout=30)
        assert release_state(faulty, namespace) == ("deployed", 2)

    # The fault has fired for these namespaces, also for a restarted provisioner.
    restarted = SimulatedCluster(
        cluster_dir,
        helm_binary=helm_binary,
        time_scale=0,
        faults={"install_release": "transient"},
    )
    await restarted.install_release(release_for(NAMESPACE, chart), timeout=30)
    assert release_state(restarted, NAMESPACE) == ("deployed", 3)


async def test_a_hang_fault_on_the_rollout_never_returns(
    cluster_dir: Path, helm_binary: str, chart: Path
) -> None:
    faulty = SimulatedCluster(
        cluster_dir, helm_binary=helm_binary, time_scale=0, faults={"wait_for_rollout": "hang"}
    )
    await faulty.ensure_namespace(NAMESPACE, LABELS)
    await faulty.install_release(release_for(NAMESPACE, chart), timeout=30)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(faulty.wait_for_rollout(NAMESPACE, timeout=30), timeout=0.3)

    with pytest.raises(TransientClusterError, match="no ready WordPress pod"):
        await faulty.wp(NAMESPACE, ["core", "is-installed"])


async def test_a_wp_fault_covers_every_wp_cli_command(
    cluster_dir: Path, helm_binary: str, chart: Path
) -> None:
    faulty = SimulatedCluster(
        cluster_dir, helm_binary=helm_binary, time_scale=0, faults={"wp": "error"}
    )
    await deploy(faulty, NAMESPACE, chart)

    for args in (["core", "is-installed"], ["plugin", "activate", "woocommerce"]):
        with pytest.raises(PermanentClusterError, match=r"simulated fault \(WP-CLI exited"):
            await faulty.wp(NAMESPACE, args)


async def test_an_error_fault_gives_a_cause_only_where_the_real_operation_would(
    cluster_dir: Path, helm_binary: str, chart: Path
) -> None:
    """A storefront check failing said "(ImagePullBackOff)", as every faulty operation did:
    an operator reading it looked for an image that was never pulled."""
    await deploy(
        SimulatedCluster(cluster_dir, helm_binary=helm_binary, time_scale=0), NAMESPACE, chart
    )
    faulty = SimulatedCluster(
        cluster_dir, helm_binary=helm_binary, time_scale=0,
        faults={"check_storefront": "error", "wait_for_rollout": "error"},
    )  # fmt: skip

    with pytest.raises(PermanentClusterError) as checked:
        await faulty.check_storefront(NAMESPACE, "http://shop.test")
    assert str(checked.value) == "check_storefront failed: simulated fault"
    with pytest.raises(PermanentClusterError, match=r"simulated fault \(ImagePullBackOff\)$"):
        await faulty.wait_for_rollout(NAMESPACE, 1.0)


# -- deletion ------------------------------------------------------------------------------


async def test_delete_namespace_removes_everything_of_that_store_and_nothing_else(
    cluster: SimulatedCluster, chart: Path
) -> None:
    for namespace in (NAMESPACE, OTHER_NAMESPACE):
        await deploy(cluster, namespace, chart)
        await install_wordpress_with_woocommerce(cluster, namespace)
    other_before = stored_objects(cluster, OTHER_NAMESPACE)
    assert stored_objects(cluster, NAMESPACE).keys() == other_before.keys()

    await cluster.delete_namespace(NAMESPACE, timeout=30)

    assert not await cluster.namespace_exists(NAMESPACE)
    assert cluster.object_count(NAMESPACE) == 0
    assert stored_objects(cluster, NAMESPACE) == {}
    assert release_state(cluster, NAMESPACE) is None
    with pytest.raises(PermanentClusterError, match="not found"):
        await cluster.read_secret(NAMESPACE, CREDENTIALS_SECRET)
    with pytest.raises(TransientClusterError, match="no ready WordPress pod"):
        await cluster.wp(NAMESPACE, ["core", "is-installed"])

    assert cluster.namespaces() == {OTHER_NAMESPACE: {**LABELS, INSTALLATION_LABEL: "default"}}
    assert stored_objects(cluster, OTHER_NAMESPACE) == other_before
    assert release_state(cluster, OTHER_NAMESPACE) == ("deployed", 1)
    assert (await cluster.wp(OTHER_NAMESPACE, ["plugin", "is-active", "woocommerce"])).ok

    await cluster.delete_namespace(NAMESPACE, timeout=30)  # deleting again: nothing to do
    assert cluster.namespaces() == {OTHER_NAMESPACE: {**LABELS, INSTALLATION_LABEL: "default"}}


async def test_a_namespace_can_be_made_again_after_it_was_deleted(
    cluster: SimulatedCluster, chart: Path
) -> None:
    """Nothing of the old store survives in a namespace of the same name (not even WordPress)."""
    await deploy(cluster, NAMESPACE, chart)
    await install_wordpress_with_woocommerce(cluster, NAMESPACE)
    await cluster.delete_namespace(NAMESPACE, timeout=30)

    await deploy(cluster, NAMESPACE, chart)

    assert release_state(cluster, NAMESPACE) == ("deployed", 1)
    assert (await cluster.wp(NAMESPACE, ["core", "is-installed"])).exit_code == 1


async def test_uninstall_release_keeps_secrets_made_outside_the_chart(
    cluster: SimulatedCluster, chart: Path
) -> None:
    await deploy(cluster, NAMESPACE, chart)

    await cluster.uninstall_release(NAMESPACE, RELEASE_NAME)

    assert list(stored_objects(cluster, NAMESPACE)) == [("Secret", CREDENTIALS_SECRET)]
    assert release_state(cluster, NAMESPACE) is None
    await cluster.uninstall_release(NAMESPACE, RELEASE_NAME)  # again: nothing to do


async def test_wp_cli_has_no_pod_to_run_in_once_the_release_is_uninstalled(
    cluster: SimulatedCluster, chart: Path
) -> None:
    await deploy(cluster, NAMESPACE, chart)

    await cluster.uninstall_release(NAMESPACE, RELEASE_NAME)

    with pytest.raises(TransientClusterError, match="no ready WordPress pod"):
        await cluster.wp(NAMESPACE, ["core", "is-installed"])


@pytest.mark.parametrize(
    "faults",
    [{"rollout": "error"}, {"wait_for_rollout": "explode"}],
    ids=["unknown-operation", "unknown-fault"],
)
def test_a_misspelt_fault_is_refused_instead_of_ignored(
    cluster_dir: Path, helm_binary: str, faults: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="unknown simulated faults"):
        SimulatedCluster(cluster_dir, helm_binary=helm_binary, time_scale=0, faults=faults)


async def test_a_store_named_in_any_script_renders(cluster: SimulatedCluster, chart: Path) -> None:
    """Names may hold emoji and non-Latin scripts (the API accepts them): helm must too."""
    namespace = "store-unicode"
    await cluster.ensure_namespace(namespace, LABELS)
    release = release_for(namespace, chart)
    named = Release(
        name=release.name,
        namespace=namespace,
        chart=chart,
        values={**release.values, "storeName": "Café 🛒 東京ストア"},
    )

    await cluster.install_release(named, timeout=30)

    assert release_state(cluster, namespace) == ("deployed", 1)


async def test_two_installations_sharing_a_cluster_each_see_only_their_own_namespaces(
    cluster_dir: Path, helm_binary: str
) -> None:
    production = SimulatedCluster(cluster_dir, helm_binary=helm_binary, time_scale=0)
    staging = SimulatedCluster(
        cluster_dir, helm_binary=helm_binary, time_scale=0, installation="staging"
    )
    acme = {**LABELS, STORE_ID_LABEL: "acme"}
    await production.ensure_namespace(NAMESPACE, acme)
    await staging.ensure_namespace(OTHER_NAMESPACE, {**LABELS, STORE_ID_LABEL: "other"})
    # The labels alone do not make a store namespace: anyone may label kube-public so.
    await production.ensure_namespace("kube-public", {**LABELS, STORE_ID_LABEL: "kube"})

    assert await production.managed_namespaces() == {NAMESPACE: "acme"}
    assert await staging.managed_namespaces() == {OTHER_NAMESPACE: "other"}
    with pytest.raises(PermanentClusterError, match=INSTALLATION_LABEL):
        await staging.ensure_namespace(NAMESPACE, acme)
