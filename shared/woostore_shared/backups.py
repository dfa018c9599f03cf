"""Where a store's backups are kept: a restic repository of the store's own, in a folder
(the embedded default, under the data directory) or in S3-compatible object storage, chosen
by URL (``s3:https://host/bucket/prefix``, as restic spells it).

restic, from Debian's packages, keeps what it is given deduplicated, compressed and
encrypted, and checks it as it reads it back. A backup is a few **parts** (the database's
dump, the uploads), each read from restic's standard input as it streams, so memory stays
bounded whatever a store's size, then a **manifest** naming every part with its size and
SHA-256. The manifest is stored last, as a snapshot of its own: restic writes a snapshot's
file only once all its data is stored, so a backup with a manifest is complete, and one
without (cut off half-way) is never listed.

Each store's repository has its own password, derived from the platform's secret key and the
store's id: a store's backups can be read only through that store, never another tenant's.
Passwords and S3 credentials reach restic through its environment, never its arguments.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from woostore_shared.logging import get_logger
from woostore_shared.secrets import backup_password

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Config

log = get_logger(__name__)

CHUNK_BYTES = 1 << 16
MANIFEST = "manifest.json"
MANIFEST_TAG = "manifest"
HOST = "woostore"  # every snapshot's host: which pod made it says nothing about the store
NO_REPOSITORY = "unable to open config file"  # what restic says where nothing was backed up
# What restic said that is kept, to look for words in and to log: a crash's first line and a
# failure's last ones, whatever lies between.
_STDERR_KEPT = 4096
_REASON_MAX = 300  # characters of it an error message keeps
RESTIC_STOP_SECONDS = 5.0  # how long restic has to remove its lock once asked to stop
_WHOLE_ID = re.compile(r"\b([0-9a-f]{8})[0-9a-f]{56}\b")  # a blob's or a pack's, in full
# What restic (0.14, the version tested) says as it reads a blob of data it keeps that was
# altered (its authentication fails) or whose pack is gone from the repository although its
# index names it (a folder's "no such file", S3's "key does not exist"; restic retries for
# about 45 s first). Not its index's own errors, which say "ciphertext verification failed"
# too: an index is rebuilt from the packs, whole again (restic rebuild-index).
_DAMAGE = re.compile(
    r"decrypting blob \w+\S* failed: ciphertext verification failed"
    r"|ReadFull\(<data/\w+>\).*(no such file or directory|key does not exist|unexpected EOF)"
    r"|\bid \w+ not found in repository",  # gone with a pack a repair removed (``repair``)
    re.IGNORECASE,
)
# What ``restic check --read-data`` says of a pack whose content is not what it stored (a
# pack is named by its content's SHA-256); a pack cut short loses its header too, and the
# index rebuilt first no longer names it. Then how any check names a tree it finds errors
# under (in a repository of WooStore's, a snapshot's own: each snapshot holds one file read
# from standard input), and each error, indented: data gone from the index is lost, an error
# reading a tree (the network) is not. And what, said by a check, is damage a repair may
# remove (not, say, a snapshot's own file unreadable, which no repair mends).
_ALTERED_PACK = re.compile(r"Pack ID does not match, want ([0-9a-f]{64})")
_TREE_WITH_ERRORS = re.compile(r"^error for tree ([0-9a-f]{8}):$")
_GONE = re.compile(r"not found in (index|repository)")
_DAMAGE_CHECKED = re.compile(
    r"Pack ID does not match|unexpected file size|failed to download"
    r"|ciphertext verification failed|not found in (index|repository)"
)
_ERRORS_FOUND = "repository contains errors"  # a check that ran, and found some
_LOCKED = "repository is already locked"  # by another restic run (or one stopped dead)


class BackupStorageError(Exception):
    """The backup storage could not do what was asked (unreachable, refused, restic missing)."""


class BackupCorrupt(BackupStorageError):
    """What a backup holds cannot be read back as it was stored: a part unlike its manifest,
    or restic finding the data it keeps altered or gone. Reading it again reads the same."""


class BackupLocked(BackupStorageError):
    """Other backup work holds the repository's lock (a repair, a prune; or a restic run
    killed outright, whose lock goes stale in 30 minutes): not now, rather than never."""


@dataclass(frozen=True)
class Repair:
    """What repairing a store's repository did: the packs it removed, their content altered,
    and the backups left without some of their data, each with what it lost, and their
    snapshots that lost it, to forget once those backups are recorded damaged
    (``forget_snapshots``): left, every later check names them, and restic's prune refuses
    to run, so that no deleted backup's data is removed."""

    removed: list[str]
    lost: dict[uuid.UUID, str]
    snapshots: list[str] = field(default_factory=list)


class Part(BaseModel):
    name: str  # the file name it is stored under: "database.sql", "uploads.tar"
    size: int
    sha256: str
    snapshot: str  # restic's snapshot id


class Manifest(BaseModel):
    backup_id: uuid.UUID
    store_id: uuid.UUID
    created_at: datetime
    chart_version: str
    wordpress_version: str
    woocommerce_version: str
    parts: list[Part]

    @property
    def size(self) -> int:
        """Bytes, before compression: what a restore brings back."""
        return sum(part.size for part in self.parts)


def _restic() -> str:
    found = shutil.which("restic")
    if found is None:
        raise BackupStorageError(
            "restic is not installed (`make restic` installs Debian's package)"
        )
    return found


class BackupStorage:
    """Every store's repository under one location."""

    def __init__(
        self,
        location: str,
        *,
        secret_key: str,
        scratch_dir: Path,
        s3_access_key_id: str = "",
        s3_secret_access_key: str = "",
        s3_region: str = "",
        proxy: str = "",
        no_proxy: str = "",
        check_share: str = "0",
    ) -> None:
        """``scratch_dir``: restic's disk, its cache (the repositories' indexes) and its
        temporary files (packs, about 16 MiB each, kept until uploaded), apart from the system's
        temporary folder, which helm shares in a pod. ``proxy``: restic's alone (HTTP_PROXY and
        HTTPS_PROXY), not the process's, whose helm and storefront checks reach the cluster
        directly. ``check_share``: how much of a repository's data ``spot_check`` reads, as
        restic's ``--read-data-subset`` takes it ("10%", "500M"; "0": none)."""
        self.location = location.rstrip("/")
        self._check_share = check_share
        self._secret_key = secret_key
        self._cache_dir = scratch_dir / "cache"
        self._temp_dir = scratch_dir / "tmp"  # made as restic first runs (_started)
        self._s3 = {"AWS_ACCESS_KEY_ID": s3_access_key_id} if s3_access_key_id else {}
        if s3_secret_access_key:
            self._s3["AWS_SECRET_ACCESS_KEY"] = s3_secret_access_key
        if not self._s3 and self.location.startswith("s3:"):
            self._s3 = _workload_identity()
        if s3_region:
            self._s3["AWS_DEFAULT_REGION"] = s3_region
        self._proxy = {"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy} if proxy else {}
        if no_proxy:
            self._proxy["NO_PROXY"] = no_proxy

    def of(self, store_id: uuid.UUID) -> StoreBackups:
        if not self.location:
            return StoreBackups(store_id, None)
        return StoreBackups(
            store_id,
            {
                # What restic needs to run and nothing of this process's own secrets.
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": os.environ.get("HOME", "/"),
                "RESTIC_REPOSITORY": f"{self.location}/stores/{store_id}",
                "RESTIC_PASSWORD": backup_password(self._secret_key, store_id),
                "RESTIC_CACHE_DIR": str(self._cache_dir),
                "TMPDIR": str(self._temp_dir),
                **self._s3,
                **self._proxy,
            },
            check_share=self._check_share,
        )


# How a pod or a machine is given its AWS identity without keys in WooStore's settings: a
# role for its service account (IRSA: a web identity token), or keys the platform's operator
# put in its environment. (EKS Pod Identity's and ECS's credentials endpoint are passed on
# too; restic 0.14, the services image's, predates Pod Identity's token file.)
_AWS_IDENTITY = (
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME",
    "AWS_STS_REGIONAL_ENDPOINTS", "AWS_REGION",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
)  # fmt: skip


def _workload_identity() -> dict[str, str]:
    """The process's own AWS identity, for restic when the settings give no keys. restic
    runs with an environment of its own, so it found none of it and fell back to the node's
    role (or nothing), while a store's deletion, made in this process (obstore), used the
    pod's: two identities for one repository."""
    return {name: os.environ[name] for name in _AWS_IDENTITY if os.environ.get(name)}


class StoreBackups:
    """One store's repository."""

    def __init__(
        self,
        store_id: uuid.UUID,
        environment: dict[str, str] | None,
        *,
        cached: bool = True,
        check_share: str = "0",
    ) -> None:
        self.store_id = store_id
        self._environment = environment  # None: no backup location is set
        self._cached = cached
        self._check_share = check_share  # what spot_check reads (BackupStorage)
        self._manifests: dict[uuid.UUID, Manifest] = {}  # read by ``manifest``

    def uncached(self) -> StoreBackups:
        """The same repository read without restic's cache of it (its indexes and trees), as
        a check of a damage found does."""
        return StoreBackups(
            self.store_id, self._environment, cached=False, check_share=self._check_share
        )

    @property
    def _where(self) -> str:
        """The repository's location, as restic names it ("" with no location set)."""
        return self._environment["RESTIC_REPOSITORY"] if self._environment else ""

    async def ensure(self) -> None:
        """Makes the repository if it is not there yet."""
        if (await self._run("cat", "config")).code == 0:
            return
        made = await self._run("init", "--repository-version", "2")
        if made.code != 0 and "already" not in made.said:  # made meanwhile by another run
            raise await self._failure("make the backup repository", made)

    async def store_part(
        self, backup_id: uuid.UUID, name: str, content: AsyncIterable[bytes]
    ) -> Part:
        """Streams ``content`` into the repository as ``name``; its size and SHA-256 are
        counted on the way."""
        return await self._store(backup_id, name, content)

    async def store_manifest(self, manifest: Manifest) -> None:
        """Stored last: from now on the backup is complete (and listed)."""
        body = manifest.model_dump_json().encode()

        async def content() -> AsyncIterator[bytes]:
            yield body

        await self._store(manifest.backup_id, MANIFEST, content(), MANIFEST_TAG)

    async def stored_parts(self, backup_id: uuid.UUID) -> dict[str, str]:
        """What is stored of ``backup_id`` so far, by name, with the snapshot of each (the
        latest, if a part was stored again after a crash): its parts, and its manifest
        (``MANIFEST``) once it is complete. One listing answers both: each restic run costs
        half a second of CPU to open the repository (its key's derivation)."""
        parts: dict[str, str] = {}
        for snapshot in await self._snapshots(f"backup={backup_id}"):
            parts[snapshot["paths"][0].removeprefix("/")] = snapshot["id"]
        return parts

    async def read_back(self, name: str, snapshot: str) -> Part:
        """The part as the repository gives it back, whole: its size and SHA-256."""
        digest, size = hashlib.sha256(), 0
        async for chunk in self._dump(snapshot, name):
            digest.update(chunk)
            size += len(chunk)
        return Part(name=name, size=size, sha256=digest.hexdigest(), snapshot=snapshot)

    async def manifest(self, backup_id: uuid.UUID) -> Manifest | None:
        """The backup's manifest: None until the backup is complete. Read once by this
        object (one piece of work: a restore's steps each need it), and never changed once
        stored; a part that no longer matches it is found as the part is read."""
        if backup_id in self._manifests:
            return self._manifests[backup_id]
        found = await self._snapshots(f"backup={backup_id}", MANIFEST_TAG)
        if not found:
            return None
        self._manifests[backup_id] = await self._read_manifest(found[0]["id"])
        return self._manifests[backup_id]

    async def manifests(self) -> list[Manifest]:
        """Every complete backup of the store, oldest first."""
        return [await self._read_manifest(s["id"]) for s in await self._snapshots(MANIFEST_TAG)]

    async def read_part(self, part: Part) -> AsyncIterator[bytes]:
        """The part's bytes as stored. Its size and SHA-256 are checked at the end: a part
        that does not match raises ``BackupCorrupt`` after its last chunk, so a restore
        checks every part with ``verify`` before it changes anything."""
        digest, size = hashlib.sha256(), 0
        async for chunk in self._dump(part.snapshot, part.name):
            digest.update(chunk)
            size += len(chunk)
            yield chunk
        if size != part.size or digest.hexdigest() != part.sha256:
            raise BackupCorrupt(
                f"{part.name} does not match its manifest: {size} bytes, SHA-256 "
                f"{digest.hexdigest()[:12]}…, expected {part.size} bytes, {part.sha256[:12]}…"
            )

    async def verify(self, manifest: Manifest) -> None:
        """Reads every part back and checks it against the manifest."""
        for part in manifest.parts:
            async for _ in self.read_part(part):
                pass

    async def damage(self, backup_id: uuid.UUID) -> str | None:
        """What is damaged in the backup, read whole again: restic 0.14 reads a pack it found
        altered again from its cache, or not at all, so a read that failed for a moment (the
        network, a proxy, the machine's memory) looks like damage until read once more. None
        where it reads back whole now (or has no manifest: it was never complete)."""
        try:
            manifest = await self.manifest(backup_id)
            if manifest is not None:
                await self.verify(manifest)
        except BackupCorrupt as found:
            return str(found)
        return None

    async def spot_check(self) -> bool:
        """Whether a share of the repository's data, read back (``check --read-data-subset``,
        as much as ``BackupStorage``'s ``check_share``), shows damage: found as backups are
        taken, not first by a restore that needs the data. Without restic's lock, which would
        refuse a copy reading the repository meanwhile (or be refused by it): it only reads."""
        if self._check_share == "0":
            return False
        checked = await self._check("--no-lock", f"--read-data-subset={self._check_share}")
        if checked.code == 0:
            return False
        if _DAMAGE_CHECKED.search(checked.heard):
            return True
        log.warning("backup repository check found errors no repair removes", said=checked.said)
        return False

    async def repair(self) -> Repair:
        """Rid the repository of damaged data, as restic 0.14 can (it has no ``repair``
        command): the index rebuilt from the packs there, forgetting packs gone; every pack read
        whole (``check --read-data``) and those it finds altered removed (``_altered``); the
        index rebuilt again. restic then stores that data again as the next backup holds it.
        Which backups lost data is found last (``check``): they stay damaged whatever is
        stored later. Read without restic's cache, which is dropped after (it may hold trees
        of the packs removed). Each of its restic runs locks the repository whole while it
        runs: a backup, a restore or a copy reading it then fails; between them, a copy
        reading it could find data gone (the runner repairs only while no copy is made)."""
        repairing = self.uncached()
        rebuilt = "rebuild the backup repository's index"
        await repairing._must("rebuild-index", doing=rebuilt)
        checked = await repairing._check("--read-data")
        reported = sorted(set(_ALTERED_PACK.findall(checked.heard)))
        altered = [pack for pack in reported if await repairing._altered(pack)]
        if altered:
            assert self._environment is not None  # the repository was read
            try:
                await _remove_packs(self._environment, altered)
            finally:  # the index names no pack removed, whatever stopped the removal
                await repairing._must("rebuild-index", doing=rebuilt)
        gone = await repairing._lost_data() if checked.code != 0 else []
        await self._drop_cache()
        repair = Repair(
            removed=altered, lost=_what_each_lost(gone), snapshots=[s["id"] for s in gone]
        )
        if altered or gone:
            lost_ids = [str(backup) for backup in repair.lost]
            log.warning("backup repository repaired", removed=altered, lost=lost_ids)
        return repair

    async def forget_snapshots(self, snapshots: list[str]) -> None:
        """Forget snapshots whose data is gone (``Repair.snapshots``); forgotten already is
        fine."""
        if snapshots:
            await self._must("forget", *snapshots, doing="forget what lost data")

    async def _altered(self, pack: str) -> bool:
        """Whether the pack, read once more, is not what restic stored under its name (the
        SHA-256 of its content): a read garbled on its way once (a proxy, the network) must
        not have a whole pack removed. One that cannot be read now is not removed either."""
        digest = hashlib.sha256()
        async with self._started("cat", "pack", pack) as restic:
            stdout = restic.process.stdout
            assert stdout is not None  # piped
            while chunk := await stdout.read(CHUNK_BYTES):
                digest.update(chunk)
            done = await restic.finished()
        return done.code == 0 and digest.hexdigest() != pack

    async def _check(self, *arguments: str) -> _Done:
        """restic's check of the repository: what it found said, with a non-zero status,
        where it found errors; a check that could not run (the repository locked, out of
        reach) raises."""
        done = await self._run("check", *arguments)
        if done.code != 0 and _ERRORS_FOUND not in done.said:
            raise await self._failure("check the backup repository", done)
        return done

    async def _lost_data(self) -> list[dict[str, Any]]:
        """The snapshots whose data the repository no longer holds (``check``)."""
        trees = _trees_with_data_gone((await self._check()).heard)
        return [s for s in await self._snapshots() if s["tree"][:8] in trees]

    async def forget(self, backup_id: uuid.UUID) -> None:
        """Drops the backup, complete or not: its manifest first (so it is never listed
        half-gone), then its parts, then the data no snapshot holds any more."""
        found = await self._snapshots(f"backup={backup_id}")
        manifests = [s["id"] for s in found if MANIFEST_TAG in s.get("tags", [])]
        parts = [s["id"] for s in found if s["id"] not in manifests]
        for group in (manifests, parts):
            if group:
                await self._must("forget", *group, doing="forget a backup")
        if found:
            await self._must("prune", doing="prune the backup repository")

    async def forget_all(self) -> None:
        """Drops the store's repository whole (the store is deleted): every backup, the data
        they held, its keys and config, and restic's cache of it. Nothing to do without a
        location, or a repository; done again after a crash, it finishes the job."""
        if self._environment is None:
            return
        # The cache first: found by the repository's config, which goes with the repository.
        await self._drop_cache()
        folder = _folder(self._environment["RESTIC_REPOSITORY"])
        if folder is None:
            await _delete_objects(self._environment, None)
        else:
            await asyncio.to_thread(_remove, folder)

    async def _drop_cache(self) -> None:
        cache = await self._cache()
        if cache is not None:
            await asyncio.to_thread(shutil.rmtree, cache, ignore_errors=True)

    async def _cache(self) -> Path | None:
        """Where restic caches this repository (a folder named by the repository's id, made
        as it is first read); None where there is no repository."""
        assert self._environment is not None  # a location is set
        config = await self._run("cat", "config")
        repository_id = json.loads(config.out).get("id") if config.code == 0 else None
        if not isinstance(repository_id, str):
            return None
        return Path(self._environment["RESTIC_CACHE_DIR"]) / repository_id

    async def _snapshots(self, *tags: str) -> list[dict[str, Any]]:
        """The repository's snapshots with all of ``tags``, oldest first; none in a
        repository not made yet (nothing was ever backed up)."""
        # One --tag with commas matches snapshots with all of them; several --tag match any.
        matching = [f"--tag={','.join(tags)}"] if tags else []
        listed = await self._run("snapshots", "--json", *matching)
        if listed.code != 0:
            if NO_REPOSITORY in listed.said:
                return []
            raise await self._failure("list backups", listed)
        found: list[dict[str, Any]] = json.loads(listed.out or b"[]")
        return sorted(found, key=lambda snapshot: str(snapshot["time"]))

    async def _read_manifest(self, snapshot: str) -> Manifest:
        body = b"".join([chunk async for chunk in self._dump(snapshot, MANIFEST)])
        return Manifest.model_validate_json(body)

    async def _must(self, *arguments: str, doing: str) -> bytes:
        done = await self._run(*arguments)
        if done.code != 0:
            raise await self._failure(doing, done)
        return done.out

    async def _store(
        self, backup_id: uuid.UUID, name: str, content: AsyncIterable[bytes], *tags: str
    ) -> Part:
        digest, size = hashlib.sha256(), 0
        tagged = [f"--tag=backup={backup_id}", *(f"--tag={tag}" for tag in tags)]
        async with self._started(
            "backup", "--stdin", f"--stdin-filename={name}", f"--host={HOST}", "--json", *tagged
        ) as restic:
            stdin = restic.process.stdin
            assert stdin is not None  # piped
            try:
                async for chunk in content:
                    digest.update(chunk)
                    size += len(chunk)
                    stdin.write(chunk)
                    await stdin.drain()
                stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass  # restic stopped reading: its exit status and words say why
            done = await restic.finished()
        snapshot = _summary(done.out).get("snapshot_id") if done.code == 0 else None
        if not isinstance(snapshot, str):
            raise await self._failure(f"store {name}", done)
        return Part(name=name, size=size, sha256=digest.hexdigest(), snapshot=snapshot)

    async def _dump(self, snapshot: str, name: str) -> AsyncIterator[bytes]:
        async with self._started("dump", snapshot, f"/{name}") as restic:
            stdout = restic.process.stdout
            assert stdout is not None  # piped
            while chunk := await stdout.read(CHUNK_BYTES):
                yield chunk
            done = await restic.finished()
        if done.code != 0:
            raise await self._failure(f"read {name}", done, reading=True)

    async def _failure(self, doing: str, done: _Done, reading: bool = False) -> BackupStorageError:
        """The error of a restic run that failed (``_failed``; ``reading``: a part read back,
        ``_read_failure``). Where another run's lock refused it, the locks of restic runs
        that ended without removing theirs are removed first (``restic unlock`` removes
        those alone: one of this host whose process is gone, or any over 30 minutes old):
        restic 0.14 waits for none, so a lock left by a run killed outright refused every
        later one, and the work waiting for it waited in vain."""
        if _LOCKED in done.said:
            await self._run("unlock")
        if reading:
            return _read_failure(doing, done, self._where)
        return _failed(doing, done, self._where)

    async def _run(self, *arguments: str) -> _Done:
        async with self._started(*arguments) as restic:
            return await restic.finished()

    @asynccontextmanager
    async def _started(self, *arguments: str) -> AsyncIterator[_Restic]:
        """restic running ``arguments``; killed if the caller leaves before it ends."""
        if self._environment is None:
            raise BackupStorageError(
                "no backup location is set (WOOSTORE_BACKUP_LOCATION; the platform chart's "
                "backups.location)"
            )
        # restic makes no TMPDIR of its own. Only here: a process that never runs restic (the
        # reaper, in a pod with a read-only filesystem) must not need a writable data folder.
        await asyncio.to_thread(
            Path(self._environment["TMPDIR"]).mkdir, parents=True, exist_ok=True
        )
        process = await asyncio.create_subprocess_exec(
            _restic(),
            "--quiet",
            *(() if self._cached else ("--no-cache",)),
            *arguments,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._environment,
        )
        restic = _Restic(process)
        try:
            yield restic
        finally:
            if process.returncode is None:
                await _stopped(process)
            restic.errors.cancel()


async def _stopped(process: asyncio.subprocess.Process) -> None:
    """restic interrupted (SIGINT: restic 0.14 cleans up on nothing else), so that it
    removes its lock on the repository (left, it refuses other restic runs on it, until
    ``restic unlock`` finds it stale); killed if it has not ended within moments."""
    with suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), RESTIC_STOP_SECONDS)
    except TimeoutError:
        with suppress(ProcessLookupError):
            process.kill()
        await process.wait()


@dataclass(frozen=True)
class _Done:
    code: int
    out: bytes  # what it wrote on stdout, if nobody read it as it came
    said: str  # the end of what it wrote on stderr
    heard: str = ""  # all it wrote on stderr: what a check found, however much


def _remove(folder: Path) -> None:
    """A repository's folder, whole: one gone already is fine (done again after a crash);
    any other error is the storage's, and the store's deletion is tried again."""
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        return
    except OSError as error:  # a read-only mount, a busy NFS file, a symlink in its place
        said = _unplaced(str(error), str(folder))
        raise BackupStorageError(f"could not remove the backup repository: {said}") from error


async def _remove_packs(environment: dict[str, str], packs: list[str]) -> None:
    """The named packs, from the repository's folder or its bucket (restic keeps a pack
    under ``data/``, in a folder named by its id's first two digits); one gone already is
    fine."""
    paths = [f"data/{pack[:2]}/{pack}" for pack in packs]
    folder = _folder(environment["RESTIC_REPOSITORY"])
    if folder is None:
        await _delete_objects(environment, paths)
        return
    try:
        for path in paths:
            await asyncio.to_thread((folder / path).unlink, missing_ok=True)
    except OSError as error:
        said = _unplaced(str(error), str(folder))
        raise BackupStorageError(f"could not remove damaged data: {said}") from error


async def _delete_objects(environment: dict[str, str], paths: list[str] | None) -> None:
    """The objects at ``paths`` in the repository's bucket, or (None) every one it holds,
    whatever they are (restic deletes no repository: its data, index, keys and config),
    listed whole; deleted a thousand at a time. None left is fine: done again after a crash,
    it finishes the job."""
    # Imported here: 7 MB that only repairing or deleting backups kept in S3 needs.
    import obstore
    from obstore.exceptions import BaseError
    from obstore.store import S3Store

    bucket, prefix, config, client = _s3_store(environment)
    store = S3Store(bucket, prefix=prefix, config=config, client_options=client)
    try:
        removing = paths
        if removing is None:
            removing = [meta["path"] async for batch in obstore.list(store) for meta in batch]
        for first in range(0, len(removing), 1000):
            await obstore.delete_async(store, removing[first : first + 1000])
    except BaseError as error:
        said = _unplaced(str(error), environment["RESTIC_REPOSITORY"])
        what = "the backup repository" if paths is None else "damaged data"
        raise BackupStorageError(f"could not remove {what}: {said}") from error


# An AWS endpoint that names its region: s3.eu-west-1.amazonaws.com, or s3-eu-west-1.
_AWS_REGIONAL = re.compile(r"s3[.-](?P<region>[a-z0-9-]+)\.amazonaws\.com")
_AWS_GLOBAL = "s3.amazonaws.com"


def _s3_store(environment: dict[str, str]) -> tuple[str, str, S3Config, ClientConfig]:
    """The bucket, prefix and obstore settings of restic's S3 repository. The region is the
    one set, or the one the endpoint names, or us-east-1 (S3-compatible servers take it).
    AWS's global endpoint answers a bucket of another region with a redirect: obstore makes
    the region's own. Without keys, obstore finds credentials in the process's environment
    or the node's role."""
    endpoint, bucket, prefix = _s3_place(environment["RESTIC_REPOSITORY"])
    host = urlsplit(endpoint).hostname or ""
    named = _AWS_REGIONAL.fullmatch(host)
    region = environment.get("AWS_DEFAULT_REGION") or (named["region"] if named else "us-east-1")
    config: S3Config = {"region": region}
    if host != _AWS_GLOBAL:
        config["endpoint"] = endpoint
    if "AWS_ACCESS_KEY_ID" in environment:
        config["access_key_id"] = environment["AWS_ACCESS_KEY_ID"]
    if "AWS_SECRET_ACCESS_KEY" in environment:
        config["secret_access_key"] = environment["AWS_SECRET_ACCESS_KEY"]
    client: ClientConfig = {"allow_http": endpoint.startswith("http:")}
    if "HTTPS_PROXY" in environment:  # restic's proxy (the process's own is not)
        client["proxy_url"] = environment["HTTPS_PROXY"]
    if "NO_PROXY" in environment:
        client["proxy_excludes"] = environment["NO_PROXY"]
    return bucket, prefix, config, client


def _s3_place(repository: str) -> tuple[str, str, str]:
    """The endpoint, bucket and prefix of a repository as restic names it in S3:
    ``s3:https://host/bucket/prefix``, or without a scheme, https."""
    address = repository.removeprefix("s3:")
    url = urlsplit(address if "://" in address else f"https://{address}")
    bucket, _, prefix = url.path.strip("/").partition("/")
    return f"{url.scheme}://{url.netloc}", bucket, prefix


def _folder(repository: str) -> Path | None:
    """The folder a repository is kept in, or None where restic reaches it through another
    backend (``s3:``, as any ``scheme:``)."""
    if repository.startswith("local:"):
        return Path(repository.removeprefix("local:"))
    return None if re.match(r"[a-z0-9]+:", repository) else Path(repository)


def _unplaced(said: str, repository: str) -> str:
    """``said`` with where the platform keeps the store's repository said as "the store's
    repository", in each form restic and the S3 client write it: as set, as a tidied path,
    in S3 as its bucket and prefix; a folder above it (the backup location, which restic
    names when it cannot make it) as "a folder above the store's repository"; in S3, the
    bucket and the server as such ("the backup bucket", "the backup storage"). What was said
    reaches the store's owner."""
    if not repository:
        return said
    places = [repository]
    above: set[str] = set()
    around: dict[str, str] = {}  # what holds an S3 repository, and what it is said as
    if (folder := _folder(repository)) is not None:
        places += [str(folder), os.path.normpath(folder), os.path.abspath(folder)]
        # Each a path, not a word of a sentence ("backups" of "no backups found").
        for form in (folder, Path(os.path.abspath(folder))):
            above.update(
                str(parent) for parent in form.parents
                if parent.name and (parent.is_absolute() or "/" in str(parent))
            )  # fmt: skip
    else:
        endpoint, bucket, prefix = _s3_place(repository)
        places += [f"{endpoint}/{bucket}/{prefix}", f"{bucket}/{prefix}"]
        around = {
            f"{endpoint}/{bucket}": "the backup bucket",
            endpoint: "the backup storage",
            urlsplit(endpoint).netloc: "the backup storage",  # as a DNS or TLS error names it
        }
    # The longest form first, and whole: "rr" is not in "error", nor "stores/1" "stores/10";
    # a folder above it only as a path of its own, not the start of another store's.
    for place in sorted(set(places), key=len, reverse=True):
        whole = rf"(?<![\w.-]){re.escape(place)}(?![\w.-])"
        said = re.sub(whole, "the store's repository", said)
    for place, words in around.items():  # the bucket first: the server's address starts it
        said = re.sub(rf"(?<![\w.-]){re.escape(place)}(?![\w.-])", words, said)
    for place in sorted(above, key=len, reverse=True):
        whole = rf"(?<![\w./-]){re.escape(place)}(?![\w./-])"
        said = re.sub(whole, "a folder above the store's repository", said)
    return said


def _what_each_lost(snapshots: list[dict[str, Any]]) -> dict[uuid.UUID, str]:
    """The backups ``snapshots`` are of, with which of their parts (or their manifest) lost
    data: its parts in the order stored, its manifest last, each named once (a part stored
    again after a repair is its backup's twice)."""
    lost: dict[uuid.UUID, list[str]] = {}
    for snapshot in sorted(snapshots, key=lambda s: MANIFEST_TAG in s.get("tags", [])):
        tags = snapshot.get("tags", [])
        backup = next((t.removeprefix("backup=") for t in tags if t.startswith("backup=")), "")
        if backup:
            part = "manifest" if MANIFEST_TAG in tags else snapshot["paths"][0][1:]
            lost.setdefault(uuid.UUID(backup), []).append(part)
    return {
        backup: f"data of its {_listed(list(dict.fromkeys(parts)))} was found damaged in the "
        "repository, and removed"
        for backup, parts in lost.items()
    }


def _trees_with_data_gone(said: str) -> set[str]:
    """The trees (their ids' first 8 digits) restic's check found data gone under."""
    trees: set[str] = set()
    tree = None
    for line in said.splitlines():
        if named := _TREE_WITH_ERRORS.match(line):
            tree = named[1]
        elif tree and line.startswith(" ") and _GONE.search(line):
            trees.add(tree)
        elif not line.startswith(" "):
            tree = None
    return trees


def _listed(names: list[str]) -> str:
    """``["a", "b", "c"]`` as "a, b and c"."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def reason(said: str) -> str:
    """What restic said went wrong, in a line a user can read: its ``Fatal:`` line, or a
    crash's ``panic:`` line (the stack trace under it runs to kilobytes), else its last line;
    its ids (a blob's, a pack's: 64 hex digits) cut to their first 8, as restic shows them
    short itself; cut at ``_REASON_MAX`` characters."""
    if _LOCKED in said:  # restic's last line then advises removing locks by hand
        return "the store's repository is locked by other backup work for now"
    said = _WHOLE_ID.sub(r"\1…", said)
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    found = next((line for line in lines if line.startswith("Fatal:")), None)
    found = found or next((line for line in lines if line.startswith("panic:")), None)
    found = found or (lines[-1] if lines else "")
    return found if len(found) <= _REASON_MAX else found[: _REASON_MAX - 1] + "…"


def _read_failure(doing: str, done: _Done, repository: str) -> BackupStorageError:
    """The error of restic reading a part (or a manifest) back: ``BackupCorrupt`` where it
    found the data it keeps altered or gone. Only a read of data says so: restic's indexes
    say "ciphertext verification failed" too where only they are damaged (rebuilt from the
    packs, they are whole again), and they are read by every command."""
    kind = BackupCorrupt if _DAMAGE.search(done.said) else BackupStorageError
    return _failed(doing, done, repository, kind)


def _failed(
    doing: str, done: _Done, repository: str, kind: type[BackupStorageError] = BackupStorageError
) -> BackupStorageError:
    """The error of a restic run that did not do what it was for: its reason in a line, and
    all it said in the log, for the operator. The reason reaches the store's owner (its
    events, its backups' list): where the platform keeps the repository (a folder of the
    provisioner's, a bucket) is not told there."""
    log.warning("restic failed", doing=doing, exit_status=done.code, said=done.said)
    said = _unplaced(done.said, repository)
    kind = BackupLocked if _LOCKED in said else kind
    return kind(f"could not {doing}: {reason(said) or 'no snapshot made'}")


class _Restic:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        # Read all along: restic blocks once a pipe it writes to is full.
        self.errors = asyncio.ensure_future(_all(process.stderr))

    async def finished(self) -> _Done:
        out = await _all(self.process.stdout)
        code = await self.process.wait()
        errors = await self.errors
        said = _kept(errors).decode(errors="replace").strip()
        heard = errors.decode(errors="replace")
        return _Done(code, out, said or ("" if code == 0 else f"exit status {code}"), heard)


def _kept(said: bytes) -> bytes:
    if len(said) <= _STDERR_KEPT:
        return said
    half = _STDERR_KEPT // 2
    return said[:half] + b"\n[...]\n" + said[-half:]


async def _all(stream: asyncio.StreamReader | None) -> bytes:
    return b"" if stream is None else await stream.read()


def _summary(out: bytes) -> dict[str, object]:
    for line in reversed(out.splitlines()):
        with suppress(ValueError):
            message = json.loads(line)
            if isinstance(message, dict) and message.get("message_type") == "summary":
                return message
    return {}
