"""The reaper's tools: an outbox on real PostgreSQL and NATS, its database as the reaper has
it (one connection: a pass holding it while it asked for another would fail), and an
instant simulated cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from woostore_cluster.simulated import SimulatedCluster
from woostore_reaper.leadership import reaper_database
from woostore_shared.db import Database
from woostore_shared.outbox import Outbox
from woostore_shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster(tmp_path: Path) -> SimulatedCluster:
    helm = REPO / ".tools" / "bin" / "helm"
    return SimulatedCluster(tmp_path / "simcluster", helm_binary=str(helm), time_scale=0)


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = reaper_database(settings)
    yield db
    await db.dispose()


@pytest.fixture
def outbox(database: Database, nats_client: Client) -> Outbox:
    return Outbox(database, nats_client, source="/woostore/reaper")
