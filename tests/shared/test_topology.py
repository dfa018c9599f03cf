"""The JetStream topology is declared from code and verified, whatever state the server is in."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError
from structlog.testing import capture_logs

from woostore_shared.settings import Settings
from woostore_shared.topology import (
    STREAM_NAME,
    WORK_STREAM,
    TopologyMismatch,
    declare,
    ensure_topology,
)
from woostore_shared.work import Lane

PROVISION = "provision"


async def test_provision_consumer_limits_in_flight_across_replicas(
    nats_client: Client, settings: Settings
) -> None:
    info = await nats_client.jetstream().consumer_info(WORK_STREAM, PROVISION)
    assert info.config.max_ack_pending == settings.max_stores_in_flight == 2
    assert info.config.filter_subject == "work.provision.*"


async def test_work_and_store_events_travel_on_separate_streams(nats_client: Client) -> None:
    js = nats_client.jetstream()
    assert (await js.stream_info(STREAM_NAME)).config.subjects == ["store.>"]
    assert (await js.stream_info(WORK_STREAM)).config.subjects == ["work.>"]
    consumers = {c.name for c in await js.consumers_info(WORK_STREAM)}
    assert consumers == {lane.value for lane in Lane}


def test_every_stream_keeps_as_many_copies_as_the_setting_says() -> None:
    """The embedded server is one node (a stream with more copies would not start there);
    the production profile asks for three."""
    for replicas in (1, 3):
        topology = declare(Settings(jetstream_replicas=replicas))
        assert [stream.num_replicas for stream in topology.streams] == [replicas, replicas]


async def test_a_consumer_changed_by_hand_is_put_back(
    nats_client: Client, settings: Settings
) -> None:
    js = nats_client.jetstream()
    drifted = ConsumerConfig(
        durable_name=PROVISION,
        filter_subject="work.provision.*",
        max_ack_pending=50,
        ack_wait=30,
        max_deliver=5,
    )
    await js.add_consumer(WORK_STREAM, drifted)
    assert (await js.consumer_info(WORK_STREAM, PROVISION)).config.max_ack_pending == 50

    await ensure_topology(js, declare(settings))

    assert (await js.consumer_info(WORK_STREAM, PROVISION)).config.max_ack_pending == 2


async def test_the_work_consumers_of_older_versions_are_retired_and_others_kept(
    nats_client: Client, settings: Settings
) -> None:
    """Older versions took work off the store events; a program's own consumer that happens
    to share a retired name, but follows something else, is left alone."""
    js = nats_client.jetstream()
    old = ConsumerConfig(durable_name="provisioner", filter_subject="store.requested.*")
    await js.add_consumer(STREAM_NAME, old)
    own = ConsumerConfig(durable_name="maintainer", filter_subject="store.ready.*")
    await js.add_consumer(STREAM_NAME, own)

    await ensure_topology(js, declare(settings))

    with pytest.raises(NotFoundError):
        await js.consumer_info(STREAM_NAME, "provisioner")
    assert (await js.consumer_info(STREAM_NAME, "maintainer")).config.filter_subject == (
        "store.ready.*"
    )
    await js.delete_consumer(STREAM_NAME, "maintainer")


async def test_a_setting_the_server_cannot_change_is_reported(
    nats_client: Client, settings: Settings
) -> None:
    js = nats_client.jetstream()
    topology = declare(settings)
    # Turning a durable pull consumer into a push consumer is not an update the server allows.
    await js.delete_consumer(WORK_STREAM, PROVISION)
    await js.add_consumer(
        WORK_STREAM,
        ConsumerConfig(
            durable_name=PROVISION,
            filter_subject="work.provision.*",
            deliver_subject="elsewhere",
            max_ack_pending=9,
        ),
    )
    with pytest.raises(TopologyMismatch, match="consumer provision"):
        await ensure_topology(js, topology)


def test_the_event_stream_is_bounded_in_bytes_as_the_setting_says() -> None:
    """A busy platform must not fill the NATS volume: the event stream drops its oldest
    events past the bound, as past 30 days; work orders are left unbounded (one a change)."""
    facts, work = declare(Settings(events_stream_max_bytes=5 << 20)).streams
    assert (facts.name, facts.max_bytes, facts.discard) == (STREAM_NAME, 5 << 20, "old")
    assert work.max_bytes == -1
    assert declare(Settings()).streams[0].max_bytes == 1 << 30


async def test_an_events_bound_changed_by_setting_is_applied_to_the_stream(
    nats_client: Client, settings: Settings
) -> None:
    js = nats_client.jetstream()
    assert (await js.stream_info(STREAM_NAME)).config.max_bytes == settings.events_stream_max_bytes
    smaller = settings.model_copy(update={"events_stream_max_bytes": 3 << 20})

    await ensure_topology(js, declare(smaller))

    assert (await js.stream_info(STREAM_NAME)).config.max_bytes == 3 << 20


async def test_a_lowered_bound_says_how_many_events_it_dropped(
    nats_client: Client, settings: Settings
) -> None:
    """JetStream drops the oldest events at once when the bound falls below what the stream
    holds; the operator who lowered it is told how much went."""
    js = nats_client.jetstream()
    roomy = settings.model_copy(update={"events_stream_max_bytes": 8 << 20})
    await ensure_topology(js, declare(roomy))
    for n in range(40):  # 2 MiB of events
        await js.publish(f"store.progress.s{n}", b"x" * (50 << 10), stream=STREAM_NAME)
    held = (await js.stream_info(STREAM_NAME)).state

    with capture_logs() as logs:
        await ensure_topology(
            js, declare(roomy.model_copy(update={"events_stream_max_bytes": 1 << 20}))
        )

    left = (await js.stream_info(STREAM_NAME)).state
    assert 0 < left.messages < held.messages
    (said,) = [e for e in logs if e["event"].startswith("stream bound lowered")]
    assert said["log_level"] == "warning"
    assert said["stream"] == STREAM_NAME
    assert said["dropped_messages"] == held.messages - left.messages
    assert said["max_bytes"] == 1 << 20
    with capture_logs() as again:  # nothing dropped, nothing said
        await ensure_topology(js, declare(roomy))
    assert not [e for e in again if e["event"].startswith("stream bound lowered")]
