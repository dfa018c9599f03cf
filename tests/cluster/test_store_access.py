"""The provisioner holds namespaced rights only in the stores' own namespaces: the driver
binds the store-manager ClusterRole to its own ServiceAccount in each store namespace, with
the namespace, and waits until the API server authorizes with that binding.

The fake API here (``FakeKube(cluster_wide=False)``) refuses every namespaced request, helm's
included, where no RoleBinding holds, as RBAC does, and can answer "no" for a while after a
binding is made, as an authorizer whose cache has not caught up."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.cluster.fakes import FakeHelm, FakeKube
from tests.cluster.support import HELM, release_for
from woostore_cluster import (
    INSTALLATION_LABEL,
    MANAGED_BY,
    STORE_ID_LABEL,
    PermanentClusterError,
    StoreAccess,
    TransientClusterError,
    connect_cluster,
    store_access,
)
from woostore_cluster.base import STORE_ACCESS_BINDING
from woostore_cluster.kubeapi import KubeApiError
from woostore_cluster.kubernetes import KubernetesCluster
from woostore_cluster.simulated import SimulatedCluster
from woostore_shared.settings import Settings

NS = "store-acme-1a2b3c"
LABELS = {MANAGED_BY[0]: MANAGED_BY[1], STORE_ID_LABEL: "7f1c2a4e"}
ACCESS = StoreAccess("woostore-woostore-store-manager", "woostore", "woostore-provisioner")
ACCOUNT = ("woostore", "woostore-provisioner")
BINDING = {
    "role": ACCESS.role,
    "account": ACCOUNT,
    "labels": {MANAGED_BY[0]: MANAGED_BY[1], INSTALLATION_LABEL: "default"},
}
CREDENTIALS = {"admin-password": "pw"}


@pytest.fixture
def scoped(kube: FakeKube) -> FakeKube:
    """The API server as the provisioner meets it in a cluster: no rights of its own in any
    namespace, only what a RoleBinding there gives."""
    kube.cluster_wide = False
    return kube


@pytest.fixture
def bound_driver(scoped: FakeKube, helm: FakeHelm) -> KubernetesCluster:
    return KubernetesCluster(
        scoped, helm, kubeconfig=None, store_access=ACCESS, poll_interval=0.001
    )


async def test_a_new_namespace_is_bound_before_anything_is_made_in_it(
    bound_driver: KubernetesCluster, scoped: FakeKube
) -> None:
    await bound_driver.ensure_namespace(NS, LABELS)
    await bound_driver.ensure_secret(NS, "store-credentials", CREDENTIALS)

    assert scoped.role_bindings == {(NS, STORE_ACCESS_BINDING): BINDING}
    assert [name for name, _ in scoped.calls] == [
        "read_namespace", "create_namespace",
        "allowed", "create_role_binding", "allowed",
        "create_secret",
    ]  # fmt: skip
    assert ("allowed", (NS, "create", "secrets")) in scoped.calls


async def test_the_next_step_waits_until_the_binding_takes_effect(
    bound_driver: KubernetesCluster, scoped: FakeKube
) -> None:
    scoped.binding_lag = 3  # the authorizer sees the binding after three more requests

    await bound_driver.ensure_namespace(NS, LABELS)
    await bound_driver.ensure_secret(NS, "store-credentials", CREDENTIALS)  # no 403

    assert scoped.count("allowed") == 1 + 3 + 1
    assert scoped.secrets[(NS, "store-credentials")] == CREDENTIALS


async def test_a_binding_that_never_takes_effect_is_transient_at_its_deadline(
    scoped: FakeKube, helm: FakeHelm
) -> None:
    scoped.binding_lag = 10**9
    driver = KubernetesCluster(
        scoped, helm, kubeconfig=None, store_access=ACCESS, poll_interval=0.001, bind_timeout=0.05
    )

    with pytest.raises(
        TransientClusterError,
        match=f"rolebinding {NS}/{STORE_ACCESS_BINDING} grants no access after 0.05s",
    ):
        await driver.ensure_namespace(NS, LABELS)


async def test_binding_again_changes_nothing_and_an_earlier_attempts_binding_counts(
    bound_driver: KubernetesCluster, scoped: FakeKube
) -> None:
    await scoped.create_namespace(NS, {**LABELS, INSTALLATION_LABEL: "default"})
    # The first attempt made the binding and died before it took effect.
    scoped.binding_lag = 2
    await scoped.create_role_binding(NS, STORE_ACCESS_BINDING, ACCESS.role, ACCOUNT, {})

    await bound_driver.ensure_namespace(NS, LABELS)  # 409, then waits for it
    await bound_driver.ensure_namespace(NS, LABELS)  # allowed at once: nothing made

    assert scoped.count("create_role_binding") == 2  # the first attempt's, and our 409
    assert list(scoped.role_bindings) == [(NS, STORE_ACCESS_BINDING)]


async def test_a_store_made_before_per_namespace_rights_is_bound_at_its_next_helm_operation(
    bound_driver: KubernetesCluster, scoped: FakeKube, helm: FakeHelm
) -> None:
    """An upgrade of the platform removes the cluster-wide binding: its stores' namespaces
    have none of their own until the driver next works on them."""
    await scoped.create_namespace(NS, {**LABELS, INSTALLATION_LABEL: "default"})
    helm.set_release(NS, "store", "deployed")

    history = await bound_driver.release_history(NS, "store")
    await bound_driver.install_release(release_for(NS), timeout=300)
    await bound_driver.uninstall_release(NS, "store")

    assert [r.revision for r in history] == [1]
    assert scoped.count("create_role_binding") == 1
    assert helm.verbs() == ["history", "status", "upgrade", "uninstall"]
    assert helm.status(NS) is None


async def test_a_refused_binding_is_permanent_with_the_servers_reason(
    bound_driver: KubernetesCluster, scoped: FakeKube
) -> None:
    scoped.failures["create_role_binding"].append(
        KubeApiError(
            403,
            "Forbidden",
            'rolebindings.rbac.authorization.k8s.io "woostore-store-manager" is forbidden: '
            "ValidatingAdmissionPolicy 'woostore-woostore-store-bindings' denied request",
        )
    )

    with pytest.raises(PermanentClusterError, match=r"ValidatingAdmissionPolicy .* denied"):
        await bound_driver.ensure_namespace(NS, LABELS)


async def test_an_uninstall_where_the_namespace_is_gone_does_nothing(
    bound_driver: KubernetesCluster, scoped: FakeKube, helm: FakeHelm
) -> None:
    """No binding can be made there, and nothing is left to uninstall."""
    await bound_driver.uninstall_release(NS, "store")

    assert helm.calls == []
    assert scoped.count("create_role_binding") == 0


async def test_without_store_access_nothing_is_bound(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    """No role configured: the identity's own rights reach the stores (an admin's kubeconfig,
    or bindings the operator made)."""
    await driver.ensure_namespace(NS, LABELS)

    assert kube.count("allowed") == kube.count("create_role_binding") == 0


def test_the_settings_name_the_role_and_the_service_account() -> None:
    settings = Settings(
        store_manager_role=ACCESS.role, service_account="woostore/woostore-provisioner"
    )

    assert store_access(settings) == ACCESS
    assert store_access(Settings()) is None
    with pytest.raises(SystemExit, match="needs WOOSTORE_SERVICE_ACCOUNT"):
        store_access(Settings(store_manager_role=ACCESS.role))


async def test_the_simulated_cluster_keeps_the_binding_in_the_namespace(tmp_path: Path) -> None:
    cluster = connect_cluster(
        Settings(
            data_dir=tmp_path,
            store_manager_role=ACCESS.role,
            service_account="woostore/woostore-provisioner",
            helm_binary=str(HELM),
        )
    )
    assert isinstance(cluster, SimulatedCluster)

    await cluster.ensure_namespace(NS, LABELS)
    await cluster.ensure_namespace(NS, LABELS)

    with closing(sqlite3.connect(cluster.state_file)) as db:
        rows = db.execute("SELECT body FROM objects WHERE kind='RoleBinding'").fetchall()
    (binding,) = [json.loads(body) for (body,) in rows]
    assert binding == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": STORE_ACCESS_BINDING, "namespace": NS, "labels": BINDING["labels"]},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": ACCESS.role},
        "subjects": [{"kind": "ServiceAccount", "name": "woostore-provisioner",
                      "namespace": "woostore"}],
    }  # fmt: skip
