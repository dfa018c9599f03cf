"""The clients of the live-updates benchmark (bench/live_updates.py), each run in a process of
its own so that the load generator is not what limits the notifier.

A *fleet* holds thousands of Server-Sent Events connections on raw asyncio protocols, each
doing as little as a client can while still checking it got every event: it finds the ``id:``
lines of complete frames and checks they follow each other, and reads its socket every
READ_EVERY seconds rather than at each frame. A few connections per fleet also
time every event, from the CloudEvent's ``time`` (stamped by the publisher just before it
published, to the microsecond) to the moment the frame was read. The *baseline* is a bare
NATS core subscriber timing the same events: the floor the notifier adds its work to.

Both talk to the orchestrator over a pipe: they report once they are ready, answer
``status`` while it waits on them, and ``finish`` with everything they measured.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import nats
from nats.aio.msg import Msg

# Each pattern starts with a literal, which the regex engine searches for quickly: far
# cheaper than a multi-line ``^`` tried at every byte. Lines are read with a newline in front.
# An id followed by data is an event's (or a refetch's); one that is not, a position: the
# stream's first frame, or a ping.
ID_LINE = re.compile(rb"\nid: ?(\d+)\n(d?)")
FRAME_END = b"\n\n"
RETRY_LINE = re.compile(rb"\nretry: ?(\d+)")
REFETCH = b"\nevent: refetch"  # the notifier could not resume the client where it asked
EVENT_TIME = re.compile(rb'"time":"([^"]+)"')
RESPONSE_HEAD_END = b"\r\n\r\n"
RETRY_SECONDS = 2.0  # until the stream's own ``retry:`` says otherwise (EventSource's default)
RETRY_JITTER = 0.5  # each reconnect waits retry times 1 to 1.5, so they do not come all at once
ANSWER_DEADLINE = 30.0  # how long a connection waits for the response's status line
READ_EVERY = 0.5  # seconds between two reads of a connection that times nothing


def published_at(raw: bytes) -> float:
    """A CloudEvent ``time`` (``2026-12-01T20:54:23.784470Z``) as ``time.time()`` counts."""
    return datetime.fromisoformat(raw.decode()).timestamp()


@dataclass(frozen=True)
class Order:
    """What one fleet is to do."""

    host: str
    port: int
    path: str
    token: str
    connections: int
    timed: int  # how many of them time every event
    connects_in_flight: int


@dataclass(frozen=True)
class Connected:
    """How a fleet's first connections went."""

    connected: int
    refused: int  # answered with a status other than 200 (429 at a stream limit)
    failed: int  # no answer at all
    first_failure: str | None
    seconds: float


@dataclass(frozen=True)
class Status:
    events: int  # read by all connections together
    reconnected: int  # connections that dropped and are streaming again
    caught_up: int  # ... and have read an event published after they came back


@dataclass(frozen=True)
class Followed:
    """One connection's record, as its fleet reports it at the end."""

    events: int
    missed: int  # ids skipped: events this client never got
    repeated: int  # ids read again (a resume that started too early)
    refetches: int  # frames telling the client to fetch its state again: it missed events
    drops: int
    reconnect_attempts: int
    refused_reconnects: int
    failed_reconnects: int  # no answer: the connection failed or no status line came
    reconnect_failure: str | None  # why the first of those failed
    dropped_at: float | None  # time.time() of its first drop
    reconnected_at: float | None  # ... of its last successful reconnect
    caught_up_at: float | None  # ... of the first event after it published after that


@dataclass(frozen=True)
class FleetReport:
    connections: list[Followed]
    latencies: list[float]  # seconds, publish → read, of the timed connections' events


class Follower(asyncio.Protocol):
    """One client following the whole stream; it comes back as EventSource does, after the
    stream's ``retry:`` (plus jitter) with ``Last-Event-ID``, whenever the stream drops."""

    def __init__(self, fleet: Fleet, timed: bool) -> None:
        self.fleet = fleet
        self.timed = timed
        self.transport: asyncio.Transport | None = None
        self.answered: asyncio.Future[int | str] | None = None
        self.head = b""
        self.streaming = False
        self.partial_frame = b""
        self.last_id: int | None = None
        self.retry_seconds = RETRY_SECONDS
        self.catching_up = False
        self.events = self.missed = self.repeated = self.refetches = 0
        self.drops = self.reconnect_attempts = self.refused_reconnects = 0
        self.failed_reconnects = 0
        self.reconnect_failure: str | None = None
        self.dropped_at: float | None = None
        self.reconnected_at: float | None = None
        self.caught_up_at: float | None = None
        self.latencies: list[float] = []

    async def open(self) -> int | str:
        """The response's status, or why none came."""
        loop = asyncio.get_running_loop()
        self.answered = loop.create_future()
        self.head = b""
        order = self.fleet.order
        try:
            await loop.create_connection(lambda: self, order.host, order.port)
        except OSError as error:
            return f"{type(error).__name__}: {error}"
        try:
            return await asyncio.wait_for(asyncio.shield(self.answered), ANSWER_DEADLINE)
        except TimeoutError:
            if self.transport is not None:
                self.transport.close()
            return f"no status line within {ANSWER_DEADLINE:.0f} s"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        order = self.fleet.order
        resume = b"" if self.last_id is None else b"Last-Event-ID: %d\r\n" % self.last_id
        transport.write(
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
            b"Accept: text/event-stream\r\n%s\r\n"
            % (order.path.encode(), order.host.encode(), order.port, order.token.encode(), resume)
        )

    def data_received(self, data: bytes) -> None:
        if not self.streaming:
            self.head += data
            end = self.head.find(RESPONSE_HEAD_END)
            if end < 0:
                return
            status = int(self.head[9:12])  # b"HTTP/1.1 200 OK"
            data = self.head[end + len(RESPONSE_HEAD_END) :]
            self.head = b""
            if self.answered is not None and not self.answered.done():
                self.answered.set_result(status)
            if status != 200:
                assert self.transport is not None
                self.transport.close()
                return
            self.streaming = True
            if self.drops:
                self.reconnected_at = time.time()
                self.catching_up = True
        # Only complete frames: a frame may arrive in pieces, and whether an id is an event's
        # shows on the line after it. The newline in front makes every line, the first too,
        # start after one. (Chunked transfer encoding's size lines sit between frames, where
        # nothing below matches them.)
        lines = b"\n" + self.partial_frame + data
        cut = lines.rfind(FRAME_END) + len(FRAME_END)  # 1 with none: all of it waits
        self.partial_frame = lines[cut:]
        if b"retry:" in lines and (retry := RETRY_LINE.search(lines, 0, cut)):
            self.retry_seconds = int(retry[1]) / 1000
        for seq, event in ID_LINE.findall(lines, 0, cut):
            if event:
                self._count(int(seq))
            else:
                self._move_to(int(seq))
        if REFETCH in lines:
            self.refetches += lines.count(REFETCH, 0, cut)
        if self.timed or self.catching_up:
            self._time(lines, cut)
        elif self.transport is not None:
            self.fleet.read_later(self.transport)

    def _time(self, lines: bytes, cut: int) -> None:
        now = time.time()
        times = [published_at(raw) for raw in EVENT_TIME.findall(lines, 0, cut)]
        if self.timed:
            self.latencies.extend(now - moment for moment in times)
        came_back = self.reconnected_at
        if self.catching_up and came_back and any(moment >= came_back for moment in times):
            self.caught_up_at = now
            self.catching_up = False

    def _move_to(self, position: int) -> None:
        """The stream is at ``position``: the events up to it were sent. Every event is this
        client's to see (an admin's stream; the benchmark runs no warm pool), so any after
        its last were missed."""
        if self.last_id is not None and position > self.last_id:
            self.missed += position - self.last_id
        if self.last_id is None or position > self.last_id:
            self.last_id = position

    def _count(self, event_id: int) -> None:
        self.events += 1
        if self.last_id is not None:
            if event_id <= self.last_id:
                self.repeated += 1
                return
            self.missed += event_id - self.last_id - 1
        self.last_id = event_id

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(f"closed before answering ({exc})")
        if not self.streaming:
            return
        self.streaming = False
        self.partial_frame = b""
        if self.fleet.finishing:
            return
        self.drops += 1
        if self.dropped_at is None:
            self.dropped_at = time.time()
        self.reconnected_at = self.caught_up_at = None
        self.catching_up = False
        self.fleet.spawn(self.come_back())

    async def come_back(self) -> None:
        while not self.fleet.finishing:
            # A browser's EventSource waits ``retry`` too; the jitter spreads the clients out.
            await asyncio.sleep(self.retry_seconds * (1 + RETRY_JITTER * random.random()))  # noqa: S311
            self.reconnect_attempts += 1
            outcome = await self.open()
            if outcome == 200:
                return
            if isinstance(outcome, int):
                self.refused_reconnects += 1
            else:
                self.failed_reconnects += 1
                self.reconnect_failure = self.reconnect_failure or outcome

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def record(self) -> Followed:
        return Followed(
            events=self.events,
            missed=self.missed,
            repeated=self.repeated,
            refetches=self.refetches,
            drops=self.drops,
            reconnect_attempts=self.reconnect_attempts,
            refused_reconnects=self.refused_reconnects,
            failed_reconnects=self.failed_reconnects,
            reconnect_failure=self.reconnect_failure,
            dropped_at=self.dropped_at,
            reconnected_at=self.reconnected_at,
            caught_up_at=self.caught_up_at,
        )


@dataclass
class Fleet:
    order: Order
    pipe: Connection
    finishing: bool = False
    followers: list[Follower] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _unread: list[asyncio.Transport] = field(default_factory=list)

    def read_later(self, transport: asyncio.Transport) -> None:
        """Leave the connection's next frames in the kernel until the next READ_EVERY tick:
        the notifier sends them all the same, and one read takes several frames, which
        cuts this process's CPU per frame (one read per frame costs more than the frame's
        checks). A drop, too, is seen at the next tick."""
        transport.pause_reading()
        self._unread.append(transport)

    async def read_unread(self) -> None:
        while True:
            await asyncio.sleep(READ_EVERY)
            unread, self._unread = self._unread, []
            for transport in unread:
                transport.resume_reading()  # nothing if it closed meanwhile

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        order = self.order
        self.followers = [Follower(self, timed=n < order.timed) for n in range(order.connections)]
        gate = asyncio.Semaphore(order.connects_in_flight)  # no SYN flood at the notifier
        self.spawn(self.read_unread())

        async def first_connect(follower: Follower) -> int | str:
            async with gate:
                return await follower.open()

        start = time.monotonic()
        outcomes = await asyncio.gather(*(first_connect(f) for f in self.followers))
        failures = [o for o in outcomes if isinstance(o, str)]
        self.pipe.send(
            Connected(
                connected=outcomes.count(200),
                refused=sum(1 for o in outcomes if isinstance(o, int) and o != 200),
                failed=len(failures),
                first_failure=failures[0] if failures else None,
                seconds=time.monotonic() - start,
            )
        )
        loop = asyncio.get_running_loop()
        while (command := await loop.run_in_executor(None, self.pipe.recv)) == "status":
            self.pipe.send(self.status())
        self.finishing = True
        for follower in self.followers:
            follower.close()
        self.pipe.send(
            FleetReport(
                connections=[f.record() for f in self.followers],
                latencies=[s for f in self.followers for s in f.latencies],
            )
        )
        assert command == "finish", command

    def status(self) -> Status:
        back = [f for f in self.followers if f.drops and f.reconnected_at is not None]
        return Status(
            events=sum(f.events for f in self.followers),
            reconnected=len(back),
            caught_up=sum(1 for f in back if f.caught_up_at is not None),
        )


def run_fleet(order: Order, pipe: Connection) -> None:
    """A fleet process's whole life."""
    asyncio.run(Fleet(order, pipe).run())


def run_baseline(nats_url: str, pipe: Connection) -> None:
    """The baseline process's whole life: a core subscription to every store event, timing
    each, until told to finish; it sends the latencies."""

    async def follow() -> None:
        latencies: list[float] = []

        async def timed(message: Msg) -> None:
            now = time.time()
            if found := EVENT_TIME.search(message.data):
                latencies.append(now - published_at(found[1]))

        client = await nats.connect(nats_url, name="bench-baseline")
        await client.subscribe("store.>", cb=timed)
        await client.flush()  # the server has the subscription: nothing published after is lost
        pipe.send("subscribed")
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        await client.drain()
        pipe.send(latencies)

    asyncio.run(follow())
