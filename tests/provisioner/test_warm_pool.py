"""The provisioner's side of the warm pool: a refill is made like any store and pooled; one
still queued yields to an owner's store; a claimed store is personalised for its owner.

Real PostgreSQL, NATS, helm and chart; the simulated cluster, read back to check the store
is its owner's (address, title, password, keys, settings, no orders left)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from prometheus_client import REGISTRY
from sqlmodel import col, select

from tests.provisioner.conftest import BASE_DOMAIN
from tests.provisioner.test_changes import request_change, set_release_revision
from tests.provisioner.test_runner import KeepAlive, journal, load, stream_events
from tests.support import DEFAULT_SETTINGS, claim_pooled_store, create_store
from woostore_cluster.simulated import SimulatedCluster
from woostore_provisioner.recipe import CREDENTIALS_SECRET, PERSONALISE, PROVISION
from woostore_provisioner.runner import Runner
from woostore_shared import lifecycle
from woostore_shared.events import NO_TENANT, EventName
from woostore_shared.lifecycle import NothingToRollBackTo
from woostore_shared.models import DEFAULT_TENANT_ID, Store, StoreStatus
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import CredentialCipher
from woostore_shared.settings import Settings
from woostore_shared.store_settings import StoreSettingsIn
from woostore_shared.unit_of_work import UnitOfWork


async def request_refill(outbox: Outbox) -> Store:
    """What the reaper's pool keeper asks for."""
    async with UnitOfWork.begin(outbox) as uow:
        return await lifecycle.request(
            uow,
            tenant_id=None,
            name="Warm pool store",
            slug=f"pool-{uuid.uuid4().hex[:8]}",
            type="woocommerce",
            simulated=True,
            settings=DEFAULT_SETTINGS,
        )


async def test_a_refill_is_made_like_any_store_then_pooled_for_nobody(
    make_runner: Callable[[SimulatedCluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    js: JetStreamContext,
) -> None:
    refill = await request_refill(api_outbox)

    await make_runner(cluster).provision(refill.id, KeepAlive())

    pooled = await load(api_outbox.db, refill.id)
    assert (pooled.status, pooled.tenant_id, pooled.origin) == (StoreStatus.POOLED, None, "pool")
    assert pooled.chart_version == Settings().store_chart_version
    # Its own address, which says what base domain it was made under; nobody is shown it.
    assert pooled.storefront_url == f"http://{pooled.slug}.{Settings().base_domain}"
    events = await stream_events(js, refill.id)
    assert events[-1].name is EventName.POOLED
    assert {e.tenantid for e in events} == {str(NO_TENANT)}
    check = await cluster.check_storefront(pooled.namespace, f"http://{pooled.slug}.test")
    assert check.order_placed  # verified, like a cold store


async def test_a_queued_refill_yields_to_an_owners_waiting_store(
    make_runner: Callable[[SimulatedCluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
) -> None:
    refill = await request_refill(api_outbox)
    owners = await create_store(api_outbox)  # arrived after the refill was asked for

    await make_runner(cluster).provision(refill.id, KeepAlive())

    assert (await load(api_outbox.db, refill.id)).status is StoreStatus.DELETING
    assert refill.namespace not in cluster.namespaces()  # nothing was made for it
    assert (await load(api_outbox.db, owners.id)).status is StoreStatus.QUEUED


def finished(outcome: str) -> float:
    return REGISTRY.get_sample_value("woostore_stores_finished_total", {"outcome": outcome}) or 0


async def test_a_claimed_store_is_personalised_for_its_owner_and_verified_again(
    make_runner: Callable[[SimulatedCluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    js: JetStreamContext,
    cipher: CredentialCipher,
) -> None:
    runner = make_runner(cluster)
    refill = await request_refill(api_outbox)
    await runner.provision(refill.id, KeepAlive())
    pool_password = (await cluster.read_secret(refill.namespace, CREDENTIALS_SECRET))[
        "admin-password"
    ]
    pool_salts = cluster.wordpress_state(refill.namespace)["salts"]
    chosen = StoreSettingsIn(currency="EUR", country="DE", sample_products=False)
    claimed = await claim_pooled_store(
        api_outbox,
        "Corner Shop",
        "corner-shop-abc123",
        settings=DEFAULT_SETTINGS.with_choices(chosen),
    )

    made, claims = finished("ready") + finished("pooled"), finished("claimed")
    await runner.personalise(claimed.id, KeepAlive())

    # Made once, when it was pooled: the failure rate's stores made count it once.
    assert (finished("ready") + finished("pooled"), finished("claimed")) == (made, claims + 1)
    ready = await load(api_outbox.db, claimed.id)
    url = f"http://corner-shop-abc123.{BASE_DOMAIN}"
    assert (ready.status, ready.tenant_id, ready.origin) == (
        StoreStatus.READY,
        DEFAULT_TENANT_ID,
        "pool",
    )
    assert ready.storefront_url == url
    assert ready.namespace == refill.namespace
    assert await journal(api_outbox.db, ready.id, "personalise") == [
        step.name for step in PERSONALISE.steps
    ]
    wordpress = cluster.wordpress_state(ready.namespace)
    assert (wordpress["url"], wordpress["siteurl"], wordpress["title"]) == (url, url, "Corner Shop")
    assert wordpress["options"]["woocommerce_currency"] == "EUR"
    assert wordpress["options"]["woocommerce_default_country"] == "DE"
    assert wordpress.get("products", []) == []  # the owner chose none: the pool's removed
    assert wordpress.get("orders", []) == []
    assert wordpress["salts"] != pool_salts
    secret = await cluster.read_secret(ready.namespace, CREDENTIALS_SECRET)
    assert ready.admin_password_encrypted is not None
    password = cipher.decrypt(ready.admin_password_encrypted)
    assert password == secret["admin-password"] != pool_password
    assert wordpress["admin_password_sha256"] == hashlib.sha256(password.encode()).hexdigest()
    [ingress] = cluster.manifests(ready.namespace, "Ingress")
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [url.removeprefix("http://")]

    # The owner's story: requested, the personalise steps, ready; none of the pool's.
    events = [e for e in await stream_events(js, ready.id) if e.tenantid != str(NO_TENANT)]
    assert [e.name for e in events] == [
        EventName.REQUESTED,
        *[EventName.PROGRESS] * (2 * len(PERSONALISE.steps)),
        EventName.READY,
    ]
    assert {e.data["phase"] for e in events if e.name is EventName.PROGRESS} == {"personalise"}
    assert {e.correlationid for e in events} == {ready.correlation_id}
    assert ready.correlation_id != refill.correlation_id


async def test_a_claimed_store_never_rolls_back_to_the_pools_release(
    make_runner: Callable[[SimulatedCluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
) -> None:
    runner = make_runner(cluster)
    refill = await request_refill(api_outbox)
    await runner.provision(refill.id, KeepAlive())
    claimed = await claim_pooled_store(api_outbox, "Owned", "owned-abc123")
    await runner.personalise(claimed.id, KeepAlive())
    ready = await load(api_outbox.db, claimed.id)
    assert ready.first_revision == ready.release_revision == 2

    with pytest.raises(NothingToRollBackTo):  # refused as asked: revision 1 is the pool's
        async with UnitOfWork.begin(api_outbox) as uow:
            await lifecycle.start_change(uow, ready.id, "rollback")
    # The recipe holds to it too, should the store's record be ahead of its release.
    await set_release_revision(api_outbox, ready, 3)
    await request_change(api_outbox, ready, "rollback")
    await runner.change(ready.id, KeepAlive())

    after = await load(api_outbox.db, ready.id)
    assert (after.status, after.release_revision) == (StoreStatus.READY, 3)
    assert after.chart_version == ready.chart_version
    history = await cluster.release_history(after.namespace, "store")
    assert [r.revision for r in history] == [1, 2]  # never rolled back to the pool's
    [ingress] = cluster.manifests(after.namespace, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == f"owned-abc123.{BASE_DOMAIN}"


async def test_an_idle_pooled_store_verified_again_stays_pooled_or_fails_if_it_broke(
    make_runner: Callable[[SimulatedCluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
) -> None:
    runner = make_runner(cluster)
    sound, broken = await request_refill(api_outbox), await request_refill(api_outbox)
    for store in (sound, broken):
        await runner.provision(store.id, KeepAlive())
    before = (await load(api_outbox.db, sound.id)).verified_at
    # Something broke while it waited: cash on delivery switched off.
    await cluster.wp(
        broken.namespace,
        ["wc", "payment_gateway", "update", "cod", "--enabled=false", "--user=admin"],
    )

    made, verified = finished("pooled"), finished("verified_again")
    for store in (sound, broken):
        async with UnitOfWork.begin(api_outbox) as uow:
            await lifecycle.verify_again(uow, store.id)
        await runner.provision(store.id, KeepAlive())
    assert (finished("pooled"), finished("verified_again")) == (made, verified + 1)  # no store made

    again = await load(api_outbox.db, sound.id)
    assert again.status is StoreStatus.POOLED
    assert before is not None
    assert again.verified_at is not None
    assert again.verified_at > before
    assert await journal(api_outbox.db, sound.id, "reverify") == ["verify"]
    failed = await load(api_outbox.db, broken.id)
    assert failed.status is StoreStatus.FAILED  # never handed out; cleaned up and replaced
    assert failed.failure_reason is not None
    assert "order" in failed.failure_reason


async def test_a_claim_that_cannot_be_personalised_falls_back_to_a_cold_store(
    make_runner: Callable[[SimulatedCluster], Runner],
    cluster: SimulatedCluster,
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    js: JetStreamContext,
) -> None:
    refill = await request_refill(api_outbox)
    await make_runner(cluster).provision(refill.id, KeepAlive())
    claimed = await claim_pooled_store(api_outbox, "Unlucky", "unlucky-abc123")
    broken = SimulatedCluster(
        cluster_dir, helm_binary=helm_binary, time_scale=0,
        faults={"wp woostore personalise": "error"},
    )  # fmt: skip
    runner = make_runner(broken)

    await runner.personalise(claimed.id, KeepAlive())

    cold = await load(api_outbox.db, claimed.id)
    assert (cold.status, cold.origin, cold.claimed_at) == (StoreStatus.QUEUED, "cold", None)
    assert cold.tenant_id == DEFAULT_TENANT_ID  # still the owner's, never back in the pool
    assert cold.namespace == "store-unlucky-abc123"
    events = [e for e in await stream_events(js, cold.id) if e.tenantid != str(NO_TENANT)]
    assert events[-1].name is EventName.FELL_BACK
    assert "simulated fault" in events[-1].data["reason"]
    async with api_outbox.db.session() as session:
        [discarded] = list(
            await session.exec(select(Store).where(col(Store.namespace) == refill.namespace))
        )
    assert (discarded.status, discarded.tenant_id) == (StoreStatus.DELETING, None)
    assert discarded.delete_requested_at is not None  # as for every deletion

    await runner.provision(cold.id, KeepAlive())  # made from scratch, as any new store
    await runner.remove(discarded.id, KeepAlive())

    ready = await load(api_outbox.db, cold.id)
    assert (ready.status, ready.origin) == (StoreStatus.READY, "cold")
    assert await journal(api_outbox.db, ready.id, "provision") == [s.name for s in PROVISION.steps]
    assert refill.namespace not in cluster.namespaces()  # what the pool made is gone
    assert ready.namespace in cluster.namespaces()
    assert (await load(api_outbox.db, discarded.id)).status is StoreStatus.DELETED
