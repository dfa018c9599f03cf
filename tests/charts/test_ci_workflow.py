""".github/workflows/images.yml, which cannot run here (no Docker engine): `make check` lints
it (zizmor, GitHub's workflow schema) and hadolint lints the Dockerfiles; these tests hold it
to what the project runs elsewhere: the kind set-up and the real-cluster suite it drives, the
images cluster-up.sh and the charts name, and least privilege."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.charts.chart import REPO
from tests.charts.kind import CLUSTER_UP, KIND, script_variable

WORKFLOW = REPO / ".github" / "workflows" / "images.yml"
DIAGNOSE = KIND / "diagnose.sh"
RELEASE_TAG = "startsWith(github.ref, 'refs/tags/v')"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    # PyYAML reads the key `on` as True (YAML 1.1): give it its name back.
    return {("on" if key is True else key): value for key, value in loaded.items()}


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_it_runs_on_pushes_pull_requests_and_release_tags(workflow: dict[str, Any]) -> None:
    triggers = workflow["on"]
    assert triggers["push"]["tags"] == ["v*"]
    assert "pull_request" in triggers
    assert "pull_request_target" not in triggers  # never a fork's code with our token


def test_every_job_has_only_what_it_needs(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {}
    jobs = workflow["jobs"]
    assert {name: job["permissions"] for name, job in jobs.items()} == {
        "lint": {"contents": "read"},
        "kind": {"contents": "read"},
        "publish": {"packages": "write"},
    }
    for name, job in jobs.items():
        assert job.get("timeout-minutes"), f"{name}: a hung cluster must not hold a runner 6 h"


def test_every_action_is_pinned_by_commit_with_its_version_beside_it() -> None:
    uses = re.findall(r"^\s+(?:- )?uses: (\S+)(.*)$", WORKFLOW.read_text(), re.MULTILINE)
    assert uses
    for action, comment in uses:
        assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", action), f"{action}: pin a commit"
        assert re.fullmatch(r" # v\d+\.\d+\.\d+", comment), f"{action}: say its version"


def test_checkouts_keep_no_credentials_and_nothing_is_cached(workflow: dict[str, Any]) -> None:
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            action = step.get("uses", "")
            if action.startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, name
            if action.startswith(("astral-sh/setup-uv@", "actions/setup-go@")):
                cache = step["with"].get("enable-cache", step["with"].get("cache"))
                assert cache is False, f"{name}: {action} caches"


def test_the_kind_job_runs_cluster_up_and_the_real_cluster_suite(
    workflow: dict[str, Any],
) -> None:
    kind = workflow["jobs"]["kind"]
    script = runs(kind)
    assert "make cluster-up" in script
    assert 'export WOOSTORE_E2E_KUBECONFIG="$RUNNER_TEMP/kubeconfig"' in script
    assert 'kind get kubeconfig --name "$CLUSTER_NAME" > "$WOOSTORE_E2E_KUBECONFIG"' in script
    assert "uv run --frozen pytest tests/e2e_kubernetes" in script
    assert (REPO / "tests" / "e2e_kubernetes" / "test_real_cluster.py").is_file()
    assert workflow["env"]["CLUSTER_NAME"] == "woostore"  # cluster-up.sh's default name
    assert "CLUSTER_NAME=${CLUSTER_NAME:-woostore}" in CLUSTER_UP.read_text()


def test_the_kind_job_builds_the_images_cluster_up_runs(workflow: dict[str, Any]) -> None:
    script = runs(workflow["jobs"]["kind"])
    services = re.search(r"^SERVICES=\(([^)]*)\)$", CLUSTER_UP.read_text(), re.MULTILINE)
    assert services
    for loop in re.findall(r"for service in ([^;]+); do", script):
        assert loop.split() == services.group(1).split()
    assert '--tag "woostore/platform:$service-dev"' in script
    assert (script_variable("IMAGE_REPOSITORY"), script_variable("IMAGE_TAG")) == (
        "woostore/platform",
        "dev",
    )
    # The WordPress image under the name cluster-up.sh loads and helm/store runs.
    assert "sed -n 's/^WORDPRESS_IMAGE=//p' deploy/kind/cluster-up.sh" in script
    assert 'docker build --tag "$image" deploy/images/wordpress' in script


def test_kind_is_the_release_the_node_image_was_built_for(workflow: dict[str, Any]) -> None:
    built_for = re.search(r"built for kind (v\d+\.\d+\.\d+)", (KIND / "cluster.yaml").read_text())
    assert built_for, "deploy/kind/cluster.yaml says which kind release its node image is for"
    assert workflow["env"]["KIND_VERSION"] == built_for.group(1)


def test_a_failure_shows_the_cluster(workflow: dict[str, Any]) -> None:
    on_failure = [s for s in workflow["jobs"]["kind"]["steps"] if s.get("if") == "failure()"]
    assert any(s.get("run") == "deploy/kind/diagnose.sh" for s in on_failure)
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in on_failure)
    bash = shutil.which("bash")
    assert bash
    proc = subprocess.run([bash, "-n", str(DIAGNOSE)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert os.access(DIAGNOSE, os.X_OK)


def test_diagnose_lists_the_pinned_versions_first() -> None:
    """What docs/kubernetes.md says to check first when the workflow fails."""
    bash = shutil.which("bash")
    assert bash
    proc = subprocess.run(
        [bash, str(DIAGNOSE), "versions"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},  # not GITHUB_ACTIONS: plain headings
        timeout=30,
        check=False,
    )
    out = proc.stdout
    assert "ARG WORDPRESS_IMAGE=wordpress:" in out
    assert out.count("ARG WOOCOMMERCE_VERSION=") == 1
    assert f"TRAEFIK_CHART_VERSION={script_variable('TRAEFIK_CHART_VERSION')}" in out
    assert "image: kindest/node:v1." in out
    docs = (REPO / "docs" / "kubernetes.md").read_text()
    assert "### When the workflow fails" in docs
    for pin in ("WORDPRESS_IMAGE", "WOOCOMMERCE_VERSION", "kindest/node", "TRAEFIK_CHART_VERSION"):
        assert pin in docs.split("### When the workflow fails", 1)[1], pin


def test_only_a_release_tag_publishes_and_only_what_was_tested(
    workflow: dict[str, Any],
) -> None:
    jobs = workflow["jobs"]
    publish = jobs["publish"]
    assert publish["if"] == RELEASE_TAG
    assert set(publish["needs"]) == {"lint", "kind"}
    assert not any("docker build" in step.get("run", "") for step in publish["steps"])
    saved = [s for s in jobs["kind"]["steps"] if s.get("if") == RELEASE_TAG]
    assert [s.get("uses", "").split("@")[0] for s in saved][-1] == "actions/upload-artifact"
    # A tag that is not the chart's appVersion would publish images the chart never runs.
    assert jobs["kind"]["steps"][1]["name"] == "A release tag names the chart's version"
    assert "helm/platform/Chart.yaml" in jobs["kind"]["steps"][1]["run"]
    # As helm/platform names the services' images: "<repository>:<service>-<version>".
    assert 'target="ghcr.io/$owner/platform:${image#woostore/platform:}"' in runs(publish)
    assert "target=${target%-dev}-$version" in runs(publish)


def test_make_check_lints_the_workflows_and_both_dockerfiles() -> None:
    makefile = (REPO / "Makefile").read_text()
    check = re.search(r"^check: (.*)$", makefile, re.MULTILINE)
    assert check
    assert "lint-deploy" in check.group(1).split()
    recipe = re.search(r"^lint-deploy:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe
    lines = recipe.group(1)
    assert "zizmor --offline --no-progress .github/workflows" in lines
    assert "check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/" in lines
    assert (
        "hadolint --no-color deploy/images/wordpress/Dockerfile deploy/images/services.Dockerfile"
        in lines
    )
