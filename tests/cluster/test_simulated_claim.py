"""What a claim from the warm pool asks of the simulated cluster, which must answer as a real
one would: a new admin password in the store's Secret, an upgrade that changes only the
Ingress (quick, and no pod restarts), and the WP-CLI commands that make the store its
owner's. Real helm, real chart, time scale 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.support import HELM
from woostore_cluster import PermanentClusterError
from woostore_cluster.simulated import SimulatedCluster

NS = "store-pool-7f3a9c"
SECRET = "store-credentials"
CREDENTIALS = {
    "db-password": "db-one",
    "db-root-password": "db-root-one",
    "admin-password": "admin-one",
}


def simulated(state_dir: Path, **faults: str) -> SimulatedCluster:
    return SimulatedCluster(state_dir, helm_binary=str(HELM), time_scale=0, faults=faults)


@pytest.fixture
def cluster(tmp_path: Path) -> SimulatedCluster:
    return simulated(tmp_path / "sim")


# -- the store's Secret ----------------------------------------------------------------------


async def test_update_secret_sets_the_keys_given_and_keeps_the_others(
    cluster: SimulatedCluster,
) -> None:
    await cluster.ensure_namespace(NS, {})
    await cluster.ensure_secret(NS, SECRET, CREDENTIALS)

    await cluster.update_secret(NS, SECRET, {"admin-password": "admin-two"})
    once = await cluster.read_secret(NS, SECRET)
    await cluster.update_secret(NS, SECRET, {"admin-password": "admin-two"})

    assert once == {**CREDENTIALS, "admin-password": "admin-two"}
    assert await cluster.read_secret(NS, SECRET) == once
    # ensure_secret still keeps what is there
    await cluster.ensure_secret(NS, SECRET, CREDENTIALS)
    assert await cluster.read_secret(NS, SECRET) == once


async def test_update_secret_of_a_missing_secret_or_namespace_is_permanent(
    cluster: SimulatedCluster,
) -> None:
    with pytest.raises(PermanentClusterError, match="not found"):
        await cluster.update_secret(NS, SECRET, {"admin-password": "admin-two"})
    await cluster.ensure_namespace(NS, {})

    with pytest.raises(PermanentClusterError, match=f"secret {NS}/{SECRET} not found") as raised:
        await cluster.update_secret(NS, SECRET, {"admin-password": "admin-two"})

    assert "admin-two" not in str(raised.value)
    with pytest.raises(PermanentClusterError, match="not found"):
        await cluster.read_secret(NS, SECRET)  # nothing was made on the way


async def test_update_secret_takes_faults_by_its_own_name(tmp_path: Path) -> None:
    await simulated(tmp_path / "sim").ensure_namespace(NS, {})
    faulty = simulated(tmp_path / "sim", update_secret="error")
    await faulty.ensure_secret(NS, SECRET, CREDENTIALS)

    with pytest.raises(PermanentClusterError, match="update_secret failed: simulated fault"):
        await faulty.update_secret(NS, SECRET, {"admin-password": "admin-two"})

    assert await faulty.read_secret(NS, SECRET) == CREDENTIALS
