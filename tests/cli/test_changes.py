"""woostore upgrade/rollback/settings --wait against the real platform: the change lane end
to end."""

from __future__ import annotations

import pytest
import yaml

from tests.cli.conftest import Platform, api_store, create_ready, woostore
from woostore_devstack.embedded import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
CHART_VERSION = yaml.safe_load((REPO / "helm" / "store" / "Chart.yaml").read_text())["version"]


def test_upgrade_and_rollback_wait_for_the_store_to_be_ready_again(platform: Platform) -> None:
    store_id = create_ready(platform, "Changing Shop")

    nothing_before = woostore(platform, "rollback", store_id, "--wait")
    assert nothing_before.code == 1
    assert nothing_before.err.startswith("Nothing to roll back to: ")  # refused at once
    assert api_store(platform, store_id)["status"] == "ready"

    upgraded = woostore(platform, "upgrade", store_id, "--wait")
    assert upgraded.code == 0, upgraded.err
    assert upgraded.out == f"Changing Shop (simulated) runs chart {CHART_VERSION} (revision 2).\n"
    assert "Changed" in upgraded.err  # the progress bar's last state
    assert "100%" in upgraded.err
    rolled_back = woostore(platform, "rollback", store_id, "--wait")
    assert rolled_back.code == 0, rolled_back.err
    assert rolled_back.out.endswith(f"runs chart {CHART_VERSION} (revision 3).\n")

    store = api_store(platform, store_id)
    assert (store["status"], store["release_revision"], store["failure_reason"]) == (
        "ready", 3, None,
    )  # fmt: skip
    assert store["last_change"]["kind"] == "rollback"
    assert store["last_change"]["result"] == "changed"
    shown = woostore(platform, "show", store_id)
    assert f"chart       {CHART_VERSION} (revision 3)" in shown.out
    assert "last change rollback changed" in shown.out
    assert (
        "actions     delete, upgrade, rollback, settings, backup, restore, credentials" in shown.out
    )


def test_settings_wait_for_the_store_to_have_them(platform: Platform) -> None:
    store_id = create_ready(platform, "Moving Shop")

    nothing = woostore(platform, "settings", store_id)
    assert (nothing.code, nothing.err) == (
        2, "Give --currency, --country, --state, --language, --admin-email\n"
    )  # fmt: skip
    changed = woostore(platform, "settings", store_id, "--currency", "eur", "--wait")
    assert changed.code == 0, changed.err
    assert changed.out == ("Moving Shop (simulated) has its new settings: EUR, IN-KA, en_US.\n")
    wrong = woostore(platform, "settings", store_id, "--currency", "XYZ")
    assert wrong.code == 1
    assert "'XYZ' is not the ISO 4217 code of a currency" in wrong.err
    store = api_store(platform, store_id)
    assert (store["status"], store["settings"]["currency"]) == ("ready", "EUR")
    assert (store["last_change"]["kind"], store["last_change"]["result"]) == ("settings", "changed")
