"""checkov over the store chart: the gate passes, its waivers are justified and narrow, and
the gate can fail.

Three checkov runs, started together once per module (each takes several seconds):

- "gate": the documented command, `checkov -d helm/store --framework helm`, run from the
  repository root with helm on PATH. checkov renders the chart itself and applies
  helm/store/.checkov.yaml (var-file, skip-check): zero failed checks required.
- "unwaived": `--framework kubernetes` over the chart rendered with each values profile,
  with no configuration at all: every finding must be one of the waived checks, on exactly
  the resources its waiver names (so a waiver can neither hide a new finding nor go stale).
- "bad": the gate on a copy of the chart whose containers are privileged: it must fail.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import yaml

from tests.charts.chart import CHART, PROFILES, RELEASE, REPO, render_text
from tests.charts.checkov_runs import (
    CheckovRun,
    checkov_env,
    findings,
    finish,
    resource_of,
    start_checkov,
    stop,
    waived_checks,
    waiver_reasons,
)

CONFIG = CHART / ".checkov.yaml"
# The gate renders into this namespace (the chart refuses "default").
SCAN_NAMESPACE = "store-checkov-scan"

WORDPRESS = ("Deployment", f"{RELEASE}-wordpress")
MARIADB = ("StatefulSet", f"{RELEASE}-mariadb")
HELM_TEST = ("Pod", f"{RELEASE}-test-storefront")

# Each waived check of .checkov.yaml and the only resources it may fail on.
WAIVER_SCOPE: dict[str, set[tuple[str, str]]] = {
    "CKV_K8S_43": {WORDPRESS, MARIADB, HELM_TEST},  # image digest
    "CKV_K8S_40": {WORDPRESS, MARIADB},  # high UID
    "CKV_K8S_35": {WORDPRESS},  # secrets as files
    "CKV_K8S_8": {HELM_TEST},  # liveness probe
    "CKV_K8S_9": {HELM_TEST, WORDPRESS},  # readiness probe (WordPress's: its cron container)
}
# values-local.yaml pulls IfNotPresent, for images side-loaded into kind/k3d. Not waived in
# .checkov.yaml (that would cover every profile): the laptop profile is not under the gate.
LOCAL_PROFILE_FINDINGS = {("CKV_K8S_15", resource) for resource in (WORDPRESS, MARIADB, HELM_TEST)}


@pytest.fixture(scope="module")
def checkov_runs(
    helm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, CheckovRun]]:
    base = tmp_path_factory.mktemp("checkov")
    home = base / "home"
    home.mkdir()
    env = checkov_env(helm_env, home, SCAN_NAMESPACE)

    rendered = base / "rendered"
    rendered.mkdir()
    for name, args in PROFILES.items():
        (rendered / f"{name}.yaml").write_text(render_text(helm_env, *args))

    bad = base / "bad" / CHART.name
    shutil.copytree(CHART, bad)
    helpers = bad / "templates" / "_helpers.tpl"
    text = helpers.read_text()
    assert "privileged: false" in text
    helpers.write_text(text.replace("privileged: false", "privileged: true"))

    procs = {
        "gate": start_checkov(
            ["--directory", str(CHART.relative_to(REPO)), "--framework", "helm"], REPO, env
        ),
        # --skip-download: offline; cwd and HOME hold no .checkov.yaml, so nothing is skipped.
        "unwaived": start_checkov(
            ["--directory", str(rendered), "--framework", "kubernetes", "--skip-download"],
            base,
            env,
        ),
        "bad": start_checkov(["--directory", str(bad), "--framework", "helm"], REPO, env),
    }
    try:
        yield {name: finish(proc) for name, proc in procs.items()}
    finally:
        stop(procs)


# --------------------------------------------------------------------------
# the waiver file
# --------------------------------------------------------------------------


def test_every_waiver_says_why_in_one_line() -> None:
    waived = waived_checks(CONFIG)
    assert waived, "no waivers: then drop skip-check from .checkov.yaml and this test"
    reasons = waiver_reasons(CONFIG)
    assert sorted(reasons) == sorted(waived), "each skip-check entry needs a # reason"
    for check, reason in reasons.items():
        assert len(reason) >= 40, f"{check}: the reason is too short to say why: {reason!r}"
    assert len(set(waived)) == len(waived)


def test_waiver_scopes_here_match_the_waiver_file() -> None:
    assert set(waived_checks(CONFIG)) == set(WAIVER_SCOPE)


def test_the_gate_renders_with_the_config_values() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["skip-download"] is True
    for var_file in config["var-file"]:
        assert (REPO / var_file).is_file(), var_file
        values = yaml.safe_load((REPO / var_file).read_text())
        assert {"storeId", "host"} <= set(values)


# --------------------------------------------------------------------------
# the runs
# --------------------------------------------------------------------------


def test_gate_passes_with_zero_failed_checks(checkov_runs: dict[str, CheckovRun]) -> None:
    gate = checkov_runs["gate"]
    failed = sorted(findings(gate.checks("failed")))
    assert not failed, f"checkov failed checks: {failed}\n{gate.stderr[-2000:]}"
    assert gate.returncode == 0, gate.stderr[-2000:]
    assert gate.summary("parsing_errors") == 0


def test_gate_really_scanned_the_rendered_chart(checkov_runs: dict[str, CheckovRun]) -> None:
    # checkov reports nothing (and exits 0) when helm cannot render the chart: make sure it did.
    gate = checkov_runs["gate"]
    passed = gate.checks("passed")
    assert len(passed) > 150, gate.stderr[-2000:]
    resources = {resource_of(c) for c in passed}
    kinds = {kind for kind, _, _ in resources}
    assert {"Deployment", "StatefulSet", "Pod", "Service", "Ingress"} <= kinds
    assert {ns for _, ns, _ in resources} == {SCAN_NAMESPACE}
    assert any(name.endswith("-test-storefront") for kind, _, name in resources if kind == "Pod")
    # The NetworkPolicies are there: every pod is covered by one (CKV2_K8S_6).
    assert any(c["check_id"] == "CKV2_K8S_6" for c in passed)


@pytest.mark.parametrize("profile_name", sorted(PROFILES))
def test_unwaived_findings_are_exactly_the_waived_checks_on_their_resources(
    checkov_runs: dict[str, CheckovRun], profile_name: str
) -> None:
    run = checkov_runs["unwaived"]
    in_file = [c for c in run.checks("failed") if c["file_path"] == f"/{profile_name}.yaml"]
    expected = {(check, res) for check, scope in WAIVER_SCOPE.items() for res in scope}
    if profile_name == "local":
        expected |= LOCAL_PROFILE_FINDINGS
    actual = findings(in_file)
    assert actual == expected, (
        f"not waived (or outside its waiver's scope): {sorted(actual - expected)}\n"
        f"no longer failing (stale waiver scope): {sorted(expected - actual)}"
    )


def test_unwaived_run_scanned_every_profile(checkov_runs: dict[str, CheckovRun]) -> None:
    run = checkov_runs["unwaived"]
    assert run.summary("parsing_errors") == 0
    for name in PROFILES:
        passed = [c for c in run.checks("passed") if c["file_path"] == f"/{name}.yaml"]
        assert len(passed) > 150, f"{name}: only {len(passed)} passed checks"


def test_a_privileged_container_fails_the_gate(checkov_runs: dict[str, CheckovRun]) -> None:
    bad = checkov_runs["bad"]
    assert bad.returncode != 0, "the gate must fail on a chart with privileged containers"
    privileged = {res for check, res in findings(bad.checks("failed")) if check == "CKV_K8S_16"}
    assert {kind for kind, _ in privileged} == {"Deployment", "StatefulSet", "Pod"}, privileged
