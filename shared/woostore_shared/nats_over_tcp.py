"""Keep nats-py from importing aiohttp, which no service uses.

nats-py imports aiohttp, for its WebSocket transport, whenever aiohttp is installed; and it is
installed wherever the Kubernetes client is (kubernetes 37 requires it): in the
provisioner's and the reaper's images, and in the one environment ``make run`` starts every
service from. The services reach NATS over TCP only. Left unimported, aiohttp makes each
service process about 8 MB smaller and its start about 80 ms shorter (docs/benchmarks.md,
the footprint of ``make run``).
"""

from __future__ import annotations

import sys


def skip_websocket_transport() -> None:
    """Make ``import aiohttp`` fail in this process (nats-py then goes without its WebSocket
    transport), unless something imported it already. A service's package calls this first,
    before any of its modules imports nats."""
    sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]
