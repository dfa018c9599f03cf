"""Our events are CloudEvents 1.0 as the official CloudEvents SDK reads them, and they keep
their meaning through it: every event type the platform publishes, with its extensions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from cloudevents.core.formats.json import JSONFormat

from woostore_shared.events import (
    Deleted,
    DeleteRequested,
    EventData,
    Failed,
    Progress,
    Ready,
    Requested,
    StepInfo,
    StoreSummary,
    make_event,
)
from woostore_shared.models import StoreStatus

STORE_ID = uuid.uuid4()
TENANT_ID = uuid.uuid4()
SUMMARY = StoreSummary(
    id=STORE_ID,
    name="Café",
    slug="cafe-a1b2c3",
    type="woocommerce",
    status=StoreStatus.QUEUED,
    simulated=True,
    created_at=datetime(2026, 11, 26, tzinfo=UTC),
)
EVERY_EVENT: list[EventData] = [
    Requested(store=SUMMARY),
    Progress(
        status=StoreStatus.PROVISIONING,
        phase="provision",
        step=StepInfo(name="rollout", title="Starting WordPress and MariaDB", index=4, total=9),
        state="started",
        progress=0.3333,
    ),
    Ready(
        storefront_url="http://cafe.example.test", admin_url="http://cafe.example.test/wp-admin/"
    ),
    Failed(reason="provisioning did not finish within 600 s", step="rollout"),
    DeleteRequested(),
    Deleted(),
]


@pytest.mark.parametrize("data", EVERY_EVENT, ids=lambda d: type(d).__name__)
def test_the_sdk_reads_each_event_with_its_attributes_extensions_and_data(data: EventData) -> None:
    ours = make_event(
        data, store_id=STORE_ID, tenant_id=TENANT_ID, correlation_id="c0ffee", source="/tests"
    )

    theirs = JSONFormat().read(None, ours.model_dump_json().encode())

    assert theirs.get_specversion() == "1.0"
    assert theirs.get_id() == str(ours.id)
    assert theirs.get_type() == ours.type
    assert theirs.get_type().startswith("io.woostore.store.")
    assert theirs.get_source() == "/tests"
    assert theirs.get_subject() == str(STORE_ID)
    assert theirs.get_time() == ours.time
    assert theirs.get_datacontenttype() == "application/json"
    assert theirs.get_extension("correlationid") == "c0ffee"
    assert theirs.get_extension("tenantid") == str(TENANT_ID)
    read = theirs.get_data()
    assert read == data.model_dump(mode="json")
    assert isinstance(read, dict)
    assert read["status"] == ours.data["status"]
