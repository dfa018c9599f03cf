"""``Database.session()`` runs each statement on its own (autocommit): code that wrote
through one would lose its atomicity without a sound, a statement committed and the next
failing. Read the code and find no write through such a session; writes take a unit of work
or ``Database.transaction()``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import PRODUCTION_CODE, REPO

WRITING_METHODS = {"add", "add_all", "begin", "commit", "delete", "flush", "merge"}
WRITING_STATEMENTS = {"insert", "update", "delete"}


def _called(node: ast.expr) -> str | None:
    if not isinstance(node, ast.Call):
        return None
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return node.func.id if isinstance(node.func, ast.Name) else None


def _statement_kind(node: ast.expr) -> str | None:
    """``insert``, ``update`` or ``delete`` when ``node`` builds such a statement: the call at
    the root of a chain like ``update(Store).where(...).values(...)``."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        node = node.func.value
    kind = _called(node)
    return kind if kind in WRITING_STATEMENTS else None


def writes_through_read_sessions(source: str) -> list[str]:
    """Each write through a session opened by ``<x>.session()`` in ``source``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.AsyncWith | ast.With):
            continue
        sessions = {
            item.optional_vars.id
            for item in node.items
            if _called(item.context_expr) == "session" and isinstance(item.optional_vars, ast.Name)
        }
        uses = [item.context_expr for item in node.items] + [
            inner for statement in node.body for inner in ast.walk(statement)
        ]
        for use in uses:
            if not (
                isinstance(use, ast.Call)
                and isinstance(use.func, ast.Attribute)
                and isinstance(use.func.value, ast.Name)
                and use.func.value.id in sessions
            ):
                continue
            method = use.func.attr
            if method in WRITING_METHODS:
                found.append(f"line {use.lineno}: {use.func.value.id}.{method}()")
            elif method in ("exec", "execute") and use.args and _statement_kind(use.args[0]):
                found.append(f"line {use.lineno}: {method} of {_statement_kind(use.args[0])}")
    return found


@pytest.mark.parametrize(
    "writer",
    [
        "async with db.session() as s:\n    s.add(store)",
        "async with db.session() as s:\n    await s.commit()",
        "async with self._db.session() as s, s.begin():\n    pass",
        "async with db.session() as s:\n    await s.exec(update(Store).values(name='x'))",
        "async with db.session() as s:\n    await s.execute(insert(Event).values(id=1))",
        "async with db.session() as s:\n    await s.exec(delete(StoreStep).where(x == 1))",
    ],
)
def test_the_check_finds_each_way_of_writing_through_a_read_session(writer: str) -> None:
    assert writes_through_read_sessions(writer)


def test_the_check_lets_reads_and_transactions_through() -> None:
    assert not writes_through_read_sessions(
        "async with db.session() as s:\n"
        "    await s.exec(select(Store).where(col(Store.id) == 1))\n"
        "    await s.get(Store, 1)\n"
        "async with db.transaction() as t:\n"
        "    t.add(store)\n"
        "    await t.commit()\n"
    )


@pytest.mark.parametrize("path", PRODUCTION_CODE, ids=lambda p: str(p.relative_to(REPO)))
def test_no_code_writes_through_a_read_session(path: Path) -> None:
    assert not writes_through_read_sessions(path.read_text()), path
