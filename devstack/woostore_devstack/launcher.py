"""``woostore-run`` (what ``make run`` calls): the whole platform on one machine.

1. Reuses or creates the admin token and secret key (kept in the data folder, mode 0600).
2. Starts embedded NATS (JetStream on disk, fsync always) and PostgreSQL under the data
   folder, unless WOOSTORE_NATS_URL / WOOSTORE_DATABASE_URL point elsewhere.
3. Migrates the database and declares the JetStream topology (``woostore-setup``).
4. Runs the four services as separate processes with prefixed logs, until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import httpx

from woostore_devstack.embedded import free_port, start_nats, start_postgres
from woostore_shared.settings import Settings

SERVICES = ("api", "provisioner", "reaper", "notifier")
_COLOURS = {"api": 36, "provisioner": 35, "reaper": 33, "notifier": 32}
_STOP_GRACE = 15.0


def load_or_create_secrets(data_dir: Path) -> dict[str, str]:
    """Generated once, then reused, so a second ``make run`` keeps the same token."""
    path = data_dir / "secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    # Hex, not URL-safe base64: a token beginning with "-" would be taken for an option by a
    # shell command's parser (`woostore --token -x…`).
    values = {"admin_token": secrets.token_hex(32), "secret_key": secrets.token_urlsafe(32)}
    path.touch(mode=0o600)
    path.write_text(json.dumps(values))
    return values


def service_environment(settings: Settings, nats_url: str, database_url: str) -> dict[str, str]:
    data_dir = settings.data_dir.resolve()
    stored = load_or_create_secrets(data_dir)
    env = dict(os.environ)
    env.update(
        WOOSTORE_DATA_DIR=str(data_dir),
        WOOSTORE_NATS_URL=nats_url,
        WOOSTORE_DATABASE_URL=database_url,
        WOOSTORE_ADMIN_TOKEN=settings.admin_token.get_secret_value() or stored["admin_token"],
        WOOSTORE_SECRET_KEY=settings.secret_key.get_secret_value() or stored["secret_key"],
    )
    # A new store on `make run` comes from the warm pool in seconds; 0 turns the pool off.
    env.setdefault("WOOSTORE_WARM_POOL_SIZE", "2")
    if sys.stderr.isatty():
        env.setdefault("WOOSTORE_LOG_FORMAT", "console")
    return env


async def _relay_output(name: str, stream: asyncio.StreamReader) -> None:
    prefix = (
        f"\x1b[{_COLOURS[name]}m{name:>11} |\x1b[0m " if sys.stdout.isatty() else f"{name:>11} | "
    )
    async for line in stream:
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def _wait_until_ready(url: str, deadline: float = 60.0) -> None:
    async with httpx.AsyncClient() as client:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadline
        while loop.time() < give_up:
            try:
                if (await client.get(url, timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {deadline}s")


async def supervise(env: dict[str, str], settings: Settings) -> int:
    bin_dir = Path(sys.executable).parent
    processes: dict[str, asyncio.subprocess.Process] = {}
    relays = []
    # Each service serves /healthz, /readyz and /metrics on an ops port of its own.
    ops_ports = {name: free_port() for name in SERVICES}
    for name in SERVICES:
        process = await asyncio.create_subprocess_exec(
            str(bin_dir / f"woostore-{name}"),
            env={**env, "WOOSTORE_OPS_PORT": str(ops_ports[name])},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the services in order
        )
        assert process.stdout is not None
        processes[name] = process
        relays.append(asyncio.create_task(_relay_output(name, process.stdout)))

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)

    exits = {asyncio.create_task(p.wait()): name for name, p in processes.items()}
    stop = asyncio.create_task(stopping.wait())
    ready = asyncio.create_task(
        _wait_until_ready(f"http://{settings.ops_host}:{ops_ports['api']}/readyz")
    )
    await asyncio.wait({ready, stop, *exits}, return_when=asyncio.FIRST_COMPLETED)
    if ready.done() and not ready.exception():
        _print_banner(env, settings)
    done, _ = await asyncio.wait({stop, *exits}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    for task in done & set(exits):
        print(f"woostore-run: {exits[task]} exited with {task.result()}; stopping", flush=True)
        status = 1

    for process in processes.values():
        if process.returncode is None:
            process.terminate()
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes.values())), _STOP_GRACE)
    except TimeoutError:
        for process in processes.values():
            if process.returncode is None:
                process.kill()
    await asyncio.gather(*relays, return_exceptions=True)
    ready.cancel()
    return status


def _print_banner(env: dict[str, str], settings: Settings) -> None:
    print(
        "\n"
        f"  WooStore is running.  Dashboard: http://{settings.api_host}:{settings.api_port}/\n"
        f"  Admin token: {env['WOOSTORE_ADMIN_TOKEN']}\n"
        f"  Event stream: {settings.events_url}\n"
        "  Press Ctrl-C to stop.\n",
        flush=True,
    )


def main() -> None:
    settings = Settings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as running:
        nats_url = settings.nats_url
        if not nats_url:
            nats = start_nats(data_dir / "nats")
            running.callback(nats.stop)
            nats_url = nats.url
        database_url = settings.database_url
        if not database_url:
            postgres = start_postgres(data_dir / "postgres")
            running.callback(postgres.stop)
            database_url = postgres.url
        env = service_environment(settings, nats_url, database_url)
        setup = Path(sys.executable).parent / "woostore-setup"
        if subprocess.run([str(setup)], env=env, check=False).returncode != 0:
            raise SystemExit("woostore-setup failed")
        raise SystemExit(asyncio.run(supervise(env, settings)))
