"""Fixtures for the provisioner: the real helm binary, the real chart, a simulated cluster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from woostore_cluster import Cluster
from woostore_cluster.simulated import SimulatedCluster
from woostore_provisioner.recipe import TimeLimits
from woostore_provisioner.runner import Runner
from woostore_shared.backups import BackupStorage
from woostore_shared.db import Database
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import CredentialCipher
from woostore_shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
BASE_DOMAIN = "127.0.0.1.nip.io"
WATCH_INTERVAL = 0.05
LIMITS = TimeLimits(rollout=300)


@pytest.fixture
def helm_binary() -> str:
    binary = REPO / ".tools" / "bin" / "helm"
    assert binary.is_file(), f"the helm binary is missing at {binary} (make tools)"
    return str(binary)


@pytest.fixture
def chart() -> Path:
    return REPO / "helm" / "store"


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Path:
    return tmp_path / "simcluster"


@pytest.fixture
def cluster(cluster_dir: Path, helm_binary: str) -> SimulatedCluster:
    """An instant simulated cluster (time scale 0) with no faults."""
    return SimulatedCluster(cluster_dir, helm_binary=helm_binary, time_scale=0)


@pytest.fixture
def js(nats_client: Client) -> JetStreamContext:
    return nats_client.jetstream()


@pytest.fixture
def outbox(database: Database, nats_client: Client) -> Outbox:
    return Outbox(database, nats_client, source="/woostore/provisioner")


@pytest.fixture
def api_outbox(database: Database, nats_client: Client) -> Outbox:
    return Outbox(database, nats_client, source="/woostore/api")


@pytest.fixture
def cipher(settings: Settings) -> CredentialCipher:
    return CredentialCipher(settings.secret_key.get_secret_value())


@pytest.fixture
def backup_storage(settings: Settings) -> BackupStorage:
    """A folder under the test's data folder, with real restic."""
    return settings.backup_storage()


@pytest.fixture
def make_runner(
    database: Database,
    outbox: Outbox,
    chart: Path,
    cipher: CredentialCipher,
    backup_storage: BackupStorage,
) -> Callable[[Cluster], Runner]:
    def make(
        cluster: Cluster,
        limits: TimeLimits = LIMITS,
        watch_interval: float = WATCH_INTERVAL,
        storage: BackupStorage = backup_storage,
    ) -> Runner:
        return Runner(
            database,
            outbox,
            cluster,
            chart=chart,
            base_domain=BASE_DOMAIN,
            cipher=cipher,
            watch_interval=watch_interval,
            limits=limits,
            backup_storage=storage,
            cause_interval=WATCH_INTERVAL,
        )

    return make
