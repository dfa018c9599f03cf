"""Fixtures of the Kubernetes driver tests: the driver over stateful fakes of its seams."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes.config import incluster_config

from tests.cluster.api_server import FakeApiServer
from tests.cluster.fakes import FakeHelm, FakeKube
from tests.cluster.store_api import FakeStore, serve, serving
from tests.cluster.support import HELM
from tests.cluster.tls import make_tls
from woostore_cluster.kubeapi import ClientKubeApi
from woostore_cluster.kubernetes import KubernetesCluster

# A kubeconfig whose API server is a closed loopback port: anything that really connects
# is refused at once, and nothing leaves the machine.
UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
users:
- name: tester
  user:
    token: not-a-real-token
contexts:
- name: nowhere
  context: {cluster: nowhere, user: tester}
current-context: nowhere
"""


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(UNREACHABLE_KUBECONFIG)
    path.chmod(0o600)
    return path


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[ClientKubeApi, FakeApiServer]]:
    """The real client against a loopback API server."""
    server = FakeApiServer()
    async with serve(server.app()) as url:
        path = tmp_path / "kubeconfig"
        path.write_text(UNREACHABLE_KUBECONFIG.replace("https://127.0.0.1:1", url))
        client = ClientKubeApi(path)
        try:
            yield client, server
        finally:
            client.close()


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube(terminating_reads=2)


@pytest.fixture
def helm(kube: FakeKube) -> FakeHelm:
    return FakeHelm(kube)


@pytest.fixture
def driver(kube: FakeKube, helm: FakeHelm, kubeconfig: Path) -> KubernetesCluster:
    return KubernetesCluster(
        kube, helm, kubeconfig=kubeconfig, helm_binary="helm", poll_interval=0.001
    )


@pytest.fixture
def pod_driver(kube: FakeKube, helm: FakeHelm) -> KubernetesCluster:
    """The driver as it runs in a pod: no kubeconfig, the pod's ServiceAccount."""
    return KubernetesCluster(kube, helm, kubeconfig=None, helm_binary="helm", poll_interval=0.001)


@dataclass
class FakePod:
    """What a pod gives the client: the API server's address in KUBERNETES_SERVICE_HOST/PORT,
    and the ServiceAccount's token and CA files."""

    server: FakeApiServer
    url: str  # https://127.0.0.1:<port>, what the client makes of the two variables
    token: Path
    ca: Path

    def rotate(self, token: str) -> None:
        """A new token, swapped in at once as the kubelet does (it writes the projected
        volume aside and switches a symlink): a reader sees the old file or the new one."""
        fresh = self.token.with_name(".token.new")
        fresh.write_text(token)
        os.replace(fresh, self.token)


@pytest.fixture
def not_in_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    """No pod around us, even where the tests themselves run in one."""
    monkeypatch.delenv("WOOSTORE_KUBECONFIG", raising=False)
    monkeypatch.delenv(incluster_config.SERVICE_HOST_ENV_NAME, raising=False)
    monkeypatch.delenv(incluster_config.SERVICE_PORT_ENV_NAME, raising=False)


@pytest.fixture
async def pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, not_in_a_pod: None
) -> AsyncIterator[FakePod]:
    """This process as if in a pod: a loopback API server over https, the two variables
    naming it, and the client's token and CA file names (``incluster_config``'s constants,
    read when the configuration is loaded) pointed at files of ours holding "token-1" and
    the server's CA."""
    tls = make_tls(tmp_path / "tls")
    account = tmp_path / "serviceaccount"
    account.mkdir()
    token = account / "token"
    token.write_text("token-1")
    server = FakeApiServer()
    async with serve(server.app(), tls) as url:
        host, _, port = url.removeprefix("https://").rpartition(":")
        monkeypatch.setenv(incluster_config.SERVICE_HOST_ENV_NAME, host)
        monkeypatch.setenv(incluster_config.SERVICE_PORT_ENV_NAME, port)
        monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
        monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(tls.ca))
        yield FakePod(server, url, token, tls.ca)


@pytest.fixture
def helm_binary() -> Path:
    assert HELM.is_file(), f"the helm binary is missing at {HELM} (make tools)"
    return HELM


@pytest.fixture
def helm_env(tmp_path: Path) -> dict[str, str]:
    """helm's cache, config and data folders in a throwaway place."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")}
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[name] = str(tmp_path / name.lower())
    return env


@pytest.fixture
async def store_api() -> AsyncIterator[FakeStore]:
    async with serving(FakeStore()) as store:
        yield store
