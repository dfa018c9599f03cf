"""The store's content streamed through exec: a database dump or an uploads archive out of a
pod, a dump or an archive into one. Through the real client and a real WebSocket, against the
loopback API server over TLS (tests/cluster/api_server.py): bytes arrive whole, frame by
frame; a failing command, a broken or silent stream, a failing input and a consumer that
leaves each end as they should. Then the pods and commands the driver picks (over the fake
``KubeApi``), and the shell commands themselves, run here with stand-ins for the programs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.api_server import ExecRun, FakeApiServer, exited
from tests.cluster.fakes import MARIADB_LABELS, FakeHelm, FakeKube
from tests.cluster.store_api import serve
from tests.cluster.test_exec_stream import tls_kubeconfig
from tests.cluster.tls import make_tls
from woostore_cluster import PermanentClusterError, TransientClusterError
from woostore_cluster.kubeapi import STDERR_TAIL_BYTES, STDIN_FRAME_BYTES, ClientKubeApi
from woostore_cluster.kubeobjects import Pod
from woostore_cluster.kubernetes import (
    ARCHIVE_UPLOADS,
    DUMP_DATABASE,
    LOAD_DATABASE,
    REPLACE_UPLOADS,
    WP_CONTENT_PATH,
    KubernetesCluster,
)

NS = "store-a"
MARIADB_EXEC = f"/api/v1/namespaces/{NS}/pods/store-mariadb-0/exec"
WORDPRESS_EXEC = f"/api/v1/namespaces/{NS}/pods/store-wordpress-x/exec"
FRAME = 64 * 1024  # the server's stdout frames


@dataclass
class Served:
    server: FakeApiServer
    driver: KubernetesCluster


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """The API server over https, its pods ready and exec accepted, and the driver on it."""
    tls = make_tls(tmp_path / "tls")
    server = FakeApiServer(exec_refusal=None, wordpress_ready=True)
    async with serve(server.app(), tls) as url:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(tls_kubeconfig(url, tls.ca))
        api = ClientKubeApi(kubeconfig)
        try:
            yield Served(server, KubernetesCluster(api, FakeHelm(), kubeconfig=kubeconfig))
        finally:
            api.close()


def binary(size: int, seed: int = 1) -> bytes:
    """``size`` bytes of every value, as a dump or an archive holds (NULs, invalid UTF-8)."""
    return random.Random(seed).randbytes(size)  # noqa: S311  (test data, not a secret)


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def drain(stream: AsyncIterator[bytes], into: list[bytes] | None = None) -> None:
    """Read ``stream`` to its end, keeping its chunks ``into`` a list."""
    async for chunk in stream:
        if into is not None:
            into.append(chunk)


def sha256(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


async def ended(server: FakeApiServer) -> list[str]:
    """How the execs ended, once one has."""
    async with asyncio.timeout(10):
        await server.exec_ended.wait()
    return server.exec_ends


# -- out of the pod --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "path", "container", "command"),
    [
        ("database", MARIADB_EXEC, "mariadb", DUMP_DATABASE),
        ("uploads", WORDPRESS_EXEC, "wordpress", ARCHIVE_UPLOADS),
    ],
    ids=["database", "uploads"],
)
async def test_a_part_arrives_whole_frame_by_frame(
    served: Served, part: str, path: str, container: str, command: tuple[str, ...]
) -> None:
    content = binary(6 * 1024 * 1024)
    served.server.exec_run = ExecRun(stdout=content, frame_bytes=FRAME)
    stream = (
        served.driver.dump_database(NS) if part == "database" else served.driver.archive_uploads(NS)
    )

    chunks = [chunk async for chunk in stream]

    assert sha256(b"".join(chunks)) == sha256(content)
    # Each frame handed on as it came: many chunks, none gathered into a bigger one.
    assert len(chunks) == served.server.exec_stdout_frames == len(content) // FRAME
    assert max(len(chunk) for chunk in chunks) == FRAME
    _, exec_path, query = served.server.requests[-1]
    assert (exec_path, query["container"], query["stdin"]) == (path, container, "false")
    assert served.server.exec_commands == [list(command)]


async def test_a_dump_needs_no_v5_protocol(served: Served) -> None:
    """Only feeding stdin needs v5 (to end it): reading a command's output works on v4."""
    served.server.exec_v5 = False
    served.server.exec_run = ExecRun(stdout=b"-- MariaDB dump\n")

    chunks = [chunk async for chunk in served.driver.dump_database(NS)]

    assert chunks == [b"-- MariaDB dump\n"]


async def test_a_failing_dump_fails_after_its_chunks(served: Served) -> None:
    """What came is handed on; the failure follows it, so half a dump is never a whole one."""
    served.server.exec_run = ExecRun(
        stdout=b"-- MariaDB dump\nCREATE TABLE wp_posts",
        stderr=b"mariadb-dump: Error 2013: Lost connection to server during query\n",
        status=exited(2),
    )
    received: list[bytes] = []

    with pytest.raises(PermanentClusterError) as raised:
        await drain(served.driver.dump_database(NS), received)

    assert received == [b"-- MariaDB dump\nCREATE TABLE wp_posts"]
    assert str(raised.value) == (
        f"dumping the database in {NS}/store-mariadb-0: exit code 2: "
        "mariadb-dump: Error 2013: Lost connection to server during query"
    )


# -- into the pod ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "path", "container", "command"),
    [
        ("database", MARIADB_EXEC, "mariadb", LOAD_DATABASE),
        ("uploads", WORDPRESS_EXEC, "wordpress", REPLACE_UPLOADS),
    ],
    ids=["database", "uploads"],
)
async def test_several_megabytes_of_stdin_arrive_whole_then_end(
    served: Served, part: str, path: str, container: str, command: tuple[str, ...]
) -> None:
    content = binary(5 * 1024 * 1024 + 123, seed=2)
    source = chunked(content, 256 * 1024)

    if part == "database":
        await served.driver.load_database(NS, source)
    else:
        await served.driver.replace_uploads(NS, source)

    assert sha256(served.server.exec_stdin) == sha256(content)
    assert served.server.exec_stdin_frames == -(-len(content) // STDIN_FRAME_BYTES)
    assert served.server.exec_stdin_closed  # end of input: the command can finish
    _, exec_path, query = served.server.requests[-1]
    assert (exec_path, query["container"], query["stdin"]) == (path, container, "true")
    assert served.server.exec_commands == [list(command)]


async def test_a_failing_load_says_why_with_stderrs_tail_only(served: Served) -> None:
    """The end of stderr, where the reason is, and at most about 2 KB of it; the dump fed in,
    which holds the store's data, and the password, which the command never holds, stay out."""
    row = b"INSERT INTO wp_users VALUES (1,'admin','$P$BzK4Fe9xSecretHash','admin@acme.test');\n"
    reason = "ERROR 1045 (28000): Access denied for user 'wordpress'@'localhost'"
    served.server.exec_run = ExecRun(
        stderr=b"Warning: noise\n" * 400 + reason.encode() + b"\n", status=exited(1)
    )

    with pytest.raises(PermanentClusterError) as raised:
        await served.driver.load_database(NS, chunked(row, 64))

    message = str(raised.value)
    assert message.startswith(f"loading the database in {NS}/store-mariadb-0: exit code 1: ")
    assert message.endswith(reason)
    assert len(message) <= STDERR_TAIL_BYTES + 100
    assert b"SecretHash" in served.server.exec_stdin
    assert "SecretHash" not in message
    (command,) = served.server.exec_commands
    assert 'MYSQL_PWD="$(cat "$MARIADB_PASSWORD_FILE")"' in command[2]


async def test_stdin_needs_the_v5_protocol_and_none_is_sent_without_it(served: Served) -> None:
    """v4 cannot end stdin: a load or an extraction would never finish. Told before any of the
    input is read, let alone sent."""
    served.server.exec_v5 = False
    read: list[bytes] = []

    async def archive() -> AsyncIterator[bytes]:
        read.append(b"x" * 512)
        yield read[-1]

    with pytest.raises(PermanentClusterError, match=r"needs v5\.channel\.k8s\.io") as raised:
        await served.driver.replace_uploads(NS, archive())

    assert "speaks v4.channel.k8s.io only" in str(raised.value)
    assert await ended(served.server) == ["client left"]
    assert (read, bytes(served.server.exec_stdin)) == ([], b"")


async def test_an_input_that_fails_is_never_ended(served: Served) -> None:
    """The caller's own error comes back as it is, and the command never sees end-of-input,
    which would have it take the part it got for the whole."""

    class RepositoryUnreachable(Exception):
        pass

    async def dump() -> AsyncIterator[bytes]:
        yield b"-- MariaDB dump\n" * 1000
        raise RepositoryUnreachable("restic: repository unreachable")

    with pytest.raises(RepositoryUnreachable, match="restic: repository unreachable"):
        await served.driver.load_database(NS, dump())

    assert await ended(served.server) == ["client left"]
    assert bytes(served.server.exec_stdin) == b"-- MariaDB dump\n" * 1000
    assert not served.server.exec_stdin_closed


# -- streams that do not end well -----------------------------------------------------------


async def test_a_stream_cut_midway_is_transient(served: Served) -> None:
    content = binary(1024 * 1024, seed=3)
    served.server.exec_run = ExecRun(stdout=content, frame_bytes=FRAME, drop=True)
    received: list[bytes] = []

    with pytest.raises(TransientClusterError, match="stream broke mid-command") as raised:
        await drain(served.driver.dump_database(NS), received)

    assert b"".join(received) == content  # what came before the cut, handed on
    assert str(raised.value).startswith(f"dumping the database in {NS}/store-mariadb-0: ")


async def test_a_stream_closed_without_the_commands_status_is_transient(served: Served) -> None:
    """The API server sends the status on v4 and v5, success included: a stream closed
    without one was cut short somewhere on the way."""
    served.server.exec_run = ExecRun(stdout=b"./\x00\x00", status="")

    with pytest.raises(TransientClusterError, match="without the command's status"):
        await drain(served.driver.archive_uploads(NS))


async def test_a_stream_left_silent_times_out(served: Served) -> None:
    served.driver.stream_idle_timeout = 0.2
    served.server.exec_run = ExecRun(stdout=b"-- MariaDB dump\n", hang=True)

    with pytest.raises(TransientClusterError, match=r"silent for 0\.2s"):
        await drain(served.driver.dump_database(NS))

    assert await ended(served.server) == ["client left"]


# -- consumers that leave --------------------------------------------------------------------


async def test_a_consumer_that_stops_early_closes_the_stream(served: Served) -> None:
    """An endless stdout, held back by the consumer's pace: closing the generator closes the
    websocket (the server sees the client leave) before ``aclose`` returns."""
    served.server.exec_run = ExecRun(stdout=binary(FRAME), frame_bytes=FRAME // 4, endless=True)
    stream = served.driver.dump_database(NS)

    first = await anext(stream)
    async with asyncio.timeout(10):
        await stream.aclose()

    assert len(first) == FRAME // 4
    assert await ended(served.server) == ["client left"]


async def test_a_cancelled_consumer_closes_the_stream(served: Served) -> None:
    served.server.exec_run = ExecRun(stdout=binary(FRAME), frame_bytes=FRAME // 4, endless=True)
    started = asyncio.Event()

    async def back_up() -> None:
        async for _ in served.driver.archive_uploads(NS):
            started.set()

    task = asyncio.create_task(back_up())
    async with asyncio.timeout(10):
        await started.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(10):
            await task
    assert await ended(served.server) == ["client left"]


# -- the pods and the commands ---------------------------------------------------------------

STORE = "store-acme-1a2b3c"


async def test_the_database_streams_in_the_ready_mariadb_pod(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    kube.roll_out(STORE)
    kube.stream_output = [b"-- MariaDB dump\n", b"CREATE TABLE `wp_posts` (\n"]

    dump = [chunk async for chunk in driver.dump_database(STORE)]
    await driver.load_database(STORE, chunked(b"".join(dump), 5))

    dumped, loaded = kube.stream_calls
    assert (dumped.pod, dumped.container, dumped.stdin) == ("store-mariadb-0", "mariadb", None)
    assert (loaded.pod, loaded.container) == ("store-mariadb-0", "mariadb")
    assert loaded.stdin == b"-- MariaDB dump\nCREATE TABLE `wp_posts` (\n"
    assert (dumped.command, loaded.command) == (list(DUMP_DATABASE), list(LOAD_DATABASE))


async def test_the_uploads_stream_in_the_ready_wordpress_pod(
    driver: KubernetesCluster, kube: FakeKube
) -> None:
    kube.roll_out(STORE)
    kube.stream_output = [b"uploads.tar"]

    archive = [chunk async for chunk in driver.archive_uploads(STORE)]
    await driver.replace_uploads(STORE, chunked(b"".join(archive), 4))

    archived, replaced = kube.stream_calls
    assert (archived.pod, archived.container) == ("store-wordpress-7d9f-abcde", "wordpress")
    assert (replaced.pod, replaced.stdin) == ("store-wordpress-7d9f-abcde", b"uploads.tar")
    assert (archived.command, replaced.command) == (list(ARCHIVE_UPLOADS), list(REPLACE_UPLOADS))


async def test_no_ready_mariadb_pod_is_transient(driver: KubernetesCluster, kube: FakeKube) -> None:
    kube.roll_out(STORE)
    kube.pods[STORE][1] = Pod("store-mariadb-0", MARIADB_LABELS, "Running", ready=False)

    with pytest.raises(TransientClusterError, match=f"no ready MariaDB pod in {STORE}"):
        await drain(driver.dump_database(STORE))

    assert kube.stream_calls == []


def stand_in(folder: Path, name: str, script: str) -> None:
    program = folder / name
    program.write_text(f"#!/bin/sh\n{script}\n")
    program.chmod(0o755)


def run_sh(command: tuple[str, ...], env: dict[str, str], stdin: bytes = b"") -> str:
    """``command`` (sh -c ...) here, as the pod runs it; its exit code must be 0."""
    done = subprocess.run(command, input=stdin, env=env, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@pytest.mark.parametrize(
    ("command", "program"),
    [(DUMP_DATABASE, "mariadb-dump"), (LOAD_DATABASE, "mariadb")],
    ids=["dump", "load"],
)
def test_the_database_clients_get_the_password_in_their_environment(
    tmp_path: Path, command: tuple[str, ...], program: str
) -> None:
    """Run with stand-ins that print what they were given, and the chart's variables."""
    stand_in(tmp_path, program, 'echo "password=$MYSQL_PWD"; echo "$@"')
    password_file = tmp_path / "db-password"
    password_file.write_text("s3cret-Pa55")
    env = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "MARIADB_USER": "wordpress",
        "MARIADB_DATABASE": "wordpress",
        "MARIADB_PASSWORD_FILE": str(password_file),
    }

    said = run_sh(command, env).splitlines()
    password_file.unlink()
    missing = subprocess.run(command, env=env, capture_output=True, check=False)

    assert said[0] == "password=s3cret-Pa55"
    assert said[1].endswith("--user=wordpress wordpress")
    assert "s3cret" not in " ".join(command)
    # No password file: no try with an empty password.
    assert missing.returncode != 0
    assert missing.stdout == b""


def uploads_archive(files: Iterable[tuple[str, bytes]], folder: Path) -> bytes:
    """What ``ARCHIVE_UPLOADS`` makes of a folder holding ``files``."""
    folder.mkdir()
    for name, content in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    done = subprocess.run(
        ["tar", "-C", str(folder), "-cf", "-", "."], capture_output=True, check=True
    )
    return done.stdout


def replace_here(wp_content: Path) -> tuple[str, ...]:
    return (*REPLACE_UPLOADS[:2], REPLACE_UPLOADS[2].replace(WP_CONTENT_PATH, str(wp_content)))


def test_replacing_the_uploads_leaves_only_the_archives_files(tmp_path: Path) -> None:
    wp_content = tmp_path / "wp-content"
    (wp_content / "uploads" / "2025" / "01").mkdir(parents=True)
    (wp_content / "uploads" / "2025" / "01" / "gone.jpg").write_bytes(b"old")
    (wp_content / "uploads" / "kept.png").write_bytes(b"old")
    archive = uploads_archive(
        [("kept.png", b"new"), ("2026/02/beans.webp", binary(300_000))], tmp_path / "backup"
    )

    run_sh(replace_here(wp_content), {"PATH": "/usr/bin:/bin"}, archive)

    uploads = wp_content / "uploads"
    assert sorted(str(p.relative_to(uploads)) for p in uploads.rglob("*") if p.is_file()) == [
        "2026/02/beans.webp",
        "kept.png",
    ]
    assert (uploads / "kept.png").read_bytes() == b"new"
    assert sorted(os.listdir(wp_content)) == ["uploads"]  # nothing of the swap left behind


@pytest.mark.parametrize("archive", [b"", b"not a tar archive" * 100], ids=["empty", "damaged"])
def test_uploads_are_kept_when_the_archive_is_not_read_whole(
    tmp_path: Path, archive: bytes
) -> None:
    """No input at all (an API server that cannot end stdin: the command started, the stream
    was closed at once), or a damaged one: tar fails, and the uploads stay as they were."""
    wp_content = tmp_path / "wp-content"
    (wp_content / "uploads").mkdir(parents=True)
    (wp_content / "uploads" / "kept.png").write_bytes(b"old")

    done = subprocess.run(
        replace_here(wp_content), input=archive, env={"PATH": "/usr/bin:/bin"},
        capture_output=True, check=False,
    )  # fmt: skip

    assert done.returncode != 0
    assert (wp_content / "uploads" / "kept.png").read_bytes() == b"old"
    assert sorted(os.listdir(wp_content)) == ["uploads"]  # the half unpacked one removed
