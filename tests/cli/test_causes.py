"""Why a store waits, end to end: the simulated cluster holds the rollout on an image it cannot
pull, the provisioner asks why, and the words reach `woostore show` (from the API) and
`create --wait` (over the event stream), then lead the failure's reason."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.cli.conftest import Platform, api_store, woostore
from tests.cli.test_retry import restart_provisioner
from woostore_provisioner.recipe import PROVISION

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
HELD = {
    "WOOSTORE_SIM_FAULTS": json.dumps({"wait_for_rollout": "image_pull"}),
    # Long enough for `woostore wait` to find the store still waiting on a loaded machine.
    "WOOSTORE_ROLLOUT_TIMEOUT_SECONDS": "8",
    "WOOSTORE_CAUSE_POLL_SECONDS": "0.2",
}
WORDS = "Cannot download the image ghcr.io/woostore/"
DEADLINE_SECONDS = 30.0


def test_a_store_stuck_on_its_image_says_so_in_show_over_the_stream_and_when_it_fails(
    platform: Platform,
) -> None:
    restart_provisioner(platform, **HELD)
    try:
        created = woostore(platform, "create", "Stuck Shop", "--json")
        assert created.code == 0, created.err
        store_id = created.json()["id"]
        give_up = time.monotonic() + DEADLINE_SECONDS
        while not (api_store(platform, store_id).get("waiting_cause") or "").startswith(WORDS):
            assert time.monotonic() < give_up, "the store never said why it waits"
            time.sleep(0.1)
        shown = woostore(platform, "show", store_id)
        assert shown.code == 0, shown.err
        assert f"  waiting     {WORDS}" in shown.out
        # Waited for midway, it starts where the store is, not "Queued" (a user's review).
        waited = woostore(platform, "wait", store_id)
        assert waited.code == 1, (waited.out, waited.err)  # the rollout gives up: it fails
        assert waited.err, waited.out  # followed, not found failed already
        first = waited.err.splitlines()[0]
        assert re.fullmatch(rf"Step \d+ of \d+ — .+ — {WORDS}.* \(\d+%\)", first), waited.err

        followed = woostore(platform, "create", "Stuck Again", "--wait", "--json")
    finally:
        restart_provisioner(platform)

    assert followed.code == 1, followed.err
    events = [line["event"] for line in followed.json_lines()]
    causes = [e["data"]["cause"] for e in events if e["type"].endswith(".progress")]
    told = [cause for cause in causes if cause]
    assert told, causes
    assert told[0].startswith(WORDS)
    rollout = f"step 4 of {len(PROVISION.steps)} — {PROVISION.steps[3].title}"  # as shown
    assert f"Stuck Again failed at {rollout}: {told[0]}" in followed.err
    failed = api_store(platform, events[0]["subject"])
    assert failed["waiting_cause"] is None
    assert failed["failure_reason"].startswith(told[0])
