"""Paths and builders shared by the Kubernetes driver tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from woostore_cluster import Cluster, Release

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / ".tools" / "bin" / "helm"
CHART = REPO / "helm" / "store"
LOCAL_PROFILE = CHART / "values-local.yaml"


def release_for(
    namespace: str, *, name: str = "Acme Coffee", values_files: tuple[Path, ...] = ()
) -> Release:
    """The release the recipe asks for (recipe.install_release), for one store."""
    slug = namespace.removeprefix("store-")
    return Release(
        name="store",
        namespace=namespace,
        chart=CHART,
        values={
            "storeId": slug,
            "storeName": name,
            "host": f"{slug}.shops.example.test",
            "credentialsSecret": "store-credentials",
        },
        values_files=values_files,
    )


async def running_store(cluster: Cluster, namespace: str) -> None:
    """``namespace`` with the store chart installed and its pods running, as the recipe leaves
    it before WordPress is installed."""
    await cluster.ensure_namespace(namespace, {})
    await cluster.install_release(release_for(namespace), timeout=60)
    await cluster.wait_for_rollout(namespace, timeout=60)


QUEUE_RUNNER = "action_scheduler_run_queue"  # WooCommerce's, every minute


async def queue_runner_is_ahead(
    cluster: Cluster, namespace: str, now: datetime | None = None
) -> bool:
    """Whether WooCommerce's queue runner is next due after ``now``: the store's cron
    container ran it. WordPress cannot run it itself (DISABLE_WP_CRON), nor do the recipe's
    WP-CLI runs."""
    listed = await cluster.wp(namespace, ["cron", "event", "list", "--format=json"])
    assert listed.ok, listed.stdout
    (runner,) = [e for e in json.loads(listed.stdout) if e["hook"] == QUEUE_RUNNER]
    due = datetime.strptime(runner["next_run_gmt"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return due > (now or datetime.now(UTC))
