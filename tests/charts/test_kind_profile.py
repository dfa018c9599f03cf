"""helm/store's local profile (values-local.yaml) against what `make cluster-up` installs
(deploy/kind): the real-cluster test (tests/e2e_kubernetes) uses that profile by default, and
the platform gives it to every store on kind, so a store must be served by the Traefik the
script installs: the Ingress of Traefik's class, and the NetworkPolicies admitting Traefik's
pods from Traefik's namespace. Any other class is ignored by Traefik (the store answers 404),
any other namespace is blocked by the store's policies; either fails every store.

The Traefik side is read from deploy/kind (the release and namespace cluster-up.sh installs,
traefik-values.yaml) and named and labelled as the Traefik chart does (tests/charts/kind.py),
so changing either side alone fails here."""

from __future__ import annotations

import re

import yaml

from tests.charts.chart import CHART, NAMESPACE, PLATFORM_CHART, REPO, Manifest, by_kind
from tests.charts.kind import traefik_release
from tests.charts.netpol import Endpoint, Flow, allowed_flows, namespace_labels
from tests.charts.test_guardrails import WP_PORT, cluster_model

E2E_TEST = REPO / "tests" / "e2e_kubernetes" / "test_real_cluster.py"


def local_values(chart: str) -> Manifest:
    values = yaml.safe_load((REPO / "helm" / chart / "values-local.yaml").read_text())
    assert isinstance(values, dict)
    return values


def test_traefik_on_kind_serves_ingresses_of_its_class() -> None:
    traefik = traefik_release()
    assert traefik.ingress_class, "cluster-up's Traefik must make an IngressClass"
    providers = traefik.values.get("providers") or {}
    assert (providers.get("kubernetesIngress") or {}).get("enabled", True), (
        "Traefik on kind must watch Ingresses (providers.kubernetesIngress)"
    )


def test_the_local_store_ingress_has_the_class_of_traefik_on_kind(
    profile_docs: dict[str, list[Manifest]],
) -> None:
    traefik = traefik_release()
    (ingress,) = by_kind(profile_docs["local"], "Ingress")
    assert ingress["spec"]["ingressClassName"] == traefik.ingress_class


def test_the_local_store_admits_traefik_on_kind_and_no_neighbour_of_it(
    profile_docs: dict[str, list[Manifest]],
) -> None:
    traefik = traefik_release()
    docs = profile_docs["local"]
    kind_traefik = Endpoint(
        "kind-traefik", traefik.namespace, traefik.pod_labels, traefik.namespace_labels
    )
    neighbour = Endpoint(
        "kind-traefik-neighbour", traefik.namespace, {"run": "debug"}, traefik.namespace_labels
    )
    # Traefik's pods in a namespace of another name: admitted by labels alone they would be.
    other_namespace = Endpoint(
        "traefik-elsewhere", "ingress", traefik.pod_labels, namespace_labels("ingress")
    )
    endpoints = [*cluster_model(docs), kind_traefik, neighbour, other_namespace]
    policies = by_kind(docs, "NetworkPolicy")

    flows = allowed_flows(policies, endpoints, [("TCP", WP_PORT)], NAMESPACE)

    assert Flow("kind-traefik", "wordpress", "TCP", WP_PORT) in flows
    assert Flow("kind-traefik-neighbour", "wordpress", "TCP", WP_PORT) not in flows
    assert Flow("traefik-elsewhere", "wordpress", "TCP", WP_PORT) not in flows


def test_the_platform_on_kind_gives_stores_the_same_controller_as_the_store_profile() -> None:
    """cluster-up installs helm/platform with its values-local.yaml, which hands every store
    its ingress class and controller over values-local.yaml's (store-values.yaml): both must
    name cluster-up's Traefik, so a store made by the platform and one made by the
    real-cluster test are served alike."""
    traefik = traefik_release()
    platform, store = local_values("platform"), local_values("store")
    assert platform["ingress"]["className"] == store["ingress"]["className"]
    assert platform["ingress"]["className"] == traefik.ingress_class
    assert platform["ingress"]["controller"] == "traefik"
    assert (
        platform["networkPolicy"]["ingressController"]
        == store["networkPolicy"]["ingressController"]
    )
    assert (PLATFORM_CHART / "values-local.yaml").is_file()
    assert "/app/helm/store/values-local.yaml" in platform["stores"]["valuesFiles"]


def test_the_real_cluster_test_uses_the_local_profile_by_default() -> None:
    # The module skips itself at import without WOOSTORE_E2E_KUBECONFIG: read its default.
    default = re.search(
        r'"WOOSTORE_E2E_VALUES_FILES",\s*str\(REPO / "helm" / "store" / "([^"]+)"\)',
        E2E_TEST.read_text(),
    )
    assert default, f"{E2E_TEST} no longer defaults WOOSTORE_E2E_VALUES_FILES to a profile"
    assert CHART / default.group(1) == CHART / "values-local.yaml"


def test_traefik_on_kind_has_a_cluster_ip_service() -> None:
    """kind has no load balancer: Traefik's Service is a ClusterIP one, set where the chart
    reads it (service.spec; it ignores a service.type, and its default is LoadBalancer)."""
    service = traefik_release().values["service"]
    assert "type" not in service, "the Traefik chart ignores service.type: set service.spec.type"
    assert service["spec"]["type"] == "ClusterIP"
