"""The AsyncAPI document is served, covers every event, and its schemas accept the events the
platform really publishes (and refuse a wrong one)."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest
from nats.aio.client import Client

from tests.support import envelope, stream_messages
from woostore_shared.events import EventName


@pytest.fixture
async def document(anonymous: httpx.AsyncClient) -> dict[str, Any]:
    response = await anonymous.get("/api/v1/asyncapi.json")  # public, like /openapi.json
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def schema_of(document: dict[str, Any], event_type: str) -> dict[str, Any]:
    name = event_type.removeprefix("io.woostore.store.")
    payload: dict[str, Any] = document["components"]["messages"][f"store_{name}"]["payload"]
    return payload


async def test_every_event_has_a_channel_and_a_message(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {f"store.{name.value}.{{store_id}}" for name in EventName}


async def test_the_schemas_accept_the_events_the_platform_publishes_and_refuse_others(
    document: dict[str, Any], client: httpx.AsyncClient, nats_client: Client
) -> None:
    store = (await client.post("/api/v1/stores", json={"name": "Schema Shop"})).json()
    [message] = await stream_messages(nats_client, store["id"])
    event = envelope(message)

    jsonschema.validate(event, schema_of(document, event["type"]))

    wrong = {**event, "data": {"status": "ready"}}  # a requested event without its store
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, schema_of(document, event["type"]))


@pytest.mark.parametrize(
    ("left_out", "of"),
    [("specversion", None), ("datacontenttype", None), ("status", "data")],
)
async def test_what_every_event_carries_is_required_by_every_schema(
    document: dict[str, Any], left_out: str, of: str | None
) -> None:
    """Their models give them defaults, which left them out of the schemas' required lists:
    a consumer validating an event could not count on an event's status."""
    for message in document["components"]["messages"].values():
        payload = message["payload"]
        schema = payload["properties"][of] if of else payload
        assert left_out in schema["required"], message["name"]


async def test_a_backup_started_names_only_the_triggers_it_is_sent_for(
    document: dict[str, Any],
) -> None:
    """The backup a change or a restore takes first is announced by that change's event:
    before_upgrade and its kind were listed, and never sent."""
    data = document["components"]["messages"]["store_backup_started"]["payload"]["properties"]
    trigger = data["data"]["properties"]["trigger"]
    assert sorted(trigger["enum"]) == ["requested", "scheduled"]
