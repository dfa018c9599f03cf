"""Why a store waits, in its owner's words: the mapping from Kubernetes's pods and claims, the
real driver reading them (through its fake API and through the real client), and the
simulated cluster holding a rollout in each condition."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.cluster.api_server import FakeApiServer
from tests.cluster.fakes import FakeKube
from tests.cluster.support import HELM, release_for
from woostore_cluster import PermanentClusterError, TransientClusterError
from woostore_cluster.causes import Holdup, holdup_of, in_words
from woostore_cluster.kubeapi import ClientKubeApi, KubeApiError
from woostore_cluster.kubeobjects import ContainerState, Pod, Workload
from woostore_cluster.kubernetes import KubernetesCluster
from woostore_cluster.simulated import CRASH_LAST_LINE, HOLDUPS, SimulatedCluster

NS = "store-waits"
IMAGE = "ghcr.io/woostore/wordpress:6.8-wc9.9-typo"
NO_ROOM = "0/3 nodes are available: 3 Insufficient cpu."


def waiting_pod(reason: str, message: str = "") -> Pod:
    container = ContainerState("wordpress", False, reason, message, image=IMAGE)
    return Pod("store-wordpress-x", phase="Pending", ready=False, containers=(container,))


@pytest.mark.parametrize(
    ("pods", "claims", "words"),
    [
        ([Pod("store-wordpress-x", ready=False, unschedulable="pod has unbound PVCs")],
         ["store-wordpress-content"],
         "Waiting for storage: the volume store-wordpress-content is not ready yet"),
        ([Pod("store-wordpress-x", ready=False, unschedulable=NO_ROOM)], [],
         f"Waiting for cluster capacity: {NO_ROOM}"),
        ([waiting_pod("ImagePullBackOff", "Back-off pulling image")], [],
         f"Cannot download the image {IMAGE}"),
        ([waiting_pod("ErrImagePull")], [], f"Cannot download the image {IMAGE}"),
        ([waiting_pod("CrashLoopBackOff", "back-off 40s")], [],
         "The wordpress container keeps restarting"),
    ],
)  # fmt: skip
def test_each_condition_reads_as_one_plain_sentence(
    pods: list[Pod], claims: list[str], words: str
) -> None:
    holdup = holdup_of(pods, claims)
    assert holdup is not None
    assert in_words(holdup) == words


def test_a_workload_over_its_quota_holds_the_store_up_before_any_pod_exists() -> None:
    refused = 'pods "store-wordpress-x" is forbidden: exceeded quota: store-quota'
    over = Workload("Deployment", "store-wordpress", 1, 0, 0, problem=refused)
    stalled = Workload("Deployment", "store-wordpress", 1, 0, 1, problem="timed out progressing")
    holdup = holdup_of([], [], [over])
    assert holdup is not None
    assert in_words(holdup) == f"Over the store's resource quota: {refused}"
    assert holdup_of([], [], [stalled]) is None  # not a refusal: no cause to tell


def test_pods_that_merely_start_hold_nothing_up_and_a_crash_says_its_last_line() -> None:
    starting = waiting_pod("ContainerCreating")
    going = Pod("old", ready=False, deleting=True, unschedulable=NO_ROOM)
    assert holdup_of([starting, going, Pod("store-mariadb-0")], []) is None
    crash = Holdup("CrashLoopBackOff", "store-wordpress-x", "wordpress")
    assert in_words(crash, "PHP Fatal error:  out of\tmemory") == (
        "The wordpress container keeps restarting; its last log line: "
        "PHP Fatal error: out of memory"  # its spacing made plain
    )
    long = in_words(Holdup("Unschedulable", "p", detail="x" * 500))
    assert len(long) < 250
    assert long.endswith("…")


async def test_the_driver_reads_a_crashing_containers_last_line_and_the_claims(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    kube.pods[NS] = [waiting_pod("CrashLoopBackOff")]
    kube.logs[(NS, "store-wordpress-x", "wordpress")] = ["starting", CRASH_LAST_LINE]
    assert await driver.waiting_cause(NS) == (
        f"The wordpress container keeps restarting; its last log line: {CRASH_LAST_LINE}"
    )
    kube.claims[NS] = {"store-wordpress-content": "Pending", "data-store-mariadb-0": "Bound"}
    assert await driver.waiting_cause(NS) == (
        "Waiting for storage: the volume store-wordpress-content is not ready yet"
    )
    kube.claims[NS]["store-wordpress-content"] = "Bound"
    kube.pods[NS] = [Pod("store-wordpress-x"), Pod("store-mariadb-0")]
    assert await driver.waiting_cause(NS) is None
    kube.pods[NS] = []
    kube.workloads[NS] = [
        Workload("Deployment", "store-wordpress", 1, 0, 0, problem="exceeded quota: store-quota")
    ]
    assert await driver.waiting_cause(NS) == (
        "Over the store's resource quota: exceeded quota: store-quota"
    )
    kube.workloads[NS] = []
    # The API server not answering is no cause, and no error: only a hint is lost.
    kube.failures["list_pods"].append(KubeApiError(0, "Unreachable", "connection refused"))
    assert await driver.waiting_cause(NS) is None


async def test_a_rollout_that_times_out_says_why_first(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    kube.roll_out(NS, ready=False, waiting="ImagePullBackOff")
    with pytest.raises(PermanentClusterError) as raised:
        await driver.wait_for_rollout(NS, timeout=0.01)
    assert str(raised.value).startswith("Cannot download the image")
    assert "not ready after" in str(raised.value)  # the technical detail follows


async def test_the_real_client_lists_pending_claims_and_reads_one_log_line(
    api: tuple[ClientKubeApi, FakeApiServer],
) -> None:
    client, server = api
    server.claims = {"store-wordpress-content": "Pending", "data-store-mariadb-0": "Bound"}
    server.previous_logs = {"store-wordpress-x/wordpress": f"starting\n{CRASH_LAST_LINE}\n"}

    assert await client.pending_claims(NS) == ["store-wordpress-content"]
    assert await client.last_log_line(NS, "store-wordpress-x", "wordpress") == CRASH_LAST_LINE
    assert await client.last_log_line(NS, "store-mariadb-0", "mariadb") is None  # no earlier run
    [*_, (method, path, query)] = server.requests
    assert (method, path) == ("GET", f"/api/v1/namespaces/{NS}/pods/store-mariadb-0/log")
    assert (query["previous"], query["tailLines"]) == ("true", "1")
    (pod,) = await client.list_pods(NS)
    assert pod.containers[0].image == "ghcr.io/woostore/wp:bad"


@pytest.mark.parametrize(
    ("held", "error", "words"),
    [
        ("storage_pending", TransientClusterError,
         "Waiting for storage: the volume store-wordpress-content is not ready yet"),
        ("unschedulable", TransientClusterError, "Waiting for cluster capacity: 0/3 nodes"),
        ("image_pull", PermanentClusterError, "Cannot download the image ghcr.io/woostore/"),
        ("crash_loop", PermanentClusterError,
         f"The wordpress container keeps restarting; its last log line: {CRASH_LAST_LINE}"),
    ],
)  # fmt: skip
async def test_the_simulated_cluster_holds_a_rollout_and_says_why_as_the_real_one(
    tmp_path: Path, held: str, error: type[Exception], words: str
) -> None:
    assert held in HOLDUPS
    cluster = SimulatedCluster(
        tmp_path / "sim", helm_binary=str(HELM), time_scale=0,
        faults={"wait_for_rollout": held},
    )  # fmt: skip
    await cluster.ensure_namespace(NS, {})
    await cluster.install_release(release_for(NS), timeout=60)
    assert await cluster.waiting_cause(NS) is None  # nothing held before the rollout

    rollout = asyncio.ensure_future(cluster.wait_for_rollout(NS, timeout=1.5))
    deadline = time.monotonic() + 5  # a condition, waited on with a deadline
    while (cause := await cluster.waiting_cause(NS)) is None and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    assert cause is not None
    assert cause.startswith(words)

    with pytest.raises(error) as raised:
        await rollout
    assert type(raised.value) is error
    assert str(raised.value).startswith(cause)
    assert await cluster.waiting_cause(NS) is None  # the wait is over


def test_a_held_rollout_is_a_fault_of_the_rollout_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only wait_for_rollout"):
        SimulatedCluster(
            tmp_path / "sim", helm_binary=str(HELM), time_scale=0,
            faults={"install_release": "image_pull"},
        )  # fmt: skip
