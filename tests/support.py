"""Helpers several test packages share: stores made as the API makes them, and what the
STORES stream holds."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from nats.aio.client import Client
from nats.js.api import RawStreamMsg

from woostore_shared.events import Requested, StoreSummary
from woostore_shared.models import DEFAULT_TENANT_ID, Store, StoreStatus
from woostore_shared.outbox import Outbox
from woostore_shared.topology import STREAM_NAME


async def create_store(outbox: Outbox, name: str = "Acme Coffee") -> Store:
    """What the API does for POST /stores: a queued store and its ``requested`` event."""
    async with outbox.transaction() as tx:
        store = Store(
            tenant_id=DEFAULT_TENANT_ID,
            name=name,
            slug=f"{re.sub(r'[^a-z0-9]+', '-', name.lower())}-{uuid.uuid4().hex[:6]}",
            status=StoreStatus.QUEUED,
            simulated=True,
            correlation_id=uuid.uuid4().hex,
        )
        tx.session.add(store)
        await tx.session.flush()
        tx.emit(store, Requested(store=StoreSummary.model_validate(store, from_attributes=True)))
    return store


async def stream_messages(nats: Client, store_id: object | None = None) -> list[RawStreamMsg]:
    """Every message the STORES stream holds (about one store if given), in stream order."""
    js = nats.jetstream()
    state = (await js.stream_info(STREAM_NAME)).state
    if state.messages == 0:
        return []
    messages = [
        await js.get_msg(STREAM_NAME, seq) for seq in range(state.first_seq, state.last_seq + 1)
    ]
    if store_id is None:
        return messages
    return [m for m in messages if (m.subject or "").endswith(f".{store_id}")]


def envelope(message: RawStreamMsg) -> dict[str, Any]:
    """The CloudEvent a stream message carries."""
    assert message.data is not None
    body: dict[str, Any] = json.loads(message.data)
    return body
