"""Events older than the hub's memory, read from the stream for clients that resume from
further back: in pages of ``PAGE`` sequences, each read once for every client resuming
through it, with at most ``READS`` pages being read at a time and ``KEPT`` kept.

A resume never gets a consumer of its own: a storm of clients resuming from old ids costs a
few page reads, not a consumer per client.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from woostore_notifier.frames import Frame
from woostore_shared.topology import STREAM_NAME

PAGE = 500
KEPT = 16  # pages, about 5 MB of events
READS = 2
READ_TIMEOUT_SECONDS = 5.0
FIRST_SEQ_SECONDS = 5.0  # how long the stream's first sequence is taken as known


@dataclass(frozen=True)
class Page:
    frames: list[Frame]
    last: int  # the sequence up to which this page holds every event

    def after(self, cursor: int) -> list[Frame]:
        return [f for f in self.frames if f.seq > cursor]


class StreamReplay:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kept: OrderedDict[int, Page] = OrderedDict()
        self._reading: dict[int, asyncio.Future[Page]] = {}
        self._reads = asyncio.Semaphore(READS)
        self._first_seq = (0, 0.0)  # the stream's first sequence, and when it was asked

    async def first_seq(self) -> int:
        """The oldest sequence the stream still holds: older ones aged out of it."""
        seq, asked = self._first_seq
        if time.monotonic() - asked > FIRST_SEQ_SECONDS:
            seq = (await self._js.stream_info(STREAM_NAME)).state.first_seq
            self._first_seq = (seq, time.monotonic())
        return seq

    async def last_seq(self) -> int:
        """The newest sequence the stream holds, asked now."""
        return (await self._js.stream_info(STREAM_NAME)).state.last_seq

    async def page_after(self, cursor: int) -> Page:
        """The page holding the events that follow ``cursor``."""
        number = cursor // PAGE
        page = self._kept.get(number)
        if page is not None:
            self._kept.move_to_end(number)
            return page
        reading = self._reading.get(number)
        if reading is None:
            reading = asyncio.ensure_future(self._read(number))
            self._reading[number] = reading
            reading.add_done_callback(lambda _: self._reading.pop(number, None))
        return await asyncio.shield(reading)

    async def _read(self, number: int) -> Page:
        start, end = number * PAGE + 1, (number + 1) * PAGE
        frames: list[Frame] = []
        last = end
        async with self._reads:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
            )
            subscription = await self._js.subscribe(
                "store.>", stream=STREAM_NAME, ordered_consumer=True, config=config
            )
            try:
                while True:
                    message = await subscription.next_msg(timeout=READ_TIMEOUT_SECONDS)
                    seq = message.metadata.sequence.stream
                    if seq > end:
                        break
                    frame = Frame.of(message)
                    if frame.data:
                        frames.append(frame)
                    if seq == end:
                        break
                    if message.metadata.num_pending == 0:
                        last = seq  # the stream ends inside this page, for now
                        break
            except NatsTimeoutError:
                last = frames[-1].seq if frames else start - 1
            finally:
                await subscription.unsubscribe()
        page = Page(frames, last)
        if last == end:  # a page the stream may still add to is not kept
            self._kept[number] = page
            while len(self._kept) > KEPT:
                self._kept.popitem(last=False)
        return page
