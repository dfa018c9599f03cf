"""Tests for the helm/store chart, run against the real helm v4 binary.

Fixtures (the helm binary, its throwaway home) are in conftest.py, helpers in chart.py.
Test-only dependencies: pytest, pyyaml, kubernetes-validate.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import pytest

from tests.charts.chart import (
    CHART,
    HOST,
    NAMESPACE,
    PROFILES,
    RELEASE,
    STORE_ID,
    TARGET_K8S_VERSIONS,
    WORKLOAD_KINDS,
    Manifest,
    assert_schema_describes_every_key,
    assert_values_file_is_in_the_schema,
    base_set_args,
    by_kind,
    is_helm_test,
    pod_specs,
    render,
    run_helm,
)

CREDENTIAL_KEYS = {"db-password", "db-root-password", "admin-password"}
REQUIRED_LABELS = {
    "app.kubernetes.io/managed-by": "Helm",
    "app.kubernetes.io/part-of": "woostore",
    "woostore.io/store-id": STORE_ID,
}


# Variants exercise the optional branches of the templates, and the shipped profiles.
VARIANTS: dict[str, list[str]] = {
    **{f"profile-{name}": args for name, args in PROFILES.items()},
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
        "--set-string",
        "wordpress.image.digest=sha256:" + "a" * 64,
        "--set",
        "helmTest.enabled=false",
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


@pytest.mark.parametrize("profile_name", sorted(PROFILES))
def test_helm_lint_strict(helm_env: dict[str, str], profile_name: str) -> None:
    proc = run_helm(
        [
            "lint",
            "--strict",
            str(CHART),
            "--namespace",
            NAMESPACE,
            *base_set_args(),
            *PROFILES[profile_name],
        ],
        helm_env,
    )
    assert proc.returncode == 0, f"helm lint --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout, proc.stdout
    assert "[WARNING]" not in proc.stdout, proc.stdout
    assert "[ERROR]" not in proc.stdout, proc.stdout


def test_profiles_are_files_next_to_values_yaml() -> None:
    for name, args in PROFILES.items():
        if args:
            assert Path(args[-1]) == CHART / f"values-{name}.yaml"
            assert Path(args[-1]).is_file()


@pytest.mark.parametrize("namespace", ["default", "kube-system", "kube-public", "kube-node-lease"])
def test_refuses_to_render_into_a_shared_namespace(
    helm_env: dict[str, str], namespace: str
) -> None:
    # The default-deny NetworkPolicy (empty podSelector) and the ResourceQuota would hit
    # every other pod of a shared namespace.
    proc = run_helm(
        ["template", RELEASE, str(CHART), "--namespace", namespace, *base_set_args()], helm_env
    )
    assert proc.returncode != 0, f"rendering into {namespace} must fail"
    assert f'refusing to install a store into the shared namespace "{namespace}"' in proc.stderr


def test_every_namespaced_resource_is_in_the_release_namespace(rendered: list[Manifest]) -> None:
    for doc in rendered:
        assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]


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
    proc = run_helm(
        ["template", RELEASE, str(CHART), "-n", NAMESPACE, *base_set_args(store_id, host)],
        helm_env,
    )
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
        ["--set-string", "wordpress.image.digest=sha256:short"],
        # null deletes the default label: an empty selector would match every namespace.
        [
            "--set",
            r"networkPolicy.ingressController.namespaceSelector.kubernetes\.io/metadata\.name=null",
        ],
        ["--set-string", "networkPolicy.dns.podSelector.bad key=x"],
        ["--set", "helmTest.runAsUser=0"],
        ["--set-string", "quota.requestsStorage=lots"],
        ["--set-string", "limitRange.container.max.gpu=1"],
        ["--set", "quota.pods=1"],
        ["--set-json", 'networkPolicy.dns.cidrs=["0.0.0.0/0"]'],
        ["--set-json", 'networkPolicy.dns.cidrs=["::/0"]'],
        ["--set-json", 'networkPolicy.dns.cidrs=["169.254.20.10"]'],
        ["--set-string", "wordpress.cron.log=quiet"],
    ],
    ids=[
        "extra-key",
        "bad-store-id",
        "bad-host",
        "empty-store-id",
        "latest-tag",
        "nested-extra-key",
        "bad-digest",
        "ingress-controller-selector-matching-every-namespace",
        "bad-label-key",
        "root-helm-test",
        "bad-quantity",
        "unknown-limit",
        "quota-below-the-chart",
        "dns-to-every-ipv4-address",
        "dns-to-every-ipv6-address",
        "dns-address-without-prefix",
        "unknown-cron-log",
    ],
)
def test_schema_rejects_invalid_values(helm_env: dict[str, str], bad_args: list[str]) -> None:
    # helm applies --set-string after --set, so these override the valid base values.
    proc = run_helm(
        ["template", RELEASE, str(CHART), "-n", NAMESPACE, *base_set_args(), *bad_args], helm_env
    )
    assert proc.returncode != 0, f"values {bad_args} should have been rejected"
    assert "don't meet the specifications of the schema" in proc.stderr, proc.stderr


def test_schema_rejects_numeric_store_id(helm_env: dict[str, str]) -> None:
    # `--set storeId=42` yields an int; callers must pass ids with --set-string.
    proc = run_helm(
        [
            *["template", RELEASE, str(CHART), "-n", NAMESPACE],
            *base_set_args(store_id=None),
            *["--set", "storeId=42"],
        ],
        helm_env,
    )
    assert proc.returncode != 0, "an integer storeId should have been rejected"
    assert "don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert "storeId" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------
# Kubernetes API validity
# --------------------------------------------------------------------------


def test_kubernetes_validate_supports_every_target_version() -> None:
    available = {kv_utils.major_minor(v) for v in kv_utils.all_versions()}
    missing = set(TARGET_K8S_VERSIONS) - available
    assert not missing, (
        f"installed kubernetes-validate has no schemas for {sorted(missing)}; "
        f"it has {sorted(available)}"
    )


@pytest.mark.parametrize("k8s_version", TARGET_K8S_VERSIONS)
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
        + ["ResourceQuota", "LimitRange", "Pod"]
        + ["NetworkPolicy"] * 6
    )
    assert not by_kind(default_docs, "Secret"), "the chart must not create the credentials Secret"
    names = [(d["kind"], d["metadata"]["name"]) for d in default_docs]
    assert len(set(names)) == len(names), "kind/name pairs must be unique"


def test_only_the_helm_test_is_a_hook(rendered: list[Manifest]) -> None:
    # Everything else is a plain release resource (hooks are not upgraded or deleted
    # with the release).
    for doc in rendered:
        annotations = doc["metadata"].get("annotations") or {}
        if doc["kind"] == "Pod":
            assert is_helm_test(doc), doc["metadata"]["name"]
        else:
            assert "helm.sh/hook" not in annotations, doc["metadata"]["name"]


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
    helm_tests = [d for d in rendered if d["kind"] == "Pod"]
    assert len(specs) == 2 + len(helm_tests)
    for workload, spec in specs:
        assert spec.get("automountServiceAccountToken") is False, workload
        for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host_namespace), f"{workload}: {host_namespace}"
        for volume in spec.get("volumes", []):
            assert "hostPath" not in volume, f"{workload}: hostPath volume {volume['name']}"
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
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert ":" in c["image"].split("/")[-1], f"{where}: image tag not pinned"
            assert ":latest" not in c["image"], f"{where}: image uses :latest"
            assert not any("hostPort" in p for p in c.get("ports", [])), f"{where}: hostPort"
        if workload.startswith("Pod/"):
            continue  # the run-to-completion helm test has no probes
        for c in spec["containers"]:
            where = f"{workload} container {c['name']}"
            # WordPress's cron container serves nothing: a readiness probe on it would only
            # take the storefront out of its Service.
            if c["name"] != "cron":
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
    assert wp["image"] == "ghcr.io/woostore/wordpress-woocommerce:7.1.2-wc11.2.0"
    assert db["image"].startswith("mariadb:")
    for spec in (deploy["spec"]["template"]["spec"], sts["spec"]["template"]["spec"]):
        assert spec["automountServiceAccountToken"] is False


def secret_refs(spec: Manifest) -> set[tuple[str, str]]:
    """(Secret name, key) pairs a pod reads, through env or through secret volumes."""
    refs = {
        (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for c in spec.get("initContainers", []) + spec["containers"]
        for env in c.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            items = volume["secret"].get("items")
            assert items, f"secret volume {volume['name']} must list the keys it needs"
            refs |= {(volume["secret"]["secretName"], item["key"]) for item in items}
    return refs


def test_no_plaintext_secrets(rendered: list[Manifest]) -> None:
    secret_names = set()
    for workload, spec in pod_specs(rendered):
        for c in spec.get("initContainers", []) + spec["containers"]:
            for env in c.get("env", []):
                looks_secret = any(w in env["name"] for w in ("PASSWORD", "SECRET", "TOKEN", "KEY"))
                if looks_secret and env["name"].endswith("_FILE"):
                    assert env["value"].startswith("/run/secrets/"), f"{workload}: {env}"
                elif looks_secret:
                    assert "value" not in env, f"{workload}: {env['name']} has a literal value"
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["key"] in CREDENTIAL_KEYS, f"{workload}: {env['name']}"
            assert not c.get("envFrom"), f"{workload}: envFrom not expected"
        for name, key in secret_refs(spec):
            assert key in CREDENTIAL_KEYS, f"{workload}: {name}/{key}"
            secret_names.add(name)
    assert len(secret_names) == 1, secret_names
    assert not by_kind(rendered, "Secret")


def test_each_pod_reads_only_the_credentials_it_needs(default_docs: list[Manifest]) -> None:
    specs = dict(pod_specs(default_docs))
    # Not the admin password: WP-CLI is given it on stdin, and a pod's copy would outlive it
    # (a store claimed from the warm pool gets a new one without a restart).
    assert secret_refs(specs[f"Deployment/{RELEASE}-wordpress"]) == {
        ("store-credentials", "db-password")
    }
    assert secret_refs(specs[f"StatefulSet/{RELEASE}-mariadb"]) == {
        ("store-credentials", "db-password"),
        ("store-credentials", "db-root-password"),
    }
    assert secret_refs(specs[f"Pod/{RELEASE}-test-storefront"]) == set()


def test_mariadb_reads_its_passwords_from_files(default_docs: list[Manifest]) -> None:
    (sts,) = by_kind(default_docs, "StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    (db,) = spec["containers"]
    env = {e["name"]: e for e in db["env"]}
    assert not any("valueFrom" in e for e in env.values()), "no secret in MariaDB's environment"
    assert "MARIADB_PASSWORD" not in env
    assert "MARIADB_ROOT_PASSWORD" not in env
    mounts = {m["name"]: m for m in db["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    (secret_volume,) = [v for v in volumes.values() if "secret" in v]
    mount = mounts[secret_volume["name"]]
    assert mount.get("readOnly") is True
    paths = {item["key"]: item["path"] for item in secret_volume["secret"]["items"]}
    assert env["MARIADB_PASSWORD_FILE"]["value"] == f"{mount['mountPath']}/{paths['db-password']}"
    assert (
        env["MARIADB_ROOT_PASSWORD_FILE"]["value"]
        == f"{mount['mountPath']}/{paths['db-root-password']}"
    )
    # Readable by the mysql group (fsGroup) only.
    assert secret_volume["secret"]["defaultMode"] & 0o007 == 0


def test_credentials_secret_name_comes_from_values(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, "--set-string", "credentialsSecret=custom-creds")
    refs = set().union(*(secret_refs(spec) for _, spec in pod_specs(docs)))
    # The admin password stays in the Secret for the platform alone: no pod reads it.
    assert refs == {("custom-creds", k) for k in CREDENTIAL_KEYS - {"admin-password"}}


def test_image_digest_pins_the_image(helm_env: dict[str, str]) -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    docs = render(helm_env, "--set-string", f"mariadb.image.digest={digest}")
    images = {where: spec["containers"][0]["image"] for where, spec in pod_specs(docs)}
    assert images[f"StatefulSet/{RELEASE}-mariadb"] == f"mariadb:11.4@{digest}"
    assert "@" not in images[f"Deployment/{RELEASE}-wordpress"]


def test_images_are_pulled_always_except_in_the_local_profile(
    profile_docs: dict[str, list[Manifest]],
) -> None:
    for name, docs in profile_docs.items():
        expected = "IfNotPresent" if name == "local" else "Always"
        for where, spec in pod_specs(docs):
            for c in spec["containers"]:
                assert c["imagePullPolicy"] == expected, f"{name}: {where}"


def test_schema_describes_every_key_and_rejects_unknown_ones() -> None:
    assert_schema_describes_every_key(CHART, at_least=50)


@pytest.mark.parametrize("values_file", ["values.yaml", "values-local.yaml", "values-prod.yaml"])
def test_every_key_of_every_values_file_is_in_the_schema(values_file: str) -> None:
    assert_values_file_is_in_the_schema(CHART, values_file)


def test_a_profile_with_an_unknown_key_is_rejected(
    helm_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "values-typo.yaml"
    bad.write_text((CHART / "values-prod.yaml").read_text() + "\nquota:\n  pod: 4\n")
    proc = run_helm(
        [
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            *base_set_args(),
            "-f",
            str(bad),
        ],
        helm_env,
    )
    assert proc.returncode != 0
    assert "additional properties 'pod' not allowed" in proc.stderr, proc.stderr
