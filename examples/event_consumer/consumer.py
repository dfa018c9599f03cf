"""Follow WooStore's store events with a durable JetStream consumer of your own.

An external program: it knows WooStore only through its event contract (the STORES stream,
CloudEvents in structured JSON, see README.md) and needs nothing but nats-py. It prints each
store event, acknowledges it once handled, and after a restart resumes after the last event
it acknowledged.

    uv run --frozen python examples/event_consumer/consumer.py \\
        --nats nats://127.0.0.1:4222 --durable my-app

Where NATS asks who connects (nats-authorization.conf), NATS_USER and NATS_PASSWORD say.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

STREAM = "STORES"
SUBJECTS = "store.>"
TYPE_PREFIX = "io.woostore.store."
BATCH = 64
FETCH_SECONDS = 1.0  # how long one pull waits for events; also how soon a stop is noticed
ACK_WAIT_SECONDS = 30  # an event not acknowledged by then is delivered again
ACK_REPLY_SECONDS = 5.0  # how long an acknowledgement waits for the server's answer
CONNECT_SECONDS = 10.0  # to reach the server at start; later outages are waited out
DESCRIPTION = "Print WooStore's store events from a durable JetStream consumer of your own."


def describe(event: dict[str, Any]) -> str:
    """One line about a store event: its kind, the store, its status and what it says."""
    kind = str(event.get("type", "?")).removeprefix(TYPE_PREFIX)
    data = event.get("data")
    data = data if isinstance(data, dict) else {}
    line = f"{kind:<16} store {event.get('subject', '?')}  {data.get('status', '?')}"
    step = data.get("step")
    if isinstance(step, dict):  # progress: the step n of m, started or completed
        title = step.get("title") or step.get("name")
        line += f"  step {step.get('index')} of {step.get('total')}: {title} ({data.get('state')})"
    elif kind == "requested" and isinstance(data.get("store"), dict):
        line += f"  name {data['store'].get('name')!r}"
    elif kind == "ready":
        line += f"  {data.get('storefront_url')}"
    elif kind == "failed":
        line += f"  reason: {data.get('reason')}"
    return line


async def handle(message: Msg) -> None:
    """Handle one message, then acknowledge it (at least once: a crash between the two
    delivers it again; deduplicate on the CloudEvent ``id`` where that matters)."""
    try:
        event = json.loads(message.data)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        print(f"not a CloudEvent, skipped: {message.subject}", file=sys.stderr, flush=True)
        await message.term()  # never deliver it again
        return
    print(f"{message.metadata.sequence.stream:>6}  {describe(event)}", flush=True)
    try:
        # Returns once the server has recorded the acknowledgement.
        await message.ack_sync(timeout=ACK_REPLY_SECONDS)
    except TimeoutError:
        # No answer in time (a busy server, a reconnect): the acknowledgement may be lost, and
        # the event then delivered again after the ack wait. Not a reason to stop.
        print(f"no answer to the acknowledgement of {message.subject}", file=sys.stderr, flush=True)


async def follow(nc: Client, durable: str, deliver: DeliverPolicy, stop: asyncio.Event) -> None:
    js = nc.jetstream()
    # Created on the first run; later runs bind to it and the server resumes after the last
    # acknowledged event (the config applies only when the consumer is created).
    subscription = await js.pull_subscribe(
        SUBJECTS,
        durable=durable,
        stream=STREAM,
        config=ConsumerConfig(
            deliver_policy=deliver,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_SECONDS,
        ),
    )
    info = await subscription.consumer_info()
    print(
        f"following {SUBJECTS} on {STREAM} as {durable!r}: "
        f"{info.num_pending} events waiting, resuming after stream sequence "
        f"{info.ack_floor.stream_seq if info.ack_floor else 0}",
        file=sys.stderr,
        flush=True,
    )
    while not stop.is_set():
        try:
            messages = await subscription.fetch(BATCH, timeout=FETCH_SECONDS)
        except TimeoutError:
            # Nothing new; look again (or stop). nats-py raises its own TimeoutError, or, when
            # the fetch's time ran out before it asked the server a second time (a busy
            # machine), asyncio's plain one: both are this built-in one.
            continue
        for message in messages:
            await handle(message)


async def run(server: str, durable: str, deliver: DeliverPolicy) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def report(error: Exception) -> None:  # one line, not nats-py's traceback
        print(f"nats: {error!r}", file=sys.stderr, flush=True)

    # A user of NATS's own, from the environment: never a password in a command line.
    user = os.environ.get("NATS_USER")
    login = {"user": user, "password": os.environ.get("NATS_PASSWORD", "")} if user else {}
    try:
        nc = await asyncio.wait_for(
            nats.connect(
                server,
                name=f"woostore-event-consumer {durable}",
                error_cb=report,
                max_reconnect_attempts=-1,  # once connected, ride out server restarts
                # Answers on subjects of this consumer's own, which NATS may let it alone read
                # (nats-authorization.conf): the shared _INBOX.> holds every client's replies.
                inbox_prefix=f"_INBOX_{durable}",
                **login,
            ),
            CONNECT_SECONDS,
        )
    except TimeoutError:
        sys.exit(f"no NATS server answered at {server} within {CONNECT_SECONDS:.0f} s")
    try:
        await follow(nc, durable, deliver, stop)
    finally:
        await nc.close()  # every event handled was acknowledged: nothing is left to drain


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="the NATS server")
    parser.add_argument("--durable", required=True, help="this program's own consumer name")
    parser.add_argument(
        "--from",
        dest="start",
        choices=["all", "new"],
        default="all",
        help="where a new consumer starts: the whole stream (default) or only new events",
    )
    args = parser.parse_args(argv)
    deliver = DeliverPolicy.ALL if args.start == "all" else DeliverPolicy.NEW
    asyncio.run(run(args.nats, args.durable, deliver))


if __name__ == "__main__":
    main()
