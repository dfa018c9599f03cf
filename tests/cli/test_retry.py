"""woostore retry --wait against the real platform: a store that failed (its provisioner had
a fault) is cleaned up, then made again from scratch, under the same id and name, once the
fault is gone."""

from __future__ import annotations

import json
import time

import pytest

from tests.cli.conftest import Platform, api_store, woostore

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
FAULT = json.dumps({"wait_for_rollout": "error"})
DEADLINE_SECONDS = 60.0


def restart_provisioner(platform: Platform, **settings: str) -> None:
    platform.stop("provisioner")
    platform.start("provisioner", **settings)
    platform.wait_ready()


def test_a_failed_store_is_retried_to_ready_once_cleaned_up(platform: Platform) -> None:
    restart_provisioner(platform, WOOSTORE_SIM_FAULTS=FAULT)
    try:
        failed = woostore(platform, "create", "Second Chance", "--wait", "--json")
        assert failed.code == 1, failed.err
        store_id: str = failed.json_lines()[0]["event"]["subject"]
        give_up = time.monotonic() + DEADLINE_SECONDS
        while api_store(platform, store_id)["cleaned_up_at"] is None:
            assert time.monotonic() < give_up, "the failed store was not cleaned up"
            time.sleep(0.2)
    finally:
        restart_provisioner(platform)

    retried = woostore(platform, "retry", store_id, "--wait")

    assert retried.code == 0, retried.err
    assert retried.out.startswith("Second Chance (simulated) is ready in ")
    store = api_store(platform, store_id)
    assert (store["status"], store["name"], store["failure_reason"]) == (
        "ready", "Second Chance", None,
    )  # fmt: skip
    assert "retry" not in store["actions"]
