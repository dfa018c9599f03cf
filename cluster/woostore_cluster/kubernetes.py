"""The Kubernetes driver: the ``Cluster`` seam on a real cluster.

Two narrow seams of our own carry everything it does, so each can be replaced in tests:
- ``KubeApi`` (``woostore_cluster.kubeapi``): namespaces, Secrets, workload readiness, pods
  and exec, over the official client;
- ``HelmRunner`` (``woostore_cluster.helm``): the helm v4 binary, argv lists only.

The helm commands themselves (their argv, recovering a release left pending, reading its
history, helm's failures as ``ClusterError``s) are ``HelmReleases``'
(``woostore_cluster.releases``), which runs them through the ``HelmRunner``; the driver keeps
what needs the Kubernetes API around them: the namespace must be a live store namespace, with
our rights granted in it, and the pods are watched while helm waits for them.

Both reach the cluster with the same credentials: a kubeconfig file (``--kubeconfig`` for
helm), or, in a pod without one, the pod's ServiceAccount (in-cluster configuration, which
helm uses too when given no kubeconfig); each re-reads the token file the kubelet rotates.

Rules it keeps:
- every method is idempotent, like the simulated cluster's (``simulated.py``);
- secrets never reach argv or helm: the chart names the store's Secret, WP-CLI gets
  passwords on stdin, the database clients read theirs in the pod, and error messages are
  scrubbed of Secret data and stdin;
- every wait has a deadline, and a deadline that passes is an error naming what is not
  ready, transient or permanent (``ImagePullBackOff`` is permanent);
- finalizers are never touched: a namespace is deleted and waited for, nothing more.
See docs/kubernetes.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from woostore_cluster.base import (
    BIND_SECONDS,
    DEFAULT_INSTALLATION,
    INSTALLATION_LABEL,
    MANAGED_BY,
    STORE_ACCESS_BINDING,
    STORE_ID_LABEL,
    ClusterError,
    PermanentClusterError,
    Release,
    ReleaseRevision,
    StoreAccess,
    StorefrontCheck,
    TransientClusterError,
    WpResult,
    is_managed_namespace,
    refuse_to_adopt,
    store_access,
)
from woostore_cluster.causes import (
    CRASH_LOOP,
    HOPELESS_REASONS,
    PERMANENT_REASONS,
    Holdup,
    holdup_of,
    in_words,
)
from woostore_cluster.helm import HelmRunner, SubprocessHelmRunner
from woostore_cluster.kubeapi import ClientKubeApi, CommandFailed, KubeApi, KubeApiError, in_a_pod
from woostore_cluster.kubeobjects import Namespace, Pod
from woostore_cluster.releases import HELM_GRACE_SECONDS, UNINSTALL_SECONDS, HelmReleases
from woostore_cluster.storefront import verify_storefront
from woostore_shared.logging import get_logger
from woostore_shared.settings import Settings

log = get_logger(__name__)

# The store chart's WordPress pods (helm/store/templates/wordpress-deployment.yaml).
WORDPRESS_SELECTOR = "app.kubernetes.io/name=store,app.kubernetes.io/component=wordpress"
WORDPRESS_CONTAINER = "wordpress"
WORDPRESS_PATH = "/var/www/html"  # WordPress core in the store image
WP_CONTENT_PATH = f"{WORDPRESS_PATH}/wp-content"  # the store's volume
UPLOADS_PATH = f"{WP_CONTENT_PATH}/uploads"
# ... and its MariaDB pod (helm/store/templates/mariadb-statefulset.yaml).
MARIADB_SELECTOR = "app.kubernetes.io/name=store,app.kubernetes.io/component=mariadb"
MARIADB_CONTAINER = "mariadb"


@dataclass(frozen=True)
class Component:
    """One of the store chart's workloads, as exec reaches it."""

    name: str  # as messages call it
    selector: str  # its pods' labels
    container: str


WORDPRESS = Component("WordPress", WORDPRESS_SELECTOR, WORDPRESS_CONTAINER)
MARIADB = Component("MariaDB", MARIADB_SELECTOR, MARIADB_CONTAINER)

# The database clients log in with the MariaDB container's own environment (the chart sets the
# user, the database and the password file), so no name or secret of ours is in the command.
# The password reaches them in MYSQL_PWD, in their environment, never as an argument, which
# any process in the pod could list; set -e stops at a password file that cannot be read,
# rather than trying with an empty password.
_MARIADB_LOGIN = """\
set -eu
MYSQL_PWD="$(cat "$MARIADB_PASSWORD_FILE")"
export MYSQL_PWD
"""
# One consistent snapshot while the store keeps serving (--single-transaction: InnoDB's, no
# table locked), rows streamed as they are read (--quick), stored procedures and triggers
# included.
DUMP_DATABASE = (
    "sh",
    "-c",
    _MARIADB_LOGIN + "exec mariadb-dump --single-transaction --quick --routines --triggers "
    '--user="$MARIADB_USER" "$MARIADB_DATABASE"\n',
)
# The dump drops and recreates each table it holds (mariadb-dump's --add-drop-table, a default).
LOAD_DATABASE = (
    "sh",
    "-c",
    _MARIADB_LOGIN + 'exec mariadb --user="$MARIADB_USER" "$MARIADB_DATABASE"\n',
)
ARCHIVE_UPLOADS = ("tar", "-C", UPLOADS_PATH, "-cf", "-", ".")
# The archive is unpacked into a folder of its own beside the uploads, which it replaces only
# once tar has read it whole: a damaged archive, or an API server that cannot end stdin (the
# command starts before that is known, and tar then reads nothing), leaves the uploads as they
# were, and what tar unpacked of it is removed. wp-content is the volume, so both moves are
# renames. What an attempt cut short left behind (a pod restarted mid-way) is cleared first.
REPLACE_UPLOADS = (
    "sh",
    "-c",
    f"""\
set -eu
cd {WP_CONTENT_PATH}
trap 'rm -rf .uploads-incoming' EXIT
rm -rf .uploads-incoming .uploads-outgoing
mkdir .uploads-incoming
tar -C .uploads-incoming -xf -
if [ -e uploads ]; then mv uploads .uploads-outgoing; fi
mv .uploads-incoming uploads
rm -rf .uploads-outgoing
""",
)


class KubernetesCluster:
    simulated = False

    def __init__(
        self,
        kube: KubeApi,
        helm: HelmRunner,
        *,
        kubeconfig: Path | None,
        helm_binary: str = "helm",
        admin_user: str = "admin",
        poll_interval: float = 2.0,
        helm_grace: float = HELM_GRACE_SECONDS,
        uninstall_timeout: float = UNINSTALL_SECONDS,
        exec_timeout: float = 110.0,
        stream_idle_timeout: float = 600.0,
        http_timeout: float = 30.0,
        verify_tls: bool = True,
        installation: str = DEFAULT_INSTALLATION,
        store_access: StoreAccess | None = None,
        bind_timeout: float = BIND_SECONDS,
    ) -> None:
        self.kube = kube
        self.installation = installation
        # None: the identity's own rights reach the stores' namespaces (nothing is bound).
        self.store_access = store_access
        self.bind_timeout = bind_timeout  # for a new RoleBinding to take effect
        # The helm side of each release operation; this driver checks the namespace and
        # holds our rights in it first. kubeconfig None: in a pod, with its ServiceAccount
        # (required, so that no caller gets the pod's identity by forgetting to pass one).
        self.releases = HelmReleases(
            helm, kubeconfig=kubeconfig, helm_binary=helm_binary, grace=helm_grace
        )
        self.admin_user = admin_user  # the WordPress user WP-CLI's wc commands act as
        self.poll_interval = poll_interval
        self.uninstall_timeout = uninstall_timeout
        self.exec_timeout = exec_timeout  # below the recipe's 120 s step timeout
        # A dump, an archive or a restore streams for as long as its bytes take: what is bounded
        # is how long the API server may leave the stream stalled (the kubelet's own limit on
        # an idle stream is 4 hours).
        self.stream_idle_timeout = stream_idle_timeout
        self.http_timeout = http_timeout
        self.verify_tls = verify_tls

    # -- namespaces and Secrets ------------------------------------------------------------

    async def ensure_namespace(self, namespace: str, labels: Mapping[str, str]) -> None:
        labels = {**labels, INSTALLATION_LABEL: self.installation}
        existing = await self._read_namespace(namespace)
        if existing is None and not await self._create_namespace(namespace, labels):
            existing = await self._read_namespace(namespace)  # made meanwhile: check it
            if existing is None:
                raise TransientClusterError(f"namespace {namespace} is being replaced", 5)
        if existing is not None:
            if existing.phase == "Terminating":
                raise TransientClusterError(f"namespace {namespace} is still terminating", 5)
            refuse_to_adopt(namespace, labels, existing.labels)
        await self._grant_store_access(namespace)

    async def _create_namespace(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """True when we made it, False when it exists already (a racing replica's)."""
        try:
            await self.kube.create_namespace(namespace, labels)
        except KubeApiError as error:
            if error.status != 409:
                raise _cluster_error(error, f"creating namespace {namespace}") from None
            return False
        return True

    async def namespace_exists(self, namespace: str) -> bool:
        return await self._read_namespace(namespace) is not None

    async def managed_namespaces(self) -> dict[str, str]:
        selector = (
            f"{MANAGED_BY[0]}={MANAGED_BY[1]},{STORE_ID_LABEL},"
            f"{INSTALLATION_LABEL}={self.installation}"
        )
        try:
            found = await self.kube.list_namespaces(selector)
        except KubeApiError as error:
            raise _cluster_error(error, "listing the store namespaces") from None
        return {
            ns.name: ns.labels[STORE_ID_LABEL]
            for ns in found
            # The server filtered by label already; checked again so a careless fake or
            # proxy can never make us claim a namespace that is not ours, and by name.
            if is_managed_namespace(ns.name, ns.labels, self.installation)
        }

    async def ensure_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        secrets = list(data.values())
        try:
            await self.kube.create_secret(namespace, name, data)
        except KubeApiError as error:
            if error.status == 409:
                return  # it exists: the first attempt's Secret is the one that counts
            if error.status == 404:
                raise PermanentClusterError(f'namespaces "{namespace}" not found') from None
            raise _cluster_error(error, f"creating secret {namespace}/{name}", secrets) from None

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        try:
            found = await self.kube.read_secret(namespace, name)
        except KubeApiError as error:
            raise _cluster_error(error, f"reading secret {namespace}/{name}") from None
        if found is None:
            raise PermanentClusterError(f"secret {namespace}/{name} not found")
        return found

    async def update_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        try:
            await self.kube.replace_secret(namespace, name, data)
        except KubeApiError as error:
            if error.status == 404:
                raise PermanentClusterError(f"secret {namespace}/{name} not found") from None
            # 409: changed since it was read; transient, the next attempt reads it again.
            what = f"updating secret {namespace}/{name}"
            raise _cluster_error(error, what, list(data.values())) from None

    # -- the Helm release ------------------------------------------------------------------

    async def install_release(self, release: Release, timeout: float) -> None:
        await self._require_store_namespace(release.namespace)
        # Watch the pods while helm waits: if helm times out, a pod stuck on a bad image
        # explains why, and makes the failure permanent.
        await self.releases.install(
            release, timeout, lambda problems: self._watch_pods(release.namespace, problems)
        )

    async def uninstall_release(self, namespace: str, name: str) -> None:
        found = await self._read_namespace(namespace)
        if found is None or found.phase != "Active":
            return  # a namespace gone, or going, takes its release with it
        await self._grant_store_access(namespace)
        await self.releases.uninstall(namespace, name, self.uninstall_timeout)

    async def release_history(self, namespace: str, name: str) -> list[ReleaseRevision]:
        await self._require_store_namespace(namespace)
        return await self.releases.history(namespace, name)

    async def rollback_release(
        self,
        namespace: str,
        name: str,
        revision: int,
        timeout: float,
    ) -> None:
        await self._require_store_namespace(namespace)
        await self.releases.rollback(namespace, name, revision, timeout)

    # -- workloads ---------------------------------------------------------------------------

    async def waiting_cause(self, namespace: str) -> str | None:
        try:
            holdup = await self._holdup(namespace)
            if holdup is None:
                return None
            last_line = None
            if holdup.reason == CRASH_LOOP and holdup.pod and holdup.container:
                last_line = await self.kube.last_log_line(namespace, holdup.pod, holdup.container)
            return in_words(holdup, last_line)
        except KubeApiError as error:  # only a hint: the next look may work
            log.info("could not tell why the store waits", namespace=namespace, error=str(error))
            return None

    async def _holdup(self, namespace: str) -> Holdup | None:
        pods = await self.kube.list_pods(namespace)
        claims = await self.kube.pending_claims(namespace)
        return holdup_of(pods, claims, await self.kube.list_workloads(namespace))

    async def wait_for_rollout(self, namespace: str, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                workloads = await self.kube.list_workloads(namespace)
                pods = await self.kube.list_pods(namespace)
            except KubeApiError as error:
                mapped = _cluster_error(error, f"watching the rollout in {namespace}")
                if isinstance(mapped, PermanentClusterError) or loop.time() >= deadline:
                    raise mapped from None
                await asyncio.sleep(self.poll_interval)  # an API hiccup: look again
                continue
            if not workloads:
                raise PermanentClusterError(
                    f"no workloads in namespace {namespace}: was the chart installed?"
                )
            waiting = [w for w in workloads if not w.ready]
            if not waiting:
                return
            hopeless = [p for p in _pod_problems(pods) if p[0] in HOPELESS_REASONS]
            if hopeless:
                raise PermanentClusterError(
                    f"rollout in {namespace} cannot finish: {hopeless[0][1]}"
                )
            if loop.time() >= deadline:
                problems = _pod_problems(pods)
                message = f"rollout in {namespace} not ready after {timeout:g}s: " + "; ".join(
                    [w.describe() for w in waiting] + [text for _, text in problems]
                )
                cause = await self.waiting_cause(namespace)
                message = f"{cause} ({message})" if cause else message
                if any(reason in PERMANENT_REASONS for reason, _ in problems):
                    raise PermanentClusterError(message)
                raise TransientClusterError(message, 10)
            await asyncio.sleep(self.poll_interval)

    async def _watch_pods(self, namespace: str, problems: list[str]) -> None:
        """Keep in ``problems`` the permanent-looking pod problems of the latest look at the
        namespace's live pods (a rollback deleting them afterwards changes nothing)."""
        while True:
            await asyncio.sleep(self.poll_interval)
            with contextlib.suppress(KubeApiError):  # only a hint: the next look may work
                pods = [p for p in await self.kube.list_pods(namespace) if not p.deleting]
                if pods:
                    problems[:] = [
                        text for reason, text in _pod_problems(pods) if reason in PERMANENT_REASONS
                    ]

    # -- WordPress ---------------------------------------------------------------------------

    async def wp(self, namespace: str, args: Sequence[str], stdin: str | None = None) -> WpResult:
        pod = await self._ready_pod(namespace, WORDPRESS)
        command = ["wp", f"--path={WORDPRESS_PATH}", *args]
        secrets = [stdin.strip()] if stdin and stdin.strip() else []
        try:
            result = await self.kube.exec(
                namespace, pod.name, WORDPRESS_CONTAINER, command, stdin, self.exec_timeout
            )
        except KubeApiError as error:
            what = f"running wp {' '.join(args[:2])} in {namespace}/{pod.name}"
            raise _cluster_error(error, what, secrets) from None
        if result.exit_code == 0:
            # stdout alone: callers parse it (a count), and PHP notices go to stderr.
            return WpResult(0, _redact(result.stdout, secrets))
        # WP-CLI writes "Error: ..." to stderr: keep it, so a failure says why.
        output = "\n".join(part for part in (result.stdout, result.stderr) if part.strip())
        return WpResult(result.exit_code, _redact(output, secrets))

    async def _ready_pod(self, namespace: str, component: Component) -> Pod:
        try:
            pods = await self.kube.list_pods(namespace, component.selector)
        except KubeApiError as error:
            what = f"finding the {component.name} pod in {namespace}"
            raise _cluster_error(error, what) from None
        ready = sorted(
            (p for p in pods if p.ready and p.phase == "Running" and not p.deleting),
            key=lambda p: p.name,
        )
        if not ready:
            raise TransientClusterError(f"no ready {component.name} pod in {namespace}", 5)
        return ready[0]

    async def check_storefront(self, namespace: str, url: str) -> StorefrontCheck:
        async def delete_order(order_id: int) -> str | None:
            result = await self.wp(
                namespace,
                ["wc", "shop_order", "delete", str(order_id), "--force=true",
                 f"--user={self.admin_user}"],
            )  # fmt: skip
            return None if result.ok else result.stdout.strip()[:200]

        return await verify_storefront(
            url, delete_order, timeout=self.http_timeout, verify_tls=self.verify_tls
        )

    # -- the store's content -----------------------------------------------------------------

    def dump_database(self, namespace: str) -> AsyncGenerator[bytes, None]:
        return self._exec_streaming(namespace, MARIADB, DUMP_DATABASE, "dumping the database")

    def archive_uploads(self, namespace: str) -> AsyncGenerator[bytes, None]:
        return self._exec_streaming(namespace, WORDPRESS, ARCHIVE_UPLOADS, "archiving the uploads")

    async def load_database(self, namespace: str, dump: AsyncIterable[bytes]) -> None:
        loading = self._exec_streaming(
            namespace, MARIADB, LOAD_DATABASE, "loading the database", stdin=dump
        )
        async for _ in loading:
            pass  # the client prints nothing worth keeping; a failure's stderr is its error's

    async def replace_uploads(self, namespace: str, archive: AsyncIterable[bytes]) -> None:
        replacing = self._exec_streaming(
            namespace, WORDPRESS, REPLACE_UPLOADS, "replacing the uploads", stdin=archive
        )
        async for _ in replacing:
            pass  # tar -x prints nothing unless it fails: then stderr is its error's

    async def _exec_streaming(
        self,
        namespace: str,
        component: Component,
        command: Sequence[str],
        doing: str,
        stdin: AsyncIterable[bytes] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """``command``'s stdout as it streams from the component's ready pod, fed ``stdin``;
        after the chunks that came, a command that failed, or a stream that broke, as a
        ``ClusterError``."""
        pod = await self._ready_pod(namespace, component)
        doing = f"{doing} in {namespace}/{pod.name}"
        stdout = self.kube.exec_streaming(
            namespace, pod.name, component.container, command, stdin, self.stream_idle_timeout
        )
        try:
            # Closed with this generator: a consumer that stops early closes the stream.
            async with contextlib.aclosing(stdout):
                async for chunk in stdout:
                    yield chunk
        except KubeApiError as error:
            raise _cluster_error(error, doing) from None
        except CommandFailed as failed:
            raise PermanentClusterError(f"{doing}: {failed}") from None

    # -- deletion ----------------------------------------------------------------------------

    async def delete_namespace(self, namespace: str, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        existing = await self._read_namespace(namespace)
        if existing is None:
            return
        if existing.phase != "Terminating":
            try:
                await self.kube.delete_namespace(namespace)
            except KubeApiError as error:
                if error.status not in (404, 409):  # gone, or already being deleted
                    raise _cluster_error(error, f"deleting namespace {namespace}") from None
        while True:
            try:
                current = await self.kube.read_namespace(namespace)
            except KubeApiError as error:
                mapped = _cluster_error(error, f"waiting for namespace {namespace} to go")
                if isinstance(mapped, PermanentClusterError) or loop.time() >= deadline:
                    raise mapped from None
                await asyncio.sleep(self.poll_interval)
                continue
            if current is None:
                return
            if loop.time() >= deadline:
                why = "; ".join(current.conditions) or "no reason given"
                raise TransientClusterError(
                    f"namespace {namespace} still {current.phase.lower()} after {timeout:g}s "
                    f"({why})",
                    10,
                )
            await asyncio.sleep(self.poll_interval)

    # -- internals ---------------------------------------------------------------------------

    async def _read_namespace(self, namespace: str) -> Namespace | None:
        try:
            return await self.kube.read_namespace(namespace)
        except KubeApiError as error:
            raise _cluster_error(error, f"reading namespace {namespace}") from None

    async def _require_store_namespace(self, namespace: str) -> None:
        """The namespace must be Active, and our rights in it granted: a store made before
        rights were granted per namespace gets its RoleBinding at its next helm operation."""
        found = await self._read_namespace(namespace)
        if found is None or found.phase != "Active":
            raise PermanentClusterError(f'namespaces "{namespace}" not found')
        await self._grant_store_access(namespace)

    async def _grant_store_access(self, namespace: str) -> None:
        """Hold the store-manager rights in ``namespace``: the RoleBinding of the role to our
        own ServiceAccount, made if we lack them, then waited for until the API server
        authorizes with it (RBAC takes effect once the authorizer's cache has it)."""
        access = self.store_access
        if access is None or await self._allowed(namespace):
            return
        try:
            await self.kube.create_role_binding(
                namespace,
                STORE_ACCESS_BINDING,
                access.role,
                (access.account_namespace, access.account_name),
                {MANAGED_BY[0]: MANAGED_BY[1], INSTALLATION_LABEL: self.installation},
            )
        except KubeApiError as error:
            if error.status == 404:
                raise PermanentClusterError(f'namespaces "{namespace}" not found') from None
            if error.status != 409:  # 409: an earlier attempt made it; wait for it below
                raise _cluster_error(error, f"binding {access.role} in {namespace}") from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.bind_timeout
        while not await self._allowed(namespace):
            if loop.time() >= deadline:
                raise TransientClusterError(
                    f"rolebinding {namespace}/{STORE_ACCESS_BINDING} grants no access after "
                    f"{self.bind_timeout:g}s",
                    10,
                )
            await asyncio.sleep(self.poll_interval)

    async def _allowed(self, namespace: str) -> bool:
        """Whether the store-manager rights hold in ``namespace``; creating Secrets (the next
        step's first need) stands for all of them, which one binding grants at once."""
        try:
            return await self.kube.allowed(namespace, "create", "secrets")
        except KubeApiError as error:
            raise _cluster_error(error, f"checking our access to {namespace}") from None


def _cluster_error(error: KubeApiError, doing: str, secrets: Sequence[str] = ()) -> ClusterError:
    """Transient for what may pass (no answer, conflicts, throttling, server errors),
    permanent for what will not (bad requests, forbidden, not found, invalid)."""
    message = _redact(f"{doing}: {error}", secrets)
    status = error.status
    if status == 0 or status in (408, 409, 429) or status >= 500:
        delay = 5.0 if error.retry_after is None else max(1.0, error.retry_after)
        return TransientClusterError(message, delay)
    return PermanentClusterError(message)


def _pod_problems(pods: Sequence[Pod]) -> list[tuple[str, str]]:
    """(reason, "pod x: container y waiting: Reason (message)") for every stuck container,
    and (Unschedulable, ...) for a pod no node will take."""
    problems: list[tuple[str, str]] = []
    for pod in pods:
        if pod.deleting:
            continue
        if pod.unschedulable:
            problems.append(("Unschedulable", f"pod {pod.name} unschedulable: {pod.unschedulable}"))
        for c in pod.containers:
            if c.waiting_reason and c.waiting_reason not in (
                "ContainerCreating",
                "PodInitializing",
            ):
                detail = f" ({c.waiting_message[:200]})" if c.waiting_message else ""
                problems.append(
                    (c.waiting_reason, f"pod {pod.name}: container {c.name} waiting: "
                     f"{c.waiting_reason}{detail}")
                )  # fmt: skip
    return problems


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def connect_kubernetes(settings: Settings) -> KubernetesCluster:
    """The driver the settings describe: with ``WOOSTORE_KUBECONFIG``, that kubeconfig; without
    it, in a pod, the pod's ServiceAccount (in-cluster). Exits with a readable message when
    neither is there, or the kubeconfig or the helm binary is not usable, rather than failing
    on the first store."""
    path: Path | None = None
    if settings.kubeconfig is not None:
        path = settings.kubeconfig.expanduser().resolve()
        if not path.is_file() or not os.access(path, os.R_OK):
            raise SystemExit(f"WOOSTORE_KUBECONFIG={path}: there is no readable file there")
        source = f"WOOSTORE_KUBECONFIG={path}"
    elif in_a_pod():
        source = "the in-cluster configuration (the pod's ServiceAccount)"
    else:
        raise SystemExit(
            "WOOSTORE_CLUSTER=kubernetes needs WOOSTORE_KUBECONFIG, the path of a kubeconfig "
            "file, or to run in a Kubernetes pod with its ServiceAccount token mounted "
            "(KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT set, and "
            "/var/run/secrets/kubernetes.io/serviceaccount/token present)"
        )
    try:
        kube = ClientKubeApi(path)
    except Exception as error:  # the loaders raise their own, yaml's and OS errors alike
        raise SystemExit(f"{source} could not be loaded: {error}") from None
    log.info("reaching kubernetes", credentials="kubeconfig" if path else "in-cluster")
    return KubernetesCluster(
        kube,
        SubprocessHelmRunner(),
        kubeconfig=path,
        helm_binary=settings.helm_binary,
        installation=settings.installation,
        store_access=store_access(settings),
    )
