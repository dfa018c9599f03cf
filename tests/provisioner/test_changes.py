"""Upgrading a ready store to a newer chart, rolling it back, and changes that fail: the store
ends ready every time, with the chart version it runs and the events telling how it went."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from nats.js import JetStreamContext
from prometheus_client import REGISTRY
from sqlmodel import col, select, update

from tests.provisioner.conftest import BASE_DOMAIN, WATCH_INTERVAL
from tests.provisioner.test_runner import KeepAlive, faulty_cluster, load, stream_events
from tests.support import DEFAULT_SETTINGS, create_store
from woostore_cluster import Cluster
from woostore_cluster.simulated import SimulatedCluster
from woostore_provisioner.recipe import RELEASE_NAME, ROLLBACK, UPGRADE, TimeLimits
from woostore_provisioner.runner import Runner
from woostore_shared import lifecycle
from woostore_shared.backups import BackupStorage
from woostore_shared.db import Database
from woostore_shared.events import Change, CloudEvent, EventName
from woostore_shared.models import (
    BackupStatus,
    BackupTrigger,
    Store,
    StoreBackup,
    StoreChange,
    StoreStatus,
)
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import CredentialCipher
from woostore_shared.store_settings import StoreSettingsIn
from woostore_shared.transitions import actions_of
from woostore_shared.unit_of_work import UnitOfWork

NEW_VERSION = "9.9.9"


@pytest.fixture
def new_chart(chart: Path, tmp_path: Path) -> Path:
    """The store chart as a later platform release would ship it: a bumped version."""
    copy = tmp_path / "store-chart-next"
    shutil.copytree(chart, copy)
    meta = yaml.safe_load((copy / "Chart.yaml").read_text())
    meta["version"] = NEW_VERSION
    (copy / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return copy


@pytest.fixture
def next_runner(
    database: Database,
    outbox: Outbox,
    new_chart: Path,
    cipher: CredentialCipher,
    backup_storage: BackupStorage,
) -> Callable[[Cluster], Runner]:
    def make(cluster: Cluster) -> Runner:
        return Runner(
            database, outbox, cluster, chart=new_chart, base_domain=BASE_DOMAIN,
            cipher=cipher, watch_interval=WATCH_INTERVAL, limits=TimeLimits(rollout=300),
            backup_storage=backup_storage,
        )  # fmt: skip

    return make


async def ready_store(
    make_runner: Callable[[Cluster], Runner], cluster: SimulatedCluster, api_outbox: Outbox
) -> Store:
    store = await create_store(api_outbox)
    await make_runner(cluster).provision(store.id, KeepAlive())
    return store


async def set_release_revision(outbox: Outbox, store: Store, revision: int) -> None:
    async with UnitOfWork.begin(outbox) as uow:
        row = await uow.session.get(Store, store.id, with_for_update=True)
        assert row is not None
        row.release_revision = revision
        uow.session.add(row)


async def request_change(outbox: Outbox, store: Store, change: Change) -> None:
    """What the API does for POST /stores/{id}/upgrade or /rollback."""
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.start_change(uow, store.id, change)


async def changes(database: Database, store: Store) -> list[tuple[str, str | None, str | None]]:
    """The store's changes, oldest first: (kind, result, reason)."""
    async with database.session() as session:
        rows = await session.exec(
            select(StoreChange)
            .where(col(StoreChange.store_id) == store.id)
            .order_by(col(StoreChange.requested_at))
        )
        return [(row.kind, row.result, row.reason) for row in rows]


def names(events: list[CloudEvent]) -> list[EventName]:
    return [e.name for e in events]


async def test_an_upgrade_moves_a_ready_store_to_the_new_chart_with_progress(
    make_runner: Callable[[Cluster], Runner],
    next_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    chart: Path,
    js: JetStreamContext,
) -> None:
    store = await ready_store(make_runner, cluster, api_outbox)
    old_version = yaml.safe_load((chart / "Chart.yaml").read_text())["version"]
    assert (await load(database, store.id)).chart_version == old_version

    await request_change(api_outbox, store, "upgrade")
    await next_runner(cluster).change(store.id, KeepAlive())

    upgraded = await load(database, store.id)
    assert upgraded.status is StoreStatus.READY
    assert (upgraded.chart_version, upgraded.release_revision) == (NEW_VERSION, 2)
    assert upgraded.change is None
    assert upgraded.failure_reason is None
    assert await changes(database, store) == [("upgrade", "changed", None)]
    events = await stream_events(js, store.id)
    after = events[names(events).index(EventName.CHANGE_REQUESTED) + 1 :]
    steps = [(e.data["step"]["index"], e.data["state"]) for e in after[:-1]]
    assert steps == [
        (i, s) for i in range(1, len(UPGRADE.steps) + 1) for s in ("started", "completed")
    ]
    assert all(e.data["status"] == "updating" and e.data["phase"] == "upgrade" for e in after[:-1])
    assert after[-1].name is EventName.CHANGED
    assert after[-1].data == {
        "status": "ready", "change": "upgrade", "chart_version": NEW_VERSION, "revision": 2,
        "actions": ["delete", "upgrade", "rollback", "settings", "backup", "restore",
                    "credentials"],
    }  # fmt: skip
    history = await cluster.release_history(store.namespace, RELEASE_NAME)
    assert [(r.revision, r.chart_version, r.status) for r in history] == [
        (1, old_version, "superseded"),
        (2, NEW_VERSION, "deployed"),
    ]


async def test_rolling_back_returns_to_the_previous_chart_and_twice_returns_again(
    make_runner: Callable[[Cluster], Runner],
    next_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    chart: Path,
    js: JetStreamContext,
) -> None:
    store = await ready_store(make_runner, cluster, api_outbox)
    old_version = (await load(database, store.id)).chart_version
    await request_change(api_outbox, store, "upgrade")
    runner = next_runner(cluster)
    await runner.change(store.id, KeepAlive())

    await request_change(api_outbox, store, "rollback")
    await runner.change(store.id, KeepAlive())
    rolled_back = await load(database, store.id)
    await request_change(api_outbox, store, "rollback")
    await runner.change(store.id, KeepAlive())
    again = await load(database, store.id)

    assert (rolled_back.status, rolled_back.chart_version) == (StoreStatus.READY, old_version)
    assert rolled_back.release_revision == 3
    assert (again.chart_version, again.release_revision) == (NEW_VERSION, 4)
    events = await stream_events(js, store.id)
    changed = [e.data for e in events if e.name is EventName.CHANGED]
    assert [(d["change"], d["chart_version"]) for d in changed] == [
        ("upgrade", NEW_VERSION), ("rollback", old_version), ("rollback", NEW_VERSION),
    ]  # fmt: skip
    rollback_steps = {e.data["step"]["name"] for e in events if e.data.get("phase") == "rollback"}
    assert rollback_steps == {step.name for step in ROLLBACK.steps}


async def test_rolling_back_after_an_upgrade_that_failed_returns_to_the_release_before(
    make_runner: Callable[[Cluster], Runner],
    next_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
) -> None:
    """Upgraded once (revision 2), then an upgrade that failed: helm rolled it back by
    itself, so revision 3 failed and 4 deploys 2 again. A rollback must return to 1. It once
    chose 2, which had just failed; then 2 again, which the store already ran: a rollback
    that changed nothing and said it had."""
    store = await ready_store(make_runner, cluster, api_outbox)
    old_version = (await load(database, store.id)).chart_version
    await request_change(api_outbox, store, "upgrade")
    await next_runner(cluster).change(store.id, KeepAlive())
    broken = faulty_cluster(cluster_dir, helm_binary, install_release="error")
    await request_change(api_outbox, store, "upgrade")
    await next_runner(broken).change(store.id, KeepAlive())
    history = await cluster.release_history(store.namespace, RELEASE_NAME)
    assert [(r.revision, r.status, r.rolled_back_to) for r in history] == [
        (1, "superseded", None), (2, "superseded", None), (3, "failed", None),
        (4, "deployed", 2),
    ]  # fmt: skip
    assert "rollback" in actions_of(await load(database, store.id))

    await request_change(api_outbox, store, "rollback")
    await next_runner(cluster).change(store.id, KeepAlive())

    after = await load(database, store.id)
    assert (after.status, after.chart_version) == (StoreStatus.READY, old_version)
    [*_, returned] = await cluster.release_history(store.namespace, RELEASE_NAME)
    assert (returned.revision, returned.chart_version, returned.rolled_back_to) == (
        5,
        old_version,
        1,
    )
    assert [(kind, result) for kind, result, _ in await changes(database, store)] == [
        ("upgrade", "changed"), ("upgrade", "failed"), ("rollback", "changed"),
    ]  # fmt: skip


async def test_after_a_first_upgrade_that_failed_there_is_nothing_to_roll_back_to(
    make_runner: Callable[[Cluster], Runner],
    next_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
) -> None:
    """Revision 2 failed and 3 deploys 1 again: 1 is what the store runs. Rolling back to it
    would change nothing, and the failed 2 must never be deployed."""
    store = await ready_store(make_runner, cluster, api_outbox)
    broken = faulty_cluster(cluster_dir, helm_binary, install_release="error")
    await request_change(api_outbox, store, "upgrade")
    await next_runner(broken).change(store.id, KeepAlive())
    assert "rollback" not in actions_of(await load(database, store.id))
    # Asked for all the same, as a store recording a later revision would be.
    await set_release_revision(api_outbox, store, 3)

    await request_change(api_outbox, store, "rollback")
    await next_runner(cluster).change(store.id, KeepAlive())

    reason = "the store's release has no earlier revision to return to"
    assert (await changes(database, store))[-1] == ("rollback", "failed", reason)
    history = await cluster.release_history(store.namespace, RELEASE_NAME)
    assert [(r.revision, r.status) for r in history] == [
        (1, "superseded"), (2, "failed"), (3, "deployed"),
    ]  # fmt: skip


def backups_ended(trigger: str, result: str) -> float:
    labels = {"trigger": trigger, "result": result}
    return REGISTRY.get_sample_value("woostore_backups_ended_total", labels) or 0.0


def not_made() -> float:
    return backups_ended("before_rollback", "not_made")


async def test_a_rollback_with_nothing_to_return_to_fails_and_leaves_the_store_ready(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
) -> None:
    store = await ready_store(make_runner, cluster, api_outbox)
    backups_before = backups_ended("before_rollback", "failed"), not_made()
    # The API refuses a rollback of a store it knows at its first revision. Here the store
    # says 2, while its release's history holds the one revision (helm keeps a few only).
    await set_release_revision(api_outbox, store, 2)

    await request_change(api_outbox, store, "rollback")
    await make_runner(cluster).change(store.id, KeepAlive())

    after = await load(database, store.id)
    assert after.status is StoreStatus.READY
    assert after.release_revision == 2
    # Its backup was never tried: no sign of the storage failing (WooStoreBackupsFailing).
    assert (backups_ended("before_rollback", "failed"), not_made()) == (
        backups_before[0],
        backups_before[1] + 1,
    )
    reason = "the store's release has no earlier revision to return to"
    # The outcome is the change's: the store itself has not failed.
    assert await changes(database, store) == [("rollback", "failed", reason)]
    assert after.failure_reason is None
    last = (await stream_events(js, store.id))[-1]
    assert last.name is EventName.CHANGE_FAILED
    assert last.data == {
        "status": "ready", "change": "rollback", "reason": reason,
        "actions": ["delete", "upgrade", "rollback", "settings", "backup", "credentials"],
    }  # fmt: skip
    assert await cluster.namespace_exists(store.namespace)  # never cleaned up: it is live


async def test_an_upgrade_that_fails_verification_reports_why_and_the_store_stays(
    make_runner: Callable[[Cluster], Runner],
    next_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
) -> None:
    store = await ready_store(make_runner, cluster, api_outbox)
    broken = SimulatedCluster(
        cluster_dir, helm_binary=helm_binary, time_scale=0, faults={"wait_for_rollout": "error"}
    )
    await request_change(api_outbox, store, "upgrade")

    await next_runner(broken).change(store.id, KeepAlive())

    after = await load(database, store.id)
    assert after.status is StoreStatus.READY
    [(kind, result, reason)] = await changes(database, store)
    assert (kind, result) == ("upgrade", "failed")
    assert reason is not None
    assert "wait_for_rollout failed" in reason
    assert await cluster.namespace_exists(store.namespace)


async def test_an_upgrade_backs_the_store_up_first_and_fails_untouched_if_it_cannot(
    make_runner: Callable[[Cluster], Runner],
    next_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
    backup_storage: BackupStorage,
) -> None:
    store = await ready_store(make_runner, cluster, api_outbox)
    no_dump = SimulatedCluster(
        cluster_dir, helm_binary=helm_binary, time_scale=0, faults={"dump_database": "error"}
    )
    ended_before = (
        backups_ended("before_upgrade", "failed"),
        backups_ended("before_upgrade", "not_made"),
    )
    await request_change(api_outbox, store, "upgrade")
    await next_runner(no_dump).change(store.id, KeepAlive())

    # Tried and refused: a sign of the storage failing (WooStoreBackupsFailing), not "not made".
    assert (
        backups_ended("before_upgrade", "failed"),
        backups_ended("before_upgrade", "not_made"),
    ) == (ended_before[0] + 1, ended_before[1])

    # The backup could not be made: the release was never touched.
    after = await load(database, store.id)
    assert (after.status, after.chart_version, after.release_revision) == (
        StoreStatus.READY, store_chart_version(), 1,
    )  # fmt: skip
    [(kind, result, reason)] = await changes(database, store)
    assert (kind, result) == ("upgrade", "failed")
    assert reason is not None
    assert "dump_database failed" in reason

    await request_change(api_outbox, store, "upgrade")
    await next_runner(cluster).change(store.id, KeepAlive())

    assert (await load(database, store.id)).chart_version == NEW_VERSION
    async with database.session() as session:
        rows = await session.exec(
            select(StoreBackup)
            .where(col(StoreBackup.store_id) == store.id)
            .order_by(col(StoreBackup.requested_at))
        )
        backups = [(b.trigger, b.status, b.chart_version, b.reason) for b in rows]
    assert backups == [
        (BackupTrigger.BEFORE_UPGRADE, BackupStatus.FAILED, None, reason),  # why, as it failed
        (BackupTrigger.BEFORE_UPGRADE, BackupStatus.COMPLETE, store_chart_version(), None),
    ]
    [manifest] = await backup_storage.of(store.id).manifests()
    assert manifest.chart_version == store_chart_version()  # the store as it was before


def store_chart_version() -> str:
    chart = Path(__file__).resolve().parents[2] / "helm" / "store" / "Chart.yaml"
    return str(yaml.safe_load(chart.read_text())["version"])


async def test_a_change_of_a_store_not_updating_does_nothing(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
) -> None:
    store = await ready_store(make_runner, cluster, api_outbox)
    before = await cluster.release_history(store.namespace, RELEASE_NAME)

    await make_runner(cluster).change(store.id, KeepAlive())  # a late or duplicate delivery

    assert await cluster.release_history(store.namespace, RELEASE_NAME) == before
    assert (await load(database, store.id)).status is StoreStatus.READY


# --- settings --------------------------------------------------------------------------------


async def request_settings(outbox: Outbox, store: Store, **chosen: str) -> None:
    """What the API does for POST /stores/{id}/settings."""
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.start_change(
            uow, store.id, "settings", StoreSettingsIn.model_validate(chosen)
        )


def shop_settings(cluster: SimulatedCluster, store: Store) -> tuple[str, ...]:
    """What WordPress and WooCommerce hold of a store's settings: currency, country, admin
    email (the site's and the admin user's), language."""
    wp = cluster.wordpress_state(store.namespace)
    options = wp["options"]
    return (
        options["woocommerce_currency"], options["woocommerce_default_country"],
        options["admin_email"], wp.get("admin_user_email", ""), wp.get("language", "en_US"),
    )  # fmt: skip


async def test_a_settings_change_sets_them_in_the_shop_backed_up_first(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
) -> None:
    """The store is backed up, given the new settings in WooCommerce and WordPress, and
    verified with them; the store keeps them, and the change's end announces them. Back to
    WordPress's own language, the language is switched, not installed."""
    store = await ready_store(make_runner, cluster, api_outbox)

    await request_settings(
        api_outbox, store, currency="EUR", country="DE", language="de_DE",
        admin_email="owner@example.com",
    )  # fmt: skip
    await make_runner(cluster).change(store.id, KeepAlive())

    changed = await load(database, store.id)
    assert changed.status is StoreStatus.READY
    assert changed.settings == {
        "currency": "EUR",
        "country": "DE",
        "state": None,
        "language": "de_DE",
        "admin_email": "owner@example.com",
        "sample_products": True,
    }  # fmt: skip  (a country named without its state drops the old country's)
    assert shop_settings(cluster, store) == (
        "EUR", "DE", "owner@example.com", "owner@example.com", "de_DE",
    )  # fmt: skip
    assert await changes(database, store) == [("settings", "changed", None)]
    last = (await stream_events(js, store.id))[-1]
    told = {name: value for name, value in changed.settings.items() if name != "admin_email"}
    assert (last.name, last.data["settings"]) == (EventName.CHANGED, told)  # no email kept
    async with database.session() as session:
        [backup] = await session.exec(
            select(StoreBackup).where(col(StoreBackup.store_id) == store.id)
        )
    assert (backup.trigger, backup.status) == (BackupTrigger.BEFORE_SETTINGS, BackupStatus.COMPLETE)
    assert backup.settings == DEFAULT_SETTINGS.model_dump(mode="json")  # as it was backed up

    await request_settings(api_outbox, store, language="en_US")
    await make_runner(cluster).change(store.id, KeepAlive())

    assert shop_settings(cluster, store)[-1] == "en_US"
    assert (await load(database, store.id)).settings["language"] == "en_US"

    # Restored to the backup taken before the first change: the shop's options are what they
    # were then, and so are the store's settings (a diff review: they stayed the new ones).
    from tests.provisioner.test_backups import request_restore  # it imports this module

    await request_restore(api_outbox, store, backup.id)
    await make_runner(cluster).change(store.id, KeepAlive())

    restored = await load(database, store.id)
    assert (restored.status, restored.settings) == (StoreStatus.READY, backup.settings)
    assert shop_settings(cluster, store)[:2] == ("INR", "IN:KA")
    last = (await stream_events(js, store.id))[-1]
    assert (last.name, last.data["settings"]["currency"]) == (EventName.RESTORED, "INR")


async def test_a_settings_change_sets_those_asked_for_alone_even_as_they_are_recorded(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
) -> None:
    """The owner changed the currency in WooCommerce, then asked for another language: the
    change set every setting, and the currency went back to the store's recorded one (a
    user's review). Those not asked for are left as the shop has them; one asked for as it
    is recorded is set again; a change recorded before they were kept sets them all."""
    store = await ready_store(make_runner, cluster, api_outbox)
    owners = ["option", "update", "woocommerce_currency", "GBP"]  # in WooCommerce's admin
    assert (await cluster.wp(store.namespace, owners)).ok

    await request_settings(api_outbox, store, language="de_DE")
    await make_runner(cluster).change(store.id, KeepAlive())
    currency, country, *_, language = shop_settings(cluster, store)
    assert (currency, country, language) == ("GBP", "IN:KA", "de_DE")

    await request_settings(api_outbox, store, currency="INR")  # the currency recorded
    await make_runner(cluster).change(store.id, KeepAlive())
    assert shop_settings(cluster, store)[:2] == ("INR", "IN:KA")

    assert (await cluster.wp(store.namespace, owners)).ok
    await request_settings(api_outbox, store, country="IN", state="MH")
    async with database.session() as session:  # as an older release recorded it
        await session.exec(
            update(StoreChange)
            .where(col(StoreChange.store_id) == store.id)
            .values(settings_asked=None)
        )
        await session.commit()
    await make_runner(cluster).change(store.id, KeepAlive())
    assert shop_settings(cluster, store)[:2] == ("INR", "IN:MH")


async def test_a_settings_change_failing_at_its_test_order_puts_the_settings_back(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
) -> None:
    """The new settings were set, then the test order failed: the change failed and the
    store's record went back to the old settings, while the shop kept the new ones (the
    record and the shop disagreed until the next change). They are put back in the shop."""
    store = await ready_store(make_runner, cluster, api_outbox)
    before, shop_before = (await load(database, store.id)).settings, shop_settings(cluster, store)

    await request_settings(
        api_outbox, store, currency="EUR", country="DE", language="de_DE",
        admin_email="owner@example.com",
    )  # fmt: skip
    faulty = faulty_cluster(cluster_dir, helm_binary, check_storefront="error")
    await make_runner(faulty).change(store.id, KeepAlive())

    after = await load(database, store.id)
    assert (after.status, after.settings) == (StoreStatus.READY, before)
    currency, country, site_email, user_email, language = shop_settings(cluster, store)
    assert (currency, country, site_email, language) == tuple(shop_before[i] for i in (0, 1, 2, 4))
    assert user_email == site_email  # as WordPress's install set both
    [(kind, result, reason)] = await changes(database, store)
    assert (kind, result) == ("settings", "failed")
    assert reason == (
        "check_storefront failed: simulated fault; the settings it replaced were put back"
    )


async def test_a_settings_change_whose_email_is_refused_leaves_the_store_as_it_was(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
) -> None:
    """WordPress refuses the admin's new email (another user has it): the change fails with
    the reason, and the store is ready with the settings it had, the shop's too, since what
    is likeliest refused goes first. Asked for again, they are set."""
    store = await ready_store(make_runner, cluster, api_outbox)
    before, shop_before = (await load(database, store.id)).settings, shop_settings(cluster, store)

    await request_settings(api_outbox, store, currency="EUR", admin_email="owner@example.com")
    assert (await load(database, store.id)).settings["currency"] == "EUR"  # while it runs
    faulty = faulty_cluster(cluster_dir, helm_binary, **{"wp user update": "error"})
    await make_runner(faulty).change(store.id, KeepAlive())

    after = await load(database, store.id)
    assert (after.status, after.settings) == (StoreStatus.READY, before)
    assert shop_settings(cluster, store) == shop_before
    [(kind, result, reason)] = await changes(database, store)
    assert (kind, result) == ("settings", "failed")
    assert reason is not None
    assert "wp user update" in reason
    # The fault refuses the email put back too: the shop may hold some of the new settings,
    # for all the change knows, and it says so.
    assert "; undoing 'Applying the new settings' failed too (" in reason, reason
    assert reason.endswith("): what it changed may be left"), reason

    await request_settings(api_outbox, store, currency="EUR", admin_email="owner@example.com")
    await make_runner(cluster).change(store.id, KeepAlive())

    assert shop_settings(cluster, store)[:4] == ("EUR", "IN:KA", *["owner@example.com"] * 2)
