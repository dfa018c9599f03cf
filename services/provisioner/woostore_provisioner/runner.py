"""Runs a recipe for one store: journal, progress events, and what to do when a step fails.

- Finished steps are recorded in the step journal; a redelivered message resumes after them.
- Progress is announced when a step starts and when it completes (step n of m).
- While a step runs, the message's ack timer is kept alive and the store's status is
  watched: if the reaper failed the store (deadline), the step is cancelled, not left running.
- A permanent error fails the store with a readable reason and cleans its resources up;
  anything else propagates, for the handler to retry with a delay.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Literal

from prometheus_client import Counter, Histogram
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from woostore_provisioner.cluster import Cluster, PermanentClusterError
from woostore_provisioner.recipe import DELETE, PROVISION, Step, StoreJob
from woostore_shared.db import Database
from woostore_shared.events import Deleted, Failed, Progress, Ready, StepInfo
from woostore_shared.lifecycle import transition
from woostore_shared.logging import get_logger
from woostore_shared.models import Store, StoreStatus, StoreStep
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import CredentialCipher

log = get_logger(__name__)
KeepAlive = Callable[[], Awaitable[None]]
Phase = Literal["provision", "delete"]

STEP_SECONDS = Histogram(
    "woostore_step_duration_seconds", "Time each recipe step took", ["phase", "step"]
)
STORES_FINISHED = Counter(
    "woostore_stores_finished_total", "Stores that reached an end", ["outcome"]
)


class StoreAbandoned(Exception):
    """The store left the status this work was for (failed by its deadline, say)."""


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
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.cluster = cluster
        self.chart = chart
        self.base_domain = base_domain
        self.cipher = cipher
        self.watch_interval = watch_interval

    async def provision(self, store_id: uuid.UUID, keep_alive: KeepAlive) -> None:
        store = await self._load(store_id)
        if store.status is StoreStatus.FAILED:
            # Failed while this message waited (deadline): what is left is the clean-up.
            await self._run(store, DELETE, "delete", keep_alive, announce=False)
            return
        if store.status not in (StoreStatus.QUEUED, StoreStatus.PROVISIONING):
            log.info("nothing to provision", status=store.status.value)
            return
        if store.status is StoreStatus.QUEUED:
            async with self.outbox.transaction() as tx:
                store = await self._load(store_id, tx.session)
                transition(store, StoreStatus.PROVISIONING)
                tx.session.add(store)
        try:
            await self._run(store, PROVISION, "provision", keep_alive, announce=True)
        except StoreAbandoned:
            log.warning("provisioning abandoned: the store was failed meanwhile; cleaning up")
            # Reload: the clean-up is watched against the status the store has now (failed),
            # not the provisioning one this work started with.
            store = await self._load(store_id)
            await self._run(store, DELETE, "delete", keep_alive, announce=False)
            return
        except PermanentClusterError as error:
            await self.give_up(store_id, str(error), keep_alive)
            return
        async with self.outbox.transaction() as tx:
            store = await self._load(store_id, tx.session)
            store.storefront_url = self._storefront_url(store)
            store.admin_url = store.storefront_url + "/wp-admin/"
            transition(store, StoreStatus.READY)
            tx.emit(store, Ready(storefront_url=store.storefront_url, admin_url=store.admin_url))
        STORES_FINISHED.labels("ready").inc()
        log.info("store ready", url=store.storefront_url)

    async def delete(self, store_id: uuid.UUID, keep_alive: KeepAlive) -> None:
        store = await self._load(store_id)
        if store.status is not StoreStatus.DELETING:
            log.info("nothing to delete", status=store.status.value)
            return
        await self._run(store, DELETE, "delete", keep_alive, announce=True)
        async with self.outbox.transaction() as tx:
            store = await self._load(store_id, tx.session)
            transition(store, StoreStatus.DELETED)
            tx.emit(store, Deleted())
        STORES_FINISHED.labels("deleted").inc()
        log.info("store deleted")

    async def give_up(self, store_id: uuid.UUID, reason: str, keep_alive: KeepAlive) -> None:
        """Fail the store with ``reason`` and remove what was made for it."""
        await self.fail(store_id, reason)
        store = await self._load(store_id)
        await self._run(store, DELETE, "delete", keep_alive, announce=False)

    async def fail(self, store_id: uuid.UUID, reason: str) -> None:
        async with self.outbox.transaction() as tx:
            store = await self._load(store_id, tx.session)
            if store.status not in (StoreStatus.QUEUED, StoreStatus.PROVISIONING):
                return
            step = store.step_name
            store.failure_reason = reason
            transition(store, StoreStatus.FAILED)
            tx.emit(store, Failed(reason=reason, step=step))
        STORES_FINISHED.labels("failed").inc()
        log.warning("store failed", reason=reason, step=step)

    # -- internals -------------------------------------------------------------------------

    async def _run(
        self,
        store: Store,
        steps: Sequence[Step],
        phase: Phase,
        keep_alive: KeepAlive,
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
                await self._watched(step.run(job), store.id, expected, keep_alive)
            await self._record(store.id, phase, info, job, announce=announce)
            job.updates.clear()

    async def _watched(
        self,
        work: Awaitable[None],
        store_id: uuid.UUID,
        expected: StoreStatus,
        keep_alive: KeepAlive,
    ) -> None:
        """Run ``work``; meanwhile keep the message alive and stop if the store moves on."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                finished, _ = await asyncio.wait({task}, timeout=self.watch_interval)
                if finished:
                    task.result()
                    return
                await keep_alive()
                if (await self._load(store_id)).status is not expected:
                    raise StoreAbandoned
        finally:
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
        status = StoreStatus.PROVISIONING if phase == "provision" else StoreStatus.DELETING
        return Progress(
            status=status,
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
        )
