"""Running the helm binary: argv lists only (never a shell), an environment of its own, and a
deadline that stops it.

``HelmRunner`` is the seam ``HelmReleases`` (``releases.py``, which builds the Kubernetes
driver's helm commands) runs them through; tests replace it with a recording fake.
``SubprocessHelmRunner`` is the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from woostore_cluster.base import PermanentClusterError, TransientClusterError
from woostore_shared.logging import get_logger

log = get_logger(__name__)

# All a child process (helm) inherits: where programs are, its home and helm's own folders
# (HELM_*_HOME: the pod's root filesystem is read-only), the API server's address that the
# in-cluster configuration reads, and proxies. Never the platform's secrets (admin token,
# secret key, database URL), nor KUBECONFIG or HELM_KUBE*/HELM_NAMESPACE: a kubeconfig is
# given as --kubeconfig, and without one helm must act as the pod's ServiceAccount.
INHERITED_VARIABLES = (
    "PATH",
    "HOME",
    "HELM_CACHE_HOME",
    "HELM_CONFIG_HOME",
    "HELM_DATA_HOME",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


def child_environment() -> dict[str, str]:
    """The environment every child process of the cluster seam gets: ``INHERITED_VARIABLES``
    that are set here, nothing else."""
    return {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}


@dataclass(frozen=True)
class HelmResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class HelmRunner(Protocol):
    async def run(self, argv: Sequence[str], timeout: float) -> HelmResult:
        """Run ``argv`` (the binary first). A run longer than ``timeout`` seconds is stopped
        and raises ``TransientClusterError``; a failed command is a result, not an error."""


class SubprocessHelmRunner:
    """Runs helm as a child process, with ``env`` (by default ``child_environment()``, read
    at each run) as its whole environment. On a timeout, or when the caller is cancelled,
    helm is asked to stop (SIGTERM, so it can record the release as failed), then killed
    after ``kill_grace`` seconds: no helm keeps working on a store nobody waits for."""

    def __init__(self, *, kill_grace: float = 10.0, env: Mapping[str, str] | None = None) -> None:
        self.kill_grace = kill_grace
        self.env = dict(env) if env is not None else None

    async def run(self, argv: Sequence[str], timeout: float) -> HelmResult:
        command = " ".join(argv[:2])  # "helm upgrade": never the values or paths
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_environment() if self.env is None else self.env,
            )
        except OSError as error:
            raise PermanentClusterError(f"cannot run {argv[0]}: {error.strerror}") from None
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            await self._stop(process)
            raise TransientClusterError(
                f"{command} did not finish within {timeout:g}s and was stopped", delay=10
            ) from None
        except asyncio.CancelledError:
            await self._stop(process)
            raise
        return HelmResult(
            returncode=process.returncode if process.returncode is not None else -1,
            stdout=stdout.decode(errors="replace"),
            stderr=stderr.decode(errors="replace"),
        )

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), self.kill_grace)
        except TimeoutError:
            log.warning("helm ignored SIGTERM; killing it", pid=process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
