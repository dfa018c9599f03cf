"""Paths and builders shared by the Kubernetes driver tests."""

from __future__ import annotations

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
