"""Leases: work on a store happens under ``stores.lease_owner``, so a redelivered message
never runs beside a slow original. While the lease is held, a beat renews it and the
message every ``renew_every`` seconds, whatever the work is doing (a step, a journal write, a
prune after the recipe): a lease kept alive only by the work's own checks lapsed in their gaps,
and the redelivery took it. A lease whose owner died expires after three beats, and the next
delivery takes the store over.

A process held up past its lease (stopped, its node frozen, its event loop blocked) wakes
in the middle of a step while another attempt works on the store: its next call into the
cluster would undo the other's work (a user's review: a settings change set the shop's
currency back after the change that followed it). So the attempt reaches the cluster
through :func:`fenced`, which confirms the lease before each call (:meth:`Leases.confirm`).
A call already under way as the process stopped still ends as it would have.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlmodel import col, update

from woostore_cluster import Cluster, each_call
from woostore_provisioner.retries import TRANSIENT_ERRORS, LeaseLost, StoreBusy
from woostore_shared.models import Store, StoreStatus, utcnow
from woostore_shared.outbox import Outbox
from woostore_shared.unit_of_work import UnitOfWork

KeepAlive = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Standing:
    """Where the store stands, read as its lease is renewed."""

    status: StoreStatus
    delete_requested: bool  # its deletion was asked for (it starts as the work ends)


@dataclass(eq=False)
class Attempt:
    """One delivery's work on one store, under its lease."""

    store_id: uuid.UUID
    owner: str
    # Where the store stood at the last renewal, and when that renewal was asked for
    # (time.monotonic()): what the work checks, not a read of its own.
    standing: Standing | None = None
    asked_at: float = 0.0
    # When the last renewal that went through was asked for (or the lease taken).
    renewed_at: float = field(default_factory=time.monotonic)
    # Why the beat stopped (LeaseLost: another attempt has the store; or renewals failing
    # past two beats, the lease about to lapse): the work must stop too.
    stopped: Exception | None = None

    def still_held(self) -> None:
        """Raise why the lease's beat stopped, if it did: checked before each step and
        before a recipe's end is written, so that no work goes on past its lease."""
        if self.stopped is not None:
            raise self.stopped

    def standing_since(self, moment: float) -> Standing | None:
        """Where the store stood at a renewal asked for after ``moment`` (None: none was).
        A renewal from before the work's last write may show what that write changed."""
        return self.standing if self.asked_at > moment else None


def new_owner() -> str:
    """Names one attempt: this process, and which of its attempts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leases:
    """Taken, renewed and released through a unit of work, like every other write."""

    def __init__(self, outbox: Outbox, renew_every: float) -> None:
        self.outbox = outbox
        self.renew_every = renew_every
        self.ttl = timedelta(seconds=3 * renew_every)  # two beats may fail before it lapses

    @asynccontextmanager
    async def hold(
        self, store_id: uuid.UUID, owner: str, keep_alive: KeepAlive
    ) -> AsyncIterator[Attempt]:
        """Take the store's lease for ``owner`` (or raise :class:`StoreBusy`), keep it and
        the message (``keep_alive``) alive while held, release it after."""
        async with UnitOfWork.begin(self.outbox) as uow:
            taken = await uow.session.exec(
                update(Store)
                .where(col(Store.id) == store_id)
                .where(
                    col(Store.lease_owner).is_(None)
                    | (col(Store.lease_owner) == owner)  # this attempt, trying again
                    | (col(Store.lease_expires_at) < utcnow())
                )
                .values(lease_owner=owner, lease_expires_at=utcnow() + self.ttl)
            )
        if taken.rowcount != 1:
            raise StoreBusy
        attempt = Attempt(store_id, owner)
        beating = asyncio.ensure_future(self._beat(attempt, keep_alive))
        try:
            yield attempt
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
            with suppress(Exception):  # best effort: an unreleased lease simply expires
                async with UnitOfWork.begin(self.outbox) as uow:
                    await uow.session.exec(
                        update(Store)
                        .where(col(Store.id) == store_id)
                        .where(col(Store.lease_owner) == owner)
                        .values(lease_owner=None, lease_expires_at=None)
                    )

    async def _beat(self, attempt: Attempt, keep_alive: KeepAlive) -> None:
        """Renew the message and the lease every ``renew_every`` seconds until the lease is
        lost. Each on its own: NATS away must not let the lease lapse. A renewal of the lease
        that fails for a moment is left to the next; failing two beats running, the lease
        would lapse at the next, so the beat stops and the work with it (retried in place,
        as any transient error is). Any other failure stops it too, kept for the work."""
        try:
            while True:
                await asyncio.sleep(self.renew_every)
                with suppress(*TRANSIENT_ERRORS):  # a redelivery finds the lease held
                    await keep_alive()
                try:
                    await self.renew(attempt)
                except TRANSIENT_ERRORS:
                    if self._unsure(attempt):
                        raise
        except Exception as error:
            attempt.stopped = error

    async def confirm(self, attempt: Attempt) -> None:
        """Raise unless the lease is still ``attempt``'s: the beat's reason if it stopped;
        and if no renewal went through for two beats (the beat could not run: the process
        was held up), whatever a renewal now says (:class:`LeaseLost` if another attempt
        took the store over). Within two beats of a renewal the lease is held for certain:
        it lapses a beat later, which covers the clocks of two hosts differing. A lease found
        another's stops the attempt, as the beat's finding would (its watch ends the step);
        a renewal refused for a moment is an error of this call only, unless the beat's own
        renewal went through meanwhile."""
        attempt.still_held()
        if self._unsure(attempt):
            try:
                await self.renew(attempt)
            except TRANSIENT_ERRORS:
                if not self._unsure(attempt):
                    return  # the beat's renewal went through meanwhile: held
                raise
            except LeaseLost as lost:
                attempt.stopped = lost
                raise

    def _unsure(self, attempt: Attempt) -> bool:
        """Whether no renewal of ``attempt``'s lease went through for two beats: it lapses at
        the third, and may have (the clocks of two hosts differ)."""
        return time.monotonic() - attempt.renewed_at >= 2 * self.renew_every

    async def renew(self, attempt: Attempt) -> None:
        """Extend the lease; where the store stands is kept on ``attempt``."""
        asked_at = time.monotonic()
        async with UnitOfWork.begin(self.outbox) as uow:
            renewed = await uow.session.exec(
                update(Store)
                .where(col(Store.id) == attempt.store_id)
                .where(col(Store.lease_owner) == attempt.owner)
                .values(lease_expires_at=utcnow() + self.ttl)
                .returning(col(Store.status), col(Store.delete_requested_at))
            )
            row = renewed.one_or_none()
        if row is None:
            raise LeaseLost
        status, delete_requested_at = row
        attempt.standing = Standing(StoreStatus(status), delete_requested_at is not None)
        attempt.asked_at = attempt.renewed_at = asked_at


def fenced(cluster: Cluster, leases: Leases, attempt: Attempt) -> Cluster:
    """``cluster`` as ``attempt`` reaches it: each call made only while its lease holds."""

    def confirmed_first(_: str, call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        async def confirmed(*args: Any, **kwargs: Any) -> Any:
            await leases.confirm(attempt)
            return await call(*args, **kwargs)

        return confirmed

    return each_call(cluster, confirmed_first)
