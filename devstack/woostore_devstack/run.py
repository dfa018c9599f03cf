"""``woostore-run``'s entry point: the launcher without OpenSSL.

The launcher speaks plain HTTP to the services on the loopback and hashes nothing, yet
asyncio, urllib and hashlib load OpenSSL (``ssl``, ``_hashlib``) whenever it is there:
about 4.5 MB of the launcher's memory (docs/benchmarks.md, the footprint of ``make run``).
Kept from loading here, before the launcher's modules are: each importer goes on without it
(hashlib with Python's own digests). The services are processes of their own, with OpenSSL.
"""

from __future__ import annotations

import sys

for _name in ("ssl", "_ssl", "_hashlib"):
    sys.modules.setdefault(_name, None)  # type: ignore[arg-type]

from woostore_devstack.launcher import main  # noqa: E402  (after the lines above, on purpose)

__all__ = ["main"]
