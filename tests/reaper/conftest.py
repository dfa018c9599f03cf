"""The reaper's tools: an outbox on real PostgreSQL and NATS, and an instant simulated cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.client import Client

from woostore_cluster.simulated import SimulatedCluster
from woostore_shared.db import Database
from woostore_shared.outbox import Outbox

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster(tmp_path: Path) -> SimulatedCluster:
    helm = REPO / ".tools" / "bin" / "helm"
    return SimulatedCluster(tmp_path / "simcluster", helm_binary=str(helm), time_scale=0)


@pytest.fixture
def outbox(database: Database, nats_client: Client) -> Outbox:
    return Outbox(database, nats_client, source="/woostore/reaper")
