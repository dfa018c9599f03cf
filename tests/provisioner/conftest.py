"""Fixtures for the provisioner: the real helm binary, the real chart, a simulated cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from woostore_provisioner.cluster.simulated import SimulatedCluster

REPO = Path(__file__).resolve().parents[2]


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
