"""`--wait` when the event stream loses events: the store is read again, so a wait whose
outcome was among the lost events ends instead of waiting forever."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from woostore_cli.client import Event, Gap
from woostore_cli.main import CHANGES, CREATE, DELETE, FAILED, Goal, _follow, events

NOW = "2026-11-26T09:00:00Z"
STORE = {"id": "s-1", "name": "Corner Shop", "simulated": True, "queue_position": None}


def follow(goal: Goal, now: dict[str, Any], *then: Event) -> int:
    return _follow([Gap(42, "unknown-id"), *then], STORE, goal, True, lambda: {**STORE, **now})


def upgraded(result: str) -> dict[str, Any]:
    return {"status": "ready", "last_change": {"kind": "upgrade", "result": result}}


@pytest.mark.parametrize(
    ("goal", "now", "code"),
    [
        (CREATE, {"status": "ready"}, 0),
        (CREATE, {"status": "failed"}, 1),
        (CREATE, {"status": "deleted"}, 1),  # cancelled meanwhile: it never will be ready
        (DELETE, {"status": "deleted"}, 0),
        (CHANGES["upgrade"], upgraded("changed"), 0),
        (CHANGES["upgrade"], upgraded("failed"), 1),
    ],
)
def test_a_wait_whose_outcome_was_lost_ends_with_the_stores_state(
    goal: Goal, now: dict[str, Any], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert follow(goal, now) == code
    assert "Events were lost (unknown-id)" in capsys.readouterr().err


def test_a_wait_not_over_yet_goes_on_with_the_events_after_the_gap() -> None:
    ready = Event(43, {"type": "io.woostore.store.ready", "subject": "s-1", "data": {}})
    assert follow(CREATE, {"status": "provisioning"}, ready) == 0


class Replayed:
    """The event stream as `woostore events` reads it: these events, then its end."""

    def __init__(self, *events: Event | Gap) -> None:
        self._events = events

    @contextmanager
    def events(self, since: int, **_: object) -> Iterator[list[Event | Gap]]:
        yield list(self._events)


def test_a_stream_started_again_after_events_says_events_were_lost_not_a_mistyped_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ "No event N yet" is for an id the user asked for; once the stream has answered, an
    id it no longer knows is one of its own: the stream was started again."""
    first = Event(7, {"type": "store.requested", "subject": "s-1", "data": {}, "time": "t"})
    args = argparse.Namespace(since=0, follow=True, json=True, store=None, tenant=None)

    assert events(Replayed(first, Gap(3, "unknown-id")), args) == 0  # type: ignore[arg-type]

    said = capsys.readouterr()
    assert "Events were lost before event 3 (unknown-id)" in said.err
    assert "No event" not in said.err
    # --json: a program reading the lines is told too, in a line of its own kind.
    lines = [json.loads(line) for line in said.out.splitlines()]
    assert lines == [
        {"sequence": 7, "event": first.cloudevent},
        {"sequence": 3, "gap": "unknown-id"},
    ]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_an_id_the_stream_has_not_reached_is_refused_and_nothing_followed_after_it(
    as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """`events --since 99999999 --follow` exited 0, and went on from the stream's newest as
    though asked to: a script read it as following on from its id."""
    later = Event(8, {"type": "store.requested", "subject": "s-1", "data": {}, "time": NOW})
    args = argparse.Namespace(since=99999999, follow=True, json=as_json, store=None, tenant=None)

    assert events(Replayed(Gap(7, "unknown-id"), later), args) == FAILED  # type: ignore[arg-type]

    said = capsys.readouterr()
    assert "No event 99999999 yet: the newest is 7." in said.err
    # --json: the gap said in a line of its own kind, as ever; the event after it never.
    assert said.out == ('{"sequence": 7, "gap": "unknown-id"}\n' if as_json else "")
