"""The provisioner's JetStream handlers, one per work lane (see ``woostore_shared.work``):
thin, they decode a work order, delegate to the runner and settle the message.

Acknowledgement is manual and deliberate: success (or nothing left to do) is acked, and a
failure is settled as ``retries.settle`` decides (a duplicate acked, a stopping process's
work handed back, a transient error retried with a delay, the last delivery given up: the
recipe under way ends as it declares). Removal never gives up.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

from faststream import Context
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsMessage, NatsRouter, PullSub
from faststream.nats.subscriber import LogicSubscriber

from woostore_provisioner.retries import Outcome, StoreBusy, settle
from woostore_provisioner.runner import Runner
from woostore_shared.logging import bind_store, get_logger
from woostore_shared.topology import WORK_STREAM, Topology, consumer_of
from woostore_shared.work import Lane, WorkOrder

log = get_logger(__name__)

GiveUp = Callable[[uuid.UUID, str, Callable[[], Awaitable[None]]], Awaitable[None]]


async def _settle(
    msg: NatsMessage, order: WorkOrder, error: Exception, give_up: GiveUp | None
) -> None:
    """End a delivery whose work raised ``error``, as ``retries.settle`` decides."""
    deliveries = msg.raw_message.metadata.num_delivered or 1
    settlement = settle(error, deliveries, can_give_up=give_up is not None)
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
            assert give_up is not None  # settle gives up only where it may
            with suppress(StoreBusy):  # another attempt is on it after all: let it finish
                await give_up(
                    order.store_id, f"gave up after {deliveries} attempts: {error}", msg.in_progress
                )
            await msg.ack()


def build_router(topology: Topology) -> NatsRouter:
    router = NatsRouter()
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
            ack_policy=AckPolicy.MANUAL,
            description=description,
        )

    @work_queue(Lane.PROVISION, "Provision a store; the consumer caps stores in flight.")
    async def on_provision(order: WorkOrder, msg: NatsMessage, runner: Runner = Context()) -> None:
        async with runner.delivery():
            with bind_store(order.store_id, order.correlation_id):
                try:
                    await runner.provision(order.store_id, keep_alive=msg.in_progress)
                except Exception as error:  # every failure is settled explicitly; see module doc
                    await _settle(msg, order, error, runner.give_up)
                    return
                await msg.ack()

    @work_queue(Lane.CHANGE, "Upgrade or roll back a ready store.")
    async def on_change(order: WorkOrder, msg: NatsMessage, runner: Runner = Context()) -> None:
        async with runner.delivery():
            with bind_store(order.store_id, order.correlation_id):
                try:
                    await runner.change(order.store_id, keep_alive=msg.in_progress)
                except Exception as error:  # every failure is settled explicitly; see module doc
                    await _settle(msg, order, error, runner.give_up)
                    return
                await msg.ack()

    @work_queue(Lane.REMOVAL, "Delete a store, or clean up after a failed one.")
    async def on_removal(order: WorkOrder, msg: NatsMessage, runner: Runner = Context()) -> None:
        async with runner.delivery():
            with bind_store(order.store_id, order.correlation_id):
                try:
                    await runner.remove(order.store_id, keep_alive=msg.in_progress)
                except Exception as error:  # settled explicitly; removal never gives up
                    await _settle(msg, order, error, give_up=None)
                    return
                await msg.ack()

    return router
