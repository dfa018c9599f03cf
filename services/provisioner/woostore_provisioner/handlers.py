"""The provisioner's JetStream handlers, one per work lane (see ``woostore_shared.work``).

A handler only hands its work order to the runner. What every delivery needs besides that
is :class:`WorkDelivery`, the router's middleware: the delivery is counted (shutdown waits
for it to be settled), every log line names its store, the work is a span of the trace the
order carries (tracing.py), and the message is settled by hand:
acked once the work is done (or nothing was left to do); otherwise as ``retries.settle``
decides: a duplicate acked, a stopping process's work handed back, a transient error
retried with a delay, and on the last delivery the recipe under way ended as it declares
(removal never gives up). A message that is not a work order is terminated, never retried.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, cast

from faststream import BaseMiddleware, Context
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsMessage, NatsRouter, PullSub
from faststream.nats.subscriber import LogicSubscriber
from pydantic import ValidationError

from woostore_provisioner.retries import LeaseLost, Outcome, StoreBusy, settle
from woostore_provisioner.runner import Runner
from woostore_shared import tracing
from woostore_shared.logging import bind_store, get_logger
from woostore_shared.topology import WORK_STREAM, Topology, consumer_of
from woostore_shared.work import Lane, WorkOrder

log = get_logger(__name__)


class WorkDelivery(BaseMiddleware):
    """Counts, logs and settles each delivery of a work order; see the module doc."""

    async def consume_scope(
        self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
    ) -> Any:
        try:
            order = WorkOrder.model_validate_json(msg.body)
        except ValidationError as error:
            log.error("not a work order: dropped", error=str(error)[:300])
            await msg.reject()
            return None
        runner: Runner = self.context.get("runner")
        trace = {"traceparent": order.traceparent, "tracestate": order.tracestate}
        async with runner.delivery():
            with (
                bind_store(order.store_id, order.correlation_id),
                tracing.continued(trace, f"work {order.lane.value}", store_id=str(order.store_id)),
            ):
                try:
                    result = await call_next(msg)
                except Exception as error:  # every failure is settled explicitly
                    # The router subscribes to JetStream only: a NATS message, with nak delays.
                    await _settle(cast(NatsMessage, msg), order, error, runner)
                    return None
                await msg.ack()
                return result


async def _settle(msg: NatsMessage, order: WorkOrder, error: Exception, runner: Runner) -> None:
    """End a delivery whose work raised ``error``, as ``retries.settle`` decides."""
    deliveries = msg.raw_message.metadata.num_delivered or 1
    settlement = settle(error, deliveries, can_give_up=order.lane is not Lane.REMOVAL)
    match settlement.outcome:
        case Outcome.ACK:
            log.info("another attempt owns the store; dropping this delivery", error=repr(error))
            await msg.ack()
        case Outcome.HAND_BACK:
            log.info("handing the store back: shutting down")
            await msg.nack(delay=settlement.delay)
        case Outcome.RETRY:
            log.warning("will retry", error=str(error), delivery=deliveries, delay=settlement.delay)
            await msg.nack(delay=settlement.delay)
        case Outcome.GIVE_UP:
            with suppress(StoreBusy, LeaseLost):  # another attempt is on it: let it finish
                await runner.give_up(
                    order.store_id, f"gave up after {deliveries} attempts: {error}", msg.in_progress
                )
            await msg.ack()


def build_router(topology: Topology) -> NatsRouter:
    router = NatsRouter(middlewares=[WorkDelivery])
    stream = JStream(WORK_STREAM, declare=False)  # declared by woostore_shared.topology

    def work_queue(lane: Lane, description: str) -> LogicSubscriber[Any]:
        """Bind to the lane's durable consumer, with as many workers as it lets be in flight."""
        consumer = topology.consumer(lane)
        return router.subscriber(
            consumer.filter_subject or "",
            stream=stream,
            durable=consumer_of(lane),
            pull_sub=PullSub(timeout=5),
            max_workers=consumer.max_ack_pending or 1,
            ack_policy=AckPolicy.MANUAL,  # WorkDelivery settles every message
            description=description,
        )

    @work_queue(Lane.PROVISION, "Provision a store; the consumer caps stores in flight.")
    async def on_provision(order: WorkOrder, msg: NatsMessage, runner: Runner = Context()) -> None:
        await runner.provision(order.store_id, keep_alive=msg.in_progress)

    @work_queue(Lane.PERSONALISE, "Make a store claimed from the warm pool its owner's.")
    async def on_personalise(
        order: WorkOrder, msg: NatsMessage, runner: Runner = Context()
    ) -> None:
        await runner.personalise(order.store_id, keep_alive=msg.in_progress)

    @work_queue(Lane.CHANGE, "Upgrade or roll back a ready store.")
    async def on_change(order: WorkOrder, msg: NatsMessage, runner: Runner = Context()) -> None:
        await runner.change(order.store_id, keep_alive=msg.in_progress)

    @work_queue(Lane.REMOVAL, "Delete a store, or clean up after a failed one.")
    async def on_removal(order: WorkOrder, msg: NatsMessage, runner: Runner = Context()) -> None:
        await runner.remove(order.store_id, keep_alive=msg.in_progress)

    return router
