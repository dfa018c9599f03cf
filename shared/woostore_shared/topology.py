"""The JetStream topology, declared once: the stream of store events and its durable consumers.

Neither nats-py nor faststream changes a consumer that already exists, so ``ensure_topology``
creates what is missing, updates what differs, and then verifies the result.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError, ServerError

from woostore_shared.settings import Settings

STREAM_NAME = "STORES"
PROVISION_CONSUMER = "provisioner"
DELETE_CONSUMER = "deprovisioner"
CHANGE_CONSUMER = "maintainer"  # upgrades and rollbacks of ready stores
MAX_DELIVER = 5
DELETIONS_IN_FLIGHT = 4
_DAY = 24 * 3600


class TopologyMismatch(RuntimeError):
    pass


@dataclass(frozen=True)
class Topology:
    stream: StreamConfig
    consumers: tuple[ConsumerConfig, ...]

    def consumer(self, durable: str) -> ConsumerConfig:
        return next(c for c in self.consumers if c.durable_name == durable)


def declare(settings: Settings) -> Topology:
    stream = StreamConfig(
        name=STREAM_NAME,
        subjects=["store.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=30 * _DAY,  # the SSE replay window
        duplicate_window=120,  # seconds: the outbox relay retries well within it
    )

    def work_queue(durable: str, subject: str, in_flight: int) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=durable,
            filter_subject=subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait_seconds,
            max_deliver=MAX_DELIVER,
            # A limit over every subscriber bound to this consumer: it holds across replicas.
            max_ack_pending=in_flight,
        )

    return Topology(
        stream=stream,
        consumers=(
            work_queue(PROVISION_CONSUMER, "store.requested.*", settings.max_stores_in_flight),
            # Deletions get their own lane so they never queue behind creations.
            work_queue(DELETE_CONSUMER, "store.delete_requested.*", DELETIONS_IN_FLIGHT),
            # So do changes to ready stores: an upgrade never waits for the creation queue.
            work_queue(CHANGE_CONSUMER, "store.change_requested.*", settings.max_stores_in_flight),
        ),
    )


_CHECKED_CONSUMER_FIELDS = (
    "filter_subject",
    "ack_policy",
    "ack_wait",
    "max_deliver",
    "max_ack_pending",
)
_CHECKED_STREAM_FIELDS = ("subjects", "storage", "retention", "max_age", "duplicate_window")


def _differences(want: object, have: object, fields: tuple[str, ...]) -> list[str]:
    return [
        f"{name}: want {getattr(want, name)!r}, have {getattr(have, name)!r}"
        for name in fields
        if getattr(want, name) != getattr(have, name)
    ]


async def ensure_topology(js: JetStreamContext, topology: Topology) -> None:
    try:
        info = await js.stream_info(STREAM_NAME)
    except NotFoundError:
        await js.add_stream(topology.stream)
    else:
        if _differences(topology.stream, info.config, _CHECKED_STREAM_FIELDS):
            await js.update_stream(topology.stream)
    stream_problems = _differences(
        topology.stream, (await js.stream_info(STREAM_NAME)).config, _CHECKED_STREAM_FIELDS
    )

    problems = [f"stream {STREAM_NAME}: {p}" for p in stream_problems]
    for consumer in topology.consumers:
        assert consumer.durable_name is not None
        try:
            existing = await js.consumer_info(STREAM_NAME, consumer.durable_name)
        except NotFoundError:
            await js.add_consumer(STREAM_NAME, consumer)
        else:
            drift = _differences(consumer, existing.config, _CHECKED_CONSUMER_FIELDS)
            if drift or existing.config.deliver_subject:
                try:  # the server applies it as an update where the change is allowed
                    await js.add_consumer(STREAM_NAME, consumer)
                except ServerError as error:
                    problems.append(
                        f"consumer {consumer.durable_name}: cannot be updated"
                        f" ({error.description}); delete it to let it be recreated"
                    )
                    continue
        have = (await js.consumer_info(STREAM_NAME, consumer.durable_name)).config
        problems += [
            f"consumer {consumer.durable_name}: {p}"
            for p in _differences(consumer, have, _CHECKED_CONSUMER_FIELDS)
        ]
    if problems:
        raise TopologyMismatch("; ".join(problems))
