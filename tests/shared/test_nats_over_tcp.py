"""Each service leaves aiohttp unimported (about 8 MB a process), though it is installed
here: the Kubernetes client requires it and nats-py imports it when it can."""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec

import pytest

SERVICES = ["woostore_api", "woostore_notifier", "woostore_provisioner", "woostore_reaper"]


def test_aiohttp_is_installed_here_so_the_services_would_load_it() -> None:
    assert find_spec("aiohttp") is not None


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_never_imports_aiohttp(service: str) -> None:
    """Its whole program imported in a process of its own, as its console script does."""
    probe = (
        f"import sys, {service}.main, nats.aio.transport as transport; "
        "print(sys.modules.get('aiohttp'), transport.aiohttp)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.split() == ["None", "None"]
