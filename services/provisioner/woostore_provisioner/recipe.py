"""What it takes to make a store, change it, remove it, and clean up after a failed one:
recipes, each a list of named, idempotent steps, and what follows when a recipe fails.

Each step may run again after a crash (the journal skips finished ones, but a step cut off
half-way runs again), so each one checks before it changes anything. A step returns what it
learned about the store (``Learned``), which is saved with its journal entry.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TypedDict

from prometheus_client import Counter

from woostore_cluster import (
    BIND_SECONDS,
    MANAGED_BY,
    STORE_ID_LABEL,
    Cluster,
    PermanentClusterError,
    Release,
    ReleaseRevision,
    install_seconds,
    rollback_seconds,
    uninstall_seconds,
)
from woostore_shared.backups import (
    MANIFEST,
    BackupCorrupt,
    BackupLocked,
    BackupStorageError,
    Manifest,
    Part,
    Repair,
    StoreBackups,
)
from woostore_shared.events import Phase, WorkingStatus
from woostore_shared.logging import get_logger
from woostore_shared.models import StoreStatus, utcnow
from woostore_shared.secrets import CredentialCipher, generate_password
from woostore_shared.store_settings import StoreSettings

log = get_logger(__name__)

BACKUP_REPAIRS = Counter(
    "woostore_backup_repairs_total",
    "Repairs of a store's backup repository where its work found data damaged, by what they "
    "did: removed damaged data, found it whole, found it locked by other backup work, failed",
    ["result"],
)
for _result in ("removed", "whole", "locked", "failed"):  # each exported from the start, at 0
    BACKUP_REPAIRS.labels(_result)
CREDENTIALS_SECRET = "store-credentials"  # noqa: S105  (the Secret's name, not a secret)
ADMIN_USER = "admin"
RELEASE_NAME = "store"
DELETE_TIMEOUT = 300.0
BACKUP_PART_SECONDS = 6 * 3600.0  # a part streams for as long as its bytes take
# A step's own work around the helm run or the wait it makes: values, reads, journalling.
STEP_MARGIN = 60.0
SAMPLE_PRODUCTS = (
    ("Organic Coffee Beans", "12.50"),
    ("Ceramic Mug", "9.00"),
    ("Cotton Tote Bag", "15.00"),
)
# A store without sample products is still verified with an order: of this product, which
# the verify step adds for the order and removes again.
TEST_PRODUCT = ("WooStore test item", "1.00")


@dataclass(frozen=True)
class TimeLimits:
    """How long a release may take to roll out (helm's --timeout, and the rollout wait:
    WOOSTORE_ROLLOUT_TIMEOUT_SECONDS), and from it how long the steps that run helm or wait
    for a rollout may take: each allows all its helm run may (a failed install's rollback
    included), so no step deadline cuts helm off half-way."""

    rollout: float

    def install(self) -> float:
        return install_seconds(self.rollout) + STEP_MARGIN

    def rollback(self) -> float:
        return rollback_seconds(self.rollout) + STEP_MARGIN

    def wait(self) -> float:
        return self.rollout + STEP_MARGIN


async def _never() -> bool:
    return False


@dataclass
class Damage:
    """Backups found damaged as the work ran, with what was found, and the snapshots a
    repair found without their data (``Repair.snapshots``). The runner marks the backups
    once the recipe ends, however it ends, and forgets the snapshots only then: a backup
    whose snapshots were forgotten before it was recorded damaged would be found by no later
    read or repair, and offered still."""

    backups: dict[uuid.UUID, str] = field(default_factory=dict)
    snapshots: list[str] = field(default_factory=list)


# Every setting a settings change may set: a store's all but how it starts (its products).
ALL_SETTINGS = frozenset(StoreSettings.model_fields) - {"sample_products"}


@dataclass(frozen=True)
class SettingsChanged:
    """A settings change, as recorded: the settings it replaces, which a failed one puts
    back (None: asked for before changes kept them), and the names of those asked for, the
    only ones it sets in the shop (all, for one asked for before they were kept)."""

    before: StoreSettings | None = None
    asked: frozenset[str] = ALL_SETTINGS


@dataclass
class StoreJob:
    """What a step needs to know about the store, and where it leaves what it learned."""

    store_id: str
    name: str
    slug: str
    namespace: str
    host: str
    storefront_url: str
    cluster: Cluster
    chart: Path
    cipher: CredentialCipher
    limits: TimeLimits
    # Values profiles layered under the store's own values (WOOSTORE_STORE_VALUES_FILES).
    settings: StoreSettings
    values_files: tuple[Path, ...] = ()
    rollback_revision: int | None = None  # chosen by the first step of a rollback
    first_revision: int = 1  # the earliest revision a rollback may return to
    # The host the store's content was made with: a claimed store's, the pool's; a copy's,
    # the backed-up store's.
    made_as_host: str = ""
    chart_version: str | None = None  # of the store's release, as last deployed
    # The store's backup repository (a copy's: the backed-up store's, while it is made).
    backups: StoreBackups | None = None
    backup_id: uuid.UUID | None = None  # the backup under way, if any
    # The backup a restore under way returns to, or a copy is made from.
    restore_from: uuid.UUID | None = None
    # A settings change's record (none under way: what it would be, and sets nothing back).
    settings_changed: SettingsChanged = SettingsChanged()
    # Whether the work may repair the store's repository where it finds data damaged, asked
    # as it is about to: the store's own work, while no copy reads the repository (a repair
    # locks it whole, and removes data a copy may be reading).
    may_repair: Callable[[], Awaitable[bool]] = _never
    # What the work found damaged; one for all the recipe's steps.
    damage: Damage = field(default_factory=Damage)

    @property
    def admin_email(self) -> str:
        return self.settings.admin_email or f"{ADMIN_USER}@{self.host}"


class Learned(TypedDict, total=False):
    """Columns of the store row a step found out; saved with the step's journal entry."""

    admin_password_encrypted: str
    chart_version: str
    release_revision: int
    rollback_revision: int
    first_revision: int


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    run: Callable[[StoreJob], Awaitable[Learned | None]]
    # Seconds, or what the platform's time limits allow (TimeLimits.install, say) for a
    # step whose work has a configured limit; longer is a permanent error (the recipe fails).
    timeout: float | Callable[[TimeLimits], float] = 120.0
    # Whether the step waits for the store's pods to run (helm's --wait, the rollout): while
    # it does, the runner asks the cluster why now and then, and progress events say it.
    waits_for_pods: bool = False
    # What puts back what the step changed, where the recipe fails for good once the step
    # has begun (and nothing else returns the store to how it was, as helm's rollback does a
    # release): run by the runner before the failure is recorded, within the step's timeout.
    # It returns what it did, in words added to the failure ("" where it did nothing).
    undo: Callable[[StoreJob], Awaitable[str]] | None = None

    def deadline(self, limits: TimeLimits) -> float:
        return self.timeout(limits) if callable(self.timeout) else self.timeout


class BackupFoundDamaged(Exception):
    """The backup a restore returns to, or a copy is made from, cannot be read back as it was
    stored (``BackupCorrupt``): the work fails for good, and the backup is marked damaged
    (``StoreJob.damage``)."""


# What fails a recipe for good: retrying cannot help (the backup storage's errors are
# permanent for the backup under way: its store's schedule makes the next one).
PERMANENT_ERRORS = (PermanentClusterError, BackupStorageError, BackupFoundDamaged)


class OnFailure(StrEnum):
    """What follows when a recipe fails for good (a permanent error, or retries spent)."""

    # The store is failed, and the removal lane cleans up what it had made (CLEAN_UP).
    FAIL_AND_CLEAN_UP = "fail_and_clean_up"
    # The change ends as failed and the store stays ready, on what helm's
    # --rollback-on-failure restored.
    END_CHANGE_FAILED = "end_change_failed"
    # The backup ends as failed; the store stays ready, as it was.
    END_BACKUP_FAILED = "end_backup_failed"
    # The restore ends as failed; the store stays ready, its safety backup kept.
    END_RESTORE_FAILED = "end_restore_failed"
    # The store claimed from the warm pool is discarded and its owner's made from scratch.
    FALL_BACK_TO_COLD = "fall_back_to_cold"
    # Never: removal is retried for as long as it takes.
    RETRY = "retry"


@dataclass(frozen=True)
class Recipe:
    phase: Phase  # names the journal and the progress events
    status: WorkingStatus  # the store's status while it runs; any other abandons the work
    steps: tuple[Step, ...]
    on_failure: OnFailure
    # Whether the store's step columns follow this recipe's steps. A failed store's clean-up
    # leaves them alone: they tell where the store failed.
    shows_steps: bool = True
    # Whether it is cut short when the store's deletion is asked for, rather than run to its
    # end first: only what the deletion removes anyway may be left half made.
    yields_to_deletion: bool = False


async def create_namespace(job: StoreJob) -> None:
    await job.cluster.ensure_namespace(
        job.namespace,
        {
            MANAGED_BY[0]: MANAGED_BY[1],
            STORE_ID_LABEL: job.store_id,
            "pod-security.kubernetes.io/enforce": "restricted",
        },
    )


async def create_credentials(job: StoreJob) -> Learned:
    await job.cluster.ensure_secret(
        job.namespace,
        CREDENTIALS_SECRET,
        {
            "db-password": generate_password(),
            "db-root-password": generate_password(),
            "admin-password": generate_password(),
        },
    )
    # Read back: after a crash the Secret made by the first attempt is the one that counts.
    secret = await job.cluster.read_secret(job.namespace, CREDENTIALS_SECRET)
    return {"admin_password_encrypted": job.cipher.encrypt(secret["admin-password"])}


async def install_release(job: StoreJob) -> Learned:
    release = Release(
        name=RELEASE_NAME,
        namespace=job.namespace,
        chart=job.chart,
        values={
            "storeId": job.store_id,
            "storeName": job.name,
            "host": job.host,
            "credentialsSecret": CREDENTIALS_SECRET,
        },
        values_files=job.values_files,
    )
    await job.cluster.install_release(release, timeout=job.limits.rollout)
    return await deployed_release(job)


async def deployed_release(job: StoreJob) -> Learned:
    """Which chart version and revision the store now runs."""
    history = await job.cluster.release_history(job.namespace, RELEASE_NAME)
    if not history:
        raise PermanentClusterError(f"release {RELEASE_NAME} is missing after installing it")
    return {"chart_version": history[-1].chart_version, "release_revision": history[-1].revision}


async def choose_rollback_revision(job: StoreJob) -> Learned:
    """The latest good revision before the deployed one that runs something else: one
    deployed once and replaced since (superseded), never one that failed (an upgrade that
    did not come up, which helm rolled back from by itself), nor one whose release the
    deployed revision deploys again (after such a failure, the revision it restored).
    Chosen once and kept in the journal, so a rollback resumed after a crash returns to the
    same revision instead of one further back."""
    history = await job.cluster.release_history(job.namespace, RELEASE_NAME)
    deployed = [r for r in history if r.status == "deployed"]
    if not deployed:
        raise PermanentClusterError("the store's release has no deployed revision to roll back")
    first_deployed = _first_deployed(history)
    earlier = [
        r
        for r in history
        if job.first_revision <= r.revision < deployed[-1].revision
        and r.status == "superseded"
        and first_deployed[r.revision] != first_deployed[deployed[-1].revision]
    ]
    if not earlier:
        raise PermanentClusterError("the store's release has no earlier revision to return to")
    return {"rollback_revision": earlier[-1].revision}


def _first_deployed(history: list[ReleaseRevision]) -> dict[int, int]:
    """For each revision (oldest first), the revision that first deployed what it deploys:
    itself, or for a rollback that of the revision it returned to (helm keeps the latest
    revisions only: one no longer kept is its own)."""
    first: dict[int, int] = {}
    for revision in history:
        back = revision.rolled_back_to
        first[revision.revision] = revision.revision if back is None else first.get(back, back)
    return first


async def rollback_release(job: StoreJob) -> Learned:
    if job.rollback_revision is None:
        raise PermanentClusterError("no revision was chosen to roll back to")
    await job.cluster.rollback_release(
        job.namespace, RELEASE_NAME, job.rollback_revision, timeout=job.limits.rollout
    )
    return await deployed_release(job)


async def wait_for_rollout(job: StoreJob) -> None:
    await job.cluster.wait_for_rollout(job.namespace, timeout=job.limits.rollout)


async def wp(job: StoreJob, *args: str, stdin: str | None = None) -> str:
    """Run WP-CLI; a failed command fails the step (a broken store never shows Ready)."""
    result = await job.cluster.wp(job.namespace, args, stdin=stdin)
    if not result.ok:
        raise PermanentClusterError(f"wp {args[0]} {args[1]} failed: {result.stdout.strip()[:200]}")
    return result.stdout


async def install_wordpress(job: StoreJob) -> None:
    if (await job.cluster.wp(job.namespace, ["core", "is-installed"])).ok:
        return
    secret = await job.cluster.read_secret(job.namespace, CREDENTIALS_SECRET)
    await wp(
        job, "core", "install",
        f"--url={job.storefront_url}", f"--title={job.name}",
        f"--admin_user={ADMIN_USER}", f"--admin_email={job.admin_email}",
        "--skip-email", "--prompt=admin_password",
        stdin=secret["admin-password"] + "\n",
    )  # fmt: skip


async def activate_woocommerce(job: StoreJob) -> None:
    if not (await job.cluster.wp(job.namespace, ["plugin", "is-active", "woocommerce"])).ok:
        await wp(job, "plugin", "activate", "woocommerce")


# Setting an option, a language, a gateway or the permalink structure to what it already is
# changes nothing: the next three steps are idempotent as they stand.
async def configure_store(job: StoreJob) -> None:
    """The owner's settings; and the store open at once (WooCommerce 9.1+ starts new stores
    in "coming soon" mode, which hides the shop from everyone but its admin)."""
    await _set_options(job, ALL_SETTINGS)
    await install_language(job)


async def _set_options(job: StoreJob, asked: frozenset[str]) -> None:
    settings = job.settings
    if "currency" in asked:
        await wp(job, "option", "update", "woocommerce_currency", settings.currency)
    if asked & {"country", "state"}:  # one option holds both: "IN:KA"
        await wp(
            job, "option", "update", "woocommerce_default_country", settings.woocommerce_country
        )
    if "admin_email" in asked:
        await wp(job, "option", "update", "admin_email", job.admin_email)
    await wp(job, "option", "update", "woocommerce_coming_soon", "no")


async def install_language(job: StoreJob) -> None:
    if job.settings.language != "en_US":  # WordPress's own; every other from wordpress.org
        await wp(job, "language", "core", "install", job.settings.language, "--activate")


async def change_settings(job: StoreJob) -> None:
    """A settings change: those asked for, as ``configure_store`` sets them, the admin
    user's email with the site's (WordPress's install set both), and the language made
    active, WordPress's own en_US included (a store made in another returning to it). Those
    not asked for are left as the shop has them: its owner may have changed them in
    WooCommerce since (a change of language set the currency back, a user's review). What is
    likeliest refused goes first, so that a refusal leaves the shop as it was: the email
    (WordPress refuses one another user has), then the language (downloaded from
    wordpress.org), then the options."""
    asked = job.settings_changed.asked
    if "admin_email" in asked:
        await wp(job, "user", "update", ADMIN_USER, f"--user_email={job.admin_email}")
    if "language" in asked and job.settings.language == "en_US":
        await wp(job, "site", "switch-language", "en_US")
    elif "language" in asked:
        await install_language(job)
    await _set_options(job, asked)


async def put_settings_back(job: StoreJob) -> str:
    """The settings a failed settings change replaced, set again as it set them: a change
    that failed part-way (the language refused after the email was set) or at its test order
    left the shop with some or all of the new ones, while the store's record went back."""
    if job.settings_changed.before is None:
        return ""
    await change_settings(replace(job, settings=job.settings_changed.before))
    return "the settings it replaced were put back"


async def enable_cash_on_delivery(job: StoreJob) -> None:
    await wp(
        job, "wc", "payment_gateway", "update", "cod", "--enabled=true", f"--user={ADMIN_USER}"
    )


async def set_permalinks(job: StoreJob) -> None:
    # Pretty permalinks: the Store API's /wp-json/ routes answer only with them.
    await wp(job, "rewrite", "structure", "/%postname%/")


async def _products(job: StoreJob) -> dict[str, int]:
    """The store's products: their ids, by name."""
    listed = await wp(
        job,
        "wc",
        "product",
        "list",
        "--format=json",
        "--fields=id,name",
        "--per_page=100",
        f"--user={ADMIN_USER}",
    )
    return {product["name"]: int(product["id"]) for product in json.loads(listed or "[]")}


async def _create_product(job: StoreJob, name: str, price: str) -> None:
    await wp(
        job, "wc", "product", "create",
        f"--name={name}", f"--regular_price={price}", f"--user={ADMIN_USER}",
    )  # fmt: skip


async def add_sample_products(job: StoreJob) -> None:
    if not job.settings.sample_products:
        return
    existing = await _products(job)
    for name, price in SAMPLE_PRODUCTS:
        if name not in existing:
            await _create_product(job, name, price)


async def verify_storefront(job: StoreJob) -> None:
    """A cash-on-delivery order through the storefront. A store without sample products gets
    a test product for the order, removed again after it: each run adds what it needs, so a
    run cut off half-way and run again still verifies."""
    borrowed = not job.settings.sample_products
    if borrowed and TEST_PRODUCT[0] not in await _products(job):
        await _create_product(job, *TEST_PRODUCT)
    check = await job.cluster.check_storefront(job.namespace, job.storefront_url)
    if check.status_code != 200:
        raise PermanentClusterError(f"storefront answered {check.status_code}")
    expected = 1 if borrowed else len(SAMPLE_PRODUCTS)
    if check.products < expected:
        raise PermanentClusterError(
            f"the Store API lists {check.products} products, expected {expected}"
        )
    if not check.order_placed:
        reason = f": {check.detail}" if check.detail else ""
        raise PermanentClusterError(f"a cash-on-delivery test order could not be placed{reason}")
    if borrowed:
        test_product = (await _products(job))[TEST_PRODUCT[0]]
        await wp(job, "wc", "product", "delete", str(test_product), "--force=true",
                 f"--user={ADMIN_USER}")  # fmt: skip


# -- making a store claimed from the warm pool its owner's ----------------------------------


async def move_to_owners_host(job: StoreJob) -> Learned:
    """The release with the owner's host and name: only its Ingress changes. Its revision is
    the first of the owner's store; a rollback never returns to the pool's before it."""
    learned = await install_release(job)
    return {**learned, "first_revision": learned["release_revision"]}


async def personalise_wordpress(job: StoreJob) -> Learned:
    """Everything WordPress keeps of the pool, made the owner's in one WP-CLI run (each run
    boots WordPress and WooCommerce: one instead of ten is most of a claim's time): links to
    the pool's host moved to the owner's, title, admin email, a fresh admin password (in the
    Secret first, then WordPress, on stdin), fresh keys and salts, the owner's currency and
    country, the pool's verification orders removed, the sample products the owner chose.
    Run again after a crash, it makes another password and sets both: the last run's holds."""
    password = generate_password()
    await job.cluster.update_secret(job.namespace, CREDENTIALS_SECRET, {"admin-password": password})
    products = SAMPLE_PRODUCTS if job.settings.sample_products else ()
    await wp(
        job, "woostore", "personalise",
        f"--from-host={job.made_as_host}", f"--to-host={job.host}",
        f"--title={job.name}", f"--admin-email={job.admin_email}",
        f"--currency={job.settings.currency}", f"--country={job.settings.woocommerce_country}",
        "--products=" + json.dumps([{"name": n, "regular_price": p} for n, p in products]),
        "--prompt=admin_password", stdin=password + "\n",
    )  # fmt: skip
    return {"admin_password_encrypted": job.cipher.encrypt(password)}


async def make_it_the_owners(job: StoreJob) -> Learned:
    """The owner's host on the release and the owner's store in WordPress, side by side: the
    one changes the Ingress, the other the database, and neither waits for the other."""
    moved, personalised = await _together(move_to_owners_host(job), personalise_wordpress(job))
    return {**moved, **personalised}


async def _together(*work: Awaitable[Learned]) -> list[Learned]:
    """Run ``work`` at once; the first failure cancels the rest and is raised as it is."""
    tasks = [asyncio.ensure_future(each) for each in work]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# -- backing a store up ------------------------------------------------------------------

DATABASE_PART = "database.dump"
UPLOADS_PART = "uploads.tar"


def _backup(job: StoreJob) -> tuple[StoreBackups, uuid.UUID]:
    if job.backups is None or job.backup_id is None:
        raise PermanentClusterError("no backup is under way for this store")
    return job.backups, job.backup_id


async def open_backup_repository(job: StoreJob) -> None:
    backups, _ = _backup(job)
    await backups.ensure()


async def check_stored_data(job: StoreJob) -> None:
    """Read back a share of what the store's repository holds (``StoreBackups.spot_check``):
    storage that alters or loses data is found as backups are taken, not first by a restore
    that needs the data. Damage found is repaired now, before this backup stores anything: a
    repair removes whole packs, and what this backup reused from one would go with it."""
    backups, _ = _backup(job)
    if not await backups.spot_check():
        return
    if not await job.may_repair():
        log.warning("stored data found damaged: not repaired while a copy reads the repository")
        return
    await _rid_of_damage(job, backups)


async def back_up_database(job: StoreJob) -> None:
    backups, backup_id = _backup(job)
    await backups.store_part(backup_id, DATABASE_PART, job.cluster.dump_database(job.namespace))


async def back_up_uploads(job: StoreJob) -> None:
    backups, backup_id = _backup(job)
    await backups.store_part(backup_id, UPLOADS_PART, job.cluster.archive_uploads(job.namespace))


async def record_backup(job: StoreJob) -> None:
    """Read every part back whole, and store the manifest of their sizes and checksums (with
    what the store runs) last: only now is the backup complete. A part stored again after a
    crash counts in its latest copy; a manifest stored already is not stored twice.

    A part that reads back damaged reused data restic keeps that was damaged since it was
    stored: every backup of the store fails so until the damaged data is removed. Where the
    work may, it repairs the repository and stores the parts again, once."""
    backups, backup_id = _backup(job)
    stored = await backups.stored_parts(backup_id)
    if MANIFEST in stored:
        return
    try:
        parts = await _read_back(backups, stored)
    except BackupCorrupt as seen:
        if not await job.may_repair():
            raise BackupStorageError(
                f"{seen}; the repository is not repaired while a store is being made from one "
                "of its backups: the first backup once none is repairs it"
            ) from seen
        try:
            await _rid_of_damage(job, backups)
        except BackupStorageError as failed:  # locked: tried again (BackupLocked)
            raise type(failed)(f"{seen}; repairing the repository failed: {failed}") from seen
        await back_up_database(job)
        await back_up_uploads(job)
        parts = await _read_back(backups, await backups.stored_parts(backup_id))
    await backups.store_manifest(
        Manifest(
            backup_id=backup_id,
            store_id=uuid.UUID(job.store_id),
            created_at=utcnow(),
            chart_version=job.chart_version or "",
            wordpress_version=(await wp(job, "core", "version")).strip(),
            woocommerce_version=(
                await wp(job, "plugin", "get", "woocommerce", "--field=version")
            ).strip(),
            parts=parts,
        )
    )


async def _read_back(backups: StoreBackups, stored: dict[str, str]) -> list[Part]:
    """Every part of the backup as the repository gives it back (its latest copy), from
    what ``StoreBackups.stored_parts`` found stored of it."""
    missing = [name for name in (DATABASE_PART, UPLOADS_PART) if name not in stored]
    if missing:
        raise PermanentClusterError(f"the backup lacks {', '.join(missing)}")
    return [await backups.read_back(name, stored[name]) for name in (DATABASE_PART, UPLOADS_PART)]


async def _rid_of_damage(job: StoreJob, backups: StoreBackups) -> Repair:
    """Remove the damaged data from the store's repository (``StoreBackups.repair``): the
    backups that lost some are found damaged."""
    try:
        repair = await backups.repair()
    except BackupStorageError as failed:  # locked: other backup work, tried again later
        BACKUP_REPAIRS.labels("locked" if isinstance(failed, BackupLocked) else "failed").inc()
        raise
    BACKUP_REPAIRS.labels("removed" if repair.removed else "whole").inc()
    for backup_id, lost in repair.lost.items():
        job.damage.backups.setdefault(backup_id, lost)
    job.damage.snapshots.extend(repair.snapshots)
    return repair


async def back_up_as_it_is(job: StoreJob) -> None:
    """The backup of a store about to be upgraded, rolled back or restored: every step of a
    backup, in one. The change fails if it cannot be made: nothing changes unsaved."""
    await open_backup_repository(job)
    await back_up_database(job)
    await back_up_uploads(job)
    await record_backup(job)


@asynccontextmanager
async def _restored_backup(job: StoreJob) -> AsyncIterator[tuple[StoreBackups, Manifest]]:
    """The backup a restore returns the store to (or a copy is made from): its repository and
    manifest, while it is read."""
    if job.backups is None or job.restore_from is None:
        raise PermanentClusterError("no restore is under way for this store")
    try:
        manifest = await job.backups.manifest(job.restore_from)
        if manifest is None:  # a complete backup's: gone from the repository since
            job.damage.backups[job.restore_from] = "its manifest is gone from the repository"
            raise BackupFoundDamaged(f"backup {job.restore_from} has no manifest: it is not whole")
        yield job.backups, manifest
    except BackupCorrupt as seen:
        # Marked for good only if found so again, read afresh (StoreBackups.damage).
        found = await job.backups.uncached().damage(job.restore_from)
        if found is None:
            raise BackupStorageError(
                f"{seen}; read whole again just after, so not damaged: the storage or the "
                "network may have failed for a moment"
            ) from seen
        job.damage.backups[job.restore_from] = found
        said = f"the backup is damaged: {found}"
        if await job.may_repair():
            try:
                if (await _rid_of_damage(job, job.backups)).lost:
                    said += "; the damaged data is removed from the store's repository, and "
                    said += "its next backup stores that data again"
            except BackupStorageError as failed:
                said += f"; repairing the store's repository failed: {failed}"
        raise BackupFoundDamaged(said) from seen


def _part(manifest: Manifest, name: str) -> Part:
    for part in manifest.parts:
        if part.name == name:
            return part
    raise PermanentClusterError(f"backup {manifest.backup_id} has no {name}")


async def check_backup(job: StoreJob) -> None:
    """Every part read back against its manifest before anything changes: a backup that does
    not match is refused, and the store stays as it is."""
    async with _restored_backup(job) as (backups, manifest):
        await backups.verify(manifest)


async def restore_database(job: StoreJob) -> None:
    async with _restored_backup(job) as (backups, manifest):
        dump = backups.read_part(_part(manifest, DATABASE_PART))
        await job.cluster.load_database(job.namespace, dump)


async def restore_uploads(job: StoreJob) -> None:
    async with _restored_backup(job) as (backups, manifest):
        archive = backups.read_part(_part(manifest, UPLOADS_PART))
        await job.cluster.replace_uploads(job.namespace, archive)


async def keep_admin_password(job: StoreJob) -> None:
    """The admin's password as the store's Secret (and its owner) knows it, whatever the
    restored database held."""
    secret = await job.cluster.read_secret(job.namespace, CREDENTIALS_SECRET)
    await wp(job, "user", "update", ADMIN_USER, "--prompt=user_pass",
             stdin=secret["admin-password"] + "\n")  # fmt: skip


async def move_to_own_address(job: StoreJob) -> None:
    """A copy's links moved from the backed-up store's host to its own (as a claim moves a
    pooled store's), its own name as the site's title, and its own admin email, the site's
    and the admin's: the backed-up store's (admin@ its host, by default) had its new-order
    mail and password resets go to that store's address (a user's review)."""
    await wp(job, "search-replace", f"//{job.made_as_host}", f"//{job.host}",
             "--all-tables", "--skip-columns=guid", "--format=count")  # fmt: skip
    await wp(job, "option", "update", "blogname", job.name)
    # Without WordPress's notice of the change, which would go to the backed-up store.
    await wp(job, "user", "update", ADMIN_USER, f"--user_email={job.admin_email}", "--skip-email")
    await wp(job, "option", "update", "admin_email", job.admin_email)


async def delete_backups(job: StoreJob) -> None:
    if job.backups is not None:  # a store with no repository has no backups to delete
        await job.backups.forget_all()


async def uninstall_release(job: StoreJob) -> None:
    await job.cluster.uninstall_release(job.namespace, RELEASE_NAME)


async def delete_namespace(job: StoreJob) -> None:
    await job.cluster.delete_namespace(job.namespace, timeout=DELETE_TIMEOUT)


PROVISION = Recipe(
    "provision",
    StoreStatus.PROVISIONING,
    on_failure=OnFailure.FAIL_AND_CLEAN_UP,
    steps=(
        Step("namespace", "Creating the namespace", create_namespace),
        Step("credentials", "Generating credentials", create_credentials),
        Step(
            "helm_release",
            "Installing the Helm release",
            install_release,
            TimeLimits.install,
            waits_for_pods=True,
        ),
        Step(
            "rollout",
            "Starting WordPress and MariaDB",
            wait_for_rollout,
            TimeLimits.wait,
            waits_for_pods=True,
        ),
        Step("wordpress_install", "Installing WordPress", install_wordpress),
        Step("woocommerce", "Activating WooCommerce", activate_woocommerce),
        Step("store_settings", "Setting currency and country", configure_store),
        Step("cash_on_delivery", "Enabling cash on delivery", enable_cash_on_delivery),
        Step("sample_products", "Adding sample products", add_sample_products),
        Step("permalinks", "Setting permalinks", set_permalinks),
        Step("verify", "Placing a test order", verify_storefront),
    ),
)

# A new store made as a copy of another store of its tenant, from one of that store's backups
# (read from that store's repository): a release of its own, then the backup checked whole,
# its database and uploads loaded, its links moved to its own host, its own admin password,
# and a test order. The steps up to the rollout are PROVISION's; the rest are its own, so it
# is a phase of its own: its steps' times are not mistaken for a cold store's.
CLONE = Recipe(
    "clone",
    StoreStatus.PROVISIONING,
    on_failure=OnFailure.FAIL_AND_CLEAN_UP,
    steps=(
        *PROVISION.steps[:4],
        Step("check_backup", "Checking the backup", check_backup, BACKUP_PART_SECONDS),
        Step("database", "Copying the database", restore_database, BACKUP_PART_SECONDS),
        Step("uploads", "Copying the uploads", restore_uploads, BACKUP_PART_SECONDS),
        Step("address", "Moving the copy to its own address", move_to_own_address),
        Step("admin_password", "Setting the admin's password", keep_admin_password),
        Step("verify", "Placing a test order", verify_storefront),
    ),
)

# A store claimed from the warm pool, made its owner's: its address, name, password, keys and
# settings, and verified again. Its chart already is the platform's (a claim checks it), so the
# release changes only its host: the Ingress moves and no pod restarts (helm waits for the
# release as it installs it; no rollout step is needed).
PERSONALISE = Recipe(
    "personalise",
    StoreStatus.PROVISIONING,
    on_failure=OnFailure.FALL_BACK_TO_COLD,
    steps=(
        Step("owner", "Making the store its owner's", make_it_the_owners, TimeLimits.install),
        Step("language", "Installing the store's language", install_language),
        Step("verify", "Placing a test order", verify_storefront),
    ),
)

# An idle pooled store verified again, so a store that broke while it waited is never handed
# out: it fails (and is cleaned up and replaced) instead.
REVERIFY = Recipe(
    "reverify",
    StoreStatus.PROVISIONING,
    on_failure=OnFailure.FAIL_AND_CLEAN_UP,
    steps=(Step("verify", "Placing a test order", verify_storefront),),
)

# What every change does first: a backup of the store as it is, which the change fails without.
BACKED_UP_FIRST = Step(
    "backup", "Backing up the store first", back_up_as_it_is, BACKUP_PART_SECONDS
)

# A ready store moved to the platform's current chart, backed up first; helm rolls back by
# itself if the upgrade does not come up (--rollback-on-failure), and the store is verified
# again either way.
UPGRADE = Recipe(
    "upgrade",
    StoreStatus.UPDATING,
    on_failure=OnFailure.END_CHANGE_FAILED,
    steps=(
        BACKED_UP_FIRST,
        Step(
            "helm_upgrade",
            "Upgrading the Helm release",
            install_release,
            TimeLimits.install,
            waits_for_pods=True,
        ),
        Step(
            "rollout",
            "Rolling out WordPress and MariaDB",
            wait_for_rollout,
            TimeLimits.wait,
            waits_for_pods=True,
        ),
        Step("verify", "Placing a test order", verify_storefront),
    ),
)

ROLLBACK = Recipe(
    "rollback",
    StoreStatus.UPDATING,
    on_failure=OnFailure.END_CHANGE_FAILED,
    steps=(
        Step("choose_revision", "Choosing the revision to return to", choose_rollback_revision),
        BACKED_UP_FIRST,
        Step(
            "helm_rollback",
            "Rolling the Helm release back",
            rollback_release,
            TimeLimits.rollback,
            waits_for_pods=True,
        ),
        Step(
            "rollout",
            "Rolling out WordPress and MariaDB",
            wait_for_rollout,
            TimeLimits.wait,
            waits_for_pods=True,
        ),
        Step("verify", "Placing a test order", verify_storefront),
    ),
)

# A ready store given other settings (its currency, country, language, admin email), backed
# up first; verified again with them. Each setting written is written whole, so a change
# cut off and run again ends the same. Failing once they are being applied, it puts back the
# settings it replaced.
SETTINGS = Recipe(
    "settings",
    StoreStatus.UPDATING,
    on_failure=OnFailure.END_CHANGE_FAILED,
    steps=(
        BACKED_UP_FIRST,
        Step(
            "store_settings", "Applying the new settings", change_settings, undo=put_settings_back
        ),
        Step("verify", "Placing a test order", verify_storefront),
    ),
)

# A copy of the ready store, which keeps serving meanwhile: its database dumped in one
# transaction, its uploads, each streamed into the store's backup repository, then read back
# and recorded. Each part takes as long as its bytes do: no fixed limit suits every store.
# A backup yields to its store's deletion: the deletion removes the store's repository whole,
# a backup half stored and restic's lock with it, so its owner does not wait for a long one.
BACKUP = Recipe(
    "backup",
    StoreStatus.BACKING_UP,
    on_failure=OnFailure.END_BACKUP_FAILED,
    yields_to_deletion=True,
    steps=(
        Step("repository", "Opening the backup repository", open_backup_repository),
        Step("check", "Checking the stored data", check_stored_data, BACKUP_PART_SECONDS),
        Step("database", "Backing up the database", back_up_database, BACKUP_PART_SECONDS),
        Step("uploads", "Backing up the uploads", back_up_uploads, BACKUP_PART_SECONDS),
        Step("manifest", "Checking and recording the backup", record_backup, BACKUP_PART_SECONDS),
    ),
)

# A ready store returned to one of its backups: the backup checked whole first (a damaged one
# changes nothing), the store backed up as it is (the safety backup, what a failed restore
# leaves to return to), its database and uploads replaced, its admin's password kept, and a
# test order placed again. Each step run again after a crash does the same again.
RESTORE = Recipe(
    "restore",
    StoreStatus.RESTORING,
    on_failure=OnFailure.END_RESTORE_FAILED,
    steps=(
        Step("check_backup", "Checking the backup", check_backup, BACKUP_PART_SECONDS),
        Step("safety_backup", "Backing up the store as it is", back_up_as_it_is,
             BACKUP_PART_SECONDS),
        Step("database", "Restoring the database", restore_database, BACKUP_PART_SECONDS),
        Step("uploads", "Restoring the uploads", restore_uploads, BACKUP_PART_SECONDS),
        Step("admin_password", "Keeping the admin's password", keep_admin_password),
        Step("verify", "Placing a test order", verify_storefront),
    ),
)  # fmt: skip

# The steps that back a store up before a change or a restore: failing there, the backup
# was tried, and refused (WooStoreBackupsFailing counts it).
BACKING_UP_FIRST = frozenset(
    step.name for recipe in (UPGRADE, ROLLBACK, SETTINGS, RESTORE) for step in recipe.steps
    if step.run is back_up_as_it_is
)  # fmt: skip

REMOVE_STEPS = (
    # The driver may first wait for its rights in the namespace, then helm for the release.
    Step(
        "helm_uninstall",
        "Uninstalling the Helm release",
        uninstall_release,
        BIND_SECONDS + uninstall_seconds() + STEP_MARGIN,
    ),
    Step(
        "namespace_delete",
        "Deleting the namespace and its volumes",
        delete_namespace,
        DELETE_TIMEOUT + 60,
    ),
)
# A deleted store leaves nothing behind, its backups included. (A failed store's clean-up
# keeps them: it may be retried, or restored.)
DELETE = Recipe(
    "delete",
    StoreStatus.DELETING,
    (*REMOVE_STEPS, Step("backups", "Deleting the store's backups", delete_backups, 3600.0)),
    on_failure=OnFailure.RETRY,
)
# What a failed store made is removed as a deletion would; the store stays failed.
CLEAN_UP = Recipe(
    "clean_up", StoreStatus.FAILED, REMOVE_STEPS, on_failure=OnFailure.RETRY, shows_steps=False
)
CHANGES = {"upgrade": UPGRADE, "rollback": ROLLBACK, "settings": SETTINGS}
