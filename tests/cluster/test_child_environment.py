"""helm, and every other child process of the cluster seam, runs with an environment of its
own: what it needs to find programs, its folders, the in-cluster API server and proxies.
The platform's secrets, set in the provisioner's environment, never reach it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.support import release_for
from woostore_cluster.helm import INHERITED_VARIABLES, SubprocessHelmRunner
from woostore_cluster.simulated import SimulatedCluster

NS = "store-acme-1a2b3c"
SECRETS = {
    "WOOSTORE_ADMIN_TOKEN": "admin-token-value",
    "WOOSTORE_SECRET_KEY": "secret-key-value",
    "WOOSTORE_DATABASE_URL": "postgresql://woostore:db-password@db/woostore",
}
# What would send helm elsewhere than --kubeconfig or the pod's ServiceAccount say.
REDIRECTING = {
    "KUBECONFIG": "/somewhere/else",
    "HELM_KUBEAPISERVER": "https://127.0.0.1:1",
    "HELM_NAMESPACE": "kube-system",
}
KEPT = {
    "HELM_CACHE_HOME": "/var/cache/helm",
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "HTTPS_PROXY": "http://proxy.example:3128",
}


@pytest.fixture
def parent_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The provisioner's environment, as the chart gives it."""
    for name, value in {**SECRETS, **REDIRECTING, **KEPT}.items():
        monkeypatch.setenv(name, value)


def stand_in_helm(tmp_path: Path, writes_to: Path) -> Path:
    """A program in helm's place that writes its environment to ``writes_to`` and prints
    nothing (an empty manifest stream, as far as ``helm template`` goes)."""
    script = tmp_path / "helm"
    script.write_text(f"#!/bin/sh\nenv > '{writes_to}'\n")
    script.chmod(0o755)
    return script


def environment_in(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def assert_only_the_allowed(seen: dict[str, str]) -> None:
    for name, value in SECRETS.items():
        assert name not in seen, name
        assert not any(value in v for v in seen.values()), name
    assert not set(REDIRECTING) & set(seen)
    assert {k: seen[k] for k in KEPT} == KEPT
    assert "PATH" in seen
    # sh itself may add a few of its own (PWD, SHLVL): nothing else came from us.
    assert set(seen) - {"PWD", "SHLVL", "_", "OLDPWD"} <= set(INHERITED_VARIABLES)


async def test_helm_gets_only_the_allowed_variables(
    tmp_path: Path, parent_environment: None
) -> None:
    seen = tmp_path / "env"

    result = await SubprocessHelmRunner().run([str(stand_in_helm(tmp_path, seen))], timeout=30)

    assert result.ok, result.stderr
    assert_only_the_allowed(environment_in(seen))


async def test_the_simulated_clusters_helm_template_gets_only_the_allowed_variables(
    tmp_path: Path, parent_environment: None
) -> None:
    seen = tmp_path / "env"
    cluster = SimulatedCluster(
        tmp_path / "sim", helm_binary=str(stand_in_helm(tmp_path, seen)), time_scale=0
    )
    await cluster.ensure_namespace(NS, {})

    await cluster.install_release(release_for(NS), timeout=30)

    assert_only_the_allowed(environment_in(seen))
