"""What each service's program (and the launcher) loads, imported in a process of its own as
its console script imports it: no library it never uses, where loading one costs memory in
every process (docs/benchmarks.md, the footprint of ``make run``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.machinery import PathFinder

import pytest

from woostore_devstack.launcher import python_options

NEVER_USED = {
    # nats-py loads aiohttp, and structlog rich, whenever installed (unimported.py).
    "woostore_api": {"aiohttp", "rich"},
    "woostore_provisioner": {"aiohttp", "rich"},
    # cryptography encrypts store credentials: the API's and the provisioner's work only.
    # The notifier runs plain statements on psycopg's connections (woostore_notifier/database.py),
    # and names no row but by the words of vocabulary.py.
    "woostore_notifier": {"aiohttp", "cryptography", "rich", "sqlalchemy", "sqlmodel", "yaml"},
    "woostore_reaper": {"aiohttp", "cryptography", "rich"},
}


def loaded_by(service: str) -> set[str]:
    """The top-level packages loaded once ``<service>.main`` is imported."""
    probe = (
        f"import json, sys, {service}.main; "
        "print(json.dumps(sorted({n.split('.')[0] for n, m in sys.modules.items() if m})))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(run.stdout))


def test_what_the_services_never_use_is_installed_here_so_they_could_load_it() -> None:
    """Found on the path, not imported: this process may have loaded a service already,
    which keeps aiohttp from importing."""
    for name in set().union(*NEVER_USED.values()):
        if PathFinder.find_spec(name) is None:
            pytest.fail(
                f"{name} is not installed: the test of what the services load proves nothing"
            )


@pytest.mark.parametrize("service", sorted(NEVER_USED))
def test_a_service_loads_no_library_it_never_uses(service: str) -> None:
    loaded = loaded_by(service)

    assert "nats" in loaded  # it did load its program
    assert not NEVER_USED[service] & loaded


def launcher_probe(without: tuple[str, ...] = ()) -> tuple[list[str], bool, bool]:
    """Import the launcher's entry point as its console script does, in a Python missing the
    modules ``without``: the OpenSSL modules loaded, whether asyncio is, and whether
    libcrypto or libssl is mapped."""
    probe = (
        f"import json, sys; sys.modules.update(dict.fromkeys({list(without)!r})); "
        "import woostore_devstack.run; "
        "maps = open('/proc/self/maps').read(); "
        "print(json.dumps([sorted(n for n in ('ssl', '_ssl', '_hashlib') if sys.modules.get(n)),"
        " 'asyncio' in sys.modules, 'libcrypto' in maps or 'libssl' in maps]))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded, launcher_loaded, openssl_mapped = json.loads(run.stdout)
    return loaded, launcher_loaded, openssl_mapped


def test_the_launcher_runs_without_openssl() -> None:
    """``woostore-run`` speaks plain HTTP on the loopback and hashes little
    (woostore_devstack/run.py): OpenSSL, which asyncio and hashlib load whenever it is there,
    stays out of its memory."""
    loaded, launcher_loaded, openssl_mapped = launcher_probe()

    assert launcher_loaded  # it did load the launcher, which runs on asyncio
    assert (loaded, openssl_mapped) == ([], False)


def test_the_launcher_keeps_hashlibs_openssl_where_python_has_no_digests_of_its_own() -> None:
    """Some builds (FIPS ones) take every digest from OpenSSL: there the launcher still starts
    (``random`` imports SHA-512 from hashlib), with OpenSSL's digests (a review's finding)."""
    loaded, launcher_loaded, _ = launcher_probe(without=("_sha2", "_sha256", "_sha512"))

    assert launcher_loaded
    assert loaded == ["_hashlib"]


@pytest.mark.parametrize("service", ["api", "notifier", "provisioner", "reaper"])
def test_a_service_loads_with_the_python_options_make_run_gives_it(service: str) -> None:
    """``make run`` runs every service but the API with -OO (woostore_devstack/launcher.py):
    a library that needs its docstrings would fail here, at import."""
    options = python_options(service)
    probe = f"import sys, woostore_{service}.main; print(sys.flags.optimize)"
    env = {**os.environ, **options}
    run = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == ("0" if service == "api" else "2")  # the API's OpenAPI needs them
