"""The narrow interface between the provisioner and a cluster.

Two implementations: ``simulated`` (the embedded default) and ``kubernetes`` (the real one,
used whenever a kubeconfig is given). Every method is idempotent: calling it again after it
succeeded, or after a crash half-way, leads to the same end state. That is what lets the
recipe resume after any failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from woostore_shared.models import NAMESPACE_PREFIX
from woostore_shared.settings import Settings

# Labels on every namespace the platform makes: together they prove WooStore owns it.
MANAGED_BY = ("app.kubernetes.io/managed-by", "woostore")
STORE_ID_LABEL = "woostore.io/store-id"
# Which WooStore installation made it: several may share a cluster, and each removes only
# its own left-behind namespaces. A cluster object adds and checks it itself.
INSTALLATION_LABEL = "woostore.io/installation"
DEFAULT_INSTALLATION = "default"


# The RoleBinding that gives the provisioner its rights in a store's namespace.
STORE_ACCESS_BINDING = "woostore-store-manager"


# The longest a new RoleBinding (``StoreAccess``) may take to grant its rights: the driver
# waits for them before its first use of a store's namespace.
BIND_SECONDS = 60.0


@dataclass(frozen=True)
class StoreAccess:
    """The provisioner's rights in a store's namespace come from a RoleBinding there
    (``STORE_ACCESS_BINDING``) of the ClusterRole ``role`` to its own ServiceAccount, made
    with the namespace: it holds no namespaced rights anywhere else."""

    role: str
    account_namespace: str
    account_name: str


def store_access(settings: Settings) -> StoreAccess | None:
    """The binding the settings ask for in each store namespace; None without a role."""
    if not settings.store_manager_role:
        return None
    namespace, _, name = settings.service_account.partition("/")
    if not name:
        raise SystemExit(
            f"WOOSTORE_STORE_MANAGER_ROLE={settings.store_manager_role} needs "
            "WOOSTORE_SERVICE_ACCOUNT, the <namespace>/<name> of the provisioner's ServiceAccount"
        )
    return StoreAccess(settings.store_manager_role, namespace, name)


# Store namespaces are "store-<slug>"; helm/platform's admission policy lets the provisioner
# and the reaper make and delete no others.
STORE_NAMESPACE_PREFIX = NAMESPACE_PREFIX


def is_managed_namespace(name: str, labels: Mapping[str, str], installation: str) -> bool:
    """A namespace this installation made for a store: its name and ownership labels. The
    name counts too: labels alone can be put on any namespace (kube-system included), and a
    reaper that went on to delete one would be refused every pass by the admission policy."""
    return (
        name.startswith(STORE_NAMESPACE_PREFIX)
        and labels.get(MANAGED_BY[0]) == MANAGED_BY[1]
        and STORE_ID_LABEL in labels
        and labels.get(INSTALLATION_LABEL) == installation
    )


def refuse_to_adopt(namespace: str, wanted: Mapping[str, str], found: Mapping[str, str]) -> None:
    """A namespace of that name that is not this store's (or this installation's) is never
    taken over: its ownership labels must be the ones this store would give it."""
    for key in (MANAGED_BY[0], STORE_ID_LABEL, INSTALLATION_LABEL):
        if key in wanted and found.get(key) != wanted[key]:
            raise PermanentClusterError(
                f"namespace {namespace} exists but is not this store's "
                f"(label {key}={found.get(key)!r})"
            )


class ClusterError(Exception):
    """Something the cluster refused or could not do; the message is safe to show a user."""


class TransientClusterError(ClusterError):
    """Worth retrying after ``delay`` seconds: an API server hiccup, a conflict, a timeout."""

    def __init__(self, message: str, delay: float = 5.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentClusterError(ClusterError):
    """Retrying cannot help: a bad image, an invalid manifest, a quota exceeded."""


@dataclass(frozen=True)
class Release:
    """One store's Helm release. Secrets are never among ``values``: they live in a Secret
    the chart references by name (``credentialsSecret``)."""

    name: str
    namespace: str
    chart: Path
    values: Mapping[str, Any] = field(default_factory=dict)
    # Values profiles (e.g. helm/store/values-local.yaml), layered under ``values``.
    values_files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class ReleaseRevision:
    """One revision in a release's history (``helm history``)."""

    revision: int
    chart_version: str
    status: str  # deployed, superseded, failed, pending-...
    # The revision this one deployed again: helm's rollback, asked for or after an upgrade
    # that failed (its description "Rollback to N"); None for an install or an upgrade.
    rolled_back_to: int | None = None


@dataclass(frozen=True)
class WpResult:
    exit_code: int
    stdout: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class StorefrontCheck:
    status_code: int
    products: int
    order_placed: bool
    detail: str = ""  # what went wrong (or what was done), safe to show a user


class Cluster(Protocol):
    simulated: bool

    async def ensure_namespace(self, namespace: str, labels: Mapping[str, str]) -> None:
        """Create it with ``labels`` and this installation's label; an existing namespace
        whose ownership labels differ is never adopted."""

    async def namespace_exists(self, namespace: str) -> bool: ...

    async def managed_namespaces(self) -> dict[str, str]:
        """Namespaces carrying the ownership labels and this installation's, with the store
        id each names."""

    async def ensure_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        """Create the Secret if it does not exist; an existing one is kept as it is."""

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]: ...

    async def update_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        """Set ``data``'s keys in the existing Secret, keeping its other keys; a Secret (or a
        namespace) that does not exist is a ``PermanentClusterError``. Setting the same data
        again changes nothing. The values never appear in errors or logs. Pods that read the
        Secret as environment variables see the new values only when they restart."""

    async def install_release(self, release: Release, timeout: float) -> None:
        """``helm upgrade --install``; a release left pending by a crash is recovered first."""

    async def release_history(self, namespace: str, name: str) -> list[ReleaseRevision]:
        """The release's revisions, oldest first; empty when there is no release."""

    async def rollback_release(
        self, namespace: str, name: str, revision: int, timeout: float
    ) -> None:
        """``helm rollback`` to ``revision``: its chart and values become a new revision.
        Rolling back to the same revision again changes nothing the store runs."""

    async def wait_for_rollout(self, namespace: str, timeout: float) -> None: ...

    async def waiting_cause(self, namespace: str) -> str | None:
        """Why the store's pods are not running yet, in words its owner understands
        (causes.py), or None when nothing is known to hold them up. Never raises: it is
        asked while a step waits, as a hint."""

    async def wp(self, namespace: str, args: Sequence[str], stdin: str | None = None) -> WpResult:
        """Run WP-CLI in the store's WordPress pod. Secrets go through ``stdin``, never ``args``."""

    async def check_storefront(self, namespace: str, url: str) -> StorefrontCheck:
        """Load the storefront, list products through the Store API, place and remove a
        cash-on-delivery order."""

    # A store's content, for backups and restores. Each streams: memory stays bounded
    # whatever the store's size. A stream that does not end well raises ``ClusterError``
    # (after the chunks that came), so a caller never takes half a dump for a whole one.

    def dump_database(self, namespace: str) -> AsyncIterator[bytes]:
        """The store's database, consistent while the store keeps serving
        (``mariadb-dump --single-transaction`` in its MariaDB pod)."""

    def archive_uploads(self, namespace: str) -> AsyncIterator[bytes]:
        """The store's uploads (``wp-content/uploads`` in its WordPress pod) as a tar stream."""

    async def load_database(self, namespace: str, dump: AsyncIterable[bytes]) -> None:
        """Replace the store's database with ``dump`` (one from ``dump_database``)."""

    async def replace_uploads(self, namespace: str, archive: AsyncIterable[bytes]) -> None:
        """Replace the store's uploads with ``archive``'s (one from ``archive_uploads``):
        files the archive does not hold are removed."""

    async def uninstall_release(self, namespace: str, name: str) -> None: ...

    async def delete_namespace(self, namespace: str, timeout: float) -> None:
        """Delete the namespace and wait until it is gone (finalizers are never stripped)."""
