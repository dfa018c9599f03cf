"""A store's Helm release: every helm command the Kubernetes driver runs on it.

``HelmReleases`` builds each argv, runs it through a ``HelmRunner`` (``helm.py``), recovers a
release a crash left pending, reads the release's status and history, and turns helm's
failures into ``ClusterError``s. It never reaches the Kubernetes API: checking the namespace
and holding our rights in it stay with the driver (``kubernetes.py``), which does that before
it calls here.

Secrets never reach argv: the store's values go into a private file, and hold none (the chart
names the store's Secret). See docs/kubernetes.md, "The helm commands".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from woostore_cluster.base import (
    ClusterError,
    PermanentClusterError,
    Release,
    ReleaseRevision,
    TransientClusterError,
)
from woostore_cluster.helm import HelmResult, HelmRunner
from woostore_shared.logging import get_logger

log = get_logger(__name__)

# helm's words for a failure that a later attempt may not meet.
_HELM_TRANSIENT = re.compile(
    r"another operation \(install/upgrade/rollback\) is in progress"
    r"|context deadline exceeded|timed out waiting|rate limiter|client rate limiter"
    r"|kubernetes cluster unreachable|connection refused|connection reset|i/o timeout"
    r"|tls handshake timeout|no route to host|server is currently unable"
    r"|too many requests|etcdserver|the object has been modified|unexpected eof|\beof\b"
    r"|status: inprogress|resource not ready",
    re.IGNORECASE,
)
_HELM_NOT_FOUND = re.compile(r"release: not found|release not found", re.IGNORECASE)
_PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
_GOOD = ("deployed", "superseded")
_CHART_VERSION = re.compile(r"^.*?-(\d+\.\d+\.\d+\S*)$")
# helm's description of a revision its rollback made (helm/pkg/action/rollback.go); a
# rollback that failed is described otherwise, and is no revision to return to anyway.
_ROLLBACK_TO = re.compile(r"Rollback to (\d+)")
HELM_GRACE_SECONDS = 30.0  # helm stops itself at its --timeout; it is stopped this much later
READ_SECONDS = 60.0  # helm status and history: reads, which wait for nothing
UNINSTALL_SECONDS = 240.0  # helm uninstall's --timeout: its resources gone, volumes included


def install_seconds(timeout: float, grace: float = HELM_GRACE_SECONDS) -> float:
    """The longest ``HelmReleases.install(release, timeout)`` takes: reading the release
    (status, and history when a crash left it pending), clearing what the crash left (one
    wait), and the upgrade, whose --rollback-on-failure waits as long again as the upgrade
    did; each helm run stopped ``grace`` after its own limit. A step running it must allow
    this, or it cuts a rollback half-way."""
    reads = 2 * (READ_SECONDS + grace)
    return reads + (timeout + grace) + (2 * timeout + grace)


def rollback_seconds(timeout: float, grace: float = HELM_GRACE_SECONDS) -> float:
    """The longest ``HelmReleases.rollback(..., timeout)`` takes."""
    return timeout + grace


def uninstall_seconds(
    timeout: float = UNINSTALL_SECONDS, grace: float = HELM_GRACE_SECONDS
) -> float:
    """The longest ``HelmReleases.uninstall(..., timeout)`` takes."""
    return timeout + grace


# Runs while ``helm upgrade`` waits, until cancelled, keeping in the list it is given what
# stops the rollout for good (a pod stuck on a bad image): helm itself only says it timed out.
PodWatcher = Callable[[list[str]], Coroutine[Any, Any, None]]


class HelmReleases:
    """The helm commands on a store's release, each ``--namespace`` the store's and, outside a
    pod, ``--kubeconfig``; each stopped ``grace`` seconds after its own ``--timeout`` should
    have ended it."""

    def __init__(
        self,
        runner: HelmRunner,
        *,
        kubeconfig: Path | None,
        helm_binary: str = "helm",
        grace: float = HELM_GRACE_SECONDS,
    ) -> None:
        self.runner = runner
        # None: in a pod, with its ServiceAccount; helm then gets no --kubeconfig and uses
        # the in-cluster configuration itself. Required, so that no caller gets the pod's
        # identity by forgetting to pass a kubeconfig.
        self.kubeconfig = kubeconfig
        self.helm_binary = helm_binary
        self.grace = grace  # helm stops itself at --timeout; we stop helm this much later

    async def install(self, release: Release, timeout: float, watch_pods: PodWatcher) -> None:
        """``helm upgrade --install``, after clearing what a crash left pending; a helm timeout
        while ``watch_pods`` saw a pod stuck for good is permanent, with the pod's reason."""
        await self._recover_pending(release, timeout)
        with _values_file(release.values) as values:
            argv = self.upgrade_argv(release, values, timeout)
            problems: list[str] = []
            watcher = asyncio.create_task(watch_pods(problems))
            try:
                # --rollback-on-failure: after a --timeout spent waiting, the rollback waits
                # as long again, in the same helm run.
                result = await self.runner.run(argv, 2 * timeout + self.grace)
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
        if not result.ok:
            error = _helm_error("upgrade --install", release.namespace, release.name, result)
            if isinstance(error, TransientClusterError) and problems:
                raise PermanentClusterError(f"{error}; {problems[0]}") from None
            raise error

    def upgrade_argv(self, release: Release, values: Path, timeout: float) -> list[str]:
        return [
            self.helm_binary, "upgrade", "--install", release.name, str(release.chart),
            "--namespace", release.namespace,
            *self._kubeconfig_flags(),
            # Profiles first, the store's own values last: the right-most file wins.
            *[arg for path in release.values_files for arg in ("--values", str(path))],
            "--values", str(values),
            "--rollback-on-failure",
            "--wait=watcher",
            "--timeout", _seconds(timeout),
        ]  # fmt: skip

    async def history(self, namespace: str, name: str) -> list[ReleaseRevision]:
        """The release's revisions, oldest first; none without a release."""
        result = await self._run("history", [name], namespace, ["-o", "json"], READ_SECONDS)
        if not result.ok:
            if _HELM_NOT_FOUND.search(result.stderr):
                return []
            raise _helm_error("history", namespace, name, result)
        try:
            revisions = json.loads(result.stdout or "[]")
        except ValueError:
            raise PermanentClusterError("helm history printed something that is not JSON") from None
        return sorted(
            (
                ReleaseRevision(
                    revision=int(r["revision"]),
                    chart_version=_chart_version(str(r.get("chart", ""))),
                    status=str(r.get("status", "")),
                    rolled_back_to=_rolled_back_to(str(r.get("description", ""))),
                )
                for r in revisions
                if isinstance(r, dict) and "revision" in r
            ),
            key=lambda r: r.revision,
        )

    async def rollback(self, namespace: str, name: str, revision: int, timeout: float) -> None:
        flags = ["--wait=watcher", "--timeout", _seconds(timeout)]
        result = await self._run("rollback", [name, str(revision)], namespace, flags, timeout)
        if not result.ok:
            raise _helm_error("rollback", namespace, name, result)

    async def uninstall(self, namespace: str, name: str, timeout: float) -> None:
        """Idempotent: a release already gone is no error."""
        flags = ["--wait=watcher", "--timeout", _seconds(timeout), "--ignore-not-found"]
        result = await self._run("uninstall", [name], namespace, flags, timeout)
        if not result.ok and not _HELM_NOT_FOUND.search(result.stderr):
            raise _helm_error("uninstall", namespace, name, result)

    async def _recover_pending(self, release: Release, timeout: float) -> None:
        """Clear what a crash left behind, which would block every later helm operation."""
        name, namespace = release.name, release.namespace
        status = await self._status(namespace, name)
        if status not in (*_PENDING, "uninstalling", "failed"):
            return  # no release yet, or one helm can upgrade as it is
        log.warning("recovering release", namespace=namespace, release=name, status=status)
        if status in ("pending-install", "uninstalling"):
            await self.uninstall(namespace, name, timeout)
            return
        good = await self._last_good_revision(namespace, name)
        if good is None:
            # Nothing ever worked (a failed first install): start again from nothing.
            await self.uninstall(namespace, name, timeout)
        elif status != "failed":  # helm upgrades a failed release over a good one by itself
            flags = ["--timeout", _seconds(timeout)]
            result = await self._run("rollback", [name, str(good)], namespace, flags, timeout)
            if not result.ok:
                raise _helm_error("rollback", namespace, name, result)

    async def _status(self, namespace: str, name: str) -> str | None:
        """The release's status (``deployed``, ``pending-install``...), None without one."""
        result = await self._run("status", [name], namespace, ["-o", "json"], READ_SECONDS)
        if not result.ok:
            if _HELM_NOT_FOUND.search(result.stderr):
                return None
            raise _helm_error("status", namespace, name, result)
        info = _parse_json(result.stdout, "helm status").get("info") or {}
        status = info.get("status")
        return str(status) if status else None

    async def _last_good_revision(self, namespace: str, name: str) -> int | None:
        good = [r.revision for r in await self.history(namespace, name) if r.status in _GOOD]
        return max(good) if good else None

    async def _run(
        self,
        verb: str,
        positional: Sequence[str],
        namespace: str,
        flags: Sequence[str],
        timeout: float,
    ) -> HelmResult:
        """``helm <verb> <positional...> --namespace <ns> [--kubeconfig <path>] <flags...>``."""
        argv = [
            self.helm_binary, verb, *positional,
            "--namespace", namespace,
            *self._kubeconfig_flags(),
            *flags,
        ]  # fmt: skip
        return await self.runner.run(argv, timeout + self.grace)

    def _kubeconfig_flags(self) -> list[str]:
        """``--kubeconfig <path>``; nothing in-cluster, where helm (client-go) finds no
        kubeconfig and uses the pod's ServiceAccount, re-reading its token file."""
        return [] if self.kubeconfig is None else ["--kubeconfig", str(self.kubeconfig)]


def _chart_version(chart: str) -> str:
    """``store-0.2.0`` (helm history's ``chart``: name-version) -> ``0.2.0``; the version is
    what follows the last hyphen that starts a semantic version."""
    found = _CHART_VERSION.match(chart)
    return found.group(1) if found else chart


def _rolled_back_to(description: str) -> int | None:
    found = _ROLLBACK_TO.fullmatch(description)
    return int(found.group(1)) if found else None


def _helm_error(verb: str, namespace: str, name: str, result: HelmResult) -> ClusterError:
    """Transient when helm's words say it may pass (a lock held, a timeout, an unreachable
    cluster), permanent otherwise (an invalid chart or values, a refused manifest)."""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    reason = (lines[-1] if lines else f"exit code {result.returncode}").removeprefix("Error: ")
    message = f"helm {verb} of {namespace}/{name} failed: {reason[:400]}"
    if _HELM_TRANSIENT.search(result.stderr):
        return TransientClusterError(message, 10)
    return PermanentClusterError(message)


def _seconds(timeout: float) -> str:
    return f"{max(1, round(timeout))}s"


def _parse_json(text: str, what: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except ValueError:
        raise PermanentClusterError(f"{what} printed something that is not JSON") from None
    return parsed if isinstance(parsed, dict) else {}


@contextlib.contextmanager
def _values_file(values: Mapping[str, Any]) -> Iterator[Path]:
    """The release's values in a file only we can read (0600), removed afterwards. JSON is
    YAML; unescaped, because helm's YAML parser refuses the surrogate pairs JSON escapes
    emoji to."""
    fd, name = tempfile.mkstemp(prefix="woostore-values-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(dict(values), file, ensure_ascii=False)
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
