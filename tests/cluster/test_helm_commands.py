"""Every helm command the Kubernetes driver runs: its exact argv, the Helm 4 flags, the
timeouts, the values file, recovery of releases a crash left pending, and how helm's
failures are mapped. Secrets appear in no argv and no message. In a pod (no kubeconfig) the
same commands go without ``--kubeconfig``: helm uses the pod's ServiceAccount.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.cluster.fakes import FakeHelm, FakeKube
from tests.cluster.support import CHART, LOCAL_PROFILE, release_for
from woostore_cluster import MANAGED_BY, PermanentClusterError, TransientClusterError
from woostore_cluster.helm import HelmResult
from woostore_cluster.kubeobjects import Pod
from woostore_cluster.kubernetes import KubernetesCluster
from woostore_cluster.releases import _chart_version
from woostore_shared.secrets import generate_password

NS = "store-acme-1a2b3c"
GRACE = 30.0  # the driver's helm_grace: helm is stopped this long after its own --timeout


@pytest.fixture
async def namespace(driver: KubernetesCluster) -> str:
    await driver.ensure_namespace(NS, {MANAGED_BY[0]: MANAGED_BY[1]})
    return NS


def target(kubeconfig: Path | None) -> list[str]:
    """``--namespace`` and, outside a pod, ``--kubeconfig``; in a pod (None), no kubeconfig."""
    return ["--namespace", NS, *(["--kubeconfig", str(kubeconfig)] if kubeconfig else [])]


def status_argv(kubeconfig: Path | None) -> list[str]:
    return ["helm", "status", "store", *target(kubeconfig), "-o", "json"]


def history_argv(kubeconfig: Path | None) -> list[str]:
    return ["helm", "history", "store", *target(kubeconfig), "-o", "json"]


def rollback_argv(kubeconfig: Path | None, revision: int) -> list[str]:
    return ["helm", "rollback", "store", str(revision), *target(kubeconfig),
            "--timeout", "300s"]  # fmt: skip


def uninstall_argv(kubeconfig: Path | None, timeout: str) -> list[str]:
    return ["helm", "uninstall", "store", *target(kubeconfig),
            "--wait=watcher", "--timeout", timeout, "--ignore-not-found"]  # fmt: skip


def upgrade_argv(kubeconfig: Path | None, values: str, *profiles: Path) -> list[str]:
    return [
        "helm", "upgrade", "--install", "store", str(CHART), *target(kubeconfig),
        *[arg for p in profiles for arg in ("--values", str(p))],
        "--values", values,
        "--rollback-on-failure", "--wait=watcher", "--timeout", "300s",
    ]  # fmt: skip


def test_the_argv_helpers_spell_out_the_kubeconfig(kubeconfig: Path) -> None:
    """So the tests below compare against literal argvs, not against the helpers' logic."""
    assert status_argv(kubeconfig) == [
        "helm", "status", "store", "--namespace", NS, "--kubeconfig", str(kubeconfig),
        "-o", "json",
    ]  # fmt: skip
    assert status_argv(None) == ["helm", "status", "store", "--namespace", NS, "-o", "json"]


# -- install -----------------------------------------------------------------------------------


async def test_a_fresh_install_checks_the_status_then_upgrades_with_the_helm4_flags(
    driver: KubernetesCluster, helm: FakeHelm, kubeconfig: Path, namespace: str
) -> None:
    await driver.install_release(release_for(NS), timeout=300)

    status, upgrade = helm.calls
    assert status == status_argv(kubeconfig)
    (values,) = helm.values_seen
    assert upgrade == upgrade_argv(kubeconfig, str(values.path))
    # The upgrade's --rollback-on-failure waits as long again as the upgrade did.
    assert helm.timeouts == [60 + GRACE, 2 * 300 + GRACE]
    assert helm.status(NS) == "deployed"


async def test_the_values_file_is_private_json_and_removed_afterwards(
    driver: KubernetesCluster, helm: FakeHelm, namespace: str
) -> None:
    release = release_for(NS, name="Café ☕ Shop")

    await driver.install_release(release, timeout=300)

    (values,) = helm.values_seen
    assert values.mode == 0o600
    assert json.loads(values.text) == dict(release.values)
    assert "☕" in values.text  # unescaped: helm's YAML parser refuses JSON surrogate pairs
    assert not values.path.exists()


async def test_the_values_file_is_removed_when_helm_fails(
    driver: KubernetesCluster, helm: FakeHelm, namespace: str
) -> None:
    helm.scripted["upgrade"] = [HelmResult(1, "", "Error: values don't meet the schema\n")]

    with pytest.raises(PermanentClusterError):
        await driver.install_release(release_for(NS), timeout=300)

    (values,) = helm.values_seen
    assert not values.path.exists()


async def test_profiles_come_before_the_store_values_so_the_store_values_win(
    driver: KubernetesCluster, helm: FakeHelm, kubeconfig: Path, namespace: str
) -> None:
    await driver.install_release(release_for(NS, values_files=(LOCAL_PROFILE,)), timeout=300)

    profile, values = helm.values_seen
    assert profile.path == LOCAL_PROFILE
    assert helm.calls[-1] == upgrade_argv(kubeconfig, str(values.path), LOCAL_PROFILE)


async def test_the_timeout_is_given_to_helm_in_whole_seconds(
    driver: KubernetesCluster, helm: FakeHelm, namespace: str
) -> None:
    await driver.install_release(release_for(NS), timeout=90.4)

    upgrade = helm.calls[-1]
    assert upgrade[upgrade.index("--timeout") + 1] == "90s"
    assert helm.timeouts[-1] == 2 * 90.4 + GRACE


async def test_install_into_a_missing_or_terminating_namespace_is_permanent(
    driver: KubernetesCluster, helm: FakeHelm, kube: FakeKube
) -> None:
    with pytest.raises(PermanentClusterError, match="not found"):
        await driver.install_release(release_for(NS), timeout=300)
    await kube.create_namespace(NS, {})
    await kube.delete_namespace(NS)
    with pytest.raises(PermanentClusterError, match="not found"):
        await driver.install_release(release_for(NS), timeout=300)
    assert helm.calls == []


async def test_installing_twice_upgrades_to_the_same_state(
    driver: KubernetesCluster, helm: FakeHelm, kube: FakeKube, namespace: str
) -> None:
    await driver.install_release(release_for(NS), timeout=300)
    workloads = list(kube.workloads[NS])

    await driver.install_release(release_for(NS), timeout=300)

    assert helm.verbs() == ["status", "upgrade", "status", "upgrade"]
    assert helm.releases[(NS, "store")] == [(1, "superseded"), (2, "deployed")]
    assert kube.workloads[NS] == workloads


# -- recovering a release a crash left pending ---------------------------------------------


async def test_pending_install_is_uninstalled_then_installed_afresh(
    driver: KubernetesCluster, helm: FakeHelm, kubeconfig: Path, namespace: str
) -> None:
    helm.set_release(NS, "store", "pending-install")

    await driver.install_release(release_for(NS), timeout=300)

    assert helm.verbs() == ["status", "uninstall", "upgrade"]
    assert helm.calls[1] == uninstall_argv(kubeconfig, "300s")
    assert helm.releases[(NS, "store")] == [(1, "deployed")]


@pytest.mark.parametrize("pending", ["pending-upgrade", "pending-rollback"])
async def test_pending_upgrade_or_rollback_rolls_back_to_the_last_deployed_revision(
    driver: KubernetesCluster, helm: FakeHelm, kubeconfig: Path, namespace: str, pending: str
) -> None:
    helm.set_release(NS, "store", "superseded", "deployed", "failed", pending)

    await driver.install_release(release_for(NS), timeout=300)

    assert helm.verbs() == ["status", "history", "rollback", "upgrade"]
    assert helm.calls[1] == history_argv(kubeconfig)
    assert helm.calls[2] == [
        "helm", "rollback", "store", "2", "--namespace", NS, "--kubeconfig", str(kubeconfig),
        "--timeout", "300s",
    ]  # fmt: skip
    assert helm.calls[2] == rollback_argv(kubeconfig, 2)
    assert helm.status(NS) == "deployed"
    assert not any(s.startswith("pending-") for _, s in helm.releases[(NS, "store")])


async def test_pending_upgrade_with_nothing_good_to_return_to_starts_again(
    driver: KubernetesCluster, helm: FakeHelm, namespace: str
) -> None:
    helm.set_release(NS, "store", "failed", "pending-upgrade")

    await driver.install_release(release_for(NS), timeout=300)

    assert helm.verbs() == ["status", "history", "uninstall", "upgrade"]
    assert helm.releases[(NS, "store")] == [(1, "deployed")]


async def test_a_failed_release_over_a_good_one_is_simply_upgraded(
    driver: KubernetesCluster, helm: FakeHelm, namespace: str
) -> None:
    helm.set_release(NS, "store", "deployed", "failed")

    await driver.install_release(release_for(NS), timeout=300)

    assert helm.verbs() == ["status", "history", "upgrade"]


async def test_a_deployed_release_needs_no_recovery(
    driver: KubernetesCluster, helm: FakeHelm, namespace: str
) -> None:
    helm.set_release(NS, "store", "deployed")

    await driver.install_release(release_for(NS), timeout=300)

    assert helm.verbs() == ["status", "upgrade"]


# -- uninstall -------------------------------------------------------------------------------


async def test_uninstall_waits_and_tolerates_a_missing_release(
    driver: KubernetesCluster, helm: FakeHelm, kubeconfig: Path, namespace: str
) -> None:
    await driver.install_release(release_for(NS), timeout=300)

    await driver.uninstall_release(NS, "store")
    await driver.uninstall_release(NS, "store")

    assert helm.calls[-2] == uninstall_argv(kubeconfig, "240s")
    assert helm.calls[-1] == uninstall_argv(kubeconfig, "240s")
    assert helm.status(NS) is None


async def test_uninstall_tolerates_not_found_in_helms_words_too(
    driver: KubernetesCluster, helm: FakeHelm
) -> None:
    helm.scripted["uninstall"] = [
        HelmResult(1, "", "Error: uninstall: Release not loaded: store: release: not found\n")
    ]

    await driver.uninstall_release(NS, "store")


# -- helm's failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
            TransientClusterError,
        ),
        (
            "Error: release store failed, and has been uninstalled due to rollback-on-failure "
            "being set: context deadline exceeded",
            TransientClusterError,
        ),
        (
            'Error: kubernetes cluster unreachable: Get "https://10.0.0.1:6443/version": '
            "dial tcp 10.0.0.1:6443: connect: connection refused",
            TransientClusterError,
        ),
        (
            "Error: values don't meet the specifications of the schema(s) in the following "
            "chart(s):\nstore:\n- at '': missing property 'host'",
            PermanentClusterError,
        ),
        (
            'Error: UPGRADE FAILED: failed to create resource: Ingress.networking.k8s.io "store" '
            "is invalid: spec.rules[0].host: Invalid value",
            PermanentClusterError,
        ),
        (
            "Error: UPGRADE FAILED: exceeded quota: store-quota, requested: limits.memory=4Gi",
            PermanentClusterError,
        ),
    ],
)
async def test_helm_failures_map_to_transient_or_permanent(
    driver: KubernetesCluster,
    helm: FakeHelm,
    namespace: str,
    stderr: str,
    expected: type[Exception],
) -> None:
    helm.scripted["upgrade"] = [HelmResult(1, "", stderr + "\n")]

    with pytest.raises(expected) as raised:
        await driver.install_release(release_for(NS), timeout=300)

    message = str(raised.value)
    assert message.startswith(f"helm upgrade --install of {NS}/store failed: ")
    assert "Error: " not in message
    assert stderr.splitlines()[-1].removeprefix("Error: ") in message


async def test_a_helm_timeout_with_a_pod_stuck_on_its_image_is_permanent(
    driver: KubernetesCluster, helm: FakeHelm, kube: FakeKube, namespace: str
) -> None:
    """helm --wait only says "context deadline exceeded"; the pods say why."""
    kube.roll_out(NS, ready=False, waiting="ImagePullBackOff")
    pods_seen = asyncio.Event()
    list_pods = kube.list_pods

    async def watched_list_pods(namespace: str, label_selector: str = "") -> list[Pod]:
        pods = await list_pods(namespace, label_selector)
        pods_seen.set()
        return pods

    async def slow_upgrade(argv: Sequence[str], timeout: float) -> HelmResult:  # noqa: ASYNC109  (the HelmRunner signature)
        if argv[1] == "upgrade":
            await pods_seen.wait()  # helm waits; the driver's pod watcher looks meanwhile
            return HelmResult(1, "", "Error: context deadline exceeded\n")
        return await FakeHelm.run(helm, argv, timeout)

    kube.list_pods = watched_list_pods  # type: ignore[method-assign]  # observed, not changed
    helm.run = slow_upgrade  # type: ignore[method-assign]  # a helm that waits, then times out

    with pytest.raises(PermanentClusterError, match="wordpress waiting: ImagePullBackOff"):
        await driver.install_release(release_for(NS), timeout=300)


async def test_a_status_that_fails_is_mapped_not_mistaken_for_no_release(
    driver: KubernetesCluster, helm: FakeHelm, namespace: str
) -> None:
    helm.scripted["status"] = [
        HelmResult(1, "", "Error: kubernetes cluster unreachable: connection refused\n")
    ]

    with pytest.raises(TransientClusterError, match="helm status"):
        await driver.install_release(release_for(NS), timeout=300)

    assert helm.verbs() == ["status"]  # no install on a guess


# -- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["kubeconfig", "in a pod"])
async def test_no_secret_reaches_helm_or_an_error_message(
    driver: KubernetesCluster,
    pod_driver: KubernetesCluster,
    helm: FakeHelm,
    kube: FakeKube,
    namespace: str,
    where: str,
) -> None:
    driver = pod_driver if where == "in a pod" else driver
    keys = ("db-password", "db-root-password", "admin-password")
    passwords = {key: generate_password() for key in keys}
    await driver.ensure_secret(NS, "store-credentials", passwords)
    helm.scripted["upgrade"] = [HelmResult(1, "", "Error: context deadline exceeded\n")]
    errors: list[str] = []

    for attempt in range(2):
        try:
            await driver.install_release(release_for(NS), timeout=300)
        except TransientClusterError as error:
            errors.append(str(error))
        assert attempt == 0 or helm.status(NS) == "deployed"
    await driver.wait_for_rollout(NS, timeout=30)
    secret = await driver.read_secret(NS, "store-credentials")
    await driver.wp(
        NS, ["core", "install", "--prompt=admin_password"], secret["admin-password"] + "\n"
    )
    await driver.uninstall_release(NS, "store")

    assert errors
    for password in passwords.values():
        assert not any(password in arg for argv in helm.calls for arg in argv)
        assert not any(password in seen.text for seen in helm.values_seen)
        assert not any(password in arg for call in kube.exec_calls for arg in call.command)
        assert not any(password in message for message in errors)
    assert kube.exec_calls[-1].stdin == passwords["admin-password"] + "\n"


# -- in a pod: no kubeconfig ---------------------------------------------------------------


async def test_in_a_pod_every_command_goes_without_a_kubeconfig(
    pod_driver: KubernetesCluster, helm: FakeHelm
) -> None:
    driver = pod_driver
    await driver.ensure_namespace(NS, {MANAGED_BY[0]: MANAGED_BY[1]})

    await driver.install_release(release_for(NS), timeout=300)  # fresh
    helm.set_release(NS, "store", "superseded", "deployed", "pending-upgrade")
    await driver.install_release(release_for(NS, values_files=(LOCAL_PROFILE,)), timeout=300)
    helm.set_release(NS, "store", "pending-install")
    await driver.install_release(release_for(NS), timeout=300)
    await driver.uninstall_release(NS, "store")

    first, second, third = (str(v.path) for v in helm.values_seen if v.path != LOCAL_PROFILE)
    assert helm.calls == [
        ["helm", "status", "store", "--namespace", NS, "-o", "json"],
        ["helm", "upgrade", "--install", "store", str(CHART), "--namespace", NS,
         "--values", first, "--rollback-on-failure", "--wait=watcher", "--timeout", "300s"],
        status_argv(None),
        history_argv(None),
        rollback_argv(None, 2),
        upgrade_argv(None, second, LOCAL_PROFILE),
        status_argv(None),
        uninstall_argv(None, "300s"),
        upgrade_argv(None, third),
        uninstall_argv(None, "240s"),
    ]  # fmt: skip
    assert not any("kubeconfig" in arg for argv in helm.calls for arg in argv)
    assert helm.timeouts[:2] == [60 + GRACE, 2 * 300 + GRACE]


async def test_in_a_pod_helm_failures_map_as_with_a_kubeconfig(
    pod_driver: KubernetesCluster, helm: FakeHelm
) -> None:
    await pod_driver.ensure_namespace(NS, {MANAGED_BY[0]: MANAGED_BY[1]})
    helm.scripted["status"] = [
        HelmResult(1, "", "Error: kubernetes cluster unreachable: connection refused\n")
    ]

    with pytest.raises(TransientClusterError, match="helm status"):
        await pod_driver.install_release(release_for(NS), timeout=300)


# -- history and rollback (upgrades and rollbacks of ready stores) -------------------------------


async def test_the_history_lists_revisions_oldest_first_with_their_chart_versions(
    driver: KubernetesCluster, helm: FakeHelm, kubeconfig: Path, namespace: str
) -> None:
    assert await driver.release_history(NS, "store") == []  # no release yet
    helm.set_release(NS, "store", "superseded", "deployed")

    history = await driver.release_history(NS, "store")

    assert [(r.revision, r.chart_version, r.status) for r in history] == [
        (1, "0.2.0", "superseded"),
        (2, "0.2.0", "deployed"),
    ]
    assert helm.calls[-1] == history_argv(kubeconfig)


async def test_the_history_says_which_revision_a_rollback_deployed_again(
    driver: KubernetesCluster, helm: FakeHelm, namespace: str
) -> None:
    helm.set_release(NS, "store", "superseded", "deployed")

    await driver.rollback_release(NS, "store", 1, timeout=60)

    history = await driver.release_history(NS, "store")
    assert [(r.revision, r.status, r.rolled_back_to) for r in history] == [
        (1, "superseded", None),
        (2, "superseded", None),
        (3, "deployed", 1),
    ]


async def test_a_rollback_names_its_revision_and_waits_with_the_helm4_flags(
    driver: KubernetesCluster, helm: FakeHelm, kubeconfig: Path, namespace: str
) -> None:
    helm.set_release(NS, "store", "superseded", "deployed")

    await driver.rollback_release(NS, "store", 1, timeout=300)

    assert helm.calls[-1] == [
        "helm", "rollback", "store", "1", "--namespace", NS, "--kubeconfig", str(kubeconfig),
        "--wait=watcher", "--timeout", "300s",
    ]  # fmt: skip
    assert helm.releases[(NS, "store")][-1] == (3, "deployed")


async def test_a_rollback_to_a_revision_that_does_not_exist_is_permanent(
    driver: KubernetesCluster, helm: FakeHelm, namespace: str
) -> None:
    helm.set_release(NS, "store", "deployed")

    with pytest.raises(PermanentClusterError, match="rollback"):
        await driver.rollback_release(NS, "store", 7, timeout=300)


@pytest.mark.parametrize(
    ("chart", "version"),
    [
        ("store-0.2.0", "0.2.0"),
        ("my-store-chart-1.10.3", "1.10.3"),
        ("store-0.3.0-rc.1", "0.3.0-rc.1"),
        ("no-version-here", "no-version-here"),  # shown as it is rather than guessed
    ],
)
def test_the_chart_version_is_read_from_helms_name_version(chart: str, version: str) -> None:
    assert _chart_version(chart) == version
