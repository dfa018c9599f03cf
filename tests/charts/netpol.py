"""A small evaluator of NetworkPolicy rules (the Kubernetes semantics, not any CNI's), shared
by the chart tests: given rendered policies and a model of a cluster's pods and outside
addresses, which flows do the policies allow?

ipBlock peers match an endpoint's address, pod or outside. Kubernetes leaves open whether an
ipBlock matches pod addresses (Calico's does, Cilium's not by default); matching them is the
more permissive reading, so a test that finds a flow closed here finds it closed on both.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.charts.chart import Manifest


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace set) or something outside the cluster (namespace None)."""

    name: str
    namespace: str | None
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    namespace_labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    # Named container ports, for policies that use port names.
    ports: dict[str, int] = field(default_factory=dict, hash=False, compare=False)
    # Its IP address, for ipBlock peers; None: no ipBlock matches it.
    address: str | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True)
class Flow:
    src: str
    dst: str
    protocol: str
    port: int


def selector_matches(selector: Manifest | None, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics; an empty selector matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        assert op in {"In", "NotIn", "Exists", "DoesNotExist"}, op
    return True


def ip_block_matches(block: Manifest, address: str | None) -> bool:
    """In the block's CIDR and in none of its `except` CIDRs (an address of the other IP
    family is in neither)."""
    if address is None:
        return False
    ip = ipaddress.ip_address(address)

    def within(cidr: str) -> bool:
        network = ipaddress.ip_network(cidr)
        return ip.version == network.version and ip in network

    return within(block["cidr"]) and not any(within(c) for c in block.get("except") or [])


def peer_matches(peer: Manifest, policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        return ip_block_matches(peer["ipBlock"], other.address)
    if other.namespace is None:
        return False  # pod/namespace selectors never match outside addresses
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False  # a podSelector alone means the policy's own namespace
    return selector_matches(peer.get("podSelector"), other.labels)


def port_matches(
    rule_ports: list[Manifest] | None, dst: Endpoint, protocol: str, port: int
) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        wanted: int | str = p["port"]
        if isinstance(wanted, str):
            if dst.ports.get(wanted) == port:
                return True
            continue
        end_port: int = p.get("endPort", wanted)
        if wanted <= port <= end_port:
            return True
    return False


def direction_allows(
    policies: list[Manifest],
    subject: Endpoint,
    other: Endpoint,
    dst: Endpoint,
    protocol: str,
    port: int,
    direction: str,
) -> bool:
    """Is the traffic allowed at `subject`'s end (Ingress: subject is the destination)?"""
    if subject.namespace is None:
        return True  # outside the cluster: no NetworkPolicy applies
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == subject.namespace
        and selector_matches(p["spec"]["podSelector"], subject.labels)
        and direction in p["spec"]["policyTypes"]
    ]
    if not selecting:
        return True  # not isolated in this direction
    for policy in selecting:
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers
            )
            if peer_ok and port_matches(rule.get("ports"), dst, protocol, port):
                return True
    return False


def allowed(
    policies: list[Manifest], src: Endpoint, dst: Endpoint, protocol: str, port: int
) -> bool:
    return direction_allows(policies, src, dst, dst, protocol, port, "Egress") and direction_allows(
        policies, dst, src, dst, protocol, port, "Ingress"
    )


def allowed_flows(
    policies: list[Manifest],
    endpoints: list[Endpoint],
    probes: Iterable[tuple[str, int]],
    namespace: str,
) -> set[Flow]:
    """Every probed flow that touches `namespace` (the one whose policies are under test:
    flows between other endpoints are not theirs to decide) and the policies allow."""
    probes = list(probes)
    flows = set()
    for src, dst in itertools.permutations(endpoints, 2):
        if namespace not in (src.namespace, dst.namespace):
            continue
        for protocol, port in probes:
            if allowed(policies, src, dst, protocol, port):
                flows.add(Flow(src.name, dst.name, protocol, port))
    return flows


def namespace_labels(name: str, **extra: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": name, **extra}
