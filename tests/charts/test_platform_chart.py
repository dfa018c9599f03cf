"""Tests of helm/platform (the WooStore platform on Kubernetes) and of what deploys it: the
kind cluster script, the WordPress image's agreement with helm/store, and docker-compose.

The chart is rendered with the real helm v4 (fixtures in conftest.py, helpers in chart.py),
validated against Kubernetes' own schemas (kubernetes-validate) and checked by checkov with
its waivers in helm/platform/.checkov.yaml. Nothing here needs Docker or a cluster.
"""

from __future__ import annotations

import base64
import math
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.charts import netpol
from tests.charts.admission import Request, admits
from tests.charts.chart import (
    CHART,
    PLATFORM_CHART,
    REPO,
    TARGET_K8S_VERSIONS,
    Manifest,
    assert_schema_describes_every_key,
    assert_values_file_is_in_the_schema,
    by_kind,
    is_helm_test,
    one,
    pods,
    quantity,
    render,
    render_platform,
    run_helm,
    template_output,
)
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
from tests.charts.kind import CLUSTER_UP, KIND, script_variable
from tests.charts.netpol import Endpoint, namespace_labels
from woostore_cluster import INSTALLATION_LABEL, MANAGED_BY, STORE_ID_LABEL
from woostore_cluster.base import STORE_ACCESS_BINDING
from woostore_devstack.launcher import python_options
from woostore_shared.connecting import MAX_CONNECTIONS
from woostore_shared.settings import Settings

RELEASE = "woostore"
NAMESPACE = "woostore"
SERVICES = ("api", "notifier", "provisioner", "reaper")
PORTS = {"api": 8000, "notifier": 8001}  # the public ones, named "http"
OPS_PORT = 9000  # every service's /healthz, /readyz and /metrics, named "ops"
CLUSTER_SERVICES = ("provisioner", "reaper")  # the ones that reach the cluster
SECRET = f"{RELEASE}-secrets"

PROFILES: dict[str, list[str]] = {
    "defaults": [],
    "local": ["--values", str(PLATFORM_CHART / "values-local.yaml")],
    "prod": ["--values", str(PLATFORM_CHART / "values-prod.yaml")],
}


def set_values(*assignments: str) -> list[str]:
    """`helm --set` arguments, one per "key=value"."""
    return [arg for assignment in assignments for arg in ("--set", assignment)]


EXTERNAL_DEPS = set_values(
    "nats.enabled=false",
    "nats.url=nats://nats.nats.svc:4222",
    "postgresql.enabled=false",
    "secrets.existingSecret=mine",
)
# Addresses of the NetworkPolicy model below (documentation ranges, and kind's).
API_SERVER = "172.18.0.2"
LOAD_BALANCER = "198.51.100.10"
PROXY = "192.0.2.80"
EXTERNAL_POSTGRESQL = "192.0.2.54"
# The provisioner's and the reaper's egress narrowed to the API server and the stores' load
# balancer, and an HTTP proxy the provisioner may use.
EGRESS_NARROWED = [
    "--set-json",
    f'networkPolicy.egress.apiServer.cidrs=["{API_SERVER}/32"]',
    "--set-json",
    f'networkPolicy.egress.storefront.cidrs=["{LOAD_BALANCER}/32"]',
    "--set-json",
    "networkPolicy.egress.extraEgress.provisioner="
    f'[{{"to": [{{"ipBlock": {{"cidr": "{PROXY}/32"}}}}], "ports": [{{"port": 3128}}]}}]',
]
# The shipped profiles, and the optional branches of the templates.
VARIANTS: dict[str, list[str]] = {
    **{f"profile-{name}": args for name, args in PROFILES.items()},
    "simulated": set_values("cluster.mode=simulated"),
    "ingress-nginx-tls": set_values(
        "ingress.controller=ingress-nginx", "ingress.className=nginx", "ingress.tls.enabled=true"
    ),
    "f5-nginx": set_values("ingress.controller=nginx", "ingress.className=nginx"),
    "external-deps": EXTERNAL_DEPS,
    "bare": set_values(
        "ingress.enabled=false",
        "networkPolicy.enabled=false",
        "podDisruptionBudget.enabled=false",
        "helmTest.enabled=false",
        "rbac.create=false",
    ),
    "digests-and-monitoring": set_values(
        "image.digests.api=sha256:" + "a" * 64,
        "nats.image.digest=sha256:" + "b" * 64,
        "metrics.serviceMonitor.enabled=true",
    ),
    "egress-narrowed": EGRESS_NARROWED,
}
# Custom resources: not in Kubernetes' schemas (checked by shape in their own test).
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("traefik.io/v1alpha1", "Middleware"),  # the body limit (tests/charts/test_platform_edge.py)
}
CLUSTER_SCOPED_KINDS = {
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}
# Names of variables holding a secret (WOOSTORE_SECRET_KEY by SECRET; KEY alone would take
# the limits on API keys, WOOSTORE_TENANT_KEY_LIMIT, for one).
SENSITIVE = re.compile(r"TOKEN|SECRET|PASSWORD|DATABASE_URL")


def template_fails(env: dict[str, str], *extra: str) -> str:
    """stderr of a `helm template` that must fail."""
    proc = run_helm(
        ["template", RELEASE, str(PLATFORM_CHART), "--namespace", NAMESPACE, *extra], env
    )
    assert proc.returncode != 0, f"helm template {extra} should have failed"
    return proc.stderr


@pytest.fixture(scope="module")
def variants(helm_env: dict[str, str]) -> dict[str, list[Manifest]]:
    return {name: render_platform(helm_env, *args) for name, args in VARIANTS.items()}


@pytest.fixture(scope="module")
def default_docs(variants: dict[str, list[Manifest]]) -> list[Manifest]:
    return variants["profile-defaults"]


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def deployment(docs: list[Manifest], service: str) -> Manifest:
    return one(docs, "Deployment", f"{RELEASE}-{service}")


def container(workload: Manifest) -> Manifest:
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    found: Manifest = c
    return found


def wordpress_container(store_docs: list[Manifest]) -> Manifest:
    """The store's WordPress container (its pod's other is `cron`)."""
    (wp,) = by_kind(store_docs, "Deployment")
    (c,) = [c for c in wp["spec"]["template"]["spec"]["containers"] if c["name"] == "wordpress"]
    found: Manifest = c
    return found


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def mount_of(workload: Manifest, volume: str) -> Manifest:
    """The mount of `volume` in the workload's only container."""
    (mount,) = [m for m in container(workload)["volumeMounts"] if m["name"] == volume]
    found: Manifest = mount
    return found


def env_of(c: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in c.get("env", [])}


def all_containers(docs: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for where, _, spec in pods(docs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            yield f"{where} container {c['name']}", c


# --------------------------------------------------------------------------
# lint, schema, values files
# --------------------------------------------------------------------------


@pytest.mark.parametrize("profile_name", sorted(PROFILES))
def test_helm_lint_strict(helm_env: dict[str, str], profile_name: str) -> None:
    proc = run_helm(
        [
            "lint",
            "--strict",
            str(PLATFORM_CHART),
            "--namespace",
            NAMESPACE,
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
            assert Path(args[-1]) == PLATFORM_CHART / f"values-{name}.yaml"
            assert Path(args[-1]).is_file()


def test_schema_describes_every_key_and_rejects_unknown_ones() -> None:
    assert_schema_describes_every_key(PLATFORM_CHART, at_least=60)


@pytest.mark.parametrize("values_file", ["values.yaml", "values-local.yaml", "values-prod.yaml"])
def test_every_key_of_every_values_file_is_in_the_schema(values_file: str) -> None:
    assert_values_file_is_in_the_schema(PLATFORM_CHART, values_file)


@pytest.mark.parametrize(
    "bad_args",
    [
        ["--set-string", "unexpectedKey=1"],
        ["--set-string", "api.unknown=1"],
        ["--set-string", "ingress.events.unknown=1"],
        ["--set-string", "image.tag=latest"],
        ["--set-string", "nats.image.tag=latest"],
        ["--set-string", "image.digests.api=sha256:short"],
        ["--set-string", "image.digests.worker=sha256:" + "a" * 64],
        ["--set-string", "ingress.controller=haproxy"],
        ["--set-string", "ingress.host=not a host"],
        ["--set-string", "cluster.mode=docker"],
        ["--set", "provisioner.replicas=0"],
        ["--set", "reaper.replicas=0"],
        ["--set-string", "api.resources.limits.cpu=lots"],
        ["--set", "nats.enabled=false"],
        ["--set", "postgresql.enabled=false"],
        ["--set-string", "secrets.existingSecret=mine"],
        ["--set", "nats.enabled=false", "--set-string", "nats.url=nats://user:pass@nats:4222"],
        set_values("nats.urlFromSecret=true"),
        set_values("nats.enabled=false", "nats.urlFromSecret=true", "postgresql.enabled=false"),
        [*EXTERNAL_DEPS, "--set", "nats.urlFromSecret=true"],
        [
            "--set",
            r"networkPolicy.ingressController.namespaceSelector.kubernetes\.io/metadata\.name=null",
        ],
        ["--set-json", 'stores.valuesFiles=["values-local.yaml"]'],
        ["--set-string", "settings.logLevel=LOUD"],
        ["--set", "nats.streamReplicas=3"],
        ["--set-string", "backups.proxy=http://user:pass@proxy.internal:3128"],
        ["--set-string", "backups.checkShare=a tenth"],
        ["--set-string", "backups.checkShare=150%"],
    ],
    ids=[
        "extra-key",
        "nested-extra-key",
        "events-extra-key",
        "latest-tag",
        "latest-dependency-tag",
        "bad-digest",
        "digest-of-no-service",
        "unknown-controller",
        "bad-host",
        "unknown-cluster-mode",
        "no-provisioner",
        "no-reaper",
        "bad-quantity",
        "external-nats-without-url",
        "external-postgresql-without-secret",
        "own-secret-with-in-chart-postgresql",
        "credentials-in-the-nats-url",
        "secret-nats-url-for-the-in-chart-nats",
        "secret-nats-url-without-a-secret",
        "secret-nats-url-and-a-plain-one",
        "ingress-controller-selector-matching-every-namespace",
        "relative-store-values-file",
        "unknown-log-level",
        "three-copies-on-the-in-chart-single-nats",
        "credentials-in-the-backup-proxy",  # plain values: a password would be on show
        "backup-check-share-restic-would-refuse",
        "backup-check-share-over-all-of-it",
    ],
)
def test_schema_rejects_invalid_values(helm_env: dict[str, str], bad_args: list[str]) -> None:
    stderr = template_fails(helm_env, *bad_args)
    assert "don't meet the specifications of the schema" in stderr, stderr


def test_a_profile_with_an_unknown_key_is_rejected(
    helm_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "values-typo.yaml"
    bad.write_text(
        (PLATFORM_CHART / "values-prod.yaml").read_text() + "\nprovisioner:\n  replica: 4\n"
    )
    stderr = template_fails(helm_env, "--values", str(bad))
    assert "additional properties 'replica' not allowed" in stderr, stderr


# --------------------------------------------------------------------------
# Kubernetes API validity
# --------------------------------------------------------------------------


@pytest.mark.parametrize("k8s_version", TARGET_K8S_VERSIONS)
def test_manifests_validate_strictly(
    variants: dict[str, list[Manifest]], variant: str, k8s_version: str
) -> None:
    errors: list[str] = []
    for doc in variants[variant]:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        try:
            used = kubernetes_validate.validate(doc, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.absolute_path)
            errors.append(f"{name} at /{path}: {exc.message[:300]}")
            continue
        if used != k8s_version:
            errors.append(f"{name} validated against {used}, wanted {k8s_version}")
    if errors:
        pytest.fail(f"{variant}: invalid for Kubernetes {k8s_version}:\n" + "\n".join(errors))


def test_resources_are_unique_and_in_the_release_namespace(
    variants: dict[str, list[Manifest]], variant: str
) -> None:
    docs = variants[variant]
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(set(names)) == len(names), "kind/name pairs must be unique"
    for doc in docs:
        expected = None if doc["kind"] in CLUSTER_SCOPED_KINDS else NAMESPACE
        assert doc["metadata"].get("namespace") == expected, doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "woostore"


def test_expected_resources_are_rendered(default_docs: list[Manifest]) -> None:
    kinds = sorted(d["kind"] for d in default_docs)
    assert kinds == sorted(
        ["Deployment"] * 4 + ["Service"] * 6 + ["PodDisruptionBudget"] * 4
        + ["ServiceAccount"] * 4 + ["StatefulSet"] * 2 + ["ConfigMap"] * 2
        + ["Secret", "Job", "Pod"] + ["Ingress"] * 2 + ["Middleware"] + ["NetworkPolicy"] * 9
        + ["ClusterRole"] * 4 + ["ClusterRoleBinding"] * 3
        + ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"] * 2
    )  # fmt: skip


def test_only_the_setup_job_and_the_helm_test_are_hooks(
    variants: dict[str, list[Manifest]], variant: str
) -> None:
    for doc in variants[variant]:
        hook = (doc["metadata"].get("annotations") or {}).get("helm.sh/hook")
        if doc["kind"] == "Pod":
            assert is_helm_test(doc)
        elif doc["kind"] == "Job":
            assert hook is not None
        else:
            assert hook is None, doc["metadata"]["name"]


# --------------------------------------------------------------------------
# security posture
# --------------------------------------------------------------------------


def test_every_pod_is_hardened(variants: dict[str, list[Manifest]], variant: str) -> None:
    docs = variants[variant]
    found = pods(docs)
    assert len(found) >= 4
    for where, _, spec in found:
        assert spec.get("enableServiceLinks") is False, where
        for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host_namespace), f"{where}: {host_namespace}"
        for volume in spec.get("volumes", []):
            assert "hostPath" not in volume, f"{where}: hostPath volume {volume['name']}"
        pod_sc = spec.get("securityContext") or {}
        assert pod_sc.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        for c in spec.get("initContainers", []) + spec["containers"]:
            at = f"{where} container {c['name']}"
            sc = c.get("securityContext") or {}
            effective = {**pod_sc, **sc}
            assert effective.get("runAsNonRoot") is True, at
            assert isinstance(effective.get("runAsUser"), int), at
            assert effective["runAsUser"] > 0, at
            assert sc.get("allowPrivilegeEscalation") is False, at
            assert sc.get("privileged", False) is False, at
            assert sc.get("capabilities") == {"drop": ["ALL"]}, at
            assert effective.get("seccompProfile", {}).get("type") == "RuntimeDefault", at
            assert sc.get("readOnlyRootFilesystem") is True, at
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert c["resources"][section][resource], f"{at}: {section}.{resource}"
            image = c["image"].split("@")[0]
            assert ":" in image.split("/")[-1], f"{at}: image tag not pinned"
            assert not image.endswith(":latest"), f"{at}: image uses :latest"
            assert not any("hostPort" in p for p in c.get("ports", [])), f"{at}: hostPort"


def test_long_running_containers_have_probes(
    variants: dict[str, list[Manifest]], variant: str
) -> None:
    for doc in variants[variant]:
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert c.get(probe), f"{where}: {probe}"


def test_services_probe_healthz_and_readyz_on_their_ops_port(
    default_docs: list[Manifest],
) -> None:
    for service in SERVICES:
        c = container(deployment(default_docs, service))
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        public = {"http": PORTS[service]} if service in PORTS else {}
        assert ports == {**public, "ops": OPS_PORT}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
        assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
        svc = one(default_docs, "Service", f"{RELEASE}-{service}")
        svc_ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
        assert svc_ports == {name: (port, name) for name, port in ports.items()}


def test_a_stopping_api_or_notifier_pod_serves_on_while_traffic_turns_away_from_it(
    helm_env: dict[str, str], default_docs: list[Manifest]
) -> None:
    """Kubernetes takes a pod out of its Service's endpoints as it sends SIGTERM: the
    ingress controller and kube-proxy went on sending it requests for a moment, which the
    server, already stopping, refused (errors in every rollout, a readiness review)."""
    for service in SERVICES:
        lifecycle = container(deployment(default_docs, service)).get("lifecycle")
        if service in PORTS:
            assert lifecycle == {"preStop": {"sleep": {"seconds": 5}}}, service
        else:
            assert lifecycle is None, f"{service} serves nobody: it stops at once"
    slower = render_platform(helm_env, *set_values("api.shutdownDelaySeconds=15"))
    assert container(deployment(slower, "api"))["lifecycle"]["preStop"]["sleep"] == {"seconds": 15}
    none = render_platform(helm_env, *set_values("notifier.shutdownDelaySeconds=0"))
    assert "lifecycle" not in container(deployment(none, "notifier"))
    # Past the pods' 30 s grace, the sleep would leave no time to stop.
    stderr = template_fails(helm_env, *set_values("api.shutdownDelaySeconds=25"))
    assert "shutdownDelaySeconds" in stderr


def test_only_the_provisioner_and_reaper_mount_a_token_and_only_for_real_stores(
    variants: dict[str, list[Manifest]], variant: str
) -> None:
    docs = variants[variant]
    real = "simulated" not in variant
    for where, _, spec in pods(docs):
        component = where.split("/")[1].removeprefix(f"{RELEASE}-")
        expected = real and component in CLUSTER_SERVICES
        assert spec.get("automountServiceAccountToken") is expected, where
    for sa in by_kind(docs, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


def test_services_share_one_repository_with_a_tag_per_service(
    variants: dict[str, list[Manifest]],
) -> None:
    docs = variants["profile-defaults"]
    for service in SERVICES:
        assert container(deployment(docs, service))["image"] == (
            f"ghcr.io/woostore/platform:{service}-0.1.0"
        )
    setup = container(one(docs, "Job", f"{RELEASE}-setup"))
    assert setup["image"] == "ghcr.io/woostore/platform:api-0.1.0"
    assert setup["command"] == ["woostore-setup"]
    local = variants["profile-local"]
    assert container(deployment(local, "reaper"))["image"] == "woostore/platform:reaper-dev"
    pinned = variants["digests-and-monitoring"]
    assert container(deployment(pinned, "api"))["image"] == (
        "ghcr.io/woostore/platform:api-0.1.0@sha256:" + "a" * 64
    )
    assert "@" not in container(deployment(pinned, "notifier"))["image"]


def test_images_are_pulled_always_except_in_the_local_profile(
    variants: dict[str, list[Manifest]],
) -> None:
    for profile in PROFILES:
        expected = "IfNotPresent" if profile == "local" else "Always"
        for where, c in all_containers(variants[f"profile-{profile}"]):
            assert c["imagePullPolicy"] == expected, f"{profile}: {where}"


# --------------------------------------------------------------------------
# settings and secrets
# --------------------------------------------------------------------------


def test_every_woostore_variable_is_a_setting(
    variants: dict[str, list[Manifest]], variant: str
) -> None:
    # A misspelt variable would be ignored silently (the settings ignore unknown ones).
    known = {f"WOOSTORE_{name.upper()}" for name in Settings.model_fields}
    for where, c in all_containers(variants[variant]):
        for name in env_of(c):
            if name.startswith("WOOSTORE_"):
                assert name in known, f"{where}: {name} is not a field of Settings"


def test_each_service_gets_the_settings_it_requires(default_docs: list[Manifest]) -> None:
    required = {"WOOSTORE_NATS_URL", "WOOSTORE_DATABASE_URL", "WOOSTORE_ADMIN_TOKEN"}
    required |= {"WOOSTORE_SECRET_KEY", "WOOSTORE_CLUSTER", "WOOSTORE_LOG_FORMAT"}
    for service in SERVICES:
        assert required <= set(env_of(container(deployment(default_docs, service)))), service
    setup = env_of(container(one(default_docs, "Job", f"{RELEASE}-setup")))
    assert {"WOOSTORE_NATS_URL", "WOOSTORE_DATABASE_URL"} <= set(setup)
    assert not {"WOOSTORE_ADMIN_TOKEN", "WOOSTORE_SECRET_KEY"} & set(setup)


def test_every_documented_limit_is_a_chart_value(default_docs: list[Manifest]) -> None:
    # An operator tunes the limits of docs/access.md through the chart, not by patching pods.
    limits = (REPO / "docs" / "access.md").read_text().split("## Limits", 1)[1].split("\n## ")[0]
    documented = set(re.findall(r"`(WOOSTORE_[A-Z_]+)`", limits))
    assert len(documented) >= 10
    for service in ("api", "notifier"):
        assert documented <= set(env_of(container(deployment(default_docs, service)))), service


def test_settings_that_shape_the_topology_agree_everywhere(
    variants: dict[str, list[Manifest]], variant: str
) -> None:
    """Streams and consumers declared differently by the setup Job and a service would
    fight: each upgrade's setup would undo the services' (and drop events past a smaller
    bound). Every one of them declares the topology, so every one is told all of it."""
    docs = variants[variant]
    declaring = [container(deployment(docs, s)) for s in SERVICES]
    declaring.append(container(one(docs, "Job", f"{RELEASE}-setup")))
    for name in (
        "WOOSTORE_MAX_STORES_IN_FLIGHT",
        "WOOSTORE_ACK_WAIT_SECONDS",
        "WOOSTORE_JETSTREAM_REPLICAS",
        "WOOSTORE_EVENTS_STREAM_MAX_BYTES",
    ):
        values = [env_of(c).get(name, {}).get("value") for c in declaring]
        assert None not in values, f"{name}: {values}"
        assert len(set(values)) == 1, f"{name}: {values}"


def test_the_production_profile_keeps_three_copies_of_each_stream(
    variants: dict[str, list[Manifest]],
) -> None:
    copies = {
        variant: {
            env_of(c)["WOOSTORE_JETSTREAM_REPLICAS"]["value"]
            for _, c in all_containers(docs)
            if "WOOSTORE_JETSTREAM_REPLICAS" in env_of(c)
        }
        for variant, docs in variants.items()
    }
    assert copies["profile-prod"] == {"3"}  # a three-node NATS cluster
    assert copies["profile-defaults"] == {"1"}  # the in-chart single server


def test_the_event_stream_is_bounded_well_under_the_charts_own_nats_volume(
    default_docs: list[Manifest],
) -> None:
    """A whole number of bytes (not helm's float, 1.073741824e+09, which the setting would
    refuse), and half the in-chart server's 2 GiB volume: a full JetStream refuses writes."""
    bounds = {
        env_of(c)["WOOSTORE_EVENTS_STREAM_MAX_BYTES"]["value"]
        for _, c in all_containers(default_docs)
        if "WOOSTORE_EVENTS_STREAM_MAX_BYTES" in env_of(c)
    }
    assert bounds == {str(1 << 30)}
    (nats,) = [
        d for d in default_docs if d["kind"] == "StatefulSet" and "nats" in d["metadata"]["name"]
    ]
    (claim,) = nats["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"


def test_services_listen_on_all_interfaces_at_their_ports(default_docs: list[Manifest]) -> None:
    listen = {
        "api": {"WOOSTORE_API_HOST": "WOOSTORE_API_PORT"},
        "notifier": {"WOOSTORE_NOTIFIER_HOST": "WOOSTORE_NOTIFIER_PORT"},
    }
    for service in SERVICES:
        env = env_of(container(deployment(default_docs, service)))
        ports = {**listen.get(service, {}), "WOOSTORE_OPS_HOST": "WOOSTORE_OPS_PORT"}
        for host_var, port_var in ports.items():
            assert env[host_var]["value"] == "0.0.0.0"  # noqa: S104  (a pod's own interfaces)
            port = OPS_PORT if port_var == "WOOSTORE_OPS_PORT" else PORTS[service]
            assert env[port_var]["value"] == str(port)


def test_secrets_are_never_literal_environment_values(
    variants: dict[str, list[Manifest]], variant: str
) -> None:
    docs = variants[variant]
    secret_name = {"external-deps": "mine", "profile-prod": "woostore-platform"}.get(
        variant, SECRET
    )
    for where, c in all_containers(docs):
        assert not c.get("envFrom"), f"{where}: envFrom"
        for name, entry in env_of(c).items():
            if SENSITIVE.search(name) and not name.endswith("_FILE"):
                assert "value" not in entry, f"{where}: {name} has a literal value"
                ref = entry["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret_name, f"{where}: {name}"
        nats_url = env_of(c).get("WOOSTORE_NATS_URL", {}).get("value", "")
        assert "@" not in nats_url, f"{where}: credentials in the NATS URL"
    if secret_name != SECRET:
        assert not by_kind(docs, "Secret"), "an existing Secret is referenced, not made"


def test_a_nats_url_holding_a_password_comes_from_the_secret_in_every_container(
    helm_env: dict[str, str],
) -> None:
    """A NATS that asks who connects (examples/event_consumer/nats-authorization.conf) has a
    URL with a password, which the schema refuses as a plain value: urlFromSecret takes it
    from the Secret's nats-url, in each service and in the setup Job."""
    docs = render_platform(helm_env, *set_values(
        "nats.enabled=false", "nats.urlFromSecret=true", "postgresql.enabled=false",
        "secrets.existingSecret=mine",
    ))  # fmt: skip
    found = {
        where: env_of(c)["WOOSTORE_NATS_URL"]
        for where, c in all_containers(docs)
        if "WOOSTORE_NATS_URL" in env_of(c)
    }

    assert len(found) == 5, sorted(found)  # the four services, and the setup Job
    for where, entry in found.items():
        assert entry["valueFrom"] == {"secretKeyRef": {"name": "mine", "key": "nats-url"}}, where
        assert "value" not in entry, where


def test_the_generated_secret_is_kept_and_unlocks_the_in_chart_database(
    default_docs: list[Manifest],
) -> None:
    (secret,) = by_kind(default_docs, "Secret")
    assert secret["metadata"]["name"] == SECRET
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(data) == {"admin-token", "secret-key", "postgres-password", "database-url"}
    assert len(data["admin-token"]) >= 32
    assert len(data["secret-key"]) >= 32
    password = data["postgres-password"]
    assert data["database-url"] == (
        f"postgresql://woostore:{password}@{RELEASE}-postgresql.{NAMESPACE}.svc:5432/woostore"
    )
    postgresql = one(default_docs, "StatefulSet", f"{RELEASE}-postgresql")
    env = env_of(container(postgresql))
    assert "POSTGRES_PASSWORD" not in env
    (volume,) = [v for v in postgresql["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == SECRET
    assert volume["secret"]["items"] == [{"key": "postgres-password", "path": "password"}]
    mount = mount_of(postgresql, volume["name"])
    assert env["POSTGRES_PASSWORD_FILE"]["value"] == f"{mount['mountPath']}/password"


# --------------------------------------------------------------------------
# Ingress: the dashboard/API and the event stream
# --------------------------------------------------------------------------


def ingress_paths(ingress: Manifest) -> list[tuple[str, str, str, str]]:
    """(host, path, pathType, Service) of every rule of an Ingress, checking the port."""
    found = []
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["port"] == {"name": "http"}
            found.append((rule["host"], path["path"], path["pathType"], backend["name"]))
    return found


BUFFERING_OFF = {
    "profile-defaults": {},  # Traefik streams responses as they come: nothing to turn off
    "ingress-nginx-tls": {"nginx.ingress.kubernetes.io/proxy-buffering": "off"},
    "f5-nginx": {"nginx.org/proxy-buffering": "false"},
}


@pytest.mark.parametrize("name", sorted(BUFFERING_OFF))
def test_the_event_stream_routes_to_the_notifier_with_buffering_off(
    variants: dict[str, list[Manifest]], name: str
) -> None:
    docs = variants[name]
    events = one(docs, "Ingress", f"{RELEASE}-events")
    host = events["spec"]["rules"][0]["host"]
    # Exact: /api/v1/events/ticket is the api's.
    assert ingress_paths(events) == [(host, "/api/v1/events", "Exact", f"{RELEASE}-notifier")]
    notifier = one(docs, "Service", f"{RELEASE}-notifier")
    assert notifier["spec"]["ports"][0]["name"] == "http"
    assert notifier["spec"]["ports"][0]["port"] == PORTS["notifier"]
    annotations = events["metadata"].get("annotations") or {}
    for key, value in BUFFERING_OFF[name].items():
        assert annotations[key] == value
    if name == "profile-defaults":
        # No Traefik middleware (buffering, compression) sits on the stream.
        assert not [k for k in annotations if "middlewares" in k]
    else:
        timeouts = [k for k in annotations if "read-timeout" in k]
        assert timeouts, "a long-lived response needs a long read timeout"
    main = one(docs, "Ingress", RELEASE)
    assert ingress_paths(main) == [(host, "/", "Prefix", f"{RELEASE}-api")]
    assert main["spec"]["ingressClassName"] == events["spec"]["ingressClassName"]


def test_event_stream_annotations_come_from_values(helm_env: dict[str, str]) -> None:
    docs = render_platform(
        helm_env,
        *set_values("ingress.controller=ingress-nginx"),
        "--set-json",
        'ingress.events.annotations={"nginx.ingress.kubernetes.io/proxy-read-timeout":"86400"}',
        "--set-json",
        'ingress.annotations={"example.com/team":"shops"}',
    )
    events = one(docs, "Ingress", f"{RELEASE}-events")["metadata"]["annotations"]
    assert events["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "86400"
    assert events["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert events["example.com/team"] == "shops"
    main = one(docs, "Ingress", RELEASE)["metadata"]["annotations"]
    assert main == {
        "example.com/team": "shops",
        "nginx.ingress.kubernetes.io/proxy-body-size": "65536",
    }


def test_tls_comes_from_cert_manager_once_for_the_host(
    variants: dict[str, list[Manifest]],
) -> None:
    docs = variants["profile-prod"]
    main, events = one(docs, "Ingress", RELEASE), one(docs, "Ingress", f"{RELEASE}-events")
    tls = [{"hosts": ["woostore.example.com"], "secretName": f"{RELEASE}-tls"}]
    assert main["spec"]["tls"] == tls
    assert events["spec"]["tls"] == tls
    assert main["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    # One Certificate per Secret: cert-manager would fight over it if both asked.
    assert "cert-manager.io/cluster-issuer" not in (events["metadata"].get("annotations") or {})
    env = env_of(container(deployment(docs, "notifier")))
    assert (
        env["WOOSTORE_PUBLIC_EVENTS_URL"]["value"] == "https://woostore.example.com/api/v1/events"
    )
    assert env["WOOSTORE_DASHBOARD_ORIGIN"]["value"] == "https://woostore.example.com"


def test_local_profile_is_plain_http_on_localhost(variants: dict[str, list[Manifest]]) -> None:
    docs = variants["profile-local"]
    for ingress in by_kind(docs, "Ingress"):
        assert "tls" not in ingress["spec"]
        assert ingress["spec"]["ingressClassName"] == "traefik"
        assert ingress["spec"]["rules"][0]["host"] == "localhost"
    env = env_of(container(deployment(docs, "api")))
    assert env["WOOSTORE_PUBLIC_EVENTS_URL"]["value"] == "http://localhost/api/v1/events"


def test_without_an_ingress_there_are_no_public_urls(variants: dict[str, list[Manifest]]) -> None:
    docs = variants["bare"]
    assert not by_kind(docs, "Ingress")
    env = env_of(container(deployment(docs, "api")))
    assert "WOOSTORE_PUBLIC_EVENTS_URL" not in env


# --------------------------------------------------------------------------
# RBAC
# --------------------------------------------------------------------------

# Where each kind helm/store renders lives in the API.
STORE_KIND_RESOURCES = {
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "Service": ("", "services"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"),
    "Ingress": ("networking.k8s.io", "ingresses"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
    "ResourceQuota": ("", "resourcequotas"),
    "LimitRange": ("", "limitranges"),
}
MANAGE = {"get", "list", "watch", "create", "update", "patch", "delete"}


STORE_MANAGER = f"{NAMESPACE}-{RELEASE}-store-manager"
PROVISIONER_ACCOUNT = f"{RELEASE}-provisioner"


def rules_bound_to(docs: list[Manifest], service: str) -> list[Manifest]:
    """The rules a service holds everywhere (its ClusterRoleBindings)."""
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "ClusterRole")}
    account = {"kind": "ServiceAccount", "name": f"{RELEASE}-{service}", "namespace": NAMESPACE}
    rules: list[Manifest] = []
    for binding in by_kind(docs, "ClusterRoleBinding"):
        if account in binding["subjects"]:
            assert binding["roleRef"]["kind"] == "ClusterRole"
            rules += roles[binding["roleRef"]["name"]]["rules"]
    assert not by_kind(docs, "Role")
    assert not by_kind(docs, "RoleBinding")
    return rules


def rules_in_a_store_namespace(docs: list[Manifest]) -> list[Manifest]:
    """The provisioner's rules in a store namespace: its own, and the ClusterRole it binds
    to itself there (the driver's RoleBinding, named by its settings)."""
    env = env_of(container(deployment(docs, "provisioner")))
    bound = one(docs, "ClusterRole", env["WOOSTORE_STORE_MANAGER_ROLE"]["value"])
    rules: list[Manifest] = bound["rules"]
    return rules_bound_to(docs, "provisioner") + rules


def allowed(rules: list[Manifest], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules
    )


# The one rule that names a resource, and the only "bind": binding store-manager, the role the
# provisioner gives itself in each store namespace.
BIND_STORE_MANAGER = {
    "apiGroups": ["rbac.authorization.k8s.io"],
    "resources": ["clusterroles"],
    "verbs": ["bind"],
    "resourceNames": [STORE_MANAGER],
}


def test_rbac_has_no_wildcards(variants: dict[str, list[Manifest]], variant: str) -> None:
    for role in by_kind(variants[variant], "ClusterRole"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"{role['metadata']['name']}: {key} {rule[key]}"
            assert "nonResourceURLs" not in rule
            if rule == BIND_STORE_MANAGER:
                continue
            assert "resourceNames" not in rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])


def test_the_provisioner_manages_what_helm_store_renders(
    helm_env: dict[str, str], default_docs: list[Manifest]
) -> None:
    rules = rules_in_a_store_namespace(default_docs)
    kinds: set[str] = set()
    for args in (
        [],
        ["--values", str(CHART / "values-local.yaml")],
        ["--values", str(CHART / "values-prod.yaml")],
    ):
        # The helm test Pod is made only by `helm test`, which the provisioner never runs.
        kinds |= {d["kind"] for d in render(helm_env, *args) if not is_helm_test(d)}
    unknown = kinds - set(STORE_KIND_RESOURCES)
    assert not unknown, f"helm/store renders {unknown}: add them here and to the RBAC"
    for kind in kinds:
        group, resource = STORE_KIND_RESOURCES[kind]
        for verb in MANAGE:
            assert allowed(rules, group, resource, verb), f"{kind}: {verb}"
    # Helm's release records and the credentials Secret (update_secret reads it and replaces
    # it: get and update, no patch); the driver's namespaces.
    for verb in ("get", "list", "create", "update", "delete"):
        assert allowed(rules, "", "secrets", verb), f"secrets: {verb}"
    for verb in ("get", "create", "delete"):
        assert allowed(rules, "", "namespaces", verb), f"namespaces: {verb}"
    # WP-CLI: exec over WebSockets is a GET authorized for create as well.
    assert allowed(rules, "", "pods/exec", "create")
    assert allowed(rules, "", "pods/exec", "get")
    # Why a store waits: its claims, and a crashing container's last log line.
    assert allowed(rules, "", "pods/log", "get")
    assert not allowed(rules, "", "pods/log", "list")
    assert allowed(rules, "", "persistentvolumeclaims", "list")
    for verb in ("get", "list", "watch"):
        assert allowed(rules, "", "pods", verb)
        assert allowed(rules, "apps", "replicasets", verb)


def test_the_provisioner_gets_nothing_it_does_not_use(default_docs: list[Manifest]) -> None:
    rules = rules_in_a_store_namespace(default_docs)
    assert not allowed(rules, "", "pods", "create")
    assert not allowed(rules, "", "namespaces", "update")
    assert not allowed(rules, "", "namespaces", "patch")
    for group, resource in (
        ("", "configmaps"),
        ("", "serviceaccounts"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ("", "nodes"),
    ):
        assert not any(allowed(rules, group, resource, verb) for verb in MANAGE), resource
    # RoleBindings: made (of store-manager, the admission policy sees to it), never changed.
    assert {
        v for v in MANAGE if allowed(rules, "rbac.authorization.k8s.io", "rolebindings", v)
    } == {"create"}


def test_store_manager_holds_only_in_the_stores_own_namespaces(
    default_docs: list[Manifest],
) -> None:
    """Bound by the provisioner itself in each store namespace, never cluster-wide: outside
    them it can touch no Secret, workload or pod, kube-system and its own namespace included."""
    for binding in by_kind(default_docs, "ClusterRoleBinding"):
        assert binding["roleRef"]["name"] != STORE_MANAGER
    everywhere = rules_bound_to(default_docs, "provisioner")
    for group, resource in (
        ("", "secrets"),
        ("", "pods"),
        ("", "pods/exec"),
        ("apps", "deployments"),
    ):
        assert not any(allowed(everywhere, group, resource, v) for v in MANAGE), resource
    assert [r for r in everywhere if "resourceNames" in r] == [BIND_STORE_MANAGER]
    env = env_of(container(deployment(default_docs, "provisioner")))
    assert env["WOOSTORE_STORE_MANAGER_ROLE"]["value"] == STORE_MANAGER
    assert env["WOOSTORE_SERVICE_ACCOUNT"]["value"] == f"{NAMESPACE}/{PROVISIONER_ACCOUNT}"
    assert Settings(
        store_manager_role=env["WOOSTORE_STORE_MANAGER_ROLE"]["value"],
        service_account=env["WOOSTORE_SERVICE_ACCOUNT"]["value"],
    ).service_account
    for service in ("api", "notifier", "reaper"):
        assert "WOOSTORE_STORE_MANAGER_ROLE" not in env_of(
            container(deployment(default_docs, service))
        )


STORE_BINDINGS_POLICY = f"{NAMESPACE}-{RELEASE}-store-bindings"
STORE_NAMESPACES_POLICY = f"{NAMESPACE}-{RELEASE}-store-namespaces"


def test_each_admission_policy_is_bound_to_deny(default_docs: list[Manifest]) -> None:
    policies = by_kind(default_docs, "ValidatingAdmissionPolicy")
    assert {p["metadata"]["name"] for p in policies} == {
        STORE_BINDINGS_POLICY,
        STORE_NAMESPACES_POLICY,
    }
    for policy in policies:
        name = policy["metadata"]["name"]
        binding = one(default_docs, "ValidatingAdmissionPolicyBinding", name)
        assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
        assert binding["spec"] == {"policyName": name, "validationActions": ["Deny"]}
        assert policy["spec"]["failurePolicy"] == "Fail"


@pytest.mark.parametrize(
    ("name", "group", "resource", "operations", "condition"),
    [
        (
            STORE_BINDINGS_POLICY,
            "rbac.authorization.k8s.io",
            "rolebindings",
            {"CREATE", "UPDATE"},
            "request.userInfo.username == "
            f"'system:serviceaccount:{NAMESPACE}:{PROVISIONER_ACCOUNT}'",
        ),
        (
            STORE_NAMESPACES_POLICY,
            "",
            "namespaces",
            {"CREATE", "DELETE"},
            f"request.userInfo.username in ['system:serviceaccount:{NAMESPACE}:"
            f"{PROVISIONER_ACCOUNT}', 'system:serviceaccount:{NAMESPACE}:{RELEASE}-reaper']",
        ),
    ],
)
def test_each_admission_policy_applies_to_what_its_services_request(
    default_docs: list[Manifest],
    name: str,
    group: str,
    resource: str,
    operations: set[str],
    condition: str,
) -> None:
    spec = one(default_docs, "ValidatingAdmissionPolicy", name)["spec"]
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == [group]
    assert rule["resources"] == [resource]
    assert set(rule["operations"]) == operations
    (match_condition,) = spec["matchConditions"]
    assert match_condition["expression"] == condition


def test_the_admission_policy_admits_only_the_provisioners_store_bindings(
    default_docs: list[Manifest],
) -> None:
    spec = one(default_docs, "ValidatingAdmissionPolicy", STORE_BINDINGS_POLICY)["spec"]
    where, role, subject = (v["expression"] for v in spec["validations"])
    # Only in namespaces the provisioner made for this installation's stores: their name,
    # and the labels it gives them (it can create namespaces, never label existing ones).
    assert "namespaceObject.metadata.name.startsWith('store-')" in where
    for label, value in (
        ("app.kubernetes.io/managed-by", "woostore"),
        ("woostore.io/installation", RELEASE),
    ):
        assert f"'{label}' in namespaceObject.metadata.labels" in where
        assert f"namespaceObject.metadata.labels['{label}'] == '{value}'" in where
    assert "'woostore.io/store-id' in namespaceObject.metadata.labels" in where
    assert f"object.roleRef.name == '{STORE_MANAGER}'" in role
    assert "object.roleRef.kind == 'ClusterRole'" in role
    assert "size(object.subjects) == 1" in subject
    assert f"object.subjects[0].name == '{PROVISIONER_ACCOUNT}'" in subject
    assert f"object.subjects[0].namespace == '{NAMESPACE}'" in subject
    assert all(" && " in e and " || " not in e for e in (where, role, subject))


PROVISIONER = f"system:serviceaccount:{NAMESPACE}:{PROVISIONER_ACCOUNT}"
REAPER = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-reaper"


def namespace_object(name: str, labels: dict[str, str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}},
    }


def store_labels(
    installation: str = RELEASE, changes: dict[str, str | None] | None = None
) -> dict[str, str]:
    """The labels of a store namespace as the provisioner makes it (recipe.create_namespace
    and the driver's installation label), with `changes` (None: without that label)."""
    labels: dict[str, str | None] = {
        MANAGED_BY[0]: MANAGED_BY[1],
        STORE_ID_LABEL: "shop-1",
        INSTALLATION_LABEL: installation,
        PSS: "restricted",
        **(changes or {}),
    }
    return {key: value for key, value in labels.items() if value is not None}


PSS = "pod-security.kubernetes.io/enforce"


def store_namespace(**changes: str | None) -> Manifest:
    """Namespace store-shop-1 with this installation's store_labels, with `changes`."""
    return namespace_object("store-shop-1", store_labels(changes=changes))


THIS_STORE = store_namespace()
ANOTHER_INSTALLATIONS_STORE = namespace_object("store-shop-1", store_labels("staging"))
KUBE_SYSTEM = namespace_object("kube-system", {})


def namespace_request(operation: str, user: str, namespace: Manifest) -> Request:
    # A DELETE carries the namespace as it is in oldObject; a CREATE as requested in object.
    before, after = (namespace, None) if operation == "DELETE" else (None, namespace)
    return Request(operation, user, "", "namespaces", object=after, old_object=before)


@pytest.mark.parametrize(
    ("operation", "user", "namespace", "verdict"),
    [
        ("DELETE", REAPER, THIS_STORE, True),
        ("DELETE", PROVISIONER, THIS_STORE, True),
        ("DELETE", REAPER, KUBE_SYSTEM, False),
        ("DELETE", PROVISIONER, KUBE_SYSTEM, False),
        ("DELETE", REAPER, namespace_object(NAMESPACE, {}), False),
        ("DELETE", REAPER, ANOTHER_INSTALLATIONS_STORE, False),
        ("DELETE", REAPER, store_namespace(**{STORE_ID_LABEL: None}), False),
        ("DELETE", REAPER, store_namespace(**{MANAGED_BY[0]: "Helm"}), False),
        ("DELETE", PROVISIONER, namespace_object("store-shop-1", {}), False),
        # The labels alone are not enough: they could be put on any namespace by someone else.
        ("DELETE", PROVISIONER, namespace_object("kube-system", store_labels()), False),
        ("CREATE", PROVISIONER, THIS_STORE, True),
        ("CREATE", PROVISIONER, ANOTHER_INSTALLATIONS_STORE, False),
        ("CREATE", PROVISIONER, namespace_object("kube-public-2", store_labels()), False),
        ("CREATE", PROVISIONER, store_namespace(**{PSS: "privileged"}), False),
        ("CREATE", PROVISIONER, store_namespace(**{PSS: None}), False),
        # Not this policy's concern: other identities, and what RBAC already refuses them.
        ("DELETE", "kubernetes-admin", KUBE_SYSTEM, None),
        ("DELETE", f"system:serviceaccount:staging:{RELEASE}-reaper", THIS_STORE, None),
        ("UPDATE", PROVISIONER, THIS_STORE, None),
    ],
)  # fmt: skip
def test_the_provisioner_and_the_reaper_make_and_delete_only_this_installations_stores(
    default_docs: list[Manifest],
    operation: str,
    user: str,
    namespace: Manifest,
    verdict: bool | None,
) -> None:
    policy = one(default_docs, "ValidatingAdmissionPolicy", STORE_NAMESPACES_POLICY)
    assert admits(policy, namespace_request(operation, user, namespace)) is verdict


def store_binding(**changes: Any) -> Manifest:
    """The RoleBinding the driver makes in a store namespace (kubeapi.create_role_binding)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": STORE_ACCESS_BINDING, "namespace": "store-shop-1"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": STORE_MANAGER,
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": PROVISIONER_ACCOUNT, "namespace": NAMESPACE}
        ],
        **changes,
    }


OTHER_SUBJECT = {"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}
CLUSTER_ADMIN = {
    "apiGroup": "rbac.authorization.k8s.io",
    "kind": "ClusterRole",
    "name": "cluster-admin",
}
BOTH_SUBJECTS = [*store_binding()["subjects"], OTHER_SUBJECT]


@pytest.mark.parametrize(
    ("user", "binding", "where", "verdict"),
    [
        (PROVISIONER, store_binding(), THIS_STORE, True),
        (PROVISIONER, store_binding(), KUBE_SYSTEM, False),
        (PROVISIONER, store_binding(), ANOTHER_INSTALLATIONS_STORE, False),
        (PROVISIONER, store_binding(roleRef=CLUSTER_ADMIN), THIS_STORE, False),
        (PROVISIONER, store_binding(subjects=[OTHER_SUBJECT]), THIS_STORE, False),
        (PROVISIONER, store_binding(subjects=BOTH_SUBJECTS), THIS_STORE, False),
        ("kubernetes-admin", store_binding(subjects=[OTHER_SUBJECT]), KUBE_SYSTEM, None),
    ],
)  # fmt: skip
def test_the_provisioner_binds_only_store_manager_to_itself_in_this_installations_stores(
    default_docs: list[Manifest],
    user: str,
    binding: Manifest,
    where: Manifest,
    verdict: bool | None,
) -> None:
    policy = one(default_docs, "ValidatingAdmissionPolicy", STORE_BINDINGS_POLICY)
    request = Request(
        "CREATE",
        user,
        "rbac.authorization.k8s.io",
        "rolebindings",
        object=binding,
        namespace_object=where,
    )
    assert admits(policy, request) is verdict


def test_the_reaper_only_lists_and_deletes_namespaces(default_docs: list[Manifest]) -> None:
    rules = rules_bound_to(default_docs, "reaper")
    assert rules == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "delete"]}
    ]


def test_only_the_provisioner_and_reaper_have_rights(
    variants: dict[str, list[Manifest]],
) -> None:
    docs = variants["profile-defaults"]
    subjects = [s for b in by_kind(docs, "ClusterRoleBinding") for s in b["subjects"]]
    assert {s["name"] for s in subjects} == {f"{RELEASE}-provisioner", f"{RELEASE}-reaper"}
    for kind in sorted(CLUSTER_SCOPED_KINDS):
        for role in by_kind(docs, kind):
            # Cluster-wide names: the release namespace keeps two installations apart.
            assert role["metadata"]["name"].startswith(f"{NAMESPACE}-{RELEASE}-")
    for variant in ("simulated", "bare"):
        for kind in sorted(CLUSTER_SCOPED_KINDS):
            assert not by_kind(variants[variant], kind), variant
        env = env_of(container(deployment(variants[variant], "provisioner")))
        assert "WOOSTORE_STORE_MANAGER_ROLE" not in env, variant


def test_the_rbac_document_lists_every_rule(default_docs: list[Manifest]) -> None:
    doc = (REPO / "docs" / "rbac.md").read_text()
    for role in by_kind(default_docs, "ClusterRole"):
        suffix = role["metadata"]["name"].removeprefix(f"{NAMESPACE}-{RELEASE}-")
        assert f"<namespace>-<release>-{suffix}" in doc, suffix
        for rule in role["rules"]:
            for resource in rule["resources"]:
                assert f"`{resource}`" in doc, resource


# --------------------------------------------------------------------------
# the cluster the provisioner and reaper reach
# --------------------------------------------------------------------------


def store_values_config(docs: list[Manifest]) -> dict[str, str]:
    data: dict[str, str] = one(docs, "ConfigMap", f"{RELEASE}-store-values")["data"]
    return data


def volumes_of(workload: Manifest) -> dict[str, Manifest]:
    return {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}


@pytest.mark.parametrize("variant", sorted(v for v in VARIANTS if v != "simulated"))
def test_in_kubernetes_mode_they_use_their_own_token_in_cluster(
    variants: dict[str, list[Manifest]], variant: str
) -> None:
    """No kubeconfig anywhere: the provisioner and the reaper run with WOOSTORE_CLUSTER=
    kubernetes and their ServiceAccount token mounted, and the driver and helm use the
    in-cluster configuration, which re-reads the token the kubelet rotates."""
    docs = variants[variant]
    for config in by_kind(docs, "ConfigMap"):
        assert not any("kubeconfig" in key for key in config["data"]), config["metadata"]
        assert not any("tokenFile" in value for value in config["data"].values())
    for service in SERVICES:
        workload = deployment(docs, service)
        spec = workload["spec"]["template"]["spec"]
        env = env_of(container(workload))
        assert env["WOOSTORE_CLUSTER"]["value"] == "kubernetes", service
        assert "WOOSTORE_KUBECONFIG" not in env, service
        assert "KUBECONFIG" not in env, service
        assert spec["automountServiceAccountToken"] is (service in CLUSTER_SERVICES), service
        # The token comes from automount only: no volume of ours holds credentials.
        assert set(volumes_of(workload)) <= {"tmp", "store-values", "restic-scratch"}, service
        account = one(docs, "ServiceAccount", spec["serviceAccountName"])
        assert account["automountServiceAccountToken"] is False  # the pod opts in, no other


def test_restic_has_a_disk_of_its_own_in_the_provisioner(
    default_docs: list[Manifest], helm_env: dict[str, str]
) -> None:
    """restic's cache grows with the stores backed up and its packs wait there to upload:
    on the 256Mi /tmp that helm shares they would get the pod evicted mid-backup."""
    provisioner = deployment(default_docs, "provisioner")
    data_dir = env_of(container(provisioner))["WOOSTORE_DATA_DIR"]["value"]
    [mount] = [m for m in container(provisioner)["volumeMounts"] if m["mountPath"] == data_dir]
    scratch = volumes_of(provisioner)[mount["name"]]
    bigger = deployment(
        render_platform(helm_env, *set_values("provisioner.resticScratch=20Gi")), "provisioner"
    )

    assert scratch["emptyDir"] == {"sizeLimit": "4Gi"}
    assert volumes_of(bigger)[mount["name"]]["emptyDir"] == {"sizeLimit": "20Gi"}
    assert "restic-scratch" not in volumes_of(deployment(default_docs, "reaper"))


def test_simulated_mode_shares_one_volume_and_no_kubeconfig(
    variants: dict[str, list[Manifest]],
) -> None:
    docs = variants["simulated"]
    (claim,) = by_kind(docs, "PersistentVolumeClaim")
    for service in CLUSTER_SERVICES:
        workload = deployment(docs, service)
        env = env_of(container(workload))
        assert env["WOOSTORE_CLUSTER"]["value"] == "simulated"
        assert "WOOSTORE_KUBECONFIG" not in env
        assert workload["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
        volumes = volumes_of(workload)
        assert (
            volumes["simcluster"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        )
        mount = mount_of(workload, "simcluster")
        assert env["WOOSTORE_DATA_DIR"]["value"] == mount["mountPath"]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_stores_get_values_that_pass_the_store_chart(
    helm_env: dict[str, str],
    variants: dict[str, list[Manifest]],
    profile: str,
    tmp_path: Path,
) -> None:
    docs = variants[f"profile-{profile}"]
    env = env_of(container(deployment(docs, "provisioner")))
    files = env["WOOSTORE_STORE_VALUES_FILES"]["value"].split(",")
    mount = mount_of(deployment(docs, "provisioner"), "store-values")
    assert mount["readOnly"] is True
    assert files[-1] == f"{mount['mountPath']}/store-values.yaml"
    assert "store-values" not in volumes_of(deployment(docs, "reaper"))  # only helm needs them
    store_values = yaml.safe_load(store_values_config(docs)["store-values.yaml"])
    platform_values = yaml.safe_load((PLATFORM_CHART / "values.yaml").read_text())
    # Stores are served by the platform's own ingress controller.
    assert store_values["ingress"]["className"] == platform_values["ingress"]["className"]
    controller = platform_values["networkPolicy"]["ingressController"]
    assert store_values["networkPolicy"]["ingressController"] == controller
    # The provisioner image holds helm/store at /app/helm/store (services.Dockerfile).
    dockerfile = (REPO / "deploy" / "images" / "services.Dockerfile").read_text()
    assert "COPY helm/store /app/helm/store" in dockerfile
    args: list[str] = []
    for path in files[:-1]:
        assert path.startswith("/app/helm/store/"), path
        args += ["--values", str(CHART / path.removeprefix("/app/helm/store/"))]
    mine = tmp_path / "store-values.yaml"
    mine.write_text(store_values_config(docs)["store-values.yaml"])
    rendered = render(helm_env, *args, "--values", str(mine))
    (ingress,) = by_kind(rendered, "Ingress")
    assert ingress["spec"]["ingressClassName"] == store_values["ingress"]["className"]
    if profile == "prod":
        assert ingress["spec"]["tls"], "stores get certificates in production"


# --------------------------------------------------------------------------
# the setup Job, NATS and PostgreSQL
# --------------------------------------------------------------------------


def test_setup_runs_once_per_install_and_before_every_upgrade(
    variants: dict[str, list[Manifest]],
) -> None:
    hooks = {
        name: one(variants[name], "Job", f"{RELEASE}-setup")["metadata"]["annotations"]
        for name in ("profile-defaults", "external-deps", "profile-prod")
    }
    # In-chart NATS/PostgreSQL do not exist before install: migrate right after it.
    assert hooks["profile-defaults"]["helm.sh/hook"] == "post-install,pre-upgrade"
    # External ones do: migrate before the new pods start.
    assert hooks["external-deps"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert hooks["profile-prod"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    job = one(variants["profile-defaults"], "Job", f"{RELEASE}-setup")
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1
    # Pre-install runs before the chart's ServiceAccounts exist, and needs no API access.
    assert "serviceAccountName" not in spec
    assert spec["automountServiceAccountToken"] is False


def test_in_chart_nats_fsyncs_every_write_to_its_volume(default_docs: list[Manifest]) -> None:
    config = one(default_docs, "ConfigMap", f"{RELEASE}-nats")["data"]["nats.conf"]
    assert re.search(r"^\s*sync_interval:\s*always\s*$", config, re.MULTILINE)
    store_dir = re.search(r"^\s*store_dir:\s*(\S+)\s*$", config, re.MULTILINE)
    assert store_dir
    sts = one(default_docs, "StatefulSet", f"{RELEASE}-nats")
    c = container(sts)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts[store_dir.group(1)] == "data"
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["data"]
    assert c["args"] == ["--config", "/etc/nats/nats.conf"]
    env = env_of(container(deployment(default_docs, "api")))
    assert env["WOOSTORE_NATS_URL"]["value"] == f"nats://{RELEASE}-nats.{NAMESPACE}.svc:4222"


def in_a_rolling_update(docs: list[Manifest], service: str) -> int:
    """A service's pods while a rolling update runs: its replicas, and the default surge's."""
    replicas: int = deployment(docs, service)["spec"]["replicas"]
    return replicas + math.ceil(replicas / 4)


def test_in_chart_postgresql_takes_every_connection_the_services_may_keep(
    variants: dict[str, list[Manifest]],
) -> None:
    for name, docs in variants.items():
        postgresql = [
            s for s in by_kind(docs, "StatefulSet") if s["metadata"]["name"].endswith("-postgresql")
        ]
        if not postgresql:
            continue  # an external PostgreSQL: the runbook says what to count
        args = container(postgresql[0])["args"]
        assert args[:2] == ["postgres", "-c"], name
        setting, _, value = args[2].partition("=")

        pods = sum(in_a_rolling_update(docs, s) for s in ("api", "notifier", "provisioner"))
        reapers = in_a_rolling_update(docs, "reaper")  # one connection each
        assert setting == "max_connections", name
        assert int(value) >= MAX_CONNECTIONS * pods + reapers + 10, name


def test_external_dependencies_are_not_run_in_the_release(
    variants: dict[str, list[Manifest]],
) -> None:
    for name in ("external-deps", "profile-prod"):
        docs = variants[name]
        assert not by_kind(docs, "StatefulSet"), name
        assert not by_kind(docs, "Secret"), name
        env = env_of(container(deployment(docs, "provisioner")))
        assert env["WOOSTORE_NATS_URL"]["value"] == "nats://nats.nats.svc:4222"


def test_volume_claim_templates_have_stable_labels(default_docs: list[Manifest]) -> None:
    # volumeClaimTemplates are immutable: version labels there would break upgrades.
    for sts in by_kind(default_docs, "StatefulSet"):
        for vct in sts["spec"]["volumeClaimTemplates"]:
            assert "helm.sh/chart" not in vct["metadata"]["labels"]
            assert "app.kubernetes.io/version" not in vct["metadata"]["labels"]


# --------------------------------------------------------------------------
# NetworkPolicies, PodDisruptionBudgets, ServiceMonitors, helm test
# --------------------------------------------------------------------------


def selects(selector: Manifest, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def admitted(docs: list[Manifest], labels: dict[str, str]) -> list[tuple[Manifest, int]]:
    """(peer, port) of every ingress rule of the policies that select pods with `labels`."""
    found = []
    for policy in by_kind(docs, "NetworkPolicy"):
        if policy["spec"]["policyTypes"] == ["Egress"]:
            continue
        if selects(policy["spec"]["podSelector"], labels):
            assert policy["spec"]["policyTypes"] == ["Ingress"]
            for rule in policy["spec"].get("ingress", []):
                for peer in rule["from"]:
                    for port in rule["ports"]:
                        found.append((peer, port["port"]))
    return found


def test_every_pod_is_behind_a_deny_by_default_policy(
    variants: dict[str, list[Manifest]], variant: str
) -> None:
    docs = variants[variant]
    if variant == "bare":
        assert not by_kind(docs, "NetworkPolicy")
        return
    deny = one(docs, "NetworkPolicy", f"{RELEASE}-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for where, meta, _ in pods(docs):
        if where.startswith(("Pod/", "Job/")):
            continue  # clients only: nothing connects to them
        assert admitted(docs, meta["labels"]), f"{where}: no policy lets anything in"


def test_the_controller_reaches_the_api_and_notifier_and_no_other_pods(
    default_docs: list[Manifest],
) -> None:
    controller = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}},
    }
    for where, meta, _ in pods(default_docs):
        peers = admitted(default_docs, meta["labels"])
        component = meta["labels"]["app.kubernetes.io/component"]
        if component in {"api", "notifier"}:
            assert (controller, PORTS[component]) in peers, where
        else:
            assert controller not in [p for p, _ in peers], where
    release_pods = {"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "woostore", "app.kubernetes.io/instance": RELEASE
    }}}  # fmt: skip
    for component, port in (("nats", 4222), ("postgresql", 5432)):
        labels = pod_labels(one(default_docs, "StatefulSet", f"{RELEASE}-{component}"))
        assert admitted(default_docs, labels) == [(release_pods, port)], component


# What the provisioner and the reaper may connect to, run through the evaluator of
# tests/charts/netpol.py over a model of the cluster around the release.
STORE_NS = "store-shop-1"
EGRESS_PROBES = [("UDP", 53), ("TCP", 53), ("TCP", 22), ("TCP", 80), ("TCP", 443)] + [
    ("TCP", port) for port in (3128, 3306, 4222, 5432, 6443, 8000, 8080, 8443)
]


def egress_model(docs: list[Manifest]) -> list[Endpoint]:
    """The release's pods as rendered, and the rest of a cluster: CoreDNS, Traefik, a store,
    an external NATS in its own namespace, and addresses outside the cluster."""
    release_ns = namespace_labels(NAMESPACE)
    traefik_ns = namespace_labels("traefik")
    kube_system = namespace_labels("kube-system")
    store_ns = namespace_labels(STORE_NS, **{"app.kubernetes.io/managed-by": "woostore"})
    store = {"app.kubernetes.io/name": "store"}
    return [
        Endpoint(service, NAMESPACE, pod_labels(deployment(docs, service)), release_ns,
                 address=f"10.244.0.{i}")
        for i, service in enumerate(SERVICES, start=10)
    ] + [
        Endpoint(name, NAMESPACE, pod_labels(sts), release_ns, address=f"10.244.0.{i}")
        for i, sts in enumerate(by_kind(docs, "StatefulSet"), start=20)
        for name in [sts["metadata"]["name"].removeprefix(f"{RELEASE}-")]
    ] + [
        Endpoint("coredns", "kube-system", {"k8s-app": "kube-dns"}, kube_system,
                 address="10.244.1.2"),
        Endpoint("metrics-server", "kube-system", {"k8s-app": "metrics-server"}, kube_system,
                 address="10.244.1.3"),
        Endpoint("traefik", "traefik", {"app.kubernetes.io/name": "traefik"}, traefik_ns,
                 address="10.244.2.2"),
        Endpoint("traefik-neighbour", "traefik", {"run": "debug"}, traefik_ns,
                 address="10.244.2.3"),
        Endpoint("wordpress", STORE_NS, {**store, "app.kubernetes.io/component": "wordpress"},
                 store_ns, address="10.244.3.2"),
        Endpoint("mariadb", STORE_NS, {**store, "app.kubernetes.io/component": "mariadb"},
                 store_ns, address="10.244.3.3"),
        Endpoint("managed-nats", "nats", {"app.kubernetes.io/name": "nats"},
                 namespace_labels("nats"), address="10.244.4.2"),
        Endpoint("api-server", None, address=API_SERVER),
        Endpoint("load-balancer", None, address=LOAD_BALANCER),
        Endpoint("proxy", None, address=PROXY),
        Endpoint("external-postgresql", None, address=EXTERNAL_POSTGRESQL),
        Endpoint("internet", None, address="203.0.113.7"),
        Endpoint("internet-v6", None, address="2001:db8::7"),
    ]  # fmt: skip


def egress_of(
    docs: list[Manifest], service: str, *, without_policies: bool = False
) -> set[tuple[str, str, int]]:
    """(destination, protocol, port) of every probed flow the policies let `service` open
    (`without_policies`: that the cluster allows with none of the chart's policies)."""
    policies = [] if without_policies else by_kind(docs, "NetworkPolicy")
    flows = netpol.allowed_flows(policies, egress_model(docs), EGRESS_PROBES, NAMESPACE)
    return {(f.dst, f.protocol, f.port) for f in flows if f.src == service}


def to(destination: str, *ports: int) -> set[tuple[str, str, int]]:
    return {(destination, "TCP", port) for port in ports}


DNS = {("coredns", "UDP", 53), ("coredns", "TCP", 53)}
IN_CHART_DEPS = to("nats", 4222) | to("postgresql", 5432)
API_SERVER_FLOWS = to("api-server", 443, 6443)
INGRESS_CONTROLLER = to("traefik", 80, 443, 8000, 8443)


def test_the_provisioner_and_the_reaper_reach_exactly_their_dependencies(
    variants: dict[str, list[Manifest]],
) -> None:
    docs = variants["egress-narrowed"]
    reaper = DNS | IN_CHART_DEPS | API_SERVER_FLOWS
    provisioner = reaper | INGRESS_CONTROLLER | to("load-balancer", 80, 443) | to("proxy", 3128)
    assert egress_of(docs, "provisioner") == provisioner
    assert egress_of(docs, "reaper") == reaper
    # Not the internet on 443, nor a store's MariaDB: without the policies they could.
    open_egress = egress_of(docs, "provisioner", without_policies=True)
    assert {("internet", "TCP", 443), ("mariadb", "TCP", 3306)} <= open_egress - provisioner
    # The other pods' egress is not limited (the api and the notifier reach only NATS and
    # PostgreSQL, whose own policies admit the release's pods).
    assert ("internet", "TCP", 443) in egress_of(docs, "api")


def test_by_default_the_api_server_is_any_address_on_its_ports_only(
    default_docs: list[Manifest],
) -> None:
    """networkPolicy.egress.apiServer.cidrs empty: 443 and 6443 anywhere, the documented
    opening to narrow; no other port leaves the release but DNS, NATS, PostgreSQL and the
    ingress controller's."""
    beyond_the_release = {e.name for e in egress_model(default_docs) if e.namespace != NAMESPACE}
    anywhere = {(where, "TCP", port) for where in beyond_the_release for port in (443, 6443)}
    reaper = DNS | IN_CHART_DEPS | anywhere
    assert egress_of(default_docs, "reaper") == reaper
    assert egress_of(default_docs, "provisioner") == reaper | INGRESS_CONTROLLER
    values = (PLATFORM_CHART / "values.yaml").read_text()
    assert "which lets the provisioner reach any server on 443: set it" in values


def test_external_dependencies_are_reached_where_the_values_say(
    helm_env: dict[str, str], variants: dict[str, list[Manifest]]
) -> None:
    # values-prod: NATS by the labels of its namespace; PostgreSQL not given, so any address
    # on 5432 (its database-url is in a Secret the chart does not read).
    prod = egress_of(variants["profile-prod"], "reaper")
    assert to("managed-nats", 4222) <= prod
    assert to("internet", 5432) | to("external-postgresql", 5432) <= prod
    assert not to("internet", 4222) & prod
    docs = render_platform(
        helm_env,
        *EXTERNAL_DEPS,
        "--set-json",
        f'networkPolicy.egress.postgresql.cidrs=["{EXTERNAL_POSTGRESQL}/32"]',
        "--set-json",
        'networkPolicy.egress.nats.podSelector={"app.kubernetes.io/name":"my-nats"}',
        "--set-json",
        "networkPolicy.egress.nats.ports=[14222]",
    )
    reaper = egress_of(docs, "reaper")
    assert to("external-postgresql", 5432) <= reaper
    assert not to("internet", 5432) & reaper
    assert not {(d, p, n) for d, p, n in reaper if n in {4222, 14222}}, "nobody is my-nats"
    (policy,) = [p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"]
                 == f"{RELEASE}-reaper-egress"]  # fmt: skip
    # A podSelector alone: NATS pods of the release namespace, on the given port.
    assert {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "my-nats"}}}],
            "ports": [{"protocol": "TCP", "port": 14222}]} in policy["spec"]["egress"]  # fmt: skip


def test_simulated_stores_need_neither_the_api_server_nor_the_storefront(
    variants: dict[str, list[Manifest]],
) -> None:
    docs = variants["simulated"]
    assert egress_of(docs, "provisioner") == DNS | IN_CHART_DEPS
    assert egress_of(docs, "reaper") == DNS | IN_CHART_DEPS


def test_with_tracing_on_the_collector_is_reached_where_the_values_say(
    helm_env: dict[str, str], default_docs: list[Manifest]
) -> None:
    """Spans leave the provisioner and the reaper only once an endpoint is set, and then
    only for the collector's pods, on its port."""
    docs = render_platform(
        helm_env,
        *set_values("tracing.otlpEndpoint=http://otel-collector.monitoring:4318"),
        "--set-json",
        'networkPolicy.egress.collector.namespaceSelector={"kubernetes.io/metadata.name":'
        '"monitoring"}',
    )
    monitoring = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    collector = {
        "to": [{"namespaceSelector": monitoring}],
        "ports": [{"protocol": "TCP", "port": 4318}],
    }
    for service in ("provisioner", "reaper"):
        name = f"{RELEASE}-{service}-egress"
        assert collector in one(docs, "NetworkPolicy", name)["spec"]["egress"]
        untraced = one(default_docs, "NetworkPolicy", name)["spec"]["egress"]
        assert not [rule for rule in untraced if rule["ports"] == collector["ports"]]


def test_with_backups_set_the_provisioner_reaches_their_storage_where_the_values_say(
    helm_env: dict[str, str], default_docs: list[Manifest]
) -> None:
    """restic runs in the provisioner: with its egress narrowed (apiServer.cidrs), the
    object storage was reached only while any address on 443 was open, and never on another
    port (MinIO's 9000, here 8080)."""
    storage = to("internet", 8080)  # the storage, outside the cluster, by its address
    docs = render_platform(
        helm_env,
        *set_values("backups.location=s3:http://203.0.113.7:8080/backups"),
        "--set-json",
        'networkPolicy.egress.backups.cidrs=["203.0.113.7/32"]',
        "--set-json",
        "networkPolicy.egress.backups.ports=[8080]",
    )

    assert storage <= egress_of(docs, "provisioner")
    assert not storage & egress_of(docs, "reaper")  # it only decides what to forget
    assert not storage & egress_of(default_docs, "provisioner")  # no location, no storage

    # With the API server narrowed, an unnamed storage would open any address on 443 again.
    stderr = template_fails(
        helm_env,
        *set_values("backups.location=s3:https://s3.example.com/backups"),
        "--set-json",
        'networkPolicy.egress.apiServer.cidrs=["172.18.0.2/32"]',
    )
    assert "networkPolicy.egress.backups names no destination" in stderr


def test_egress_can_be_left_open(helm_env: dict[str, str]) -> None:
    docs = render_platform(helm_env, *set_values("networkPolicy.egress.enabled=false"))
    names = {p["metadata"]["name"] for p in by_kind(docs, "NetworkPolicy")}
    assert f"{RELEASE}-deny-ingress" in names
    assert not {n for n in names if n.endswith("-egress")}


def test_each_service_has_a_disruption_budget(default_docs: list[Manifest]) -> None:
    for service in SERVICES:
        pdb = one(default_docs, "PodDisruptionBudget", f"{RELEASE}-{service}")
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"] == deployment(default_docs, service)["spec"]["selector"]


def test_service_monitors_scrape_every_service(variants: dict[str, list[Manifest]]) -> None:
    assert not by_kind(variants["profile-defaults"], "ServiceMonitor")
    for name in ("digests-and-monitoring", "profile-prod"):
        docs = variants[name]
        monitors = by_kind(docs, "ServiceMonitor")
        assert len(monitors) == len(SERVICES)
        for monitor in monitors:
            assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
            svc = one(docs, "Service", monitor["metadata"]["name"])
            assert selects(monitor["spec"]["selector"], svc["metadata"]["labels"])
            (endpoint,) = monitor["spec"]["endpoints"]
            assert endpoint["path"] == "/metrics"
            assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
            if name == "profile-prod":
                assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_helm_test_checks_the_api_is_ready(default_docs: list[Manifest]) -> None:
    (pod,) = by_kind(default_docs, "Pod")
    assert is_helm_test(pod)
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    (c,) = pod["spec"]["containers"]
    argv = [*c["command"], *c["args"]]
    assert argv[0] == "curl"
    assert "--fail" in argv, "an unready API answers 503, which must fail the test"
    assert argv[-1] == f"http://{RELEASE}-api.{NAMESPACE}.svc:{OPS_PORT}/readyz"
    # The api's NetworkPolicy lets this pod in.
    assert any(
        port == OPS_PORT and selects(peer.get("podSelector", {}), pod["metadata"]["labels"])
        for peer, port in admitted(default_docs, pod_labels(deployment(default_docs, "api")))
        if "namespaceSelector" not in peer
    )


# --------------------------------------------------------------------------
# checkov
# --------------------------------------------------------------------------

CHECKOV_CONFIG = PLATFORM_CHART / ".checkov.yaml"
DEPLOYMENTS = {("Deployment", f"{RELEASE}-{s}") for s in SERVICES}
NATS = ("StatefulSet", f"{RELEASE}-nats")
POSTGRESQL = ("StatefulSet", f"{RELEASE}-postgresql")
HELM_TEST = ("Pod", f"{RELEASE}-test-readyz")
SETUP = ("Job", f"{RELEASE}-setup")
# Each waived check of .checkov.yaml and the only resources it may fail on.
WAIVER_SCOPE: dict[str, set[tuple[str, str]]] = {
    "CKV_K8S_43": DEPLOYMENTS | {NATS, POSTGRESQL, HELM_TEST, SETUP},  # image digest
    "CKV_K8S_35": DEPLOYMENTS | {SETUP},  # secrets as env
    "CKV_K8S_38": {("Deployment", f"{RELEASE}-{s}") for s in CLUSTER_SERVICES},  # token
    "CKV_K8S_40": {POSTGRESQL},  # high UID
    "CKV_K8S_8": {HELM_TEST},  # liveness probe
    "CKV_K8S_9": {HELM_TEST},  # readiness probe
}
# values-local.yaml pulls IfNotPresent (images side-loaded into kind): not waived in
# .checkov.yaml, which would cover every profile; the laptop profile is not under the gate.
LOCAL_PROFILE_FINDINGS = {
    ("CKV_K8S_15", r) for r in DEPLOYMENTS | {NATS, POSTGRESQL, HELM_TEST, SETUP}
}


@pytest.fixture(scope="module")
def checkov_runs(
    helm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, CheckovRun]]:
    """The gate (checkov -d helm/platform --framework helm, with .checkov.yaml) and an
    unwaived run over each rendered profile, started together."""
    base = tmp_path_factory.mktemp("checkov-platform")
    home = base / "home"
    home.mkdir()
    env = checkov_env(helm_env, home, NAMESPACE)
    rendered = base / "rendered"
    rendered.mkdir()
    for name, args in PROFILES.items():
        text = template_output(
            helm_env, ["template", RELEASE, str(PLATFORM_CHART), "--namespace", NAMESPACE, *args]
        )
        (rendered / f"{name}.yaml").write_text(text)
    procs = {
        "gate": start_checkov(
            ["--directory", str(PLATFORM_CHART.relative_to(REPO)), "--framework", "helm"],
            REPO,
            env,
        ),
        # --skip-download: offline; cwd and HOME hold no .checkov.yaml, so nothing is skipped.
        "unwaived": start_checkov(
            ["--directory", str(rendered), "--framework", "kubernetes", "--skip-download"],
            base,
            env,
        ),
    }
    try:
        yield {name: finish(proc) for name, proc in procs.items()}
    finally:
        stop(procs)


def test_every_waiver_says_why_in_one_line() -> None:
    waived = waived_checks(CHECKOV_CONFIG)
    reasons = waiver_reasons(CHECKOV_CONFIG)
    assert sorted(reasons) == sorted(waived), "each skip-check entry needs a # reason"
    for check, reason in reasons.items():
        assert len(reason) >= 40, f"{check}: the reason is too short to say why: {reason!r}"
    assert len(set(waived)) == len(waived)
    assert set(waived) == set(WAIVER_SCOPE)
    assert yaml.safe_load(CHECKOV_CONFIG.read_text())["skip-download"] is True


def test_checkov_gate_passes_with_zero_failed_checks(
    checkov_runs: dict[str, CheckovRun],
) -> None:
    gate = checkov_runs["gate"]
    failed = sorted(findings(gate.checks("failed")))
    assert not failed, f"checkov failed checks: {failed}\n{gate.stderr[-2000:]}"
    assert gate.returncode == 0, gate.stderr[-2000:]
    assert gate.summary("parsing_errors") == 0
    # checkov reports nothing (and exits 0) when helm cannot render: make sure it did.
    passed = gate.checks("passed")
    assert len(passed) > 300, gate.stderr[-2000:]
    resources = {resource_of(c) for c in passed}
    kinds = {kind for kind, _, _ in resources}
    assert {"Deployment", "StatefulSet", "Job", "Pod", "Ingress", "ClusterRole"} <= kinds
    assert {ns for kind, ns, _ in resources if kind == "Deployment"} == {NAMESPACE}
    assert any(c["check_id"] == "CKV2_K8S_6" for c in passed), "NetworkPolicies were seen"


@pytest.mark.parametrize("profile_name", sorted(PROFILES))
def test_unwaived_findings_are_exactly_the_waived_checks_on_their_resources(
    checkov_runs: dict[str, CheckovRun],
    variants: dict[str, list[Manifest]],
    profile_name: str,
) -> None:
    run = checkov_runs["unwaived"]
    assert run.summary("parsing_errors") == 0
    present = {(d["kind"], d["metadata"]["name"]) for d in variants[f"profile-{profile_name}"]}
    expected = {(check, r) for check, scope in WAIVER_SCOPE.items() for r in scope if r in present}
    if profile_name == "local":
        expected |= LOCAL_PROFILE_FINDINGS
    if profile_name == "defaults":
        # Every resource a waiver names exists here: no waiver can be stale.
        assert {r for scope in WAIVER_SCOPE.values() for r in scope} <= present
    in_file = [c for c in run.checks("failed") if c["file_path"] == f"/{profile_name}.yaml"]
    actual = findings(in_file)
    assert actual == expected, (
        f"not waived (or outside its waiver's scope): {sorted(actual - expected)}\n"
        f"no longer failing (stale waiver scope): {sorted(expected - actual)}"
    )
    passed = [c for c in run.checks("passed") if c["file_path"] == f"/{profile_name}.yaml"]
    assert len(passed) > 300, f"{profile_name}: only {len(passed)} passed checks"


# --------------------------------------------------------------------------
# deploy/kind: the local cluster
# --------------------------------------------------------------------------


def test_cluster_up_is_valid_bash() -> None:
    bash = shutil.which("bash")
    assert bash
    proc = subprocess.run(
        [bash, "-n", str(CLUSTER_UP)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert os.access(CLUSTER_UP, os.X_OK)
    assert CLUSTER_UP.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in CLUSTER_UP.read_text()


def test_cluster_up_builds_every_service_target_of_the_dockerfile() -> None:
    dockerfile = (REPO / "deploy" / "images" / "services.Dockerfile").read_text()
    targets = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", dockerfile, re.MULTILINE))
    match = re.search(r"^SERVICES=\(([^)]*)\)$", CLUSTER_UP.read_text(), re.MULTILINE)
    assert match
    services = match.group(1).split()
    assert sorted(services) == sorted(SERVICES)
    assert set(services) <= targets, f"no such targets: {set(services) - targets}"
    text = CLUSTER_UP.read_text()
    assert '--file deploy/images/services.Dockerfile --target "$service"' in text
    assert 'docker build --tag "$WORDPRESS_IMAGE" deploy/images/wordpress' in text
    assert (REPO / "deploy" / "images" / "wordpress" / "Dockerfile").is_file()
    # Every image it builds is loaded into the node.
    assert text.count("kind load docker-image") == 2


def test_cluster_up_images_are_the_ones_the_charts_run(
    variants: dict[str, list[Manifest]],
) -> None:
    repository, tag = script_variable("IMAGE_REPOSITORY"), script_variable("IMAGE_TAG")
    local = yaml.safe_load((PLATFORM_CHART / "values-local.yaml").read_text())
    assert (local["image"]["repository"], local["image"]["tag"]) == (repository, tag)
    assert (
        container(deployment(variants["profile-local"], "api"))["image"]
        == f"{repository}:api-{tag}"
    )
    store = yaml.safe_load((CHART / "values.yaml").read_text())["wordpress"]["image"]
    assert script_variable("WORDPRESS_IMAGE") == f"{store['repository']}:{store['tag']}"


def test_cluster_up_pins_what_it_installs() -> None:
    text = CLUSTER_UP.read_text()
    assert re.fullmatch(r"\d+\.\d+\.\d+", script_variable("TRAEFIK_CHART_VERSION"))
    assert '--version "$TRAEFIK_CHART_VERSION"' in text
    assert "--values deploy/kind/traefik-values.yaml" in text
    assert "--values helm/platform/values-local.yaml" in text
    assert (KIND / "traefik-values.yaml").is_file()
    cluster = yaml.safe_load((KIND / "cluster.yaml").read_text())
    for node in cluster["nodes"]:
        assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", node["image"])
        minor = re.search(r"v(1\.\d+)\.", node["image"])
        assert minor
        assert minor.group(1) in TARGET_K8S_VERSIONS


def test_the_kind_node_maps_the_ingress_ports() -> None:
    cluster = yaml.safe_load((KIND / "cluster.yaml").read_text())
    assert cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    (control_plane,) = [n for n in cluster["nodes"] if n["role"] == "control-plane"]
    mappings = {(m["containerPort"], m["hostPort"]) for m in control_plane["extraPortMappings"]}
    assert mappings == {(80, 80), (443, 443)}
    traefik = yaml.safe_load((KIND / "traefik-values.yaml").read_text())
    assert traefik["ports"]["web"]["hostPort"] == 80
    assert traefik["ports"]["websecure"]["hostPort"] == 443
    # Traefik runs where the ports are mapped.
    for key, value in traefik["nodeSelector"].items():
        assert control_plane["labels"][key] == value


def run_cluster_up(tmp_path: Path, tools: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """cluster-up.sh with a PATH holding only dirname and the given fake tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dirname = shutil.which("dirname")
    assert dirname
    (bin_dir / "dirname").symlink_to(dirname)
    for name, script in tools.items():
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{script}\n")
        tool.chmod(0o755)
    bash = shutil.which("bash")
    assert bash
    return subprocess.run(
        [bash, str(CLUSTER_UP)],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ({}, "'docker' is not installed"),
        ({"docker": "exit 1"}, "docker is installed but no Docker engine answers"),
        ({"docker": "exit 0"}, "'kind' is not installed"),
        ({"docker": "exit 0", "kind": "exit 0"}, "'kubectl' is not installed"),
        ({"docker": "exit 0", "kind": "exit 0", "kubectl": "exit 0"}, "'helm' is not installed"),
    ],
    ids=["no-docker", "no-engine", "no-kind", "no-kubectl", "no-helm"],
)
def test_cluster_up_says_what_is_missing(
    tmp_path: Path, tools: dict[str, str], message: str
) -> None:
    proc = run_cluster_up(tmp_path, tools)
    assert proc.returncode == 1
    assert f"cluster-up: {message}" in proc.stderr, proc.stderr


def test_makefile_has_the_cluster_targets() -> None:
    makefile = (REPO / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE)
    assert phony
    assert {"cluster-up", "cluster-down"} <= set(phony.group(1).split())
    assert re.search(r"^cluster-up:.*\n\tdeploy/kind/cluster-up\.sh$", makefile, re.MULTILINE)
    assert re.search(r"^cluster-down:.*\n\tkind delete cluster ", makefile, re.MULTILINE)


# --------------------------------------------------------------------------
# deploy/images/wordpress: the store image and helm/store agree
# --------------------------------------------------------------------------

WORDPRESS = REPO / "deploy" / "images" / "wordpress"


def dockerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", (WORDPRESS / "Dockerfile").read_text(), re.MULTILINE)
    assert match, f"ARG {name} has no default"
    return match.group(1)


def test_the_store_chart_runs_this_image(helm_env: dict[str, str]) -> None:
    base = dockerfile_arg("WORDPRESS_IMAGE")
    match = re.fullmatch(r"wordpress:(\d+\.\d+\.\d+)-php\d+\.\d+-apache", base)
    assert match, f"base image not pinned by WordPress and PHP version: {base}"
    tag = f"{match.group(1)}-wc{dockerfile_arg('WOOCOMMERCE_VERSION')}"
    values = yaml.safe_load((CHART / "values.yaml").read_text())["wordpress"]
    assert values["image"]["tag"] == tag
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == tag
    dockerfile = (WORDPRESS / "Dockerfile").read_text()
    c = wordpress_container(render(helm_env))
    # The user and the port of the image are the chart's.
    assert "USER 33:33" in dockerfile
    assert c["securityContext"]["runAsUser"] == 33
    assert "Listen 8080" in dockerfile
    assert c["ports"][0]["containerPort"] == values["containerPort"] == 8080
    # It writes only where the chart gives it writable volumes.
    writable = {m["mountPath"] for m in c["volumeMounts"]}
    assert writable == {"/var/www/html/wp-content", *values["writableDirs"]}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    for variable in ("APACHE_LOCK_DIR", "WP_CLI_CACHE_DIR"):
        match = re.search(rf"^\s+{variable}=(\S+)", dockerfile, re.MULTILINE)
        assert match, variable
        assert any(match.group(1).startswith(d) for d in writable), variable
    # wp-config.php reads what the chart sets.
    config = (WORDPRESS / "wp-config.php").read_text()
    chart_env = {e["name"] for e in c["env"]}
    for variable in re.findall(r"getenv\( '([A-Z_]+)' \)", config):
        assert variable in chart_env, f"wp-config.php reads {variable}, which the chart never sets"


def test_wordpress_is_locked_down_by_its_configuration() -> None:
    config = (WORDPRESS / "wp-config.php").read_text()
    for constant in (
        "DISALLOW_FILE_MODS",
        "AUTOMATIC_UPDATER_DISABLED",
        "WP_HTTP_BLOCK_EXTERNAL",
        # WP-Cron's request to the store's own URL, which the egress policy blocks: the
        # pod's cron container runs the due events instead.
        "DISABLE_WP_CRON",
        # No store admin can post script into pages served next to the dashboard.
        "DISALLOW_UNFILTERED_HTML",
    ):
        assert re.search(rf"^define\( '{constant}', true \);$", config, re.MULTILINE), constant


def test_wp_cli_has_more_memory_than_phps_default_and_less_than_the_pod(
    profile_docs: dict[str, list[Manifest]],
) -> None:
    """WP-CLI (PHP's CLI) activates WooCommerce, which PHP's default 128M may not hold: the
    image gives the CLI alone a higher limit (php-cli.ini, which PHP's CLI reads instead of
    php.ini), checks it at build time, and the limit stays under the WordPress container's
    memory limit in every profile (past it the kernel kills the pod, Apache with it)."""
    dockerfile = (WORDPRESS / "Dockerfile").read_text()
    limit = dockerfile_arg("PHP_CLI_MEMORY_LIMIT")
    match = re.fullmatch(r"(\d+)M", limit)
    assert match, f"PHP_CLI_MEMORY_LIMIT={limit}: give it in M"
    cli_bytes = int(match.group(1)) * 2**20  # PHP's M is 2^20 bytes
    assert cli_bytes > 128 * 2**20
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    assert '>> "$PHP_INI_DIR/php-cli.ini"' in final_stage
    assert 'ini_get("memory_limit")' in final_stage, "the build checks the CLI's limit"
    for profile, docs in profile_docs.items():
        (wp,) = by_kind(docs, "Deployment")
        for c in wp["spec"]["template"]["spec"]["containers"]:  # both run WP-CLI
            limit_there = quantity(c["resources"]["limits"]["memory"])
            assert cli_bytes < limit_there, f"{profile}: WP-CLI's limit reaches {c['name']}'s"


def test_downloads_are_pinned_and_verified_at_build_time() -> None:
    dockerfile = (WORDPRESS / "Dockerfile").read_text()
    assert re.fullmatch(r"\d+\.\d+\.\d+", dockerfile_arg("WOOCOMMERCE_VERSION"))
    assert re.fullmatch(r"[0-9a-f]{64}", dockerfile_arg("WOOCOMMERCE_SHA256"))
    assert re.fullmatch(r"\d+\.\d+\.\d+", dockerfile_arg("WP_CLI_VERSION"))
    assert re.fullmatch(r"[0-9a-f]{128}", dockerfile_arg("WP_CLI_SHA512"))
    assert '"${WOOCOMMERCE_SHA256} */tmp/woocommerce.zip" | sha256sum -c -' in dockerfile
    assert '"${WP_CLI_SHA512} */tmp/wp" | sha512sum -c -' in dockerfile
    urls = re.findall(r'"(https://[^"]+)"', dockerfile)
    assert urls
    for url in urls:
        assert "${WOOCOMMERCE_VERSION}" in url or "${WP_CLI_VERSION}" in url, url
    # Nothing is fetched when the container runs.
    entrypoint = (WORDPRESS / "woostore-entrypoint.sh").read_text()
    assert not re.search(r"\b(curl|wget|wp plugin install|wp core download)\b", entrypoint)


@pytest.mark.parametrize("script", ["woostore-entrypoint.sh", "woostore-cron.sh"])
def test_the_images_scripts_are_valid_sh(script: str) -> None:
    sh = shutil.which("sh")
    assert sh
    path = WORDPRESS / script
    proc = subprocess.run([sh, "-n", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert os.access(path, os.X_OK)
    final_stage = (WORDPRESS / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    assert f"COPY --chmod=0755 {script} /usr/local/bin/{script.removesuffix('.sh')}\n" in (
        final_stage
    )


def test_the_cron_container_runs_wordpresss_due_events_on_wordpresss_volume(
    helm_env: dict[str, str],
) -> None:
    (wp,) = by_kind(render(helm_env), "Deployment")
    pod = wp["spec"]["template"]["spec"]
    cron = one_named(pod["containers"], "cron")
    wordpress = one_named(pod["containers"], "wordpress")
    assert cron["command"] == ["woostore-cron"]
    assert cron["image"] == wordpress["image"]
    mounts = {m["mountPath"]: m["name"] for m in cron["volumeMounts"]}
    assert mounts["/var/www/html/wp-content"] == "wp-content"  # the same store
    env = {e["name"] for e in cron["env"]}
    assert {"WORDPRESS_DB_HOST", "WORDPRESS_DB_PASSWORD", "WOOSTORE_URL_SCHEME"} <= env
    assert "WOOSTORE_ADMIN_PASSWORD" not in env  # what it does needs no login
    assert cron["livenessProbe"]["exec"]["command"] == ["woostore-cron", "--alive"]
    assert {"name": "WOOSTORE_CRON_LOG", "value": "events"} in cron["env"]
    (quiet,) = by_kind(render(helm_env, "--set", "wordpress.cron.log=failures"), "Deployment")
    quiet_cron = one_named(quiet["spec"]["template"]["spec"]["containers"], "cron")
    assert {"name": "WOOSTORE_CRON_LOG", "value": "failures"} in quiet_cron["env"]


def one_named(containers: list[Manifest], name: str) -> Manifest:
    (found,) = [c for c in containers if c["name"] == name]
    return found


def test_the_cron_loop_runs_the_due_events_once_installed_and_stops_at_once(
    tmp_path: Path,
) -> None:
    """The script with a stand-in `wp` that logs its arguments: nothing runs before
    WordPress is installed, the due events every interval after, each event run a line of the
    container's log (a round with none, nothing), a failed round said, and TERM ends it at
    once."""
    installed, due, broken = tmp_path / "installed", tmp_path / "due", tmp_path / "broken"
    due.touch()  # one event is due: the first round runs it, the next ones find none
    log, env = with_a_stand_in_wp(
        tmp_path,
        f'*"core is-installed"*) test -e {installed} ;;\n'
        f'*"cron event run"*) if [ -e {broken} ]; then echo "Error: database gone" >&2; exit 1\n'
        f"  elif [ -e {due} ]; then rm {due}\n"
        "    echo \"Executed the cron event 'wp_version_check' in 0.01s.\"\n"
        '    echo "Success: Executed a total of 1 cron event."\n'
        '  else echo "Success: Executed a total of 0 cron events."; fi ;;\n',
    )
    script = str(WORDPRESS / "woostore-cron.sh")
    alive = [script, "--alive"]
    assert subprocess.run(alive, env=env, check=False).returncode != 0  # never ran

    container_log, errors = tmp_path / "container.log", tmp_path / "errors.log"
    with container_log.open("w") as output, errors.open("w") as error_output:
        loop = subprocess.Popen([script], env=env, stdout=output, stderr=error_output)
    try:
        wait_for(lambda: log.exists() and "core is-installed" in log.read_text(), 10)
        assert "cron event run" not in log.read_text()
        installed.touch()
        # Two rounds: the first ran the due event, the second found none.
        wait_for(lambda: log.read_text().count("cron event run --due-now") >= 2, 10)
        assert subprocess.run(alive, env=env, check=False).returncode == 0
        broken.touch()  # a round whose wp fails says so, with wp's own words
        wait_for(lambda: "failed" in errors.read_text(), 10)
    finally:
        loop.terminate()
    assert loop.wait(timeout=5) == 0  # in the middle of its sleep
    lines = container_log.read_text().splitlines()
    assert lines[:2] == [
        "Executed the cron event 'wp_version_check' in 0.01s.",
        "Success: Executed a total of 1 cron event.",
    ]
    assert set(lines[2:]) == {"Error: database gone"}  # each failed round, in wp's words
    assert "woostore-cron: wp cron event run failed" in errors.read_text()


def test_the_cron_loop_logging_failures_only_shows_failed_and_cut_off_rounds(
    tmp_path: Path,
) -> None:
    """WOOSTORE_CRON_LOG=failures: a round that ran events prints nothing; a failed one
    prints all wp said, then says it failed; a round cut off mid-way (the liveness probe
    restarted the container) is shown when the loop next starts. An unknown mode is refused."""
    broken = tmp_path / "broken"
    log, env = with_a_stand_in_wp(
        tmp_path,
        '*"core is-installed"*) exit 0 ;;\n'
        '*"cron event run"*)\n'
        "    echo \"Executed the cron event 'action_scheduler_run_queue' in 0.01s.\"\n"
        f'    if [ -e {broken} ]; then echo "Error: database gone" >&2; exit 1; fi\n'
        '    echo "Success: Executed a total of 1 cron event." ;;\n',
    )
    env["WOOSTORE_CRON_LOG"] = "failures"
    script = str(WORDPRESS / "woostore-cron.sh")
    # What a round cut off by a restart left behind.
    (tmp_path / "woostore-cron.round").write_text("Executed the cron event 'wc_cleanup' in 9s.\n")
    container_log, errors = tmp_path / "container.log", tmp_path / "errors.log"
    with container_log.open("w") as output, errors.open("w") as error_output:
        loop = subprocess.Popen([script], env=env, stdout=output, stderr=error_output)
    try:
        wait_for(lambda: log.exists() and log.read_text().count("cron event run") >= 2, 10)
        assert container_log.read_text() == "Executed the cron event 'wc_cleanup' in 9s.\n"
        assert errors.read_text() == (
            "woostore-cron: the last round was cut off; what it had printed:\n"
        )
        broken.touch()
        wait_for(lambda: "failed" in errors.read_text(), 10)
    finally:
        loop.terminate()
    assert loop.wait(timeout=5) == 0
    lines = container_log.read_text().splitlines()
    assert lines[0] == "Executed the cron event 'wc_cleanup' in 9s."  # the cut-off round
    # Then only failed rounds, each whole: the event it ran, then wp's error.
    failed = lines[1:]
    assert failed[:2] == [
        "Executed the cron event 'action_scheduler_run_queue' in 0.01s.",
        "Error: database gone",
    ]
    assert set(failed) == set(failed[:2])
    assert "Success" not in container_log.read_text()

    wrong = subprocess.run(
        [script], env={**env, "WOOSTORE_CRON_LOG": "quiet"}, capture_output=True, text=True,
        timeout=10, check=False,
    )  # fmt: skip
    assert wrong.returncode == 2
    assert "WOOSTORE_CRON_LOG is events or failures, not 'quiet'" in wrong.stderr


def test_a_cron_round_under_way_when_the_pod_stops_finishes_and_says_how_it_went(
    tmp_path: Path,
) -> None:
    """TERM mid-round (failures mode): the round ends as it would, its output kept back and
    then removed, and the loop exits 0; so the next start shows no round as cut off."""
    running, release = tmp_path / "running", tmp_path / "release"
    _, env = with_a_stand_in_wp(
        tmp_path,
        '*"core is-installed"*) exit 0 ;;\n'
        f'*"cron event run"*) touch {running}\n'
        f"    while [ ! -e {release} ]; do sleep 0.05; done\n"
        '    echo "Success: Executed a total of 1 cron event." ;;\n',
    )
    env["WOOSTORE_CRON_LOG"] = "failures"
    script = str(WORDPRESS / "woostore-cron.sh")
    container_log, errors = tmp_path / "container.log", tmp_path / "errors.log"
    with container_log.open("w") as output, errors.open("w") as error_output:
        loop = subprocess.Popen([script], env=env, stdout=output, stderr=error_output)
    try:
        wait_for(running.exists, 10)
        loop.terminate()  # while wp runs the round
        release.touch()
        assert loop.wait(timeout=5) == 0
    finally:
        loop.kill()
    assert container_log.read_text() == ""
    assert errors.read_text() == ""
    assert not (tmp_path / "woostore-cron.round").exists()


def with_a_stand_in_wp(tmp_path: Path, cases: str) -> tuple[Path, dict[str, str]]:
    """A `wp` on the PATH that logs its arguments to the returned file and answers as the
    ``case`` branches ``cases`` say; and the cron script's environment to find it, with a
    round every second."""
    bin_dir, log = tmp_path / "bin", tmp_path / "wp.log"
    bin_dir.mkdir()
    fake_wp = bin_dir / "wp"
    fake_wp.write_text(f'#!/bin/sh\necho "$*" >> {log}\ncase "$*" in\n{cases}esac\n')
    fake_wp.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp_path),
           "WOOSTORE_CRON_INTERVAL": "1"}  # fmt: skip
    return log, env


def wait_for(condition: Callable[[], bool], seconds: float) -> None:
    give_up = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < give_up, "not within the time allowed"
        time.sleep(0.05)


# --------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------


def test_compose_nats_fsyncs_every_write() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    nats = compose["services"]["nats"]
    (config,) = nats["configs"]
    content = compose["configs"][config["source"]]["content"]
    assert re.search(r"^\s*sync_interval:\s*always\s*$", content, re.MULTILINE)
    assert nats["command"] == ["--config", config["target"]]
    store_dir = re.search(r"^\s*store_dir:\s*(\S+)\s*$", content, re.MULTILINE)
    assert store_dir
    assert f"nats:{store_dir.group(1)}" in nats["volumes"]


def test_compose_runs_on_the_simulator_or_a_kubeconfig() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in CLUSTER_SERVICES:
        service = services[name]
        env = service["environment"]
        # Simulated unless asked: the kubeconfig mount alone never switches it.
        assert env["WOOSTORE_CLUSTER"] == "${WOOSTORE_CLUSTER:-simulated}"
        assert env["WOOSTORE_KUBECONFIG"] == "/kube/config"
        assert "${WOOSTORE_KUBECONFIG_FILE:-/dev/null}:/kube/config:ro" in service["volumes"]
        # One simulated cluster for the provisioner replicas and the reaper.
        assert f"simcluster:{env['WOOSTORE_DATA_DIR']}" in service["volumes"]
    assert services["api"]["environment"]["WOOSTORE_CLUSTER"] == "${WOOSTORE_CLUSTER:-simulated}"


def test_the_production_profile_names_where_backups_go(helm_env: dict[str, str]) -> None:
    """Every change of a store backs it up first: a production install without a location
    failed every settings change, upgrade, rollback and restore (a user's review)."""
    docs = render_platform(helm_env, *PROFILES["prod"])
    for name in ("provisioner", "reaper"):
        env = env_of(container(deployment(docs, name)))
        assert env["WOOSTORE_BACKUP_LOCATION"]["value"].startswith("s3:https://")


def test_the_production_profile_asks_where_its_backup_storage_is_once_egress_is_narrowed(
    helm_env: dict[str, str],
) -> None:
    """values-prod named a documentation range as the storage's addresses: an operator who
    set the bucket and narrowed apiServer.cidrs, as it asks, got backups that timed out
    (every change of a store with them). Now the chart says what to set."""
    stderr = template_fails(
        helm_env,
        *PROFILES["prod"],
        *set_values("backups.location=s3:https://s3.eu-west-1.amazonaws.com/shop-backups"),
        "--set-json",
        'networkPolicy.egress.apiServer.cidrs=["172.18.0.2/32"]',
    )
    assert "networkPolicy.egress.backups names no destination" in stderr


def test_backups_are_kept_by_the_provisioner_and_scheduled_by_the_reaper_as_set(
    helm_env: dict[str, str],
) -> None:
    docs = render_platform(
        helm_env,
        *set_values(
            "backups.location=s3:https://s3.example.com/shops/backups",
            "backups.s3CredentialsSecret=backup-s3",
            "backups.everyHours=12",
            "backups.keep.last=5",
            "backups.proxy=http://proxy.internal:3128",
            "backups.noProxy=.svc\\,.cluster.local",
            "backups.checkShare=500M",
        ),
    )
    provisioner = env_of(container(deployment(docs, "provisioner")))
    reaper = env_of(container(deployment(docs, "reaper")))
    api = env_of(container(deployment(docs, "api")))
    for env in (provisioner, reaper):
        assert env["WOOSTORE_BACKUP_LOCATION"]["value"] == "s3:https://s3.example.com/shops/backups"
    assert provisioner["WOOSTORE_BACKUP_S3_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "backup-s3", "key": "secret-access-key",
    }  # fmt: skip
    assert "WOOSTORE_BACKUP_S3_SECRET_ACCESS_KEY" not in reaper  # it never reads a backup
    assert provisioner["WOOSTORE_BACKUP_PROXY"]["value"] == "http://proxy.internal:3128"
    assert provisioner["WOOSTORE_BACKUP_NO_PROXY"]["value"] == ".svc,.cluster.local"
    assert provisioner["WOOSTORE_BACKUP_CHECK_SHARE"]["value"] == "500M"
    schedule = {name: reaper[name]["value"] for name in reaper if "BACKUP" in name}
    assert schedule == {
        "WOOSTORE_BACKUP_LOCATION": "s3:https://s3.example.com/shops/backups",
        "WOOSTORE_BACKUP_EVERY_HOURS": "12",
        "WOOSTORE_BACKUPS_AT_ONCE": "2",
        "WOOSTORE_BACKUP_KEEP_LAST": "5",
        "WOOSTORE_BACKUP_KEEP_DAILY": "7",
        "WOOSTORE_BACKUP_KEEP_WEEKLY": "4",
    }
    assert not [name for name in api if "BACKUP" in name]


def test_the_provisioner_alone_may_be_given_a_cloud_identity_for_the_backup_storage(
    helm_env: dict[str, str], default_docs: list[Manifest]
) -> None:
    role = "arn:aws:iam::123456789012:role/woostore-backups"
    docs = render_platform(
        helm_env,
        *set_values(f"backups.serviceAccountAnnotations.eks\\.amazonaws\\.com/role-arn={role}"),
    )
    accounts = {a["metadata"]["name"]: a["metadata"] for a in by_kind(docs, "ServiceAccount")}
    annotated = {
        name: meta["annotations"] for name, meta in accounts.items() if "annotations" in meta
    }
    assert annotated == {"woostore-provisioner": {"eks.amazonaws.com/role-arn": role}}
    assert not [
        a for a in by_kind(default_docs, "ServiceAccount") if "annotations" in a["metadata"]
    ]


def test_every_service_sends_its_spans_to_the_collector_set_and_none_without_one(
    helm_env: dict[str, str], default_docs: list[Manifest]
) -> None:
    collector = "http://otel-collector.observability:4318"
    docs = render_platform(helm_env, *set_values(f"tracing.otlpEndpoint={collector}"))
    for service in ("api", "notifier", "provisioner", "reaper"):
        env = env_of(container(deployment(docs, service)))
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == collector, service
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env_of(
            container(deployment(default_docs, service))
        )


def _image_environments(dockerfile: str) -> dict[str, dict[str, str]]:
    """Each stage's environment as its ENV instructions leave it, a stage built FROM another
    starting from that one's."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    stages: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["FROM"]:
            current = dict(stages.get(words[1], {}))
            stages[words[3] if len(words) > 3 else words[1]] = current
        elif words[:1] == ["ENV"]:
            current.update(word.partition("=")[::2] for word in words[1:])
    return stages


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_runs_its_service_with_the_python_make_run_gives_it(service: str) -> None:
    """The images' Python settles as `make run`'s (``launcher.python_options``): -OO where no
    docstring is read, no column ranges anywhere, and the bytecode -OO reads compiled when
    the image is built, not at each start."""
    dockerfile = (REPO / "deploy" / "images" / "services.Dockerfile").read_text()
    environment = _image_environments(dockerfile)[service]
    python = {name: value for name, value in environment.items() if name.startswith("PYTHON")}
    assert python == {"PYTHONUNBUFFERED": "1", **python_options(service)}
    if "PYTHONOPTIMIZE" in python:
        build = re.search(rf"^FROM build AS build-{service}\n(?:.*\n)*?(?=FROM )", dockerfile, re.M)
        assert build is not None
        assert "-m compileall -qq -j 0 -o 2 .venv/lib" in build.group(0)
