"""Libraries installed beside the services that no service uses, kept from loading.

Two libraries load themselves into whoever imports a library that knows them, whenever they
are installed:

- **aiohttp**: nats-py imports it for its WebSocket transport. It is installed wherever the
  Kubernetes client is (kubernetes 37 requires it): in the provisioner's and the reaper's
  images, and in the one environment ``make run`` starts every service from. The services
  reach NATS over TCP only. Left unimported, each service process is about 8 MB smaller and
  starts about 80 ms sooner.
- **rich**: structlog's dev module imports it to draw tracebacks. It is installed for the
  ``woostore`` command line, so only in the environment ``make run`` shares with it (the
  services' image has none). Left unimported, each service is about 4 MB smaller, and a
  traceback on its console is structlog's plain one, as in the image.

(docs/benchmarks.md, the footprint of ``make run``.)
"""

from __future__ import annotations

import sys

UNUSED = ("aiohttp", "rich")


def leave_unimported() -> None:
    """Make ``import aiohttp`` and ``import rich`` fail in this process (their importers go
    without them), unless something imported them already. A service's package calls this
    first, before any of its modules imports nats or structlog."""
    for name in UNUSED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
