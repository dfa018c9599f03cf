"""What a claim from the warm pool asks of the simulated cluster, which must answer as a real
one would: a new admin password in the store's Secret, an upgrade that changes only the
Ingress (quick, and no pod restarts), and the WP-CLI commands that make the store its
owner's. Real helm, real chart, time scale 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import uuid
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.support import CHART, HELM, LOCAL_PROFILE
from tests.support import DEFAULT_SETTINGS
from woostore_cluster import PermanentClusterError, TransientClusterError
from woostore_cluster.simulated import DURATIONS, FAULTABLE, SimulatedCluster
from woostore_provisioner.recipe import PROVISION, StoreJob, TimeLimits, install_release
from woostore_shared.secrets import CredentialCipher

NS = "store-pool-7f3a9c"
SECRET = "store-credentials"
CREDENTIALS = {
    "db-password": "db-one",
    "db-root-password": "db-root-one",
    "admin-password": "admin-one",
}


POOL_HOST = "pool-7f3a9c.shops.example.test"
OWNER_HOST = "acme-42.shops.example.test"
OWNER_NAME = "Acme Coffee ☕"
PROD_PROFILE = CHART / "values-prod.yaml"


class TimedCluster(SimulatedCluster):
    """The simulated cluster, telling which operations it took its time for (DURATIONS' names)."""

    def __init__(self, state_dir: Path, **options: Any) -> None:
        super().__init__(state_dir, **options)
        self.operations: list[str] = []

    async def _operate(self, operation: str, namespace: str) -> None:
        self.operations.append(operation)
        await super()._operate(operation, namespace)

    def seconds(self) -> float:
        """What the operations so far take at time scale 1 (without the jitter)."""
        return sum(DURATIONS[operation] for operation in self.operations)


def simulated(state_dir: Path, **faults: str) -> TimedCluster:
    return TimedCluster(state_dir, helm_binary=str(HELM), time_scale=0, faults=faults)


@pytest.fixture
def cluster(tmp_path: Path) -> TimedCluster:
    return simulated(tmp_path / "sim")


def pool_job(cluster: SimulatedCluster, values_files: tuple[Path, ...] = ()) -> StoreJob:
    """A store of the warm pool, as the provisioner makes one: owned by nobody yet."""
    return StoreJob(
        store_id=str(uuid.uuid4()),
        name="WooStore pool store",
        slug="pool-7f3a9c",
        namespace=NS,
        host=POOL_HOST,
        storefront_url=f"http://{POOL_HOST}",
        cluster=cluster,
        chart=CHART,
        cipher=CredentialCipher("test-secret-key"),
        limits=TimeLimits(rollout=300),
        settings=DEFAULT_SETTINGS,
        values_files=values_files,
    )


def claimed(job: StoreJob) -> StoreJob:
    """The same store, for its owner: their host and their shop's name."""
    return dataclasses.replace(
        job, name=OWNER_NAME, host=OWNER_HOST, storefront_url=f"http://{OWNER_HOST}"
    )


async def pooled_store(cluster: TimedCluster, values_files: tuple[Path, ...] = ()) -> StoreJob:
    """A ready, verified store of the pool (every PROVISION step), operations forgotten."""
    job = pool_job(cluster, values_files)
    for step in PROVISION.steps:
        await step.run(job)
    cluster.operations.clear()
    return job


def stored(cluster: SimulatedCluster, kind: str) -> dict[str, Any]:
    """The namespace's objects of ``kind``, by name, as the cluster holds them."""
    with closing(sqlite3.connect(cluster.state_file)) as db:
        rows = db.execute(
            "SELECT name, body FROM objects WHERE namespace=? AND kind=?", (NS, kind)
        ).fetchall()
    return {name: json.loads(body) for name, body in rows}


def wordpress(cluster: SimulatedCluster) -> dict[str, Any]:
    with closing(sqlite3.connect(cluster.state_file)) as db:
        (state,) = db.execute("SELECT state FROM wordpress WHERE namespace=?", (NS,)).fetchone()
    found: dict[str, Any] = json.loads(state)
    return found


async def wp(cluster: SimulatedCluster, *args: str, stdin: str | None = None) -> str:
    """stdout of a WP-CLI command that must succeed."""
    result = await cluster.wp(NS, args, stdin)
    assert result.ok, result.stdout
    return result.stdout


# -- the store's Secret ----------------------------------------------------------------------


async def test_update_secret_sets_the_keys_given_and_keeps_the_others(
    cluster: SimulatedCluster,
) -> None:
    await cluster.ensure_namespace(NS, {})
    await cluster.ensure_secret(NS, SECRET, CREDENTIALS)

    await cluster.update_secret(NS, SECRET, {"admin-password": "admin-two"})
    once = await cluster.read_secret(NS, SECRET)
    await cluster.update_secret(NS, SECRET, {"admin-password": "admin-two"})

    assert once == {**CREDENTIALS, "admin-password": "admin-two"}
    assert await cluster.read_secret(NS, SECRET) == once
    # ensure_secret still keeps what is there
    await cluster.ensure_secret(NS, SECRET, CREDENTIALS)
    assert await cluster.read_secret(NS, SECRET) == once


async def test_update_secret_of_a_missing_secret_or_namespace_is_permanent(
    cluster: SimulatedCluster,
) -> None:
    with pytest.raises(PermanentClusterError, match="not found"):
        await cluster.update_secret(NS, SECRET, {"admin-password": "admin-two"})
    await cluster.ensure_namespace(NS, {})

    with pytest.raises(PermanentClusterError, match=f"secret {NS}/{SECRET} not found") as raised:
        await cluster.update_secret(NS, SECRET, {"admin-password": "admin-two"})

    assert "admin-two" not in str(raised.value)
    with pytest.raises(PermanentClusterError, match="not found"):
        await cluster.read_secret(NS, SECRET)  # nothing was made on the way


async def test_update_secret_takes_faults_by_its_own_name(tmp_path: Path) -> None:
    await simulated(tmp_path / "sim").ensure_namespace(NS, {})
    faulty = simulated(tmp_path / "sim", update_secret="error")
    await faulty.ensure_secret(NS, SECRET, CREDENTIALS)

    with pytest.raises(PermanentClusterError, match="update_secret failed: simulated fault"):
        await faulty.update_secret(NS, SECRET, {"admin-password": "admin-two"})

    assert await faulty.read_secret(NS, SECRET) == CREDENTIALS


# -- the upgrade to the owner's host and name ----------------------------------------------


@pytest.mark.parametrize("profile", [(), (LOCAL_PROFILE,), (PROD_PROFILE,)])
async def test_a_claims_upgrade_changes_only_the_ingress_and_is_quick(
    cluster: TimedCluster, profile: tuple[Path, ...]
) -> None:
    job = await pooled_store(cluster, profile)
    workloads = stored(cluster, "Deployment") | stored(cluster, "StatefulSet")

    await install_release(claimed(job))
    await cluster.wait_for_rollout(NS, timeout=300)

    assert cluster.operations == [
        "upgrade_release_workloads_unchanged",
        "wait_for_rollout_workloads_unchanged",
    ]
    assert stored(cluster, "Deployment") | stored(cluster, "StatefulSet") == workloads
    ingress = stored(cluster, "Ingress")["store"]
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [OWNER_HOST]
    assert ingress["metadata"]["annotations"]["woostore.io/store-name"] == OWNER_NAME
    history = await cluster.release_history(NS, "store")
    assert [r.status for r in history][-2:] == ["superseded", "deployed"]
    assert wordpress(cluster)["pods_ready"]  # WP-CLI runs on at once, in the same pod
    assert await wp(cluster, "core", "is-installed") == ""


def test_the_quick_operations_are_quicker_than_the_full_ones() -> None:
    assert DURATIONS["upgrade_release_workloads_unchanged"] == pytest.approx(3.0)
    assert DURATIONS["install_release"] == pytest.approx(8.0)
    assert DURATIONS["wait_for_rollout_workloads_unchanged"] == pytest.approx(1.0)
    assert DURATIONS["wait_for_rollout"] == pytest.approx(35.0)
    assert DURATIONS["wp search-replace"] == pytest.approx(2.0)
    assert DURATIONS["wp user update"] == DURATIONS["wp woostore shuffle-salts"] == 1.0
    assert {
        "update_secret",
        "upgrade_release_workloads_unchanged",
        "wait_for_rollout_workloads_unchanged",
        "wp search-replace",
        "wp user update",
        "wp woostore shuffle-salts",
        "wp wc shop_order delete",
    } <= FAULTABLE


async def test_an_upgrade_that_changes_a_workload_takes_the_full_time(
    cluster: TimedCluster,
) -> None:
    """Another values profile changes the WordPress pod template: its pods are replaced."""
    job = await pooled_store(cluster)
    before = stored(cluster, "Deployment")

    await install_release(dataclasses.replace(claimed(job), values_files=(LOCAL_PROFILE,)))
    await cluster.wait_for_rollout(NS, timeout=300)
    await cluster.wait_for_rollout(NS, timeout=300)  # the pods are the new ones by now

    assert stored(cluster, "Deployment") != before
    assert cluster.operations == [
        "install_release",
        "wait_for_rollout",
        "wait_for_rollout_workloads_unchanged",
    ]


async def test_pods_that_never_became_ready_take_the_full_rollout(
    cluster: TimedCluster,
) -> None:
    """An upgrade changing no workload, over a first rollout that never finished."""
    job = pool_job(cluster)
    await cluster.ensure_namespace(NS, {})
    await install_release(job)
    await install_release(job)
    await cluster.wait_for_rollout(NS, timeout=300)

    assert cluster.operations == [
        "ensure_namespace",
        "install_release",
        "upgrade_release_workloads_unchanged",
        "wait_for_rollout",
    ]


@pytest.mark.parametrize(
    ("fault", "operation", "failed"),
    [
        ("install_release", "upgrade_release_workloads_unchanged", "install_release"),
        (
            "upgrade_release_workloads_unchanged",
            "upgrade_release_workloads_unchanged",
            "install_release",
        ),
        ("wait_for_rollout", "wait_for_rollout_workloads_unchanged", "wait_for_rollout"),
        (
            "wait_for_rollout_workloads_unchanged",
            "wait_for_rollout_workloads_unchanged",
            "wait_for_rollout",
        ),
    ],
)
async def test_faults_on_an_install_or_a_rollout_strike_their_quick_variants(
    tmp_path: Path, fault: str, operation: str, failed: str
) -> None:
    """A quick upgrade or rollout is still an install or a rollout: it fails as one."""
    job = await pooled_store(simulated(tmp_path / "sim"))
    faulty = simulated(tmp_path / "sim", **{fault: "error"})
    claim = claimed(dataclasses.replace(job, cluster=faulty))

    async def claim_step() -> None:
        if failed == "install_release":
            await install_release(claim)
        else:
            await faulty.wait_for_rollout(NS, timeout=300)

    with pytest.raises(PermanentClusterError, match=f"^{failed} failed: simulated fault"):
        await claim_step()

    assert faulty.operations == [operation]


async def test_a_fault_only_on_the_quick_upgrade_spares_a_first_install(tmp_path: Path) -> None:
    faulty = simulated(tmp_path / "sim", upgrade_release_workloads_unchanged="error")

    job = await pooled_store(faulty)  # installed once: the full operation

    with pytest.raises(PermanentClusterError, match="simulated fault"):
        await install_release(claimed(job))


async def test_a_transient_install_fault_fires_once_for_both_kinds_of_install(
    tmp_path: Path,
) -> None:
    faulty = simulated(tmp_path / "sim", install_release="transient")
    job = pool_job(faulty)
    await faulty.ensure_namespace(NS, {})
    with pytest.raises(TransientClusterError):
        await install_release(job)
    await install_release(job)

    await install_release(claimed(job))  # the quick kind: the fault has fired already

    assert faulty.operations[-1] == "upgrade_release_workloads_unchanged"


# -- WordPress's own URL and title ---------------------------------------------------------


async def test_options_read_back_what_install_and_update_set(cluster: TimedCluster) -> None:
    job = await pooled_store(cluster)

    assert await wp(cluster, "option", "get", "home") == f"http://{POOL_HOST}"
    assert await wp(cluster, "option", "get", "siteurl") == f"http://{POOL_HOST}"
    assert await wp(cluster, "option", "get", "blogname") == job.name
    assert await wp(cluster, "option", "get", "admin_email") == f"admin@{POOL_HOST}"
    assert await wp(cluster, "option", "get", "woocommerce_currency") == "INR"
    unknown = await cluster.wp(NS, ["option", "get", "no_such_option"])
    assert (unknown.exit_code, unknown.stdout) == (
        1,
        "Error: Could not get 'no_such_option' option. Does it exist?",
    )

    for incomplete in (["option", "get"], ["option", "update", "blogname"]):
        assert (await cluster.wp(NS, incomplete)).exit_code == 1

    await wp(cluster, "option", "update", "blogname", OWNER_NAME)
    await wp(cluster, "option", "update", "home", f"http://{OWNER_HOST}")
    assert await wp(cluster, "option", "get", "blogname") == OWNER_NAME
    assert await wp(cluster, "option", "get", "home") == f"http://{OWNER_HOST}"
    assert await wp(cluster, "option", "get", "siteurl") == f"http://{POOL_HOST}"  # its own
    await wp(cluster, "option", "update", "siteurl", f"http://{OWNER_HOST}")
    assert await wp(cluster, "option", "get", "siteurl") == f"http://{OWNER_HOST}"


async def test_search_replace_moves_the_store_to_its_owners_host(cluster: TimedCluster) -> None:
    await pooled_store(cluster)

    moved = await wp(
        cluster, "search-replace", f"//{POOL_HOST}", f"//{OWNER_HOST}", "--all-tables",
        "--skip-columns=guid",
    )  # fmt: skip
    again = await wp(
        cluster, "search-replace", f"//{POOL_HOST}", f"//{OWNER_HOST}", "--all-tables",
        "--skip-columns=guid",
    )  # fmt: skip
    emails = await wp(cluster, "search-replace", POOL_HOST, OWNER_HOST, "--all-tables")
    title = await wp(cluster, "search-replace", "pool store", "shop", "--all-tables")

    assert moved == "Success: Made 2 replacements."  # home and siteurl
    assert again == "Success: Made 0 replacements."
    # The administrator's email: the one WordPress was installed with, and the option the
    # recipe set.
    assert emails == "Success: Made 2 replacements."
    assert title == "Success: Made 1 replacement."
    assert await wp(cluster, "option", "get", "home") == f"http://{OWNER_HOST}"
    assert await wp(cluster, "option", "get", "siteurl") == f"http://{OWNER_HOST}"
    assert await wp(cluster, "option", "get", "admin_email") == f"admin@{OWNER_HOST}"
    assert await wp(cluster, "option", "get", "blogname") == "WooStore shop"
    assert cluster.operations.count("wp search-replace") == 4


async def test_search_replace_without_a_change_or_its_arguments(cluster: TimedCluster) -> None:
    await pooled_store(cluster)

    same = await cluster.wp(NS, ["search-replace", POOL_HOST, POOL_HOST])
    missing = await cluster.wp(NS, ["search-replace", POOL_HOST])

    # WP-CLI warns on stderr and succeeds; the driver hands back stdout alone.
    assert (same.exit_code, same.stdout) == (0, "")
    assert missing.exit_code == 1
    assert await wp(cluster, "option", "get", "home") == f"http://{POOL_HOST}"


async def test_an_https_store_shows_its_urls_in_https_and_stores_them_as_installed(
    cluster: TimedCluster,
) -> None:
    """The prod profile's pod says https (WOOSTORE_URL_SCHEME); the database keeps the URL
    ``wp core install --url`` was given. search-replace works on what is stored."""
    await pooled_store(cluster, (PROD_PROFILE,))

    shown = await wp(cluster, "option", "get", "home")
    missed = await wp(cluster, "search-replace", shown, f"https://{OWNER_HOST}")
    moved = await wp(cluster, "search-replace", f"//{POOL_HOST}", f"//{OWNER_HOST}")

    assert shown == f"https://{POOL_HOST}"
    assert missed == "Success: Made 0 replacements."  # the database holds http://
    assert moved == "Success: Made 2 replacements."
    assert await wp(cluster, "option", "get", "home") == f"https://{OWNER_HOST}"
    assert await wp(cluster, "option", "get", "siteurl") == f"https://{OWNER_HOST}"


# -- the administrator's password, keys and salts ------------------------------------------


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_a_new_admin_password_comes_on_stdin(cluster: TimedCluster) -> None:
    await pooled_store(cluster)
    pool_password = (await cluster.read_secret(NS, SECRET))["admin-password"]
    assert wordpress(cluster)["admin_password_sha256"] == sha256(pool_password)

    updated = await wp(
        cluster, "user", "update", "admin", "--prompt=user_pass", stdin="owner-password-1\n"
    )

    assert updated == "Success: Updated user 1."
    assert "owner-password-1" not in updated
    assert wordpress(cluster)["admin_password_sha256"] == sha256("owner-password-1")
    assert cluster.operations == ["wp user update"]


@pytest.mark.parametrize(
    ("args", "stdin", "error"),
    [
        (["user", "update", "admin", "--prompt=user_pass"], None, "expected on standard input"),
        (["user", "update", "admin", "--prompt=user_pass"], "\n", "expected on standard input"),
        (["user", "update", "bob", "--prompt=user_pass"], "pw\n", "Invalid user ID"),
        # Never a password in the arguments, where the process table would show it.
        (["user", "update", "admin", "--user_pass=pw"], None, "--prompt=user_pass"),
    ],
)
async def test_a_password_update_that_cannot_be_done_fails(
    cluster: TimedCluster, args: list[str], stdin: str | None, error: str
) -> None:
    await pooled_store(cluster)
    before = wordpress(cluster)["admin_password_sha256"]

    result = await cluster.wp(NS, args, stdin)

    assert result.exit_code == 1
    assert result.stdout.startswith("Error: ")
    assert error in result.stdout
    assert wordpress(cluster)["admin_password_sha256"] == before


async def test_shuffling_salts_gives_the_store_new_ones(cluster: TimedCluster) -> None:
    await pooled_store(cluster)
    first = wordpress(cluster)["salts"]  # made when the pod first started

    shuffled = await wp(cluster, "woostore", "shuffle-salts")
    second = wordpress(cluster)["salts"]
    await wp(cluster, "woostore", "shuffle-salts")

    assert shuffled == "Success: Shuffled the keys and salts in wp-content/woostore-salts.php."
    assert len({first, second, wordpress(cluster)["salts"]}) == 3
    assert len(first) == 64
    assert cluster.operations == ["wp woostore shuffle-salts"] * 2


async def test_the_plugins_command_needs_an_installed_wordpress(cluster: TimedCluster) -> None:
    job = pool_job(cluster)
    for step in PROVISION.steps[:4]:  # up to the rollout: no WordPress installed yet
        await step.run(job)

    result = await cluster.wp(NS, ["woostore", "shuffle-salts"])

    assert (result.exit_code, result.stdout) == (
        1,
        "Error: The site you have requested is not installed.",
    )


# -- orders ------------------------------------------------------------------------------


async def test_the_verification_order_is_placed_and_deleted(cluster: TimedCluster) -> None:
    await pooled_store(cluster)  # its verify step placed one

    listed = await wp(
        cluster, "wc", "shop_order", "list", "--format=json", "--fields=id", "--user=admin"
    )

    assert cluster.orders_placed(NS) == 1
    assert json.loads(listed) == []
    check = await cluster.check_storefront(NS, f"http://{POOL_HOST}")
    assert check.order_placed
    assert check.detail == "test order 102 placed and deleted"
    assert cluster.orders_placed(NS) == 2
    assert cluster.operations == ["wp", "check_storefront", "wp wc shop_order delete"]


async def test_an_order_whose_deletion_failed_stays_until_it_is_deleted(tmp_path: Path) -> None:
    await pooled_store(simulated(tmp_path / "sim"))
    faulty = simulated(tmp_path / "sim", **{"wp wc shop_order delete": "transient"})
    listing = ["wc", "shop_order", "list", "--format=json", "--fields=id", "--user=admin"]

    with pytest.raises(TransientClusterError, match="wp wc shop_order delete failed"):
        await faulty.check_storefront(NS, f"http://{POOL_HOST}")
    left = json.loads(await wp(faulty, *listing))
    retried = await faulty.check_storefront(NS, f"http://{POOL_HOST}")

    assert left == [{"id": 102}]
    assert retried.order_placed
    assert json.loads(await wp(faulty, *listing)) == [{"id": 102}]
    assert faulty.orders_placed(NS) == 3
    deleted = await wp(faulty, "wc", "shop_order", "delete", "102", "--force=true", "--user=admin")
    assert deleted == "Success: Deleted shop_order 102."
    again = await faulty.wp(NS, ["wc", "shop_order", "delete", "102", "--force=true"])
    assert (again.exit_code, again.stdout) == (1, "Error: Invalid ID.")
    assert json.loads(await wp(faulty, *listing)) == []


# -- the whole claim -----------------------------------------------------------------------


async def test_a_whole_claim_takes_seconds_and_leaves_the_store_its_owners(
    cluster: TimedCluster,
) -> None:
    """The calls the personalise recipe makes, in order, on a verified pooled store."""
    job = await pooled_store(cluster, (PROD_PROFILE,))
    owner = claimed(job)
    salts = wordpress(cluster)["salts"]

    await install_release(owner)
    await cluster.wait_for_rollout(NS, timeout=300)
    await wp(
        cluster, "search-replace", f"//{POOL_HOST}", f"//{OWNER_HOST}", "--all-tables",
        "--skip-columns=guid",
    )  # fmt: skip
    await wp(cluster, "option", "update", "blogname", OWNER_NAME)
    await wp(cluster, "user", "update", "admin", "--prompt=user_pass", stdin="owner-pw-2\n")
    await cluster.update_secret(NS, SECRET, {"admin-password": "owner-pw-2"})
    await wp(cluster, "woostore", "shuffle-salts")
    orders = json.loads(
        await wp(cluster, "wc", "shop_order", "list", "--format=json", "--fields=id",
                 "--user=admin")
    )  # fmt: skip
    check = await cluster.check_storefront(NS, owner.storefront_url)

    assert orders == []
    assert (check.status_code, check.order_placed) == (200, True)
    assert await wp(cluster, "option", "get", "home") == f"https://{OWNER_HOST}"
    assert await wp(cluster, "option", "get", "blogname") == OWNER_NAME
    assert (await cluster.read_secret(NS, SECRET))["admin-password"] == "owner-pw-2"
    state = wordpress(cluster)
    assert state["admin_password_sha256"] == sha256("owner-pw-2")
    assert state["salts"] != salts
    assert "orders" not in state
    # No step restarted a pod, and the whole claim is seconds at time scale 1, where making
    # the store took more than a minute.
    assert "wait_for_rollout" not in cluster.operations
    assert "install_release" not in cluster.operations
    assert cluster.seconds() < 20


# -- wp woostore personalise: the claim's WordPress side in one run --------------------------

OWNER_EMAIL = "owner@acme.example"
OWNER_PASSWORD = "owner-pw-3 ünïcode"
MUG, TOTE = ("Ceramic Mug", "9.00"), ("Cotton Tote Bag", "15.00")


def personalise(
    *,
    source: str = POOL_HOST,
    products: Sequence[tuple[str, str]] | str = (),
    **overrides: str,
) -> list[str]:
    """The command line of ``wp woostore personalise`` (after ``wp``), the owner's by default."""
    listed = (
        products
        if isinstance(products, str)
        else json.dumps([{"name": name, "regular_price": price} for name, price in products])
    )
    flags = {
        "from-host": source,
        "to-host": OWNER_HOST,
        "title": OWNER_NAME,
        "admin-email": OWNER_EMAIL,
        "currency": "EUR",
        "country": "DE",
        "products": listed,
        "prompt": "admin_password",
    } | overrides
    return ["woostore", "personalise", *(f"--{name}={value}" for name, value in flags.items())]


async def store_with_a_left_order(tmp_path: Path) -> tuple[TimedCluster, StoreJob]:
    """A pooled store whose verification could not delete its order (as a failed
    ``wp wc shop_order delete`` leaves it), then on a cluster without faults."""
    job = await pooled_store(simulated(tmp_path / "sim"))
    faulty = simulated(tmp_path / "sim", **{"wp wc shop_order delete": "error"})
    with pytest.raises(PermanentClusterError):
        await faulty.check_storefront(NS, f"http://{POOL_HOST}")
    cluster = simulated(tmp_path / "sim")
    return cluster, dataclasses.replace(job, cluster=cluster)


async def product_names(cluster: SimulatedCluster) -> dict[str, int]:
    listed = await wp(
        cluster, "wc", "product", "list", "--format=json", "--fields=id,name", "--user=admin"
    )
    return {product["name"]: product["id"] for product in json.loads(listed)}


async def test_personalise_makes_the_pooled_store_its_owners_in_one_run(tmp_path: Path) -> None:
    cluster, _ = await store_with_a_left_order(tmp_path)
    pooled = wordpress(cluster)
    assert len(pooled["orders"]) == 1
    assert [p["name"] for p in pooled["products"]] == [
        "Organic Coffee Beans",
        "Ceramic Mug",
        "Cotton Tote Bag",
    ]

    said = await wp(cluster, *personalise(products=[MUG, ("Linen Apron", "24.00")]),
                    stdin=OWNER_PASSWORD + "\n")  # fmt: skip

    assert said == (
        f"Success: Personalised the store at {OWNER_HOST}: 2 replacements, 4 settings changed, "
        "the admin's email and password set, the keys and salts shuffled, 1 order deleted, "
        "1 product created, 2 products deleted."
    )
    assert cluster.operations == ["wp woostore personalise"]
    for option, value in {
        "home": f"http://{OWNER_HOST}",
        "siteurl": f"http://{OWNER_HOST}",
        "blogname": OWNER_NAME,
        "admin_email": OWNER_EMAIL,
        "woocommerce_currency": "EUR",
        "woocommerce_default_country": "DE",
        "woocommerce_coming_soon": "no",
    }.items():
        assert await wp(cluster, "option", "get", option) == value, option
    state = wordpress(cluster)
    assert state["admin_user_email"] == OWNER_EMAIL
    assert state["admin_password_sha256"] == sha256(OWNER_PASSWORD)
    assert state["salts"] != pooled["salts"]
    assert len(state["salts"]) == 64
    assert "orders" not in state
    # The mug kept its id; the new product has the one `wc product create` would give it
    # (the simulation's: after the highest left).
    assert await product_names(cluster) == {"Ceramic Mug": 11, "Linen Apron": 12}
    assert [p["regular_price"] for p in state["products"]] == ["9.00", "24.00"]


async def test_personalise_run_again_changes_nothing_more_but_the_salts(
    cluster: TimedCluster,
) -> None:
    await pooled_store(cluster)
    command = personalise(products=[MUG, TOTE])
    await wp(cluster, *command, stdin=OWNER_PASSWORD + "\n")
    once = wordpress(cluster)

    again = await wp(cluster, *command, stdin=OWNER_PASSWORD + "\n")

    assert again == (
        f"Success: Personalised the store at {OWNER_HOST}: 0 replacements, 0 settings changed, "
        "the admin's email and password set, the keys and salts shuffled, 0 orders deleted, "
        "0 products created, 0 products deleted."
    )
    twice = wordpress(cluster)
    assert twice["salts"] != once["salts"]  # shuffled anew: nobody knew the first ones either
    assert {**twice, "salts": None} == {**once, "salts": None}


async def test_personalise_on_the_same_host_rewrites_nothing(cluster: TimedCluster) -> None:
    await pooled_store(cluster)

    said = await wp(
        cluster, *personalise(source=POOL_HOST, **{"to-host": POOL_HOST}), stdin="pw-4\n"
    )

    assert said.startswith(f"Success: Personalised the store at {POOL_HOST}: 0 replacements, ")
    assert await wp(cluster, "option", "get", "home") == f"http://{POOL_HOST}"


async def test_personalise_moves_an_https_store_by_host(cluster: TimedCluster) -> None:
    await pooled_store(cluster, (PROD_PROFILE,))

    await wp(cluster, *personalise(), stdin="pw-5\n")

    assert await wp(cluster, "option", "get", "home") == f"https://{OWNER_HOST}"
    assert await wp(cluster, "option", "get", "siteurl") == f"https://{OWNER_HOST}"


@pytest.mark.parametrize(
    ("wanted", "left"),
    [
        ([], {}),  # none at all: the verify step borrows its test product
        ([MUG, TOTE], {"Ceramic Mug": 11, "Cotton Tote Bag": 12}),
        ([("Linen Apron", "24.00")], {"Linen Apron": 10}),  # all deleted first
    ],
)
async def test_personalise_leaves_exactly_the_products_named(
    cluster: TimedCluster, wanted: list[tuple[str, str]], left: dict[str, int]
) -> None:
    await pooled_store(cluster)

    await wp(cluster, *personalise(products=wanted), stdin="pw-6\n")

    assert await product_names(cluster) == left


async def test_personalise_keeps_one_product_of_a_name(cluster: TimedCluster) -> None:
    """A name twice in the store (or once with its `&` stored as WordPress stores it) is one."""
    await pooled_store(cluster)
    await wp(cluster, "wc", "product", "create", "--name=Ceramic Mug", "--regular_price=9.50",
             "--user=admin")  # fmt: skip
    await wp(cluster, "wc", "product", "create", "--name=Tea &amp; Biscuits",
             "--regular_price=4.00", "--user=admin")  # fmt: skip

    said = await wp(
        cluster, *personalise(products=[MUG, ("Tea & Biscuits", "4.00")]), stdin="pw-7\n"
    )

    assert said.endswith("0 products created, 3 products deleted.")
    assert await product_names(cluster) == {"Ceramic Mug": 11, "Tea &amp; Biscuits": 14}


REFUSED = "never-shown-pw-8"


@pytest.mark.parametrize(
    ("args", "stdin", "error"),
    [
        (personalise(), None, "The admin password is expected on standard input"),
        (personalise(), "\n", "The admin password is expected on standard input"),
        (personalise(), "   \n", "The admin password is expected on standard input"),
        # Never a password in the arguments, where the process table would show it.
        (
            [*personalise()[:-1], f"--admin_password={REFUSED}"],
            None,
            "The admin password goes on standard input (--prompt=admin_password)",
        ),
        (personalise(products="not json"), REFUSED, "--products is not a JSON list of products."),
        (personalise(products='{"name": "Mug"}'), REFUSED, "--products is not a JSON list"),
        (personalise(products='["Mug"]'), REFUSED, "product 1 is not a JSON object."),
        (
            personalise(products='[{"name": "Mug", "regular_price": 9}]'),
            REFUSED,
            'product 1 has no regular_price such as "12.50".',
        ),
        (
            personalise(products='[{"name": "Mug", "price": "9.00"}]'),
            REFUSED,
            "product 1 has unknown fields: price.",
        ),
        (
            personalise(products=[MUG, ("Ceramic Mug", "8.00")]),
            REFUSED,
            "--products names 'Ceramic Mug' twice.",
        ),
        ([*personalise(), "--colour=blue"], REFUSED, "Parameter errors:\n unknown --colour"),
        (personalise()[:-2] + personalise()[-1:], REFUSED, "missing --products parameter"),
        ([*personalise()[:2], "now", *personalise()[2:]], REFUSED, "Too many positional"),
        (personalise(title=" "), REFUSED, "--title is empty."),
        (personalise(**{"to-host": "acme --all"}), REFUSED, "--to-host is not a host name"),
        (personalise(**{"admin-email": "owner"}), REFUSED, "not an email address: 'owner'"),
        (personalise(currency="euro"), REFUSED, "--currency is not an ISO 4217 code"),
        (personalise(country="Germany"), REFUSED, "--country is not a country code"),
    ],
)
async def test_personalise_refuses_what_it_cannot_do_and_changes_nothing(
    cluster: TimedCluster, args: list[str], stdin: str | None, error: str
) -> None:
    await pooled_store(cluster)
    before = wordpress(cluster)

    result = await cluster.wp(NS, args, stdin)

    assert result.exit_code == 1
    assert result.stdout.startswith("Error: ")
    assert error in result.stdout
    assert REFUSED not in result.stdout
    assert wordpress(cluster) == before


async def test_personalise_never_shows_the_password(cluster: TimedCluster) -> None:
    await pooled_store(cluster)
    secret = "s3cret-Acme-9"

    said = await wp(cluster, *personalise(), stdin=secret + "\n")
    state = json.dumps(wordpress(cluster))

    assert secret not in said
    assert secret not in state  # a hash of it, as WordPress keeps one


async def test_personalise_needs_woocommerce_and_an_installed_wordpress(
    cluster: TimedCluster,
) -> None:
    job = pool_job(cluster)
    for step in PROVISION.steps[:4]:  # up to the rollout
        await step.run(job)
    not_installed = await cluster.wp(NS, personalise(), "pw-10\n")
    await PROVISION.steps[4].run(job)  # WordPress, without WooCommerce yet

    no_woocommerce = await cluster.wp(NS, personalise(), "pw-10\n")

    assert (not_installed.exit_code, not_installed.stdout) == (
        1,
        "Error: The site you have requested is not installed.",
    )
    assert (no_woocommerce.exit_code, no_woocommerce.stdout) == (
        1,
        "Error: WooCommerce is not active.",
    )


def test_personalise_takes_one_boot_of_wordpress_with_woocommerce() -> None:
    assert DURATIONS["wp woostore personalise"] == pytest.approx(2.5)
    assert "wp woostore personalise" in FAULTABLE


@pytest.mark.parametrize(
    ("fault", "kind", "raised"),
    [
        ("wp woostore personalise", "error", PermanentClusterError),
        ("wp", "error", PermanentClusterError),  # "wp" covers every WP-CLI command
        ("wp", "transient", TransientClusterError),
    ],
)
async def test_a_fault_on_personalise_leaves_the_store_as_it_was(
    tmp_path: Path, fault: str, kind: str, raised: type[Exception]
) -> None:
    await pooled_store(simulated(tmp_path / "sim"))
    before = wordpress(simulated(tmp_path / "sim"))
    faulty = simulated(tmp_path / "sim", **{fault: kind})

    with pytest.raises(raised, match=r"^wp woostore personalise failed: simulated"):
        await faulty.wp(NS, personalise(), "pw-11\n")

    assert faulty.operations == ["wp woostore personalise"]
    assert wordpress(faulty) == before


async def test_a_claim_with_personalise_takes_a_few_seconds(cluster: TimedCluster) -> None:
    """The claim's cluster calls with the WordPress side in one command: what it costs at time
    scale 1. The upgrade, the storefront check and its order's deletion are most of it."""
    job = await pooled_store(cluster, (PROD_PROFILE,))
    owner = claimed(job)

    await install_release(owner)
    await cluster.wait_for_rollout(NS, timeout=300)
    await cluster.update_secret(NS, SECRET, {"admin-password": "owner-pw-12"})
    await wp(cluster, *personalise(products=[MUG]), stdin="owner-pw-12\n")
    check = await cluster.check_storefront(NS, owner.storefront_url)

    assert (check.status_code, check.products, check.order_placed) == (200, 1, True)
    assert cluster.operations == [
        "upgrade_release_workloads_unchanged",
        "wait_for_rollout_workloads_unchanged",
        "update_secret",
        "wp woostore personalise",
        "check_storefront",
        "wp wc shop_order delete",
    ]
    assert cluster.seconds() == pytest.approx(11.0)
    assert wordpress(cluster)["admin_password_sha256"] == sha256("owner-pw-12")
