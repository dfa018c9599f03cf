"""One client's event stream: an ASGI response that resumes where the client was, then
follows the hub, writing only the events the client may see.

Written against ASGI directly rather than through sse-starlette: at 10,000 clients the cost
of each send is what limits a notifier, and every frame here is already encoded by the hub;
a library response would add a task group, timers and an encoding per send, per client.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from woostore_notifier.connections import Client, Connections
from woostore_notifier.frames import WITHDRAWN, Frame, View, end, opening, ping, refetch
from woostore_notifier.hub import EventHub
from woostore_notifier.replay import StreamReplay
from woostore_shared.events import RefetchReason
from woostore_shared.logging import get_logger

log = get_logger(__name__)
CATCH_UP_SECONDS = 5.0  # how long an event the stream holds may take to reach this replica
GOODBYE_SECONDS = 1.0
SERVER_SEND = "woostore.server_send"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # proxies such as nginx must not hold frames back
]


async def _disconnected(receive: Receive) -> None:
    """Returns once the client has gone (what it sends before that is its empty body)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class KeepServerSend:
    """Keeps the ``send`` it is given in the scope for the event streams' body writes.
    Middleware inside it wrap ``send`` to see a response start (CORS adds its headers there)
    and pass every body message on untouched: for a stream, that is a few calls per send
    for nothing, 10,000 sends per event at 10,000 clients. A stream starts its response
    through them, then writes its body past them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SERVER_SEND] = send
        await self.app(scope, receive, send)


class Refetch(Exception):
    """The resume point cannot be served; the client must fetch its state again."""

    def __init__(self, reason: RefetchReason) -> None:
        super().__init__(reason)
        self.reason = reason


class EventStream:
    def __init__(
        self,
        client: Client,
        after: int | None,
        *,
        view: View,
        hub: EventHub,
        replay: StreamReplay,
        connections: Connections,
        window_seconds: float,
        named: bool = False,
    ) -> None:
        """``view``: the events it is sent; ``named``: each event's frame starts with an
        ``event:`` line naming its type."""
        self.client = client
        self.after = after
        self.view = view
        self.named = named
        self.hub = hub
        self.replay = replay
        self.connections = connections
        self.window_seconds = window_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.client.task = asyncio.current_task()
        gone = asyncio.ensure_future(_disconnected(receive))
        gone.add_done_callback(lambda _: self.client.drop("disconnected"))
        # Taken before the response starts: a client that saw it start (and then, say,
        # created a store) is sent every event from then on.
        now = self.hub.head
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            send = scope.get(SERVER_SEND, send)
            await self._write(send, opening(now if self.after is None else None))
            await self._follow(send, await self._resume(send, now))
        except asyncio.CancelledError:
            if self.client.dropped_for is None:
                raise  # the server is stopping
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            gone.cancel()
            self.connections.give_back(self.client)
        if self.client.dropped_for != "disconnected":
            # The end of the response; a client that stopped reading does not get even that.
            # One whose access was withdrawn is told so (reconnecting, it would be refused).
            withdrawal = self.client.withdrawal
            last = b"" if withdrawal is None else end(WITHDRAWN[withdrawal])
            with suppress(TimeoutError):
                async with asyncio.timeout(GOODBYE_SECONDS):
                    await send({"type": "http.response.body", "body": last, "more_body": False})

    async def _write(self, send: Send, data: bytes) -> None:
        message: Message = {"type": "http.response.body", "body": data, "more_body": True}
        self.client.sending_since = time.monotonic()
        await send(message)
        self.client.sending_since = None

    async def _resume(self, send: Send, now: int) -> int:
        """Send what the client missed; return the cursor it is then at."""
        if self.after is None:
            return now  # only new events
        try:
            return await self._replay(send, self.after)
        except Refetch as refetching:
            log.info("event stream resumed with a refetch", reason=refetching.reason)
            head = self.hub.head  # where it goes on; events read while it is written follow
            await self._write(send, refetch(head, refetching.reason))
            return head

    async def _replay(self, send: Send, cursor: int) -> int:
        await self._wait_for(cursor)
        if cursor < self.hub.floor and cursor + 1 < await self.replay.first_seq():
            raise Refetch("aged-out")  # the stream itself no longer holds them
        self._check_window(await self._first_after(cursor))
        while cursor < self.hub.floor:  # older than memory: from the stream, page by page
            page = await self.replay.page_after(cursor)
            if page.last <= cursor:
                raise Refetch("unreadable")
            frames = [f for f in page.after(cursor) if self.view.sees(f)]
            if frames:
                await self._write(send, b"".join(f.written(self.named) for f in frames))
            else:
                # Where it is, from a page with nothing of its own: a narrow view (one store)
                # read a day back from the stream went silent for seconds, and a client
                # waiting a second for more (`woostore events` without --follow) gave up.
                await self._write(send, ping(page.last))
            cursor = page.last
        return cursor

    async def _wait_for(self, cursor: int) -> None:
        """An id this replica has not read yet: wait for it, if the stream holds it. One the
        stream does not hold is from a stream that was lost and started its sequences again."""
        if cursor <= self.hub.head:
            return
        if cursor > await self.replay.last_seq():
            raise Refetch("unknown-id")
        try:
            async with asyncio.timeout(CATCH_UP_SECONDS):
                while cursor > self.hub.head:
                    await self.hub.next_wake()
        except TimeoutError:
            raise Refetch("unknown-id") from None

    async def _first_after(self, cursor: int) -> Frame | None:
        if cursor >= self.hub.floor:
            return self.hub.first_after(cursor)
        page = await self.replay.page_after(cursor)
        frames = page.after(cursor)
        return frames[0] if frames else None

    def _check_window(self, first_missed: Frame | None) -> None:
        if first_missed is not None and first_missed.published < time.time() - self.window_seconds:
            raise Refetch("older-than-window")

    async def _follow(self, send: Send, cursor: int) -> None:
        beats = self.hub.beats
        while not self.hub.closed:
            self.client.cursor = cursor
            if cursor < self.hub.floor:  # the sweep drops one stuck in a send
                self.client.drop("fell-behind")
                return
            data, cursor = self.hub.after(cursor, self.view, self.named)
            wakes = self.hub.wakes  # any wake from now on may bring what this batch lacks
            if data:
                await self._write(send, data)
            elif beats != self.hub.beats:
                await self._write(send, ping(cursor))
            beats = self.hub.beats
            if cursor == self.hub.head and wakes == self.hub.wakes:
                await self.hub.next_wake()
