"""The reaper against the cluster: namespaces left behind are removed, but only those the
platform provably owns; a ready store whose namespace vanished is failed, saying so."""

from __future__ import annotations

import uuid
from datetime import timedelta

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlmodel import select

from tests.reaper.test_reaping import add_store, load
from woostore_cluster import MANAGED_BY, STORE_ID_LABEL
from woostore_cluster.simulated import SimulatedCluster
from woostore_reaper.reaping import NAMESPACE_VANISHED, reconcile_cluster
from woostore_shared.db import Database
from woostore_shared.models import StoreStatus, WorkOrderRecord
from woostore_shared.outbox import Outbox

GRACE = timedelta(seconds=60)


def ours(store_id: uuid.UUID | str) -> dict[str, str]:
    return {MANAGED_BY[0]: MANAGED_BY[1], STORE_ID_LABEL: str(store_id)}


async def namespace_of(database: Database, store_id: uuid.UUID) -> str:
    return (await load(database, store_id)).namespace


async def test_namespaces_of_deleted_unknown_and_cleaned_up_failed_stores_are_removed(
    outbox: Outbox, database: Database, cluster: SimulatedCluster
) -> None:
    deleted = await add_store(database, StoreStatus.DELETED)
    failed = await add_store(database, StoreStatus.FAILED, cleaned_up=True)
    unknown = uuid.uuid4()
    for namespace, labels in [
        (await namespace_of(database, deleted), ours(deleted)),
        (await namespace_of(database, failed), ours(failed)),
        ("store-never-recorded", ours(unknown)),
    ]:
        await cluster.ensure_namespace(namespace, labels)

    assert await reconcile_cluster(outbox, cluster, GRACE) == (3, 0)
    assert cluster.namespaces() == {}


async def test_namespaces_of_live_stores_are_kept(
    outbox: Outbox, database: Database, cluster: SimulatedCluster
) -> None:
    live = [
        await add_store(database, status)
        for status in (
            StoreStatus.QUEUED,
            StoreStatus.PROVISIONING,
            StoreStatus.READY,
            StoreStatus.DELETING,
        )
    ]
    for store_id in live:
        await cluster.ensure_namespace(await namespace_of(database, store_id), ours(store_id))

    assert await reconcile_cluster(outbox, cluster, GRACE) == (0, 0)
    assert len(cluster.namespaces()) == len(live)


async def test_a_failed_store_not_yet_cleaned_up_keeps_its_namespace_for_its_clean_up(
    outbox: Outbox, database: Database, cluster: SimulatedCluster
) -> None:
    """However long ago it failed: the clean-up is the removal lane's (the replay sends it
    again if it was lost), and it reports when it is done."""
    store_id = await add_store(database, StoreStatus.FAILED)
    await cluster.ensure_namespace(await namespace_of(database, store_id), ours(store_id))

    assert await reconcile_cluster(outbox, cluster, GRACE) == (0, 0)
    assert len(cluster.namespaces()) == 1


async def test_namespaces_without_proof_of_ownership_are_never_touched(
    outbox: Outbox, database: Database, cluster: SimulatedCluster
) -> None:
    deleted = await add_store(database, StoreStatus.DELETED)
    await cluster.ensure_namespace("kube-system", {})
    await cluster.ensure_namespace("team-shop", {MANAGED_BY[0]: MANAGED_BY[1]})  # no store id
    await cluster.ensure_namespace("helm-made", {MANAGED_BY[0]: "Helm", STORE_ID_LABEL: "x"})
    # Labels naming a deleted store, on a namespace that is not that store's name.
    await cluster.ensure_namespace("store-impostor", ours(deleted))

    assert await reconcile_cluster(outbox, cluster, GRACE) == (0, 0)
    assert set(cluster.namespaces()) == {"kube-system", "team-shop", "helm-made", "store-impostor"}


async def test_a_ready_store_whose_namespace_vanished_is_failed_saying_so(
    outbox: Outbox, database: Database, cluster: SimulatedCluster, spans: InMemorySpanExporter
) -> None:
    """In a trace of its own, which its clean-up continues."""
    gone = await add_store(database, StoreStatus.READY)
    present = await add_store(database, StoreStatus.READY)
    await cluster.ensure_namespace(await namespace_of(database, present), ours(present))

    assert await reconcile_cluster(outbox, cluster, GRACE) == (0, 1)

    failed = await load(database, gone)
    assert failed.status is StoreStatus.FAILED
    assert failed.failure_reason == NAMESPACE_VANISHED
    assert (await load(database, present)).status is StoreStatus.READY
    [lost] = [s for s in spans.get_finished_spans() if s.name == "reaper ready store lost"]
    assert lost.parent is None
    assert lost.attributes == {"store_id": str(gone)}
    async with database.session() as session:
        [clean_up] = await session.exec(
            select(WorkOrderRecord.traceparent).where(WorkOrderRecord.store_id == gone)
        )
    assert clean_up is not None
    assert clean_up.split("-")[1] == format(lost.context.trace_id, "032x")
