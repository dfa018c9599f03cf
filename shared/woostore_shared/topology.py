"""The JetStream topology, declared once: the stream of store events (facts, ``STORES``), the
stream of work orders (commands, ``WORK``) and the durable consumer of each work lane.

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
    StreamInfo,
)
from nats.js.errors import NotFoundError, ServerError

from woostore_shared.logging import get_logger
from woostore_shared.settings import Settings
from woostore_shared.work import MAX_DELIVER, WORK_SUBJECT_PREFIX, Lane, lane_subjects

log = get_logger(__name__)

STREAM_NAME = "STORES"
WORK_STREAM = "WORK"
# Core NATS, in no stream: a key stopped working (revoked, its tenant suspended or deleted),
# and every notifier checks the keys of its event streams now rather than at its next sweep
# (30 s), ending theirs and forgetting the keys it remembered. One lost is that sweep's.
ACCESS_WITHDRAWN = "woostore.access.withdrawn"
REMOVALS_IN_FLIGHT = 4
# A claim is seconds of cluster work an owner waits for: never queued behind cold work.
PERSONALISATIONS_IN_FLIGHT = 4
# The work consumers of versions that took their work off the store events, by their filter;
# removed from STORES (the reaper sends fresh orders for whatever they held). A program's own
# consumer of the same name but another filter is left alone.
RETIRED_CONSUMERS = {
    "provisioner": "store.requested.*",
    "deprovisioner": "store.delete_requested.*",
    "maintainer": "store.change_requested.*",
}
_DAY = 24 * 3600


class TopologyMismatch(RuntimeError):
    pass


def consumer_of(lane: Lane) -> str:
    """A lane's durable consumer on ``WORK`` is named for the lane."""
    return lane.value


@dataclass(frozen=True)
class Topology:
    streams: tuple[StreamConfig, ...]
    consumers: tuple[ConsumerConfig, ...]  # all on WORK_STREAM

    def consumer(self, lane: Lane) -> ConsumerConfig:
        return next(c for c in self.consumers if c.durable_name == consumer_of(lane))


def declare(settings: Settings) -> Topology:
    facts = StreamConfig(
        name=STREAM_NAME,
        subjects=["store.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=30 * _DAY,  # the SSE replay window
        # And a bound in bytes, so a busy platform never fills the NATS volume: the oldest
        # events go first, as with age. The work stream stays small (one order a change).
        max_bytes=settings.events_stream_max_bytes,
        duplicate_window=120,  # seconds: the outbox relay retries well within it
        num_replicas=settings.jetstream_replicas,  # consumers take their stream's by default
    )
    work = StreamConfig(
        name=WORK_STREAM,
        subjects=[f"{WORK_SUBJECT_PREFIX}.>"],
        storage=StorageType.FILE,
        # Limits, not work-queue retention: the reaper compares a store's last order with its
        # consumer's ack floor to tell work in flight from work lost, whatever its deliveries.
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=7 * _DAY,  # an order older than that is sent again by the reaper, if needed
        max_bytes=-1,  # unbounded: one small order a change, and none may be dropped early
        duplicate_window=120,
        num_replicas=settings.jetstream_replicas,
    )

    def work_queue(lane: Lane, in_flight: int) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=consumer_of(lane),
            filter_subject=lane_subjects(lane),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait_seconds,
            max_deliver=MAX_DELIVER,
            # A limit over every subscriber bound to this consumer: it holds across replicas.
            max_ack_pending=in_flight,
        )

    return Topology(
        streams=(facts, work),
        consumers=(
            work_queue(Lane.PROVISION, settings.max_stores_in_flight),
            # Claims have their own lane: a claimed store never waits for cold provisioning.
            work_queue(Lane.PERSONALISE, PERSONALISATIONS_IN_FLIGHT),
            # Removals get their own lane so they never queue behind creations.
            work_queue(Lane.REMOVAL, REMOVALS_IN_FLIGHT),
            # So do changes to ready stores: an upgrade never waits for the creation queue.
            work_queue(Lane.CHANGE, settings.max_stores_in_flight),
        ),
    )


_CHECKED_CONSUMER_FIELDS = (
    "filter_subject",
    "ack_policy",
    "ack_wait",
    "max_deliver",
    "max_ack_pending",
)
_CHECKED_STREAM_FIELDS = (
    "subjects",
    "storage",
    "retention",
    "max_age",
    "max_bytes",
    "duplicate_window",
    "num_replicas",
)


def _differences(want: object, have: object, fields: tuple[str, ...]) -> list[str]:
    return [
        f"{name}: want {getattr(want, name)!r}, have {getattr(have, name)!r}"
        for name in fields
        if getattr(want, name) != getattr(have, name)
    ]


async def _ensure_stream(js: JetStreamContext, stream: StreamConfig) -> list[str]:
    assert stream.name is not None
    try:
        info = await js.stream_info(stream.name)
    except NotFoundError:
        have = (await js.add_stream(stream)).config
    else:
        have = info.config
        if _differences(stream, have, _CHECKED_STREAM_FIELDS):
            updated = await js.update_stream(stream)  # the server's answer: config and state
            _say_what_a_smaller_bound_dropped(info, updated)
            have = updated.config
    return [
        f"stream {stream.name}: {p}" for p in _differences(stream, have, _CHECKED_STREAM_FIELDS)
    ]


def _say_what_a_smaller_bound_dropped(before: StreamInfo, after: StreamInfo) -> None:
    """JetStream drops a stream's oldest messages at once when its bound is lowered below
    what it holds: the operator who lowered it should hear how much went, not find out from a
    shorter replay."""
    dropped = before.state.messages - after.state.messages
    if dropped > 0:
        log.warning(
            "stream bound lowered: its oldest messages were dropped",
            stream=after.config.name,
            dropped_messages=dropped,
            dropped_bytes=before.state.bytes - after.state.bytes,
            max_bytes=after.config.max_bytes,
            first_sequence=after.state.first_seq,
        )


async def _retire_consumers(js: JetStreamContext) -> None:
    for durable, filter_subject in RETIRED_CONSUMERS.items():
        try:
            info = await js.consumer_info(STREAM_NAME, durable)
            if info.config.filter_subject == filter_subject:
                await js.delete_consumer(STREAM_NAME, durable)
        except NotFoundError:
            pass


async def ensure_topology(js: JetStreamContext, topology: Topology) -> None:
    problems: list[str] = []
    for stream in topology.streams:
        problems += await _ensure_stream(js, stream)
    await _retire_consumers(js)
    for consumer in topology.consumers:
        assert consumer.durable_name is not None
        try:
            existing = await js.consumer_info(WORK_STREAM, consumer.durable_name)
        except NotFoundError:
            await js.add_consumer(WORK_STREAM, consumer)
        else:
            drift = _differences(consumer, existing.config, _CHECKED_CONSUMER_FIELDS)
            if drift or existing.config.deliver_subject:
                try:  # the server applies it as an update where the change is allowed
                    await js.add_consumer(WORK_STREAM, consumer)
                except ServerError as error:
                    problems.append(
                        f"consumer {consumer.durable_name}: cannot be updated"
                        f" ({error.description}); delete it to let it be recreated"
                    )
                    continue
        have = (await js.consumer_info(WORK_STREAM, consumer.durable_name)).config
        problems += [
            f"consumer {consumer.durable_name}: {p}"
            for p in _differences(consumer, have, _CHECKED_CONSUMER_FIELDS)
        ]
    if problems:
        raise TopologyMismatch("; ".join(problems))
