"""The event streams open in this process: who holds them, within which limits, and the
sweeps that end the ones that must end (a client that stopped reading, a revoked key)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import Counter as MetricCounter
from prometheus_client import Gauge

from woostore_shared.access import Principal
from woostore_shared.events import Withdrawal
from woostore_shared.logging import get_logger
from woostore_shared.problems import how_many

log = get_logger(__name__)
SEND_TIMEOUT_SECONDS = 30.0  # a client that stops reading is dropped, not waited on forever
CONNECTED = Gauge("woostore_sse_connections", "Open event-stream connections")
REFUSED = MetricCounter("woostore_sse_refused", "Event streams refused at a limit", ["limit"])
DROPPED = MetricCounter("woostore_sse_dropped", "Event streams the notifier ended", ["reason"])
_Held = TypeVar("_Held")  # what a stream is counted by: a key's subject, a tenant's id


@dataclass(frozen=True)
class Refusal:
    """A stream refused at a limit: ``limit`` names it, ``allowed`` says how many it allows."""

    limit: str
    allowed: int
    detail: str


@dataclass(eq=False)
class Client:
    """One open event stream."""

    principal: Principal
    task: asyncio.Task[None] | None = None  # the one writing this stream
    sending_since: float | None = None  # monotonic; set while a send waits on the client
    cursor: int | None = None  # the last event written, once following the hub's memory
    dropped_for: str | None = field(default=None)
    withdrawal: Withdrawal | None = None  # why its key opens nothing now, once dropped for it

    @property
    def tenant(self) -> str | None:
        """Whose events this stream shows: ``None`` for an admin, who sees every tenant's."""
        return None if self.principal.is_admin else str(self.principal.tenant_id)

    def drop(self, reason: str) -> None:
        if self.dropped_for is None:
            self.dropped_for = reason
            DROPPED.labels(reason).inc()
            if self.task is not None and self.task is not asyncio.current_task():
                self.task.cancel()  # the writer, wherever it waits


class Connections:
    """Each key may hold ``per_key`` streams, each tenant ``per_tenant``, the process
    ``total``: without a bound one key, or one tenant minting keys, could exhaust the notifier
    for every other tenant."""

    def __init__(self, per_key: int, per_tenant: int, total: int) -> None:
        self.per_key = per_key
        self.per_tenant = per_tenant
        self.total = total
        self._clients: set[Client] = set()
        self._by_key: Counter[str] = Counter()
        self._by_tenant: Counter[uuid.UUID] = Counter()

    def take(self, principal: Principal) -> Client | Refusal:
        """A new stream for the principal, or why it is refused (a 429)."""
        if len(self._clients) >= self.total:
            return self._refuse(
                "event-streams", self.total, "the event stream is at its connection limit"
            )
        if self._by_tenant[principal.tenant_id] >= self.per_tenant:
            return self._refuse(
                "tenant-event-streams",
                self.per_tenant,
                f"this tenant has its maximum of {how_many(self.per_tenant, 'event stream')} open",
            )
        if self._by_key[principal.subject] >= self.per_key:
            return self._refuse(
                "event-streams-per-key",
                self.per_key,
                f"this key has its maximum of {how_many(self.per_key, 'event stream')} open; "
                "close one (one stream per tab carries every store)",
            )
        client = Client(principal)
        self._clients.add(client)
        self._by_key[principal.subject] += 1
        self._by_tenant[principal.tenant_id] += 1
        CONNECTED.inc()
        return client

    def give_back(self, client: Client) -> None:
        if client not in self._clients:
            return
        self._clients.remove(client)
        _forget_one(self._by_key, client.principal.subject)
        _forget_one(self._by_tenant, client.principal.tenant_id)
        CONNECTED.dec()

    def subjects(self) -> set[str]:
        return set(self._by_key)

    def drop_slow(self, floor: int) -> None:
        """End the streams whose client has not taken a send for ``SEND_TIMEOUT_SECONDS``, or
        is so far behind that what it has not been sent is no longer in memory (``floor``):
        a client's backlog is bounded by the hub's memory, and kept only there."""
        stuck_since = time.monotonic() - SEND_TIMEOUT_SECONDS
        for client in list(self._clients):
            if client.cursor is not None and client.cursor < floor:
                log.info("event stream closed: the client fell too far behind")
                client.drop("fell-behind")  # it resumes from the stream when it is back
            elif client.sending_since is not None and client.sending_since < stuck_since:
                log.info("event stream closed: the client stopped reading")
                client.drop("stopped-reading")

    def drop_withdrawn(self, withdrawn: dict[str, Withdrawal]) -> None:
        """End the streams of the subjects ``withdrawn`` (of those asked about: a stream
        opened while they were looked up was not asked about, and stays), each told why."""
        for client in list(self._clients):
            if (why := withdrawn.get(client.principal.subject)) is not None:
                log.info("event stream closed: access withdrawn", actor=client.principal.actor,
                         cause=why)  # fmt: skip
                client.withdrawal = why
                client.drop("revoked")

    @staticmethod
    def _refuse(limit: str, allowed: int, detail: str) -> Refusal:
        REFUSED.labels(limit).inc()
        return Refusal(limit, allowed, detail)


def _forget_one(counter: Counter[_Held], key: _Held) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]  # a key or tenant without a stream is not kept
