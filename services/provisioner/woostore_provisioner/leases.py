"""Leases: work on a store happens under ``stores.lease_owner``, so a redelivered message
never runs beside a slow original. The lease is renewed while the work goes on; one whose
owner died expires after ``ttl``, and the next delivery takes the store over."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta

from sqlmodel import col, update

from woostore_provisioner.retries import LeaseLost, StoreBusy
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
    keep_alive: KeepAlive  # tells JetStream the message is still being worked on
    # When the lease was last taken or renewed (time.monotonic()): its ttl runs from there.
    renewed_at: float = field(default_factory=time.monotonic)


def new_owner() -> str:
    """Names one attempt: this process, and which of its attempts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leases:
    """Taken, renewed and released through a unit of work, like every other write."""

    def __init__(self, outbox: Outbox, ttl: timedelta) -> None:
        self.outbox = outbox
        self.ttl = ttl

    @asynccontextmanager
    async def hold(
        self, store_id: uuid.UUID, owner: str, keep_alive: KeepAlive
    ) -> AsyncIterator[Attempt]:
        """Take the store's lease for ``owner`` (or raise :class:`StoreBusy`), release it after."""
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
        try:
            yield Attempt(store_id, owner, keep_alive)
        finally:
            with suppress(Exception):  # best effort: an unreleased lease simply expires
                async with UnitOfWork.begin(self.outbox) as uow:
                    await uow.session.exec(
                        update(Store)
                        .where(col(Store.id) == store_id)
                        .where(col(Store.lease_owner) == owner)
                        .values(lease_owner=None, lease_expires_at=None)
                    )

    async def renew(self, attempt: Attempt) -> Standing:
        """Extend the lease; where the store stands comes back with it."""
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
        attempt.renewed_at = asked_at
        status, delete_requested_at = row
        return Standing(StoreStatus(status), delete_requested_at is not None)
