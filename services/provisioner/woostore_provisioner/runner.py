"""Runs a recipe for one store: journal, progress events, and what to do when a step fails.

- Finished steps are recorded in the step journal; a redelivered message resumes after them.
- Progress is announced when a step starts and when it completes (step n of m).
- Work on a store happens under a lease (``stores.lease_owner``), so a redelivered message
  never runs beside a slow original; the lease is renewed while the work goes on.
- While a step runs, the message's ack timer is kept alive and the store's status is
  watched: if the reaper failed the store (deadline), the step is cancelled, not left running.
  A step that outlives its own timeout is a permanent error.
- On shutdown the step in flight is cancelled (steps are idempotent) and the message handed
  back at once, for another replica to resume.
- A permanent error fails the store with a readable reason and cleans its resources up;
  anything else propagates, for the handler to retry with a delay.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from prometheus_client import Counter, Histogram
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from woostore_cluster import Cluster, PermanentClusterError, TransientClusterError
from woostore_provisioner import retries
from woostore_provisioner.recipe import DELETE, PROVISION, ROLLBACK, UPGRADE, Step, StoreJob
from woostore_provisioner.retries import (
    TRANSIENT_ERRORS,
    LeaseLost,
    ShuttingDown,
    StoreAbandoned,
    StoreBusy,
)
from woostore_shared import lifecycle
from woostore_shared.db import Database
from woostore_shared.events import Progress, StepInfo
from woostore_shared.lifecycle import InvalidTransition
from woostore_shared.logging import get_logger
from woostore_shared.models import Store, StoreStatus, StoreStep, utcnow
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import CredentialCipher

log = get_logger(__name__)
KeepAlive = Callable[[], Awaitable[None]]
Phase = Literal["provision", "upgrade", "rollback", "delete"]
_STATUS_OF_PHASE: dict[Phase, StoreStatus] = {
    "provision": StoreStatus.PROVISIONING,
    "upgrade": StoreStatus.UPDATING,
    "rollback": StoreStatus.UPDATING,
    "delete": StoreStatus.DELETING,
}
CHANGES: dict[str, tuple[Phase, tuple[Step, ...]]] = {
    "upgrade": ("upgrade", UPGRADE),
    "rollback": ("rollback", ROLLBACK),
}

STEP_SECONDS = Histogram(
    "woostore_step_duration_seconds", "Time each recipe step took", ["phase", "step"]
)
STORES_FINISHED = Counter(
    "woostore_stores_finished_total", "Stores that reached an end", ["outcome"]
)


_backoff = wait_exponential(multiplier=0.5, max=10)


def _retry_wait(state: RetryCallState) -> float:
    """The delay the cluster asked for, if it did; otherwise exponential back-off."""
    error = state.outcome.exception() if state.outcome else None
    return error.delay if isinstance(error, TransientClusterError) else _backoff(state)


@dataclass(frozen=True)
class Attempt:
    """One delivery's work on one store."""

    store_id: uuid.UUID
    owner: str
    keep_alive: KeepAlive


class Runner:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        cluster: Cluster,
        *,
        chart: Path,
        base_domain: str,
        cipher: CredentialCipher,
        watch_interval: float,
        values_files: Sequence[Path] = (),
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.cluster = cluster
        self.chart = chart
        self.values_files = tuple(values_files)
        self.base_domain = base_domain
        self.cipher = cipher
        self.watch_interval = watch_interval
        self.lease_ttl = timedelta(seconds=3 * watch_interval)
        self.stopping = asyncio.Event()
        self._deliveries = 0
        self._settled = asyncio.Condition()

    @asynccontextmanager
    async def delivery(self) -> AsyncIterator[None]:
        """Wraps a handler's whole work on one message, its settling included, so shutdown
        can wait for every message to be acked or handed back before the connection closes."""
        self._deliveries += 1
        try:
            yield
        finally:
            self._deliveries -= 1
            async with self._settled:
                self._settled.notify_all()

    async def stop(self, grace: float) -> None:
        """Cut the steps in flight and wait (up to ``grace`` seconds) for their messages to be
        settled: handed back at once, instead of after a whole AckWait."""
        self.stopping.set()
        async with self._settled:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait_for(lambda: self._deliveries == 0), grace)

    async def provision(self, store_id: uuid.UUID, keep_alive: KeepAlive) -> None:
        await self._attempt(store_id, keep_alive, self._provision)

    async def delete(self, store_id: uuid.UUID, keep_alive: KeepAlive) -> None:
        await self._attempt(store_id, keep_alive, self._delete)

    async def change(self, store_id: uuid.UUID, keep_alive: KeepAlive) -> None:
        """Upgrade or roll back a store (``store.change``); it ends ready either way."""
        await self._attempt(store_id, keep_alive, self._change)

    async def give_up_change(self, store_id: uuid.UUID, reason: str, keep_alive: KeepAlive) -> None:
        """End the change under way as failed: the store runs what helm left deployed."""

        async def give_up(attempt: Attempt) -> None:
            await self._end_change(attempt.store_id, failure=reason)

        await self._attempt(store_id, keep_alive, give_up)

    async def give_up(self, store_id: uuid.UUID, reason: str, keep_alive: KeepAlive) -> None:
        """Fail the store with ``reason`` and remove what was made for it."""

        async def give_up(attempt: Attempt) -> None:
            await self._give_up(attempt, reason)

        await self._attempt(store_id, keep_alive, give_up)

    async def _fail(self, store_id: uuid.UUID, reason: str) -> None:
        try:
            async with self.outbox.transaction() as tx:
                store = await lifecycle.fail(tx, store_id, reason)
        except InvalidTransition:
            return  # it moved on meanwhile (failed by its deadline, deleted)
        STORES_FINISHED.labels("failed").inc()
        log.warning("store failed", reason=reason, step=store.step_name)

    async def _provision(self, attempt: Attempt) -> None:
        store = await self._load(attempt.store_id)
        if store.status is StoreStatus.FAILED:
            # Failed while this message waited (deadline): what is left is the clean-up.
            await self._run(store, DELETE, "delete", attempt, announce=False)
            return
        if store.status not in (StoreStatus.QUEUED, StoreStatus.PROVISIONING):
            log.info("nothing to provision", status=store.status.value)
            return
        if store.status is StoreStatus.QUEUED:
            async with self.outbox.transaction() as tx:
                store = await lifecycle.start(tx, attempt.store_id)
        try:
            await self._run(store, PROVISION, "provision", attempt, announce=True)
        except StoreAbandoned:
            # Reload: the clean-up is watched against the status the store has now (failed),
            # not the provisioning one this work started with.
            store = await self._load(attempt.store_id)
            if store.status is StoreStatus.DELETING:
                # Cancelled: its own deletion message removes it, with progress shown.
                log.info("provisioning cancelled: the store is being deleted")
                return
            log.warning("provisioning abandoned: the store was failed meanwhile; cleaning up")
            await self._run(store, DELETE, "delete", attempt, announce=False)
            return
        except PermanentClusterError as error:
            await self._give_up(attempt, str(error))
            return
        url = self._storefront_url(store)
        try:
            async with self.outbox.transaction() as tx:
                await lifecycle.make_ready(
                    tx, attempt.store_id, storefront_url=url, admin_url=url + "/wp-admin/"
                )
        except InvalidTransition as moved_on:
            # Deleted or failed between the last step and now: that wins over ready.
            log.info("store not made ready", status=moved_on.current.value)
            return
        STORES_FINISHED.labels("ready").inc()
        log.info("store ready", url=url)

    async def _delete(self, attempt: Attempt) -> None:
        store = await self._load(attempt.store_id)
        if store.status is not StoreStatus.DELETING:
            log.info("nothing to delete", status=store.status.value)
            return
        await self._run(store, DELETE, "delete", attempt, announce=True)
        async with self.outbox.transaction() as tx:
            await lifecycle.mark_deleted(tx, attempt.store_id)
        STORES_FINISHED.labels("deleted").inc()
        log.info("store deleted")

    async def _change(self, attempt: Attempt) -> None:
        store = await self._load(attempt.store_id)
        if store.status is not StoreStatus.UPDATING or store.change not in CHANGES:
            log.info("nothing to change", status=store.status.value, change=store.change)
            return
        phase, steps = CHANGES[store.change]
        try:
            await self._run(store, steps, phase, attempt, announce=True)
        except PermanentClusterError as error:
            await self._end_change(attempt.store_id, failure=str(error))
            return
        await self._end_change(attempt.store_id, failure=None)

    async def _end_change(self, store_id: uuid.UUID, failure: str | None) -> None:
        try:
            async with self.outbox.transaction() as tx:
                change = await lifecycle.end_change(tx, store_id, failure)
        except InvalidTransition:
            return  # ended already (the reaper gave it up, say)
        STORES_FINISHED.labels("changed" if failure is None else "change_failed").inc()
        log.info("store changed", change=change, failure=failure)

    async def _give_up(self, attempt: Attempt, reason: str) -> None:
        await self._fail(attempt.store_id, reason)
        store = await self._load(attempt.store_id)
        await self._run(store, DELETE, "delete", attempt, announce=False)

    # -- internals -------------------------------------------------------------------------

    async def _attempt(
        self,
        store_id: uuid.UUID,
        keep_alive: KeepAlive,
        work: Callable[[Attempt], Awaitable[None]],
    ) -> None:
        """Run ``work`` under the store's lease. Transient errors (the cluster, PostgreSQL or
        NATS unreachable for a moment) are retried here, holding the message and so the
        store's slot, rather than handing it back and letting another store start."""
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

        async def sleep_alive(seconds: float) -> None:
            deadline = asyncio.get_running_loop().time() + seconds
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                if self.stopping.is_set():
                    raise ShuttingDown
                await asyncio.sleep(min(left, self.watch_interval))
                with suppress(*TRANSIENT_ERRORS):  # the next try reports a lasting outage
                    await keep_alive()

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_ERRORS),
            stop=stop_after_attempt(retries.IN_PLACE_ATTEMPTS)
            | stop_after_delay(retries.IN_PLACE_SECONDS),
            wait=_retry_wait,
            sleep=sleep_alive,
            before_sleep=lambda state: log.warning(
                "transient error, retrying in place",
                attempt=state.attempt_number,
                error=repr(state.outcome.exception()) if state.outcome else None,
            ),
            reraise=True,
        )
        async for try_ in retrying:
            with try_:
                async with self._lease(store_id, keep_alive, owner) as attempt:
                    await work(attempt)

    @asynccontextmanager
    async def _lease(
        self, store_id: uuid.UUID, keep_alive: KeepAlive, owner: str
    ) -> AsyncIterator[Attempt]:
        async with self.db.session() as session:
            taken = await session.exec(
                update(Store)
                .where(col(Store.id) == store_id)
                .where(
                    col(Store.lease_owner).is_(None)
                    | (col(Store.lease_owner) == owner)  # this attempt, trying again
                    | (col(Store.lease_expires_at) < utcnow())
                )
                .values(lease_owner=owner, lease_expires_at=utcnow() + self.lease_ttl)
            )
            await session.commit()
        if taken.rowcount != 1:
            raise StoreBusy
        try:
            yield Attempt(store_id, owner, keep_alive)
        finally:
            with suppress(Exception):  # best effort: an unreleased lease simply expires
                async with self.db.session() as session:
                    await session.exec(
                        update(Store)
                        .where(col(Store.id) == store_id)
                        .where(col(Store.lease_owner) == owner)
                        .values(lease_owner=None, lease_expires_at=None)
                    )
                    await session.commit()

    async def _renew(self, attempt: Attempt) -> StoreStatus:
        """Extend the lease; the store's status comes back with it."""
        async with self.db.session() as session:
            renewed = await session.exec(
                update(Store)
                .where(col(Store.id) == attempt.store_id)
                .where(col(Store.lease_owner) == attempt.owner)
                .values(lease_expires_at=utcnow() + self.lease_ttl)
                .returning(col(Store.status))
            )
            status = renewed.scalar_one_or_none()
            await session.commit()
        if status is None:
            raise LeaseLost
        return StoreStatus(status)

    async def _run(
        self,
        store: Store,
        steps: Sequence[Step],
        phase: Phase,
        attempt: Attempt,
        *,
        announce: bool,
    ) -> None:
        job = self._job(store)
        done = await self._journal(store.id, phase)
        expected = store.status
        for index, step in enumerate(steps, start=1):
            if step.name in done:
                continue
            info = StepInfo(name=step.name, title=step.title, index=index, total=len(steps))
            if announce:
                await self._announce(store.id, phase, info, completed=index - 1)
            with STEP_SECONDS.labels(phase, step.name).time():
                await self._watched(step, job, attempt, expected)
            await self._record(store.id, phase, info, job, announce=announce)
            job.updates.clear()

    async def _watched(
        self, step: Step, job: StoreJob, attempt: Attempt, expected: StoreStatus
    ) -> None:
        """Run the step; meanwhile keep the message and the lease alive, and stop when the
        store moves on, the step outlives its timeout, or the process is stopping."""
        task = asyncio.ensure_future(step.run(job))
        stopping = asyncio.ensure_future(self.stopping.wait())
        give_up_at = asyncio.get_running_loop().time() + step.timeout
        try:
            while True:
                await asyncio.wait(
                    {task, stopping}, timeout=self.watch_interval, return_when="FIRST_COMPLETED"
                )
                if task.done():
                    task.result()
                    return
                if stopping.done():
                    raise ShuttingDown
                if asyncio.get_running_loop().time() > give_up_at:
                    raise PermanentClusterError(
                        f"step {step.name} did not finish within {step.timeout:.0f} s"
                    )
                await attempt.keep_alive()
                if await self._renew(attempt) is not expected:
                    raise StoreAbandoned
        finally:
            stopping.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _announce(
        self, store_id: uuid.UUID, phase: Phase, step: StepInfo, completed: int
    ) -> None:
        async with self.outbox.transaction() as tx:
            store = await self._load(store_id, tx.session)
            self._show_step(store, step, completed)
            tx.emit(store, self._progress(phase, step, completed))

    async def _record(
        self, store_id: uuid.UUID, phase: Phase, step: StepInfo, job: StoreJob, *, announce: bool
    ) -> None:
        async with self.outbox.transaction() as tx:
            store = await self._load(store_id, tx.session)
            for column, value in job.updates.items():
                setattr(store, column, value)
            tx.session.add(StoreStep(store_id=store_id, phase=phase, name=step.name))
            if announce:
                self._show_step(store, step, completed=step.index)
                tx.emit(store, self._progress(phase, step, completed=step.index))
            else:
                tx.session.add(store)

    @staticmethod
    def _show_step(store: Store, step: StepInfo, completed: int) -> None:
        store.step_name, store.step_title = step.name, step.title
        store.step_index, store.step_total = step.index, step.total
        store.progress = round(completed / step.total, 4)

    @staticmethod
    def _progress(phase: Phase, step: StepInfo, completed: int) -> Progress:
        return Progress(
            status=_STATUS_OF_PHASE[phase],
            phase=phase,
            step=step,
            state="completed" if completed == step.index else "started",
            progress=round(completed / step.total, 4),
        )

    async def _journal(self, store_id: uuid.UUID, phase: Phase) -> set[str]:
        async with self.db.session() as session:
            rows = await session.exec(
                select(StoreStep.name)
                .where(col(StoreStep.store_id) == store_id)
                .where(col(StoreStep.phase) == phase)
            )
            return set(rows)

    async def _load(self, store_id: uuid.UUID, session: AsyncSession | None = None) -> Store:
        """Read the store; inside a transaction (``session``), lock its row until commit."""
        if session is None:
            async with self.db.session() as own:
                found = await own.get(Store, store_id)
        else:
            found = await session.get(Store, store_id, with_for_update=True)
        if found is None:
            raise LookupError(f"store {store_id} not found")
        return found

    def _storefront_url(self, store: Store) -> str:
        return f"http://{store.slug}.{self.base_domain}"

    def _job(self, store: Store) -> StoreJob:
        url = self._storefront_url(store)
        return StoreJob(
            store_id=str(store.id),
            name=store.name,
            slug=store.slug,
            namespace=store.namespace,
            host=url.removeprefix("http://"),
            storefront_url=url,
            cluster=self.cluster,
            chart=self.chart,
            cipher=self.cipher,
            values_files=self.values_files,
            rollback_revision=store.rollback_revision,
        )
