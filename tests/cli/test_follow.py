"""`--wait`'s progress follows the steps of the recipe that makes the store: a store copied
from a backup is made by a recipe of its own (phase "clone"), not the cold one. Off a
terminal, as here, each step it shows is a line."""

from __future__ import annotations

from typing import Any

import pytest

from woostore_cli.client import Event
from woostore_cli.main import BACKUP, CHANGES, CLAIM, CREATE, RETRY, Goal, _follow

COPY = {
    "id": "s-1", "name": "Staging Shop", "simulated": True, "queue_position": None,
    "from_backup": "b-1", "created_at": "2026-12-04T10:00:00Z",
    "requested_at": "2026-12-04T10:00:00Z",
    "updated_at": "2026-12-04T10:00:00Z",
}  # fmt: skip


def event(kind: str, data: dict[str, Any]) -> Event:
    return Event(1, {"type": f"io.woostore.store.{kind}", "subject": "s-1",
                     "time": "2026-12-04T10:00:30Z", "data": data})  # fmt: skip


def step(phase: str, index: int, title: str) -> Event:
    return event("progress", {
        "phase": phase, "progress": index / 10,
        "step": {"name": "x", "title": title, "index": index, "total": 10},
    })  # fmt: skip


@pytest.mark.parametrize("goal", [CREATE, RETRY])
def test_a_copy_of_a_backup_shows_the_steps_of_its_own_recipe(
    goal: Goal, capsys: pytest.CaptureFixture[str]
) -> None:
    ready = event("ready", {"storefront_url": "http://s", "admin_url": "http://s/wp-admin"})

    code = _follow(
        [step("clone", 6, "Copying the database"), ready], COPY, goal, False, lambda: COPY
    )

    assert code == 0
    assert capsys.readouterr().err.splitlines() == [
        f"{goal.waiting} (0%)", "Step 6 of 10 — Copying the database (60%)", "Ready (100%)",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("ended", "code"),
    [
        (event("backup_completed", {"backup_id": "b-2", "size": 2048}), 0),
        (event("backup_failed", {"backup_id": "b-2", "reason": "storage refused it"}), 1),
    ],
)
def test_a_deletion_asked_for_while_it_is_followed_is_said_as_the_work_ends(
    ended: Event, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Done or not, the store's deletion starts then: `--wait` does not end at "complete"
    as if the store stayed (found by a user's review)."""
    busy = {**COPY, "from_backup": None, "status": "backing_up"}
    queued = event("delete_queued", {"status": "backing_up"})

    said = _follow([queued, ended], busy, BACKUP, False, lambda: busy)

    assert said == code
    assert "Staging Shop's deletion starts now. See: woostore wait s-1" in capsys.readouterr().err


def test_a_deletion_that_waits_for_a_copy_is_not_said_to_start_as_the_work_ends(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A copy still reads the store's backups: the store stays ready, its credentials still
    offered, and the reaper starts the deletion once the copy is made."""
    busy = {**COPY, "from_backup": None, "status": "backing_up"}
    queued = event("delete_queued", {"status": "backing_up"})
    ended = event("backup_completed", {"backup_id": "b-2", "size": 2, "actions": ["credentials"]})

    assert _follow([queued, ended], busy, BACKUP, False, lambda: busy) == 0
    said = capsys.readouterr().err
    assert "Staging Shop's deletion starts once no copy reads its backups." in said


@pytest.mark.parametrize("goal", [CREATE, CLAIM, RETRY])
def test_a_store_cancelled_while_it_is_made_ends_the_wait(
    goal: Goal, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deleted from another shell mid-way, it will never be ready: `--wait` waited for ever
    (found by a user's review)."""
    made = {**COPY, "from_backup": None, "status": "provisioning"}
    cancelled = event("delete_requested", {"status": "deleting"})
    never = event("ready", {"storefront_url": "http://s", "admin_url": "http://s/wp-admin"})

    assert _follow([step(goal.phase, 4, "Waiting"), cancelled, never], made, goal, False,
                   lambda: made) == 1  # fmt: skip
    said = capsys.readouterr()
    assert "Staging Shop was cancelled before it was ready" in said.err
    assert said.out == ""  # no storefront for a store that is going


def test_a_wait_started_midway_skips_the_events_older_than_the_store_it_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`woostore wait` connects, then reads the store: events that came between are in the
    store as read, and shown after it they took its progress back a step (a user's review)."""
    midway = {
        **COPY, "status": "provisioning", "progress": 0.3, "updated_at": "2026-12-04T10:00:30Z",
        "step": {"name": "x", "title": "Installing the Helm release", "index": 3, "total": 10},
    }  # fmt: skip

    def at(time: str, made: Event) -> Event:
        return Event(made.sequence, {**made.cloudevent, "time": time})

    code = _follow(
        [
            at("2026-12-04T10:00:20Z", step("clone", 2, "Generating credentials")),
            at("2026-12-04T10:00:40Z", step("clone", 4, "Copying the database")),
            at("2026-12-04T10:00:50Z", event("ready", {"storefront_url": "s", "admin_url": "a"})),
        ],
        midway, CREATE, False, lambda: midway,
    )  # fmt: skip

    assert code == 0
    assert capsys.readouterr().err.splitlines() == [
        "Step 3 of 10 — Installing the Helm release (30%)",
        "Step 4 of 10 — Copying the database (40%)",
        "Ready (100%)",
    ]


def test_an_end_stamped_before_the_store_as_read_still_ends_the_wait(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The store as read was stamped by the API's host, the end by the provisioner's: a clock
    behind by a moment must not drop the end, and leave the wait waiting for ever."""
    asked = {
        **COPY,
        "status": "updating",
        "change": "upgrade",
        "updated_at": "2026-12-04T10:00:30Z",
    }
    failed = event("change_failed", {"change": "upgrade", "reason": "the rollout timed out"})

    code = _follow(
        [Event(1, {**failed.cloudevent, "time": "2026-12-04T10:00:29.9Z"})],
        asked, CHANGES["upgrade"], False, lambda: asked,
    )  # fmt: skip

    assert code == 1
    assert "the rollout timed out" in capsys.readouterr().err
