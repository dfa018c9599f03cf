"""Fixtures of the Kubernetes driver tests: the driver over stateful fakes of its seams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.fakes import FakeHelm, FakeKube
from tests.cluster.store_api import FakeStore, serving
from tests.cluster.support import HELM
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
