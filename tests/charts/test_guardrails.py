"""The guardrails the store chart renders into the store's namespace: NetworkPolicies,
ResourceQuota, LimitRange, and the `helm test` pod.

The NetworkPolicies are checked two ways: their shape (default deny, explicit policy
types, no catch-all peers), and what they do: a small evaluator of the NetworkPolicy
rules (tests/charts/netpol.py: the Kubernetes semantics, not any CNI's) runs every flow
between a model of the cluster's pods and requires that exactly the intended flows are
allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
import yaml

from tests.charts import netpol
from tests.charts.chart import (
    CHART,
    HOST,
    NAMESPACE,
    RELEASE,
    STORE_ID,
    Manifest,
    by_kind,
    is_helm_test,
    one,
    pods,
    quantity,
    render,
)
from tests.charts.netpol import Endpoint, Flow, namespace_labels

WP_PORT = 8080
DB_PORT = 3306
# cert-manager's HTTP-01 solver pod (pkg/issuer/acme/http: acmeSolverListenPort, podLabels).
SOLVER_PORT = 8089
SOLVER_LABELS = {
    "acme.cert-manager.io/http01-solver": "true",
    "acme.cert-manager.io/http-domain": "1234567890",
    "acme.cert-manager.io/http-token": "987654321",
}

PROBES = [
    ("TCP", 80),
    ("TCP", 443),
    ("TCP", WP_PORT),
    ("TCP", DB_PORT),
    ("TCP", 53),
    ("UDP", 53),
    ("TCP", SOLVER_PORT),
]


def allowed_flows(policies: list[Manifest], endpoints: list[Endpoint]) -> set[Flow]:
    """Every probed flow that touches the store's namespace and the policies allow."""
    return netpol.allowed_flows(policies, endpoints, PROBES, NAMESPACE)


# The store's namespace as the provisioner makes it (recipe.create_namespace).
STORE_NAMESPACE_LABELS = namespace_labels(
    NAMESPACE,
    **{
        "app.kubernetes.io/managed-by": "woostore",
        "woostore.io/store-id": STORE_ID,
        "pod-security.kubernetes.io/enforce": "restricted",
    },
)
OTHER_STORE_NAMESPACE = "store-other-7"


def chart_pod_labels(docs: list[Manifest]) -> dict[str, dict[str, str]]:
    """Labels of each pod the chart makes, by component."""
    found = {}
    for _, meta, _ in pods(docs):
        labels: dict[str, str] = meta["labels"]
        found[labels["app.kubernetes.io/component"]] = labels
    return found


def cluster_model(docs: list[Manifest]) -> list[Endpoint]:
    """The store's pods, as rendered, and the rest of a cluster around them."""
    labels = chart_pod_labels(docs)
    store_ns = STORE_NAMESPACE_LABELS
    endpoints = [
        Endpoint("wordpress", NAMESPACE, labels["wordpress"], store_ns, {"http": WP_PORT}),
        Endpoint("mariadb", NAMESPACE, labels["mariadb"], store_ns, {"mysql": DB_PORT}),
        # Anything else started in the namespace (kubectl run, a compromised process...).
        Endpoint("stray-pod", NAMESPACE, {"run": "debug"}, store_ns),
        # cert-manager's HTTP-01 solver, while a certificate is being issued.
        Endpoint("acme-solver", NAMESPACE, SOLVER_LABELS, store_ns, {"http": SOLVER_PORT}),
        # The same chart in another store's namespace: identical pod labels.
        Endpoint(
            "other-store-wordpress",
            OTHER_STORE_NAMESPACE,
            labels["wordpress"],
            namespace_labels(OTHER_STORE_NAMESPACE, **{"app.kubernetes.io/managed-by": "woostore"}),
        ),
        Endpoint(
            "ingress-controller",
            "ingress-nginx",
            {
                "app.kubernetes.io/name": "ingress-nginx",
                "app.kubernetes.io/component": "controller",
            },
            namespace_labels("ingress-nginx"),
        ),
        Endpoint(
            "ingress-admission-webhook",
            "ingress-nginx",
            {
                "app.kubernetes.io/name": "ingress-nginx",
                "app.kubernetes.io/component": "admission-webhook",
            },
            namespace_labels("ingress-nginx"),
        ),
        # Traefik as `make cluster-up` installs it (release and namespace "traefik"), and
        # another pod in its namespace; values-local admits only Traefik's pods.
        Endpoint(
            "traefik",
            "traefik",
            {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik-traefik"},
            namespace_labels("traefik"),
        ),
        Endpoint("traefik-neighbour", "traefik", {"run": "debug"}, namespace_labels("traefik")),
        Endpoint(
            "coredns", "kube-system", {"k8s-app": "kube-dns"}, namespace_labels("kube-system")
        ),
        Endpoint(
            "metrics-server",
            "kube-system",
            {"k8s-app": "metrics-server"},
            namespace_labels("kube-system"),
        ),
        Endpoint("internet", None, address="203.0.113.7"),
    ]
    if "helm-test" in labels:
        endpoints.append(Endpoint("helm-test", NAMESPACE, labels["helm-test"], store_ns))
    else:
        # Someone forging the test pod's labels gains nothing when the test is disabled.
        forged = {**labels["wordpress"], "app.kubernetes.io/component": "helm-test"}
        endpoints.append(Endpoint("helm-test", NAMESPACE, forged, store_ns))
    return endpoints


def dns_flows(*sources: str, dns: str = "coredns") -> set[Flow]:
    return {Flow(s, dns, proto, 53) for s in sources for proto in ("UDP", "TCP")}


STORE_FLOWS = {
    Flow("helm-test", "wordpress", "TCP", WP_PORT),
    Flow("wordpress", "mariadb", "TCP", DB_PORT),
    *dns_flows("wordpress", "mariadb", "helm-test"),
}
EXPECTED_FLOWS = {Flow("ingress-controller", "wordpress", "TCP", WP_PORT), *STORE_FLOWS}
# By default the ingress controller is known by its namespace only, so any pod there (the
# admission webhook too) may reach WordPress; values-prod narrows it to the controller pods.
NAMESPACE_WIDE_INGRESS = {Flow("ingress-admission-webhook", "wordpress", "TCP", WP_PORT)}
# With TLS (values-prod), the ingress controller reaches cert-manager's HTTP-01 solver too.
SOLVER_FLOW = Flow("ingress-controller", "acme-solver", "TCP", SOLVER_PORT)
EXPECTED_FLOWS_BY_PROFILE = {
    "defaults": EXPECTED_FLOWS | NAMESPACE_WIDE_INGRESS,
    # Traefik's pods, as `make cluster-up` installs them; not their neighbours.
    "local": {Flow("traefik", "wordpress", "TCP", WP_PORT), *STORE_FLOWS},
    "prod": EXPECTED_FLOWS | {SOLVER_FLOW},
}


@pytest.fixture(scope="module")
def default_docs(helm_env: dict[str, str]) -> list[Manifest]:
    return render(helm_env)


def policies_of(docs: list[Manifest]) -> list[Manifest]:
    found = by_kind(docs, "NetworkPolicy")
    assert found, "no NetworkPolicy rendered"
    return found


# --------------------------------------------------------------------------
# NetworkPolicies: shape
# --------------------------------------------------------------------------


def test_default_deny_all_covers_every_pod_in_both_directions(
    profile_docs: dict[str, list[Manifest]], profile: str
) -> None:
    policies = policies_of(profile_docs[profile])
    deny = one(policies, "NetworkPolicy", f"{RELEASE}-deny-all")
    assert deny["spec"]["podSelector"] == {}
    assert sorted(deny["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]


def test_every_policy_is_explicit_and_has_no_catch_all(
    profile_docs: dict[str, list[Manifest]], profile: str
) -> None:
    for policy in policies_of(profile_docs[profile]):
        name, spec = policy["metadata"]["name"], policy["spec"]
        assert policy["metadata"]["namespace"] == NAMESPACE, name
        # Without explicit policyTypes an egress-only policy would also isolate ingress.
        assert spec.get("policyTypes"), f"{name}: policyTypes must be explicit"
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            for rule in spec.get(direction) or []:
                assert rule.get(peers_key), f"{name}: a {direction} rule without peers allows all"
                assert rule.get("ports"), f"{name}: a {direction} rule without ports allows all"
                for peer in rule[peers_key]:
                    assert "ipBlock" not in peer, f"{name}: no address-based peers expected"
                    if "namespaceSelector" in peer:
                        assert peer["namespaceSelector"].get("matchLabels"), (
                            f"{name}: an empty namespaceSelector matches every namespace"
                        )
        if name != f"{RELEASE}-deny-all":
            assert spec["podSelector"], f"{name}: only deny-all may select every pod"


def test_allow_rules_select_the_right_pods_and_ports(default_docs: list[Manifest]) -> None:
    policies = policies_of(default_docs)
    component = "app.kubernetes.io/component"

    ingress = one(policies, "NetworkPolicy", f"{RELEASE}-wordpress-ingress")["spec"]
    assert ingress["podSelector"]["matchLabels"][component] == "wordpress"
    assert ingress["policyTypes"] == ["Ingress"]
    controller, test = ingress["ingress"]
    assert controller["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    assert controller["ports"] == [{"protocol": "TCP", "port": WP_PORT}]
    assert test["from"][0]["podSelector"]["matchLabels"][component] == "helm-test"
    assert test["ports"] == [{"protocol": "TCP", "port": WP_PORT}]

    egress = one(policies, "NetworkPolicy", f"{RELEASE}-wordpress-egress")["spec"]
    assert egress["policyTypes"] == ["Egress"]
    assert egress["podSelector"]["matchLabels"][component] == "wordpress"
    (to_db,) = egress["egress"]
    assert to_db["to"][0]["podSelector"]["matchLabels"][component] == "mariadb"
    assert to_db["ports"] == [{"protocol": "TCP", "port": DB_PORT}]

    db = one(policies, "NetworkPolicy", f"{RELEASE}-mariadb-ingress")["spec"]
    assert db["policyTypes"] == ["Ingress"]
    assert db["podSelector"]["matchLabels"][component] == "mariadb"
    (from_wp,) = db["ingress"]
    assert from_wp["from"][0]["podSelector"]["matchLabels"][component] == "wordpress"
    assert from_wp["ports"] == [{"protocol": "TCP", "port": DB_PORT}]

    dns = one(policies, "NetworkPolicy", f"{RELEASE}-dns-egress")["spec"]
    assert dns["policyTypes"] == ["Egress"]
    (expr,) = dns["podSelector"]["matchExpressions"]
    assert expr == {
        "key": component,
        "operator": "In",
        "values": ["wordpress", "mariadb", "helm-test"],
    }
    (to_dns,) = dns["egress"]
    assert to_dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert sorted((p["protocol"], p["port"]) for p in to_dns["ports"]) == [
        ("TCP", 53),
        ("UDP", 53),
    ]


def test_policy_ports_follow_the_wordpress_container_port(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, "--set", "wordpress.containerPort=9090")
    (deploy,) = by_kind(docs, "Deployment")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 9090
    flows = allowed_flows(policies_of(docs), cluster_model(docs))
    assert Flow("ingress-controller", "wordpress", "TCP", WP_PORT) not in flows
    policies = policies_of(docs)
    ports = {
        p["port"]
        for policy in policies
        if policy["metadata"]["name"]
        in {f"{RELEASE}-wordpress-ingress", f"{RELEASE}-helm-test-egress"}
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", [])
        for p in rule["ports"]
    }
    assert ports == {9090}


# --------------------------------------------------------------------------
# NetworkPolicies: behaviour
# --------------------------------------------------------------------------


def test_exactly_the_intended_flows_are_allowed(
    profile_docs: dict[str, list[Manifest]], profile: str
) -> None:
    docs = profile_docs[profile]
    flows = allowed_flows(policies_of(docs), cluster_model(docs))
    expected = EXPECTED_FLOWS_BY_PROFILE[profile]
    assert flows == expected, (
        f"unexpected: {sorted(map(str, flows - expected))}\n"
        f"missing: {sorted(map(str, expected - flows))}"
    )


def test_the_evaluator_sees_an_open_namespace_without_policies(
    default_docs: list[Manifest],
) -> None:
    # So that the flow test can fail: without the policies everything would be allowed.
    flows = allowed_flows([], cluster_model(default_docs))
    assert Flow("wordpress", "internet", "TCP", 443) in flows
    assert Flow("other-store-wordpress", "mariadb", "TCP", DB_PORT) in flows
    assert flows > EXPECTED_FLOWS_BY_PROFILE["defaults"]


def test_no_egress_to_the_internet_or_other_stores(default_docs: list[Manifest]) -> None:
    flows = allowed_flows(policies_of(default_docs), cluster_model(default_docs))
    assert not {f for f in flows if f.dst in {"internet", "other-store-wordpress"}}
    assert not {f for f in flows if f.src in {"internet", "other-store-wordpress", "stray-pod"}}


def test_without_the_helm_test_its_flows_are_closed(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, "--set", "helmTest.enabled=false")
    assert not [d for d in docs if d["kind"] == "Pod"]
    names = {p["metadata"]["name"] for p in policies_of(docs)}
    assert f"{RELEASE}-helm-test-egress" not in names
    flows = allowed_flows(policies_of(docs), cluster_model(docs))
    expected = EXPECTED_FLOWS_BY_PROFILE["defaults"]
    assert flows == {f for f in expected if "helm-test" not in (f.src, f.dst)}


def test_the_ingress_controller_is_configurable(helm_env: dict[str, str]) -> None:
    # e.g. k3s' bundled traefik, in kube-system next to CoreDNS: only its pods get in.
    docs = render(
        helm_env,
        "--set",
        r"networkPolicy.ingressController.namespaceSelector.kubernetes\.io/metadata\.name=kube-system",
        "--set-json",
        'networkPolicy.ingressController.podSelector={"app.kubernetes.io/name":"traefik"}',
    )
    endpoints = [
        *cluster_model(docs),
        Endpoint(
            "k3s-traefik",
            "kube-system",
            {"app.kubernetes.io/name": "traefik"},
            namespace_labels("kube-system"),
        ),
    ]
    flows = allowed_flows(policies_of(docs), endpoints)
    to_wordpress = {f.src for f in flows if f.dst == "wordpress"}
    assert to_wordpress == {"k3s-traefik", "helm-test"}


def test_a_dns_that_answers_from_no_pod_is_reached_by_address(helm_env: dict[str, str]) -> None:
    """NodeLocal DNSCache answers on the node, at its link-local address and at kube-dns'
    Service address it intercepts: no pod a selector could match. networkPolicy.dns.cidrs
    opens port 53 to those addresses, and nothing else to them or their neighbours."""
    docs = render(
        helm_env, "--set-json", 'networkPolicy.dns.cidrs=["169.254.20.10/32","10.96.0.10/32"]'
    )
    endpoints = [
        *cluster_model(docs),
        Endpoint("node-local-dns", None, address="169.254.20.10"),
        Endpoint("kube-dns-service", None, address="10.96.0.10"),
        Endpoint("next-address", None, address="169.254.20.11"),
    ]
    flows = allowed_flows(policies_of(docs), endpoints)
    pods = ("wordpress", "mariadb", "helm-test")
    by_address = dns_flows(*pods, dns="node-local-dns") | dns_flows(*pods, dns="kube-dns-service")
    assert flows == EXPECTED_FLOWS_BY_PROFILE["defaults"] | by_address
    (dns,) = [p for p in policies_of(docs) if p["metadata"]["name"] == f"{RELEASE}-dns-egress"]
    (rule,) = dns["spec"]["egress"]
    assert rule["to"][1:] == [
        {"ipBlock": {"cidr": "169.254.20.10/32"}},
        {"ipBlock": {"cidr": "10.96.0.10/32"}},
    ]


def test_prod_admits_only_the_controller_pods(profile_docs: dict[str, list[Manifest]]) -> None:
    docs = profile_docs["prod"]
    flows = allowed_flows(policies_of(docs), cluster_model(docs))
    assert Flow("ingress-controller", "wordpress", "TCP", WP_PORT) in flows
    assert not NAMESPACE_WIDE_INGRESS & flows


def solver_flows(docs: list[Manifest]) -> set[Flow]:
    flows = allowed_flows(policies_of(docs), cluster_model(docs))
    return {f for f in flows if "acme-solver" in (f.src, f.dst)}


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--set", "tls.enabled=true"],
        ["--set", "tls.enabled=true", "--values", str(CHART / "values-prod.yaml")],
    ],
    ids=["tls-off", "tls-on", "prod"],
)
def test_with_tls_the_ingress_controller_alone_reaches_the_http01_solver(
    helm_env: dict[str, str], extra: list[str]
) -> None:
    """A certificate authority fetches the HTTP-01 token through the ingress controller from
    cert-manager's solver pod in the store's namespace: with TLS, that flow and no other
    to or from the solver; without TLS there is no certificate and no way in."""
    docs = render(helm_env, *extra)
    names = {p["metadata"]["name"] for p in policies_of(docs)}
    if not extra:
        assert f"{RELEASE}-acme-http01-solver" not in names
        assert not solver_flows(docs)
        return
    solver = one(policies_of(docs), "NetworkPolicy", f"{RELEASE}-acme-http01-solver")["spec"]
    assert solver["policyTypes"] == ["Ingress"]
    assert solver["podSelector"] == {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}}
    # The same peer as WordPress': whatever names the controller names it for both.
    wordpress = one(policies_of(docs), "NetworkPolicy", f"{RELEASE}-wordpress-ingress")["spec"]
    assert solver["ingress"][0]["from"] == wordpress["ingress"][0]["from"]
    expected = {SOLVER_FLOW}
    if len(extra) == 2:  # the defaults admit the controller's whole namespace
        expected.add(Flow("ingress-admission-webhook", "acme-solver", "TCP", SOLVER_PORT))
    assert solver_flows(docs) == expected


def test_a_dns01_issuer_needs_no_way_in_to_a_solver(helm_env: dict[str, str]) -> None:
    docs = render(
        helm_env,
        *["--values", str(CHART / "values-prod.yaml"), "--set", "tls.http01Solver=false"],
    )
    names = {p["metadata"]["name"] for p in policies_of(docs)}
    assert f"{RELEASE}-acme-http01-solver" not in names
    assert not solver_flows(docs)
    (ingress,) = by_kind(docs, "Ingress")
    assert ingress["spec"]["tls"], "still HTTPS, with a certificate solved elsewhere"


# --------------------------------------------------------------------------
# ResourceQuota and LimitRange
# --------------------------------------------------------------------------

QUOTA_KEYS = {
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
    "pods",
    "persistentvolumeclaims",
    "requests.storage",
    "services.loadbalancers",
    "services.nodeports",
}


@dataclass
class Usage:
    """What the chart's own objects take out of the quota."""

    requests: dict[str, Decimal]
    limits: dict[str, Decimal]
    pods: int
    claims: int
    storage: Decimal


def chart_usage(docs: list[Manifest]) -> Usage:
    requests = {"cpu": Decimal(0), "memory": Decimal(0)}
    limits = {"cpu": Decimal(0), "memory": Decimal(0)}
    count = 0
    for where, _, spec in pods(docs):
        replicas = 1
        for d in docs:
            if where == f"{d['kind']}/{d['metadata']['name']}" and d["kind"] != "Pod":
                replicas = d["spec"].get("replicas", 1)
        count += replicas
        for c in spec["containers"]:
            for resource in ("cpu", "memory"):
                requests[resource] += replicas * quantity(c["resources"]["requests"][resource])
                limits[resource] += replicas * quantity(c["resources"]["limits"][resource])
    claims = [c["spec"] for c in by_kind(docs, "PersistentVolumeClaim")]
    for sts in by_kind(docs, "StatefulSet"):
        claims += [t["spec"] for t in sts["spec"]["volumeClaimTemplates"]] * sts["spec"]["replicas"]
    storage = sum((quantity(c["resources"]["requests"]["storage"]) for c in claims), Decimal(0))
    return Usage(requests, limits, count, len(claims), storage)


def quota_of(docs: list[Manifest]) -> dict[str, Decimal]:
    (quota,) = by_kind(docs, "ResourceQuota")
    assert quota["metadata"]["name"] == f"{RELEASE}-quota"
    hard: dict[str, str] = quota["spec"]["hard"]
    assert set(hard) == QUOTA_KEYS
    return {key: quantity(value) for key, value in hard.items()}


def container_limits(docs: list[Manifest]) -> dict[str, dict[str, Decimal]]:
    (limit_range,) = by_kind(docs, "LimitRange")
    assert limit_range["metadata"]["name"] == f"{RELEASE}-limits"
    (container,) = [x for x in limit_range["spec"]["limits"] if x["type"] == "Container"]
    return {
        section: {r: quantity(container[section][r]) for r in ("cpu", "memory")}
        for section in ("defaultRequest", "default", "max")
    }


def test_quota_caps_compute_pods_storage_and_forbids_external_services(
    profile_docs: dict[str, list[Manifest]], profile: str
) -> None:
    docs = profile_docs[profile]
    hard = quota_of(docs)
    assert hard["services.loadbalancers"] == 0
    assert hard["services.nodeports"] == 0
    for svc in by_kind(docs, "Service"):
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_quota_fits_the_chart_and_one_default_sized_pod(
    profile_docs: dict[str, list[Manifest]], profile: str
) -> None:
    # A quota smaller than the chart itself would leave a store that never starts.
    docs = profile_docs[profile]
    hard = quota_of(docs)
    usage = chart_usage(docs)
    extra = container_limits(docs)  # one pod that states nothing gets the defaults
    for resource in ("cpu", "memory"):
        need_requests = usage.requests[resource] + extra["defaultRequest"][resource]
        need_limits = usage.limits[resource] + extra["default"][resource]
        assert need_requests <= hard[f"requests.{resource}"], f"{profile}: requests.{resource}"
        assert need_limits <= hard[f"limits.{resource}"], f"{profile}: limits.{resource}"
    assert usage.pods + 1 <= hard["pods"]
    assert usage.claims <= hard["persistentvolumeclaims"]
    assert usage.storage <= hard["requests.storage"]


# cert-manager's solver pod at its default size (internal/apis/config/controller/v1alpha1/
# defaults.go: defaultACMEHTTP01SolverResource*).
SOLVER_REQUESTS = {"cpu": quantity("10m"), "memory": quantity("64Mi")}
SOLVER_LIMITS = {"cpu": quantity("100m"), "memory": quantity("64Mi")}


def test_quota_fits_the_chart_and_cert_managers_http01_solver(
    profile_docs: dict[str, list[Manifest]],
) -> None:
    """While a certificate is issued, the solver pod runs next to WordPress and MariaDB (and
    the helm test pod, should `helm test` run then): the quota must leave it room, or the
    certificate is never issued."""
    docs = profile_docs["prod"]
    hard, usage = quota_of(docs), chart_usage(docs)
    for resource in ("cpu", "memory"):
        need = usage.requests[resource] + SOLVER_REQUESTS[resource]
        assert need <= hard[f"requests.{resource}"], f"requests.{resource}"
        need = usage.limits[resource] + SOLVER_LIMITS[resource]
        assert need <= hard[f"limits.{resource}"], f"limits.{resource}"
    assert usage.pods + 1 <= hard["pods"]
    # Its Service may not be a NodePort one (cert-manager's default): hence the ClusterIssuer
    # example's serviceType: ClusterIP.
    assert hard["services.nodeports"] == 0


def cluster_issuer_example() -> Manifest:
    """The ClusterIssuer values-prod.yaml shows, between its marker comments."""
    text = (CHART / "values-prod.yaml").read_text()
    start, end = "# --- ClusterIssuer example ---\n", "# --- end of the example ---\n"
    assert start in text, f"values-prod.yaml has no {start.strip()!r}"
    block = text.split(start, 1)[1].split(end, 1)[0]
    lines = block.splitlines()
    assert all(line.startswith("#   ") for line in lines), "every line commented, indented"
    example = yaml.safe_load("\n".join(line.removeprefix("#   ") for line in lines))
    assert isinstance(example, dict)
    return example


def test_the_prod_cluster_issuer_example_can_issue_for_a_store() -> None:
    example = cluster_issuer_example()
    prod = yaml.safe_load((CHART / "values-prod.yaml").read_text())
    assert (example["apiVersion"], example["kind"]) == ("cert-manager.io/v1", "ClusterIssuer")
    assert example["metadata"]["name"] == prod["tls"]["clusterIssuer"]
    acme = example["spec"]["acme"]
    assert acme["server"].startswith("https://")
    assert acme["privateKeySecretRef"]["name"]
    (solver,) = acme["solvers"]
    ingress = solver["http01"]["ingress"]
    # NodePort, cert-manager's default, is what the store's quota forbids.
    assert ingress["serviceType"] == "ClusterIP"
    assert ingress["ingressClassName"] == prod["ingress"]["className"]
    assert prod["tls"]["http01Solver"] is True


def test_prod_quota_is_stricter_than_the_default_one(
    profile_docs: dict[str, list[Manifest]],
) -> None:
    def headroom(docs: list[Manifest]) -> dict[str, Decimal]:
        hard, usage = quota_of(docs), chart_usage(docs)
        return {
            **{
                f"requests.{r}": hard[f"requests.{r}"] / usage.requests[r]
                for r in ("cpu", "memory")
            },
            **{f"limits.{r}": hard[f"limits.{r}"] / usage.limits[r] for r in ("cpu", "memory")},
            "pods": Decimal(hard["pods"]) / usage.pods,
            "persistentvolumeclaims": hard["persistentvolumeclaims"] / usage.claims,
        }

    prod, defaults = headroom(profile_docs["prod"]), headroom(profile_docs["defaults"])
    for key, ratio in prod.items():
        assert ratio < defaults[key], f"prod quota leaves more room for {key} than the default"
    assert (
        quota_of(profile_docs["prod"])["persistentvolumeclaims"]
        == chart_usage(profile_docs["prod"]).claims
    )


def test_quota_comes_from_values(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, "--set", "quota.pods=9", "--set-string", "quota.requestsStorage=99Gi")
    hard = quota_of(docs)
    assert hard["pods"] == 9
    assert hard["requests.storage"] == quantity("99Gi")


def test_limit_range_defaults_are_ordered_and_every_container_fits(
    profile_docs: dict[str, list[Manifest]], profile: str
) -> None:
    docs = profile_docs[profile]
    limits = container_limits(docs)
    for r in ("cpu", "memory"):
        assert limits["defaultRequest"][r] <= limits["default"][r] <= limits["max"][r], r
    for where, _, spec in pods(docs):
        for c in spec["containers"]:
            res = c["resources"]
            for r in ("cpu", "memory"):
                request, limit = quantity(res["requests"][r]), quantity(res["limits"][r])
                assert request <= limit, f"{profile} {where}: {r} request above limit"
                # Above the LimitRange max the API server rejects the pod.
                assert limit <= limits["max"][r], f"{profile} {where}: {r} limit above max"
    (limit_range,) = by_kind(docs, "LimitRange")
    (claim_limit,) = [
        x for x in limit_range["spec"]["limits"] if x["type"] == "PersistentVolumeClaim"
    ]
    max_storage = quantity(claim_limit["max"]["storage"])
    claims = [c["spec"] for c in by_kind(docs, "PersistentVolumeClaim")] + [
        t["spec"]
        for sts in by_kind(docs, "StatefulSet")
        for t in sts["spec"]["volumeClaimTemplates"]
    ]
    assert claims
    for claim in claims:
        assert quantity(claim["resources"]["requests"]["storage"]) <= max_storage


def test_prod_uses_its_storage_class_and_tls(profile_docs: dict[str, list[Manifest]]) -> None:
    docs = profile_docs["prod"]
    classes = {c["spec"].get("storageClassName") for c in by_kind(docs, "PersistentVolumeClaim")}
    classes |= {
        t["spec"].get("storageClassName")
        for sts in by_kind(docs, "StatefulSet")
        for t in sts["spec"]["volumeClaimTemplates"]
    }
    assert classes == {"woostore-ssd"}
    (ingress,) = by_kind(docs, "Ingress")
    assert ingress["spec"]["tls"] == [{"hosts": [HOST], "secretName": f"{RELEASE}-tls"}]
    assert (
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    )


def test_local_is_plain_http_on_the_default_storage_class(
    profile_docs: dict[str, list[Manifest]],
) -> None:
    docs = profile_docs["local"]
    (ingress,) = by_kind(docs, "Ingress")
    assert "tls" not in ingress["spec"]
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert "cert-manager.io/cluster-issuer" not in (ingress["metadata"].get("annotations") or {})
    for claim in by_kind(docs, "PersistentVolumeClaim"):
        assert "storageClassName" not in claim["spec"]
    for sts in by_kind(docs, "StatefulSet"):
        for t in sts["spec"]["volumeClaimTemplates"]:
            assert "storageClassName" not in t["spec"]
    # Smaller than the defaults, which are smaller than prod.
    sizes = {name: chart_usage(d).limits["memory"] for name, d in profile_docs.items()}
    assert sizes["local"] < sizes["defaults"] < sizes["prod"]


# --------------------------------------------------------------------------
# the helm test pod
# --------------------------------------------------------------------------


def helm_test_pod(docs: list[Manifest]) -> Manifest:
    found = [d for d in docs if d["kind"] == "Pod"]
    assert len(found) == 1, f"expected one helm test pod, found {len(found)}"
    return found[0]


def test_helm_test_pod_is_a_test_hook(
    profile_docs: dict[str, list[Manifest]], profile: str
) -> None:
    pod = helm_test_pod(profile_docs[profile])
    assert is_helm_test(pod)
    annotations = pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "helm-test"
    assert pod["spec"]["restartPolicy"] == "Never"


def test_helm_test_pod_is_hardened(profile_docs: dict[str, list[Manifest]], profile: str) -> None:
    spec = helm_test_pod(profile_docs[profile])["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] >= 10000
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    for section in ("requests", "limits"):
        for r in ("cpu", "memory"):
            assert c["resources"][section][r], f"{section}.{r}"
    repository, tag = c["image"].split("@")[0].rsplit(":", 1)
    assert repository == "curlimages/curl"
    assert tag
    assert tag != "latest"
    assert not spec.get("volumes"), "the test needs no volumes"


def test_helm_test_checks_the_storefront_through_the_service(default_docs: list[Manifest]) -> None:
    (c,) = helm_test_pod(default_docs)["spec"]["containers"]
    argv = [*c["command"], *c["args"]]
    assert argv[0] == "curl"
    assert "--fail" in argv, "an HTTP error (e.g. WordPress' database error page) must fail"
    assert argv[argv.index("--header") + 1] == f"Host: {HOST}"
    url = argv[-1]
    (svc,) = [
        s for s in by_kind(default_docs, "Service") if s["metadata"]["name"].endswith("-wordpress")
    ]
    (port,) = svc["spec"]["ports"]
    assert url == f"http://{svc['metadata']['name']}.{NAMESPACE}.svc:{port['port']}/"
    assert port["targetPort"] == "http"


def test_helm_test_image_comes_from_values(helm_env: dict[str, str]) -> None:
    docs = render(
        helm_env,
        "--set-string",
        "helmTest.image.repository=registry.example.test/curl",
        "--set-string",
        "helmTest.image.tag=8.0.0",
    )
    (c,) = helm_test_pod(docs)["spec"]["containers"]
    assert c["image"] == "registry.example.test/curl:8.0.0"
