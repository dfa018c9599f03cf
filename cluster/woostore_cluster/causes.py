"""Why a store's pods are not running yet, in words its owner understands.

While a step waits on the cluster (helm's install, the rollout), the provisioner asks the
cluster now and then what holds the store up, and progress events carry the answer. Both
drivers answer from the same Kubernetes facts through this module: the real one from the API
server's pods and claims, the simulated one from those it would return for the condition it
injects. The conditions, most fundamental first (a pod waiting for its volume is also one no
node will take yet, and says so):

| Kubernetes says | The owner reads |
|---|---|
| a PersistentVolumeClaim Pending | Waiting for storage |
| ReplicaFailure: exceeded quota (no pod made) | Over the store's resource quota |
| PodScheduled=False (FailedScheduling) | Waiting for cluster capacity |
| ImagePullBackOff, ErrImagePull | Cannot download the image |
| CrashLoopBackOff | The container keeps restarting, and its last log line |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from woostore_cluster.kubeobjects import Pod, Workload

CLAIM_PENDING = "ClaimPending"  # not a container's reason: a PersistentVolumeClaim's phase
OVER_QUOTA = "ExceededQuota"  # a workload's ReplicaFailure: its controller may make no pod
UNSCHEDULABLE = "Unschedulable"
CRASH_LOOP = "CrashLoopBackOff"
IMAGE_PULL = frozenset({"ImagePullBackOff", "ErrImagePull"})
LONGEST_DETAIL = 200  # characters of the scheduler's message or a log line, at most
# Waiting reasons that cannot fix themselves: a rollout fails at once.
HOPELESS_REASONS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
# Waiting reasons that rarely fix themselves: a rollout still stuck on one at its deadline
# is a permanent error (a wrong image or tag, a missing Secret key, a crashing container).
# Both drivers judge by these: the real one from the API server's pods, the simulated one
# from the pods it shows.
PERMANENT_REASONS = (
    HOPELESS_REASONS
    | IMAGE_PULL
    | {CRASH_LOOP, "CreateContainerConfigError", "CreateContainerError"}
)


@dataclass(frozen=True)
class Holdup:
    """What keeps a store's pods from running: Kubernetes's ``reason``, and where."""

    reason: str
    pod: str | None = None
    container: str | None = None
    detail: str | None = None  # the scheduler's message, the image, the claim's name


def holdup_of(
    pods: Sequence[Pod], pending_claims: Sequence[str], workloads: Sequence[Workload] = ()
) -> Holdup | None:
    """The first thing holding the store up, or None when nothing is known to."""
    if pending_claims:
        return Holdup(CLAIM_PENDING, detail=pending_claims[0])
    for workload in workloads:
        if workload.problem and "exceeded quota" in workload.problem:
            return Holdup(OVER_QUOTA, detail=workload.problem)
    live = [pod for pod in pods if not pod.deleting]
    for pod in live:
        if pod.unschedulable:
            return Holdup(UNSCHEDULABLE, pod.name, detail=pod.unschedulable)
    for pod in live:
        for container in pod.containers:
            if container.waiting_reason in IMAGE_PULL:
                image = container.image or container.waiting_message
                return Holdup(container.waiting_reason, pod.name, container.name, image)
            if container.waiting_reason == CRASH_LOOP:
                return Holdup(CRASH_LOOP, pod.name, container.name)
    return None


def in_words(holdup: Holdup, last_log_line: str | None = None) -> str:
    """One sentence for the store's owner; ``last_log_line`` is the crashing container's."""
    if holdup.reason == CLAIM_PENDING:
        return f"Waiting for storage: the volume {holdup.detail} is not ready yet"
    if holdup.reason == OVER_QUOTA:
        return f"Over the store's resource quota: {_short(holdup.detail)}"
    if holdup.reason == UNSCHEDULABLE:
        return f"Waiting for cluster capacity: {_short(holdup.detail)}"
    if holdup.reason in IMAGE_PULL:
        return f"Cannot download the image {_short(holdup.detail)}"
    said = f"; its last log line: {_short(last_log_line)}" if last_log_line else ""
    return f"The {holdup.container} container keeps restarting{said}"  # CrashLoopBackOff


def _short(text: str | None) -> str:
    text = " ".join((text or "no reason given").split())
    return text if len(text) <= LONGEST_DETAIL else text[: LONGEST_DETAIL - 1] + "…"
