"""One attempt at a time per store, a prompt hand-back on shutdown, and step timeouts."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import col, update

from tests.provisioner.conftest import WATCH_INTERVAL
from tests.provisioner.test_runner import (
    ANOTHER_OWNER,
    KeepAlive,
    RecordingCluster,
    faulty_cluster,
    lease_taken_over,
    load,
)
from tests.support import create_store
from woostore_cluster import Cluster, PermanentClusterError, WpResult
from woostore_cluster.simulated import SimulatedCluster
from woostore_provisioner import recipe
from woostore_provisioner.leases import Attempt, Leases
from woostore_provisioner.retries import LeaseLost, ShuttingDown, StoreBusy
from woostore_provisioner.runner import Runner
from woostore_shared.db import Database
from woostore_shared.models import Store, StoreStatus, utcnow
from woostore_shared.outbox import Outbox

MakeRunner = Callable[[Cluster], Runner]


async def test_a_second_delivery_does_not_run_beside_the_first(
    make_runner: MakeRunner,
    api_outbox: Outbox,
    cluster_dir: Path,
    helm_binary: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After waiting in place (here: not at all) for the lease, the duplicate gives up."""
    monkeypatch.setattr("woostore_provisioner.retries.IN_PLACE_ATTEMPTS", 1)
    cluster = RecordingCluster(faulty_cluster(cluster_dir, helm_binary, wait_for_rollout="hang"))
    runner = make_runner(cluster)
    # The tests' lease lasts 3 watch intervals (0.15 s): on a loaded machine a renewal can
    # come later than that, and the duplicate would rightly take an expired lease over.
    # Here the first attempt is alive, so its lease must not expire (expiry: tests below).
    runner.leases.ttl = timedelta(seconds=60)
    store = await create_store(api_outbox)
    first = asyncio.create_task(runner.provision(store.id, KeepAlive()))
    await asyncio.wait_for(cluster.started["wait_for_rollout"].wait(), 10)

    with pytest.raises(StoreBusy):
        await runner.provision(store.id, KeepAlive())

    assert cluster.calls.count("install_release") == 1
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)


async def test_the_lease_of_a_dead_attempt_expires_and_a_new_attempt_finishes_the_store(
    make_runner: MakeRunner,
    api_outbox: Outbox,
    database: Database,
    cluster: SimulatedCluster,
) -> None:
    store = await create_store(api_outbox)
    async with database.session() as session:  # an attempt that died holding the lease
        await session.exec(
            update(Store)
            .where(col(Store.id) == store.id)
            .values(lease_owner="dead-host:1:abc", lease_expires_at=utcnow() - timedelta(1))
        )
        await session.commit()

    await make_runner(cluster).provision(store.id, KeepAlive())

    finished = await load(database, store.id)
    assert finished.status is StoreStatus.READY
    assert finished.lease_owner is None  # released at the end


async def test_a_redelivery_waits_out_the_lease_of_a_worker_that_just_died(
    make_runner: MakeRunner,
    api_outbox: Outbox,
    database: Database,
    cluster: SimulatedCluster,
) -> None:
    """The message comes back as the dead worker's lease is about to expire: the new
    attempt waits for it (holding the store's slot) instead of dropping the delivery."""
    store = await create_store(api_outbox)
    async with database.session() as session:
        await session.exec(
            update(Store)
            .where(col(Store.id) == store.id)
            .values(
                lease_owner="dead-host:1:abc",
                lease_expires_at=utcnow() + timedelta(seconds=1),
            )
        )
        await session.commit()

    await asyncio.wait_for(make_runner(cluster).provision(store.id, KeepAlive()), 15)

    assert (await load(database, store.id)).status is StoreStatus.READY


async def test_an_attempt_whose_lease_was_taken_over_stops_its_step(
    make_runner: MakeRunner,
    api_outbox: Outbox,
    database: Database,
    cluster_dir: Path,
    helm_binary: str,
) -> None:
    """Its lease lapsed (a process paused past it, say) and a redelivery took the store: the
    lease's beat finds it another's, and the step in flight is cancelled rather than run on
    beside the new owner's. Nothing of the store is changed on the way out."""
    cluster = RecordingCluster(faulty_cluster(cluster_dir, helm_binary, wait_for_rollout="hang"))
    store = await create_store(api_outbox)
    work = asyncio.create_task(make_runner(cluster).provision(store.id, KeepAlive()))
    await asyncio.wait_for(cluster.started["wait_for_rollout"].wait(), 10)

    await lease_taken_over(database, store.id)

    with pytest.raises(LeaseLost):
        await asyncio.wait_for(work, 10)
    assert cluster.cancelled == ["wait_for_rollout"]
    left = await load(database, store.id)
    assert (left.status, left.lease_owner) == (StoreStatus.PROVISIONING, ANOTHER_OWNER)


@pytest.mark.parametrize("call_under_way", ["ends", "fails"])
async def test_a_process_held_up_past_its_lease_calls_the_cluster_no_more_once_it_wakes(
    make_runner: MakeRunner,
    api_outbox: Outbox,
    database: Database,
    cluster_dir: Path,
    helm_binary: str,
    call_under_way: str,
) -> None:
    """Stopped in the middle of a step (SIGSTOP, a frozen node), its lease lapsed and another
    attempt took the store; woken, the step went on with its calls before any beat learned of
    it, and set the shop's settings back over the other's (a user's review). The call under
    way as it stopped ends; the next is refused, as the lease is confirmed first. Should the
    call under way fail, the store is not failed either: its failure is the other's to say."""
    store = await create_store(api_outbox)

    class HeldUp(RecordingCluster):
        """At its first WP-CLI command, the process stops for three beats, meanwhile another
        attempt takes the store over; every call after is recorded."""

        after: list[str] | None = None

        async def wp(
            self, namespace: str, args: Sequence[str], stdin: str | None = None
        ) -> WpResult:
            if self.after is not None:
                self.after.append(" ".join(args))
            else:
                self.after = []
                time.sleep(3 * WATCH_INTERVAL)  # noqa: ASYNC251 (a stopped process)
                await lease_taken_over(database, store.id)
                if call_under_way == "fails":
                    raise PermanentClusterError("the pod was replaced while it ran")
            return await super().wp(namespace, args, stdin)

    cluster = HeldUp(faulty_cluster(cluster_dir, helm_binary))
    runner = make_runner(cluster)

    with pytest.raises(LeaseLost):
        await asyncio.wait_for(runner.provision(store.id, KeepAlive()), 30)

    assert cluster.after == []
    left = await load(database, store.id)
    assert (left.status, left.lease_owner) == (StoreStatus.PROVISIONING, ANOTHER_OWNER)


async def test_a_lease_is_confirmed_by_a_renewal_once_two_beats_passed_without_one(
    api_outbox: Outbox, database: Database
) -> None:
    """Within two beats of a renewal the lease is held for certain, and nothing is asked;
    past them, a renewal says whether it still is."""
    leases = Leases(api_outbox, renew_every=60)  # no beat of its own within the test
    store = await create_store(api_outbox)
    async with leases.hold(store.id, "this attempt", KeepAlive()) as attempt:
        held_up = time.monotonic() - 2 * leases.renew_every
        attempt.renewed_at = held_up
        await leases.confirm(attempt)
        assert attempt.renewed_at > held_up  # renewed: nobody else had it

        await lease_taken_over(database, store.id)
        attempt.renewed_at = time.monotonic()
        await leases.confirm(attempt)  # a beat ago: held for certain, not asked
        attempt.renewed_at = held_up
        with pytest.raises(LeaseLost):
            await leases.confirm(attempt)
        assert isinstance(attempt.stopped, LeaseLost)  # the step's watch stops it too


async def test_a_confirmation_refused_for_a_moment_stops_nothing_the_beat_renewed_meanwhile(
    api_outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its renewal refused (PostgreSQL busy) while the beat's went through: the lease is held,
    and the attempt goes on (a review: confirmations on a loaded machine stopped healthy work).
    Refused with no renewal since, the call fails, and the attempt is left to the beat."""
    leases = Leases(api_outbox, renew_every=60)
    store = await create_store(api_outbox)
    async with leases.hold(store.id, "this attempt", KeepAlive()) as attempt:
        beat_renewed = True

        async def refused(held: Attempt) -> None:
            if beat_renewed:
                held.renewed_at = time.monotonic()  # the beat's, meanwhile
            raise OperationalError("UPDATE stores ...", {}, ConnectionError("busy"))

        monkeypatch.setattr(leases, "renew", refused)
        attempt.renewed_at = time.monotonic() - 2 * leases.renew_every
        await leases.confirm(attempt)
        beat_renewed = False
        attempt.renewed_at = time.monotonic() - 2 * leases.renew_every
        with pytest.raises(OperationalError):
            await leases.confirm(attempt)
        assert attempt.stopped is None


async def test_shutdown_cuts_the_step_and_hands_the_store_back_for_another_replica(
    make_runner: MakeRunner,
    api_outbox: Outbox,
    database: Database,
    cluster_dir: Path,
    helm_binary: str,
) -> None:
    cluster = RecordingCluster(faulty_cluster(cluster_dir, helm_binary, wait_for_rollout="hang"))
    runner = make_runner(cluster)
    store = await create_store(api_outbox)
    work = asyncio.create_task(runner.provision(store.id, KeepAlive()))
    await asyncio.wait_for(cluster.started["wait_for_rollout"].wait(), 10)

    runner.stopping.set()

    with pytest.raises(ShuttingDown):
        await asyncio.wait_for(work, 2)
    assert cluster.cancelled == ["wait_for_rollout"]
    handed_back = await load(database, store.id)
    assert handed_back.status is StoreStatus.PROVISIONING  # not failed: it resumes elsewhere
    assert handed_back.lease_owner is None

    replica = make_runner(SimulatedCluster(cluster_dir, helm_binary=helm_binary, time_scale=0))
    await replica.provision(store.id, KeepAlive())
    assert (await load(database, store.id)).status is StoreStatus.READY
    assert cluster.calls.count("install_release") == 1  # the journal skipped finished steps


async def test_a_step_that_outlives_its_timeout_fails_the_store_and_cleans_up(
    make_runner: MakeRunner,
    api_outbox: Outbox,
    database: Database,
    cluster_dir: Path,
    helm_binary: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    short = dataclasses.replace(
        recipe.PROVISION,
        steps=tuple(
            dataclasses.replace(step, timeout=0.2) if step.name == "rollout" else step
            for step in recipe.PROVISION.steps
        ),
    )
    monkeypatch.setattr("woostore_provisioner.runner.PROVISION", short)
    cluster = faulty_cluster(cluster_dir, helm_binary, wait_for_rollout="hang")
    store = await create_store(api_outbox)

    runner = make_runner(cluster)
    await asyncio.wait_for(runner.provision(store.id, KeepAlive()), 10)
    await asyncio.wait_for(runner.remove(store.id, KeepAlive()), 10)  # the clean-up it asked

    failed = await load(database, store.id)
    assert failed.status is StoreStatus.FAILED
    assert failed.failure_reason == "step rollout did not finish within 0 s"
    assert failed.cleaned_up_at is not None
    assert not await cluster.namespace_exists(failed.namespace)


async def test_an_attempt_that_cannot_renew_its_lease_stops_before_it_lapses(
    make_runner: MakeRunner,
    api_outbox: Outbox,
    cluster_dir: Path,
    helm_binary: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL refuses the renewals two beats running: at the next the lease would lapse
    and a redelivery take it, so the step in flight is cancelled and the attempt ends with
    the error (retried in place, as a transient one is; here, once). Before, the failures
    were left to the next beat for ever, and the step ran on past its lease."""
    monkeypatch.setattr("woostore_provisioner.retries.IN_PLACE_ATTEMPTS", 1)
    cluster = RecordingCluster(faulty_cluster(cluster_dir, helm_binary, wait_for_rollout="hang"))
    runner = make_runner(cluster)
    store = await create_store(api_outbox)

    async def database_away(attempt: Attempt) -> None:
        raise OperationalError("UPDATE stores ...", {}, ConnectionError("server closed"))

    work = asyncio.create_task(runner.provision(store.id, KeepAlive()))
    await asyncio.wait_for(cluster.started["wait_for_rollout"].wait(), 10)
    monkeypatch.setattr(runner.leases, "renew", database_away)

    with pytest.raises(OperationalError):
        await asyncio.wait_for(work, 10)
    assert cluster.cancelled == ["wait_for_rollout"]
