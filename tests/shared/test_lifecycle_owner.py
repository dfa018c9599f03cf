"""Only woostore_shared.lifecycle changes a store's status: read the code and find no other
writer, so a newcomer looking for where a store becomes ready (or failed, or deleted) finds
one place."""

from __future__ import annotations

import ast

import pytest

from tests.support import PRODUCTION_CODE, REPO

OWNER = REPO / "shared" / "woostore_shared" / "lifecycle.py"


def status_writes(source: str) -> list[str]:
    """Each place in ``source`` that writes a status: an assignment to ``<x>.status`` (but
    ``self.status``, an object's own field), ``setattr(x, "status", ...)``, a ``status=``
    keyword to ``Store(...)`` or to an UPDATE's ``.values(...)``, and a call of
    ``transition``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr == "status"
                and not (isinstance(target.value, ast.Name) and target.value.id == "self")
            ):
                found.append(f"line {target.lineno}: assigns .status")
        if not isinstance(node, ast.Call):
            continue
        called = node.func.attr if isinstance(node.func, ast.Attribute) else None
        called = node.func.id if isinstance(node.func, ast.Name) else called
        if called == "transition":
            found.append(f"line {node.lineno}: calls transition")
        if called in ("Store", "values") and any(k.arg == "status" for k in node.keywords):
            found.append(f"line {node.lineno}: {called}(status=...)")
        if called == "setattr" and any(
            isinstance(a, ast.Constant) and a.value == "status" for a in node.args
        ):
            found.append(f"line {node.lineno}: setattr status")
    return found


@pytest.mark.parametrize(
    "writer",
    [
        "store.status = StoreStatus.READY",
        "row.status: StoreStatus = StoreStatus.FAILED",
        "transition(store, StoreStatus.READY)",
        "lifecycle.transition(store, StoreStatus.READY)",
        "Store(name='x', status=StoreStatus.QUEUED)",
        "update(Store).values(status=StoreStatus.FAILED)",
        "setattr(store, 'status', StoreStatus.READY)",
    ],
)
def test_the_check_finds_each_way_of_writing_a_status(writer: str) -> None:
    assert status_writes(writer)


def test_the_check_lets_reading_a_status_and_an_objects_own_field_through() -> None:
    assert not status_writes(
        "if store.status is StoreStatus.READY:\n"
        "    self.status = 409\n"
        "select(Store).where(col(Store.status) == StoreStatus.READY)\n"
    )


def test_nothing_but_the_lifecycle_module_writes_a_stores_status() -> None:
    assert OWNER in PRODUCTION_CODE
    writers = {
        str(path.relative_to(REPO)): found
        for path in PRODUCTION_CODE
        if path != OWNER and (found := status_writes(path.read_text()))
    }
    assert not writers, f"status written outside {OWNER.relative_to(REPO)}: {writers}"
