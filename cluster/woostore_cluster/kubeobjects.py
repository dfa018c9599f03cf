"""The cluster's objects as the drivers see them: small plain values, with no client library
behind them. The Kubernetes driver makes them from the API's answers (``kubeapi.py``); the
simulated driver makes them itself, without loading the Kubernetes client (about 11 MB a
process)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str]
    phase: str  # "Active" or "Terminating"
    # Messages of the namespace's true status conditions: why a deletion is stuck.
    conditions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workload:
    """A Deployment or a StatefulSet, as far as readiness goes."""

    kind: str
    name: str
    replicas: int
    ready_replicas: int
    updated_replicas: int
    generation: int = 1
    observed_generation: int = 1
    # Why the controller cannot make pods, e.g. a ReplicaFailure condition (quota exceeded).
    problem: str | None = None

    @property
    def ready(self) -> bool:
        return (
            self.observed_generation >= self.generation
            and self.ready_replicas >= self.replicas
            and self.updated_replicas >= self.replicas
        )

    def describe(self) -> str:
        text = f"{self.kind} {self.name} {self.ready_replicas}/{self.replicas} ready"
        return f"{text} ({self.problem})" if self.problem else text


@dataclass(frozen=True)
class ContainerState:
    name: str
    ready: bool
    waiting_reason: str | None = None
    waiting_message: str | None = None
    image: str | None = None  # as the pod's spec names it


@dataclass(frozen=True)
class Pod:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    phase: str = "Running"
    ready: bool = True
    deleting: bool = False
    containers: tuple[ContainerState, ...] = ()
    # The scheduler's reason when the pod cannot be placed (PodScheduled=False).
    unschedulable: str | None = None


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
