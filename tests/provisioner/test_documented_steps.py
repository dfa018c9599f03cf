"""docs/architecture.md shows every recipe's steps, in order: the same names as the code."""

from __future__ import annotations

import re
from pathlib import Path

from woostore_provisioner.recipe import DELETE, PROVISION, ROLLBACK, UPGRADE, Recipe

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def documented_columns(header: str) -> list[list[str]]:
    """The step names of the two-recipe table whose header row starts with ``header``: its
    left recipe's steps and its right one's, in order."""
    lines = ARCHITECTURE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| # | {header}"))
    left: list[str] = []
    right: list[str] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        for cell, names in ((cells[1], left), (cells[4], right)):
            if found := re.match(r"`(\w+)`", cell):
                names.append(found.group(1))
    return [left, right]


def names(recipe: Recipe) -> list[str]:
    return [step.name for step in recipe.steps]


def test_the_provision_and_delete_tables_are_the_recipes() -> None:
    assert documented_columns("Provision step") == [names(PROVISION), names(DELETE)]


def test_the_upgrade_and_rollback_tables_are_the_recipes() -> None:
    assert documented_columns("Upgrade step") == [names(UPGRADE), names(ROLLBACK)]


def test_the_step_counts_the_docs_give_are_the_recipes() -> None:
    text = ARCHITECTURE.read_text()
    assert f"Provisioning has {len(PROVISION.steps)} steps, deletion {len(DELETE.steps)}" in text
