"""woostore-provisioner: consumes store requests and runs each store's recipe on a cluster."""

from __future__ import annotations

import asyncio

from faststream import FastStream
from faststream.nats import NatsBroker
from nats.errors import ConnectionReconnectingError

from woostore_cluster import connect_cluster
from woostore_provisioner.handlers import build_router
from woostore_provisioner.recipe import TimeLimits
from woostore_provisioner.runner import Runner
from woostore_shared.db import Database
from woostore_shared.logging import (
    broker_logger,
    configure_logging,
    get_logger,
    name_each_message,
)
from woostore_shared.messaging import require_connected, servers, staying_connected
from woostore_shared.ops import serve_ops
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import CredentialCipher
from woostore_shared.settings import Settings
from woostore_shared.topology import declare, ensure_topology
from woostore_shared.tracing import configure_tracing

log = get_logger(__name__)
HAND_BACK_GRACE = 10.0  # seconds to settle the messages in flight on SIGTERM


def build_app(settings: Settings) -> FastStream:
    broker = NatsBroker(servers(settings.nats_url), logger=broker_logger(), **staying_connected())
    topology = declare(settings)
    broker.include_router(build_router(topology))
    db = Database.of_service(settings, "woostore-provisioner")
    app = FastStream(broker, logger=broker_logger())
    name_each_message(broker)

    @app.on_startup
    async def wire() -> None:
        # /readyz answers from the start, not ready until NATS is reached (it says which).
        await serve_ops(
            settings.ops_host,
            settings.ops_port,
            {"database": db.ping, "nats": lambda: require_connected(broker.connection)},
        )
        # Connect first: the topology must exist before the subscribers bind to it.
        await broker.connect()
        js = broker.connection.jetstream()
        await ensure_topology(js, topology)
        cluster = connect_cluster(settings)
        runner = Runner(
            db,
            Outbox(db, broker.connection, source="/woostore/provisioner"),
            cluster,
            chart=settings.store_chart,
            values_files=settings.store_values_files,
            base_domain=settings.base_domain,
            cipher=CredentialCipher(settings.secret_key.get_secret_value()),
            watch_interval=settings.ack_wait_seconds / 3,
            cause_interval=settings.cause_poll_seconds,
            limits=TimeLimits(rollout=settings.rollout_timeout_seconds),
            backup_storage=settings.backup_storage(),
        )
        app.context.set_global("runner", runner)
        log.info("provisioner starting", cluster=settings.cluster_mode.value)

    @app.on_shutdown
    async def hand_back_work() -> None:
        # Runs before the broker closes its subscriptions and connection (which it does
        # without waiting for concurrent handlers): steps in flight stop at once and their
        # messages are nak'd while the connection can still carry the nak.
        runner: Runner | None = app.context.get("runner")
        if runner is not None:
            await runner.stop(grace=HAND_BACK_GRACE)
            await runner.outbox.close()

    @app.after_shutdown
    async def close() -> None:
        await db.dispose()

    return app


def main() -> None:
    settings = Settings.load()
    settings.require_runtime()
    configure_logging(settings, "provisioner")
    configure_tracing("provisioner")
    try:
        asyncio.run(build_app(settings).run())
    except ConnectionReconnectingError:
        # Raised by the broker's drain as it stops: NATS was gone at that moment. What was
        # in flight was handed back before (HAND_BACK_GRACE), or is redelivered after.
        log.warning("stopped while NATS was unreachable: the broker could not drain")
