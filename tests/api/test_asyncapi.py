"""The AsyncAPI document is served, covers every event, and its schemas accept the events the
platform really publishes (and refuse a wrong one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import httpx
import jsonschema
import pytest
from nats.aio.client import Client

from tests.support import envelope, stream_messages
from woostore_shared.events import EventName, RefetchReason

# The specification's own schema of an AsyncAPI 3.0 document (installed by make test, from
# tests/api/package.json).
SPECIFICATION = (
    Path(__file__).parent / "node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json"
)


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


async def test_the_document_is_valid_asyncapi_3(document: dict[str, Any]) -> None:
    assert SPECIFICATION.exists(), f"{SPECIFICATION} is missing: make test (make specs) installs it"
    specification = json.loads(SPECIFICATION.read_text())

    jsonschema.Draft7Validator(specification).validate(document)

    wrong = {**document, "servers": {"jetstream": {"host": "nats:4222"}}}  # no protocol
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(specification).validate(wrong)


async def test_every_event_has_a_channel_and_a_message(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    subjects = {
        channel["address"]
        for channel in document["channels"].values()
        if channel["servers"] == [{"$ref": "#/servers/jetstream"}]
    }
    assert subjects == {f"store.{name.value}.{{store_id}}" for name in EventName}
    # The event stream carries each of them, and its own refetch and end frames.
    sse = document["channels"]["sse"]
    assert sse["address"] == "/api/v1/events"
    own = {"refetch", "end"}
    assert set(sse["messages"]) == {f"store_{name.value}" for name in EventName} | own


async def test_the_refetch_message_names_every_reason_the_notifier_sends() -> None:
    """The notifier sends only a RefetchReason (mypy holds it to them); the document's
    schema is made of the same type."""
    from woostore_shared.asyncapi import document

    payload = document("test")["components"]["messages"]["refetch"]["payload"]
    for reason in get_args(RefetchReason):
        jsonschema.validate({"reason": reason}, payload)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"reason": "bored"}, payload)


async def test_the_end_message_is_the_frame_the_notifier_ends_a_stream_with() -> None:
    from woostore_notifier.frames import WITHDRAWN, end
    from woostore_shared.asyncapi import document

    payload = document("test")["components"]["messages"]["end"]["payload"]
    for withdrawal in WITHDRAWN.values():
        name, data = end(withdrawal).decode().splitlines()[:2]
        assert name == "event: end"
        jsonschema.validate(json.loads(data.removeprefix("data: ")), payload)
    bored = {"reason": "access-withdrawn", "cause": "bored", "detail": "x"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bored, payload)


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
    for name in EventName:  # the store events (the stream's refetch frame is none)
        message = document["components"]["messages"][f"store_{name.value}"]
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
