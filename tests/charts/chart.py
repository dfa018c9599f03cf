"""Shared helpers of the chart tests (helm/store and helm/platform): running the real helm
v4, rendering, and reading the rendered manifests and the values schemas."""

from __future__ import annotations

import json
import re
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "store"
PLATFORM_CHART = REPO / "helm" / "platform"
HELM = REPO / ".tools" / "bin" / "helm"
INSTALLER = REPO / "deploy" / "tools" / "install_helm.py"

STORE_ID = "acme-42"
HOST = "acme-42.shops.example.test"
# What the provisioner installs (recipe.py): release "store" in the store's own namespace.
RELEASE = "store"
NAMESPACE = "store-acme-42"

# Kubernetes minor versions every rendered manifest must be valid for.
TARGET_K8S_VERSIONS = ("1.33", "1.34", "1.35")

Manifest = dict[str, Any]

# The values profiles shipped next to values.yaml, as extra `helm template` arguments.
PROFILES: dict[str, list[str]] = {
    "defaults": [],
    "local": ["--values", str(CHART / "values-local.yaml")],
    "prod": ["--values", str(CHART / "values-prod.yaml")],
}

# Kinds whose pods come from spec.template.
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
HELM_TEST_HOOK = "test"


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


def template_args(
    *extra: str,
    store_id: str | None = STORE_ID,
    host: str | None = HOST,
    namespace: str = NAMESPACE,
) -> list[str]:
    return [
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        *base_set_args(store_id, host),
        *extra,
    ]


def template_output(env: dict[str, str], args: list[str]) -> str:
    """stdout of `helm <args>` (a template command), which must succeed without warnings."""
    proc = run_helm(args, env)
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    assert not proc.stderr.strip(), f"helm template warned:\n{proc.stderr}"
    return proc.stdout


def render_text(
    env: dict[str, str],
    *extra: str,
    store_id: str | None = STORE_ID,
    host: str | None = HOST,
    namespace: str = NAMESPACE,
) -> str:
    return template_output(
        env, template_args(*extra, store_id=store_id, host=host, namespace=namespace)
    )


def parse_manifests(text: str) -> list[Manifest]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert docs, "helm template rendered no documents"
    return docs


def render(
    env: dict[str, str],
    *extra: str,
    store_id: str | None = STORE_ID,
    host: str | None = HOST,
    namespace: str = NAMESPACE,
) -> list[Manifest]:
    return parse_manifests(
        render_text(env, *extra, store_id=store_id, host=host, namespace=namespace)
    )


def render_platform(
    env: dict[str, str], *extra: str, release: str = "woostore", namespace: str = "woostore"
) -> list[Manifest]:
    """helm/platform rendered as release ``release`` in ``namespace``."""
    args = ["template", release, str(PLATFORM_CHART), "--namespace", namespace, *extra]
    return parse_manifests(template_output(env, args))


def by_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Manifest], kind: str, name: str) -> Manifest:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def is_helm_test(doc: Manifest) -> bool:
    annotations = doc["metadata"].get("annotations") or {}
    return bool(annotations.get("helm.sh/hook") == HELM_TEST_HOOK)


def pods(docs: list[Manifest]) -> list[tuple[str, Manifest, Manifest]]:
    """Every pod the chart makes: (where, pod metadata, pod spec), for the workloads' (and
    Jobs') pod templates and for bare Pods (the helm test)."""
    found: list[tuple[str, Manifest, Manifest]] = []
    for d in docs:
        where = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in WORKLOAD_KINDS:
            found.append((where, d["spec"]["template"]["metadata"], d["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            found.append((where, d["metadata"], d["spec"]))
    return found


def pod_specs(docs: list[Manifest]) -> list[tuple[str, Manifest]]:
    return [(where, spec) for where, _, spec in pods(docs)]


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_SUFFIX = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity ("500m", "2", "512Mi") as a number of base units."""
    match = _QUANTITY.match(str(value))
    assert match, f"not a quantity: {value!r}"
    return Decimal(match.group(1)) * _SUFFIX[match.group(2)]


# --------------------------------------------------------------------------
# values.schema.json
# --------------------------------------------------------------------------


def schema_nodes(node: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    """Every (sub)schema of a values.schema.json that describes a values key or a $def."""
    found: list[tuple[str, dict[str, Any]]] = []
    if not isinstance(node, dict):
        return found
    for key, child in (node.get("properties") or {}).items():
        found.append((f"{path}.{key}", child))
        found += schema_nodes(child, f"{path}.{key}")
    for key, child in (node.get("$defs") or {}).items():
        found.append((f"$defs.{key}", child))
        found += schema_nodes(child, f"$defs.{key}")
    return found


def undescribed_keys(
    value: Any, node: dict[str, Any], defs: dict[str, Any], path: str
) -> list[str]:
    """Keys of a values file the schema does not name explicitly (or via a map schema). An
    object schema with neither properties nor additionalProperties is free-form on purpose
    (values handed on to another chart, whose own schema checks them)."""
    if "$ref" in node:
        node = {**defs[node["$ref"].removeprefix("#/$defs/")], **node}
    if not isinstance(value, dict):
        return []
    if "properties" not in node and "additionalProperties" not in node:
        return []
    missing: list[str] = []
    for key, child in value.items():
        if key in (node.get("properties") or {}):
            child_node = node["properties"][key]
        elif isinstance(node.get("additionalProperties"), dict):
            child_node = node["additionalProperties"]
        else:
            missing.append(f"{path}.{key}")
            continue
        missing += undescribed_keys(child, child_node, defs, f"{path}.{key}")
    return missing


def assert_schema_describes_every_key(chart: Path, at_least: int) -> None:
    """Every key of the chart's values schema has a description, every object rejects
    unknown keys, and the schema is not trivially small."""
    schema: dict[str, Any] = json.loads((chart / "values.schema.json").read_text())
    assert schema["$schema"].endswith("2020-12/schema")
    defs: dict[str, Any] = schema["$defs"]
    nodes = schema_nodes(schema, "values")
    assert len(nodes) > at_least
    undescribed = []
    for where, node in nodes:
        target = node
        if "$ref" in node and "description" not in node:
            target = defs[node["$ref"].removeprefix("#/$defs/")]
        if not str(target.get("description", "")).strip():
            undescribed.append(where)
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{where}: must reject unknown keys"
    assert not undescribed, f"keys without a description: {undescribed}"
    assert schema["additionalProperties"] is False


def assert_values_file_is_in_the_schema(chart: Path, values_file: str) -> None:
    schema: dict[str, Any] = json.loads((chart / "values.schema.json").read_text())
    values = yaml.safe_load((chart / values_file).read_text())
    assert isinstance(values, dict)
    assert values
    assert not undescribed_keys(values, schema, schema["$defs"], "values")
