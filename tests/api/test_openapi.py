"""The OpenAPI document: every schema a client reads has an example, and every example is
valid against its own schema (an example that drifted from the model misleads readers)."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from woostore_api.main import create_app
from woostore_shared.settings import Settings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    doc: dict[str, Any] = create_app(Settings(admin_token="a", secret_key="s")).openapi()
    return doc


def response_schemas(document: dict[str, Any]) -> set[str]:
    """Names of the component schemas that success responses use directly."""
    names: set[str] = set()
    for path in document["paths"].values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                if not status.startswith("2"):
                    continue
                for media in response.get("content", {}).values():
                    ref = media.get("schema", {}).get("$ref", "")
                    if ref:
                        names.add(ref.rsplit("/", 1)[-1])
    return names


def test_every_response_model_has_an_example(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    missing = sorted(n for n in response_schemas(document) if "examples" not in schemas[n])
    assert missing == []


def test_every_example_is_valid_against_its_schema(document: dict[str, Any]) -> None:
    # The schemas' $refs point into the document: resolve them against all of it.
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    checked = 0
    for name, schema in document["components"]["schemas"].items():
        for example in schema.get("examples", []):
            validator = Draft202012Validator(
                {"$ref": f"urn:openapi#/components/schemas/{name}"}, registry=registry
            )
            errors = list(validator.iter_errors(example))
            assert errors == [], (name, [e.message for e in errors])
            checked += 1
    assert checked >= 15
