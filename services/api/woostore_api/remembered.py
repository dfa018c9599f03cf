"""Answers the API remembers for a while: figures that every dashboard asks for and that
change slowly cost one query a period in each process, however many dashboards ask."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Remembered(Generic[T]):
    """The answer of ``measure``, measured again once it is ``seconds`` old. Requests that
    come while it is being measured wait for that measurement rather than each making their
    own; a measurement that fails is forgotten, so the next request measures again."""

    def __init__(
        self,
        measure: Callable[[], Awaitable[T]],
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._measure = measure
        self._seconds = seconds
        self._clock = clock
        self._answer: asyncio.Future[T] | None = None
        self._measured_at = 0.0

    async def get(self) -> T:
        if self._answer is None or self._clock() - self._measured_at >= self._seconds:
            self._measured_at = self._clock()
            self._answer = asyncio.ensure_future(self._measure())
            self._answer.add_done_callback(self._forget_if_failed)
        # Shielded: a client that hangs up does not cancel the answer the others wait for.
        return await asyncio.shield(self._answer)

    def _forget_if_failed(self, answer: asyncio.Future[T]) -> None:
        failed = answer.cancelled() or answer.exception() is not None
        if failed and self._answer is answer:
            self._answer = None
