"""The step journal and the progress a store shows: a row per completed step (so a
redelivered message resumes after it), with its place in the recipe and how long it ran (from
which the API estimates how long the next stores' steps take), and a progress event when a
step starts and when it completes (step n of m), written with what the step learned about the
store.

These are the statements the platform runs most, a transaction for every step of every
store, so each transaction is one plain statement: the store's row written with ``UPDATE …
WHERE status = …``, and the step and its events inserted by the same statement, only if the
row was. A store failed or deleted meanwhile gets no progress of work it no longer wants
(:class:`StoreAbandoned`), however quickly its steps run. Through the ORM (a locked load,
then a flush of the row, the step and its events) a store's steps cost the provisioner a
fifth to a third more CPU; as a statement for each table, with a ping before each
transaction, a tenth more (a store's provisioning: 56.6 against 51.5 ms, measured in turns).

The events go into the statement, so they are made before the row is written: from the row
as the runner last had it, with the step's changes. What they show of a store (its owner,
its correlation id, the actions it accepts) changes by the runner's own writes while the
store's lease is held, with its status, which the UPDATE's condition catches, or when its
deletion is asked for while the work runs (``delete`` leaves its actions). Should the row
written differ there, the transaction is undone before anything is committed or published
(:class:`StoreChangedMeanwhile`). Differing in its actions alone, it is written again, once,
from the row as it now is: the step's work is done, and never repeated for it; otherwise the
step is tried again.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.trace import Span
from sqlalchemy import TextualSelect, text
from sqlmodel import col, select

from woostore_provisioner.recipe import Learned, Recipe
from woostore_provisioner.retries import StoreAbandoned, StoreChangedMeanwhile
from woostore_shared import tracing
from woostore_shared.db import Database
from woostore_shared.events import Progress, StepInfo
from woostore_shared.models import Store, StoreStep, utcnow
from woostore_shared.outbox import Outbox
from woostore_shared.transitions import actions_of
from woostore_shared.unit_of_work import EVENT_COLUMNS, EVENT_ROWS, UnitOfWork

_STORE_COLUMNS = Store.__table__.columns  # type: ignore[attr-defined]


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

    async def started(self, store: Store, recipe: Recipe, step: StepInfo) -> Store:
        """Show ``step`` started on ``store`` (the row as the runner last had it); returns
        the row as it now is."""

        async def write(uow: UnitOfWork, store: Store) -> Store:
            changes = _changes(_shown(recipe, step, step.index - 1))
            expected = store.model_copy(update=changes)
            uow.announce(expected, _progress(recipe, step, completed=step.index - 1))
            return await _advance(uow, recipe, expected, changes)

        return await self._written(store, write)

    async def waiting(
        self, store: Store, recipe: Recipe, step: StepInfo, cause: str | None
    ) -> None:
        """The started ``step`` waits on the cluster, for ``cause`` (None: no longer known)."""

        async def write(uow: UnitOfWork, store: Store) -> Store:
            changes = _changes({"waiting_cause": cause})
            expected = store.model_copy(update=changes)
            uow.announce(expected, _progress(recipe, step, step.index - 1, cause=cause))
            return await _advance(uow, recipe, expected, changes)

        await self._written(store, write)

    async def completed(
        self,
        store: Store,
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

        async def write(uow: UnitOfWork, store: Store) -> Store:
            changes = _changes({**(learned or {}), **shown})
            expected = store.model_copy(update=changes)
            uow.announce(expected, _progress(recipe, step, completed=step.index))
            if next_step is not None:
                with tracing.inside(span, end=False):  # its event carries its step's span
                    uow.announce(expected, _progress(recipe, following, following.index - 1))
            return await _advance(uow, recipe, expected, changes, (step, seconds))

        return await self._written(store, write)

    async def _written(
        self, store: Store, write: Callable[[UnitOfWork, Store], Awaitable[Store]]
    ) -> Store:
        """``write`` in a unit of work, its events made from ``store``; should the row offer
        other actions now (see above), written again from the row as it now is. Another
        owner or correlation id would be another attempt's: the step is tried again."""
        try:
            async with UnitOfWork.begin(self.outbox) as uow:
                return await write(uow, store)
        except StoreChangedMeanwhile:
            async with self.db.session() as session:
                now = await session.get(Store, store.id)
            if now is None or _as_announced(now)[:2] != _as_announced(store)[:2]:
                raise
            async with UnitOfWork.begin(self.outbox) as uow:
                return await write(uow, now)


def _changes(changes: dict[str, Any]) -> dict[str, Any]:
    return {**changes, "updated_at": utcnow()}  # before the events' times


async def _advance(
    uow: UnitOfWork,
    recipe: Recipe,
    expected: Store,
    changes: dict[str, Any],
    step: tuple[StepInfo, float] | None = None,
) -> Store:
    """Write ``changes`` to the store's row if it still has the recipe's status, with the
    events announced (made from ``expected``, the row as it should now be) and the completed
    ``step`` with its seconds, in one statement; return the row as it now is: a copy, outside
    the unit's session."""
    statement = _advance_statement(tuple(sorted(changes)), journals_step=step is not None)
    values = {f"set_{name}": value for name, value in changes.items()}
    if step is not None:
        info, seconds = step
        values |= {"phase": recipe.phase, "name": info.name, "position": info.index,
                   "seconds": seconds}  # fmt: skip
    connection = await uow.session.connection()  # plain SQL: no ORM work around it
    found = await connection.execute(
        statement,
        {**values, **uow.take_events(), "store_id": expected.id, "status": recipe.status.value},
    )
    row = found.one_or_none()
    if row is None:  # failed, deleting or gone meanwhile: nothing was written
        raise StoreAbandoned
    written = Store(**row._mapping)
    if _as_announced(written) != _as_announced(expected):
        raise StoreChangedMeanwhile(expected.id)  # undoes the unit: nothing is published
    return written


def _as_announced(store: Store) -> tuple[object, ...]:
    """What a store's events show of the store (``UnitOfWork.announce``)."""
    return store.tenant_id, store.correlation_id, actions_of(store)


@functools.cache
def _advance_statement(columns: tuple[str, ...], journals_step: bool) -> TextualSelect:
    """The statement writing these columns of the store (names checked against the model;
    each value bound as ``set_<name>``), the unit's events, and if ``journals_step`` the
    step; returning every column of the store in the model's order, which is how the result
    is read. The step and the events are inserted only if the store's row was updated. One
    statement for each set of columns a step writes: a handful."""
    assignments = ", ".join(f"{_STORE_COLUMNS[name].name} = :set_{name}" for name in columns)
    returned = ", ".join(column.name for column in _STORE_COLUMNS)
    journalled = (
        ", journalled AS (INSERT INTO store_steps"
        " (store_id, phase, name, completed_at, position, seconds)"
        " SELECT id, :phase, :name, updated_at, :position, :seconds FROM advanced)"
    )
    return text(
        f"WITH advanced AS (UPDATE stores SET {assignments}"  # noqa: S608  (column names from the model, values bound)
        f" WHERE id = :store_id AND status = :status RETURNING {returned})"
        f"{journalled if journals_step else ''}"
        f", announced AS (INSERT INTO {EVENT_COLUMNS} {EVENT_ROWS}"
        " WHERE EXISTS (SELECT FROM advanced))"
        f" SELECT {returned} FROM advanced"
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
