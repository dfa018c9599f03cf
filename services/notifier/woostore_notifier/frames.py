"""Store events as Server-Sent Events frames, encoded once for every client that sees them."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from nats.aio.msg import Msg

from woostore_shared.events import NO_TENANT, EndData, RefetchData, RefetchReason, Withdrawal

# Versions before work orders handed lost work out again by repeating its event on STORES
# with this header; such copies stay in the stream for its 30 days and are not new events.
LEGACY_REPLAY_HEADER = "Woostore-Replay"
HIDDEN = str(NO_TENANT)  # a store in the warm pool: nobody's yet, not even shown to admins
# An event's name, for the clients that ask for ``event:`` lines: its type's last part
# (``io.woostore.store.ready``: ``ready``), as addEventListener takes it.
_EVENT_TYPE = re.compile(r"io\.woostore\.store\.([a-z_]+)")


@dataclass(frozen=True, slots=True)
class Frame:
    """One event of the STORES stream, ready to write: its stream sequence (the SSE id), its
    tenant (who may see it), its store, and the bytes of its frame, unnamed (``event:``
    lines are opt-in: an EventSource's ``onmessage`` hears only unnamed events)."""

    seq: int
    tenant: str
    published: float  # when JetStream stored it, seconds since the epoch
    data: bytes  # empty for an event nobody is shown
    traceparent: str | None = None  # the trace the event belongs to (tracing.py)
    name: bytes = b""  # its ``event:`` name; empty for one of no store event's type
    store: str = ""  # the store's id (the event's subject)

    def written(self, named: bool) -> bytes:
        """Its frame, starting with an ``event:`` line naming it if ``named``."""
        return b"event: %s\n%s" % (self.name, self.data) if named and self.name else self.data

    @classmethod
    def of(cls, message: Msg) -> Frame:
        metadata = message.metadata
        seq, published = metadata.sequence.stream, metadata.timestamp.timestamp()
        hidden = cls(seq, HIDDEN, published, b"")
        if LEGACY_REPLAY_HEADER in (message.headers or {}):
            return hidden
        try:
            event = json.loads(message.data)
        except ValueError:
            return hidden  # not an event
        tenant = event.get("tenantid") if isinstance(event, dict) else None
        if not isinstance(tenant, str) or tenant == HIDDEN:
            return hidden
        # One line of JSON, as the outbox writes it; anything else would break the framing.
        body = message.data if b"\n" not in message.data else json.dumps(event).encode()
        traceparent = event.get("traceparent")
        named = _EVENT_TYPE.fullmatch(str(event.get("type")))
        store = event.get("subject")
        return cls(
            seq, tenant, published, b"id: %d\ndata: %s\n\n" % (seq, body),
            traceparent if isinstance(traceparent, str) else None,
            named.group(1).encode() if named else b"",
            store if isinstance(store, str) else "",
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class View:
    """The events one stream is sent: its tenant's (``tenant`` None: every tenant's, for an
    admin), and of one store alone if the client asked (``?store_id=``)."""

    tenant: str | None
    store: str | None = None

    def sees(self, frame: Frame) -> bool:
        return (self.tenant is None or frame.tenant == self.tenant) and (
            self.store is None or frame.store == self.store
        )


EVERY_EVENT = View(None)  # an admin's stream, not narrowed to a store


def refetch(seq: int, reason: RefetchReason) -> bytes:
    """The frame telling a client its resume point cannot be served: what it missed is gone,
    so it must fetch the state it shows again (GET the stores). Its id is where the stream
    goes on from, so a browser's next reconnect resumes there."""
    data = RefetchData(reason=reason).model_dump_json()
    return b"event: refetch\nid: %d\ndata: %s\n\n" % (seq, data.encode())


# The last frame of a stream whose key no longer opens one, by why.
_ENDED = "the event stream was ended: "
WITHDRAWN: dict[Withdrawal, EndData] = {
    "key-revoked": EndData(
        reason="access-withdrawn", cause="key-revoked", detail=_ENDED + "its key was revoked"
    ),
    "tenant-suspended": EndData(
        reason="access-withdrawn",
        cause="tenant-suspended",
        detail=_ENDED + "its tenant was suspended; its keys work again once an admin resumes it",
    ),
    "tenant-deleted": EndData(
        reason="access-withdrawn", cause="tenant-deleted", detail=_ENDED + "its tenant was deleted"
    ),
}


def end(why: EndData) -> bytes:
    """The last frame of a stream the notifier ends for good, saying why: a client told it
    stops, where one that saw the stream merely drop reconnects and is refused. No id: the
    client's last event id stays the last event's."""
    return b"event: end\ndata: %s\n\n" % why.model_dump_json().encode()


# Clients reconnect after the ``retry:`` they were given. Spread over three seconds, so that
# the clients of a notifier that restarts do not all come back in the same instant.
RETRY_MILLISECONDS = (2000, 5000)


def opening(live_from: int | None) -> bytes:
    """A stream's first frame: when to reconnect and, for a stream that starts with new
    events only, the id it starts after. It holds no event, so nothing is dispatched, but a
    client's last event id is set (as the SSE standard has it): a client that keeps it and
    loses the stream before its first event resumes where it started, missing nothing and
    replaying nothing."""
    wait = random.randint(*RETRY_MILLISECONDS)  # noqa: S311
    if live_from is None:
        return b"retry: %d\n: connected\n\n" % wait
    return b"retry: %d\nid: %d\n: connected\n\n" % (wait, live_from)


def ping(at: int) -> bytes:
    """A keep-alive (proxies close a stream idle too long), sent at a heartbeat that brings
    the client no event, that says where the client is: every event up to ``at`` it may see
    was sent. A quiet tenant's id stayed at its own last event while other tenants' went
    by: resuming, it was replayed them all to find none of its own, and after a quiet day
    told to read its state again for nothing."""
    return b": ping\nid: %d\n\n" % at
