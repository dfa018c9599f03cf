"""The runner: journal, progress events on JetStream, failure, abandonment and deletion.

Real PostgreSQL, real NATS JetStream, the real helm and chart; the cluster is the simulated
one, seen through ``RecordingCluster`` where a test needs to watch what reaches it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import pytest
from nats.js import JetStreamContext
from sqlmodel import col, select, update

import woostore_provisioner.runner as runner_module
from tests.provisioner.conftest import BASE_DOMAIN, WATCH_INTERVAL
from tests.support import DEFAULT_SETTINGS, create_store
from woostore_cluster import (
    Release,
    ReleaseRevision,
    StorefrontCheck,
    TransientClusterError,
    WpResult,
)
from woostore_cluster.simulated import SimulatedCluster
from woostore_provisioner.leases import Leases
from woostore_provisioner.recipe import (
    CLEAN_UP,
    CREDENTIALS_SECRET,
    DELETE,
    PROVISION,
    Learned,
    Step,
    StoreJob,
    TimeLimits,
)
from woostore_provisioner.retries import LeaseLost, StoreBusy
from woostore_provisioner.runner import STEP_SECONDS, Runner, WaitExplainer
from woostore_shared import lifecycle
from woostore_shared.db import Database
from woostore_shared.events import CloudEvent, EventName
from woostore_shared.lifecycle import transition
from woostore_shared.models import (
    DEFAULT_TENANT_ID,
    Store,
    StoreEvent,
    StoreStatus,
    StoreStep,
    utcnow,
)
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import CredentialCipher
from woostore_shared.topology import STREAM_NAME, WORK_STREAM
from woostore_shared.unit_of_work import UnitOfWork

T = TypeVar("T")
STEP_NAMES = [step.name for step in PROVISION.steps]
TOTAL = len(PROVISION.steps)


class RecordingCluster:
    """A cluster that passes every call to ``inner``, recording which operations were called,
    which began, and which were cancelled while running."""

    simulated = True

    def __init__(self, inner: SimulatedCluster) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.cancelled: list[str] = []

    async def _call(self, operation: str, work: Callable[[], Awaitable[T]]) -> T:
        self.calls.append(operation)
        self.started[operation].set()
        try:
            return await work()
        except asyncio.CancelledError:
            self.cancelled.append(operation)
            raise

    async def ensure_namespace(self, namespace: str, labels: Mapping[str, str]) -> None:
        await self._call("ensure_namespace", lambda: self.inner.ensure_namespace(namespace, labels))

    async def namespace_exists(self, namespace: str) -> bool:
        return await self._call("namespace_exists", lambda: self.inner.namespace_exists(namespace))

    async def managed_namespaces(self) -> dict[str, str]:
        return await self._call("managed_namespaces", self.inner.managed_namespaces)

    async def ensure_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        await self._call("ensure_secret", lambda: self.inner.ensure_secret(namespace, name, data))

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        return await self._call("read_secret", lambda: self.inner.read_secret(namespace, name))

    async def update_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        await self._call("update_secret", lambda: self.inner.update_secret(namespace, name, data))

    async def install_release(self, release: Release, timeout: float) -> None:  # noqa: ASYNC109  (the Protocol's name)
        await self._call("install_release", lambda: self.inner.install_release(release, timeout))

    async def wait_for_rollout(self, namespace: str, timeout: float) -> None:  # noqa: ASYNC109  (the Protocol's name)
        await self._call(
            "wait_for_rollout", lambda: self.inner.wait_for_rollout(namespace, timeout)
        )

    async def waiting_cause(self, namespace: str) -> str | None:
        return await self.inner.waiting_cause(namespace)  # a question, not an operation

    async def release_history(self, namespace: str, name: str) -> list[ReleaseRevision]:
        return await self._call(
            "release_history", lambda: self.inner.release_history(namespace, name)
        )

    async def rollback_release(
        self,
        namespace: str,
        name: str,
        revision: int,
        timeout: float,  # noqa: ASYNC109  (the Protocol's name)
    ) -> None:
        await self._call(
            "rollback_release",
            lambda: self.inner.rollback_release(namespace, name, revision, timeout),
        )

    async def wp(self, namespace: str, args: Sequence[str], stdin: str | None = None) -> WpResult:
        return await self._call("wp", lambda: self.inner.wp(namespace, args, stdin))

    async def check_storefront(self, namespace: str, url: str) -> StorefrontCheck:
        return await self._call(
            "check_storefront", lambda: self.inner.check_storefront(namespace, url)
        )

    def dump_database(self, namespace: str) -> AsyncIterator[bytes]:
        self.calls.append("dump_database")
        return self.inner.dump_database(namespace)

    def archive_uploads(self, namespace: str) -> AsyncIterator[bytes]:
        self.calls.append("archive_uploads")
        return self.inner.archive_uploads(namespace)

    async def load_database(self, namespace: str, dump: AsyncIterable[bytes]) -> None:
        await self._call("load_database", lambda: self.inner.load_database(namespace, dump))

    async def replace_uploads(self, namespace: str, archive: AsyncIterable[bytes]) -> None:
        await self._call("replace_uploads", lambda: self.inner.replace_uploads(namespace, archive))

    async def uninstall_release(self, namespace: str, name: str) -> None:
        await self._call("uninstall_release", lambda: self.inner.uninstall_release(namespace, name))

    async def delete_namespace(self, namespace: str, timeout: float) -> None:  # noqa: ASYNC109  (the Protocol's name)
        await self._call(
            "delete_namespace", lambda: self.inner.delete_namespace(namespace, timeout)
        )


class KeepAlive:
    """Stands in for ``msg.in_progress``: counts how often the message was kept alive."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1


# -- fixtures and helpers ------------------------------------------------------------------


def faulty_cluster(cluster_dir: Path, helm_binary: str, **faults: str) -> SimulatedCluster:
    return SimulatedCluster(cluster_dir, helm_binary=helm_binary, time_scale=0, faults=faults)


async def fail(outbox: Outbox, store_id: uuid.UUID, reason: str) -> None:
    """The reaper fails the store (its deadline passed)."""
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.fail(uow, store_id, reason)


async def request_deletion(outbox: Outbox, store_id: uuid.UUID) -> None:
    """The store's owner deletes it through the API."""
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.request_deletion(uow, store_id)


async def load(database: Database, store_id: uuid.UUID) -> Store:
    async with database.session() as session:
        store = await session.get(Store, store_id)
    assert store is not None
    return store


async def journal(database: Database, store_id: uuid.UUID, phase: str) -> list[str]:
    async with database.session() as session:
        rows = await session.exec(
            select(StoreStep.name)
            .where(col(StoreStep.store_id) == store_id)
            .where(col(StoreStep.phase) == phase)
            .order_by(col(StoreStep.completed_at))
        )
        return list(rows)


async def timings(
    database: Database, store_id: uuid.UUID, phase: str
) -> list[tuple[int | None, float | None]]:
    """(position, seconds) of each journalled step, in the order they completed."""
    async with database.session() as session:
        rows = await session.exec(
            select(StoreStep.position, StoreStep.seconds)
            .where(col(StoreStep.store_id) == store_id)
            .where(col(StoreStep.phase) == phase)
            .order_by(col(StoreStep.completed_at))
        )
        return list(rows)


async def work_orders(js: JetStreamContext, store_id: uuid.UUID) -> list[str]:
    """The lanes of the store's work orders, in stream order, as ``work.<lane>``."""
    info = await js.stream_info(WORK_STREAM)
    lanes: list[str] = []
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        message = await js.get_msg(WORK_STREAM, sequence)
        prefix, lane, store = (message.subject or "").split(".")
        if store == str(store_id):
            lanes.append(f"{prefix}.{lane}")
    return lanes


async def stream_events(js: JetStreamContext, store_id: uuid.UUID) -> list[CloudEvent]:
    """The store's events, in stream order, read back from JetStream one message at a time."""
    info = await js.stream_info(STREAM_NAME)
    events: list[CloudEvent] = []
    if info.state.messages == 0:
        return events
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        message = await js.get_msg(STREAM_NAME, sequence)
        assert message.data is not None
        event = CloudEvent.model_validate_json(message.data)
        assert message.subject == event.nats_subject
        if event.store_id == store_id:
            events.append(event)
    return events


def progress_of(events: Sequence[CloudEvent]) -> list[tuple[str, int, int, str, float]]:
    """(phase, step index, step total, state, progress) of each progress event."""
    return [
        (
            e.data["phase"],
            e.data["step"]["index"],
            e.data["step"]["total"],
            e.data["state"],
            e.data["progress"],
        )
        for e in events
        if e.name is EventName.PROGRESS
    ]


def expected_progress(phase: str, indexes: Sequence[int], total: int) -> list[Any]:
    return [
        entry
        for index in indexes
        for entry in (
            (phase, index, total, "started", round((index - 1) / total, 4)),
            (phase, index, total, "completed", round(index / total, 4)),
        )
    ]


async def wait_until(condition: Callable[[], Awaitable[bool]], within: float = 10) -> None:
    """Wait for ``condition`` to hold, failing the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "the condition was not met in time"
        await asyncio.sleep(0.01)


# -- provisioning --------------------------------------------------------------------------


async def test_provision_takes_a_queued_store_to_ready_and_announces_every_step_in_order(
    make_runner: Callable[[SimulatedCluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
    cipher: CredentialCipher,
) -> None:
    store = await create_store(api_outbox)

    runner = make_runner(cluster)
    await runner.provision(store.id, KeepAlive())
    await api_outbox.mark()  # what each outbox marks a moment after publishing, now
    await runner.outbox.mark()

    ready = await load(database, store.id)
    assert ready.status is StoreStatus.READY
    assert ready.storefront_url == f"http://{store.slug}.{BASE_DOMAIN}"
    assert ready.admin_url == f"http://{store.slug}.{BASE_DOMAIN}/wp-admin/"
    assert ready.progress == 1.0
    assert ready.step_name is None
    assert ready.provisioning_started_at is not None
    assert ready.ready_at is not None
    secret = await cluster.read_secret(store.namespace, CREDENTIALS_SECRET)
    assert ready.admin_password_encrypted is not None
    assert cipher.decrypt(ready.admin_password_encrypted) == secret["admin-password"]
    check = await cluster.check_storefront(store.namespace, ready.storefront_url)
    assert (check.status_code, check.products, check.order_placed) == (200, 3, True)

    assert await journal(database, store.id, "provision") == STEP_NAMES
    measured = await timings(database, store.id, "provision")
    assert [position for position, _ in measured] == list(range(1, TOTAL + 1))
    assert all(seconds is not None and seconds > 0 for _, seconds in measured)

    events = await stream_events(js, store.id)
    assert [e.name for e in events] == [
        EventName.REQUESTED,
        *[EventName.PROGRESS] * (2 * len(PROVISION.steps)),
        EventName.READY,
    ]
    assert progress_of(events) == expected_progress("provision", range(1, TOTAL + 1), TOTAL)
    steps = [e.data["step"]["name"] for e in events if e.name is EventName.PROGRESS]
    assert steps == [name for name in STEP_NAMES for _ in range(2)]
    assert all(e.data["status"] == "provisioning" for e in events[1:-1])
    assert events[-1].data == {
        "status": "ready",
        "storefront_url": ready.storefront_url,
        "admin_url": ready.admin_url,
        "chart_version": ready.chart_version,
        "revision": 1,
        "actions": ["delete", "upgrade", "settings", "backup", "credentials"],  # no restore yet
    }
    assert ready.chart_version is not None
    assert {e.correlationid for e in events} == {store.correlation_id}
    assert {e.tenantid for e in events} == {str(DEFAULT_TENANT_ID)}
    assert {e.source for e in events[1:]} == {"/woostore/provisioner"}

    async with database.session() as session:
        rows = list(await session.exec(select(StoreEvent).where(StoreEvent.store_id == store.id)))
    assert len(rows) == len(events)
    assert all(row.published_at is not None and row.stream_sequence for row in rows)


async def test_provision_resumes_after_the_steps_already_in_the_journal(
    make_runner: Callable[[RecordingCluster], Runner],
    cluster: SimulatedCluster,
    chart: Path,
    api_outbox: Outbox,
    outbox: Outbox,
    database: Database,
    js: JetStreamContext,
    cipher: CredentialCipher,
) -> None:
    """A redelivered message after a crash runs only the steps not yet journalled."""
    store = await create_store(api_outbox)
    # The first attempt ran four steps, journalled them, then the provisioner died.
    job = StoreJob(
        store_id=str(store.id),
        name=store.name,
        slug=store.slug,
        namespace=store.namespace,
        host=f"{store.slug}.{BASE_DOMAIN}",
        storefront_url=f"http://{store.slug}.{BASE_DOMAIN}",
        cluster=cluster,
        chart=chart,
        cipher=cipher,
        limits=TimeLimits(rollout=300),
        settings=DEFAULT_SETTINGS,
    )
    learned = [await step.run(job) or {} for step in PROVISION.steps[:4]]
    async with UnitOfWork.begin(outbox) as uow:
        row = await uow.session.get(Store, store.id, with_for_update=True)
        assert row is not None
        transition(row, StoreStatus.PROVISIONING)
        row.admin_password_encrypted = learned[1]["admin_password_encrypted"]
        uow.session.add(row)
        for step in PROVISION.steps[:4]:
            uow.session.add(StoreStep(store_id=store.id, phase="provision", name=step.name))
    recording = RecordingCluster(cluster)

    await make_runner(recording).provision(store.id, KeepAlive())

    assert (await load(database, store.id)).status is StoreStatus.READY
    assert set(recording.calls) == {"wp", "read_secret", "check_storefront"}
    assert sorted(await journal(database, store.id, "provision")) == sorted(STEP_NAMES)
    # Each step keeps its place in the recipe, whichever attempt ran it.
    resumed = (await timings(database, store.id, "provision"))[4:]
    assert [position for position, _ in resumed] == list(range(5, TOTAL + 1))
    events = await stream_events(js, store.id)
    assert progress_of(events) == expected_progress("provision", range(5, TOTAL + 1), TOTAL)
    assert events[-1].name is EventName.READY
    secret = await cluster.read_secret(store.namespace, CREDENTIALS_SECRET)
    ready = await load(database, store.id)
    assert ready.admin_password_encrypted is not None
    assert cipher.decrypt(ready.admin_password_encrypted) == secret["admin-password"]


async def test_transient_errors_are_retried_in_place_and_no_step_completes_twice(
    make_runner: Callable[[SimulatedCluster], Runner],
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
) -> None:
    """Every WP-CLI operation fails once: one delivery still gets the store to ready (the
    retries hold its slot), and no step completes twice."""
    cluster = faulty_cluster(cluster_dir, helm_binary, wp="transient")
    store = await create_store(api_outbox)

    await make_runner(cluster).provision(store.id, KeepAlive())

    assert (await load(database, store.id)).status is StoreStatus.READY
    assert await journal(database, store.id, "provision") == STEP_NAMES
    completed = [
        e.data["step"]["index"]
        for e in await stream_events(js, store.id)
        if e.name is EventName.PROGRESS and e.data["state"] == "completed"
    ]
    assert completed == list(range(1, TOTAL + 1))
    products = await cluster.wp(store.namespace, ["wc", "product", "list", "--format=count"])
    assert products.stdout == "3"


async def test_transient_errors_outlasting_the_retries_go_back_to_the_handler(
    make_runner: Callable[[SimulatedCluster], Runner],
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The handler then naks the message for a later redelivery, which resumes the store."""
    monkeypatch.setattr("woostore_provisioner.retries.IN_PLACE_ATTEMPTS", 1)
    cluster = faulty_cluster(cluster_dir, helm_binary, wp="transient")
    runner = make_runner(cluster)
    store = await create_store(api_outbox)

    with pytest.raises(TransientClusterError):
        await runner.provision(store.id, KeepAlive())

    stalled = await load(database, store.id)
    assert stalled.status is StoreStatus.PROVISIONING
    assert stalled.lease_owner is None  # free for the redelivery
    assert "wordpress_install" not in await journal(database, store.id, "provision")


async def test_why_a_step_waits_is_asked_again_after_asking_failed() -> None:
    """A cause that could not be read or written once (the cluster or PostgreSQL away for a
    moment) is only a missed hint: the next round asks again and tells it."""
    answers: list[str | BaseException] = [ConnectionError("database restarting"), "Pulling"]
    told: list[str | None] = []
    heard = asyncio.Event()

    class Cluster:
        async def waiting_cause(self, namespace: str) -> str | None:
            answer = answers.pop(0) if answers else "Pulling"
            if isinstance(answer, BaseException):
                raise answer
            return answer

    async def tell(cause: str | None) -> None:
        told.append(cause)
        heard.set()

    job = cast(StoreJob, SimpleNamespace(cluster=Cluster(), namespace="store-x"))
    following = asyncio.ensure_future(WaitExplainer(job, 0, tell).follow())
    try:
        async with asyncio.timeout(30):
            await heard.wait()
    finally:
        following.cancel()
    assert told == ["Pulling"]
    assert answers == []  # the failed answer was asked for first


async def test_a_rollout_held_up_says_why_while_it_waits_and_the_failure_says_it_first(
    make_runner: Callable[..., Runner],
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
) -> None:
    """While the rollout waits on an image that cannot be pulled, a progress event of the
    started step and the store itself say so in words; once the rollout gives up, the store
    fails with those words first, and no longer says it waits."""
    cluster = faulty_cluster(cluster_dir, helm_binary, wait_for_rollout="image_pull")
    runner = make_runner(cluster, TimeLimits(rollout=1))
    store = await create_store(api_outbox)
    provisioning = asyncio.ensure_future(runner.provision(store.id, KeepAlive()))

    async def told() -> bool:
        return (await load(database, store.id)).waiting_cause is not None

    await wait_until(told)
    cause = (await load(database, store.id)).waiting_cause
    assert cause is not None
    assert cause.startswith("Cannot download the image ghcr.io/woostore/")
    await provisioning

    failed = await load(database, store.id)
    assert failed.status is StoreStatus.FAILED
    assert failed.failure_reason is not None
    assert failed.failure_reason.startswith(cause)
    assert failed.waiting_cause is None
    events = await stream_events(js, store.id)
    waits = [e.data for e in events if e.name is EventName.PROGRESS and e.data["cause"]]
    assert [(w["step"]["name"], w["state"], w["cause"]) for w in waits] == [
        ("rollout", "started", cause)
    ]
    # Every other progress event says the step is not known to wait.
    assert all(e.data["cause"] is None for e in events if e.name is EventName.PROGRESS
               and e.data not in waits)  # fmt: skip


async def test_a_permanent_error_fails_the_store_and_its_clean_up_is_a_phase_of_its_own(
    make_runner: Callable[[SimulatedCluster], Runner],
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
) -> None:
    """The failure asks for the clean-up on the removal lane, which shows its own progress,
    leaves the step the store failed at, and records that it finished."""
    cluster = faulty_cluster(cluster_dir, helm_binary, wait_for_rollout="error")
    runner = make_runner(cluster)
    store = await create_store(api_outbox)
    reason = "wait_for_rollout failed: simulated fault (ImagePullBackOff)"

    await runner.provision(store.id, KeepAlive())

    failed = await load(database, store.id)
    assert failed.status is StoreStatus.FAILED
    assert failed.failure_reason == reason
    assert failed.cleaned_up_at is None
    assert await cluster.namespace_exists(store.namespace)  # the clean-up's to remove
    assert await journal(database, store.id, "provision") == STEP_NAMES[:3]
    events = await stream_events(js, store.id)
    assert progress_of(events) == [
        *expected_progress("provision", range(1, 4), TOTAL),
        ("provision", 4, TOTAL, "started", round(3 / TOTAL, 4)),
    ]
    assert events[-1].name is EventName.FAILED
    assert events[-1].data == {
        "status": "failed", "reason": reason, "step": "rollout", "actions": ["delete"],
    }  # fmt: skip
    assert await work_orders(js, store.id) == ["work.provision", "work.removal"]

    await runner.remove(store.id, KeepAlive())

    cleaned = await load(database, store.id)
    assert cleaned.status is StoreStatus.FAILED
    assert cleaned.cleaned_up_at is not None
    assert (cleaned.step_name, cleaned.failure_reason) == ("rollout", reason)
    assert not await cluster.namespace_exists(store.namespace)
    assert cluster.object_count(store.namespace) == 0
    assert await journal(database, store.id, "clean_up") == [s.name for s in CLEAN_UP.steps]
    after = (await stream_events(js, store.id))[len(events) :]
    assert progress_of(after) == expected_progress("clean_up", [1, 2], 2)
    assert all(e.data["status"] == "failed" for e in after)
    assert after[-1].name is EventName.CLEANED_UP


async def test_a_store_failed_while_a_step_hangs_is_abandoned_and_cleaned_up(
    make_runner: Callable[[RecordingCluster], Runner],
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
) -> None:
    """The reaper fails a store past its deadline while the rollout hangs: the provisioner
    notices within a few watch intervals, cancels the hanging work and removes the store."""
    cluster = RecordingCluster(faulty_cluster(cluster_dir, helm_binary, wait_for_rollout="hang"))
    reaper = Outbox(api_outbox.db, api_outbox.nats, source="/woostore/reaper")
    store = await create_store(api_outbox)
    keep_alive = KeepAlive()
    provision = asyncio.create_task(make_runner(cluster).provision(store.id, keep_alive))
    await asyncio.wait_for(cluster.started["wait_for_rollout"].wait(), timeout=30)
    await wait_until(lambda: _kept_alive(keep_alive))  # the watcher is running
    assert not provision.done()

    await fail(reaper, store.id, "deadline exceeded")
    failed_at = time.monotonic()
    await asyncio.wait_for(provision, timeout=30)

    assert time.monotonic() - failed_at < 20 * WATCH_INTERVAL
    assert cluster.cancelled == ["wait_for_rollout"]
    await make_runner(cluster).remove(store.id, KeepAlive())  # the clean-up the failure asked
    assert not await cluster.namespace_exists(store.namespace)
    assert cluster.inner.object_count(store.namespace) == 0
    abandoned = await load(database, store.id)
    assert abandoned.status is StoreStatus.FAILED
    assert abandoned.failure_reason == "deadline exceeded"
    assert "rollout" not in await journal(database, store.id, "provision")
    events = await stream_events(js, store.id)
    assert [e.name for e in events].count(EventName.FAILED) == 1  # the reaper's, not another
    assert events[-1].name is EventName.CLEANED_UP


async def test_a_store_failed_between_quick_steps_gets_no_more_progress(
    make_runner: Callable[[RecordingCluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
) -> None:
    """Steps quicker than a watch interval are never watched: the journal itself checks, as
    it records each step, that the store is still provisioning."""
    reaper = Outbox(api_outbox.db, api_outbox.nats, source="/woostore/reaper")
    store = await create_store(api_outbox)

    class FailedDuringTheFirstWpCommand(RecordingCluster):
        async def wp(
            self, namespace: str, args: Sequence[str], stdin: str | None = None
        ) -> WpResult:
            if "wp" not in self.calls:
                await fail(reaper, store.id, "deadline exceeded")
            return await super().wp(namespace, args, stdin)

    recording = FailedDuringTheFirstWpCommand(cluster)

    await make_runner(recording).provision(store.id, KeepAlive())

    events = await stream_events(js, store.id)
    names = [e.name for e in events]
    assert names.count(EventName.FAILED) == 1
    assert names[names.index(EventName.FAILED) + 1 :] == []  # nothing after the failure
    assert await journal(database, store.id, "provision") == STEP_NAMES[:4]  # up to rollout
    assert "check_storefront" not in recording.calls  # no later step ran
    failed = await load(database, store.id)
    assert (failed.status, failed.step_name) == (StoreStatus.FAILED, "wordpress_install")


QUICK_WATCH_INTERVAL = 0.3


async def lease_taken_over(database: Database, store_id: uuid.UUID) -> None:
    """Another attempt holds the store's lease now, as a redelivery that took it does."""
    async with database.session() as session:
        await session.exec(
            update(Store)
            .where(col(Store.id) == store_id)
            .values(lease_owner=ANOTHER_OWNER, lease_expires_at=utcnow() + timedelta(1))
        )
        await session.commit()


ANOTHER_OWNER = "another-host:1:abc"


async def takes_the_lease(redelivery: Leases, store_id: uuid.UUID) -> bool:
    """Whether a redelivery would take the store's lease now (and so run beside the work
    under way); given back at once."""
    with suppress(StoreBusy):
        async with redelivery.hold(store_id, "a redelivery", KeepAlive()):
            return True
    return False


class NatsAway(KeepAlive):
    """``msg.in_progress`` with NATS unreachable: every call times out."""

    async def __call__(self) -> None:
        await super().__call__()
        raise TimeoutError


def quick_steps(
    monkeypatch: pytest.MonkeyPatch,
    before_each: Callable[[Step], Awaitable[None]],
    share: float = 0.8,
) -> None:
    """PROVISION with ``before_each`` run as each step starts, and each step taking this
    ``share`` of a watch interval more than it does."""

    def quick(step: Step) -> Step:
        async def run(job: StoreJob) -> Learned | None:
            await before_each(step)
            await asyncio.sleep(QUICK_WATCH_INTERVAL * share)
            return await step.run(job)

        return replace(step, run=run)

    recipe = replace(PROVISION, steps=tuple(quick(step) for step in PROVISION.steps))
    monkeypatch.setattr(runner_module, "PROVISION", recipe)


@pytest.mark.parametrize("keep_alive", [KeepAlive(), NatsAway()], ids=["nats", "nats-away"])
async def test_a_recipe_of_quick_steps_keeps_its_message_and_its_lease_between_steps(
    make_runner: Callable[..., Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    keep_alive: KeepAlive,
) -> None:
    """Each step a little quicker than a watch interval, so none is watched; together they
    take several times the lease's lifetime (3 watch intervals). The message and the lease
    are kept alive between steps, so a redelivery finds the store busy at every step rather
    than running beside this attempt (a user's review saw a warm-pool store's steps run
    twice at once, and the second's journal collide with the first's).

    A watch interval of its own, longer than the other tests': the lease's beat renews it
    every interval, and the two more it lasts are the margin a loaded machine needs. With
    NATS away the message cannot be kept, and the lease still is (they were renewed
    together, and a failing message let the lease lapse: a diff review)."""
    store = await create_store(api_outbox)
    runner = make_runner(cluster, watch_interval=QUICK_WATCH_INTERVAL)
    redelivery = Leases(api_outbox, renew_every=runner.leases.renew_every)
    taken_over: list[str] = []

    async def try_to_take_over(step: Step) -> None:
        if await takes_the_lease(redelivery, store.id):
            taken_over.append(step.name)

    quick_steps(monkeypatch, try_to_take_over)

    await runner.provision(store.id, keep_alive)

    assert (await load(database, store.id)).status is StoreStatus.READY
    assert len(PROVISION.steps) * 0.8 * QUICK_WATCH_INTERVAL > 2 * runner.leases.ttl.total_seconds()
    assert taken_over == []
    assert keep_alive.calls >= 2


async def test_an_attempt_whose_lease_was_taken_between_quick_steps_runs_no_more_of_them(
    make_runner: Callable[..., Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its lease lapsed and a redelivery took the store as its first step ran: the lease's
    beat finds it another's, and the next step to start stops the attempt, with steps to go
    (without the check at each step, all of them ran, and the store was made ready by an
    attempt that no longer held it: a diff review)."""
    store = await create_store(api_outbox)
    runner = make_runner(cluster, watch_interval=QUICK_WATCH_INTERVAL)
    started: list[str] = []

    async def taken_over_at_the_first(step: Step) -> None:
        started.append(step.name)
        if len(started) == 1:
            await lease_taken_over(database, store.id)

    # Well under a watch interval, helm's own work included: no step is watched, and only
    # the check as each starts can stop the attempt.
    quick_steps(monkeypatch, taken_over_at_the_first, share=0.3)

    with pytest.raises(LeaseLost):
        await runner.provision(store.id, KeepAlive())

    assert len(started) < len(PROVISION.steps)
    assert (await load(database, store.id)).status is StoreStatus.PROVISIONING


async def _kept_alive(keep_alive: KeepAlive) -> bool:
    return keep_alive.calls > 0


async def test_cleanup_after_abandonment_completes_even_when_its_steps_outlast_the_watch(
    make_runner: Callable[[RecordingCluster], Runner],
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
) -> None:
    """At realistic speed, uninstalling and deleting a namespace take many watch intervals
    (in production the interval is a third of the ack wait, ~10 s, and deleting a namespace
    takes ~10 s): the clean-up of a failed store, watched against its failed status, must not
    be abandoned in turn."""
    simulated = SimulatedCluster(
        cluster_dir,
        helm_binary=helm_binary,
        time_scale=0.03,  # delete_namespace ~0.3 s: six watch intervals
        faults={"wait_for_rollout": "hang"},
    )
    cluster = RecordingCluster(simulated)
    store = await create_store(api_outbox)
    provision = asyncio.create_task(make_runner(cluster).provision(store.id, KeepAlive()))
    await asyncio.wait_for(cluster.started["wait_for_rollout"].wait(), timeout=30)

    await fail(api_outbox, store.id, "deadline exceeded")
    await asyncio.wait_for(provision, timeout=30)
    await make_runner(cluster).remove(store.id, KeepAlive())

    assert cluster.cancelled == ["wait_for_rollout"]
    assert not await simulated.namespace_exists(store.namespace)
    assert await journal(database, store.id, "clean_up") == [step.name for step in CLEAN_UP.steps]
    assert (await load(database, store.id)).cleaned_up_at is not None


async def test_a_store_failed_before_its_message_was_handled_is_never_provisioned(
    make_runner: Callable[[RecordingCluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
) -> None:
    store = await create_store(api_outbox)
    await fail(api_outbox, store.id, "deadline exceeded")
    recording = RecordingCluster(cluster)
    before = await stream_events(js, store.id)

    await make_runner(recording).provision(store.id, KeepAlive())

    assert recording.calls == []
    assert (await load(database, store.id)).status is StoreStatus.FAILED
    assert await stream_events(js, store.id) == before


async def test_provision_of_a_ready_store_does_nothing(
    make_runner: Callable[[RecordingCluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
) -> None:
    """A message redelivered after the store became ready changes nothing."""
    store = await create_store(api_outbox)
    await make_runner(RecordingCluster(cluster)).provision(store.id, KeepAlive())
    before = await stream_events(js, store.id)
    recording = RecordingCluster(cluster)

    await make_runner(recording).provision(store.id, KeepAlive())

    assert recording.calls == []
    assert (await load(database, store.id)).status is StoreStatus.READY
    assert await stream_events(js, store.id) == before


# -- deletion ------------------------------------------------------------------------------


async def test_delete_takes_a_deleting_store_to_deleted_and_removes_its_namespace(
    make_runner: Callable[[SimulatedCluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
) -> None:
    runner = make_runner(cluster)
    store = await create_store(api_outbox)
    other = await create_store(api_outbox, name="Other Shop")
    for each in (store, other):
        await runner.provision(each.id, KeepAlive())
    other_objects = cluster.object_count(other.namespace)
    await request_deletion(api_outbox, store.id)

    await runner.remove(store.id, KeepAlive())

    deleted = await load(database, store.id)
    assert deleted.status is StoreStatus.DELETED
    assert deleted.deleted_at is not None
    assert not await cluster.namespace_exists(store.namespace)
    assert cluster.object_count(store.namespace) == 0
    assert await journal(database, store.id, "delete") == [step.name for step in DELETE.steps]
    events = await stream_events(js, store.id)
    names = [e.name for e in events]
    after_request = events[names.index(EventName.DELETE_REQUESTED) + 1 :]
    assert progress_of(after_request) == expected_progress("delete", [1, 2, 3], 3)
    assert all(e.data["status"] == "deleting" for e in after_request[:-1])
    assert after_request[-1].name is EventName.DELETED
    assert after_request[-1].data == {"status": "deleted", "actions": []}
    assert names[-1] is EventName.DELETED
    # The other store is untouched.
    assert await cluster.namespace_exists(other.namespace)
    assert cluster.object_count(other.namespace) == other_objects
    assert (await load(database, other.id)).status is StoreStatus.READY


@pytest.mark.parametrize("status", [StoreStatus.READY, StoreStatus.FAILED])
async def test_removal_of_a_store_neither_deleting_nor_left_to_clean_up_does_nothing(
    status: StoreStatus,
    make_runner: Callable[[RecordingCluster], Runner],
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
) -> None:
    """A ready store, or a failed one already cleaned up: a late or repeated order."""
    faults = {} if status is StoreStatus.READY else {"check_storefront": "error"}
    cluster = faulty_cluster(cluster_dir, helm_binary, **faults)
    store = await create_store(api_outbox)
    await make_runner(RecordingCluster(cluster)).provision(store.id, KeepAlive())
    if status is StoreStatus.FAILED:
        await make_runner(RecordingCluster(cluster)).remove(store.id, KeepAlive())
    assert (await load(database, store.id)).status is status
    exists = await cluster.namespace_exists(store.namespace)
    before = await stream_events(js, store.id)
    recording = RecordingCluster(cluster)

    await make_runner(recording).remove(store.id, KeepAlive())

    assert recording.calls == []
    assert (await load(database, store.id)).status is status
    assert await cluster.namespace_exists(store.namespace) is exists
    assert await stream_events(js, store.id) == before


# -- cancelling ------------------------------------------------------------------------------


async def test_a_store_deleted_while_provisioning_stops_and_is_then_deleted_not_made_ready(
    make_runner: Callable[[RecordingCluster], Runner],
    cluster_dir: Path,
    helm_binary: str,
    api_outbox: Outbox,
    database: Database,
    js: JetStreamContext,
) -> None:
    """Deleting a provisioning store cancels it: the provisioning work stops at its next
    watch, leaves the removal to the deletion (which shows its own progress), and the store
    never becomes ready."""
    cluster = RecordingCluster(faulty_cluster(cluster_dir, helm_binary, wait_for_rollout="hang"))
    store = await create_store(api_outbox)
    runner = make_runner(cluster)
    provision = asyncio.create_task(runner.provision(store.id, KeepAlive()))
    await asyncio.wait_for(cluster.started["wait_for_rollout"].wait(), timeout=30)

    await request_deletion(api_outbox, store.id)
    await asyncio.wait_for(provision, timeout=30)
    assert cluster.cancelled == ["wait_for_rollout"]
    assert await journal(database, store.id, "delete") == []  # left to the deletion
    await runner.remove(store.id, KeepAlive())

    deleted = await load(database, store.id)
    assert deleted.status is StoreStatus.DELETED
    assert not await cluster.namespace_exists(store.namespace)
    names = [e.name for e in await stream_events(js, store.id)]
    assert EventName.READY not in names
    assert EventName.FAILED not in names
    assert names[-1] is EventName.DELETED


async def test_a_queued_store_deleted_before_its_message_arrives_is_never_provisioned(
    make_runner: Callable[[RecordingCluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    database: Database,
) -> None:
    recording = RecordingCluster(cluster)
    store = await create_store(api_outbox)
    await request_deletion(api_outbox, store.id)
    runner = make_runner(recording)

    await runner.provision(store.id, KeepAlive())  # the provision order, late
    await runner.remove(store.id, KeepAlive())

    assert "ensure_namespace" not in recording.started
    assert (await load(database, store.id)).status is StoreStatus.DELETED


def test_a_step_of_minutes_falls_in_a_bucket_of_its_own_size() -> None:
    """The dashboard's p95 by step is read from these buckets: Prometheus's default ones end
    at 10 s, and every rollout on a real cluster read as 10 s."""
    STEP_SECONDS.labels("provision", "a_step_of_four_minutes").observe(240)
    buckets = {
        float(sample.labels["le"]): sample.value
        for metric in STEP_SECONDS.collect()
        for sample in metric.samples
        if sample.name.endswith("_bucket") and sample.labels["step"] == "a_step_of_four_minutes"
    }
    smallest_holding_it = min(le for le, count in buckets.items() if count == 1)
    assert 240 <= smallest_holding_it <= 600
