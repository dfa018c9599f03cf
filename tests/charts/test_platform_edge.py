"""helm/platform at the edge: what its Ingresses let through to the services.

The rest of the chart is checked in test_platform_chart.py; the helpers are in chart.py.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.charts.chart import PLATFORM_CHART, Manifest, by_kind, one, render_platform

RELEASE = NAMESPACE = "woostore"  # render_platform's
MAX_BODY_BYTES = "65536"  # settings.maxBodyBytes in values.yaml
OPS_PORT = 9000  # every service's /healthz, /readyz and /metrics
BODY_LIMIT_ANNOTATIONS = {
    "ingress-nginx": ("nginx.ingress.kubernetes.io/proxy-body-size", MAX_BODY_BYTES),
    "nginx": ("nginx.org/client-max-body-size", MAX_BODY_BYTES),
    "traefik": (
        "traefik.ingress.kubernetes.io/router.middlewares",
        f"{NAMESPACE}-{RELEASE}-body-limit@kubernetescrd",
    ),
}


def ingress_annotations(docs: list[Manifest], name: str) -> dict[str, str]:
    found: dict[str, str] = one(docs, "Ingress", name)["metadata"].get("annotations") or {}
    return found


def api_env(docs: list[Manifest]) -> dict[str, str]:
    deployment = one(docs, "Deployment", f"{RELEASE}-api")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


@pytest.mark.parametrize("controller", sorted(BODY_LIMIT_ANNOTATIONS))
def test_the_main_ingress_refuses_bodies_the_api_would_refuse(
    helm_env: dict[str, str], controller: str
) -> None:
    docs = render_platform(helm_env, "--set", f"ingress.controller={controller}")

    name, value = BODY_LIMIT_ANNOTATIONS[controller]
    assert ingress_annotations(docs, RELEASE)[name] == value
    assert api_env(docs)["WOOSTORE_MAX_BODY_BYTES"] == MAX_BODY_BYTES
    # The event stream takes no body, and Traefik's buffering would hold its responses back.
    assert name not in ingress_annotations(docs, f"{RELEASE}-events")
    middlewares = by_kind(docs, "Middleware")
    if controller == "traefik":
        (middleware,) = middlewares
        assert middleware["apiVersion"] == "traefik.io/v1alpha1"
        assert middleware["metadata"]["name"] == f"{RELEASE}-body-limit"
        assert middleware["spec"] == {"buffering": {"maxRequestBodyBytes": int(MAX_BODY_BYTES)}}
    else:
        assert middlewares == []


def test_one_value_sets_the_api_and_the_ingress_body_limit(helm_env: dict[str, str]) -> None:
    docs = render_platform(
        helm_env, "--set", "settings.maxBodyBytes=1024", "--set", "ingress.controller=nginx"
    )

    assert ingress_annotations(docs, RELEASE)["nginx.org/client-max-body-size"] == "1024"
    assert api_env(docs)["WOOSTORE_MAX_BODY_BYTES"] == "1024"


def test_swagger_ui_is_off_in_the_production_profile(helm_env: dict[str, str]) -> None:
    defaults = render_platform(helm_env)
    prod = render_platform(helm_env, "--values", str(PLATFORM_CHART / "values-prod.yaml"))

    assert api_env(defaults)["WOOSTORE_API_DOCS"] == "true"
    assert api_env(prod)["WOOSTORE_API_DOCS"] == "false"


def registrable_domain(host: str) -> str:
    # The last two labels: right for the example domains the profiles ship (a real check
    # needs the Public Suffix List).
    return ".".join(host.split(".")[-2:])


@pytest.mark.parametrize("profile", [[], ["--values", str(PLATFORM_CHART / "values-prod.yaml")]])
def test_stores_live_on_another_site_than_the_dashboard(
    helm_env: dict[str, str], profile: list[str]
) -> None:
    docs = render_platform(helm_env, *profile)

    env = api_env(docs)
    dashboard = urlsplit(env["WOOSTORE_DASHBOARD_ORIGIN"]).hostname
    assert dashboard
    stores = env["WOOSTORE_BASE_DOMAIN"]
    assert registrable_domain(stores) != registrable_domain(dashboard)


@pytest.mark.parametrize("controller", sorted(BODY_LIMIT_ANNOTATIONS))
def test_no_ingress_reaches_an_ops_port(helm_env: dict[str, str], controller: str) -> None:
    docs = render_platform(helm_env, "--set", f"ingress.controller={controller}")

    routed = [
        path["backend"]["service"]
        for ingress in by_kind(docs, "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert len(routed) == 2
    for backend in routed:
        service = one(docs, "Service", backend["name"])
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert backend["port"] == {"name": "http"}
        assert ports["http"]["port"] != ports["ops"]["port"]
        deployment = one(docs, "Deployment", backend["name"])
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] == "ops"
    # Nor may the controller's pods connect to one.
    for policy in by_kind(docs, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            if any("traefik" in str(peer) for peer in rule["from"]):
                assert [p["port"] for p in rule["ports"]] != [OPS_PORT], policy["metadata"]


@pytest.mark.parametrize(
    ("values", "trusted"),
    [
        ([], "*"),  # the NetworkPolicy lets only the ingress controller reach the api
        (["networkPolicy.enabled=false"], "127.0.0.1"),
        (["networkPolicy.enabled=false", "api.forwardedAllowIps=10.42.0.0/16"], "10.42.0.0/16"),
    ],
)
def test_the_api_believes_forwarded_headers_only_from_the_ingress_controller(
    helm_env: dict[str, str], values: list[str], trusted: str
) -> None:
    docs = render_platform(helm_env, *(arg for value in values for arg in ("--set", value)))

    assert api_env(docs)["WOOSTORE_FORWARDED_ALLOW_IPS"] == trusted


def test_every_service_image_serves_its_ops_endpoints_on_the_charts_ops_port() -> None:
    # Containers run outside the chart (docker-compose, a plain `docker run`) get the same
    # ops port the chart's probes and ServiceMonitor use, not a random one.
    dockerfile = (PLATFORM_CHART.parents[1] / "deploy/images/services.Dockerfile").read_text()
    runtime = dockerfile.split("FROM runtime AS", 1)[0]
    assert f"WOOSTORE_OPS_PORT={OPS_PORT}" in runtime
    for service in dockerfile.split("FROM runtime AS")[1:]:
        exposed = re.search(r"^EXPOSE (.+)$", service, re.MULTILINE)
        assert exposed, service
        assert str(OPS_PORT) in exposed.group(1).split(), service.split()[0]


NO_ACCESS_LOG = {
    "ingress-nginx": ("nginx.ingress.kubernetes.io/enable-access-log", "false"),
    "traefik": ("traefik.ingress.kubernetes.io/router.observability.accesslogs", "false"),
}


@pytest.mark.parametrize("controller", sorted(NO_ACCESS_LOG))
def test_the_event_streams_urls_with_their_tickets_stay_out_of_the_access_log(
    helm_env: dict[str, str], controller: str
) -> None:
    docs = render_platform(helm_env, "--set", f"ingress.controller={controller}")

    key, value = NO_ACCESS_LOG[controller]
    assert ingress_annotations(docs, f"{RELEASE}-events")[key] == value
    # The rest of the API keeps its access log: no ticket travels in its URLs.
    assert key not in ingress_annotations(docs, RELEASE)
