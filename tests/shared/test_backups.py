"""A store's backup repository, on both backends: a folder, and S3 served by a real
S3-compatible server (moto's, on loopback). restic is the real one, from Debian's packages."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from moto.server import ThreadedMotoServer
from structlog.testing import capture_logs

from tests.support import SECRET_KEY
from woostore_devstack.embedded import free_port
from woostore_shared.backups import (
    MANIFEST,
    BackupCorrupt,
    BackupLocked,
    BackupStorage,
    BackupStorageError,
    Manifest,
    Part,
    Repair,
    StoreBackups,
    _Done,
    _failed,
    _read_failure,
    _Restic,
    _s3_place,
    _s3_store,
    reason,
)
from woostore_shared.secrets import backup_password
from woostore_shared.settings import Settings

S3_KEY_ID = "woostore-tests"
S3_SECRET = "s3-secret-that-must-not-leak"  # the test server's, made up


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> BackupStorage:
    """A folder; a test that asks for ``backend`` gets each backend in turn. (Each restic
    run costs about half a second of key derivation, and moto's S3 is slow: what is the
    same on both backends is tested on the folder only.)"""
    backend = getattr(request, "param", "folder")
    if backend == "folder":
        location = str(tmp_path / "backups")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        # A bucket of its own, which restic makes when it makes the first repository in it.
        location = f"s3:{endpoint}/backups-{uuid.uuid4().hex[:8]}/woostore"
    return BackupStorage(
        location,
        secret_key=SECRET_KEY,
        scratch_dir=tmp_path / "restic",
        s3_access_key_id=S3_KEY_ID,
        s3_secret_access_key=S3_SECRET,
    )


def s3_client(storage: BackupStorage) -> tuple[Any, str, str]:
    """A client of the S3 location's server apart from WooStore's, its bucket and prefix."""
    url = urlsplit(storage.location.removeprefix("s3:"))
    bucket, location_prefix = url.path.strip("/").split("/", 1)
    s3 = boto3.client(
        "s3", endpoint_url=f"{url.scheme}://{url.netloc}", region_name="us-east-1",
        aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET,
    )  # fmt: skip
    return s3, bucket, location_prefix


def objects_under(storage: BackupStorage, prefix: str) -> list[str]:
    """The keys of the S3 location's objects under ``prefix``, read by another client."""
    s3, bucket, location_prefix = s3_client(storage)
    found = s3.list_objects_v2(Bucket=bucket, Prefix=f"{location_prefix}/{prefix}")
    return [item["Key"] for item in found.get("Contents", [])]


def generated(size: int, seed: int) -> list[bytes]:
    """``size`` bytes in chunks: half text a dump would hold, half noise that does not
    compress, so that the repository's compression and chunking both see work."""
    rng = random.Random(seed)  # noqa: S311  (test data, not a secret)
    chunks, left = [], size
    while left > 0:
        text = b"INSERT INTO wp_posts VALUES (%d, 'order');\n" % rng.randrange(10**9)
        chunk = (text * 800)[: min(left, 1 << 15)] + rng.randbytes(min(left, 1 << 15))
        chunk = chunk[:left]
        chunks.append(chunk)
        left -= len(chunk)
    return chunks


async def streamed(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def a_store(storage: BackupStorage) -> StoreBackups:
    store = storage.of(uuid.uuid4())
    await store.ensure()
    return store


async def read(store: StoreBackups, part: Part) -> bytes:
    return b"".join([chunk async for chunk in store.read_part(part)])


async def back_up(store: StoreBackups, parts: dict[str, list[bytes]]) -> Manifest:
    backup_id = uuid.uuid4()
    stored = [await store.store_part(backup_id, name, streamed(c)) for name, c in parts.items()]
    manifest = Manifest(
        backup_id=backup_id,
        store_id=store.store_id,
        created_at=datetime.now(UTC),
        chart_version="0.4.0",
        wordpress_version="6.8.3",
        woocommerce_version="10.2.2",
        parts=stored,
    )
    await store.store_manifest(manifest)
    return manifest


def replace_with_a_link(folder: Path, moved_to: Path) -> None:
    folder.rename(moved_to)
    folder.symlink_to(moved_to)


def a_file_where_its_keys_go(repository: Path) -> None:
    repository.mkdir(parents=True)
    (repository / "keys").write_text("not a folder")


def folders_in(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir() if path.is_dir()]


BOTH_BACKENDS = pytest.mark.parametrize("storage", ["folder", "s3"], indirect=True)


@BOTH_BACKENDS
async def test_a_backup_reads_back_exactly_what_was_stored(storage: BackupStorage) -> None:
    store = await a_store(storage)
    await store.ensure()  # a second time changes nothing
    database, uploads = generated(1_500_000, 1), generated(200_000, 2)
    manifest = await back_up(store, {"database.sql": database, "uploads.tar": uploads})

    assert await store.manifests() == [manifest]
    for part, chunks in zip(manifest.parts, (database, uploads), strict=True):
        whole = b"".join(chunks)
        assert (part.size, part.sha256) == (len(whole), hashlib.sha256(whole).hexdigest())
        assert await read(store, part) == whole
    await store.verify(manifest)


@BOTH_BACKENDS
async def test_a_backup_cut_off_before_its_manifest_is_never_listed(
    storage: BackupStorage,
) -> None:
    store = await a_store(storage)
    assert await store.manifests() == []
    await store.store_part(uuid.uuid4(), "database.sql", streamed(generated(10_000, 3)))
    assert await store.manifests() == []
    complete = await back_up(store, {"database.sql": generated(10_000, 4)})
    assert await store.manifests() == [complete]


async def test_a_store_never_backed_up_has_no_backups_and_forgets_them_without_error(
    storage: BackupStorage,
) -> None:
    never = storage.of(uuid.uuid4())
    assert await never.manifests() == []
    assert await never.manifest(uuid.uuid4()) is None
    await never.forget_all()  # deleting a store that was never backed up


@BOTH_BACKENDS
async def test_forgetting_all_of_a_stores_backups_leaves_none_and_spares_other_stores(
    storage: BackupStorage,
) -> None:
    store, other = await a_store(storage), await a_store(storage)
    await back_up(store, {"database.sql": generated(20_000, 9)})
    await store.store_part(uuid.uuid4(), "uploads.tar", streamed(generated(20_000, 10)))
    kept = await back_up(other, {"database.sql": generated(20_000, 11)})
    caches = Path(storage.of(store.store_id)._environment["RESTIC_CACHE_DIR"])  # type: ignore[index]
    assert len(folders_in(caches)) == 2  # restic's cache of each repository

    await store.forget_all()
    await store.forget_all()  # done again after a crash: nothing left to do

    assert len(folders_in(caches)) == 1  # the deleted store's cache is gone
    if storage.location.startswith("s3:"):  # not an object of it is left, not its key
        assert objects_under(storage, f"stores/{store.store_id}/") == []
        assert objects_under(storage, f"stores/{other.store_id}/")
    else:
        assert folders_in(Path(storage.location, "stores")) == [str(other.store_id)]
    assert await store.manifests() == []
    assert await store.stored_parts(kept.backup_id) == {}
    assert await other.manifests() == [kept]


async def test_a_repository_folder_that_cannot_be_removed_fails_the_deletion(
    storage: BackupStorage, tmp_path: Path
) -> None:
    """Its store must not be recorded deleted while its backups' data stays: the step is
    tried again. (Here a symlink stands where the folder was, which rmtree refuses: the
    tests run as root, whom no permission stops.)"""
    store = await a_store(storage)
    await back_up(store, {"database.sql": generated(5_000, 13)})
    repository = Path(storage.location, "stores", str(store.store_id))
    elsewhere = tmp_path / "elsewhere"
    replace_with_a_link(repository, elsewhere)

    with pytest.raises(BackupStorageError, match="could not remove the backup repository"):
        await store.forget_all()
    assert folders_in(elsewhere)  # nothing followed through the link


async def test_a_part_that_does_not_match_its_manifest_is_refused(
    storage: BackupStorage,
) -> None:
    store = await a_store(storage)
    manifest = await back_up(store, {"database.sql": generated(50_000, 5)})
    tampered = manifest.model_copy(
        update={"parts": [manifest.parts[0].model_copy(update={"sha256": "0" * 64})]}
    )
    with pytest.raises(BackupCorrupt, match=r"database\.sql does not match its manifest"):
        await store.verify(tampered)


async def test_a_repository_opens_only_with_its_own_stores_password(
    storage: BackupStorage,
) -> None:
    owner, other = uuid.uuid4(), uuid.uuid4()
    store = storage.of(owner)
    await store.ensure()
    await back_up(store, {"database.sql": generated(10_000, 6)})
    assert store._environment is not None  # a location is set
    environment = {**store._environment, "RESTIC_PASSWORD": backup_password(SECRET_KEY, other)}
    with pytest.raises(BackupStorageError, match="wrong password"):
        await StoreBackups(owner, environment).manifests()


def test_without_keys_restic_takes_the_pods_own_aws_identity_and_with_keys_only_those(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On EKS a service account's role reaches the pod as a web identity token (IRSA).
    restic runs with an environment of its own and never saw it: it used the node's role,
    while a store's deletion (obstore, in this process) used the pod's."""
    irsa = {
        "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/woostore-backups",
        "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
        "AWS_SESSION_TOKEN": "a-session-of-the-pods",
    }
    for name, value in irsa.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_PROFILE", "someone-elses")  # not a pod's identity: left out
    location = "s3:https://s3.eu-west-1.amazonaws.com/backups"

    ambient = Settings(data_dir=tmp_path, backup_location=location)
    keyed = Settings(
        data_dir=tmp_path,
        backup_location=location,
        backup_s3_access_key_id="AKIAEXAMPLE",
        backup_s3_secret_access_key="the-secret",
    )
    without_keys = ambient.backup_storage().of(uuid.uuid4())._environment
    with_keys = keyed.backup_storage().of(uuid.uuid4())._environment

    assert without_keys is not None
    assert with_keys is not None
    assert {name: without_keys.get(name) for name in irsa} == irsa
    assert "AWS_PROFILE" not in without_keys
    assert with_keys["AWS_ACCESS_KEY_ID"] == "AKIAEXAMPLE"
    assert not {*irsa, "AWS_PROFILE"} & with_keys.keys()  # the keys set, and nothing else
    # A folder is no AWS's: a developer's own keys stay out of restic's environment.
    folder = Settings(data_dir=tmp_path, backup_location=str(tmp_path / "backups"))
    in_a_folder = folder.backup_storage().of(uuid.uuid4())._environment
    assert in_a_folder is not None
    assert not {*irsa, "AWS_PROFILE"} & in_a_folder.keys()


def test_restic_alone_goes_through_the_proxy_the_settings_name_on_a_disk_of_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Where egress leads through a proxy, restic must take it to reach S3; the process's
    own environment does not carry it (helm and the storefront checks reach the cluster
    directly). Go ignores a proxy for loopback addresses, so the local S3 server cannot
    show it used: what restic is handed is checked."""
    monkeypatch.setenv("WOOSTORE_BACKUP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("WOOSTORE_BACKUP_NO_PROXY", ".svc,.cluster.local")
    settings = Settings(data_dir=tmp_path, backup_location="s3:https://s3.example.com/backups")

    environment = settings.backup_storage().of(uuid.uuid4())._environment

    assert environment is not None
    assert environment["HTTPS_PROXY"] == environment["HTTP_PROXY"] == "http://proxy.internal:3128"
    assert environment["NO_PROXY"] == ".svc,.cluster.local"
    assert "HTTPS_PROXY" not in os.environ
    assert "WOOSTORE_SECRET_KEY" not in environment
    # Its disk is its own, under the data folder, not the pod's /tmp that helm shares.
    scratch = (tmp_path / "restic").resolve()
    assert environment["RESTIC_CACHE_DIR"] == str(scratch / "cache")
    assert environment["TMPDIR"] == str(scratch / "tmp")
    # Nothing is made before restic runs: the reaper builds the storage too, in a pod whose
    # filesystem it may not write.
    assert not scratch.exists()


async def test_a_forgotten_backup_is_gone_and_the_others_stay_whole(
    storage: BackupStorage,
) -> None:
    store = await a_store(storage)
    older = await back_up(store, {"database.sql": generated(100_000, 7)})
    newer = await back_up(store, {"database.sql": generated(100_000, 8)})
    cut_off = uuid.uuid4()  # a backup that failed after storing a part
    await store.store_part(cut_off, "database.sql", streamed(generated(10_000, 12)))
    await store.forget(older.backup_id)
    await store.forget(cut_off)
    await store.forget(uuid.uuid4())  # never made: nothing to do
    assert await store.manifests() == [newer]
    assert await store.stored_parts(older.backup_id) == {}
    assert await store.stored_parts(cut_off) == {}
    assert await read(store, newer.parts[0]) == b"".join(generated(100_000, 8))


def packs_of(storage: BackupStorage, store: StoreBackups) -> dict[str, int]:
    """The store's packs, by name, with their sizes, on either backend."""
    if not storage.location.startswith("s3:"):
        data = Path(storage.location, "stores", str(store.store_id), "data")
        return {pack.name: pack.stat().st_size for pack in data.glob("*/*")}
    s3, bucket, prefix = s3_client(storage)
    found = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/stores/{store.store_id}/data/")
    return {item["Key"].rsplit("/", 1)[1]: item["Size"] for item in found.get("Contents", [])}


def alter(storage: BackupStorage, store: StoreBackups, pack: str) -> None:
    """A byte flipped in the middle of the pack, as failing storage might (restic writes a
    folder's packs read-only; the tests run as root)."""
    where = f"stores/{store.store_id}/data/{pack[:2]}/{pack}"
    if not storage.location.startswith("s3:"):
        path = Path(storage.location, where)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        return
    s3, bucket, prefix = s3_client(storage)
    data = bytearray(s3.get_object(Bucket=bucket, Key=f"{prefix}/{where}")["Body"].read())
    data[len(data) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{where}", Body=bytes(data))


@BOTH_BACKENDS
async def test_a_repair_removes_altered_data_and_names_the_backups_that_held_it(
    storage: BackupStorage,
) -> None:
    """restic keeps each piece of data once: a backup made after the data was altered reused
    it and failed as it was read back, until the altered pack was removed from the
    repository (restic 0.14 has no command for it). The repair removes it; the backups that
    held it are named, and stay damaged; the next backup stores the data again, whole."""
    store = await a_store(storage)
    shared_data, own = generated(400_000, 21), generated(300_000, 22)
    first = await back_up(store, {"database.sql": shared_data})
    # Its data, not its trees: a pack of tens of kilobytes, not of hundreds of bytes.
    [altered] = [pack for pack, size in packs_of(storage, store).items() if size > 10_000]
    second = await back_up(store, {"database.sql": shared_data})  # the same data, kept once
    apart = await back_up(store, {"uploads.tar": own})
    alter(storage, store, altered)
    with pytest.raises(BackupCorrupt):
        await store.verify(first)

    repair = await store.repair()

    assert repair.removed == [altered]
    assert altered not in packs_of(storage, store)
    said = "data of its database.sql was found damaged in the repository, and removed"
    assert repair.lost == {first.backup_id: said, second.backup_id: said}
    await store.verify(apart)  # untouched
    # What lost data is forgotten once its backups are recorded damaged: left, it made
    # restic's prune refuse to run, and so every deletion of a backup (a user's review).
    assert await store.stored_parts(second.backup_id) != {}
    await store.forget_snapshots(repair.snapshots)
    assert list(await store.stored_parts(second.backup_id)) == [MANIFEST]  # its parts gone
    await store.forget(first.backup_id)
    again = await back_up(store, {"database.sql": shared_data})
    await store.verify(again)  # stored again, whole
    assert (await store.repair()) == Repair(removed=[], lost={})  # nothing left to repair


@asynccontextmanager
async def restic_reading(store: StoreBackups) -> AsyncIterator[_Restic]:
    """restic backing a part up, once it reads it: more than a pipe holds is written to it,
    so its lock was taken long before (restic 0.14 leaves one taken a moment before it is
    interrupted)."""
    async with store._started("backup", "--stdin", "--stdin-filename=cut.sql") as restic:
        stdin = restic.process.stdin
        assert stdin is not None
        stdin.write(b"".join(generated(1 << 20, 26)))
        await stdin.drain()
        yield restic


def held_locks(storage: BackupStorage, store: StoreBackups) -> list[str]:
    return [
        lock.name
        for lock in Path(storage.location, "stores", str(store.store_id), "locks").iterdir()
    ]


def cut_short(storage: BackupStorage, store: StoreBackups, pack: str) -> None:
    path = Path(storage.location, "stores", str(store.store_id), "data", pack[:2], pack)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


async def test_a_repair_finds_what_a_pack_cut_short_lost(storage: BackupStorage) -> None:
    """A pack that lost its end lost its header too: restic's index, rebuilt, no longer
    names it, and the backups that held its data are found to have lost it."""
    store = await a_store(storage)
    cut = await back_up(store, {"database.sql": generated(300_000, 24)})
    [pack] = [pack for pack, size in packs_of(storage, store).items() if size > 10_000]
    cut_short(storage, store, pack)

    repair = await store.repair()

    assert list(repair.lost) == [cut.backup_id]
    await store.forget_snapshots(repair.snapshots)
    assert list(await store.stored_parts(cut.backup_id)) == [MANIFEST]  # its parts gone
    again = await back_up(store, {"database.sql": generated(300_000, 24)})
    await store.verify(again)


@pytest.mark.parametrize(
    ("said", "damaged"),
    [
        ("Pack ID does not match, want " + "ab" * 32 + ", got " + "cd" * 32, True),
        ("pack " + "ab" * 32 + ": unexpected file size 150063 instead of 300127", True),
        ("error for tree 4476328b:\n  id " + "44" * 32 + " not found in repository", True),
        # A snapshot's own file unreadable: no repair removes it, and every backup would
        # repair the repository whole, in vain (a diff review).
        ("error: load <snapshot/5ab8c1d2e3>: invalid data returned", False),
    ],
)
async def test_a_spot_check_calls_for_a_repair_only_where_it_finds_damage_a_repair_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: str, damaged: bool
) -> None:
    storage = BackupStorage(
        str(tmp_path / "backups"), secret_key=SECRET_KEY, scratch_dir=tmp_path, check_share="10%"
    )

    async def found(self: StoreBackups, *arguments: str) -> _Done:
        assert arguments == ("--no-lock", "--read-data-subset=10%")
        whole = f"{said}\nFatal: repository contains errors"
        return _Done(1, b"", whole, whole)

    monkeypatch.setattr(StoreBackups, "_check", found)
    assert await storage.of(uuid.uuid4()).spot_check() is damaged


async def test_a_repair_removes_no_pack_that_reads_whole_when_read_again(
    storage: BackupStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pack read garbled on its way once (a proxy, the network) is reported by restic's
    check as altered: removing it would lose data that is whole. Each is read once more
    first."""
    store = await a_store(storage)
    kept = await back_up(store, {"database.sql": generated(200_000, 23)})
    [whole] = [pack for pack, size in packs_of(storage, store).items() if size > 10_000]
    check = StoreBackups._check

    async def garbled_once(self: StoreBackups, *arguments: str) -> _Done:
        done = await check(self, *arguments)
        if arguments != ("--read-data",):
            return done
        said = f"Pack ID does not match, want {whole}, got {'0' * 64}\nFatal: repository "
        return _Done(1, done.out, said + "contains errors", said + "contains errors")

    monkeypatch.setattr(StoreBackups, "_check", garbled_once)
    assert await store.repair() == Repair(removed=[], lost={})
    assert whole in packs_of(storage, store)
    await store.verify(kept)


async def test_restic_stopped_half_way_leaves_no_lock_on_the_repository(
    storage: BackupStorage,
) -> None:
    """A restore, copy or backup cut short (its step's time up, the process stopping) used
    to kill restic, whose lock stayed and refused every other restic run on the repository
    (a diff review: restic 0.14 cleans up on SIGINT alone)."""
    store = await a_store(storage)
    async with restic_reading(store):
        assert held_locks(storage, store)

    assert not held_locks(storage, store)
    await back_up(store, {"database.sql": generated(5_000, 25)})  # nothing refuses it


async def test_a_lock_left_by_restic_killed_outright_is_removed_as_it_refuses_work(
    storage: BackupStorage,
) -> None:
    """restic 0.14 takes no stale lock for gone (a diff review): one left by a restic killed
    outright (a pod evicted) refused every later repair and prune, and the work waiting for
    it waited in vain. The refused run removes stale locks; the next try goes ahead."""
    store = await a_store(storage)
    async with restic_reading(store) as restic:
        restic.process.kill()
        await restic.process.wait()
    assert held_locks(storage, store)  # left behind

    with pytest.raises(BackupLocked):
        await store.repair()

    assert not held_locks(storage, store)
    assert await store.repair() == Repair(removed=[], lost={})


async def test_restic_is_given_no_secret_in_its_arguments(
    storage: BackupStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv: list[tuple[str, ...]] = []
    start = asyncio.create_subprocess_exec

    async def recorded(*args: str, **kwargs: Any) -> asyncio.subprocess.Process:
        argv.append(args)
        return await start(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recorded)
    store_id = uuid.uuid4()
    store = storage.of(store_id)
    await store.ensure()
    await back_up(store, {"database.sql": generated(1_000, 9)})
    assert argv
    secrets = (backup_password(SECRET_KEY, store_id), S3_SECRET, SECRET_KEY)
    assert not [args for args in argv for secret in secrets if any(secret in a for a in args)]


async def test_without_a_location_every_backup_fails_saying_what_to_set(tmp_path: Path) -> None:
    """A real cluster with no backups.location: nothing is written anywhere (a pod's own
    filesystem would lose it), and the reason names the setting."""
    storage = BackupStorage("", secret_key=SECRET_KEY, scratch_dir=tmp_path / "restic")
    with pytest.raises(BackupStorageError, match="WOOSTORE_BACKUP_LOCATION"):
        await storage.of(uuid.uuid4()).ensure()
    assert not (tmp_path / "restic").exists()


# What restic 0.14 writes as it crashes: its first line says what broke, then a trace runs to
# kilobytes (cut short here, then grown with goroutines like those it lists).
GO_PANIC = (
    "panic: runtime error: slice bounds out of range [:4294967295] with capacity 65536\n\n"
    "goroutine 1 [running]:\n"
    "github.com/restic/restic/internal/repository.(*Repository).LoadBlob(0xc0001b2000)\n"
    "\t/build/restic-0.14.0/internal/repository/repository.go:268 +0x6c5\n"
) + "".join(
    f"\ngoroutine {n} [select]:\n"
    "github.com/restic/restic/internal/backend/sema.(*connLimitedBackend).Load(0xc0000a2)\n"
    "\t/build/restic-0.14.0/internal/backend/sema/backend.go:79 +0x2a5\n"
    for n in range(2, 200)
)


async def test_a_crash_of_restic_is_told_in_its_first_line_and_logged_whole(
    tmp_path: Path,
) -> None:
    """A user reads a failed backup's reason in `woostore backups list`: a Go panic's 4 KB
    stack trace told them nothing. Its first line is kept however long the trace runs,
    and the operator finds more of it in the log."""
    script = tmp_path / "crash.sh"
    script.write_text(f"cat >&2 <<'END'\n{GO_PANIC}END\nexit 2\n")
    process = await asyncio.create_subprocess_exec(
        "sh", str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    done = await _Restic(process).finished()
    assert len(GO_PANIC) > 3 * len(done.said)  # kept: its start and its end

    assert reason(done.said) == (
        "panic: runtime error: slice bounds out of range [:4294967295] with capacity 65536"
    )
    with capture_logs() as logs:
        error = _failed("read database.sql", done, "s3:http://127.0.0.1:9/b/stores/1")
    assert str(error) == f"could not read database.sql: {reason(done.said)}"
    assert "goroutine 199 [select]" in logs[0]["said"]  # the trace's end, for the operator


@pytest.mark.parametrize(
    ("said", "told"),
    [
        (  # restic's words where a repository's config is unreadable: the Fatal line
            "Fatal: unable to open config file: Stat: Access Denied.\n"
            "Is there a repository at the following location?\n"
            "s3:https://s3.example.com/backups/stores/8d1f",
            "Fatal: unable to open config file: Stat: Access Denied.",
        ),
        (  # no Fatal line: the last, its conclusion
            "Load(<data/2f1a3b>, 0, 0) returned error, retrying after 552ms: EOF\n"
            "cannot dump file: decrypting blob dc2c8f42 failed: ciphertext verification failed",
            "cannot dump file: decrypting blob dc2c8f42 failed: ciphertext verification failed",
        ),
        (  # a blob's id in full (64 hex digits, a user's review): as restic shows ids short
            "cannot dump file: decrypting blob " + "3696c93e" * 8 + " failed: ciphertext "
            "verification failed",
            "cannot dump file: decrypting blob 3696c93e… failed: ciphertext verification failed",
        ),
        ("Fatal: " + "x" * 500, "Fatal: " + "x" * 292 + "…"),  # cut at 300 characters
        ("", ""),
        (  # restic 0.14's words where another run holds the lock: not its advice to remove it
            "unable to create lock in backend: repository is already locked exclusively by PID"
            " 58 on provisioner-7f9 by root (UID 0, GID 0)\nlock was created at 2026-12-06 "
            "05:12:01 (2m3s ago)\nstorage ID 3be1e2c1\nthe `unlock` command can be used to "
            "remove stale locks",
            "the store's repository is locked by other backup work for now",
        ),
    ],
)
def test_what_restic_said_becomes_one_line(said: str, told: str) -> None:
    assert reason(said) == told


@pytest.mark.parametrize(
    ("said", "damaged"),
    [
        # restic 0.14's own words: a pack altered on disk (its authentication fails)...
        ("cannot dump file: decrypting blob b0446 failed: ciphertext verification failed", True),
        (  # ... and a pack gone from a folder repository, after 45 s of retries
            "Load(<data/ff3a03c1b9>, 300050, 0) returned error, retrying after 552ms: open "
            "/r/data/ff/ff3a: no such file or directory\ncannot dump file: "
            "ReadFull(<data/ff3a03c1b9>): open /r/data/ff/ff3a: no such file or directory",
            True,
        ),
        (  # ... or from a bucket
            "cannot dump file: ReadFull(<data/ff3a03c1b9>): The specified key does not exist.",
            True,
        ),
        (  # ... or cut short
            "cannot dump file: ReadFull(<data/ff3a03c1b9>): unexpected EOF",
            True,
        ),
        (  # ... or removed by a repair, which rebuilt the index without it
            "cannot dump file: id 5c7655a663c65e4d05b63e632cb52442262ce20ac6ea5f9578be35d0529c5414"
            " not found in repository",
            True,
        ),
        (  # an index altered: rebuilt from the packs, it is whole again
            "Fatal: unable to load index 5a2b0c1d: load <index/5a2b0c1d9e>: ciphertext "
            "verification failed",
            False,
        ),
        # Storage out of reach is not damage: the next restore may read it whole.
        ("Fatal: unable to open config file: Stat: Access Denied.", False),
        ("cannot dump file: ReadFull(<data/ff3a03c1b9>): dial tcp: connection refused", False),
        ("Fatal: wrong password or no key found", False),
    ],
)
def test_only_data_restic_finds_altered_or_gone_is_damage(said: str, damaged: bool) -> None:
    error = _read_failure("read database.sql", _Done(1, b"", said), "/r")
    assert isinstance(error, BackupCorrupt) is damaged
    assert isinstance(error, BackupStorageError)  # permanent for the work, either way
    # Any other command saying so read restic's indexes, which are rebuilt from the data.
    assert not isinstance(_failed("list backups", _Done(1, b"", said), "/r"), BackupCorrupt)


def test_a_repository_locked_by_other_backup_work_is_not_now_rather_than_never() -> None:
    said = (
        "unable to create lock in backend: repository is already locked by PID 58 on "
        "provisioner-7f9 by root (UID 0, GID 0)\nthe `unlock` command can be used to remove "
        "stale locks"
    )
    for error in (
        _read_failure("read database.sql", _Done(1, b"", said), "/r"),
        _failed("prune the backup repository", _Done(1, b"", said), "/r"),
    ):
        assert isinstance(error, BackupLocked)
        assert str(error).endswith(
            ": the store's repository is locked by other backup work for now"
        )


async def test_a_wrong_password_is_told_in_restics_own_line(storage: BackupStorage) -> None:
    store = await a_store(storage)
    assert store._environment is not None
    wrong = {**store._environment, "RESTIC_PASSWORD": "not-this-stores"}
    with pytest.raises(BackupStorageError) as refused:
        await StoreBackups(store.store_id, wrong).manifests()
    assert str(refused.value) == "could not list backups: Fatal: wrong password or no key found"


async def test_a_failure_does_not_tell_where_the_repository_is_kept(
    storage: BackupStorage,
) -> None:
    """Its reason reaches the store's owner: it named the provisioner's folder (a user's
    review, with a file where the repository's keys go)."""
    store = storage.of(uuid.uuid4())
    assert store._environment is not None
    folder = Path(store._environment["RESTIC_REPOSITORY"])
    a_file_where_its_keys_go(folder)

    with pytest.raises(BackupStorageError) as refused:
        await store.ensure()

    told = str(refused.value)
    assert told.startswith("could not make the backup repository: Fatal: "), told
    assert "the store's repository/keys" in told, told
    assert str(folder) not in told


@pytest.mark.parametrize(
    ("repository", "said", "told"),
    [
        (  # tidied by restic: the path it names is not the location as set
            "/data//backups/stores/1",
            "Fatal: create repository at /data/backups/stores/1 failed: /data/backups/stores/10",
            "Fatal: create repository at the store's repository failed: /data/backups/stores/10",
        ),
        ("local:/data/stores/1", "open /data/stores/1/keys: not a directory",
         "open the store's repository/keys: not a directory"),
        ("./rr", "error: open rr/keys: denied", "error: open the store's repository/keys: denied"),
        (  # the backup location made by restic, which could not (a user's review)
            "/proc/woostore-nope/stores/1",
            "Fatal: create repository at /proc/woostore-nope/stores/1 failed: mkdir "
            "/proc/woostore-nope: no such file or directory; stat /proc: denied",
            "Fatal: create repository at the store's repository failed: mkdir a folder above "
            "the store's repository: no such file or directory; stat a folder above the "
            "store's repository: denied",
        ),
        (  # a relative location's folders above are words too, left as they are
            "backups/stores/1", "Fatal: no backups found in backups/stores/1",
            "Fatal: no backups found in the store's repository",
        ),
        (  # S3: its client names the endpoint and the bucket, not the repository
            "s3:http://127.0.0.1:9/bucket/stores/1",
            'Fatal: create repository at s3:http://127.0.0.1:9/bucket/stores/1 failed: '
            'client.BucketExists: Get "http://127.0.0.1:9/bucket/?location=": dial tcp',
            "Fatal: create repository at the store's repository failed: client.BucketExists: "
            'Get "the backup bucket/?location=": dial tcp',
        ),
        (  # the server alone, as a TLS or DNS error names it
            "s3:https://s3.example.com/bucket/stores/1",
            "Fatal: unable to open config file: Stat: Get \"https://s3.example.com/bucket/stores/1/"
            "config\": dial tcp: lookup s3.example.com: no such host; https://s3.example.com "
            "refused",
            "Fatal: unable to open config file: Stat: Get \"the store's repository/config\": dial "
            "tcp: lookup the backup storage: no such host; the backup storage refused",
        ),
    ],
)  # fmt: skip
def test_where_the_repository_is_kept_is_not_told_in_any_form(
    repository: str, said: str, told: str
) -> None:
    done = _Done(1, b"", said)
    assert str(_failed("make the backup repository", done, repository)) == (
        f"could not make the backup repository: {told}"
    )


@pytest.mark.parametrize(
    ("repository", "place"),
    [
        (
            "s3:https://s3.example.com/backups/woostore/stores/1",
            ("https://s3.example.com", "backups", "woostore/stores/1"),
        ),
        ("s3:http://127.0.0.1:9000/b/stores/1", ("http://127.0.0.1:9000", "b", "stores/1")),
        ("s3:s3.amazonaws.com/bucket/stores/1", ("https://s3.amazonaws.com", "bucket", "stores/1")),
    ],
)
def test_an_s3_repository_is_found_where_restic_finds_it(
    repository: str, place: tuple[str, str, str]
) -> None:
    """restic's form: with a scheme, or without one (https)."""
    assert _s3_place(repository) == place


@pytest.mark.parametrize(
    ("repository", "region", "expected"),
    [
        # The test server's: http, and the region S3-compatible servers take.
        ("s3:http://127.0.0.1:9000/b/stores/1", "", ("us-east-1", "http://127.0.0.1:9000", True)),
        # AWS's regional endpoint names its region: requests signed for another are refused.
        (
            "s3:https://s3.eu-west-1.amazonaws.com/b/s",
            "",
            ("eu-west-1", "https://s3.eu-west-1.amazonaws.com", False),
        ),
        (
            "s3:https://s3.eu-west-1.amazonaws.com/b/s",
            "eu-west-2",
            ("eu-west-2", "https://s3.eu-west-1.amazonaws.com", False),
        ),
        # The global one redirects another region's bucket: obstore makes the region's own.
        ("s3:s3.amazonaws.com/b/s", "ap-south-1", ("ap-south-1", None, False)),
    ],
)
def test_the_deletion_reaches_s3_as_restic_does(
    repository: str, region: str, expected: tuple[str, str | None, bool]
) -> None:
    environment = {"RESTIC_REPOSITORY": repository, "AWS_ACCESS_KEY_ID": "k"}
    if region:
        environment["AWS_DEFAULT_REGION"] = region
    bucket, _, config, client = _s3_store(environment)
    assert bucket == "b"
    assert (config["region"], config.get("endpoint"), client["allow_http"]) == expected
    assert config["access_key_id"] == "k"
