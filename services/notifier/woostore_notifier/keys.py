"""Who opens an event stream, without a database round trip per connection.

When a notifier restarts, every client it held reconnects within seconds. Asking PostgreSQL
about each one would make that storm a storm of queries, so:

- a key (or ticket subject) is looked up once and remembered for ``REMEMBER_SECONDS``;
  connections presenting it meanwhile, or while it is being looked up, share the answer;
- tickets are spent in batches, one statement for all those presented within ``SPEND_SECONDS``;
- a withdrawal (a key revoked, its tenant suspended or deleted) is enforced by a sweep
  every ``REMEMBER_SECONDS`` (at once when the API says a key was withdrawn), one query for
  the keys of all open streams, which ends the streams of withdrawn keys, each told why,
  and forgets what was remembered.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from starlette.requests import Request

from woostore_shared.access import Authenticator, Principal
from woostore_shared.events import Withdrawal
from woostore_shared.secrets import InvalidTicket, OpenedTicket, TicketSigner

REMEMBER_SECONDS = 30.0  # also the longest a revoked key's stream stays open
SPEND_SECONDS = 0.01
_REMEMBERED_AT_MOST = 100_000  # answers; past that, all are forgotten at once


class _Answer(NamedTuple):
    until: float  # monotonic time it is remembered until
    principal: asyncio.Future[Principal | None]  # whose it is, once looked up
    checks: int  # Keys._checks as it was looked up


class Keys:
    def __init__(self, authenticator: Authenticator, tickets: TicketSigner) -> None:
        self._authenticator = authenticator
        self._tickets = tickets
        self._remembered: dict[str, _Answer] = {}
        self._checks = 0  # of the keys of open streams, begun so far
        self._spending: list[tuple[OpenedTicket, asyncio.Future[bool]]] = []
        self._spend_handle: asyncio.TimerHandle | None = None

    async def principal(self, request: Request) -> Principal | None:
        """From a bearer API key (programs), or a ticket from POST /api/v1/events/ticket
        (browsers: an EventSource cannot send headers). A ticket is read, not spent: it is
        spent by :meth:`admitted` once nothing else refuses the stream."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:]
            # Remembered by a digest: the process holds no key it was shown.
            digest = "token:" + hashlib.sha256(token.encode()).hexdigest()
            return await self._remember(digest, lambda: self._authenticator.by_token(token))
        ticket = request.query_params.get("ticket")
        if ticket is None:
            return None
        try:
            subject = self._tickets.open(ticket).subject
        except InvalidTicket:
            return None
        return await self._remember(
            "subject:" + subject, lambda: self._authenticator.by_subject(subject)
        )

    async def _remember(
        self, name: str, look_up: Callable[[], Awaitable[Principal | None]]
    ) -> Principal | None:
        while True:
            remembered = self._remembered.get(name)
            if remembered is None or remembered.until < time.monotonic():
                if len(self._remembered) >= _REMEMBERED_AT_MOST:
                    self._remembered.clear()
                answer = asyncio.ensure_future(look_up())
                remembered = _Answer(time.monotonic() + REMEMBER_SECONDS, answer, self._checks)
                self._remembered[name] = remembered
                answer.add_done_callback(lambda done: self._forget_unless_found(name, done))
            principal = await asyncio.shield(remembered.principal)
            # A check of the keys began while it was looked up (a withdrawal was heard): the
            # answer may predate the key's revocation, and the check did not see this stream.
            if remembered.checks == self._checks:
                return principal

    async def admitted(self, request: Request) -> bool:
        """Whether the stream ``request`` asks for may open: its ticket, if it came with one,
        spent now, for the first time (a ticket opens one stream, once). A stream refused
        before it is asked (a mistyped parameter, the key's streams at their limit) leaves it
        for the client's next try."""
        ticket = request.query_params.get("ticket")
        if request.headers.get("authorization", "").lower().startswith("bearer ") or not ticket:
            return True
        try:
            opened = self._tickets.open(ticket)
        except InvalidTicket:  # expired since principal() read it, a moment ago
            return False
        return await self._spend(opened)

    def _forget_unless_found(self, name: str, answer: asyncio.Future[Principal | None]) -> None:
        # Only found principals are remembered: a key created a moment later must work.
        found = not answer.cancelled() and answer.exception() is None and answer.result()
        remembered = self._remembered.get(name)
        if not found and remembered is not None and remembered.principal is answer:
            del self._remembered[name]

    async def _spend(self, ticket: OpenedTicket) -> bool:
        spent: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._spending.append((ticket, spent))
        if self._spend_handle is None:
            self._spend_handle = asyncio.get_running_loop().call_later(
                SPEND_SECONDS, lambda: asyncio.ensure_future(self._spend_batch())
            )
        return await spent

    async def _spend_batch(self) -> None:
        batch, self._spending, self._spend_handle = self._spending, [], None
        try:
            first_uses = await self._authenticator.spend_tickets([t for t, _ in batch])
        except Exception as error:
            for _, spent in batch:
                spent.set_exception(error)
            return
        for ticket, spent in batch:
            # A ticket presented twice in one batch was spent for the first time once.
            spent.set_result(ticket.id in first_uses)
            first_uses.discard(ticket.id)

    async def withdrawn(self, subjects: set[str]) -> dict[str, Withdrawal]:
        """Which of ``subjects`` open nothing any more, and why. What was remembered is
        forgotten first, and lookups under way are made again once they end: a key withdrawn
        opens no new stream either."""
        self._checks += 1
        self._remembered.clear()
        return await self._authenticator.withdrawn(subjects)
