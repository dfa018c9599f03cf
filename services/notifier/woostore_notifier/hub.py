"""One subscription to the store events per notifier process, shared by every client.

The hub reads ``store.>`` through a single ordered consumer and keeps the latest events in
memory, each encoded once as an SSE frame. Clients do not get a queue each: every client is
a cursor (the last sequence it was sent) into the hub's memory, woken when new events
arrive. Wakes are coalesced, so each client writes what came meanwhile in one send instead
of one send per event: at least ``FLUSH_SECONDS`` apart, and ``PASS_SHARE`` times as far
apart as the last wake took to serve every client it woke. Delivery so takes at most about
a third of the process's time however many clients there are and whatever a write costs,
and the rest is left for clients connecting (a restart's reconnect storm). A client whose
cursor falls out of memory is too slow to follow and is dropped (it resumes from the stream
when it is back).

On start the hub reads the last ``memory`` events back from the stream before it is ready,
so the clients of a restarted notifier resume from memory, not from the stream one by one.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from contextlib import AbstractContextManager, nullcontext

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from woostore_notifier.frames import EVERY_EVENT, Frame, View
from woostore_shared import tracing
from woostore_shared.logging import get_logger
from woostore_shared.topology import STREAM_NAME

log = get_logger(__name__)
FLUSH_SECONDS = 0.02  # at most 50 wakes a second
# Waking a client and writing its batch costs about 10 µs at rest, most of it the write
# system call (py-spy, 10,000 clients), and several times that while thousands of clients
# reconnect: a fixed cost per client let delivery take the whole loop in a storm, and the
# accept queue overflowed behind it. So the cost is measured at each wake instead.
PASS_SHARE = 3.0
LONGEST_FLUSH_SECONDS = 0.2  # what coalescing may add to an event's latency, at most
HEARTBEAT_SECONDS = 15.0  # a beat wakes every client; an idle one writes a ping
BATCH_FRAMES = 1000  # at most this many frames per send to a client that is far behind


def _seq(frame: Frame) -> int:
    return frame.seq


def _fan_out_span(frame: Frame) -> AbstractContextManager[object]:
    """The event's last hop in its trace: taken into memory, for every client to be sent."""
    if frame.traceparent is None:
        return nullcontext()
    carrier = {"traceparent": frame.traceparent}
    return tracing.continued(carrier, "notifier fan-out", seq=str(frame.seq))


class EventHub:
    """Made on the loop it serves (the app's lifespan)."""

    def __init__(self, js: JetStreamContext, memory: int) -> None:
        self._js = js
        self.memory = memory
        self._frames: list[Frame] = []  # visible events after ``floor``, in stream order
        self.floor = 0  # every event after this sequence is in memory
        self.head = 0  # the last sequence read from the stream
        self.beats = 0
        self.closed = False
        self.ready = asyncio.Event()
        self._until = 0  # the stream's last sequence at start: ready once read
        self.wakes = 0
        self._waiting: list[asyncio.Future[None]] = []
        self._wake_handle: asyncio.TimerHandle | None = None
        self._last_wake = 0.0
        self._pass_seconds = 0.0  # how long the last wake took to serve every client it woke
        self._batches: dict[tuple[int, str | None, str | None, bool], tuple[bytes, int]] = {}
        self._subscription: JetStreamContext.PushSubscription | None = None
        # The loop the hub runs on, kept: asking for the running loop costs a getpid() system
        # call each time, 10,000 times a wake at 10,000 clients (5% of the process, py-spy).
        self._loop = asyncio.get_running_loop()
        self._beating: asyncio.Task[None] | None = None

    async def start(self) -> None:
        state = (await self._js.stream_info(STREAM_NAME)).state
        first = max(state.first_seq, state.last_seq - self.memory + 1, 1)
        self.floor = self.head = first - 1
        self._until = state.last_seq
        if self._until < first:
            self.ready.set()  # nothing to read back
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first)
        self._subscription = await self._js.subscribe(
            "store.>", stream=STREAM_NAME, ordered_consumer=True, config=config, cb=self._read
        )
        self._beating = asyncio.create_task(self._beat())
        log.info("event hub started", read_back_from=first, until=self._until)

    def end_streams(self) -> None:
        """Every client's loop sees ``closed`` at its next wake, now, and ends its response:
        a stopping notifier's clients reconnect (elsewhere) instead of waiting to be cut."""
        self.closed = True
        self._wake()

    async def stop(self) -> None:
        self.end_streams()
        if self._beating is not None:
            self._beating.cancel()
        if self._subscription is not None:
            await self._subscription.unsubscribe()

    async def _read(self, message: Msg) -> None:
        frame = Frame.of(message)
        if frame.seq <= self.head:
            return  # already read (an ordered consumer may restart at a sequence it passed)
        self.head = frame.seq
        if frame.data:
            with _fan_out_span(frame):
                self._frames.append(frame)
                self._forget_oldest()
        self._batches.clear()
        if not self.ready.is_set() and (
            frame.seq >= self._until or message.metadata.num_pending == 0
        ):
            self.ready.set()
        self._schedule_wake()

    def _forget_oldest(self) -> None:
        # Trimmed a quarter at a time: deleting from the front of a list copies the rest.
        if len(self._frames) > self.memory + self.memory // 4:
            cut = len(self._frames) - self.memory
            self.floor = self._frames[cut - 1].seq
            del self._frames[:cut]

    def _schedule_wake(self) -> None:
        if self._wake_handle is not None:
            return
        loop = self._loop
        interval = min(max(FLUSH_SECONDS, PASS_SHARE * self._pass_seconds), LONGEST_FLUSH_SECONDS)
        delay = self._last_wake + interval - loop.time()
        if delay <= 0:
            self._wake()
        else:
            self._wake_handle = loop.call_later(delay, self._wake)

    def _wake(self) -> None:
        self._wake_handle = None
        self._last_wake = self._loop.time()
        self.wakes += 1
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.done():  # a client that went away cancelled its own
                waiter.set_result(None)
        # Each woken client runs in the loop's next turn, in the order woken, until it waits
        # again (its writes do not wait unless its socket is full): a callback queued after
        # theirs runs when the last of them is done.
        self._loop.call_soon(self._served, self._last_wake)

    def _served(self, woke_at: float) -> None:
        self._pass_seconds = self._loop.time() - woke_at

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            self.beats += 1
            self._wake()

    def next_wake(self) -> asyncio.Future[None]:
        """A future of the caller's own, resolved at the next wake: new events, a heartbeat,
        or the hub stopping. Its own, so that cancelling it concerns no other client."""
        waiter = self._loop.create_future()
        self._waiting.append(waiter)
        return waiter

    def first_after(self, cursor: int) -> Frame | None:
        """The first event in memory after ``cursor`` (which is at least ``floor``)."""
        index = bisect_right(self._frames, cursor, key=_seq)
        return self._frames[index] if index < len(self._frames) else None

    def after(self, cursor: int, view: View, named: bool = False) -> tuple[bytes, int]:
        """The frames after ``cursor`` that ``view`` sees, named if ``named``
        (Frame.written), and the cursor after them. Clients at the same cursor with the same
        view share one encoding."""
        # Keyed by the view's fields, not the view: a dataclass hashes its fields again at
        # each call, and this runs for every client at every wake.
        key = (cursor, view.tenant, view.store, named)
        batch = self._batches.get(key)
        if batch is None:
            start = bisect_right(self._frames, cursor, key=_seq)
            frames = self._frames[start : start + BATCH_FRAMES]
            last = frames[-1].seq if len(frames) == BATCH_FRAMES else self.head
            seen = frames if view == EVERY_EVENT else [f for f in frames if view.sees(f)]
            batch = self._batches[key] = (b"".join(f.written(named) for f in seen), last)
        return batch
