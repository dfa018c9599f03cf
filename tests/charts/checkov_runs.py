"""Running checkov over a chart, for the store and platform chart tests: start runs in the
background, read their JSON reports, and name findings by (check id, (kind, name))."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.chart import HELM

CHECKOV = Path(sys.executable).parent / "checkov"
CHECKOV_TIMEOUT = 300

Finding = tuple[str, tuple[str, str]]  # (check id, (kind, name))


@dataclass
class CheckovRun:
    returncode: int
    reports: list[dict[str, Any]]
    stderr: str

    def checks(self, outcome: str) -> list[dict[str, Any]]:
        return [c for r in self.reports for c in r.get("results", {}).get(f"{outcome}_checks", [])]

    def summary(self, key: str) -> int:
        return sum(int(r.get("summary", {}).get(key, 0)) for r in self.reports)


def resource_of(check: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) of a check result's "Kind.namespace.name[.labels]" id."""
    kind, namespace, rest = check["resource"].split(".", 2)
    return kind, namespace, rest.split(".", 1)[0]


def findings(checks: list[dict[str, Any]]) -> set[Finding]:
    found = set()
    for c in checks:
        kind, _, name = resource_of(c)
        found.add((c["check_id"], (kind, name)))
    return found


def checkov_env(helm_env: dict[str, str], home: Path, namespace: str) -> dict[str, str]:
    """helm on PATH, the namespace checkov's `helm template` renders into, and a HOME of
    its own: no ~/.checkov.yaml of whoever runs the tests can change the outcome."""
    return {
        **helm_env,
        "PATH": f"{HELM.parent}{os.pathsep}{helm_env.get('PATH', '')}",
        "HELM_NAMESPACE": namespace,
        "HOME": str(home),
        "LOG_LEVEL": "WARNING",
    }


def start_checkov(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    assert CHECKOV.is_file(), f"checkov is not installed in the project venv ({CHECKOV})"
    return subprocess.Popen(
        [str(CHECKOV), *args, "--output", "json"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> CheckovRun:
    try:
        stdout, stderr = proc.communicate(timeout=CHECKOV_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"checkov did not finish within {CHECKOV_TIMEOUT}s")
    assert stdout.strip(), f"checkov printed no report (exit {proc.returncode}):\n{stderr}"
    parsed = json.loads(stdout)
    reports = parsed if isinstance(parsed, list) else [parsed]
    return CheckovRun(proc.returncode, reports, stderr)


def stop(procs: dict[str, subprocess.Popen[str]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def waived_checks(config: Path) -> list[str]:
    skipped: list[str] = yaml.safe_load(config.read_text())["skip-check"]
    return skipped


def waiver_reasons(config: Path) -> dict[str, str]:
    """The "# reason" comment of each skip-check entry of a .checkov.yaml."""
    reasons = {}
    for line in config.read_text().splitlines():
        match = re.match(r"^\s+-\s+(CKV2?_K8S_\d+)\s+#\s*(\S.*)$", line)
        if match:
            reasons[match.group(1)] = match.group(2)
    return reasons
