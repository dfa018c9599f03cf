"""The Kubernetes driver over stateful fakes of its seams: namespaces, Secrets, rollouts,
WP-CLI, deletion, and how every refusal of the API server is mapped.

Each behaviour is the one the simulated cluster has (``simulated.py``), so the recipe
cannot tell the two apart except by ``simulated``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from tests.cluster.fakes import FakeHelm, FakeKube
from tests.cluster.support import release_for
from woostore_cluster import (
    INSTALLATION_LABEL,
    MANAGED_BY,
    STORE_ID_LABEL,
    ClusterError,
    PermanentClusterError,
    TransientClusterError,
)
from woostore_cluster.kubeapi import KubeApiError
from woostore_cluster.kubeobjects import ExecResult, Pod, Workload
from woostore_cluster.kubernetes import KubernetesCluster
from woostore_shared.secrets import generate_password

NS = "store-acme-1a2b3c"
LABELS = {
    MANAGED_BY[0]: MANAGED_BY[1],
    STORE_ID_LABEL: "7f1c2a4e-0000-4000-8000-000000000001",
    "pod-security.kubernetes.io/enforce": "restricted",
}


# -- namespaces ------------------------------------------------------------------------------


async def test_ensure_namespace_creates_it_with_the_labels_once(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    await driver.ensure_namespace(NS, LABELS)
    await driver.ensure_namespace(NS, LABELS)

    assert kube.namespaces[NS].labels == {**LABELS, INSTALLATION_LABEL: "default"}
    assert kube.count("create_namespace") == 1
    assert await driver.namespace_exists(NS)


async def test_ensure_namespace_made_by_a_racing_attempt_is_accepted(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    """Another replica created it between our read and our create: 409, then it is ours."""
    original = kube.create_namespace

    async def racing_create(name: str, labels: Mapping[str, str]) -> None:
        await original(name, labels)  # the other replica's create wins
        await original(name, labels)  # ours: 409 AlreadyExists

    kube.create_namespace = racing_create  # type: ignore[method-assign]  # a race, injected

    await driver.ensure_namespace(NS, LABELS)

    assert kube.namespaces[NS].labels == {**LABELS, INSTALLATION_LABEL: "default"}


async def test_ensure_namespace_while_it_terminates_is_transient(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    await driver.ensure_namespace(NS, LABELS)
    await kube.delete_namespace(NS)

    with pytest.raises(TransientClusterError, match="still terminating"):
        await driver.ensure_namespace(NS, LABELS)


async def test_a_namespace_of_someone_else_is_never_adopted(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    await kube.create_namespace(NS, {"team": "payments"})

    with pytest.raises(PermanentClusterError, match="not this store's"):
        await driver.ensure_namespace(NS, LABELS)


async def test_managed_namespaces_are_those_with_the_ownership_and_installation_labels(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    ours = {**LABELS, INSTALLATION_LABEL: "default"}
    await kube.create_namespace(NS, ours)
    await kube.create_namespace("store-neighbour", {**ours, INSTALLATION_LABEL: "staging"})
    await kube.create_namespace("store-unlabelled", LABELS)
    await kube.create_namespace("store-half", {MANAGED_BY[0]: MANAGED_BY[1]})
    await kube.create_namespace("other", {STORE_ID_LABEL: "x"})
    await kube.create_namespace("kube-system", {})
    # The labels alone do not make a store namespace: anyone may label kube-public so.
    await kube.create_namespace("kube-public", ours)

    assert await driver.managed_namespaces() == {NS: LABELS[STORE_ID_LABEL]}
    (selector,) = [args[0] for name, args in kube.calls if name == "list_namespaces"]
    assert selector == (
        f"{MANAGED_BY[0]}={MANAGED_BY[1]},{STORE_ID_LABEL},{INSTALLATION_LABEL}=default"
    )


async def test_another_installations_namespace_of_the_same_name_is_never_adopted(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    await kube.create_namespace(NS, {**LABELS, INSTALLATION_LABEL: "staging"})

    with pytest.raises(PermanentClusterError, match=INSTALLATION_LABEL):
        await driver.ensure_namespace(NS, LABELS)


# -- Secrets ---------------------------------------------------------------------------------


async def test_ensure_secret_keeps_the_first_one(driver: KubernetesCluster) -> None:
    """A second attempt's fresh passwords never replace the Secret the first one made."""
    await driver.ensure_namespace(NS, LABELS)
    first = {"admin-password": generate_password()}
    await driver.ensure_secret(NS, "store-credentials", first)
    await driver.ensure_secret(NS, "store-credentials", {"admin-password": generate_password()})

    assert await driver.read_secret(NS, "store-credentials") == first


async def test_secret_in_a_missing_namespace_or_a_missing_secret_is_permanent(
    driver: KubernetesCluster,
) -> None:
    with pytest.raises(PermanentClusterError, match="not found"):
        await driver.ensure_secret(NS, "store-credentials", {"a": "b"})
    await driver.ensure_namespace(NS, LABELS)
    with pytest.raises(PermanentClusterError, match=f"secret {NS}/store-credentials not found"):
        await driver.read_secret(NS, "store-credentials")


async def test_a_refused_secret_never_shows_its_data_in_the_error(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    """Even when the server echoes a value back, the message the user sees has none."""
    password = generate_password()
    await driver.ensure_namespace(NS, LABELS)
    kube.failures["create_secret"] = [
        KubeApiError(422, "Invalid", f'Secret "x" is invalid: data[admin-password]: "{password}"'),
        KubeApiError(500, "InternalError", f"etcdserver: request timed out storing {password}"),
    ]

    with pytest.raises(PermanentClusterError) as invalid:
        await driver.ensure_secret(NS, "store-credentials", {"admin-password": password})
    with pytest.raises(TransientClusterError) as flaky:
        await driver.ensure_secret(NS, "store-credentials", {"admin-password": password})

    for error in (invalid.value, flaky.value):
        assert password not in str(error)
        assert "[redacted]" in str(error)


async def test_update_secret_sets_the_keys_given_and_keeps_the_others(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    first = {"admin-password": generate_password(), "db-password": generate_password()}
    new = generate_password()
    await driver.ensure_namespace(NS, LABELS)
    await driver.ensure_secret(NS, "store-credentials", first)

    await driver.update_secret(NS, "store-credentials", {"admin-password": new})
    once = await driver.read_secret(NS, "store-credentials")
    await driver.update_secret(NS, "store-credentials", {"admin-password": new})

    assert once == {"admin-password": new, "db-password": first["db-password"]}
    assert await driver.read_secret(NS, "store-credentials") == once
    assert kube.count("replace_secret") == 2
    assert kube.count("create_secret") == 1  # never made anew


async def test_update_secret_of_a_missing_secret_or_namespace_is_permanent(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    with pytest.raises(PermanentClusterError, match=f"secret {NS}/store-credentials not found"):
        await driver.update_secret(NS, "store-credentials", {"admin-password": "x"})
    await driver.ensure_namespace(NS, LABELS)
    with pytest.raises(PermanentClusterError, match=f"secret {NS}/store-credentials not found"):
        await driver.update_secret(NS, "store-credentials", {"admin-password": "x"})
    assert (NS, "store-credentials") not in kube.secrets  # nothing made on the way


async def test_update_secret_changed_meanwhile_is_transient_and_never_shows_its_data(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    password = generate_password()
    await driver.ensure_namespace(NS, LABELS)
    await driver.ensure_secret(NS, "store-credentials", {"admin-password": "one"})
    kube.failures["replace_secret"] = [
        KubeApiError(409, "Conflict", 'Operation cannot be fulfilled on secrets "x"'),
        KubeApiError(422, "Invalid", f'Secret "x" is invalid: data[admin-password]: "{password}"'),
    ]

    with pytest.raises(TransientClusterError) as conflict:
        await driver.update_secret(NS, "store-credentials", {"admin-password": password})
    with pytest.raises(PermanentClusterError) as invalid:
        await driver.update_secret(NS, "store-credentials", {"admin-password": password})

    assert f"updating secret {NS}/store-credentials" in str(conflict.value)
    assert password not in str(invalid.value)
    assert "[redacted]" in str(invalid.value)
    assert await driver.read_secret(NS, "store-credentials") == {"admin-password": "one"}


# -- error mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0, TransientClusterError),  # no answer: connection refused, TLS failure, timeout
        (409, TransientClusterError),
        (429, TransientClusterError),
        (500, TransientClusterError),
        (503, TransientClusterError),
        (400, PermanentClusterError),
        (401, PermanentClusterError),
        (403, PermanentClusterError),
        (404, PermanentClusterError),
        (422, PermanentClusterError),
    ],
)
async def test_api_refusals_map_to_transient_or_permanent(
    driver: KubernetesCluster, kube: FakeKube, status: int, expected: type[ClusterError]
) -> None:
    kube.failures["list_namespaces"] = [KubeApiError(status, "Reason", "the server's words")]

    with pytest.raises(ClusterError) as raised:
        await driver.managed_namespaces()

    assert type(raised.value) is expected
    assert "listing the store namespaces" in str(raised.value)
    assert "the server's words" in str(raised.value)


async def test_throttling_asks_for_the_delay_the_server_gave(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    kube.failures["read_namespace"] = [KubeApiError(429, "TooManyRequests", "slow down", 7.0)]

    with pytest.raises(TransientClusterError) as raised:
        await driver.namespace_exists(NS)

    assert raised.value.delay == 7.0


async def test_creating_a_namespace_forbidden_is_permanent(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    kube.failures["create_namespace"] = [
        KubeApiError(403, "Forbidden", 'User "woostore" cannot create resource "namespaces"')
    ]

    with pytest.raises(PermanentClusterError, match=r"creating namespace .* cannot create"):
        await driver.ensure_namespace(NS, LABELS)


# -- rollout ---------------------------------------------------------------------------------


async def test_wait_for_rollout_returns_once_every_workload_is_ready(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    kube.roll_out(NS, ready=False)
    polls = 0
    original = kube.list_workloads

    async def becomes_ready(namespace: str) -> list[Workload]:
        nonlocal polls
        polls += 1
        if polls == 3:
            kube.roll_out(NS, ready=True)
        return await original(namespace)

    kube.list_workloads = becomes_ready  # type: ignore[method-assign]  # readiness over time

    await driver.wait_for_rollout(NS, timeout=30)

    assert polls == 3


async def test_wait_for_rollout_without_workloads_is_permanent(driver: KubernetesCluster) -> None:
    with pytest.raises(PermanentClusterError, match="was the chart installed"):
        await driver.wait_for_rollout(NS, timeout=30)


async def test_a_rollout_stuck_pulling_its_image_fails_permanently_at_the_deadline(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    kube.roll_out(NS, ready=False, waiting="ImagePullBackOff")

    with pytest.raises(PermanentClusterError) as raised:
        await driver.wait_for_rollout(NS, timeout=0.05)

    message = str(raised.value)
    assert "Deployment store-wordpress 0/1 ready" in message
    assert "container wordpress waiting: ImagePullBackOff" in message


async def test_a_rollout_that_is_only_slow_times_out_as_transient(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    kube.roll_out(NS, ready=False, waiting="ContainerCreating")
    full = "0/3 nodes are available: 3 Insufficient memory."
    kube.pods[NS].append(Pod("store-mariadb-1", {}, "Pending", False, unschedulable=full))

    with pytest.raises(TransientClusterError) as raised:
        await driver.wait_for_rollout(NS, timeout=0.05)

    assert "StatefulSet store-mariadb 0/1 ready" in str(raised.value)
    assert "Insufficient memory" in str(raised.value)


async def test_an_invalid_image_name_fails_at_once(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    kube.roll_out(NS, ready=False, waiting="InvalidImageName")

    with pytest.raises(PermanentClusterError, match="InvalidImageName"):
        await driver.wait_for_rollout(NS, timeout=3600)  # never reached


async def test_an_api_hiccup_while_waiting_is_waited_out(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    kube.roll_out(NS, ready=True)
    kube.failures["list_workloads"] = [KubeApiError(503, "ServiceUnavailable", "etcd leader")]

    await driver.wait_for_rollout(NS, timeout=30)

    assert kube.count("list_workloads") == 2


# -- WP-CLI ----------------------------------------------------------------------------------


async def test_wp_runs_in_the_ready_wordpress_pod_with_the_password_on_stdin(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    password = generate_password()
    kube.roll_out(NS)
    leaving = Pod("store-wordpress-old", kube.pods[NS][0].labels, "Running", True, deleting=True)
    kube.pods[NS].insert(0, leaving)

    result = await driver.wp(
        NS,
        ["core", "install", "--url=http://acme.test", "--prompt=admin_password"],
        password + "\n",
    )

    assert result.ok
    (call,) = kube.exec_calls
    assert call.pod == "store-wordpress-7d9f-abcde"  # not the one being deleted
    assert call.container == "wordpress"
    assert call.command == [
        "wp", "--path=/var/www/html", "core", "install", "--url=http://acme.test",
        "--prompt=admin_password",
    ]  # fmt: skip
    assert call.stdin == password + "\n"
    assert all(password not in part for part in call.command)


async def test_a_new_admin_password_goes_to_wp_cli_on_stdin_only(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    """What a claim runs: ``wp user update admin --prompt=user_pass``, the password on stdin."""
    password = generate_password()
    kube.roll_out(NS)

    result = await driver.wp(NS, ["user", "update", "admin", "--prompt=user_pass"], password + "\n")

    assert result.ok
    (call,) = kube.exec_calls
    assert call.command == ["wp", "--path=/var/www/html", "user", "update", "admin",
                            "--prompt=user_pass"]  # fmt: skip
    assert call.stdin == password + "\n"


async def test_wp_failures_say_why_and_never_echo_stdin(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    password = generate_password()
    kube.roll_out(NS)
    kube.exec_handler = lambda call: ExecResult(1, "", f"Error: bad password {call.stdin}")

    result = await driver.wp(NS, ["core", "install"], password + "\n")

    assert result.exit_code == 1
    assert "Error: bad password" in result.stdout  # stderr kept: the reason is readable
    assert password not in result.stdout


async def test_wp_success_returns_stdout_only(driver: KubernetesCluster, kube: FakeKube) -> None:
    """A count must parse even when PHP prints deprecation notices on stderr."""
    kube.roll_out(NS)
    kube.exec_handler = lambda call: ExecResult(0, "3\n", "PHP Deprecated: something")

    result = await driver.wp(NS, ["wc", "product", "list", "--format=count"])

    assert result.stdout.strip() == "3"


async def test_wp_without_a_ready_pod_is_transient(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    kube.roll_out(NS, ready=False, waiting="ContainerCreating")

    with pytest.raises(TransientClusterError, match="no ready WordPress pod"):
        await driver.wp(NS, ["core", "is-installed"])


async def test_an_exec_that_cannot_connect_is_transient_and_keeps_stdin_out(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    password = generate_password()
    kube.roll_out(NS)
    kube.failures["exec"] = [KubeApiError(0, "Unreachable", f"handshake failed; sent {password}")]

    with pytest.raises(TransientClusterError) as raised:
        await driver.wp(NS, ["core", "install"], password + "\n")

    assert password not in str(raised.value)
    assert "running wp core install" in str(raised.value)


# -- deletion --------------------------------------------------------------------------------


async def test_delete_namespace_waits_until_it_is_gone(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    await driver.ensure_namespace(NS, LABELS)
    await driver.ensure_secret(NS, "store-credentials", {"a": "b"})
    reads_before = kube.count("read_namespace")

    await driver.delete_namespace(NS, timeout=30)

    assert NS not in kube.namespaces
    assert "store-credentials" not in {name for _, name in kube.secrets}
    # One look before deleting, two reads seeing it Terminating, one seeing it gone.
    assert kube.count("read_namespace") - reads_before == 1 + kube.terminating_reads + 1
    assert kube.count("delete_namespace") == 1
    assert not await driver.namespace_exists(NS)


async def test_delete_namespace_is_idempotent(driver: KubernetesCluster, kube: FakeKube) -> None:
    await driver.ensure_namespace(NS, LABELS)

    await driver.delete_namespace(NS, timeout=30)
    await driver.delete_namespace(NS, timeout=30)  # gone already: nothing to do

    assert kube.count("delete_namespace") == 1


async def test_delete_of_a_namespace_already_terminating_only_waits(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    await driver.ensure_namespace(NS, LABELS)
    await kube.delete_namespace(NS)  # an earlier attempt, cut off while waiting

    await driver.delete_namespace(NS, timeout=30)

    assert kube.count("delete_namespace") == 1
    assert NS not in kube.namespaces


async def test_a_namespace_that_never_goes_fails_at_the_deadline_with_its_finalizers_kept(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    await driver.ensure_namespace(NS, LABELS)
    kube.stuck.add(NS)

    with pytest.raises(TransientClusterError) as raised:
        await driver.delete_namespace(NS, timeout=0.05)

    assert "still terminating after 0.05s" in str(raised.value)
    assert "finalizers remaining" in str(raised.value)
    assert kube.namespaces[NS].phase == "Terminating"
    assert kube.namespaces[NS].finalizers == ("kubernetes",)  # never stripped


# -- the whole surface, twice ----------------------------------------------------------------


async def test_every_method_twice_gives_the_same_end_state(
    driver: KubernetesCluster, kube: FakeKube, helm: FakeHelm
) -> None:
    async def provision() -> None:
        await driver.ensure_namespace(NS, LABELS)
        await driver.ensure_secret(NS, "store-credentials", {"admin-password": "one"})
        await driver.install_release(release_for(NS), timeout=300)
        await driver.wait_for_rollout(NS, timeout=30)

    def state() -> object:
        return (
            {n: (ns.labels, ns.phase) for n, ns in kube.namespaces.items()},
            dict(kube.secrets),
            {n: list(w) for n, w in kube.workloads.items() if w},
            helm.status(NS),
        )

    await provision()
    once = state()
    await provision()
    assert state() == once

    await driver.uninstall_release(NS, "store")
    await driver.uninstall_release(NS, "store")
    assert helm.status(NS) is None
    assert not kube.workloads.get(NS)

    await driver.delete_namespace(NS, timeout=30)
    await driver.delete_namespace(NS, timeout=30)
    assert kube.namespaces == {}
