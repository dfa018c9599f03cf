"""woostore-reaper: enforces deadlines, relays events a writer could not publish, sends lost
work again, keeps the warm pool, and backs stores up on schedule and thins their backups."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import timedelta

from nats.aio.client import Client

from woostore_cluster import connect_cluster
from woostore_reaper import gauges
from woostore_reaper.backups import BackupKeeper, BackupPolicy
from woostore_reaper.leadership import DatabaseReadiness, LeaderLock, reaper_database
from woostore_reaper.pool import PoolTarget, keep_pool
from woostore_reaper.reaping import PASSES, reap_once
from woostore_shared.logging import configure_logging, get_logger
from woostore_shared.messaging import StoppedWaiting, connect, require_connected
from woostore_shared.ops import serve_ops
from woostore_shared.outbox import Outbox
from woostore_shared.settings import Settings
from woostore_shared.topology import declare, ensure_topology
from woostore_shared.tracing import configure_tracing

log = get_logger(__name__)


async def run(settings: Settings) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)

    # /readyz answers from the start, not ready until NATS is reached (it says which).
    nats, db = Client(), reaper_database(settings)
    ops = await serve_ops(
        settings.ops_host,
        settings.ops_port,
        {"database": DatabaseReadiness(db), "nats": lambda: require_connected(nats)},
    )
    try:
        await connect(settings.nats_url, "woostore-reaper", nats)
    except StoppedWaiting:
        await ops.stop()
        return
    outbox = Outbox(db, nats, source="/woostore/reaper")
    deadline = timedelta(seconds=settings.provision_deadline_seconds)
    # Longer than a lease (three watch intervals) and the relay's grace: idle for this long,
    # a store with no message in flight has lost its work.
    grace = timedelta(seconds=2 * settings.ack_wait_seconds)
    event_retention = timedelta(days=settings.event_retention_days) or None  # 0: every event
    leader = LeaderLock(db)
    cluster = connect_cluster(settings)
    topology = declare(settings)
    pool_target = PoolTarget.of(settings)
    backups = BackupKeeper(outbox, BackupPolicy.of(settings))
    log.info("reaper started", deadline_seconds=settings.provision_deadline_seconds)
    while not stopping.is_set():
        try:
            leading = await leader.held()
            gauges.LEADER.set(1 if leading else 0)
            if not leading:
                gauges.forget()
            else:
                await gauges.measure(outbox)
                # Level-triggered down to the broker: a stream lost in a crash is recreated,
                # and the replay below re-publishes the work it held.
                await ensure_topology(nats.jetstream(), topology)
                report = await reap_once(outbox, cluster, deadline, grace, event_retention)
                if any(vars(report).values()):
                    log.info("reaped", **vars(report))
                pool = await keep_pool(outbox, pool_target)
                if any(vars(pool).values()):
                    log.info("warm pool kept", **vars(pool))
                kept = await backups.keep()
                if any(vars(kept).values()):
                    log.info("backups kept", **vars(kept))
                PASSES.labels("done").inc()
        except Exception as error:  # a pass that fails (database restarting) is retried next pass
            PASSES.labels("failed").inc()
            log.warning("reaper pass failed", error=repr(error))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), settings.reaper_interval_seconds)
    await leader.release()
    await ops.stop()
    await outbox.close()
    await nats.close()
    await db.dispose()


def main() -> None:
    settings = Settings.load()
    settings.require_runtime(makes_stores=True)
    configure_logging(settings, "reaper")
    configure_tracing("reaper")
    asyncio.run(run(settings))
