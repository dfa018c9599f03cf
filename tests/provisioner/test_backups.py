"""Backing a ready store up on the simulated cluster, into a real restic repository: what the
store holds (its WordPress state, its orders, its upload files) is stored and read back whole,
the store ends ready either way, and a backup that could not be made is never listed."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from nats.js import JetStreamContext
from prometheus_client import REGISTRY
from sqlmodel import col, select

from tests.provisioner.test_changes import (
    backups_ended,
    changes,
    names,
    ready_store,
    request_change,
)
from tests.provisioner.test_runner import (
    QUICK_WATCH_INTERVAL,
    KeepAlive,
    faulty_cluster,
    journal,
    load,
    stream_events,
    takes_the_lease,
)
from tests.support import DEFAULT_SETTINGS, alter_stored_data, create_copy
from woostore_cluster import Cluster
from woostore_cluster.simulated import DUMP_FORMAT, SimulatedCluster
from woostore_provisioner.leases import Leases
from woostore_provisioner.recipe import (
    BACKUP,
    CLONE,
    CREDENTIALS_SECRET,
    DATABASE_PART,
    RESTORE,
    UPGRADE,
    UPLOADS_PART,
    Recipe,
)
from woostore_provisioner.runner import CUT_SHORT, Runner
from woostore_shared import lifecycle
from woostore_shared.backups import (
    BackupCorrupt,
    BackupStorage,
    Manifest,
    StoreBackups,
    _Done,
    _failed,
)
from woostore_shared.db import Database
from woostore_shared.events import EventName, StepInfo
from woostore_shared.lifecycle import BackupInUse, BackupNotRestorable, CopyCannotBeMadeAgain
from woostore_shared.models import (
    BackupDeletion,
    BackupStatus,
    BackupTrigger,
    Store,
    StoreBackup,
    StoreChange,
    StoreStatus,
)
from woostore_shared.outbox import Outbox
from woostore_shared.settings import Settings
from woostore_shared.unit_of_work import UnitOfWork

PHOTO = bytes(range(256)) * 4096  # 1 MiB that is not text
# restic 0.14's words where another run holds the repository's lock.
LOCKED = (
    "unable to create lock in backend: repository is already locked exclusively by PID 58 on "
    "provisioner-7f9 by root (UID 0, GID 0)\nthe `unlock` command can be used to remove stale "
    "locks"
)


async def request_backup(outbox: Outbox, store: Store) -> uuid.UUID:
    """What the API does for POST /stores/{id}/backups."""
    async with UnitOfWork.begin(outbox) as uow:
        backup = await lifecycle.start_backup(uow, store.id, BackupTrigger.REQUESTED)
    return backup.id


async def backed_up_store(
    make_runner: Callable[[Cluster], Runner], cluster: SimulatedCluster, outbox: Outbox
) -> tuple[Store, Runner, uuid.UUID]:
    """A ready store, a runner, and the store's backup that runner completed."""
    store = await ready_store(make_runner, cluster, outbox)
    runner = make_runner(cluster)
    backup_id = await request_backup(outbox, store)
    await runner.change(store.id, KeepAlive())
    return store, runner, backup_id


def verify_failing_once(monkeypatch: pytest.MonkeyPatch, error: Exception) -> list[bool]:
    """``StoreBackups.verify`` raising ``error`` at its first read and reading whole after;
    whether each read used restic's cache, as they are made."""
    verify = StoreBackups.verify
    reads: list[bool] = []

    async def failing_once(self: StoreBackups, manifest: Manifest) -> None:
        reads.append(self._cached)
        if len(reads) == 1:
            raise error
        await verify(self, manifest)

    monkeypatch.setattr(StoreBackups, "verify", failing_once)
    return reads


async def backup_row(database: Database, backup_id: uuid.UUID) -> StoreBackup:
    async with database.session() as session:
        found = await session.get(StoreBackup, backup_id)
    assert found is not None
    return found


async def backups_of(database: Database, store: Store) -> list[StoreBackup]:
    async with database.session() as session:
        found = await session.exec(select(StoreBackup).where(col(StoreBackup.store_id) == store.id))
        return list(found)


async def read_part(storage: BackupStorage, store: Store, backup_id: uuid.UUID, name: str) -> bytes:
    backups = storage.of(store.id)
    manifest = await backups.manifest(backup_id)
    assert manifest is not None
    [part] = [p for p in manifest.parts if p.name == name]
    return b"".join([chunk async for chunk in backups.read_part(part)])


async def test_a_backup_holds_the_stores_database_and_uploads_and_ends_ready(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    backup_storage: BackupStorage,
    js: JetStreamContext,
) -> None:
    store = await ready_store(make_runner, cluster, api_outbox)
    uploads = cluster.uploads(store.namespace)
    (uploads / "2026" / "12").mkdir(parents=True)
    (uploads / "2026" / "12" / "mug.jpg").write_bytes(PHOTO)
    (uploads / "woocommerce_uploads").mkdir()
    (uploads / "woocommerce_uploads" / ".htaccess").write_text("deny from all\n")

    backup_id = await request_backup(api_outbox, store)
    assert (await load(database, store.id)).status is StoreStatus.BACKING_UP
    await make_runner(cluster).change(store.id, KeepAlive())

    assert (await load(database, store.id)).status is StoreStatus.READY
    row = await backup_row(database, backup_id)
    assert (row.status, row.reason) == (BackupStatus.COMPLETE, None)
    assert (row.wordpress_version, row.woocommerce_version) == ("7.1.2", "11.2.0")
    assert row.chart_version == (await load(database, store.id)).chart_version

    dump = json.loads(await read_part(backup_storage, store, backup_id, DATABASE_PART))
    assert dump["format"] == DUMP_FORMAT
    assert dump["wordpress"]["title"] == store.name
    assert [p["name"] for p in dump["wordpress"]["products"]] == [
        "Organic Coffee Beans", "Ceramic Mug", "Cotton Tote Bag",
    ]  # fmt: skip
    assert dump["orders_placed"] == cluster.orders_placed(store.namespace) == 1
    archive = await read_part(backup_storage, store, backup_id, UPLOADS_PART)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        photo = tar.extractfile("./2026/12/mug.jpg")
        assert photo is not None
        assert hashlib.sha256(photo.read()).digest() == hashlib.sha256(PHOTO).digest()
        assert "./woocommerce_uploads/.htaccess" in tar.getnames()
    manifest = await backup_storage.of(store.id).manifest(backup_id)
    assert manifest is not None
    assert (
        row.size
        == manifest.size
        == len(archive) + sum(p.size for p in manifest.parts if p.name == DATABASE_PART)
    )

    events = await stream_events(js, store.id)
    after = events[names(events).index(EventName.BACKUP_STARTED) :]
    assert after[0].data == {
        "status": "backing_up", "backup_id": str(backup_id), "trigger": "requested",
        "actions": ["delete", "credentials"],  # it serves its shop: the login stays readable
    }  # fmt: skip
    progress = [(e.data["step"]["index"], e.data["state"]) for e in after[1:-1]]
    assert progress == [
        (i, s) for i in range(1, len(BACKUP.steps) + 1) for s in ("started", "completed")
    ]
    assert all(e.data["phase"] == "backup" for e in after[1:-1])
    assert after[-1].name is EventName.BACKUP_COMPLETED
    assert after[-1].data == {
        "status": "ready", "backup_id": str(backup_id), "size": row.size,
        "actions": ["delete", "upgrade", "settings", "backup", "restore", "credentials"],
    }  # fmt: skip


async def test_a_backup_that_cannot_dump_the_database_fails_and_is_never_listed(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
    backup_storage: BackupStorage,
    js: JetStreamContext,
) -> None:
    store = await ready_store(make_runner, cluster, api_outbox)
    backup_id = await request_backup(api_outbox, store)
    failed_before = backups_ended("requested", "failed")

    broken = faulty_cluster(cluster_dir, helm_binary, dump_database="error")
    await make_runner(broken).change(store.id, KeepAlive())

    assert (await load(database, store.id)).status is StoreStatus.READY
    row = await backup_row(database, backup_id)
    assert row.status is BackupStatus.FAILED
    assert backups_ended("requested", "failed") == failed_before + 1  # WooStoreBackupsFailing
    assert row.reason is not None
    assert "dump_database failed" in row.reason
    assert await backup_storage.of(store.id).manifests() == []
    [event] = [e for e in await stream_events(js, store.id) if e.name is EventName.BACKUP_FAILED]
    assert event.data == {
        "status": "ready", "backup_id": str(backup_id), "reason": row.reason,
        "actions": ["delete", "upgrade", "settings", "backup", "credentials"],  # nothing to restore
    }  # fmt: skip


async def test_a_backup_cut_off_after_its_parts_resumes_and_is_recorded_once(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
    backup_storage: BackupStorage,
) -> None:
    """The manifest step fails once (its WP-CLI run times out): the next delivery resumes
    there, reads the stored parts back and records the backup, once."""
    store = await ready_store(make_runner, cluster, api_outbox)
    backup_id = await request_backup(api_outbox, store)

    flaky = faulty_cluster(cluster_dir, helm_binary, wp="transient")
    runner = make_runner(flaky)
    await runner.change(store.id, KeepAlive())  # retried in place: the fault fires once

    assert await journal(database, store.id, "backup") == [s.name for s in BACKUP.steps]
    assert (await backup_row(database, backup_id)).status is BackupStatus.COMPLETE
    manifests = await backup_storage.of(store.id).manifests()
    assert [m.backup_id for m in manifests] == [backup_id]


# -- restoring -------------------------------------------------------------------------------


async def request_restore(outbox: Outbox, store: Store, backup_id: uuid.UUID) -> uuid.UUID:
    """What the API does for POST /stores/{id}/restore; the safety backup's id."""
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.start_restore(uow, store.id, backup_id)
        safety = await lifecycle.backup_under_way(uow.session, store.id)
    return safety.id


async def add_customer(cluster: SimulatedCluster, store: Store, email: str) -> int:
    made = await cluster.wp(store.namespace, ["wc", "customer", "create", f"--email={email}"])
    assert made.ok, made.stdout
    return int(made.stdout.removeprefix("Success: Created customer ").rstrip("."))


def customers(cluster: SimulatedCluster, store: Store) -> list[str]:
    return [c["email"] for c in cluster.wordpress_state(store.namespace).get("customers", [])]


def orders(cluster: SimulatedCluster, store: Store) -> list[int]:
    return [order["id"] for order in cluster.wordpress_state(store.namespace).get("orders", [])]


async def test_a_restore_brings_back_exactly_the_backed_up_orders_customers_and_uploads(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    backup_storage: BackupStorage,
    js: JetStreamContext,
) -> None:
    store = await ready_store(make_runner, cluster, api_outbox)
    runner = make_runner(cluster)
    asha = await add_customer(cluster, store, "asha@example.test")
    first = cluster.place_order(store.namespace, customer_id=asha)
    second = cluster.place_order(store.namespace)  # a guest's
    uploads = cluster.uploads(store.namespace)
    (uploads / "mug.jpg").write_bytes(PHOTO)
    backup_id = await request_backup(api_outbox, store)
    await runner.change(store.id, KeepAlive())
    kept = cluster.wordpress_state(store.namespace)

    # The owner's store moves on: an order and its customer deleted, another customer and
    # order taken, a product and a file added, a file changed.
    wp = ["wc", "shop_order", "delete", str(first), "--force=true", "--user=admin"]
    assert (await cluster.wp(store.namespace, wp)).ok
    gone = ["wc", "customer", "delete", str(asha), "--force=true", "--user=admin"]
    assert (await cluster.wp(store.namespace, gone)).ok
    ravi = await add_customer(cluster, store, "ravi@example.test")
    later = cluster.place_order(store.namespace, customer_id=ravi)
    product = ["wc", "product", "create", "--name=Kettle", "--regular_price=30.00"]
    assert (await cluster.wp(store.namespace, product)).ok
    (uploads / "kettle.jpg").write_bytes(b"new")
    (uploads / "mug.jpg").write_bytes(b"edited")
    assert orders(cluster, store) == [second, later]
    assert customers(cluster, store) == ["ravi@example.test"]

    safety_id = await request_restore(api_outbox, store, backup_id)
    assert (await load(database, store.id)).status is StoreStatus.RESTORING
    await runner.change(store.id, KeepAlive())

    restored = await load(database, store.id)
    assert (restored.status, restored.change) == (StoreStatus.READY, None)
    assert orders(cluster, store) == [first, second]
    assert customers(cluster, store) == ["asha@example.test"]
    by_id = {o["id"]: o for o in cluster.wordpress_state(store.namespace)["orders"]}
    assert (by_id[first]["customer_id"], by_id[second]["customer_id"]) == (asha, 0)
    products = [p["name"] for p in cluster.wordpress_state(store.namespace)["products"]]
    assert products == [p["name"] for p in kept["products"]]
    assert sorted(p.name for p in uploads.iterdir()) == ["mug.jpg"]
    assert (uploads / "mug.jpg").read_bytes() == PHOTO
    # The safety backup holds the store as it was just before: the later order, the Kettle.
    safety = await backup_row(database, safety_id)
    assert (safety.trigger, safety.status) == (BackupTrigger.BEFORE_RESTORE, BackupStatus.COMPLETE)
    before = json.loads(await read_part(backup_storage, store, safety_id, DATABASE_PART))
    assert [o["id"] for o in before["wordpress"]["orders"]] == [second, later]
    assert [c["email"] for c in before["wordpress"]["customers"]] == ["ravi@example.test"]
    assert "Kettle" in [p["name"] for p in before["wordpress"]["products"]]

    events = await stream_events(js, store.id)
    after = events[names(events).index(EventName.RESTORE_REQUESTED) :]
    assert after[0].data == {
        "status": "restoring", "backup_id": str(backup_id), "safety_backup_id": str(safety_id),
        "actions": ["delete", "credentials"],
    }  # fmt: skip
    progress = [(e.data["step"]["index"], e.data["state"]) for e in after[1:-1]]
    assert progress == [
        (i, s) for i in range(1, len(RESTORE.steps) + 1) for s in ("started", "completed")
    ]
    assert after[-1].name is EventName.RESTORED
    assert after[-1].data == {
        "status": "ready",
        "backup_id": str(backup_id),
        "actions": ["delete", "upgrade", "settings", "backup", "restore", "credentials"],
        # As the backup recorded them (here: as they were), without the admin's email.
        "settings": {
            name: value for name, value in DEFAULT_SETTINGS.model_dump(mode="json").items()
            if name != "admin_email"
        },
    }  # fmt: skip


async def test_a_backup_that_does_not_match_its_manifest_is_refused_and_changes_nothing(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    backup_storage: BackupStorage,
) -> None:
    """Its manifest says one thing and its parts another (bit rot, tampering): the check
    finds it before anything is changed or even backed up."""
    store, runner, backup_id = await backed_up_store(make_runner, cluster, api_outbox)
    backups = backup_storage.of(store.id)
    manifest = await backups.manifest(backup_id)
    assert manifest is not None
    # A backup whose manifest names the parts as they are stored, but other checksums.
    forged_id = uuid.uuid4()
    altered = [p.model_copy(update={"sha256": "0" * 64}) for p in manifest.parts]
    await backups.store_manifest(
        manifest.model_copy(update={"backup_id": forged_id, "parts": altered})
    )
    async with database.session() as session:
        session.add(
            StoreBackup(
                id=forged_id, store_id=store.id, trigger=BackupTrigger.REQUESTED,
                status=BackupStatus.COMPLETE,
            )
        )  # fmt: skip
        await session.commit()
    cluster.place_order(store.namespace)
    before, repairs = cluster.wordpress_state(store.namespace), repairs_seen("whole")

    safety_id = await request_restore(api_outbox, store, forged_id)
    await runner.change(store.id, KeepAlive())

    assert cluster.wordpress_state(store.namespace) == before
    store_now = await load(database, store.id)
    assert store_now.status is StoreStatus.READY
    async with database.session() as session:
        change = await session.exec(
            select(StoreChange).where(col(StoreChange.store_id) == store.id)
        )
        [restore] = list(change)
    assert (restore.kind, restore.result) == ("restore", "failed")
    assert restore.reason is not None
    assert "does not match its manifest" in restore.reason
    safety = await backup_row(database, safety_id)
    # Never made, so never listed: each refused restore listed one more failed backup.
    assert safety.status is BackupStatus.DELETED
    assert safety.reason == "the restore ended before the store was backed up"
    forged = await backup_row(database, forged_id)
    assert (forged.status, forged.reason) == (
        BackupStatus.DAMAGED,
        restore.reason.split(": ", 1)[1],
    )
    # Its repository was read whole for damaged data, and held none: none was removed.
    assert repairs_seen("whole") == repairs + 1
    assert (await backup_row(database, backup_id)).status is BackupStatus.COMPLETE


def damaged_seen() -> float:
    return REGISTRY.get_sample_value("woostore_backups_damaged_total") or 0.0


def repairs_seen(result: str) -> float:
    found = REGISTRY.get_sample_value("woostore_backup_repairs_total", {"result": result})
    return found or 0.0


async def test_a_backup_whose_data_was_altered_is_marked_damaged_and_never_offered_again(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    settings: Settings,
    js: JetStreamContext,
) -> None:
    """A restore finds restic's data altered: nothing changes, the backup is damaged for
    good (a user's review saw every attempt fail again, each adding a failed safety backup),
    and the store's only backup gone, restore is no longer offered."""
    store, runner, backup_id = await backed_up_store(make_runner, cluster, api_outbox)
    assert (await load(database, store.id)).complete_backups == 1
    alter_stored_data(settings.data_dir, store.id)
    cluster.place_order(store.namespace)
    before, seen = cluster.wordpress_state(store.namespace), damaged_seen()

    await request_restore(api_outbox, store, backup_id)
    await runner.change(store.id, KeepAlive())

    assert cluster.wordpress_state(store.namespace) == before
    store_now = await load(database, store.id)
    assert (store_now.status, store_now.complete_backups) == (StoreStatus.READY, 0)
    damaged = await backup_row(database, backup_id)
    assert damaged.status is BackupStatus.DAMAGED
    assert damaged.reason is not None
    assert "ciphertext verification failed" in damaged.reason
    assert str(settings.data_dir) not in damaged.reason  # where the platform keeps it
    assert damaged_seen() == seen + 1
    events = await stream_events(js, store.id)
    assert names(events)[-2:] == [EventName.BACKUP_DAMAGED, EventName.RESTORE_FAILED]
    assert events[-2].data == {
        "status": "restoring", "backup_id": str(backup_id), "reason": damaged.reason,
        "actions": ["delete", "credentials"],
    }  # fmt: skip
    assert events[-1].data["reason"] == (
        f"the backup is damaged: {damaged.reason}; the damaged data is removed from the store's "
        "repository, and its next backup stores that data again"
    )
    listed = [b for b in await backups_of(database, store) if b.status is not BackupStatus.DELETED]
    assert [b.id for b in listed] == [backup_id]  # no safety backup, never made, beside it
    assert "restore" not in events[-1].data["actions"]
    with pytest.raises(BackupNotRestorable, match="is damaged"):
        await request_restore(api_outbox, store, backup_id)
    # Its owner deletes it, and its data goes as any deleted backup's does.
    async with UnitOfWork.begin(api_outbox) as uow:
        await lifecycle.delete_backup(uow, store.id, backup_id, BackupDeletion.REQUESTED)
    await runner.change(store.id, KeepAlive())
    assert (await backup_row(database, backup_id)).status is BackupStatus.DELETED


async def test_a_backup_that_reuses_damaged_data_repairs_the_repository_and_completes(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    settings: Settings,
    js: JetStreamContext,
) -> None:
    """restic keeps each piece of data once and reuses it: once some was damaged, every new
    backup of the store failed as it was read back (and every upgrade or settings change,
    backed up first) until an operator repaired the repository by hand. The backup removes
    the damaged data, stores its parts again and completes; the older backup that held the
    data is damaged for good, and the new one restores the store."""
    store, runner, older = await backed_up_store(make_runner, cluster, api_outbox)
    alter_stored_data(settings.data_dir, store.id)
    seen, repairs = damaged_seen(), repairs_seen("removed")

    newer = await request_backup(api_outbox, store)
    await runner.change(store.id, KeepAlive())

    assert (await backup_row(database, newer)).status is BackupStatus.COMPLETE
    lost = await backup_row(database, older)
    assert lost.status is BackupStatus.DAMAGED
    assert lost.reason == (
        "data of its database.dump, uploads.tar and manifest was found damaged in the "
        "repository, and removed"
    )
    assert (damaged_seen(), repairs_seen("removed")) == (seen + 1, repairs + 1)
    events = await stream_events(js, store.id)
    assert names(events)[-2:] == [EventName.BACKUP_DAMAGED, EventName.BACKUP_COMPLETED]
    assert (await load(database, store.id)).complete_backups == 1
    kept = cluster.wordpress_state(store.namespace)
    cluster.place_order(store.namespace)
    await request_restore(api_outbox, store, newer)
    await runner.change(store.id, KeepAlive())
    assert cluster.wordpress_state(store.namespace) == kept
    assert names(await stream_events(js, store.id))[-1] is EventName.RESTORED


async def test_a_backup_reads_back_stored_data_first_and_repairs_the_damage_it_finds(
    make_runner: Callable[..., Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    settings: Settings,
    js: JetStreamContext,
) -> None:
    """Storage that alters data is found as backups are taken, not first by the restore that
    needs the data: the backup reads back a share of what is stored (here all of it), and
    repairs the repository before it stores anything, so it stores each part once."""
    storage = settings.model_copy(update={"backup_check_share": "100%"}).backup_storage()
    store = await ready_store(make_runner, cluster, api_outbox)
    runner = make_runner(cluster, storage=storage)
    older = await request_backup(api_outbox, store)
    await runner.change(store.id, KeepAlive())
    alter_stored_data(settings.data_dir, store.id)

    newer = await request_backup(api_outbox, store)
    await runner.change(store.id, KeepAlive())

    assert (await backup_row(database, newer)).status is BackupStatus.COMPLETE
    assert (await backup_row(database, older)).status is BackupStatus.DAMAGED
    snapshots = await storage.of(store.id)._snapshots(f"backup={newer}")
    assert len(snapshots) == 3  # its two parts and its manifest, each stored once
    events = await stream_events(js, store.id)
    steps = [e.data["step"]["title"] for e in events if e.name is EventName.PROGRESS]
    assert list(dict.fromkeys(steps[-10:])) == [step.title for step in BACKUP.steps]
    assert BACKUP.steps[1].title == "Checking the stored data"  # before anything is stored
    assert names(events)[-2:] == [EventName.BACKUP_DAMAGED, EventName.BACKUP_COMPLETED]


async def test_no_repair_locks_the_repository_while_a_copy_is_to_read_it(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    settings: Settings,
) -> None:
    """A repair locks the repository whole, and a copy reading it meanwhile would fail: while
    one is to be made from the store's backups, the backup fails as it did before repairs,
    and the repository is left as it is."""
    store, runner, older = await backed_up_store(make_runner, cluster, api_outbox)
    await create_copy(api_outbox, older)  # queued
    alter_stored_data(settings.data_dir, store.id)
    packs = sorted((settings.data_dir / "backups" / "stores" / str(store.id)).rglob("data/*/*"))

    newer = await request_backup(api_outbox, store)
    await runner.change(store.id, KeepAlive())

    failed = await backup_row(database, newer)
    assert failed.status is BackupStatus.FAILED
    assert failed.reason is not None
    assert "ciphertext verification failed" in failed.reason
    assert failed.reason.endswith(
        "is being made from one of its backups: the first backup once none is repairs it"
    )
    left = sorted((settings.data_dir / "backups" / "stores" / str(store.id)).rglob("data/*/*"))
    assert set(packs) <= set(left)  # none removed
    assert (await backup_row(database, older)).status is BackupStatus.COMPLETE


async def test_a_failure_to_mark_a_damaged_backup_does_not_hide_why_the_restore_failed(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The damaged backups are marked as the work ends, failed or not: where marking fails
    too (the database away for a moment), the restore still ends failed with its own
    reason, and the backup is found again as it is next read."""
    store, runner, backup_id = await backed_up_store(make_runner, cluster, api_outbox)
    alter_stored_data(settings.data_dir, store.id)

    async def database_away(*_: object) -> bool:
        raise ConnectionError("the database is away")

    monkeypatch.setattr(lifecycle, "mark_backup_damaged", database_away)
    await request_restore(api_outbox, store, backup_id)
    await runner.change(store.id, KeepAlive())

    [(_, result, reason)] = await changes(database, store)
    assert result == "failed"
    assert reason is not None
    assert reason.startswith("the backup is damaged: ")
    assert (await load(database, store.id)).status is StoreStatus.READY
    assert (await backup_row(database, backup_id)).status is BackupStatus.COMPLETE
    # Nothing of it was forgotten meanwhile (a diff review: its snapshots were, and the next
    # restore found "no manifest" and left it complete): the next restore marks it.
    monkeypatch.undo()
    await request_restore(api_outbox, store, backup_id)
    await runner.change(store.id, KeepAlive())
    assert (await backup_row(database, backup_id)).status is BackupStatus.DAMAGED


async def test_a_repository_locked_by_other_backup_work_is_waited_for_not_failed(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A repair or a prune locks the repository whole: a restore (or a copy) reading it
    meanwhile failed for good (a diff review). It is tried again, as any "not now"."""
    store, runner, backup_id = await backed_up_store(make_runner, cluster, api_outbox)
    locked = _failed("read database.dump", _Done(1, b"", LOCKED), "/r")
    reads = verify_failing_once(monkeypatch, locked)
    await request_restore(api_outbox, store, backup_id)
    await runner.change(store.id, KeepAlive())

    assert len(reads) == 2
    [(_, result, _)] = await changes(database, store)
    assert result == "changed"
    assert (await backup_row(database, backup_id)).status is BackupStatus.COMPLETE


async def test_a_backup_that_reads_back_whole_when_read_again_is_not_marked_damaged(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """restic 0.14 reads an altered pack from nowhere but where it read it: a read that
    failed for a moment (the network, a proxy) said "ciphertext verification failed" of a
    healthy backup, which was then never offered again (a diff review). Read afresh, it is
    whole: the restore fails, and the backup stays complete."""
    store, runner, backup_id = await backed_up_store(make_runner, cluster, api_outbox)
    garbled = BackupCorrupt("could not read database.dump: ciphertext verification failed")
    reads = verify_failing_once(monkeypatch, garbled)
    await request_restore(api_outbox, store, backup_id)
    await runner.change(store.id, KeepAlive())

    assert reads == [True, False]  # read again without restic's cache
    assert (await backup_row(database, backup_id)).status is BackupStatus.COMPLETE
    store_now = await load(database, store.id)
    assert (store_now.status, store_now.complete_backups) == (StoreStatus.READY, 1)
    [(_, result, reason)] = await changes(database, store)
    assert result == "failed"
    assert reason is not None
    assert "read whole again just after, so not damaged" in reason


async def test_a_copy_from_a_damaged_backup_fails_and_marks_the_backup_damaged(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    settings: Settings,
    js: JetStreamContext,
) -> None:
    source, runner, backup_id = await backed_up_store(make_runner, cluster, api_outbox)
    alter_stored_data(settings.data_dir, source.id)
    copy = await create_copy(api_outbox, backup_id)

    await runner.provision(copy.id, KeepAlive())

    failed = await load(database, copy.id)
    assert failed.status is StoreStatus.FAILED
    assert failed.failure_reason is not None
    assert failed.failure_reason.startswith("the backup is damaged: ")
    assert (await backup_row(database, backup_id)).status is BackupStatus.DAMAGED
    [event] = [e for e in await stream_events(js, source.id) if e.name is EventName.BACKUP_DAMAGED]
    assert event.data["status"] == "ready"  # the backed-up store's, as it is
    assert "restore" not in event.data["actions"]
    assert (await load(database, source.id)).complete_backups == 0
    # Cleaned up, it is not offered a retry its damaged backup would refuse (a user's review).
    await runner.remove(copy.id, KeepAlive())
    [cleaned_up] = [e for e in await stream_events(js, copy.id) if e.name is EventName.CLEANED_UP]
    assert cleaned_up.data["actions"] == ["delete"]
    with pytest.raises(CopyCannotBeMadeAgain, match="which is damaged"):
        async with UnitOfWork.begin(api_outbox) as uow:
            await lifecycle.retry(uow, copy.id)


async def test_deleting_a_store_deletes_its_backups_and_nothing_of_them_is_left(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    backup_storage: BackupStorage,
) -> None:
    store = await ready_store(make_runner, cluster, api_outbox)
    runner = make_runner(cluster)
    (cluster.uploads(store.namespace) / "mug.jpg").write_bytes(PHOTO)
    backup_id = await request_backup(api_outbox, store)
    await runner.change(store.id, KeepAlive())
    repository = Path(backup_storage.location) / "stores" / str(store.id)
    assert [f for f in (repository / "data").rglob("*") if f.is_file()]

    async with UnitOfWork.begin(api_outbox) as uow:
        await lifecycle.request_deletion(uow, store.id)
    await runner.remove(store.id, KeepAlive())

    assert (await load(database, store.id)).status is StoreStatus.DELETED
    assert await backup_storage.of(store.id).manifests() == []
    assert [f for f in (repository / "data").rglob("*") if f.is_file()] == []  # no data left
    assert (await backup_row(database, backup_id)).status is BackupStatus.DELETED


@pytest.mark.parametrize(
    ("work", "ended_as"), [("upgrade", EventName.CHANGED), ("restore", EventName.RESTORED)]
)
async def test_a_store_asked_to_be_deleted_while_its_work_runs_is_deleted_once_it_ends(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    backup_storage: BackupStorage,
    js: JetStreamContext,
    work: str,
    ended_as: EventName,
) -> None:
    """Never cut off halfway (a release mid-upgrade, a store half restored): the work runs
    to its end, announced as ever, and the deletion starts in the same transaction."""
    store = await ready_store(make_runner, cluster, api_outbox)
    runner = make_runner(cluster)
    if work == "restore":
        kept = await request_backup(api_outbox, store)
        await runner.change(store.id, KeepAlive())
        await request_restore(api_outbox, store, kept)
    else:
        await request_change(api_outbox, store, "upgrade")
    busy = (await load(database, store.id)).status

    async with UnitOfWork.begin(api_outbox) as uow:
        asked, requested = await lifecycle.request_deletion(uow, store.id)
    assert (asked.status, requested) == (busy, True)
    assert asked.delete_requested_at is not None
    async with UnitOfWork.begin(api_outbox) as uow:  # a DELETE sent again changes nothing
        again, requested = await lifecycle.request_deletion(uow, store.id)
    assert (again.delete_requested_at, requested) == (asked.delete_requested_at, False)
    await runner.change(store.id, KeepAlive())

    ended = await load(database, store.id)
    assert (ended.status, ended.delete_requested_at) == (
        StoreStatus.DELETING, asked.delete_requested_at,
    )  # fmt: skip
    assert all(b.status is BackupStatus.COMPLETE for b in await backups_of(database, store))
    events = await stream_events(js, store.id)
    queued = names(events).index(EventName.DELETE_QUEUED)
    assert events[queued].data == {"status": busy.value, "actions": ["credentials"]}
    assert names(events)[-2:] == [ended_as, EventName.DELETE_REQUESTED]
    assert events[-2].data["actions"] == []  # the store is deleting as the work ends
    await runner.remove(store.id, KeepAlive())
    deleted = await load(database, store.id)
    # Its addresses went with its ingress: a deleted store links nowhere.
    assert (deleted.status, deleted.storefront_url, deleted.admin_url) == (
        StoreStatus.DELETED, None, None,
    )  # fmt: skip
    assert not await cluster.namespace_exists(store.namespace)
    assert await backup_storage.of(store.id).manifests() == []


def delete_while_the_first_step_runs(
    runner: Runner, outbox: Outbox, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its owner presses Delete while the runner's first step runs (once it is journalled)."""
    started = runner.journal.started

    async def started_then_deleted(written: Store, recipe: Recipe, step: StepInfo) -> Store:
        written = await started(written, recipe, step)
        if step.index == 1:
            async with UnitOfWork.begin(outbox) as uow:
                await lifecycle.request_deletion(uow, store.id)
        return written

    monkeypatch.setattr(runner.journal, "started", started_then_deleted)


async def test_a_deletion_asked_for_while_a_step_runs_never_makes_the_step_run_again(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The step's events were made from the row as the runner had it, offering ``delete``:
    they are made again from the row as it is, and the step is not run again for them. (An
    upgrade: it runs to its end, where a backup would yield to the deletion.)"""
    store = await ready_store(make_runner, cluster, api_outbox)
    runner = make_runner(cluster)
    await request_change(api_outbox, store, "upgrade")
    delete_while_the_first_step_runs(runner, api_outbox, store, monkeypatch)
    await runner.change(store.id, KeepAlive())

    assert (await load(database, store.id)).status is StoreStatus.DELETING
    steps = [
        (e.data["step"]["index"], e.data["state"], e.data["actions"])
        for e in await stream_events(js, store.id)
        if e.name is EventName.PROGRESS and e.data["phase"] == "upgrade"
    ]
    assert steps[:3] == [
        (1, "started", ["delete", "credentials"]),
        (1, "completed", ["credentials"]),  # its deletion asked for
        (2, "started", ["credentials"]),
    ]
    started_steps = [index for index, state, _ in steps if state == "started"]
    assert started_steps == list(range(1, len(UPGRADE.steps) + 1))  # once each


async def test_a_backup_yields_to_its_stores_deletion_asked_for_while_it_runs(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
    backup_storage: BackupStorage,
    js: JetStreamContext,
) -> None:
    """Its owner should not wait for a long backup of a store that is going: the deletion
    removes the repository whole, the half-stored backup and restic's lock with it."""
    store = await ready_store(make_runner, cluster, api_outbox)
    backup_id = await request_backup(api_outbox, store)
    slow = faulty_cluster(cluster_dir, helm_binary, dump_database="hang")
    counted_before = backups_ended("requested", "failed"), backups_ended("requested", "not_made")
    backing_up = asyncio.ensure_future(make_runner(slow).change(store.id, KeepAlive()))
    try:
        await until_step(database, store, "database")
        async with UnitOfWork.begin(api_outbox) as uow:
            await lifecycle.request_deletion(uow, store.id)
        async with asyncio.timeout(20):
            await backing_up  # cut short within a watch of the step
    finally:
        backing_up.cancel()  # a failure above must not leave it hanging on

    ended = await load(database, store.id)
    assert ended.status is StoreStatus.DELETING
    backup = await backup_row(database, backup_id)
    assert (backup.status, backup.reason) == (BackupStatus.FAILED, CUT_SHORT)
    # Not the storage refusing it: no WooStoreBackupsFailing for it.
    assert (backups_ended("requested", "failed"), backups_ended("requested", "not_made")) == (
        counted_before[0],
        counted_before[1] + 1,
    )
    events = await stream_events(js, store.id)
    assert names(events)[-3:] == [
        EventName.DELETE_QUEUED, EventName.BACKUP_FAILED, EventName.DELETE_REQUESTED,
    ]  # fmt: skip
    assert events[-2].data["reason"] == CUT_SHORT
    await make_runner(cluster).remove(store.id, KeepAlive())
    assert (await load(database, store.id)).status is StoreStatus.DELETED
    repository = Path(backup_storage.location) / "stores" / str(store.id)
    assert not repository.exists()


async def test_a_backup_whose_stores_deletion_is_asked_for_between_steps_runs_no_more_of_them(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It was seen only at a watch, 10 s apart on a platform: a backup of short steps ran
    to its end (found using make run)."""
    store = await ready_store(make_runner, cluster, api_outbox)
    runner = make_runner(cluster)
    runner.watch_interval = 600  # no watch within a step: only the look between steps
    backup_id = await request_backup(api_outbox, store)
    delete_while_the_first_step_runs(runner, api_outbox, store, monkeypatch)
    await runner.change(store.id, KeepAlive())

    assert (await load(database, store.id)).status is StoreStatus.DELETING
    assert (await backup_row(database, backup_id)).reason == CUT_SHORT
    events = await stream_events(js, store.id)
    steps = [e.data["step"]["index"] for e in events
             if e.name is EventName.PROGRESS and e.data["state"] == "started"]  # fmt: skip
    assert steps[-2:] == [1, 2]  # the second journalled as the first completed, and not run
    assert names(events)[-2:] == [EventName.BACKUP_FAILED, EventName.DELETE_REQUESTED]


async def test_a_backup_whose_stores_deletion_was_asked_for_before_it_began_is_not_begun(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
) -> None:
    store = await ready_store(make_runner, cluster, api_outbox)
    backup_id = await request_backup(api_outbox, store)
    async with UnitOfWork.begin(api_outbox) as uow:
        await lifecycle.request_deletion(uow, store.id)

    await make_runner(cluster).change(store.id, KeepAlive())

    assert (await load(database, store.id)).status is StoreStatus.DELETING
    assert (await backup_row(database, backup_id)).reason == CUT_SHORT
    events = await stream_events(js, store.id)
    assert not [e for e in events if e.name is EventName.PROGRESS and e.data["phase"] == "backup"]
    assert names(events)[-2:] == [EventName.BACKUP_FAILED, EventName.DELETE_REQUESTED]


async def until_step(database: Database, store: Store, step: str, deadline: float = 20) -> None:
    """Until the store's work has started ``step``."""
    async with asyncio.timeout(deadline):
        while (await load(database, store.id)).step_name != step:  # noqa: ASYNC110  (a condition, with a deadline)
            await asyncio.sleep(0.02)


async def test_a_deleted_backup_is_refused_at_once_and_its_data_removed_the_others_kept(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    backup_storage: BackupStorage,
    js: JetStreamContext,
) -> None:
    store = await ready_store(make_runner, cluster, api_outbox)
    runner = make_runner(cluster)
    (cluster.uploads(store.namespace) / "mug.jpg").write_bytes(PHOTO)
    older = await request_backup(api_outbox, store)
    await runner.change(store.id, KeepAlive())
    (cluster.uploads(store.namespace) / "mug.jpg").write_bytes(PHOTO[::-1])
    newer = await request_backup(api_outbox, store)
    await runner.change(store.id, KeepAlive())

    async with UnitOfWork.begin(api_outbox) as uow:
        await lifecycle.delete_backup(uow, store.id, older, BackupDeletion.REQUESTED)
    assert (await backup_row(database, older)).status is BackupStatus.DELETING
    with pytest.raises(BackupNotRestorable):  # from the moment it is deleted
        async with UnitOfWork.begin(api_outbox) as uow:
            await lifecycle.start_restore(uow, store.id, older)
    await runner.change(store.id, KeepAlive())  # the order delete_backup sent

    assert (await backup_row(database, older)).status is BackupStatus.DELETED
    assert [m.backup_id for m in await backup_storage.of(store.id).manifests()] == [newer]
    assert await backup_storage.of(store.id).stored_parts(older) == {}
    assert await read_part(backup_storage, store, newer, UPLOADS_PART)  # whole
    await backup_storage.of(store.id).verify(
        await backup_storage.of(store.id).manifest(newer) or pytest.fail("newer is gone")
    )
    assert (await load(database, store.id)).status is StoreStatus.READY
    events = await stream_events(js, store.id)
    deleted = [e for e in events if e.name is EventName.BACKUP_DELETED]
    assert [e.data for e in deleted] == [
        {
            "status": "ready",
            "backup_id": str(older),
            "reason": "requested",
            "actions": ["delete", "upgrade", "settings", "backup", "restore", "credentials"],
        }
    ]


async def backed_up_twice(
    make_runner: Callable[[Cluster], Runner], cluster: SimulatedCluster, outbox: Outbox
) -> tuple[Store, Runner, tuple[uuid.UUID, uuid.UUID]]:
    """A ready store with two complete backups, older first, and the runner that made them."""
    store = await ready_store(make_runner, cluster, outbox)
    runner = make_runner(cluster)
    backups = []
    for _ in range(2):
        backups.append(await request_backup(outbox, store))
        await runner.change(store.id, KeepAlive())
    return store, runner, (backups[0], backups[1])


async def test_a_failed_stores_deleted_backup_has_its_data_removed_too(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    backup_storage: BackupStorage,
) -> None:
    """A failed store, once cleaned up, is as idle as a ready one: its deleted backup stayed
    deleting, and its data in the repository, for good."""
    store, runner, (deleted, kept) = await backed_up_twice(make_runner, cluster, api_outbox)
    async with UnitOfWork.begin(api_outbox) as uow:
        await lifecycle.fail(uow, store.id, "its namespace was deleted outside WooStore", lost=True)
    await runner.remove(store.id, KeepAlive())  # its clean-up
    assert (await load(database, store.id)).cleaned_up_at is not None

    async with UnitOfWork.begin(api_outbox) as uow:
        await lifecycle.delete_backup(uow, store.id, deleted, BackupDeletion.REQUESTED)
    await runner.change(store.id, KeepAlive())  # the order delete_backup sent

    assert (await backup_row(database, deleted)).status is BackupStatus.DELETED
    assert [m.backup_id for m in await backup_storage.of(store.id).manifests()] == [kept]
    assert (await load(database, store.id)).status is StoreStatus.FAILED


async def test_a_deleted_backups_removal_keeps_its_message_and_lease_while_it_prunes(
    make_runner: Callable[..., Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The removal runs after any recipe's steps (restic's prune takes minutes on S3): past
    the lease, a redelivery took it over and pruned beside the first attempt (a diff
    review). A watch interval of its own, for a margin a loaded machine keeps."""
    store, _, (deleted, _) = await backed_up_twice(make_runner, cluster, api_outbox)
    runner = make_runner(cluster, watch_interval=QUICK_WATCH_INTERVAL)
    redelivery = Leases(api_outbox, renew_every=runner.leases.renew_every)
    taken_over: list[bool] = []
    forget = StoreBackups.forget

    async def slow_forget(repository: StoreBackups, backup_id: uuid.UUID) -> None:
        await asyncio.sleep(1.5 * runner.leases.ttl.total_seconds())  # the lease's life, and more
        if await takes_the_lease(redelivery, store.id):
            taken_over.append(True)
        await forget(repository, backup_id)

    monkeypatch.setattr(StoreBackups, "forget", slow_forget)
    async with UnitOfWork.begin(api_outbox) as uow:
        await lifecycle.delete_backup(uow, store.id, deleted, BackupDeletion.REQUESTED)
    keep_alive = KeepAlive()

    await runner.change(store.id, keep_alive)  # the order delete_backup sent

    assert (await backup_row(database, deleted)).status is BackupStatus.DELETED
    assert taken_over == []
    assert keep_alive.calls >= 1


async def test_no_deleted_backup_is_pruned_while_a_new_store_reads_the_repository(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    backup_storage: BackupStorage,
) -> None:
    """restic's prune locks the repository whole: a copy reading another of its backups
    meanwhile failed, for good."""
    store, runner, (copied, deleted) = await backed_up_twice(make_runner, cluster, api_outbox)
    copy = await create_copy(api_outbox, copied)
    async with UnitOfWork.begin(api_outbox) as uow:
        await lifecycle.delete_backup(uow, store.id, deleted, BackupDeletion.REQUESTED)

    await runner.change(store.id, KeepAlive())  # the order delete_backup sent
    assert (await backup_row(database, deleted)).status is BackupStatus.DELETING
    assert await backup_storage.of(store.id).manifest(deleted) is not None  # not pruned

    async with UnitOfWork.begin(api_outbox) as uow:
        await lifecycle.request_deletion(uow, copy.id)  # done with: it reads no more
    await runner.change(store.id, KeepAlive())  # as the reaper sends it again
    assert (await backup_row(database, deleted)).status is BackupStatus.DELETED


async def test_a_backup_being_made_or_restored_from_cannot_be_deleted(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
) -> None:
    store = await ready_store(make_runner, cluster, api_outbox)
    made = await request_backup(api_outbox, store)
    with pytest.raises(BackupInUse, match="being made"):
        async with UnitOfWork.begin(api_outbox) as uow:
            await lifecycle.delete_backup(uow, store.id, made, BackupDeletion.REQUESTED)
    await make_runner(cluster).change(store.id, KeepAlive())

    async with UnitOfWork.begin(api_outbox) as uow:
        await lifecycle.start_restore(uow, store.id, made)
    with pytest.raises(BackupInUse, match="being restored"):
        async with UnitOfWork.begin(api_outbox) as uow:
            await lifecycle.delete_backup(uow, store.id, made, BackupDeletion.REQUESTED)
    assert (await backup_row(database, made)).status is BackupStatus.COMPLETE


async def test_a_store_made_from_a_backup_has_its_orders_and_uploads_under_its_own_address(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
) -> None:
    source = await ready_store(make_runner, cluster, api_outbox)
    runner = make_runner(cluster)
    cluster.place_order(source.namespace)
    cluster.place_order(source.namespace)
    (cluster.uploads(source.namespace) / "mug.jpg").write_bytes(PHOTO)
    backup_id = await request_backup(api_outbox, source)
    await runner.change(source.id, KeepAlive())
    backed_up = orders(cluster, source)
    cluster.place_order(source.namespace)  # after the backup: not in the copy
    kept = cluster.wordpress_state(source.namespace)

    async with UnitOfWork.begin(api_outbox) as uow:
        backup = await uow.session.get(StoreBackup, backup_id)
        assert backup is not None
        copy = await lifecycle.request(
            uow, tenant_id=source.tenant_id, name="Staging Copy", slug="staging-copy-abc123",
            type="woocommerce", simulated=True, settings=DEFAULT_SETTINGS, from_backup=backup,
        )  # fmt: skip
    await runner.provision(copy.id, KeepAlive())

    made = await load(database, copy.id)
    assert (made.status, made.origin, made.from_backup_id) == (
        StoreStatus.READY, "backup", backup_id,
    )  # fmt: skip
    assert await journal(database, copy.id, "clone") == [step.name for step in CLONE.steps]
    assert await journal(database, copy.id, "provision") == []  # apart from cold stores' steps
    wordpress = cluster.wordpress_state(made.namespace)
    url = made.storefront_url
    assert url is not None
    assert "staging-copy-abc123" in url
    assert (wordpress["url"], wordpress["siteurl"], wordpress["title"]) == (
        url, url, "Staging Copy",
    )  # fmt: skip
    # Its own admin email, not the backed-up store's (admin@ its host, by default).
    own_email = f"admin@{urlsplit(url).hostname}"
    assert (await cluster.wp(made.namespace, ["option", "get", "admin_email"])).stdout == own_email
    assert wordpress["admin_user_email"] == own_email
    assert wordpress.get("mail", []) == []  # no notice of the change to the backed-up store
    # Exactly the backed-up orders (its own test order is removed once placed).
    assert len(backed_up) >= 2
    assert orders(cluster, made) == backed_up
    assert [p["name"] for p in wordpress["products"]] == [p["name"] for p in kept["products"]]
    assert (cluster.uploads(made.namespace) / "mug.jpg").read_bytes() == PHOTO
    secret = await cluster.read_secret(made.namespace, CREDENTIALS_SECRET)
    assert (
        wordpress["admin_password_sha256"]
        == hashlib.sha256(secret["admin-password"].encode()).hexdigest()
    )
    source_secret = await cluster.read_secret(source.namespace, CREDENTIALS_SECRET)
    assert secret["admin-password"] != source_secret["admin-password"]
    # The backed-up store is as it was, on its own address.
    assert cluster.wordpress_state(source.namespace)["url"] == kept["url"]
    assert cluster.wordpress_state(source.namespace)["title"] == source.name
