"""What `make cluster-up` (deploy/kind/cluster-up.sh) sets up, read from its files, for the
chart tests that check the local profiles against it: the script's variables, and the
Traefik release it installs as the Traefik chart would name and label it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from tests.charts.chart import REPO

KIND = REPO / "deploy" / "kind"
CLUSTER_UP = KIND / "cluster-up.sh"
TRAEFIK_VALUES = KIND / "traefik-values.yaml"
# The label every namespace carries, set by the API server.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def script_variable(name: str) -> str:
    match = re.search(rf"^{name}=(\S+)$", CLUSTER_UP.read_text(), re.MULTILINE)
    assert match, f"{name} is not set in {CLUSTER_UP}"
    return match.group(1)


@dataclass(frozen=True)
class TraefikRelease:
    """The Traefik release cluster-up.sh installs, with deploy/kind/traefik-values.yaml."""

    release: str
    namespace: str
    values: dict[str, Any]

    @property
    def name(self) -> str:
        """The chart's `traefik.name`: nameOverride, else the chart's name."""
        return str(self.values.get("nameOverride") or "traefik")

    @property
    def ingress_class(self) -> str | None:
        """The IngressClass the chart makes (templates/ingressclass.yaml): ingressClass.name,
        else the chart's `traefik.fullname` (the release name when it contains the chart's
        name, else "<release>-<name>"); None when it makes none."""
        ingress_class = self.values.get("ingressClass") or {}
        if not ingress_class.get("enabled", True):
            return None
        if ingress_class.get("name"):
            return str(ingress_class["name"])
        if self.values.get("fullnameOverride"):
            return str(self.values["fullnameOverride"])
        return self.release if self.name in self.release else f"{self.release}-{self.name}"

    @property
    def pod_labels(self) -> dict[str, str]:
        """The labels of Traefik's pods (the chart's `traefik.labelselector`)."""
        instance = self.values.get("instanceLabelOverride") or f"{self.release}-{self.namespace}"
        return {"app.kubernetes.io/name": self.name, "app.kubernetes.io/instance": instance}

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {NAMESPACE_NAME_LABEL: self.namespace}


def traefik_release() -> TraefikRelease:
    """`helm upgrade --install <release> traefik ... --namespace <namespace>` in cluster-up.sh
    (a command continued over several lines)."""
    command = re.search(
        r"^helm upgrade --install (\S+) traefik (?:[^\n]*\\\n)*[^\n]*$",
        CLUSTER_UP.read_text(),
        re.MULTILINE,
    )
    assert command, f"{CLUSTER_UP} installs no Traefik release"
    namespace = re.search(r"--namespace (\S+)", command.group(0))
    assert namespace, f"the Traefik release in {CLUSTER_UP} names no namespace"
    assert f"--values {TRAEFIK_VALUES.relative_to(REPO)}" in command.group(0)
    values = yaml.safe_load(TRAEFIK_VALUES.read_text())
    assert isinstance(values, dict)
    return TraefikRelease(command.group(1), namespace.group(1), values)
