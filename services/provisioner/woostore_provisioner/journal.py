"""The step journal and the progress a store shows: a row per completed step (so a
redelivered message resumes after it), with its place in the recipe and how long it ran (from
which the API estimates how long the next stores' steps take), and a progress event when a
step starts and when it completes (step n of m), written with what the step learned about the
store.

Each writes the store's row with one ``UPDATE … WHERE status = …``: a store failed or
deleted meanwhile gets no progress of work it no longer wants (:class:`StoreAbandoned`),
however quickly its steps run, and the row stays locked until the commit.

These are the statements the platform runs most, a transaction for every step of every
store, so they are plain SQL: through the ORM (a locked load, then a flush of the row, the
step and its events) a store's steps cost the provisioner a fifth to a third more CPU,
publishing included, and PostgreSQL up to a tenth more."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from opentelemetry.trace import Span
from sqlalchemy import TextualSelect, text
from sqlmodel import col, select

from woostore_provisioner.recipe import Learned, Recipe
from woostore_provisioner.retries import StoreAbandoned
from woostore_shared import tracing
from woostore_shared.db import Database
from woostore_shared.events import Progress, StepInfo
from woostore_shared.models import Store, StoreStep, utcnow
from woostore_shared.outbox import Outbox
from woostore_shared.unit_of_work import UnitOfWork

_STORE_COLUMNS = Store.__table__.columns  # type: ignore[attr-defined]

_JOURNAL_STEP = text(
    "INSERT INTO store_steps (store_id, phase, name, completed_at, position, seconds)"
    " VALUES (:store_id, :phase, :name, :completed_at, :position, :seconds)"
)


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
            store = await _advance(uow, recipe, store_id, _shown(recipe, step, step.index - 1))
            uow.announce(store, _progress(recipe, step, completed=step.index - 1))

    async def waiting(
        self, store_id: uuid.UUID, recipe: Recipe, step: StepInfo, cause: str | None
    ) -> None:
        """The started ``step`` waits on the cluster, for ``cause`` (None: no longer known)."""
        async with UnitOfWork.begin(self.outbox) as uow:
            store = await _advance(uow, recipe, store_id, {"waiting_cause": cause})
            uow.announce(store, _progress(recipe, step, completed=step.index - 1, cause=cause))

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
        if next_step is None:
            shown = _shown(recipe, step, completed=step.index)
        else:
            following, span = next_step
            shown = _shown(recipe, following, completed=following.index - 1)
        async with UnitOfWork.begin(self.outbox) as uow:
            store = await _advance(uow, recipe, store_id, {**(learned or {}), **shown})
            await (await uow.session.connection()).execute(
                _JOURNAL_STEP,
                {
                    "store_id": store_id,
                    "phase": recipe.phase,
                    "name": step.name,
                    "completed_at": store.updated_at,
                    "position": step.index,
                    "seconds": seconds,
                },
            )
            uow.announce(store, _progress(recipe, step, completed=step.index))
            if next_step is not None:
                with tracing.inside(span, end=False):  # its event carries its step's span
                    uow.announce(store, _progress(recipe, following, following.index - 1))
        return store


async def _advance(
    uow: UnitOfWork, recipe: Recipe, store_id: uuid.UUID, changes: dict[str, Any]
) -> Store:
    """Write ``changes`` to the store's row if it still has the recipe's status, and return
    the row as it now is: a copy, outside the unit's session (its changes are written)."""
    changes = {**changes, "updated_at": utcnow()}
    statement = _advance_statement(tuple(sorted(changes)))
    values = {f"set_{name}": value for name, value in changes.items()}
    connection = await uow.session.connection()  # plain SQL: no ORM work around it
    found = await connection.execute(
        statement, {**values, "store_id": store_id, "status": recipe.status.value}
    )
    row = found.one_or_none()
    if row is None:  # failed, deleting or gone meanwhile
        raise StoreAbandoned
    return Store(**row._mapping)


@functools.cache
def _advance_statement(columns: tuple[str, ...]) -> TextualSelect:
    """The UPDATE writing these columns (names checked against the model; each value bound
    as ``set_<name>``), returning every column in the model's order, which is how the result
    is read. One per set of columns a step writes: a handful."""
    assignments = ", ".join(f"{_STORE_COLUMNS[name].name} = :set_{name}" for name in columns)
    returned = ", ".join(column.name for column in _STORE_COLUMNS)
    return text(
        f"UPDATE stores SET {assignments} WHERE id = :store_id AND status = :status"  # noqa: S608  (column names from the model, values bound)
        f" RETURNING {returned}"
    ).columns(*_STORE_COLUMNS)


def _shown(recipe: Recipe, step: StepInfo, completed: int) -> dict[str, Any]:
    """What the store's row shows of a recipe's step: none for a recipe that shows none."""
    if not recipe.shows_steps:
        return {}
    return {
        "step_name": step.name,
        "step_title": step.title,
        "step_index": step.index,
        "step_total": step.total,
        "progress": round(completed / step.total, 4),
        "waiting_cause": None,
    }


def _progress(recipe: Recipe, step: StepInfo, completed: int, cause: str | None = None) -> Progress:
    return Progress(
        status=recipe.status,
        phase=recipe.phase,
        step=step,
        state="completed" if completed == step.index else "started",
        progress=round(completed / step.total, 4),
        cause=cause,
    )
