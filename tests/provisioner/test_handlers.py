"""How each lane's handler settles a work order, on faststream's in-memory test broker: the
router and its middleware as they run in the provisioner, the runner replaced by a stand-in
that raises what a case needs. (The fault suite runs the same rules through real processes.)

The delivery count comes from the JetStream reply subject the server would set, so the
middleware reads it exactly as it does from a real message.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from faststream.nats import NatsBroker, TestNatsBroker
from faststream.nats.testing import PatchedMessage

from woostore_cluster import TransientClusterError
from woostore_provisioner.handlers import build_router
from woostore_provisioner.retries import (
    DEFAULT_RETRY_DELAY,
    HAND_BACK_DELAY,
    ShuttingDown,
    StoreBusy,
)
from woostore_shared.models import utcnow
from woostore_shared.settings import Settings
from woostore_shared.topology import WORK_STREAM, declare
from woostore_shared.work import MAX_DELIVER, Lane, WorkOrder, work_subject


@dataclass
class StandInRunner:
    """Does no work: raises ``error`` (if any) from every lane, and records what it was asked."""

    error: Exception | None = None
    give_up_error: Exception | None = None
    calls: list[tuple[str, uuid.UUID]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    @asynccontextmanager
    async def delivery(self) -> AsyncIterator[None]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1

    async def _work(self, lane: str, store_id: uuid.UUID) -> None:
        self.calls.append((lane, store_id))
        if self.error is not None:
            raise self.error

    async def provision(
        self, store_id: uuid.UUID, keep_alive: Callable[[], Awaitable[None]]
    ) -> None:
        await self._work("provision", store_id)

    async def personalise(
        self, store_id: uuid.UUID, keep_alive: Callable[[], Awaitable[None]]
    ) -> None:
        await self._work("personalise", store_id)

    async def change(self, store_id: uuid.UUID, keep_alive: Callable[[], Awaitable[None]]) -> None:
        await self._work("change", store_id)

    async def remove(self, store_id: uuid.UUID, keep_alive: Callable[[], Awaitable[None]]) -> None:
        await self._work("removal", store_id)

    async def give_up(
        self, store_id: uuid.UUID, reason: str, keep_alive: Callable[[], Awaitable[None]]
    ) -> None:
        self.calls.append(("give_up: " + reason, store_id))
        if self.give_up_error is not None:
            raise self.give_up_error


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float | None]]:
    """How each delivered message was settled: ("ack", None), ("nak", delay) or ("term", None)."""
    record: list[tuple[str, float | None]] = []

    async def ack(self: PatchedMessage) -> None:
        record.append(("ack", None))

    async def nak(self: PatchedMessage, delay: float | None = None) -> None:
        record.append(("nak", delay))

    async def term(self: PatchedMessage) -> None:
        record.append(("term", None))

    monkeypatch.setattr(PatchedMessage, "ack", ack)
    monkeypatch.setattr(PatchedMessage, "nak", nak)
    monkeypatch.setattr(PatchedMessage, "term", term)
    return record


async def deliver(
    runner: StandInRunner, lane: Lane, deliveries: int = 1, body: Any = None
) -> uuid.UUID:
    """Deliver one work order on ``lane`` (its ``deliveries``-th delivery) to the router."""
    broker = NatsBroker()
    broker.include_router(build_router(declare(Settings())))
    broker.context.set_global("runner", runner)
    store_id = uuid.uuid4()
    order = WorkOrder(
        id=uuid.uuid4(), lane=lane, store_id=store_id, correlation_id="c0ffee", time=utcnow()
    )
    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(
            order.model_dump_json().encode() if body is None else body,  # as the outbox sends it
            work_subject(lane, store_id),
            stream=WORK_STREAM,
            # The reply subject JetStream gives a delivered message: its metadata.
            reply_to=f"$JS.ACK.{WORK_STREAM}.{lane.value}.{deliveries}.1.1.1700000000000000000.0",
        )
    return store_id


@pytest.mark.parametrize("lane", list(Lane))
async def test_done_work_is_acked_on_every_lane(
    lane: Lane, settled: list[tuple[str, float | None]]
) -> None:
    runner = StandInRunner()

    store_id = await deliver(runner, lane)

    assert runner.calls == [(lane.value, store_id)]
    assert settled == [("ack", None)]
    assert (runner.in_flight, runner.most_in_flight) == (0, 1)  # counted, then released


@pytest.mark.parametrize(
    ("lane", "error", "deliveries", "expected"),
    [
        # A duplicate: another attempt holds the store.
        (Lane.PROVISION, StoreBusy(), 1, [("ack", None)]),
        # Shutting down: handed back soon, for another replica.
        (Lane.CHANGE, ShuttingDown(), 1, [("nak", HAND_BACK_DELAY)]),
        # Transient: retried after the delay the cluster asked for, or the default.
        (Lane.PROVISION, TransientClusterError("api server busy", 7), 1, [("nak", 7)]),
        (Lane.REMOVAL, RuntimeError("surprise"), 2, [("nak", DEFAULT_RETRY_DELAY)]),
        # Removal never gives up, not even on the last delivery.
        (Lane.REMOVAL, RuntimeError("surprise"), MAX_DELIVER, [("nak", DEFAULT_RETRY_DELAY)]),
    ],
)
async def test_a_failed_delivery_is_settled_as_the_retry_rules_say(
    lane: Lane,
    error: Exception,
    deliveries: int,
    expected: list[tuple[str, float | None]],
    settled: list[tuple[str, float | None]],
) -> None:
    runner = StandInRunner(error=error)

    await deliver(runner, lane, deliveries)

    assert settled == expected
    assert not any(call.startswith("give_up") for call, _ in runner.calls)
    assert runner.in_flight == 0


@pytest.mark.parametrize("lane", [Lane.PROVISION, Lane.CHANGE])
async def test_the_last_delivery_ends_the_recipe_as_it_declares_then_acks(
    lane: Lane, settled: list[tuple[str, float | None]]
) -> None:
    runner = StandInRunner(error=RuntimeError("the API server keeps resetting"))

    store_id = await deliver(runner, lane, MAX_DELIVER)

    assert runner.calls == [
        (lane.value, store_id),
        (
            f"give_up: gave up after {MAX_DELIVER} attempts: the API server keeps resetting",
            store_id,
        ),
    ]
    assert settled == [("ack", None)]


async def test_giving_up_a_store_another_attempt_holds_leaves_it_to_that_attempt(
    settled: list[tuple[str, float | None]],
) -> None:
    runner = StandInRunner(error=RuntimeError("boom"), give_up_error=StoreBusy())

    await deliver(runner, Lane.PROVISION, MAX_DELIVER)

    assert settled == [("ack", None)]


async def test_a_message_that_is_not_a_work_order_is_terminated_and_never_worked_on(
    settled: list[tuple[str, float | None]],
) -> None:
    runner = StandInRunner()

    await deliver(runner, Lane.PROVISION, body=b'{"store_id": "not a uuid"}')

    assert runner.calls == []
    assert settled == [("term", None)]
    assert runner.most_in_flight == 0
