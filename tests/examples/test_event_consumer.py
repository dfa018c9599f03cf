"""examples/event_consumer: an external program following store events with its own durable
consumer, run as a subprocess against a real nats-server holding the platform's stream."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

from woostore_devstack.embedded import NatsServer, free_port, spawn_nats
from woostore_shared.events import (
    CloudEvent,
    Deleted,
    DeleteRequested,
    EventData,
    Progress,
    Ready,
    Requested,
    StepInfo,
    StoreSummary,
    make_event,
)
from woostore_shared.messaging import connect
from woostore_shared.models import StoreStatus, utcnow
from woostore_shared.settings import Settings
from woostore_shared.topology import STREAM_NAME, declare, ensure_topology

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "event_consumer"
CONSUMER = EXAMPLE / "consumer.py"
AUTHORIZATION = EXAMPLE / "nats-authorization.conf"
DURABLE = "my-app"
# The consumer an operator makes for a program that may not make its own (README.md), as
# consumer.py would make it.
OPERATORS_CONSUMER = ConsumerConfig(
    name=DURABLE, durable_name=DURABLE, filter_subject="store.>",
    deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT, ack_wait=30,
)  # fmt: skip
DEADLINE_SECONDS = 15.0


@pytest.fixture
async def nats(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A client of a nats-server holding the platform's stream and work consumers."""
    client = await connect(nats_server.url, "tests")
    await ensure_topology(client.jetstream(), declare(Settings(nats_url=nats_server.url)))
    yield client
    await client.close()


class Store:
    """A store's events, made as the platform makes them."""

    def __init__(self, name: str) -> None:
        self.id = uuid.uuid4()
        self.name = name
        self.tenant_id = uuid.uuid4()
        self.correlation_id = uuid.uuid4().hex

    def event(self, data: EventData) -> CloudEvent:
        return make_event(
            data,
            store_id=self.id,
            tenant_id=self.tenant_id,
            correlation_id=self.correlation_id,
            source="/woostore/tests",
        )

    def requested(self) -> CloudEvent:
        summary = StoreSummary(
            id=self.id,
            name=self.name,
            slug="corner-shop-3f9a1c",
            type="woocommerce",
            status=StoreStatus.QUEUED,
            simulated=True,
            created_at=utcnow(),
        )
        return self.event(Requested(store=summary))

    def step(self, index: int, state: str) -> CloudEvent:
        return self.event(
            Progress(
                status=StoreStatus.PROVISIONING,
                phase="provision",
                step=StepInfo(name="namespace", title="Namespace", index=index, total=9),
                state="started" if state == "started" else "completed",
                progress=(index - 1) / 9,
            )
        )


async def publish(nats: Client, event: CloudEvent) -> int:
    """Publish as the outbox does; the sequence."""
    ack = await nats.jetstream().publish(
        event.nats_subject,
        event.model_dump_json().encode(),
        stream=STREAM_NAME,
        headers={"Nats-Msg-Id": str(event.id)},
    )
    return ack.seq


async def start_consumer(nats_url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(CONSUMER),
        "--nats",
        nats_url,
        "--durable",
        DURABLE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_lines(stream: asyncio.StreamReader | None, count: int) -> list[str]:
    """The next ``count`` lines the consumer writes, within the deadline."""
    assert stream is not None
    lines: list[str] = []
    async with asyncio.timeout(DEADLINE_SECONDS):
        while len(lines) < count:
            line = await stream.readline()
            assert line, f"the consumer's output ended after {lines}"
            lines.append(line.decode().rstrip("\n"))
    return lines


def sequence_of(line: str) -> int:
    return int(line.split()[0])


def acked_up_to(info: ConsumerInfo) -> int:
    """The stream sequence up to which the consumer has settled every message."""
    return info.ack_floor.stream_seq if info.ack_floor and info.ack_floor.stream_seq else 0


async def wait_for_consumer(
    nats: Client, durable: str, done: str, check: Callable[[ConsumerInfo], bool]
) -> None:
    """Poll the consumer's state on the server until ``check`` holds, within the deadline."""
    give_up = time.monotonic() + DEADLINE_SECONDS
    while True:
        info: ConsumerInfo = await nats.jetstream().consumer_info(STREAM_NAME, durable)
        if check(info):
            return
        if time.monotonic() > give_up:
            pytest.fail(f"the consumer {durable!r} never {done}: {info}")
        await asyncio.sleep(0.05)


async def stop(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """Its exit status, and what it said on stderr that was not read yet (why it failed)."""
    if process.returncode is None:
        process.terminate()
    assert process.stderr is not None
    async with asyncio.timeout(DEADLINE_SECONDS):
        said = await process.stderr.read()
        return await process.wait(), said.decode(errors="replace")


async def test_the_consumer_prints_each_event_acks_it_and_resumes_after_a_kill_without_repeats(
    nats: Client, nats_server: NatsServer
) -> None:
    shop = Store("Corner Shop")
    first = [shop.requested(), shop.step(1, "started"), shop.step(1, "completed")]
    first_seqs = [await publish(nats, e) for e in first]

    consumer = await start_consumer(nats_server.url)
    try:
        [following] = await read_lines(consumer.stderr, 1)
        printed = await read_lines(consumer.stdout, len(first))
        await wait_for_consumer(
            nats,
            DURABLE,
            "acknowledged every event",
            lambda i: acked_up_to(i) == first_seqs[-1] and i.num_ack_pending == 0,
        )
    finally:
        consumer.kill()  # no clean shutdown: what it acknowledged is all that counts
        await consumer.wait()
    # The server forgets the dead client's open pull request (else the next events would go
    # to it, to be delivered again only after the ack wait).
    await wait_for_consumer(nats, DURABLE, "dropped its pull request", lambda i: not i.num_waiting)

    assert "resuming after stream sequence 0" in following
    assert [sequence_of(line) for line in printed] == first_seqs
    assert printed[0].split()[1:5] == ["requested", "store", str(shop.id), "queued"]
    assert "'Corner Shop'" in printed[0]
    assert "provisioning  step 1 of 9: Namespace (started)" in printed[1]
    assert "step 1 of 9: Namespace (completed)" in printed[2]

    later = [
        shop.event(Ready(storefront_url="http://corner.example", admin_url="http://a.example")),
        shop.event(DeleteRequested()),
        shop.event(Deleted()),
    ]
    later_seqs = [await publish(nats, e) for e in later]
    restarted = await start_consumer(nats_server.url)
    try:
        [resuming] = await read_lines(restarted.stderr, 1)
        printed_again = await read_lines(restarted.stdout, len(later))
        await wait_for_consumer(
            nats,
            DURABLE,
            "acknowledged the later events",
            lambda i: acked_up_to(i) == later_seqs[-1] and i.num_ack_pending == 0,
        )
    finally:
        exit_code, said = await stop(restarted)

    assert f"resuming after stream sequence {first_seqs[-1]}" in resuming
    # In order, the first after the restart being the first new one: nothing was repeated.
    assert [sequence_of(line) for line in printed_again] == later_seqs
    assert [line.split()[1] for line in printed_again] == ["ready", "delete_requested", "deleted"]
    assert "http://corner.example" in printed_again[0]
    assert exit_code == 0, said  # SIGTERM: a clean stop


async def test_a_message_that_is_not_a_cloud_event_is_reported_and_never_delivered_again(
    nats: Client, nats_server: NatsServer
) -> None:
    js = nats.jetstream()
    garbage = (await js.publish("store.progress.x", b"not json", stream=STREAM_NAME)).seq
    shop = Store("After the garbage")
    good = await publish(nats, shop.requested())

    consumer = await start_consumer(nats_server.url)
    try:
        await read_lines(consumer.stderr, 1)  # following ...
        [complaint] = await read_lines(consumer.stderr, 1)
        [printed] = await read_lines(consumer.stdout, 1)
        await wait_for_consumer(
            nats, DURABLE, "settled both messages", lambda i: acked_up_to(i) == good
        )
    finally:
        await stop(consumer)

    assert "not a CloudEvent" in complaint
    assert "store.progress.x" in complaint
    assert sequence_of(printed) == good
    assert garbage < good


async def test_with_the_documented_authorization_a_consumer_reads_and_may_publish_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without it, a program that could reach NATS could publish an event on store.>, which
    the notifier relayed to tenants as the platform's (found by a user review). With
    examples/event_consumer/nats-authorization.conf, the consumer the operator made is
    followed as before, and the rest is refused: a forged event, a stream's deletion, a
    consumer of its own making, and the inbox every other client's replies go to."""
    folder = tmp_path / "nats"
    folder.mkdir()
    shutil.copy(AUTHORIZATION, folder / AUTHORIZATION.name)
    port = free_port()
    config_file = folder / "nats.conf"
    config_file.write_text(
        f'listen: "127.0.0.1:{port}"\n'
        f'jetstream: {{store_dir: "{folder / "jetstream"}", sync_interval: always}}\n'
        f"include ./{AUTHORIZATION.name}\n"
    )
    monkeypatch.setenv("WOOSTORE_NATS_PASSWORD", "platform-" + uuid.uuid4().hex)
    monkeypatch.setenv("EVENTS_NATS_PASSWORD", "events-" + uuid.uuid4().hex)
    server = NatsServer(spawn_nats(config_file), f"nats://127.0.0.1:{port}", port, config_file)
    platform_url = f"nats://woostore:{os.environ['WOOSTORE_NATS_PASSWORD']}@127.0.0.1:{port}"
    platform, reader = Client(), Client()
    refusals: list[str] = []

    async def refused(error: Exception) -> None:
        refusals.append(str(error))

    try:
        await platform.connect(platform_url)
        await reader.connect(server.url, user="events", error_cb=refused,
                             password=os.environ["EVENTS_NATS_PASSWORD"])  # fmt: skip
        js = platform.jetstream()
        await ensure_topology(js, declare(Settings(nats_url=platform_url)))
        await js.add_consumer(STREAM_NAME, OPERATORS_CONSUMER)  # as the README's nats command
        shop = Store("Behind a password")
        sequence = await publish(platform, shop.requested())

        monkeypatch.setenv("NATS_USER", "events")
        monkeypatch.setenv("NATS_PASSWORD", os.environ["EVENTS_NATS_PASSWORD"])
        consumer = await start_consumer(server.url)
        try:
            await read_lines(consumer.stderr, 1)  # following ...
            [printed] = await read_lines(consumer.stdout, 1)
            await wait_for_consumer(
                platform, DURABLE, "acknowledged it", lambda i: acked_up_to(i) == sequence
            )
        finally:
            exit_code, said = await stop(consumer)
        assert sequence_of(printed) == sequence
        assert exit_code == 0, said

        forged = shop.event(Ready(storefront_url="http://forged.example", admin_url="http://x"))
        denied = [
            forged.nats_subject,
            f"$JS.API.STREAM.DELETE.{STREAM_NAME}",
            f"$JS.API.CONSUMER.CREATE.{STREAM_NAME}.mine",
        ]
        for subject in denied:
            await reader.publish(subject, forged.model_dump_json().encode())
        await reader.subscribe("_INBOX.>")
        await reader.flush()
        async with asyncio.timeout(DEADLINE_SECONDS):
            while len(refusals) < len(denied) + 1:  # noqa: ASYNC110  (the server's, with a deadline)
                await asyncio.sleep(0.02)
        assert sorted(refusals) == sorted(
            [
                f'nats: permissions violation for publish to "{subject.lower()}"'
                for subject in denied
            ]
            + ['nats: permissions violation for subscription to "_inbox.>"']
        )
        stream = await js.stream_info(STREAM_NAME)
        assert stream.state.last_seq == sequence  # nothing was added, and it still exists
        assert [c.name for c in await js.consumers_info(STREAM_NAME)] == [DURABLE]
    finally:
        await reader.close()
        await platform.close()
        server.stop()
