"""The step journal and the progress a store shows: a row per completed step (so a
redelivered message resumes after it), with its place in the recipe and how long it ran (from
which the API estimates how long the next stores' steps take), and a progress event when a
step starts and when it completes (step n of m), written with what the step learned about the
store.

Both check, under the store's row lock, that the store still has the recipe's status: a
store failed or deleted meanwhile gets no progress of work it no longer wants
(:class:`StoreAbandoned`), however quickly its steps run."""

from __future__ import annotations

import uuid

from opentelemetry.trace import Span
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from woostore_provisioner.recipe import Learned, Recipe
from woostore_provisioner.retries import StoreAbandoned
from woostore_shared import tracing
from woostore_shared.db import Database
from woostore_shared.events import Progress, StepInfo
from woostore_shared.models import Store, StoreStep
from woostore_shared.outbox import Outbox
from woostore_shared.unit_of_work import UnitOfWork


class Journal:
    def __init__(self, db: Database, outbox: Outbox) -> None:
        self.db = db
        self.outbox = outbox

    async def done(self, store_id: uuid.UUID, recipe: Recipe) -> set[str]:
        """The names of the recipe's steps already completed for this store."""
        async with self.db.session() as session:
            rows = await session.exec(
                select(StoreStep.name)
                .where(col(StoreStep.store_id) == store_id)
                .where(col(StoreStep.phase) == recipe.phase)
            )
            return set(rows)

    async def started(self, store_id: uuid.UUID, recipe: Recipe, step: StepInfo) -> None:
        async with UnitOfWork.begin(self.outbox) as uow:
            store = await _still_under(recipe, uow.session, store_id)
            _show(store, recipe, step, completed=step.index - 1)
            uow.emit(store, _progress(recipe, step, completed=step.index - 1))

    async def waiting(
        self, store_id: uuid.UUID, recipe: Recipe, step: StepInfo, cause: str | None
    ) -> None:
        """The started ``step`` waits on the cluster, for ``cause`` (None: no longer known)."""
        async with UnitOfWork.begin(self.outbox) as uow:
            store = await _still_under(recipe, uow.session, store_id)
            store.waiting_cause = cause
            uow.emit(store, _progress(recipe, step, completed=step.index - 1, cause=cause))

    async def completed(
        self,
        store_id: uuid.UUID,
        recipe: Recipe,
        step: StepInfo,
        learned: Learned | None,
        seconds: float,
        next_step: tuple[StepInfo, Span] | None = None,
    ) -> Store:
        """Journal the step with what it learned and how many ``seconds`` it ran, and start
        ``next_step`` (with its span) in the same transaction: a step then costs one commit
        and one round of publishing, not two. Returns the store as it now is."""
        async with UnitOfWork.begin(self.outbox) as uow:
            store = await _still_under(recipe, uow.session, store_id)
            for column, value in (learned or {}).items():
                setattr(store, column, value)
            uow.session.add(
                StoreStep(
                    store_id=store_id,
                    phase=recipe.phase,
                    name=step.name,
                    position=step.index,
                    seconds=seconds,
                )
            )
            _show(store, recipe, step, completed=step.index)
            uow.emit(store, _progress(recipe, step, completed=step.index))
            if next_step is not None:
                following, span = next_step
                _show(store, recipe, following, completed=following.index - 1)
                with tracing.inside(span, end=False):  # its event carries its step's span
                    uow.emit(store, _progress(recipe, following, completed=following.index - 1))
        return store


async def _still_under(recipe: Recipe, session: AsyncSession, store_id: uuid.UUID) -> Store:
    """The store, its row locked, if it still has the recipe's status."""
    store = await session.get(Store, store_id, with_for_update=True, populate_existing=True)
    if store is None:
        raise LookupError(f"store {store_id} not found")
    if store.status is not recipe.status:
        raise StoreAbandoned
    return store


def _show(store: Store, recipe: Recipe, step: StepInfo, completed: int) -> None:
    if not recipe.shows_steps:
        return
    store.step_name, store.step_title = step.name, step.title
    store.step_index, store.step_total = step.index, step.total
    store.progress = round(completed / step.total, 4)
    store.waiting_cause = None


def _progress(recipe: Recipe, step: StepInfo, completed: int, cause: str | None = None) -> Progress:
    return Progress(
        status=recipe.status,
        phase=recipe.phase,
        step=step,
        state="completed" if completed == step.index else "started",
        progress=round(completed / step.total, 4),
        cause=cause,
    )
