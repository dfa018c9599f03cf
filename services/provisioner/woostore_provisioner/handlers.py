"""The provisioner's JetStream handlers: thin, they decode, delegate and settle the message.

Acknowledgement is manual and deliberate:
- success, or nothing left to do: ack;
- another attempt still holds the store after the runner waited for its lease: a duplicate
  delivery, ack; if that attempt dies, the reaper re-publishes the work;
- the process is stopping: nak at once, so another replica resumes the store;
- an error worth retrying: retried in place by the runner (holding the store's slot), then
  nak with a delay, until the consumer's delivery limit;
- the last delivery failed: the store is failed with the reason (a change to a ready store
  ends as failed, the store staying ready), then ack (never stuck).
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

from woostore_cluster import TransientClusterError
from woostore_provisioner.runner import LeaseLost, Runner, ShuttingDown, StoreBusy
from woostore_shared.events import CloudEvent
from woostore_shared.logging import bind_store, get_logger
from woostore_shared.topology import (
    CHANGE_CONSUMER,
    DELETE_CONSUMER,
    MAX_DELIVER,
    PROVISION_CONSUMER,
    STREAM_NAME,
    Topology,
)

log = get_logger(__name__)
DEFAULT_RETRY_DELAY = 5.0
# A nak without delay can be redelivered at once to this very process, whose pull request is
# still open while it shuts down, and be lost there until AckWait; a short delay lets it go
# to another replica.
HAND_BACK_DELAY = 2.0


GiveUp = Callable[[uuid.UUID, str, Callable[[], Awaitable[None]]], Awaitable[None]]


async def _settle_failure(
    msg: NatsMessage, give_up: GiveUp, event: CloudEvent, error: Exception
) -> None:
    if isinstance(error, StoreBusy | LeaseLost):
        log.info(
            "another attempt owns the store; dropping this delivery", error=type(error).__name__
        )
        await msg.ack()
        return
    if isinstance(error, ShuttingDown):
        log.info("handing the store back: shutting down")
        await msg.nack(delay=HAND_BACK_DELAY)
        return
    deliveries = msg.raw_message.metadata.num_delivered or 1
    delay = error.delay if isinstance(error, TransientClusterError) else DEFAULT_RETRY_DELAY
    if deliveries < MAX_DELIVER:
        log.warning("will retry", error=str(error), delivery=deliveries, delay=delay)
        await msg.nack(delay=delay)
        return
    with suppress(StoreBusy):  # another attempt is on it after all: let it finish
        await give_up(
            event.store_id, f"gave up after {deliveries} attempts: {error}", msg.in_progress
        )
    await msg.ack()


def build_router(topology: Topology) -> NatsRouter:
    router = NatsRouter()
    stream = JStream(STREAM_NAME, declare=False)  # declared by woostore_shared.topology

    def work_queue(durable: str, description: str) -> LogicSubscriber[Any]:
        """Bind to a declared durable consumer, with as many workers as it lets be in flight."""
        consumer = topology.consumer(durable)
        return router.subscriber(
            consumer.filter_subject or "",
            stream=stream,
            durable=durable,
            pull_sub=PullSub(timeout=5),
            max_workers=consumer.max_ack_pending or 1,
            ack_policy=AckPolicy.MANUAL,
            description=description,
        )

    @work_queue(PROVISION_CONSUMER, "Provision a store; the consumer caps stores in flight.")
    async def on_store_requested(
        event: CloudEvent, msg: NatsMessage, runner: Runner = Context()
    ) -> None:
        async with runner.delivery():
            with bind_store(event.store_id, event.correlationid):
                try:
                    await runner.provision(event.store_id, keep_alive=msg.in_progress)
                except Exception as error:  # every failure is settled explicitly; see module doc
                    await _settle_failure(msg, runner.give_up, event, error)
                    return
                await msg.ack()

    @work_queue(CHANGE_CONSUMER, "Upgrade or roll back a ready store.")
    async def on_change_requested(
        event: CloudEvent, msg: NatsMessage, runner: Runner = Context()
    ) -> None:
        async with runner.delivery():
            with bind_store(event.store_id, event.correlationid):
                try:
                    await runner.change(event.store_id, keep_alive=msg.in_progress)
                except Exception as error:  # every failure is settled explicitly; see module doc
                    await _settle_failure(msg, runner.give_up_change, event, error)
                    return
                await msg.ack()

    @work_queue(DELETE_CONSUMER, "Delete a store and everything it owns.")
    async def on_delete_requested(
        event: CloudEvent, msg: NatsMessage, runner: Runner = Context()
    ) -> None:
        async with runner.delivery():
            with bind_store(event.store_id, event.correlationid):
                try:
                    await runner.delete(event.store_id, keep_alive=msg.in_progress)
                except (StoreBusy, LeaseLost):
                    await msg.ack()  # a duplicate delivery; see the module doc
                except ShuttingDown:
                    await msg.nack(delay=HAND_BACK_DELAY)
                except Exception as error:  # retried with a delay; deletion never gives up
                    log.warning("deletion will retry", error=str(error))
                    await msg.nack(delay=DEFAULT_RETRY_DELAY)
                else:
                    await msg.ack()

    return router
