"""``woostore-run`` keeps the platform running: a service that exits is started again after a
growing delay, with its exit status logged; one that keeps exiting stops everything, saying
why; stopping ends every service. Real processes (small Python programs) stand in for the
services, with delays short enough for a test."""

from __future__ import annotations

import asyncio
import http.server
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg
import pytest

from woostore_devstack import launcher
from woostore_devstack.embedded import TOOLS_BIN, free_port, start_nats, start_postgres
from woostore_devstack.launcher import (
    Kept,
    RestartPolicy,
    Service,
    Started,
    keep_embedded_running,
    kept_nats,
    kept_postgres,
    nats_shown,
    ports_taken,
    postgres_shown,
    service_environment,
    supervise,
    wait_until_ready,
    when_all_ready,
)
from woostore_devstack.settings_reader import LaunchSettings, read_settings
from woostore_shared.messaging import connect
from woostore_shared.settings import Settings

QUICK = RestartPolicy(first_delay=0.05, longest_delay=0.2, healthy_after=60, max_crashes=3)
DEADLINE = 30.0


def program(tmp_path: Path, name: str, body: str) -> Service:
    """A service running ``body``, which knows ``n``: how many times it has been started."""
    starts = tmp_path / f"{name}.starts"
    code = (
        "import pathlib, sys, time\n"
        f"starts = pathlib.Path({str(starts)!r})\n"
        "with starts.open('a') as f: f.write('started\\n')\n"
        "n = len(starts.read_text().splitlines())\n"
        "print('up, start', n, flush=True)\n" + body
    )
    return Service(name, [sys.executable, "-c", code], {})


class Output:
    """What the launcher and its services printed so far."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self._text = ""

    @property
    def text(self) -> str:
        self._text += self._capsys.readouterr().out
        return self._text


def assert_stopped_by_the_launcher(*services: Service) -> None:
    for service in services:
        assert service.process is not None
        assert service.process.returncode == -signal.SIGTERM, service.name


async def until(condition: Callable[[], bool]) -> None:
    """Polls: what it waits for is printed by other processes, which set no event here."""
    async with asyncio.timeout(DEADLINE):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_service_that_exits_is_started_again_and_its_status_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flaky = program(tmp_path, "flaky", "sys.exit(3) if n <= 2 else time.sleep(600)\n")
    steady = program(tmp_path, "steady", "time.sleep(600)\n")
    output, stopping = Output(capsys), asyncio.Event()
    running = asyncio.create_task(supervise([flaky, steady], QUICK, stopping))

    await until(lambda: "flaky | up, start 3" in output.text)
    stopping.set()
    assert await running == 0

    said = output.text
    assert said.count("woostore-run: flaky exited with status 3; starting it again") == 2
    assert "starting it again in 0.05 s" in said  # then twice as long
    assert "starting it again in 0.1 s" in said
    assert said.count("steady | up, start") == 1  # never touched
    assert_stopped_by_the_launcher(flaky, steady)


async def test_a_service_that_keeps_exiting_stops_everything_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = program(tmp_path, "broken", "sys.exit(7)\n")
    steady = program(tmp_path, "steady", "time.sleep(600)\n")
    output = Output(capsys)

    async with asyncio.timeout(DEADLINE):
        status = await supervise([broken, steady], QUICK, asyncio.Event())

    assert status == 1
    assert (
        "woostore-run: broken exited with status 7, its 4th exit within 300 s; "
        "stopping everything" in output.text
    )
    assert_stopped_by_the_launcher(steady)


async def test_a_killed_service_is_named_by_its_signal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = program(tmp_path, "victim", "time.sleep(600)\n")
    output, stopping = Output(capsys), asyncio.Event()
    running = asyncio.create_task(supervise([victim], QUICK, stopping))

    await until(lambda: "victim | up, start 1" in output.text)
    assert victim.process is not None
    victim.process.kill()
    await until(lambda: "victim | up, start 2" in output.text)
    stopping.set()
    assert await running == 0
    assert "woostore-run: victim was killed by SIGKILL; starting it again in 0.05 s" in (
        output.text
    )


class _Readiness(http.server.BaseHTTPRequestHandler):
    """/readyz as a service answers it: 503 naming what fails until ``ready`` is set."""

    ready: threading.Event

    def do_GET(self) -> None:
        ready = self.ready.is_set()
        body = b'{"status": "ready"}' if ready else b'{"failing": {"nats": "ConnectionError"}}'
        self.send_response(200 if ready else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def readiness(ready: threading.Event) -> Iterator[str]:
    """The URL of a /readyz that is ready once ``ready`` is set."""
    handler = type("Readiness", (_Readiness,), {"ready": ready})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/readyz"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_slow_start_says_what_the_api_still_waits_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = Output(capsys)
    ready = threading.Event()
    with readiness(ready) as url:
        waiting = asyncio.create_task(wait_until_ready("API", url, notice_every=0.1))
        await until(lambda: "ConnectionError" in output.text)
        assert not waiting.done()
        assert "the API is not ready after" in output.text
        assert "503" in output.text

        ready.set()
        async with asyncio.timeout(DEADLINE):
            await waiting


async def test_the_platform_is_ready_once_every_service_is_not_the_api_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = Output(capsys)
    api, provisioner = threading.Event(), threading.Event()
    api.set()
    with readiness(api) as api_url, readiness(provisioner) as provisioner_url:
        waiting = asyncio.create_task(
            when_all_ready({"api": api_url, "provisioner": provisioner_url}, notice_every=0.1)
        )
        await until(lambda: "the provisioner is not ready after" in output.text)
        assert not waiting.done()
        assert "the api is not ready" not in output.text

        provisioner.set()
        async with asyncio.timeout(DEADLINE):
            await waiting


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_a_port_another_program_listens_on_is_found_as_the_service_would_bind_it(
    family: socket.AddressFamily, host: str
) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as other_program:
        other_program.bind((host, 0))
        other_program.listen()
        port = other_program.getsockname()[1]
        chosen = Settings(api_host=host, api_port=port, notifier_host="127.0.0.1",
                          notifier_port=free_port())  # fmt: skip
        settings = LaunchSettings.of(chosen)

        assert ports_taken(settings) == [f"{host}:{port} (set WOOSTORE_API_PORT to move it)"]
    assert ports_taken(settings) == []  # once it is gone


def test_leftovers_are_stopped_only_when_their_command_line_matches_the_record(
    tmp_path: Path,
) -> None:
    """A recorded process still running as recorded is stopped; one whose pid now runs
    another command line (the pid was reused) is someone else's and is left alone."""
    leftover = sleeper()
    stranger = sleeper()
    try:
        record = Started(tmp_path)
        record.add("nats", leftover.pid)
        record.processes["api"] = (stranger.pid, "python\0-c\0another program\0")
        record.path.write_text(json.dumps(record.processes))

        assert Started(tmp_path).stop_leftovers(grace=DEADLINE) == ["nats"]
        assert leftover.wait(timeout=DEADLINE) == -signal.SIGTERM
        assert stranger.poll() is None
        assert not record.path.exists()
    finally:
        for process in (leftover, stranger):
            process.kill()
            process.wait()


def test_a_process_is_recorded_by_the_command_line_it_runs_from_its_start(
    tmp_path: Path,
) -> None:
    """Read as soon as the process was started, its command line was empty once in 25 to 40
    starts (and most, on busy cores): the kernel sets it late in the exec. A record of
    nothing identifies nothing, and that leftover was never stopped."""
    record = Started(tmp_path)
    argv = [shutil.which("sleep") or "sleep", "60"]
    for _ in range(3000):  # read at once, all 3000 were never read whole in 20 runs
        started = subprocess.Popen(argv)
        try:
            record.add("api", started.pid)
            assert record.processes["api"][1] == "".join(f"{part}\0" for part in argv)
        finally:
            started.kill()
            started.wait()


def test_without_proc_no_leftover_is_identified_so_none_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where /proc is missing (macOS) no command line can be read: every pid would "match"
    an empty record, so a freed pid taken by another program would be killed."""
    monkeypatch.setattr(launcher, "_PROC", tmp_path / "no-proc")
    running = sleeper()
    try:
        record = Started(tmp_path)
        record.add("nats", running.pid)

        assert Started(tmp_path).stop_leftovers(grace=DEADLINE) == []
        assert running.poll() is None
    finally:
        running.kill()
        running.wait()


SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(SLEEPER)


def test_the_services_find_helm_and_the_chart_wherever_the_launcher_is_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Started as `.venv/bin/woostore-run`, with no `make` to put `.tools/bin` on PATH, the
    provisioner found no helm; started out of the checkout, the reaper found no chart (the
    default path is relative). Either stopped the platform after six restarts."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("WOOSTORE_STORE_CHART", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=tmp_path)

    env = service_environment(
        LaunchSettings.of(settings), "nats://127.0.0.1:4222", "postgresql://localhost/x"
    )

    assert shutil.which(settings.helm_binary, path=env["PATH"]) == str(TOOLS_BIN / "helm")
    assert env["PATH"].endswith(":/usr/bin:/bin")  # the caller's own still there
    # No proxy before make run's API: no client's X-Forwarded-For is believed.
    assert env["WOOSTORE_FORWARDED_ALLOW_IPS"] == ""
    monkeypatch.setenv("WOOSTORE_STORE_CHART", env["WOOSTORE_STORE_CHART"])
    assert Settings().store_chart_version  # as a service reads it: from the checkout's chart


async def test_the_embedded_nats_is_started_again_on_its_port_and_data_when_it_dies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It died unnoticed: every service said `nats unreachable` until Ctrl-C."""
    output = Output(capsys)
    nats = start_nats(tmp_path / "nats")
    first = nats.process.pid
    stopping = asyncio.Event()
    watched = [kept_nats(nats, Started(tmp_path))]
    keeper = asyncio.create_task(keep_embedded_running(watched, stopping, every=0.05))
    try:
        client = await connect(nats.url, "tests")
        js = client.jetstream()
        await js.add_stream(name="KEPT", subjects=["kept.>"])
        await js.publish("kept.one", b"before")

        nats.process.kill()  # as kill -9, or the OOM killer
        await until(lambda: "NATS was killed by SIGKILL; starting it again" in output.text)
        await until(lambda: nats.alive and nats.process.pid != first)
        async with asyncio.timeout(DEADLINE):
            while not client.is_connected:  # noqa: ASYNC110  (the client's own reconnect)
                await asyncio.sleep(0.05)
        kept = await js.get_msg("KEPT", 1)  # on its data: the stream and its message
        assert kept.data == b"before"
        await client.close()
    finally:
        stopping.set()
        assert await keeper == ""
        nats.stop()


async def test_the_embedded_postgres_is_started_again_on_its_data_when_it_dies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It stayed dead: every service answered 503 naming the database until Ctrl-C."""
    output = Output(capsys)
    postgres = start_postgres(tmp_path / "postgres", alone=True)
    first = postgres.server.get_pid()
    stopping = asyncio.Event()
    keeper = asyncio.create_task(
        keep_embedded_running([kept_postgres(postgres)], stopping, every=0.05)
    )
    try:
        url = postgres.url
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE TABLE kept (said text)")
            db.execute("INSERT INTO kept VALUES ('before')")
            # As kill -9, or the OOM killer: its backends, this one too, are left behind.
            psutil.Process(first).kill()
        await until(lambda: "PostgreSQL stopped; starting it again on its data" in output.text)
        await until(lambda: postgres.running and postgres.server.get_pid() != first)
        assert postgres.url == url  # the services' URL still leads to it
        with psycopg.connect(url) as db:  # on its data: the row is there
            assert db.execute("SELECT said FROM kept").fetchall() == [("before",)]
    finally:
        stopping.set()
        assert await keeper == ""
        postgres.stop()


KEPT_QUICKLY = RestartPolicy(first_delay=0.01, longest_delay=0.04, max_crashes=3, window=60)


async def test_a_server_that_does_not_start_again_is_tried_again_then_stops_the_platform(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tries: list[int] = []

    def start_again() -> None:
        tries.append(len(tries) + 1)
        raise RuntimeError(f"refused, try {len(tries)}")

    stopping = asyncio.Event()
    stubborn = Kept("Stubborn", lambda: "stopped", start_again)

    why = await keep_embedded_running([stubborn], stopping, KEPT_QUICKLY, every=0.01)

    assert why == "Stubborn stopped, its 4th end within 60 s"  # a failed start is an end
    assert (len(tries), stopping.is_set()) == (3, True)  # the platform stops, saying why
    said = capsys.readouterr().out
    for delay in ("0.01", "0.02", "0.04"):  # growing, up to the policy's longest
        assert f"woostore-run: Stubborn stopped; starting it again on its data in {delay} s" in (
            said
        )
    assert "woostore-run: Stubborn did not start: refused, try 3" in said


async def test_a_server_that_starts_on_a_second_try_keeps_the_platform_running(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tries, running = 0, False

    def start_again() -> None:
        nonlocal tries, running
        tries += 1
        if tries == 1:
            raise RuntimeError("its shared memory is still in use")
        running = True

    stopping = asyncio.Event()
    slow = Kept("Slow", lambda: None if running else "stopped", start_again)
    keeper = asyncio.create_task(keep_embedded_running([slow], stopping, KEPT_QUICKLY, 0.01))
    await until(lambda: running)
    assert not stopping.is_set()  # it runs on
    stopping.set()

    assert await keeper == ""
    said = capsys.readouterr().out
    assert "Slow did not start: its shared memory is still in use" in said
    assert tries == 2


def test_a_data_folder_that_cannot_be_made_is_one_line_naming_its_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was a traceback ending in NotADirectoryError (found by an operator's review)."""
    (tmp_path / "a-file").touch()
    monkeypatch.setenv("WOOSTORE_DATA_DIR", str(tmp_path / "a-file" / "data"))

    with pytest.raises(SystemExit) as refused:
        launcher.main()

    assert str(refused.value) == (
        f"WOOSTORE_DATA_DIR: cannot use {tmp_path / 'a-file' / 'data'}: Not a directory"
    )


def test_the_launcher_reads_its_settings_apart_and_never_loads_pydantic(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """It stays resident as long as the platform: pydantic would add about 14 MB to it."""
    for chosen_elsewhere in ("WOOSTORE_DATABASE_URL", "WOOSTORE_PUBLIC_EVENTS_URL",
                             "WOOSTORE_NOTIFIER_HOST"):  # fmt: skip
        monkeypatch.delenv(chosen_elsewhere, raising=False)
    monkeypatch.setenv("WOOSTORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WOOSTORE_ADMIN_TOKEN", "a" * 40)
    monkeypatch.setenv("WOOSTORE_NOTIFIER_PORT", "8123")
    probe = (
        "import sys\n"
        "from woostore_devstack import launcher\n"
        "read = launcher.read_settings()\n"
        "print('pydantic' in sys.modules, read.admin_token == 'a' * 40)"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)  # fmt: skip
    assert loaded.stdout.split() == ["False", "True"]  # read, through the pipe, whole

    read = read_settings()

    assert read.data_dir == (tmp_path / "data").resolve()
    assert read.events_url == "http://127.0.0.1:8123/api/v1/events"
    assert read.database_url == ""  # none given: the launcher starts PostgreSQL
    assert "a" * 40 not in repr(read)


def test_settings_refused_end_the_launcher_naming_each_variable(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WOOSTORE_API_PORT", "eighty")

    with pytest.raises(SystemExit) as refused:
        read_settings()

    assert refused.value.code == 1
    said = capfd.readouterr().err
    assert "refused settings" in said
    assert "WOOSTORE_API_PORT:" in said
    assert "eighty" not in said  # a value is never shown: it may be a secret


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # The embedded server's own: nothing to hide, and psql takes it as printed.
        ("postgresql://postgres:@/postgres?host=/tmp/data/postgres",
         "postgresql://postgres:@/postgres?host=/tmp/data/postgres"),
        # An operator's own: a password unencoded may hold any character but @.
        ("postgresql+psycopg://shop:s3cret@db.example:5432/woo?sslmode=require",
         "postgresql://shop:***@db.example:5432/woo?sslmode=require"),
        ("postgresql://shop:se,c#r?e/t@db/woo", "postgresql://shop:***@db/woo"),
        ("postgresql://shop@db/woo?password=s3cret&sslmode=require&sslpassword=k3y",
         "postgresql://shop@db/woo?password=***&sslmode=require&sslpassword=***"),
        ("postgresql://db/woo?application_name=me@home", "postgresql://db/woo?application_name=me@home"),
    ],
)  # fmt: skip
def test_the_banner_shows_postgresqls_url_without_its_password(url: str, shown: str) -> None:
    """The banner goes to terminals and log files."""
    assert postgres_shown(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://s3cret@nats-a:4222, tls://user:s3cret@nats-b:4222",
         "nats://***@nats-a:4222,tls://user:***@nats-b:4222"),
        # The client takes a server without a scheme too.
        ("user:s3cret@nats-a:4222,s3cret@nats-b", "user:***@nats-a:4222,***@nats-b"),
    ],
)  # fmt: skip
def test_the_banner_shows_nats_url_without_its_token_or_password(url: str, shown: str) -> None:
    """A NATS URL given to the launcher was printed as it came, its password or token with
    it."""
    assert nats_shown(url) == shown
