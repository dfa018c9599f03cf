"""``connect_cluster`` picks the Kubernetes driver for a kubeconfig, or in a pod without one
for the pod's ServiceAccount, and refuses to start, with a message naming the setting, when
neither is there or the kubeconfig or helm is not usable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.conftest import FakePod
from tests.cluster.support import HELM, release_for
from woostore_cluster import connect_cluster
from woostore_cluster.kubeapi import ClientKubeApi
from woostore_cluster.kubernetes import KubernetesCluster
from woostore_shared.settings import ClusterMode, Settings


def test_a_kubeconfig_gives_the_kubernetes_driver(kubeconfig: Path) -> None:
    cluster = connect_cluster(Settings(kubeconfig=kubeconfig, helm_binary=str(HELM)))

    assert isinstance(cluster, KubernetesCluster)
    assert cluster.simulated is False
    assert cluster.releases.kubeconfig == kubeconfig.resolve()
    assert cluster.releases.helm_binary == str(HELM)


@pytest.mark.usefixtures("not_in_a_pod")
def test_kubernetes_mode_outside_a_pod_without_a_kubeconfig_refuses_to_start() -> None:
    with pytest.raises(SystemExit, match="needs WOOSTORE_KUBECONFIG") as raised:
        connect_cluster(Settings(cluster=ClusterMode.KUBERNETES, helm_binary=str(HELM)))

    message = str(raised.value)
    assert "or to run in a Kubernetes pod with its ServiceAccount token mounted" in message
    assert "KUBERNETES_SERVICE_HOST" in message


async def test_in_a_pod_without_a_kubeconfig_the_service_account_is_used(pod: FakePod) -> None:
    cluster = connect_cluster(Settings(cluster=ClusterMode.KUBERNETES, helm_binary=str(HELM)))

    assert isinstance(cluster, KubernetesCluster)
    assert cluster.releases.kubeconfig is None
    assert isinstance(cluster.kube, ClientKubeApi)
    try:
        assert await cluster.namespace_exists("store-a") is False
    finally:
        cluster.kube.close()
    assert pod.server.authorizations == ["bearer token-1"]
    # helm is left to find the in-cluster configuration itself.
    argv = cluster.releases.upgrade_argv(release_for("store-a"), Path("values.json"), 300)
    assert "--kubeconfig" not in argv


def test_a_pod_without_its_token_is_not_in_a_pod(pod: FakePod) -> None:
    """automountServiceAccountToken: false, or a token file elsewhere: no in-cluster mode."""
    pod.token.unlink()

    with pytest.raises(SystemExit, match="needs WOOSTORE_KUBECONFIG"):
        connect_cluster(Settings(cluster=ClusterMode.KUBERNETES, helm_binary=str(HELM)))


def test_a_pod_whose_ca_file_is_missing_refuses_to_start(pod: FakePod) -> None:
    pod.ca.unlink()

    with pytest.raises(SystemExit, match=r"in-cluster configuration .* could not be loaded: "):
        connect_cluster(Settings(cluster=ClusterMode.KUBERNETES, helm_binary=str(HELM)))


def test_in_a_pod_a_kubeconfig_given_wins(pod: FakePod, kubeconfig: Path) -> None:
    cluster = connect_cluster(Settings(kubeconfig=kubeconfig, helm_binary=str(HELM)))

    assert isinstance(cluster, KubernetesCluster)
    assert cluster.releases.kubeconfig == kubeconfig.resolve()
    assert isinstance(cluster.kube, ClientKubeApi)
    assert cluster.kube._configuration.host == "https://127.0.0.1:1"
    cluster.kube.close()


@pytest.mark.usefixtures("pod")
def test_in_a_pod_a_missing_helm_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="WOOSTORE_HELM_BINARY"):
        connect_cluster(
            Settings(cluster=ClusterMode.KUBERNETES, helm_binary=str(tmp_path / "helm"))
        )


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


def test_a_missing_helm_refuses_to_start_the_simulated_cluster_too(tmp_path: Path) -> None:
    """It renders stores' charts with helm: without it each store would fail at its first
    release, after five deliveries."""
    settings = Settings(data_dir=tmp_path, helm_binary=str(tmp_path / "helm"))
    assert settings.cluster_mode is ClusterMode.SIMULATED
    with pytest.raises(SystemExit, match=r"WOOSTORE_HELM_BINARY=.*: no such program"):
        connect_cluster(settings)


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
