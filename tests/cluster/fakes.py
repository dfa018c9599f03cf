"""Stateful fakes of the Kubernetes driver's two seams: ``KubeApi`` and ``HelmRunner``.

They keep state the way the real things do where the driver can tell: a deleted namespace
stays Terminating for a few reads (finalizers kept, never removed by anyone but the "API
server"), a terminating namespace refuses new content, a Helm release has revisions with
statuses, an upgrade over a pending release is refused as helm refuses it. Failures are
scripted per method, so each error path can be reached on purpose.
"""

from __future__ import annotations

import json
import os
import stat
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from woostore_cluster.helm import HelmResult
from woostore_cluster.kubeapi import KubeApiError
from woostore_cluster.kubeobjects import ContainerState, ExecResult, Namespace, Pod, Workload

WORDPRESS_LABELS = {
    "app.kubernetes.io/name": "store",
    "app.kubernetes.io/instance": "store",
    "app.kubernetes.io/component": "wordpress",
}
MARIADB_LABELS = {**WORDPRESS_LABELS, "app.kubernetes.io/component": "mariadb"}


def matches(labels: Mapping[str, str], selector: str) -> bool:
    """Equality (``k=v``) and existence (``k``) terms, comma-separated, as the API server."""
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True


@dataclass
class FakeNamespace:
    name: str
    labels: dict[str, str]
    phase: str = "Active"
    finalizers: tuple[str, ...] = ("kubernetes",)
    reads_until_gone: int = 0  # reads still showing it Terminating after a delete
    stuck: bool = False  # a finalizer that never finishes (a volume that will not detach)

    def view(self) -> Namespace:
        conditions = (
            ("Some content in the namespace has finalizers remaining",) if self.stuck else ()
        )
        return Namespace(self.name, dict(self.labels), self.phase, conditions)


@dataclass(frozen=True)
class ExecCall:
    namespace: str
    pod: str
    container: str
    command: list[str]
    stdin: str | None
    timeout: float


@dataclass(frozen=True)
class StreamCall:
    namespace: str
    pod: str
    container: str
    command: list[str]
    stdin: bytes | None  # the whole of it, as the command read it


class FakeKube:
    def __init__(self, terminating_reads: int = 2) -> None:
        self.terminating_reads = terminating_reads
        self.namespaces: dict[str, FakeNamespace] = {}
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.workloads: dict[str, list[Workload]] = defaultdict(list)
        self.pods: dict[str, list[Pod]] = defaultdict(list)
        self.claims: dict[str, dict[str, str]] = defaultdict(dict)  # name -> phase
        self.logs: dict[tuple[str, str, str], list[str]] = {}  # a container's previous run's
        self.exec_calls: list[ExecCall] = []
        self.exec_handler: Callable[[ExecCall], ExecResult] = lambda call: ExecResult(0, "", "")
        self.stream_calls: list[StreamCall] = []
        self.stream_output: list[bytes] = []  # the chunks every streaming exec yields
        # Errors the next calls of a method raise, in order: failures["read_namespace"].
        self.failures: dict[str, list[KubeApiError]] = defaultdict(list)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.stuck: set[str] = set()  # namespaces whose deletion never finishes
        self.role_bindings: dict[tuple[str, str], dict[str, Any]] = {}
        # True: our identity's rights hold everywhere (a ClusterRoleBinding, or an admin's
        # kubeconfig). False: only in namespaces holding a RoleBinding, and every namespaced
        # request elsewhere is refused (403) as RBAC refuses it.
        self.cluster_wide = True
        # Requests refused after a RoleBinding is made, before the authorizer's cache has it.
        self.binding_lag = 0
        self._lag_left: dict[str, int] = {}

    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        if self.failures[method]:
            raise self.failures[method].pop(0)

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    def permits(self, namespace: str) -> bool:
        """Whether a namespaced request of ours in ``namespace`` is authorized now; a refused
        one uses up one request of the binding's lag."""
        if self.cluster_wide:
            return True
        if not any(ns == namespace for ns, _ in self.role_bindings):
            return False
        if self._lag_left.get(namespace, 0) > 0:
            self._lag_left[namespace] -= 1
            return False
        return True

    def _authorize(self, namespace: str, verb: str, resource: str) -> None:
        if not self.permits(namespace):
            raise KubeApiError(
                403,
                "Forbidden",
                f'{resource} is forbidden: User "system:serviceaccount:woostore:'
                f'woostore-provisioner" cannot {verb} resource "{resource}" in API group "" '
                f'in the namespace "{namespace}"',
            )

    # -- KubeApi ---------------------------------------------------------------------------

    async def read_namespace(self, name: str) -> Namespace | None:
        self._enter("read_namespace", name)
        ns = self.namespaces.get(name)
        if ns is None:
            return None
        if ns.phase == "Terminating" and not ns.stuck:
            if ns.reads_until_gone <= 0:
                self._remove(name)
                return None
            ns.reads_until_gone -= 1
        return ns.view()

    async def create_namespace(self, name: str, labels: Mapping[str, str]) -> None:
        self._enter("create_namespace", name, dict(labels))
        if name in self.namespaces:
            raise KubeApiError(409, "AlreadyExists", f'namespaces "{name}" already exists')
        self.namespaces[name] = FakeNamespace(name, dict(labels))

    async def delete_namespace(self, name: str) -> None:
        self._enter("delete_namespace", name)
        ns = self.namespaces.get(name)
        if ns is None:
            raise KubeApiError(404, "NotFound", f'namespaces "{name}" not found')
        if ns.phase == "Terminating":
            raise KubeApiError(409, "Conflict", f"namespace {name} is already terminating")
        ns.phase = "Terminating"
        ns.reads_until_gone = self.terminating_reads
        ns.stuck = name in self.stuck

    async def list_namespaces(self, label_selector: str) -> list[Namespace]:
        self._enter("list_namespaces", label_selector)
        return [ns.view() for ns in self.namespaces.values() if matches(ns.labels, label_selector)]

    async def create_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        self._enter("create_secret", namespace, name)  # data kept out of the call log
        self._authorize(namespace, "create", "secrets")
        ns = self.namespaces.get(namespace)
        if ns is None:
            raise KubeApiError(404, "NotFound", f'namespaces "{namespace}" not found')
        if ns.phase == "Terminating":
            raise KubeApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
            )
        if (namespace, name) in self.secrets:
            raise KubeApiError(409, "AlreadyExists", f'secrets "{name}" already exists')
        self.secrets[(namespace, name)] = dict(data)

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        self._enter("read_secret", namespace, name)
        self._authorize(namespace, "get", "secrets")
        found = self.secrets.get((namespace, name))
        return None if found is None else dict(found)

    async def replace_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        self._enter("replace_secret", namespace, name)  # data kept out of the call log
        self._authorize(namespace, "get", "secrets")
        found = self.secrets.get((namespace, name))
        if found is None:
            raise KubeApiError(404, "NotFound", f'secrets "{name}" not found')
        self._authorize(namespace, "update", "secrets")
        found.update(data)

    async def create_role_binding(
        self,
        namespace: str,
        name: str,
        cluster_role: str,
        account: tuple[str, str],
        labels: Mapping[str, str],
    ) -> None:
        self._enter("create_role_binding", namespace, name)
        ns = self.namespaces.get(namespace)
        if ns is None:
            raise KubeApiError(404, "NotFound", f'namespaces "{namespace}" not found')
        if ns.phase == "Terminating":
            raise KubeApiError(
                403, "Forbidden", f"unable to create new content in namespace {namespace}"
            )
        if (namespace, name) in self.role_bindings:
            raise KubeApiError(409, "AlreadyExists", f'rolebindings "{name}" already exists')
        self.role_bindings[(namespace, name)] = {
            "role": cluster_role, "account": account, "labels": dict(labels)
        }  # fmt: skip
        self._lag_left[namespace] = self.binding_lag

    async def allowed(self, namespace: str, verb: str, resource: str) -> bool:
        self._enter("allowed", namespace, verb, resource)
        return self.permits(namespace)

    async def list_workloads(self, namespace: str) -> list[Workload]:
        self._enter("list_workloads", namespace)
        self._authorize(namespace, "list", "deployments")
        return list(self.workloads.get(namespace, []))

    async def list_pods(self, namespace: str, label_selector: str = "") -> list[Pod]:
        self._enter("list_pods", namespace, label_selector)
        self._authorize(namespace, "list", "pods")
        return [p for p in self.pods.get(namespace, []) if matches(p.labels, label_selector)]

    async def pending_claims(self, namespace: str) -> list[str]:
        self._enter("pending_claims", namespace)
        self._authorize(namespace, "list", "persistentvolumeclaims")
        return [name for name, phase in self.claims[namespace].items() if phase == "Pending"]

    async def last_log_line(self, namespace: str, pod: str, container: str) -> str | None:
        self._enter("last_log_line", namespace, pod, container)
        self._authorize(namespace, "get", "pods/log")
        lines = self.logs.get((namespace, pod, container))
        return lines[-1] if lines else None

    async def exec(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: Sequence[str],
        stdin: str | None,
        timeout: float,  # noqa: ASYNC109  (the KubeApi signature: recorded, not awaited)
    ) -> ExecResult:
        self._enter("exec", namespace, pod)
        self._authorize(namespace, "create", "pods/exec")
        if not any(p.name == pod for p in self.pods.get(namespace, [])):
            raise KubeApiError(404, "NotFound", f'pods "{pod}" not found')
        call = ExecCall(namespace, pod, container, list(command), stdin, timeout)
        self.exec_calls.append(call)
        return self.exec_handler(call)

    async def exec_streaming(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: Sequence[str],
        stdin: AsyncIterable[bytes] | None,
        idle_timeout: float,
    ) -> AsyncGenerator[bytes, None]:
        self._enter("exec_streaming", namespace, pod)
        self._authorize(namespace, "create", "pods/exec")
        if not any(p.name == pod for p in self.pods.get(namespace, [])):
            raise KubeApiError(404, "NotFound", f'pods "{pod}" not found')
        read = None if stdin is None else b"".join([chunk async for chunk in stdin])
        self.stream_calls.append(StreamCall(namespace, pod, container, list(command), read))
        for chunk in self.stream_output:
            yield chunk

    # -- what the chart would run, for tests -------------------------------------------------

    def roll_out(self, namespace: str, *, ready: bool = True, waiting: str | None = None) -> None:
        """The chart's two workloads and their pods, ready or stuck on ``waiting``."""
        count = 1 if ready else 0
        self.workloads[namespace] = [
            Workload("Deployment", "store-wordpress", 1, count, 1),
            Workload("StatefulSet", "store-mariadb", 1, count, 1),
        ]
        state = ContainerState(
            "wordpress", ready, waiting, "Back-off pulling image" if waiting else None
        )
        self.pods[namespace] = [
            Pod("store-wordpress-7d9f-abcde", WORDPRESS_LABELS, "Running" if ready else "Pending",
                ready, containers=(state,)),
            Pod("store-mariadb-0", MARIADB_LABELS, "Running", True,
                containers=(ContainerState("mariadb", True),)),
        ]  # fmt: skip

    def tear_down(self, namespace: str) -> None:
        self.workloads.pop(namespace, None)
        self.pods.pop(namespace, None)

    def _remove(self, name: str) -> None:
        del self.namespaces[name]
        self.tear_down(name)
        for key in [key for key in self.secrets if key[0] == name]:
            del self.secrets[key]
        for key in [key for key in self.role_bindings if key[0] == name]:
            del self.role_bindings[key]


@dataclass
class ValuesSeen:
    path: Path
    mode: int
    text: str


@dataclass
class FakeHelm:
    """A recording ``HelmRunner`` that keeps releases as helm does (revisions, statuses) and,
    given a ``FakeKube``, rolls the chart's workloads out on install and removes them on
    uninstall."""

    kube: FakeKube | None = None
    rollout_ready: bool = True
    calls: list[list[str]] = field(default_factory=list)
    timeouts: list[float] = field(default_factory=list)
    releases: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=dict)
    # Results the next calls of a verb return instead of acting: scripted["upgrade"].
    scripted: dict[str, list[HelmResult]] = field(default_factory=lambda: defaultdict(list))
    values_seen: list[ValuesSeen] = field(default_factory=list)
    # Each revision's description, where helm writes one that says something: a rollback's.
    descriptions: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def verbs(self) -> list[str]:
        return [argv[1] for argv in self.calls]

    def set_release(self, namespace: str, name: str, *statuses: str) -> None:
        self.releases[(namespace, name)] = [(i + 1, s) for i, s in enumerate(statuses)]

    def status(self, namespace: str, name: str = "store") -> str | None:
        revisions = self.releases.get((namespace, name))
        return revisions[-1][1] if revisions else None

    async def run(self, argv: Sequence[str], timeout: float) -> HelmResult:  # noqa: ASYNC109  (the HelmRunner signature: recorded, not awaited)
        argv = list(argv)
        self.calls.append(argv)
        self.timeouts.append(timeout)
        verb = argv[1]
        if verb == "upgrade":
            self._record_values(argv)
        if self.scripted[verb]:
            return self.scripted[verb].pop(0)
        namespace = argv[argv.index("--namespace") + 1]
        if self.kube is not None and not self.kube.permits(namespace):
            # helm acts with the driver's identity: RBAC refuses it the same way.
            return HelmResult(
                1, "", f'Error: secrets is forbidden: cannot list resource "secrets" in the '
                f'namespace "{namespace}"\n',
            )  # fmt: skip
        name = argv[3] if verb == "upgrade" else argv[2]
        key = (namespace, name)
        revisions = self.releases.get(key)
        if verb in ("status", "history", "rollback") and not revisions:
            return HelmResult(1, "", "Error: release: not found\n")
        if verb == "status":
            assert revisions
            number, status = revisions[-1]
            info = {"status": status, "description": "", "notes": ""}
            body = {"name": name, "namespace": namespace, "version": number, "info": info}
            return HelmResult(0, json.dumps(body), "")
        if verb == "history":
            assert revisions
            rows = [
                {
                    "revision": n, "status": s, "chart": "store-0.2.0",
                    "description": self.descriptions.get((*key, n), "Upgrade complete"),
                }
                for n, s in revisions
            ]  # fmt: skip
            return HelmResult(0, json.dumps(rows), "")
        if verb == "rollback":
            assert revisions
            target = int(argv[3])
            if not any(n == target and s in ("deployed", "superseded") for n, s in revisions):
                return HelmResult(1, "", f"Error: release has no {target} version\n")
            # helm supersedes the release it rolls back from, pending or not
            self._append(
                key, "deployed", supersede=("deployed", "pending-upgrade", "pending-rollback")
            )
            self.descriptions[(*key, len(revisions))] = f"Rollback to {target}"
            return HelmResult(0, "Rollback was a success! Happy Helming!\n", "")
        if verb == "uninstall":
            if not revisions:
                if "--ignore-not-found" in argv:
                    return HelmResult(0, f"release {name} not found, ignored\n", "")
                message = f"Error: uninstall: Release not loaded: {name}: release: not found\n"
                return HelmResult(1, "", message)
            del self.releases[key]
            if self.kube is not None:
                self.kube.tear_down(namespace)
            return HelmResult(0, f'release "{name}" uninstalled\n', "")
        if verb == "upgrade":
            if revisions and revisions[-1][1].startswith("pending-"):
                return HelmResult(
                    1, "", "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) "
                    "is in progress\n",
                )  # fmt: skip
            self._append(key, "deployed")
            if self.kube is not None:
                self.kube.roll_out(namespace, ready=self.rollout_ready)
            return HelmResult(0, f'Release "{name}" has been upgraded. Happy Helming!\n', "")
        raise AssertionError(f"the fake helm does not know {argv}")

    def _append(
        self, key: tuple[str, str], status: str, supersede: tuple[str, ...] = ("deployed",)
    ) -> None:
        revisions = self.releases.setdefault(key, [])
        revisions[:] = [(n, "superseded" if s in supersede else s) for n, s in revisions]
        revisions.append((len(revisions) + 1, status))

    def _record_values(self, argv: list[str]) -> None:
        for i, arg in enumerate(argv):
            if arg == "--values":
                path = Path(argv[i + 1])
                self.values_seen.append(
                    ValuesSeen(path, stat.S_IMODE(os.stat(path).st_mode), path.read_text())
                )
