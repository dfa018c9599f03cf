"""The JetStream topology is declared from code and verified, whatever state the server is in."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig

from woostore_shared.settings import Settings
from woostore_shared.topology import (
    PROVISION_CONSUMER,
    STREAM_NAME,
    TopologyMismatch,
    declare,
    ensure_topology,
)


async def test_provision_consumer_limits_in_flight_across_replicas(
    nats_client: Client, settings: Settings
) -> None:
    info = await nats_client.jetstream().consumer_info(STREAM_NAME, PROVISION_CONSUMER)
    assert info.config.max_ack_pending == settings.max_stores_in_flight == 2
    assert info.config.filter_subject == "store.requested.*"


async def test_a_consumer_changed_by_hand_is_put_back(
    nats_client: Client, settings: Settings
) -> None:
    js = nats_client.jetstream()
    drifted = ConsumerConfig(
        durable_name=PROVISION_CONSUMER,
        filter_subject="store.requested.*",
        max_ack_pending=50,
        ack_wait=30,
        max_deliver=5,
    )
    await js.add_consumer(STREAM_NAME, drifted)
    assert (await js.consumer_info(STREAM_NAME, PROVISION_CONSUMER)).config.max_ack_pending == 50

    await ensure_topology(js, declare(settings))

    assert (await js.consumer_info(STREAM_NAME, PROVISION_CONSUMER)).config.max_ack_pending == 2


async def test_a_setting_the_server_cannot_change_is_reported(
    nats_client: Client, settings: Settings
) -> None:
    js = nats_client.jetstream()
    topology = declare(settings)
    # Turning a durable pull consumer into a push consumer is not an update the server allows.
    await js.delete_consumer(STREAM_NAME, PROVISION_CONSUMER)
    await js.add_consumer(
        STREAM_NAME,
        ConsumerConfig(
            durable_name=PROVISION_CONSUMER,
            filter_subject="store.requested.*",
            deliver_subject="elsewhere",
            max_ack_pending=9,
        ),
    )
    with pytest.raises(TopologyMismatch, match="consumer provisioner"):
        await ensure_topology(js, topology)
