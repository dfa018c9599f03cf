"""Runs a rendered ValidatingAdmissionPolicy on an admission request, as the API server does:
the resource rules and matchConditions decide whether it applies, the variables are computed
in order, and every validation must hold. The CEL is evaluated by cel-python; an expression
it cannot evaluate raises (the API server would refuse the request: failurePolicy Fail).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import celpy
from celpy.adapter import json_to_cel

from tests.charts.chart import Manifest

_CEL = celpy.Environment()


@dataclass(frozen=True)
class Request:
    """What the policies read of an admission request."""

    operation: str  # CREATE, UPDATE, DELETE
    username: str
    group: str  # API group, "" for the core group
    resource: str
    # The object as requested (None on DELETE), as it was (None on CREATE), and, for a
    # namespaced object, its namespace.
    object: Manifest | None = None
    old_object: Manifest | None = None
    namespace_object: Manifest | None = None


def evaluate(expression: str, activation: dict[str, Any]) -> Any:
    program = _CEL.program(_CEL.compile(expression))
    return program.evaluate({name: json_to_cel(value) for name, value in activation.items()})


def matches_rules(policy: Manifest, request: Request) -> bool:
    return any(
        request.operation in rule["operations"]
        and request.group in rule["apiGroups"]
        and request.resource in rule["resources"]
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]
    )


def admits(policy: Manifest, request: Request) -> bool | None:
    """None: the policy does not apply to the request; else whether it admits it."""
    if not matches_rules(policy, request):
        return None
    variables: dict[str, Any] = {}
    activation: dict[str, Any] = {
        "request": {"operation": request.operation, "userInfo": {"username": request.username}},
        "object": request.object,
        "oldObject": request.old_object,
        "namespaceObject": request.namespace_object,
        "variables": variables,
    }
    spec = policy["spec"]
    for condition in spec.get("matchConditions") or []:
        if not evaluate(condition["expression"], activation):
            return None
    for variable in spec.get("variables") or []:
        variables[variable["name"]] = evaluate(variable["expression"], activation)
    return all(bool(evaluate(v["expression"], activation)) for v in spec["validations"])
