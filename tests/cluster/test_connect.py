"""``connect_cluster`` picks the Kubernetes driver for a kubeconfig, and refuses to start,
with a message naming the setting, when the kubeconfig or helm is not usable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.support import HELM
from woostore_cluster import connect_cluster
from woostore_cluster.kubernetes import KubernetesCluster
from woostore_shared.settings import ClusterMode, Settings


def test_a_kubeconfig_gives_the_kubernetes_driver(kubeconfig: Path) -> None:
    cluster = connect_cluster(Settings(kubeconfig=kubeconfig, helm_binary=str(HELM)))

    assert isinstance(cluster, KubernetesCluster)
    assert cluster.simulated is False
    assert cluster.kubeconfig == kubeconfig.resolve()
    assert cluster.helm_binary == str(HELM)


def test_kubernetes_mode_without_a_kubeconfig_refuses_to_start() -> None:
    with pytest.raises(SystemExit, match="needs WOOSTORE_KUBECONFIG"):
        connect_cluster(Settings(cluster=ClusterMode.KUBERNETES))


def test_a_missing_kubeconfig_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no readable file there"):
        connect_cluster(Settings(kubeconfig=tmp_path / "nope", helm_binary=str(HELM)))


def test_a_kubeconfig_that_is_not_one_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("just: some yaml\n")

    with pytest.raises(SystemExit, match="could not be loaded"):
        connect_cluster(Settings(kubeconfig=path, helm_binary=str(HELM)))


def test_a_missing_helm_refuses_to_start(kubeconfig: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="WOOSTORE_HELM_BINARY"):
        connect_cluster(Settings(kubeconfig=kubeconfig, helm_binary=str(tmp_path / "helm")))


def test_values_profiles_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WOOSTORE_STORE_VALUES_FILES", "helm/store/values-local.yaml, extra.yaml")
    assert Settings().store_values_files == [
        Path("helm/store/values-local.yaml"),
        Path("extra.yaml"),
    ]
    monkeypatch.setenv("WOOSTORE_STORE_VALUES_FILES", '["a.yaml"]')
    assert Settings().store_values_files == [Path("a.yaml")]
    monkeypatch.delenv("WOOSTORE_STORE_VALUES_FILES")
    assert Settings().store_values_files == []
