"""``woostore-setup``: migrate the database and declare the JetStream topology.

Run once before the services start (``make run`` does it; in a cluster, an init job).
"""

from __future__ import annotations

import asyncio

from woostore_shared.logging import configure_logging, get_logger
from woostore_shared.messaging import connect
from woostore_shared.migrating import migrate
from woostore_shared.settings import Settings
from woostore_shared.topology import declare, ensure_topology


async def declare_topology(settings: Settings) -> None:
    client = await connect(settings.nats_url, "woostore-setup")
    try:
        await ensure_topology(client.jetstream(), declare(settings))
    finally:
        await client.close()


def main() -> None:
    settings = Settings.load()
    configure_logging(settings, "setup")
    if not settings.nats_url or not settings.database_url:
        raise SystemExit("missing settings: WOOSTORE_NATS_URL and WOOSTORE_DATABASE_URL")
    migrate(settings.database_url)
    asyncio.run(declare_topology(settings))
    get_logger(__name__).info("database migrated and topology declared")
