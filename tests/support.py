"""Helpers several test packages share: stores made as the API makes them, what the
STORES stream holds, an ASGI app served by a real uvicorn inside the test's loop, and the
modules that ship, for the tests that read the code for a rule."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import uvicorn
from nats.aio.client import Client
from nats.js.api import RawStreamMsg

from woostore_shared import lifecycle
from woostore_shared.access import new_key
from woostore_shared.db import Database
from woostore_shared.models import DEFAULT_TENANT_ID, ApiKey, Role, Store, StoreBackup
from woostore_shared.outbox import Outbox
from woostore_shared.settings import Settings
from woostore_shared.store_settings import StoreSettings
from woostore_shared.topology import STREAM_NAME
from woostore_shared.unit_of_work import UnitOfWork

REPO = Path(__file__).resolve().parents[1]
PRODUCTION_CODE = [
    *REPO.glob("services/*/woostore_*/**/*.py"),
    *REPO.glob("shared/woostore_shared/**/*.py"),
    *REPO.glob("cluster/woostore_cluster/**/*.py"),
    *REPO.glob("devstack/woostore_devstack/**/*.py"),
    *REPO.glob("cli/woostore_cli/**/*.py"),
]

# What every test's services run with (the `settings` fixture): long enough for a service to
# start (MIN_SECRET_BYTES), and plainly not real.
ADMIN_TOKEN = "test-admin-token-long-enough-to-start"
SECRET_KEY = "test-secret-key-long-enough-to-start"


# What a store gets when neither its owner nor the operator chose otherwise.
DEFAULT_SETTINGS = Settings().store_defaults


async def create_store(outbox: Outbox, name: str = "Acme Coffee") -> Store:
    """What the API does for POST /stores: a queued store and its ``requested`` event."""
    async with UnitOfWork.begin(outbox) as uow:
        store = await lifecycle.request(
            uow,
            tenant_id=DEFAULT_TENANT_ID,
            name=name,
            slug=f"{re.sub(r'[^a-z0-9]+', '-', name.lower())}-{uuid.uuid4().hex[:6]}",
            type="woocommerce",
            simulated=True,
            settings=DEFAULT_SETTINGS,
        )
    return store


async def create_copy(outbox: Outbox, backup_id: uuid.UUID) -> Store:
    """What the API does for POST /stores with ``from_backup``: a queued store made from the
    backup, in its store's tenant."""
    async with UnitOfWork.begin(outbox) as uow:
        backup = await uow.session.get(StoreBackup, backup_id)
        assert backup is not None
        source = await uow.session.get(Store, backup.store_id)
        assert source is not None
        return await lifecycle.request(
            uow, tenant_id=source.tenant_id, name="Copy", slug=f"copy-{uuid.uuid4().hex[:6]}",
            type="woocommerce", simulated=True, settings=DEFAULT_SETTINGS, from_backup=backup,
        )  # fmt: skip


async def add_pooled_store(
    outbox: Outbox,
    *,
    name: str = "Warm pool store",
    chart_version: str | None = None,
    base_domain: str = Settings().base_domain,
) -> Store:
    """A store made for the warm pool, as the reaper and provisioner make one: requested for
    no tenant, provisioned (its release on ``chart_version``, the platform's unless told, its
    host under ``base_domain``) and pooled, through the lifecycle."""
    async with UnitOfWork.begin(outbox) as uow:
        store = await lifecycle.request(
            uow,
            tenant_id=None,
            name=name,
            slug=f"pool-{uuid.uuid4().hex[:8]}",
            type="woocommerce",
            simulated=True,
            settings=DEFAULT_SETTINGS,
        )
    async with UnitOfWork.begin(outbox) as uow:
        store = await lifecycle.start(uow, store.id)
        store.chart_version = chart_version or Settings().store_chart_version
        store.release_revision = 1
        url = f"http://{store.slug}.{base_domain}"
        store = await lifecycle.make_ready(
            uow, store.id, storefront_url=url, admin_url=f"{url}/wp-admin/"
        )
    return store


async def claim_pooled_store(
    outbox: Outbox,
    name: str,
    slug: str,
    *,
    settings: StoreSettings = DEFAULT_SETTINGS,
    chart_version: str | None = None,
) -> Store:
    """What POST /stores does with a pooled store that fits (the platform's chart unless
    told): the oldest one, claimed for the default tenant; the test fails if none fits."""
    async with UnitOfWork.begin(outbox) as uow:
        claimed = await lifecycle.claim(
            uow,
            tenant_id=DEFAULT_TENANT_ID,
            name=name,
            slug=slug,
            type="woocommerce",
            simulated=True,
            chart_version=chart_version or Settings().store_chart_version,
            base_domain=Settings().base_domain,
            settings=settings,
        )
    assert claimed is not None, "no pooled store fits the claim"
    return claimed


async def add_key(
    database: Database,
    name: str,
    role: Role = Role.ADMIN,
    tenant_id: uuid.UUID = DEFAULT_TENANT_ID,
) -> tuple[ApiKey, str]:
    """An API key (of the default tenant unless told), as POST /keys makes it; returns it and
    its token."""
    issued = new_key()
    key = ApiKey(
        tenant_id=tenant_id,
        name=name,
        role=role,
        prefix=issued.prefix,
        secret_sha256=issued.secret_sha256,
        created_by="tests",
    )
    async with database.session() as session:
        session.add(key)
        await session.commit()
        await session.refresh(key)
    return key, issued.token


async def stream_messages(
    nats: Client, store_id: object | None = None, stream: str = STREAM_NAME
) -> list[RawStreamMsg]:
    """Every message a stream (STORES unless told) holds, about one store if given, in order."""
    js = nats.jetstream()
    state = (await js.stream_info(stream)).state
    if state.messages == 0:
        return []
    messages = [await js.get_msg(stream, seq) for seq in range(state.first_seq, state.last_seq + 1)]
    if store_id is None:
        return messages
    return [m for m in messages if (m.subject or "").endswith(f".{store_id}")]


def envelope(message: RawStreamMsg) -> dict[str, Any]:
    """The CloudEvent a stream message carries."""
    assert message.data is not None
    body: dict[str, Any] = json.loads(message.data)
    return body


class _InLoopServer(uvicorn.Server):
    """The test, not uvicorn, owns the process's signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def served(app: Any, start_deadline: float = 20.0) -> AsyncIterator[str]:
    """Serve ``app`` on a free port; yields its base URL. An SSE response never ends, and an
    in-process ASGI transport hands a response over only once the app has finished it."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="on", timeout_graceful_shutdown=3
    )
    server = _InLoopServer(config)
    task = asyncio.create_task(server.serve())
    give_up = time.monotonic() + start_deadline
    while not server.started:
        if task.done():
            task.result()  # raises why the server could not start
            pytest.fail("the server stopped before it started")
        if time.monotonic() > give_up:
            pytest.fail("the server did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


def still_runs(pid: int) -> bool:
    """Whether process ``pid`` still runs. One that ended but is not reaped yet (a zombie)
    does not: make and PostgreSQL's postmaster run detached, and whoever adopted them reaps
    them in its time."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def until(condition: Callable[[], bool], what: str, deadline: float = 20.0) -> None:
    """Poll ``condition`` (what it waits for sets no event here) until it holds; fail naming
    ``what`` after ``deadline`` seconds."""
    give_up = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


def alter_stored_data(data_dir: Path, store_id: uuid.UUID | str) -> None:
    """Flip a byte in the middle of every pack of the store's restic repository (the embedded
    default's, under ``data_dir``), as failing storage might: restic finds it as it reads its
    data back. (Its cache holds indexes and trees, not data, and a read without it finds the
    trees altered too.)"""
    for pack in (data_dir / "backups" / "stores" / str(store_id) / "data").glob("*/*"):
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0xFF
        pack.chmod(0o600)  # restic writes its packs read-only
        pack.write_bytes(bytes(data))
