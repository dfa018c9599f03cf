"""The simulated cluster: a stand-in for Kubernetes that needs no Docker and no cluster.

It is faithful where the provisioner can tell the difference:
- its state (namespaces, objects, Helm releases, each store's WordPress) lives in a SQLite
  file under the data folder, outside the provisioner, so it survives provisioner restarts
  and is shared by every replica, as a real cluster's would be;
- releases are rendered from the real chart with the real ``helm template``, and a release
  interrupted mid-install is left ``pending-install`` and must be recovered, as with Helm;
- WP-CLI commands are interpreted, so a step that forgets to activate WooCommerce fails
  verification here too; the store's URL is WordPress's own (``home``/``siteurl``, read in
  the scheme the pod's WOOSTORE_URL_SCHEME gives them, as the image's must-use plugin does);
- the storefront check places a cash-on-delivery order and deletes it with WP-CLI, as the
  real driver does: the orders taken are counted (``orders_placed``, kept apart from the
  WordPress state, so a verification run again leaves that state as it was), and an order
  whose deletion failed stays in the store;
- a store's content is real: its database is its WordPress state (products, customers,
  orders, options) and the orders it took; its uploads are real files in a folder of its
  own. A dump is that database as JSON, marked as the simulation's (a real one is
  ``mariadb-dump``'s SQL), and the uploads are archived and replaced by the real ``tar``,
  as in the WordPress pod;
- WordPress's scheduled work runs as the store pod's ``cron`` container would run it, and
  shows up as events (``simulated_cron.py``): ``events`` is the namespace's ``kubectl get
  events``, and ``wp cron event list`` the schedule;
- operations take realistic time (``WOOSTORE_SIM_TIME_SCALE`` scales it, 0 is instant): an
  upgrade that changes no Deployment or StatefulSet (a new Ingress host) is quick, and the
  rollout after it too, since no pod restarts; ``WOOSTORE_SIM_FAULTS`` injects the failures
  a real cluster produces.
It never claims to be real: every store it runs is flagged ``simulated``.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import html
import json
import os
import random
import re
import secrets
import shlex
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from woostore_cluster.base import (
    DEFAULT_INSTALLATION,
    INSTALLATION_LABEL,
    MANAGED_BY,
    STORE_ACCESS_BINDING,
    STORE_ID_LABEL,
    PermanentClusterError,
    Release,
    ReleaseRevision,
    StoreAccess,
    StorefrontCheck,
    TransientClusterError,
    WpResult,
    is_managed_namespace,
    refuse_to_adopt,
)
from woostore_cluster.causes import CRASH_LOOP, PERMANENT_REASONS, Holdup, holdup_of, in_words
from woostore_cluster.helm import child_environment
from woostore_cluster.kubeobjects import ContainerState, Pod
from woostore_cluster.simulated_cron import Round, play, registered
from woostore_shared.logging import get_logger

log = get_logger(__name__)

# Seconds each operation takes at time scale 1, from timings of real kind/k3s installs.
DURATIONS: dict[str, float] = {
    "ensure_namespace": 1.0,
    "ensure_secret": 0.5,
    "update_secret": 0.5,
    "install_release": 8.0,
    # An upgrade that leaves the Deployment and the StatefulSet as they are (a new Ingress
    # host, say): helm applies and waits for nothing that restarts.
    "upgrade_release_workloads_unchanged": 3.0,
    "rollback_release": 6.0,
    "wait_for_rollout": 35.0,
    # The pods already run the workloads as deployed: nothing restarts, one look suffices.
    "wait_for_rollout_workloads_unchanged": 1.0,
    "wp core install": 8.0,
    "wp plugin activate": 6.0,
    "wp": 1.0,
    "wp wc product create": 1.5,
    "wp wc shop_order delete": 1.0,
    "wp search-replace": 2.0,
    "wp user update": 1.0,
    "wp woostore shuffle-salts": 1.0,
    # A claim's whole WordPress side in one WP-CLI run: booting WordPress with WooCommerce
    # (about 1 s, as "wp"), a search-replace over every table of a young store (about 1 s more:
    # "wp search-replace", boot included, takes 2), then a few option and user writes, the
    # salts file, and deleting or creating a handful of orders and products through
    # WooCommerce (tens of milliseconds each, with their lookup tables and caches).
    "wp woostore personalise": 2.5,
    # The storefront, the Store API and the order over HTTP; the order's deletion through
    # WP-CLI ("wp wc shop_order delete") comes on top, as in the real driver.
    "check_storefront": 3.0,
    # Starting mariadb-dump, tar or the mariadb client in a pod through exec; the bytes then
    # take as long as they take to stream.
    "dump_database": 1.0,
    "archive_uploads": 1.0,
    "load_database": 2.0,
    "replace_uploads": 1.0,
    "uninstall_release": 4.0,
    "delete_namespace": 10.0,
}
FAULTABLE = frozenset(DURATIONS) | {"wp"}  # "wp" stands for every WP-CLI command
# A fault on the operation named on the right strikes the one on the left too: the quicker
# variants are still an install and a rollout.
FAULTS_COVERING = {
    "upgrade_release_workloads_unchanged": "install_release",
    "wait_for_rollout_workloads_unchanged": "wait_for_rollout",
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# The store's WordPress user, as the recipe installs it (recipe.ADMIN_USER); the only one.
ADMIN_USER = "admin"
# WooCommerce's first order number in the simulation (orders share WordPress's post ids).
FIRST_ORDER_ID = 101
CHUNK_BYTES = 1 << 16  # what a pod's exec stream carries at a time
# Conditions a simulated rollout can be held in ("wait_for_rollout": "image_pull", say): the
# pods and claims a real API server shows for each, read through the real driver's words
# (causes.py) while the rollout waits out its timeout, then failing as the real one does.
HOLDUPS = frozenset({"storage_pending", "unschedulable", "image_pull", "crash_loop"})
FAULT_KINDS = frozenset({"error", "hang", "transient"}) | HOLDUPS
# What the WordPress image's entrypoint prints, at the end, when its database will not answer.
CRASH_LAST_LINE = "MySQL Connection Error: (2002) Connection refused"
SCHEDULER_NO_ROOM = (
    "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
    "3 No preemption victims found for incoming pod."
)
# What a simulated dump says it is: never mistaken for (or loaded as) mariadb-dump's SQL.
DUMP_FORMAT = "woostore-simulated-database/1"
# WordPress's state keys that are the pods' rather than the database's, and the mail it sent
# (gone out): a dump leaves them out, and a restore keeps them.
_POD_STATE = ("pods_ready", "pods_started_from", "url_scheme", "versions", "cron_interval", "mail")
_SIDE_FILES = ("-wal", "-shm")  # SQLite's write-ahead log and its index, next to the database
_SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (name TEXT PRIMARY KEY, labels TEXT NOT NULL,
    phase TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (namespace TEXT NOT NULL, kind TEXT NOT NULL,
    name TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (namespace, kind, name));
CREATE TABLE IF NOT EXISTS releases (namespace TEXT NOT NULL, name TEXT NOT NULL,
    status TEXT NOT NULL, revision INTEGER NOT NULL, PRIMARY KEY (namespace, name));
CREATE TABLE IF NOT EXISTS revisions (namespace TEXT NOT NULL, name TEXT NOT NULL,
    revision INTEGER NOT NULL, chart_version TEXT NOT NULL, status TEXT NOT NULL,
    manifests TEXT NOT NULL, rolled_back_to INTEGER, PRIMARY KEY (namespace, name, revision));
CREATE TABLE IF NOT EXISTS wordpress (namespace TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faults_fired (namespace TEXT NOT NULL, operation TEXT NOT NULL,
    PRIMARY KEY (namespace, operation));
CREATE TABLE IF NOT EXISTS orders_placed (namespace TEXT PRIMARY KEY, placed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cron (namespace TEXT PRIMARY KEY, schedule TEXT NOT NULL,
    first_round REAL NOT NULL, last_round REAL);
CREATE TABLE IF NOT EXISTS events (namespace TEXT NOT NULL, object TEXT NOT NULL,
    reason TEXT NOT NULL, message TEXT NOT NULL, count INTEGER NOT NULL,
    first_time REAL NOT NULL, last_time REAL NOT NULL,
    PRIMARY KEY (namespace, object, reason, message));
"""


def _add_rolled_back_to(db: sqlite3.Connection) -> None:
    """Revisions gained ``rolled_back_to`` after state files were written without it: such a
    file (``make run``'s data folder) gets the column, its revisions none."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(revisions)")}
    if "rolled_back_to" not in columns:
        try:
            db.execute("ALTER TABLE revisions ADD COLUMN rolled_back_to INTEGER")
        except sqlite3.OperationalError as error:  # another process starting added it first
            if "duplicate column name" not in str(error):
                raise


@contextmanager
def _one_at_a_time(lock_file: Path) -> Iterator[None]:
    """Held by one process at a time: an exclusive lock on ``lock_file``, waited for."""
    descriptor = os.open(lock_file, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # and the lock with it


def _keep_private(state_dir: Path, state_file: Path) -> None:
    """The state holds the stores' Secrets, passwords included (steps read them back, as from
    a real cluster): only this user may read it. The folder is 0700 and the database 0600
    before SQLite writes a byte; SQLite gives its -wal and -shm files the database's mode.
    Files an earlier version left readable to others are narrowed too."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    os.close(os.open(state_file, os.O_CREAT | os.O_WRONLY, 0o600))
    for path in (state_file, *(state_file.with_name(state_file.name + s) for s in _SIDE_FILES)):
        with suppress(FileNotFoundError):
            path.chmod(0o600)


def _fault_cause(operation: str) -> str:
    """What an ``error`` fault gives as its cause, as the real operation might fail: a
    release's pods whose image never pulls, a WP-CLI command's exit status; nothing more for
    the rest (a storefront check said "ImagePullBackOff" too, which misled)."""
    if operation in ("install_release", "rollback_release", "wait_for_rollout"):
        return " (ImagePullBackOff)"
    return " (WP-CLI exited with status 1)" if operation.startswith("wp") else ""


class SimulatedCluster:
    simulated = True

    def __init__(
        self,
        state_dir: Path,
        *,
        helm_binary: str,
        time_scale: float,
        faults: Mapping[str, str] | None = None,
        installation: str = DEFAULT_INSTALLATION,
        store_access: StoreAccess | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.installation = installation
        self.clock = clock  # the wall clock WordPress's schedule runs by
        self.store_access = store_access
        self.state_file = state_dir / "cluster.sqlite3"
        self.uploads_root = state_dir / "uploads"
        _keep_private(state_dir, self.state_file)
        self.helm_binary = helm_binary
        self.time_scale = time_scale
        self.faults = dict(faults or {})
        unknown = {op for op in self.faults if op not in FAULTABLE} | {
            kind for kind in self.faults.values() if kind not in FAULT_KINDS
        }
        if unknown:
            raise ValueError(
                f"unknown simulated faults {sorted(unknown)}: operations are {sorted(FAULTABLE)}, "
                f"faults are {sorted(FAULT_KINDS)}"
            )
        misplaced = {op for op, kind in self.faults.items() if kind in HOLDUPS} - {
            "wait_for_rollout"
        }
        if misplaced:
            raise ValueError(
                f"simulated faults {sorted(misplaced)}: {sorted(HOLDUPS)} hold a rollout, "
                "so only wait_for_rollout takes them"
            )
        self._held: dict[str, str] = {}  # namespace -> the condition its rollout is held in
        self._connections = threading.local()  # sqlite3 connections serve their own thread
        # Several processes share the file, and start together (the provisioner and the
        # reaper): two turning a new file to WAL at once, one was refused at once, "database
        # is locked", whatever the busy timeout (SQLite's way out of a deadlock), and its
        # service exited. They set the file up one at a time.
        with (
            _one_at_a_time(self.state_file.with_name(self.state_file.name + ".setup")),
            closing(sqlite3.connect(self.state_file, timeout=30)) as db,
        ):
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            _add_rolled_back_to(db)

    # -- the Cluster interface -------------------------------------------------------------

    async def ensure_namespace(self, namespace: str, labels: Mapping[str, str]) -> None:
        await self._operate("ensure_namespace", namespace)
        wanted = {**labels, INSTALLATION_LABEL: self.installation}
        with self._db() as db:
            row = db.execute(
                "SELECT phase, labels FROM namespaces WHERE name=?", (namespace,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO namespaces VALUES (?, ?, 'Active')",
                    (namespace, json.dumps(wanted)),
                )
        if row is not None:
            if row[0] == "Terminating":
                raise TransientClusterError(f"namespace {namespace} is still terminating", 5)
            refuse_to_adopt(namespace, wanted, json.loads(row[1]))
        self._bind_store_manager(namespace)

    def _bind_store_manager(self, namespace: str) -> None:
        """The RoleBinding the real driver makes with the namespace (kubernetes.py): the
        provisioner's rights there. Nothing here is refused without it; it is kept so the
        namespace holds what a real one would."""
        if self.store_access is None:
            return
        access = self.store_access
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {
                "name": STORE_ACCESS_BINDING,
                "namespace": namespace,
                "labels": {MANAGED_BY[0]: MANAGED_BY[1], INSTALLATION_LABEL: self.installation},
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": access.role,
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": access.account_name,
                    "namespace": access.account_namespace,
                }
            ],
        }
        with self._db() as db:
            db.execute(
                "INSERT INTO objects VALUES (?, 'RoleBinding', ?, ?) ON CONFLICT DO NOTHING",
                (namespace, STORE_ACCESS_BINDING, json.dumps(binding)),
            )

    async def namespace_exists(self, namespace: str) -> bool:
        with self._db() as db:
            return (
                db.execute("SELECT 1 FROM namespaces WHERE name=?", (namespace,)).fetchone()
                is not None
            )

    async def ensure_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        await self._operate("ensure_secret", namespace)
        self._require_namespace(namespace)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": dict(data),
        }
        with self._db() as db:
            db.execute(
                "INSERT INTO objects VALUES (?, 'Secret', ?, ?) ON CONFLICT DO NOTHING",
                (namespace, name, json.dumps(body)),
            )

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        with self._db() as db:
            row = db.execute(
                "SELECT body FROM objects WHERE namespace=? AND kind='Secret' AND name=?",
                (namespace, name),
            ).fetchone()
        if row is None:
            raise PermanentClusterError(f"secret {namespace}/{name} not found")
        data: dict[str, str] = json.loads(row[0])["stringData"]
        return data

    async def update_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        self._require_namespace(namespace)
        await self._operate("update_secret", namespace)
        with self._db() as db:
            row = db.execute(
                "SELECT body FROM objects WHERE namespace=? AND kind='Secret' AND name=?",
                (namespace, name),
            ).fetchone()
            if row is not None:
                body = json.loads(row[0])
                body["stringData"] = {**body["stringData"], **data}
                db.execute(
                    "UPDATE objects SET body=? WHERE namespace=? AND kind='Secret' AND name=?",
                    (json.dumps(body), namespace, name),
                )
        if row is None:
            raise PermanentClusterError(f"secret {namespace}/{name} not found")

    async def install_release(self, release: Release, timeout: float) -> None:
        self._require_namespace(release.namespace)
        with self._db() as db:
            row = db.execute(
                "SELECT status, revision FROM releases WHERE namespace=? AND name=?",
                (release.namespace, release.name),
            ).fetchone()
            if row and row[0].startswith("pending-"):
                # What a resumable driver must do with Helm: clear a release a crash left pending.
                log.warning("recovering release left pending", release=release.name, status=row[0])
            deployed = db.execute(
                "SELECT manifests FROM revisions WHERE namespace=? AND name=? "
                "AND status='deployed'",
                (release.namespace, release.name),
            ).fetchone()
            revision = (row[1] + 1) if row else 1
            db.execute(
                "INSERT INTO releases VALUES (?, ?, 'pending-install', ?) "
                "ON CONFLICT (namespace, name) DO UPDATE SET status='pending-install', revision=?",
                (release.namespace, release.name, revision, revision),
            )
        manifests = await self._helm_template(release)
        chart = yaml.load((release.chart / "Chart.yaml").read_text(), Loader=yaml.CSafeLoader)
        # An upgrade of a deployed release that changes no workload (only the Ingress, say)
        # restarts no pod: helm has nothing to wait for.
        unchanged = (
            row is not None
            and row[0] == "deployed"
            and deployed is not None
            and _workloads(json.loads(deployed[0])) == _workloads(manifests)
        )
        operation = "upgrade_release_workloads_unchanged" if unchanged else "install_release"
        try:
            await self._operate(operation, release.namespace)
        except PermanentClusterError:
            if deployed is not None:  # an upgrade: helm rolls back by itself, as below
                self._roll_back_failed_upgrade(release, revision, chart["version"], manifests)
            raise
        with self._db() as db:
            self._deploy(db, release.namespace, release.name, revision, chart["version"], manifests)

    def _roll_back_failed_upgrade(
        self, release: Release, revision: int, chart_version: str, manifests: list[dict[str, Any]]
    ) -> None:
        """What ``helm upgrade --rollback-on-failure`` leaves of an upgrade that failed: its
        revision, failed, and a new one deploying the revision that was deployed (helm's
        rollback). The history a rollback chooses from then holds a failed revision.
        (A transient fault stands for an API error before helm changed anything.)"""
        with self._db() as db:
            previous = db.execute(
                "SELECT chart_version, manifests, revision FROM revisions "
                "WHERE namespace=? AND name=? AND status='deployed'",
                (release.namespace, release.name),
            ).fetchone()
            db.execute(
                "INSERT INTO revisions (namespace, name, revision, chart_version, status, "
                "manifests) VALUES (?, ?, ?, ?, 'failed', ?)",
                (release.namespace, release.name, revision, chart_version, json.dumps(manifests)),
            )
            db.execute(
                "UPDATE releases SET revision=? WHERE namespace=? AND name=?",
                (revision + 1, release.namespace, release.name),
            )
            self._deploy(
                db, release.namespace, release.name, revision + 1, previous[0],
                json.loads(previous[1]), rolled_back_to=previous[2],
            )  # fmt: skip

    async def release_history(self, namespace: str, name: str) -> list[ReleaseRevision]:
        with self._db() as db:
            rows = db.execute(
                "SELECT revision, chart_version, status, rolled_back_to FROM revisions "
                "WHERE namespace=? AND name=? ORDER BY revision",
                (namespace, name),
            ).fetchall()
        return [ReleaseRevision(*row) for row in rows]

    async def rollback_release(
        self,
        namespace: str,
        name: str,
        revision: int,
        timeout: float,
    ) -> None:
        self._require_namespace(namespace)
        with self._db() as db:
            row = db.execute(
                "SELECT chart_version, manifests FROM revisions "
                "WHERE namespace=? AND name=? AND revision=?",
                (namespace, name, revision),
            ).fetchone()
        if row is None:
            raise PermanentClusterError(f"release {name} has no revision {revision}")
        await self._operate("rollback_release", namespace)
        with self._db() as db:
            latest = db.execute(
                "SELECT max(revision) FROM revisions WHERE namespace=? AND name=?",
                (namespace, name),
            ).fetchone()[0]
            db.execute(
                "UPDATE releases SET revision=? WHERE namespace=? AND name=?",
                (latest + 1, namespace, name),
            )
            self._deploy(
                db, namespace, name, latest + 1, row[0], json.loads(row[1]),
                rolled_back_to=revision,
            )  # fmt: skip

    async def wait_for_rollout(self, namespace: str, timeout: float) -> None:
        workloads = _workloads(self._objects(namespace, WORKLOAD_KINDS))
        if not workloads:
            raise PermanentClusterError(
                f"no workloads in namespace {namespace}: was the chart installed?"
            )
        # Ready pods started from these very workloads stay as they are; any change to a
        # workload (its pod template, its image) replaces its pods, which takes the full time.
        started_from = hashlib.sha256(json.dumps(workloads, sort_keys=True).encode()).hexdigest()
        running = self._wordpress(namespace)
        unchanged = bool(running.get("pods_ready")) and running.get("pods_started_from") == (
            started_from
        )
        held = self.faults.get("wait_for_rollout")
        if held in HOLDUPS:
            await self._hold_rollout(namespace, held, timeout)
        await self._operate(
            "wait_for_rollout_workloads_unchanged" if unchanged else "wait_for_rollout", namespace
        )
        if not unchanged:
            self._play_cron(namespace)  # the old pods' rounds, until they were replaced
            self._restart_cron(namespace)
        with self._wordpress_state(namespace) as state:
            state["pods_ready"] = True
            state["pods_started_from"] = started_from
            # What the WordPress pod reads from its environment when it starts.
            state["url_scheme"] = _url_scheme(workloads)
            # What WordPress and WooCommerce the pod runs: the image's tag names both.
            state["versions"] = _image_versions(workloads)
            # How often its cron container runs WordPress's due events; None without one.
            state["cron_interval"] = _cron_interval(workloads)
            # The image's entrypoint makes the store's keys and salts on its first start.
            state.setdefault("salts", secrets.token_hex(32))

    async def waiting_cause(self, namespace: str) -> str | None:
        held = self._held.get(namespace)
        holdup = None if held is None else self._holdup(namespace, held)
        return None if holdup is None else _in_words(holdup)

    async def _hold_rollout(self, namespace: str, condition: str, timeout: float) -> None:
        """Wait out the rollout's ``timeout`` held in ``condition``, then fail as the real
        driver does: for good on a container that cannot start, for now on capacity or
        storage (either may come)."""
        log.warning("simulated fault: rollout held", condition=condition, namespace=namespace)
        self._held[namespace] = condition
        try:
            await asyncio.sleep(timeout)
        finally:
            del self._held[namespace]
        holdup = self._holdup(namespace, condition)
        cause = None if holdup is None else _in_words(holdup)
        message = f"{cause} (rollout in {namespace} not ready after {timeout:g}s)"
        if holdup is not None and holdup.reason in PERMANENT_REASONS:
            raise PermanentClusterError(message)
        raise TransientClusterError(message, 10)

    def _holdup(self, namespace: str, condition: str) -> Holdup | None:
        pods, claims = self._held_pods(namespace, condition)
        return holdup_of(pods, claims)

    def _held_pods(self, namespace: str, condition: str) -> tuple[list[Pod], list[str]]:
        """The WordPress pod and the claims as the API server shows them in ``condition``."""
        [deployment] = self._objects(namespace, ("Deployment",))
        name = deployment["metadata"]["name"]
        image = next(
            c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]
            if c["name"] == "wordpress"
        )  # fmt: skip
        pod = f"{name}-5c9d8b7f4-x2k9q"
        claims: list[str] = []
        unschedulable = None
        waiting: tuple[str | None, str | None] = ("ContainerCreating", None)
        if condition == "storage_pending":
            claims = [
                o["metadata"]["name"] for o in self._objects(namespace, ("PersistentVolumeClaim",))
            ]
            unschedulable = (
                "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."
            )
        elif condition == "unschedulable":
            unschedulable = SCHEDULER_NO_ROOM
        elif condition == "image_pull":
            waiting = ("ImagePullBackOff", f'Back-off pulling image "{image}"')
        else:  # crash_loop
            waiting = (
                "CrashLoopBackOff",
                f"back-off 40s restarting failed container=wordpress pod={pod}",
            )
        container = ContainerState("wordpress", False, *waiting, image=image)
        shown = Pod(pod, phase="Pending", ready=False, unschedulable=unschedulable,
                    containers=() if unschedulable else (container,))  # fmt: skip
        return [shown], claims

    async def wp(self, namespace: str, args: Sequence[str], stdin: str | None = None) -> WpResult:
        if not self._wordpress(namespace).get("pods_ready"):
            raise TransientClusterError(f"no ready WordPress pod in {namespace}", 5)
        words = list(args)
        await self._operate(_wp_operation(words), namespace)
        with self._db() as db:  # one transaction: the cron container's rounds, then the command
            state = _read_wordpress(db, namespace)
            schedule = self._play_cron_in(db, namespace, state)
            if words[:3] == ["cron", "event", "list"]:
                return _cron_event_list(state, schedule, self.clock())
            result = self._interpret_wp(state, words, stdin)
            _write_wordpress(db, namespace, state)
        return result

    async def check_storefront(self, namespace: str, url: str) -> StorefrontCheck:
        """As the real driver's (storefront.py): a cash-on-delivery order placed through the
        storefront, then deleted with WP-CLI. An order whose deletion fails (a fault on
        "wp wc shop_order delete", or on "wp") stays in the store, as it would."""
        await self._operate("check_storefront", namespace)
        wp = self._wordpress(namespace)
        if not (wp.get("pods_ready") and wp.get("installed")):
            return StorefrontCheck(status_code=503, products=0, order_placed=False)
        if "woocommerce" not in wp.get("plugins", []):
            return StorefrontCheck(status_code=200, products=0, order_placed=False)
        products = len(wp.get("products", []))
        if not (products and wp.get("gateways", {}).get("cod", False)):
            return StorefrontCheck(status_code=200, products=products, order_placed=False)
        order_id = self.place_order(namespace)
        delete = [
            "wc",
            "shop_order",
            "delete",
            str(order_id),
            "--force=true",
            f"--user={ADMIN_USER}",
        ]
        await self._operate(_wp_operation(delete), namespace)
        with self._wordpress_state(namespace) as state:
            deleted = self._interpret_wp(state, delete, None)
        detail = f"test order {order_id} placed and deleted"
        if not deleted.ok:
            detail = f"test order {order_id} could not be deleted: {deleted.stdout[:200]}"
        return StorefrontCheck(status_code=200, products=products, order_placed=True, detail=detail)

    def place_order(self, namespace: str, customer_id: int = 0) -> int:
        """A cash-on-delivery order through the storefront, by a guest or by the customer
        ``customer_id`` (``wp wc customer create``): a new order in the store (its id the next
        of WooCommerce's), counted in ``orders_placed``. The storefront check places one as a
        guest; tests place more, as the store's customers would."""
        customers = self._wordpress(namespace).get("customers", [])
        if customer_id and customer_id not in {c["id"] for c in customers}:
            raise ValueError(f"no customer {customer_id} in {namespace}")
        with self._db() as db:
            placed = db.execute(
                "INSERT INTO orders_placed VALUES (?, 1) ON CONFLICT (namespace) "
                "DO UPDATE SET placed=placed + 1 RETURNING placed",
                (namespace,),
            ).fetchone()[0]
        order_id = FIRST_ORDER_ID + placed - 1
        with self._wordpress_state(namespace) as state:
            state.setdefault("orders", []).append(
                {"id": order_id, "payment_method": "cod", "status": "processing",
                 "customer_id": customer_id}
            )  # fmt: skip
        return int(order_id)

    async def dump_database(self, namespace: str) -> AsyncIterator[bytes]:
        self._require_namespace(namespace)
        await self._operate("dump_database", namespace)
        with self._db() as db:  # one transaction: consistent, as --single-transaction is
            row = db.execute("SELECT state FROM wordpress WHERE namespace=?", (namespace,))
            found = row.fetchone()
            placed = db.execute(
                "SELECT placed FROM orders_placed WHERE namespace=?", (namespace,)
            ).fetchone()
        state = json.loads(found[0]) if found else {}
        database = {key: value for key, value in state.items() if key not in _POD_STATE}
        dump = json.dumps(
            {
                "format": DUMP_FORMAT,
                "wordpress": database,
                "orders_placed": placed[0] if placed else 0,
            }
        ).encode()
        for start in range(0, len(dump), CHUNK_BYTES):
            yield dump[start : start + CHUNK_BYTES]

    async def load_database(self, namespace: str, dump: AsyncIterable[bytes]) -> None:
        self._require_namespace(namespace)
        body = b"".join([chunk async for chunk in dump])
        try:
            loaded = json.loads(body)
            database, placed = loaded["wordpress"], int(loaded["orders_placed"])
            if loaded["format"] != DUMP_FORMAT or not isinstance(database, dict):
                raise ValueError(loaded["format"])
        except (ValueError, KeyError, TypeError):
            raise PermanentClusterError(
                "the dump is not one the simulated cluster made: ERROR at line 1"
            ) from None
        await self._operate("load_database", namespace)
        with self._wordpress_state(namespace) as state:
            pods = {key: state[key] for key in _POD_STATE if key in state}
            state.clear()
            state.update(database, **pods)
        with self._db() as db:
            db.execute(
                "INSERT INTO orders_placed VALUES (?, ?) "
                "ON CONFLICT (namespace) DO UPDATE SET placed=excluded.placed",
                (namespace, placed),
            )

    async def archive_uploads(self, namespace: str) -> AsyncIterator[bytes]:
        self._require_namespace(namespace)
        await self._operate("archive_uploads", namespace)
        folder = self.uploads(namespace)
        tar = await asyncio.create_subprocess_exec(
            "tar", "-C", str(folder), "-cf", "-", ".",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert tar.stdout is not None  # piped
            assert tar.stderr is not None
            while chunk := await tar.stdout.read(CHUNK_BYTES):
                yield chunk
            said = await tar.stderr.read()
            if await tar.wait() != 0:
                raise PermanentClusterError(f"tar failed in {namespace}: {said.decode()[-500:]}")
        finally:
            if tar.returncode is None:
                with suppress(ProcessLookupError):
                    tar.kill()
                await tar.wait()

    async def replace_uploads(self, namespace: str, archive: AsyncIterable[bytes]) -> None:
        self._require_namespace(namespace)
        await self._operate("replace_uploads", namespace)
        folder = self.uploads(namespace)
        for entry in list(folder.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        tar = await asyncio.create_subprocess_exec(
            "tar", "-C", str(folder), "-xf", "-",
            stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert tar.stdin is not None  # piped
        assert tar.stderr is not None
        try:
            async for chunk in archive:
                tar.stdin.write(chunk)
                await tar.stdin.drain()
            tar.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # tar stopped reading: its exit status says why
        except BaseException:
            tar.kill()  # the archive broke off: tar must not take what came for all of it
            await tar.wait()
            raise
        said = await tar.stderr.read()
        code = await tar.wait()
        if code != 0:
            raise PermanentClusterError(f"tar failed in {namespace}: {said.decode()[-500:]}")

    async def uninstall_release(self, namespace: str, name: str) -> None:
        with self._db() as db:
            exists = db.execute(
                "SELECT 1 FROM releases WHERE namespace=? AND name=?", (namespace, name)
            ).fetchone()
        if not exists:
            return
        await self._operate("uninstall_release", namespace)
        with self._db() as db:
            db.execute("DELETE FROM releases WHERE namespace=? AND name=?", (namespace, name))
            db.execute("DELETE FROM revisions WHERE namespace=? AND name=?", (namespace, name))
            # Helm removes what it rendered; the Secret and the RoleBinding made outside the
            # chart stay until the namespace goes, as on a real cluster.
            db.execute(
                "DELETE FROM objects WHERE namespace=? AND kind NOT IN ('Secret', 'RoleBinding')",
                (namespace,),
            )
        self._play_cron(namespace)  # what the cron container ran until its pod went
        with self._wordpress_state(namespace) as state:
            state["pods_ready"] = False  # the pods went with the release

    async def delete_namespace(self, namespace: str, timeout: float) -> None:
        if not await self.namespace_exists(namespace):
            return
        with self._db() as db:
            db.execute("UPDATE namespaces SET phase='Terminating' WHERE name=?", (namespace,))
        await self._operate("delete_namespace", namespace)
        with self._db() as db:
            for table in ("objects", "releases", "revisions"):
                db.execute(f"DELETE FROM {table} WHERE namespace=?", (namespace,))  # noqa: S608  (fixed table names)
            db.execute("DELETE FROM wordpress WHERE namespace=?", (namespace,))
            db.execute("DELETE FROM faults_fired WHERE namespace=?", (namespace,))
            db.execute("DELETE FROM orders_placed WHERE namespace=?", (namespace,))
            db.execute("DELETE FROM cron WHERE namespace=?", (namespace,))
            db.execute("DELETE FROM events WHERE namespace=?", (namespace,))
            db.execute("DELETE FROM namespaces WHERE name=?", (namespace,))
        shutil.rmtree(self.uploads_root / namespace, ignore_errors=True)  # the volume goes too

    async def managed_namespaces(self) -> dict[str, str]:
        return {
            name: labels[STORE_ID_LABEL]
            for name, labels in self.namespaces().items()
            if is_managed_namespace(name, labels, self.installation)
        }

    # -- inspection, for tests -------------------------------------------------------------

    def namespaces(self) -> dict[str, dict[str, str]]:
        with self._db() as db:
            rows = db.execute("SELECT name, labels FROM namespaces").fetchall()
        return {name: json.loads(labels) for name, labels in rows}

    def orders_placed(self, namespace: str) -> int:
        """How many orders the store has taken, deleted ones included (WooCommerce's order
        numbers go on from there); what is left of them ``wp wc shop_order list`` shows."""
        with self._db() as db:
            row = db.execute(
                "SELECT placed FROM orders_placed WHERE namespace=?", (namespace,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def events(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's events, oldest first, as ``kubectl get events`` lists them: what
        the store's cron container has run by now, a round's message counted as it repeats."""
        with self._db() as db:
            self._play_cron_in(db, namespace, _read_wordpress(db, namespace))
            rows = db.execute(
                "SELECT object, reason, message, count, first_time, last_time FROM events "
                "WHERE namespace=? ORDER BY last_time, message",
                (namespace,),
            ).fetchall()
        return [
            {"type": "Normal", "object": obj, "reason": reason, "message": message,
             "count": count, "first_time": first, "last_time": last}
            for obj, reason, message, count, first, last in rows
        ]  # fmt: skip

    def wordpress_state(self, namespace: str) -> dict[str, Any]:
        """The store's WordPress as the simulation keeps it: URL, title, options, products..."""
        return self._wordpress(namespace)

    def uploads(self, namespace: str) -> Path:
        """The store's uploads volume (``wp-content/uploads``): real files, made on first use."""
        folder = self.uploads_root / namespace
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def manifests(self, namespace: str, kind: str) -> list[dict[str, Any]]:
        """The objects of ``kind`` the namespace holds, as applied."""
        return self._objects(namespace, (kind,))

    def object_count(self, namespace: str) -> int:
        with self._db() as db:
            count: int = db.execute(
                "SELECT count(*) FROM objects WHERE namespace=?", (namespace,)
            ).fetchone()[0]
            return count

    # -- internals -------------------------------------------------------------------------

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # One short transaction per operation, so replicas never hold the file for long.
        connection = self._connection()
        try:  # BEGIN inside: a kept connection must never be left in a transaction
            connection.execute("BEGIN IMMEDIATE")
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection to the state file, opened once: opening one, and syncing
        every commit to the disk, was most of what a simulated operation cost. A commit is
        still safe from a killed process (the write-ahead log is in the page cache); only a
        power cut could lose the newest, which no test makes."""
        connection: sqlite3.Connection | None = getattr(self._connections, "db", None)
        if connection is None:
            connection = sqlite3.connect(self.state_file, timeout=30, isolation_level=None)
            connection.execute("PRAGMA synchronous=NORMAL")
            self._connections.db = connection
        return connection

    async def _operate(self, operation: str, namespace: str) -> None:
        """Take the operation's time, then apply any fault configured for it."""
        fault = self.faults.get(operation)
        if fault is None and operation in FAULTS_COVERING:
            fault = self.faults.get(FAULTS_COVERING[operation])
        if fault is None and operation.startswith("wp"):
            fault = self.faults.get("wp")  # "wp" covers every WP-CLI command
        if fault == "hang":
            log.warning("simulated fault: operation hangs", operation=operation)
            await asyncio.Event().wait()
        seconds = DURATIONS.get(operation, 1.0) * self.time_scale * random.uniform(0.8, 1.2)  # noqa: S311  (jitter, not crypto)
        if seconds:
            await asyncio.sleep(seconds)
        # A quicker install or rollout is still one: it fails as one, and a transient fault
        # fires once per namespace for all of them.
        named = FAULTS_COVERING.get(operation, operation)
        if fault == "error":
            raise PermanentClusterError(f"{named} failed: simulated fault{_fault_cause(named)}")
        if fault == "transient" and self._first_time(namespace, named):
            raise TransientClusterError(f"{named} failed: simulated API server timeout", 0.5)

    @staticmethod
    def _deploy(
        db: sqlite3.Connection,
        namespace: str,
        name: str,
        revision: int,
        chart_version: str,
        manifests: list[dict[str, Any]],
        rolled_back_to: int | None = None,
    ) -> None:
        """Apply ``manifests`` as the release's new deployed revision, as helm does (a
        rollback's: those of revision ``rolled_back_to``)."""
        for manifest in manifests:
            db.execute(
                "INSERT INTO objects VALUES (?, ?, ?, ?) ON CONFLICT (namespace, kind, name) "
                "DO UPDATE SET body=excluded.body",
                (namespace, manifest["kind"], manifest["metadata"]["name"], json.dumps(manifest)),
            )
        db.execute(
            "UPDATE revisions SET status='superseded' WHERE namespace=? AND name=? "
            "AND status='deployed'",
            (namespace, name),
        )
        db.execute(
            "INSERT INTO revisions VALUES (?, ?, ?, ?, 'deployed', ?, ?) "
            "ON CONFLICT (namespace, name, revision) DO UPDATE SET "
            "chart_version=excluded.chart_version, status='deployed', "
            "manifests=excluded.manifests, rolled_back_to=excluded.rolled_back_to",
            (namespace, name, revision, chart_version, json.dumps(manifests), rolled_back_to),
        )
        db.execute(
            "UPDATE releases SET status='deployed' WHERE namespace=? AND name=?",
            (namespace, name),
        )

    def _first_time(self, namespace: str, operation: str) -> bool:
        with self._db() as db:
            inserted = db.execute(
                "INSERT INTO faults_fired VALUES (?, ?) ON CONFLICT DO NOTHING",
                (namespace, operation),
            ).rowcount
        return inserted == 1

    def _require_namespace(self, namespace: str) -> None:
        with self._db() as db:
            row = db.execute("SELECT phase FROM namespaces WHERE name=?", (namespace,)).fetchone()
        if row is None or row[0] != "Active":
            raise PermanentClusterError(f'namespaces "{namespace}" not found')

    def _objects(self, namespace: str, kinds: Sequence[str]) -> list[dict[str, Any]]:
        placeholders = ",".join("?" * len(kinds))
        query = f"SELECT body FROM objects WHERE namespace=? AND kind IN ({placeholders})"  # noqa: S608  (placeholders only)
        with self._db() as db:
            rows = db.execute(query, (namespace, *kinds)).fetchall()
        return [json.loads(row[0]) for row in rows]

    async def _helm_template(self, release: Release) -> list[dict[str, Any]]:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as values:
            # Unescaped: helm's YAML parser refuses the surrogate pairs JSON escapes emoji to.
            json.dump(dict(release.values), values, ensure_ascii=False)
            values.flush()
            process = await asyncio.create_subprocess_exec(
                self.helm_binary, "template", release.name, str(release.chart),
                "--namespace", release.namespace,
                *[arg for path in release.values_files for arg in ("--values", str(path))],
                "--values", values.name,  # last: the store's own values win over profiles
                "--skip-tests",  # a real install keeps test hooks out of the release too
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=child_environment(),
            )  # fmt: skip
            stdout, stderr = await process.communicate()
        if process.returncode != 0:
            raise PermanentClusterError(f"helm template failed: {stderr.decode().strip()}")
        # libyaml's loader: the pure-Python one took most of the simulator's CPU per store.
        return [doc for doc in yaml.load_all(stdout, Loader=yaml.CSafeLoader) if doc]

    def _play_cron(self, namespace: str) -> None:
        """Play the rounds the store's cron container has begun since it was last looked at
        (simulated_cron.py), each that ran something recorded as an event. Nothing runs
        without the container, or before WordPress is installed and its pods are up."""
        with self._db() as db:
            self._play_cron_in(db, namespace, _read_wordpress(db, namespace))

    def _play_cron_in(
        self, db: sqlite3.Connection, namespace: str, wp: dict[str, Any]
    ) -> dict[str, float]:
        """``_play_cron`` in an open transaction, for the store's WordPress state ``wp``;
        returns the schedule as it stands (hook: next run), empty before any round."""
        now = self.clock()  # once the state is ours: a replica that waited reads later
        row = db.execute(
            "SELECT schedule, first_round, last_round FROM cron WHERE namespace=?", (namespace,)
        ).fetchone()
        schedule, first_round, last_round = (
            (json.loads(row[0]), row[1], row[2]) if row else ({}, now, None)
        )
        recurrences = registered(bool(wp.get("installed")), wp.get("plugins", []))
        interval = wp.get("cron_interval")
        if not (wp.get("pods_ready") and recurrences) or interval is None:
            return dict(schedule)
        for hook in recurrences.keys() - schedule.keys():
            schedule[hook] = now  # registered on WordPress's next load, due at once
        rounds, last_round = play(
            schedule, recurrences, first_round=first_round, last_round=last_round,
            interval=interval * self.time_scale, now=now,
        )  # fmt: skip
        db.execute(
            "INSERT INTO cron VALUES (?, ?, ?, ?) ON CONFLICT (namespace) DO UPDATE SET "
            "schedule=excluded.schedule, last_round=excluded.last_round",
            (namespace, json.dumps(schedule), first_round, last_round),
        )
        _record_events(db, namespace, rounds)
        return dict(schedule)

    def _restart_cron(self, namespace: str) -> None:
        """The pod's cron container starts afresh (new pods): its rounds from now on. The
        schedule is WordPress's, in its database, and stays."""
        with self._db() as db:
            db.execute(
                "UPDATE cron SET first_round=?, last_round=NULL WHERE namespace=?",
                (self.clock(), namespace),
            )

    def _wordpress(self, namespace: str) -> dict[str, Any]:
        """The store's WordPress state, read only (``_wordpress_state`` changes it)."""
        with self._db() as db:
            return _read_wordpress(db, namespace)

    @contextmanager
    def _wordpress_state(self, namespace: str) -> Iterator[dict[str, Any]]:
        """Read, change and write a store's WordPress state in one transaction, so replicas
        working at once cannot overwrite each other's changes."""
        with self._db() as db:
            state = _read_wordpress(db, namespace)
            yield state
            _write_wordpress(db, namespace, state)

    @staticmethod
    def _interpret_wp(wp: dict[str, Any], args: list[str], stdin: str | None) -> WpResult:
        """The few WP-CLI commands the recipes use, with WP-CLI's exit codes and rules;
        changes ``wp``, the store's WordPress state, as the command would. What a command
        prints is what the driver hands back: stdout when it succeeds (WP-CLI's warnings go
        to stderr), its "Error: ..." when it fails."""
        flags = {a.split("=", 1)[0]: a.split("=", 1)[-1] for a in args if a.startswith("--")}
        words = [a for a in args if not a.startswith("--")]
        command = " ".join(words[:2])

        if command == "core is-installed":
            return WpResult(0 if wp.get("installed") else 1, "")
        if command == "core install":
            if flags.get("--prompt") != "admin_password" or not stdin:
                return _wp_error("admin password expected on standard input")
            if not wp.get("installed"):
                wp.update(
                    installed=True,
                    url=flags.get("--url"),  # home
                    siteurl=flags.get("--url"),
                    title=flags.get("--title"),
                    admin_email=flags.get("--admin_email"),
                    admin_password_sha256=_password_hash(stdin),
                )
        elif not wp.get("installed"):
            # Commands of plugins too: WordPress loads its plugins only once it is installed.
            return _wp_error("The site you have requested is not installed.")
        elif command == "core version":
            return WpResult(0, wp.get("versions", {}).get("wordpress", ""))
        elif command == "plugin get" and flags.get("--field") == "version":
            if words[2:] != ["woocommerce"] or words[2] not in wp.get("plugins", []):
                return _wp_error(f"The '{words[2]}' plugin could not be found.")
            return WpResult(0, wp.get("versions", {}).get("woocommerce", ""))
        elif command == "plugin is-active":
            return WpResult(0 if words[2] in wp.get("plugins", []) else 1, "")
        elif command == "plugin activate":
            if words[2] != "woocommerce":
                return _wp_error(f"The '{words[2]}' plugin could not be found.")
            wp.setdefault("plugins", [])
            if words[2] not in wp["plugins"]:
                wp["plugins"].append(words[2])
        elif words[:1] == ["option"]:
            return _wp_option(wp, words)
        elif words[:1] == ["search-replace"]:
            return _wp_search_replace(wp, words)
        elif command == "user update":
            if words[2:] not in (["admin"], ["1"]):
                return _wp_error(f"Invalid user ID, email or login: '{' '.join(words[2:])}'")
            if (
                not set(flags) - {"--skip-email"}
                or not set(flags) <= {"--prompt", "--user_email", "--skip-email"}
                or flags.get("--prompt", "user_pass") != "user_pass"
            ):
                return _wp_error(
                    "only --prompt=user_pass (the password on stdin), --user_email and"
                    " --skip-email are simulated"
                )
            if "--prompt" in flags and (not stdin or not stdin.strip()):
                return _wp_error("user_pass expected on standard input")
            if "--user_email" in flags:
                before = wp.get("admin_user_email", wp.get("admin_email"))
                if before != flags["--user_email"] and "--skip-email" not in flags:
                    # WordPress tells the address left behind, unless told not to.
                    wp.setdefault("mail", []).append(
                        {"to": before, "subject": "Notice of Email Change"}
                    )
                wp["admin_user_email"] = flags["--user_email"]
            if "--prompt" in flags:
                wp["admin_password_sha256"] = _password_hash(stdin or "")
            return WpResult(0, "Success: Updated user 1.")
        elif command == "site switch-language":
            # WordPress's own en_US is always there; any other must be installed first.
            if len(words) != 3:
                return _wp_error("usage: wp site switch-language <language>")
            if words[2] != "en_US" and words[2] not in wp.get("languages", []):
                return _wp_error(f"Language not installed: {words[2]}")
            wp["language"] = words[2]
        elif command == "woostore shuffle-salts":
            # The image's must-use plugin: new random keys and salts in woostore-salts.php.
            wp["salts"] = secrets.token_hex(32)
            return WpResult(0, f"Success: Shuffled the keys and salts in {SALTS_FILE}.")
        elif command == "woostore personalise":
            return _wp_personalise(wp, args, stdin)
        elif command == "rewrite structure":
            wp["permalinks"] = words[2]
        elif command == "language core" and words[2:3] == ["install"]:
            # Installing a language already there says so and succeeds, as WP-CLI does.
            wp.setdefault("languages", [])
            if words[3] not in wp["languages"]:
                wp["languages"].append(words[3])
            if "--activate" in flags:
                wp["language"] = words[3]
        elif words[:1] == ["wc"]:
            return _wp_woocommerce(wp, words, flags)
        else:
            return _wp_error(f"unsupported command: {shlex.join(words)}")
        return WpResult(0, "Success")


# -- WP-CLI, as the simulation interprets it ---------------------------------------------------

# The URL options: WordPress applies the must-use plugin's scheme to both when they are read.
_URL_OPTIONS = ("home", "siteurl")
SALTS_FILE = "wp-content/woostore-salts.php"


def _wp_error(message: str) -> WpResult:
    return WpResult(1, f"Error: {message}")


def _password_hash(stdin: str) -> str:
    """What the simulation keeps of a password WP-CLI read from stdin (``--prompt``)."""
    return hashlib.sha256(stdin.strip().encode()).hexdigest()


def _in_scheme(url: str, scheme: str | None) -> str:
    """``url`` in ``scheme``, as the image's must-use plugin gives home and siteurl the pod's
    WOOSTORE_URL_SCHEME; the URL as stored without one."""
    if scheme not in ("http", "https"):
        return url
    return re.sub(r"^https?://", f"{scheme}://", url, count=1, flags=re.IGNORECASE)


def _stored_option(wp: dict[str, Any], name: str) -> str | None:
    """An option's value as the database holds it; None for an option that does not exist.
    ``wp core install`` sets home ("url"), siteurl, blogname ("title") and admin_email; the
    others are in the "options" map (a store installed before siteurl was kept apart has
    its home there)."""
    if name == "home":
        return wp.get("url")
    if name == "siteurl":
        return wp.get("siteurl", wp.get("url"))
    if name == "blogname":
        return wp.get("title")
    options: dict[str, str] = wp.get("options", {})
    if name == "admin_email":
        return options.get(name, wp.get("admin_email"))
    return options.get(name)


def _wp_option(wp: dict[str, Any], words: list[str]) -> WpResult:
    """``option get <name>`` and ``option update <name> <value>``."""
    if words[1:2] not in (["get"], ["update"]):
        return _wp_error(f"unsupported command: {shlex.join(words)}")
    if len(words) != (3 if words[1] == "get" else 4):
        return WpResult(1, "usage: wp option get <key> | wp option update <key> <value>")
    action, name = words[1], words[2]
    if action == "get":
        value = _stored_option(wp, name)
        if value is None:
            return _wp_error(f"Could not get '{name}' option. Does it exist?")
        if name in _URL_OPTIONS:  # read through get_option(), the plugin's filter applies
            value = _in_scheme(value, wp.get("url_scheme"))
        return WpResult(0, value)
    _set_option(wp, name, words[3])
    return WpResult(0, "Success")


def _set_option(wp: dict[str, Any], name: str, value: str) -> bool:
    """``update_option()``: whether the value changed. Written either way: the simulation keeps
    admin_email (and siteurl) apart from what ``core install`` set once an update names it."""
    changed = _stored_option(wp, name) != value
    if name == "home":
        wp["url"] = value
    elif name == "siteurl":
        wp["siteurl"] = value
    elif name == "blogname":
        wp["title"] = value
    else:
        wp.setdefault("options", {})[name] = value
    return changed


def _wp_search_replace(wp: dict[str, Any], words: list[str]) -> WpResult:
    """``search-replace <old> <new>``: in every value the simulation keeps as text (the URL
    options, the title, the administrator's email, the other options), case-sensitive, as
    stored in the database (the scheme the plugin applies on reading is not there). Counts
    the values it changed, as WP-CLI counts replacements."""
    if len(words) < 3:
        return WpResult(1, "usage: wp search-replace <old> <new> [<table>...]")
    old, new = words[1], words[2]
    if old == new:
        return WpResult(0, "")  # WP-CLI warns on stderr, skips the operation, and succeeds
    replaced = _replace_everywhere(wp, old, new)
    noun = "replacement" if replaced == 1 else "replacements"
    return WpResult(0, f"Success: Made {replaced} {noun}.")


def _replace_everywhere(wp: dict[str, Any], old: str, new: str) -> int:
    """What ``search-replace`` changes (see there): how many values."""
    replaced = 0

    def replace(holder: dict[str, Any], key: str) -> None:
        nonlocal replaced
        value = holder.get(key)
        if isinstance(value, str) and old in value:
            holder[key] = value.replace(old, new)
            replaced += 1

    for key in ("url", "siteurl", "title", "admin_email"):
        replace(wp, key)
    options = wp.get("options", {})
    for key in list(options):
        replace(options, key)
    return replaced


def _wp_woocommerce(wp: dict[str, Any], words: list[str], flags: dict[str, str]) -> WpResult:
    """The ``wc`` commands WooCommerce adds to WP-CLI (its REST API, as ``--user``)."""
    if "woocommerce" not in wp.get("plugins", []):
        return _wp_error(f"'{words[0]}' is not a registered wp command.")
    if words[1:3] == ["payment_gateway", "update"]:
        wp.setdefault("gateways", {})[words[3]] = flags.get("--enabled") == "true"
    elif words[1:3] == ["product", "list"]:
        products = wp.get("products", [])
        if flags.get("--format") == "json":
            listed = [{"id": p.get("id"), "name": p["name"]} for p in products]
            return WpResult(0, json.dumps(listed))
        return WpResult(0, str(len(products)))
    elif words[1:3] == ["product", "create"]:
        _add_product(wp, flags.get("--name"), flags.get("--regular_price"))
    elif words[1:3] == ["product", "delete"]:
        kept = [p for p in wp.get("products", []) if str(p.get("id")) != words[3]]
        if len(kept) == len(wp.get("products", [])):
            return _wp_error("Invalid ID.")
        wp["products"] = kept
    elif words[1] == "customer":
        return _wp_customer(wp, words, flags)
    elif words[1:3] == ["shop_order", "list"]:
        orders = wp.get("orders", [])
        if flags.get("--format") != "json":
            return WpResult(0, str(len(orders)))
        fields = flags.get("--fields", "id,status,payment_method").split(",")
        return WpResult(0, json.dumps([{f: o[f] for f in fields if f in o} for o in orders]))
    elif words[1:3] == ["shop_order", "delete"]:
        kept = [o for o in wp.get("orders", []) if str(o["id"]) != words[3]]
        if len(kept) == len(wp.get("orders", [])):
            return _wp_error("Invalid ID.")
        if kept:
            wp["orders"] = kept
        else:
            wp.pop("orders")  # a store whose orders are all gone is as one that had none
        return WpResult(0, f"Success: Deleted shop_order {words[3]}.")
    else:
        return _wp_error(f"unsupported wc command: {shlex.join(words)}")
    return WpResult(0, "Success")


def _wp_customer(wp: dict[str, Any], words: list[str], flags: dict[str, str]) -> WpResult:
    """``wc customer create|list|delete``: the store's customers, WordPress users of the
    customer role (user 1 is the administrator), each with an email of their own."""
    customers: list[dict[str, Any]] = wp.get("customers", [])
    action = words[2] if len(words) > 2 else ""
    if action == "create":
        email = flags.get("--email", "")
        if not _EMAIL.fullmatch(email):
            return _wp_error("Invalid email address.")  # woocommerce_rest_invalid_email
        if any(c["email"] == email for c in customers):
            return _wp_error("An account is already registered with your email address.")
        # WordPress never gives a user's id again: the last one made is kept (user 1 is the
        # administrator), and travels with the database.
        wp["last_user_id"] = wp.get("last_user_id", 1) + 1
        customer = {
            "id": wp["last_user_id"],
            "email": email,
            "first_name": flags.get("--first_name", ""),
            "last_name": flags.get("--last_name", ""),
        }
        wp["customers"] = [*customers, customer]
        return WpResult(0, f"Success: Created customer {customer['id']}.")
    if action == "list":
        if flags.get("--format") != "json":
            return WpResult(0, str(len(customers)))
        return WpResult(0, json.dumps(customers))
    if action == "delete" and len(words) > 3:
        if flags.get("--force") != "true":
            return _wp_error("Customers do not support trashing.")
        kept = [c for c in customers if str(c["id"]) != words[3]]
        if len(kept) == len(customers):
            return _wp_error("Invalid resource id.")
        wp["customers"] = kept
        return WpResult(0, f"Success: Deleted customer {words[3]}.")
    return _wp_error(f"unsupported wc command: {shlex.join(words)}")


def _add_product(wp: dict[str, Any], name: str | None, regular_price: str | None) -> None:
    """A new product, with the next id (WordPress's post ids, after the install's own)."""
    products = wp.setdefault("products", [])
    products.append(
        {
            "id": max((p.get("id", 0) for p in products), default=9) + 1,
            "name": name,
            "regular_price": regular_price,
        }
    )


# -- `wp woostore personalise`, the image's must-use plugin (woostore-mu-plugin.php) -----------

# Its options, as WP-CLI hands them to it, all required; and the one it reads from stdin
# (WP-CLI's --prompt=admin_password).
PERSONALISE_OPTIONS = (
    "from-host",
    "to-host",
    "title",
    "admin-email",
    "currency",
    "country",
    "products",
)
PERSONALISE_PASSWORD = "admin_password"  # noqa: S105  (the argument's name, not a password)
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?")
_PRICE = re.compile(r"[0-9]+(\.[0-9]+)?")
# WordPress's is_email(), roughly: a local part, an @, a domain with a dot in it.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


def _wp_personalise(wp: dict[str, Any], args: list[str], stdin: str | None) -> WpResult:
    """A claimed store made its owner's in one run, as the plugin does it: every argument
    checked first (WP-CLI's own checks of the synopsis, then the plugin's), then the address
    rewritten, the settings, the admin's email and password, new salts, no orders, and the
    products --products names. Its messages are the plugin's."""
    positional = [a for a in args if not a.startswith("--")][2:]
    if positional:
        return _wp_error(f"Too many positional arguments: {' '.join(positional)}")
    given: dict[str, str | bool] = {}
    for arg in args:
        if arg.startswith("--"):
            name, has_value, value = arg[2:].partition("=")
            given[name] = value if has_value else True
    prompt = given.pop("prompt", False)
    missing = [name for name in PERSONALISE_OPTIONS if name not in given]
    unknown = [name for name in given if name not in (*PERSONALISE_OPTIONS, PERSONALISE_PASSWORD)]
    if missing or unknown:
        return _wp_error(
            "Parameter errors:"
            + "".join(f"\n missing --{name} parameter" for name in missing)
            + "".join(f"\n unknown --{name} parameter" for name in unknown)
        )
    if _prompted(prompt) and PERSONALISE_PASSWORD not in given and stdin:
        line = stdin.split("\n", 1)[0]  # WP-CLI's prompt reads one line
        if line:
            given[PERSONALISE_PASSWORD] = line
    checked = personalise_input(given, prompt)
    if isinstance(checked, str):
        return _wp_error(checked)
    if not _EMAIL.fullmatch(checked["email"]):
        return _wp_error(f"--admin-email is not an email address: '{checked['email']}'.")
    if "woocommerce" not in wp.get("plugins", []):
        return _wp_error("WooCommerce is not active.")

    source, target = checked["from"], checked["to"]
    replacements = _replace_everywhere(wp, f"//{source}", f"//{target}") if source != target else 0
    settings = sum(
        _set_option(wp, name, value)
        for name, value in (
            ("blogname", checked["title"]),
            ("admin_email", checked["email"]),
            ("woocommerce_currency", checked["currency"]),
            ("woocommerce_default_country", checked["country"]),
            ("woocommerce_coming_soon", "no"),
        )
    )
    wp["admin_user_email"] = checked["email"]
    wp["admin_password_sha256"] = _password_hash(checked["password"])
    wp["salts"] = secrets.token_hex(32)
    orders = len(wp.pop("orders", []))  # a store whose orders are all gone has none
    existing = [
        {"id": p["id"], "name": p["name"], "published": p.get("status", "publish") == "publish"}
        for p in wp.get("products", [])
    ]
    create, delete = products_to_change(checked["products"], existing)
    wp["products"] = [p for p in wp.get("products", []) if p["id"] not in delete]
    for product in create:
        _add_product(wp, product["name"], product["regular_price"])
    counts = {
        "replacements": replacements,
        "settings": settings,
        "orders": orders,
        "created": len(create),
        "deleted": len(delete),
    }
    return WpResult(0, f"Success: {personalise_summary(target, counts)}")


def _prompted(prompt: str | bool) -> bool:
    """Whether WP-CLI's --prompt (a bare --prompt, or the names it reads) reads the password."""
    return prompt is True or PERSONALISE_PASSWORD in str(prompt).split(",")


def personalise_input(given: Mapping[str, str | bool], prompt: str | bool) -> dict[str, Any] | str:
    """The plugin's woostore_personalise_input(): the arguments checked, or the error. ``prompt``
    is WP-CLI's --prompt, False without one."""
    checked: dict[str, Any] = {}
    for key, name in (
        ("from", "from-host"),
        ("to", "to-host"),
        ("title", "title"),
        ("email", "admin-email"),
        ("currency", "currency"),
        ("country", "country"),
        ("products", "products"),
    ):
        value = given.get(name)
        if not isinstance(value, str):
            return f"--{name} needs a value."
        checked[key] = value
    for key, name in (("from", "from-host"), ("to", "to-host")):
        if not _HOST.fullmatch(checked[key]):
            return f"--{name} is not a host name: '{checked[key]}'."
    if not checked["title"].strip():
        return "--title is empty."
    if not re.fullmatch(r"[A-Z]{3}", checked["currency"]):
        return f"--currency is not an ISO 4217 code: '{checked['currency']}'."
    if not re.fullmatch(r"[A-Z]{2}(:[A-Z0-9-]{1,10})?", checked["country"]):
        return (
            "--country is not a country code (DE) or a country and state code (IN:KA): "
            f"'{checked['country']}'."
        )
    products = parse_products(checked["products"])
    if isinstance(products, str):
        return products
    checked["products"] = products
    password = given.get(PERSONALISE_PASSWORD, "")
    if not _prompted(prompt) and password != "":
        return (
            "The admin password goes on standard input (--prompt=admin_password), "
            "never in the arguments."
        )
    if not isinstance(password, str) or not password.strip():
        return "The admin password is expected on standard input (--prompt=admin_password)."
    checked["password"] = password
    return checked


def parse_products(text: str) -> list[dict[str, str]] | str:
    """The plugin's woostore_parse_products(): --products read, or the error."""
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if not isinstance(decoded, list):
        return "--products is not a JSON list of products."
    products: list[dict[str, str]] = []
    names: set[str] = set()
    for number, item in enumerate(decoded, start=1):
        if not isinstance(item, dict):
            return f"--products: product {number} is not a JSON object."
        unknown = sorted(set(item) - {"name", "regular_price"})
        if unknown:
            return f"--products: product {number} has unknown fields: {', '.join(unknown)}."
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            return f"--products: product {number} has no name."
        price = item.get("regular_price")
        if not isinstance(price, str) or not _PRICE.fullmatch(price):
            return f'--products: product {number} has no regular_price such as "12.50".'
        if html.unescape(name) in names:
            return f"--products names '{name}' twice."
        names.add(html.unescape(name))
        products.append({"name": name, "regular_price": price})
    return products


def products_to_change(
    wanted: Sequence[Mapping[str, str]], existing: Sequence[Mapping[str, Any]]
) -> tuple[list[Mapping[str, str]], list[int]]:
    """The plugin's woostoreproducts_to_change(): the wanted products to create, and the ids
    to delete, so that one published product of each wanted name is left (names compared
    with their HTML entities decoded)."""
    names = {html.unescape(product["name"]) for product in wanted}
    kept: set[str] = set()
    delete: list[int] = []
    for product in sorted(existing, key=lambda p: int(p["id"])):
        key = html.unescape(product["name"])
        if product["published"] and key in names and key not in kept:
            kept.add(key)
        else:
            delete.append(int(product["id"]))
    return [p for p in wanted if html.unescape(p["name"]) not in kept], delete


def personalise_summary(host: str, counts: Mapping[str, int]) -> str:
    """The plugin's woostore_personalise_summary(): its Success line, after "Success: "."""

    def counted(count: int, one: str, many: str) -> str:
        return f"{count} {one if count == 1 else many}"

    return (
        f"Personalised the store at {host}: "
        f"{counted(counts['replacements'], 'replacement', 'replacements')}, "
        f"{counted(counts['settings'], 'setting changed', 'settings changed')}, "
        "the admin's email and password set, the keys and salts shuffled, "
        f"{counted(counts['orders'], 'order deleted', 'orders deleted')}, "
        f"{counted(counts['created'], 'product created', 'products created')}, "
        f"{counted(counts['deleted'], 'product deleted', 'products deleted')}."
    )


# -- what the simulation reads from the rendered chart ---------------------------------------


def _workloads(manifests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Deployments and StatefulSets among ``manifests``, in a fixed order: what replaces
    pods when it changes."""
    found = [m for m in manifests if m.get("kind") in WORKLOAD_KINDS]
    return sorted(found, key=lambda m: (m["kind"], m["metadata"]["name"]))


def _url_scheme(workloads: Sequence[dict[str, Any]]) -> str | None:
    """The scheme the WordPress pod gives home and siteurl (WOOSTORE_URL_SCHEME; from a chart
    before it, the scheme of WOOSTORE_SITE_URL, as the image's plugin falls back to)."""
    env: dict[str, str] = {}
    for workload in workloads:
        if workload["kind"] == "Deployment":
            for container in workload["spec"]["template"]["spec"].get("containers", []):
                env |= {e["name"]: e.get("value", "") for e in container.get("env", [])}
    if "WOOSTORE_URL_SCHEME" in env:
        return env["WOOSTORE_URL_SCHEME"]
    return urlsplit(env.get("WOOSTORE_SITE_URL", "")).scheme or None


_IMAGE_TAG = re.compile(r":(?P<wordpress>[0-9.]+)-wc(?P<woocommerce>[0-9.]+)(@|$)")


def _image_versions(workloads: Sequence[dict[str, Any]]) -> dict[str, str]:
    """WordPress's and WooCommerce's versions, from the store image's tag ("7.1.2-wc11.2.0");
    none from an image tagged otherwise (``wp core version`` then prints nothing)."""
    for workload in workloads:
        for container in workload["spec"]["template"]["spec"].get("containers", []):
            if container.get("name") == "wordpress" and (
                found := _IMAGE_TAG.search(container.get("image", ""))
            ):
                return {"wordpress": found["wordpress"], "woocommerce": found["woocommerce"]}
    return {}


def _read_wordpress(db: sqlite3.Connection, namespace: str) -> dict[str, Any]:
    row = db.execute("SELECT state FROM wordpress WHERE namespace=?", (namespace,)).fetchone()
    return json.loads(row[0]) if row else {}


def _write_wordpress(db: sqlite3.Connection, namespace: str, state: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO wordpress VALUES (?, ?) "
        "ON CONFLICT (namespace) DO UPDATE SET state=excluded.state",
        (namespace, json.dumps(state)),
    )


def _cron_event_list(wp: dict[str, Any], schedule: Mapping[str, float], now: float) -> WpResult:
    """``wp cron event list --format=json``: the hooks, when each runs next (GMT) and how
    often, soonest first."""
    if not wp.get("installed"):
        return _wp_error("The site you have requested is not installed.")
    listed = [
        {"hook": hook, "next_run_gmt": _gmt(schedule.get(hook, now)),
         "recurrence": _in_seconds_words(every)}
        for hook, every in registered(True, wp.get("plugins", [])).items()
    ]  # fmt: skip
    listed.sort(key=lambda event: (event["next_run_gmt"], event["hook"]))
    return WpResult(0, json.dumps(listed))


def _cron_interval(workloads: Sequence[dict[str, Any]]) -> float | None:
    """Seconds between the rounds of the WordPress pod's ``cron`` container
    (WOOSTORE_CRON_INTERVAL, as woostore-cron reads it); None when the pod has none."""
    for workload in workloads:
        for container in workload["spec"]["template"]["spec"].get("containers", []):
            if container.get("name") == "cron":
                env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
                return float(env.get("WOOSTORE_CRON_INTERVAL") or 60)
    return None


CRON_EVENT_REASON = "CronEventsRun"
CRON_EVENT_OBJECT = "pod/wordpress (container cron)"
EVENTS_KEPT = 50  # a namespace's newest events; the API server drops old ones too (after 1 h)


def _record_events(db: sqlite3.Connection, namespace: str, rounds: Sequence[Round]) -> None:
    """The rounds as events: the same message again counts into the one before it. Counted
    here first, so a long catch-up (a weekend's rounds) is one write per message."""
    if not rounds:
        return
    seen: dict[str, tuple[int, float, float]] = {}
    for round_ in rounds:
        count, first, _ = seen.get(round_.message, (0, round_.time, round_.time))
        seen[round_.message] = (count + 1, first, round_.time)
    for message, (count, first, last) in seen.items():
        db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (namespace, object, reason, message) "
            "DO UPDATE SET count=count + excluded.count, last_time=excluded.last_time",
            (namespace, CRON_EVENT_OBJECT, CRON_EVENT_REASON, message, count, first, last),
        )
    db.execute(
        "DELETE FROM events WHERE namespace=? AND rowid NOT IN (SELECT rowid FROM events "
        "WHERE namespace=? ORDER BY last_time DESC LIMIT ?)",
        (namespace, namespace, EVENTS_KEPT),
    )


def _gmt(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


def _in_seconds_words(seconds: int) -> str:
    """A recurrence as WP-CLI shows it ("1 minute", "12 hours", "1 day")."""
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}" + ("s" if count != 1 else "")
    return f"{seconds} seconds"


def _wp_operation(words: Sequence[str]) -> str:
    """The name a WP-CLI command takes its time (and its faults) by: the longest of its first
    three words that DURATIONS names ("wp wc product create", "wp search-replace"), else "wp"."""
    for length in (3, 2, 1):
        name = " ".join(["wp", *words[:length]])
        if name in DURATIONS:
            return name
    return "wp"


def _in_words(holdup: Holdup) -> str:
    """The sentence a held rollout's owner reads; a crashing container's last line is fixed."""
    return in_words(holdup, CRASH_LAST_LINE if holdup.reason == CRASH_LOOP else None)
