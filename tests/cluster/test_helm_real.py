"""The driver's helm commands against the REAL helm v4 binary.

With no cluster here, two checks keep this honest:
- the exact ``upgrade --install`` argv the driver builds, values file included (read while
  it exists), is run as ``helm template`` (which takes the same flags, ``--install``
  aside): helm accepts every flag and renders the real chart from those values;
- every other argv the driver runs (status, history, rollback, uninstall) is given to the
  real helm with a kubeconfig whose API server is a closed loopback port: helm parses flags
  and arguments before it connects, so "cluster unreachable" (and no "unknown flag") proves
  the argv is valid, and the driver maps that failure to a transient error.
Both again for the argvs of a driver in a pod, which carry no ``--kubeconfig``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.fakes import FakeHelm, FakeKube
from tests.cluster.support import LOCAL_PROFILE, release_for
from woostore_cluster import MANAGED_BY, PermanentClusterError, TransientClusterError
from woostore_cluster.helm import HelmResult, SubprocessHelmRunner
from woostore_cluster.kubernetes import KubernetesCluster

NS = "store-acme-1a2b3c"
PARSE_ERRORS = ("unknown flag", "unknown shorthand", "invalid argument", "accepts ", "requires ")


class TemplatingHelm:
    """Runs the driver's ``helm upgrade --install <argv...>`` as ``helm template <argv...>``
    with the real binary; answers ``status`` as helm does for a release that does not exist."""

    def __init__(self, binary: Path, env: dict[str, str]) -> None:
        self.real = SubprocessHelmRunner(env=env)
        self.binary = binary
        self.rendered: list[dict[str, Any]] = []
        self.argv: list[str] = []
        self.stderr = ""

    async def run(self, argv: Sequence[str], timeout: float) -> HelmResult:  # noqa: ASYNC109  (the HelmRunner signature)
        argv = list(argv)
        if argv[1] == "status":
            return HelmResult(1, "", "Error: release: not found\n")
        assert argv[1:3] == ["upgrade", "--install"], argv
        self.argv = argv
        result = await self.real.run([str(self.binary), "template", *argv[3:]], timeout)
        self.stderr = result.stderr
        if result.ok:
            self.rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return result


async def test_the_install_argv_and_values_file_render_the_real_chart(
    kube: FakeKube, kubeconfig: Path, helm_binary: Path, helm_env: dict[str, str]
) -> None:
    helm = TemplatingHelm(helm_binary, helm_env)
    driver = KubernetesCluster(
        kube, helm, kubeconfig=kubeconfig, helm_binary=str(helm_binary), poll_interval=0.05
    )
    await driver.ensure_namespace(NS, {MANAGED_BY[0]: MANAGED_BY[1]})
    release = release_for(NS, name="Café ☕ Shop", values_files=(LOCAL_PROFILE,))

    await driver.install_release(release, timeout=300)

    assert not helm.stderr.strip(), f"helm warned:\n{helm.stderr}"
    for flag in ("--rollback-on-failure", "--wait=watcher", "--kubeconfig"):
        assert flag in helm.argv
    by_kind = {(doc["kind"], doc["metadata"]["name"]): doc for doc in helm.rendered}
    deployment = by_kind[("Deployment", "store-wordpress")]
    assert deployment["metadata"]["namespace"] == NS
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WOOSTORE_STORE_ID"] == "acme-1a2b3c"
    assert container["imagePullPolicy"] == "IfNotPresent"  # the local profile applied
    ingress = by_kind[("Ingress", "store")]
    assert ingress["spec"]["rules"][0]["host"] == "acme-1a2b3c.shops.example.test"
    # The store's values, emoji intact.
    assert ingress["metadata"]["annotations"]["woostore.io/store-name"] == "Café ☕ Shop"
    assert ("StatefulSet", "store-mariadb") in by_kind
    assert not any(doc["kind"] == "Secret" for doc in helm.rendered)  # credentials stay out


async def test_values_the_chart_refuses_fail_the_install_permanently_with_helms_reason(
    kube: FakeKube, kubeconfig: Path, helm_binary: Path, helm_env: dict[str, str]
) -> None:
    helm = TemplatingHelm(helm_binary, helm_env)
    driver = KubernetesCluster(
        kube, helm, kubeconfig=kubeconfig, helm_binary=str(helm_binary), poll_interval=0.05
    )
    await driver.ensure_namespace(NS, {MANAGED_BY[0]: MANAGED_BY[1]})
    release = release_for(NS)
    broken = replace(release, values={**release.values, "host": 42})

    with pytest.raises(PermanentClusterError, match=r"helm upgrade --install of .* failed: .*host"):
        await driver.install_release(broken, timeout=300)


async def test_every_other_argv_is_accepted_by_helm_and_unreachable_is_transient(
    driver: KubernetesCluster,
    helm: FakeHelm,
    kubeconfig: Path,
    helm_binary: Path,
    helm_env: dict[str, str],
) -> None:
    # Collect each command the driver runs, from the recording fake...
    await driver.ensure_namespace(NS, {MANAGED_BY[0]: MANAGED_BY[1]})
    helm.set_release(NS, "store", "deployed", "pending-upgrade")
    await driver.install_release(release_for(NS), timeout=300)  # status, history, rollback
    await driver.uninstall_release(NS, "store")
    commands = {argv[1]: argv for argv in helm.calls if argv[1] != "upgrade"}
    assert set(commands) == {"status", "history", "rollback", "uninstall"}

    # ...then give each to the real helm, whose API server does not answer.
    real = SubprocessHelmRunner(env=helm_env)
    for verb, argv in commands.items():
        result = await real.run([str(helm_binary), *argv[1:]], timeout=30)
        assert not result.ok
        assert not any(e in result.stderr for e in PARSE_ERRORS), f"{verb}: {result.stderr}"
        assert "kubernetes cluster unreachable" in result.stderr, f"{verb}: {result.stderr}"

    # And the driver, on the real helm, calls that transient.
    store_namespace = FakeKube()
    await store_namespace.create_namespace(NS, {})
    real_driver = KubernetesCluster(
        store_namespace, real, kubeconfig=kubeconfig, helm_binary=str(helm_binary)
    )
    with pytest.raises(TransientClusterError, match=r"helm uninstall .* unreachable"):
        await real_driver.uninstall_release(NS, "store")


# -- in a pod: no --kubeconfig -------------------------------------------------------------


async def test_in_a_pod_the_install_argv_renders_the_real_chart(
    kube: FakeKube, helm_binary: Path, helm_env: dict[str, str]
) -> None:
    helm = TemplatingHelm(helm_binary, helm_env)
    driver = KubernetesCluster(
        kube, helm, kubeconfig=None, helm_binary=str(helm_binary), poll_interval=0.05
    )
    await driver.ensure_namespace(NS, {MANAGED_BY[0]: MANAGED_BY[1]})

    await driver.install_release(release_for(NS, values_files=(LOCAL_PROFILE,)), timeout=300)

    assert not helm.stderr.strip(), f"helm warned:\n{helm.stderr}"
    assert "--kubeconfig" not in helm.argv
    assert ("Deployment", "store-wordpress") in {
        (doc["kind"], doc["metadata"]["name"]) for doc in helm.rendered
    }


async def test_in_a_pod_every_other_argv_is_accepted_by_helm(
    pod_driver: KubernetesCluster,
    helm: FakeHelm,
    helm_binary: Path,
    helm_env: dict[str, str],
) -> None:
    await pod_driver.ensure_namespace(NS, {MANAGED_BY[0]: MANAGED_BY[1]})
    helm.set_release(NS, "store", "deployed", "pending-upgrade")
    await pod_driver.install_release(release_for(NS), timeout=300)  # status, history, rollback
    await pod_driver.uninstall_release(NS, "store")
    commands = {argv[1]: argv for argv in helm.calls if argv[1] != "upgrade"}
    assert set(commands) == {"status", "history", "rollback", "uninstall"}
    assert not any("--kubeconfig" in argv for argv in commands.values())

    # In a pod, helm (client-go) would find no kubeconfig and use the in-cluster
    # configuration; here, with no pod, it would try http://localhost:8080 instead.
    # HELM_KUBEAPISERVER sends it to a closed port: a refused connection, whatever else
    # listens on this machine. The argv is what is checked.
    real = SubprocessHelmRunner(env={**helm_env, "HELM_KUBEAPISERVER": "https://127.0.0.1:1"})
    for verb, argv in commands.items():
        result = await real.run([str(helm_binary), *argv[1:]], timeout=30)
        assert not result.ok
        assert not any(e in result.stderr for e in PARSE_ERRORS), f"{verb}: {result.stderr}"
        assert "kubernetes cluster unreachable" in result.stderr, f"{verb}: {result.stderr}"
        assert "127.0.0.1:1" in result.stderr, f"{verb}: {result.stderr}"
