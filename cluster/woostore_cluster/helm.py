"""Running the helm binary: argv lists only (never a shell), with a deadline that stops it.

``HelmRunner`` is the seam the Kubernetes driver calls; tests replace it with a recording
fake. ``SubprocessHelmRunner`` is the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from woostore_cluster.base import PermanentClusterError, TransientClusterError
from woostore_shared.logging import get_logger

log = get_logger(__name__)


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
    """Runs helm as a child process. On a timeout, or when the caller is cancelled, helm is
    asked to stop (SIGTERM, so it can record the release as failed), then killed after
    ``kill_grace`` seconds: no helm keeps working on a store nobody waits for."""

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
                env=self.env,
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
