"""A wait whose event stream ends before the outcome: refused mid-wait (the key revoked, its
tenant suspended) or lost for good. The store's work goes on, so the exit code is not a
failure's (a user's review: a suspension mid-wait exited 1, as a failed store does)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from woostore_cli.client import ApiError, Event, EventStream, Gap, StreamEnded, StreamLost
from woostore_cli.main import CREATE, FAILED, STOPPED_WAITING, UNREACHABLE, _follow, events
from woostore_shared.access import TenantSuspended

STORE = {"id": "s-1", "name": "Corner Shop", "simulated": True, "queue_position": None}
STEP = Event(5, {"type": "io.woostore.store.progress", "subject": "s-1",
                 "data": {"phase": "create", "step": "install", "progress": 0.4}})  # fmt: skip
SUSPENDED = ApiError(401, "Unauthorized", TenantSuspended.detail)
LOST = StreamLost("lost the event stream at http://x/api/v1/events (refused)", after=5)


def ending(error: Exception) -> Iterator[Event | Gap]:
    """The stream as a wait reads it: one step, then ``error`` as it connects again."""
    yield STEP
    raise error


@pytest.mark.parametrize("error", [SUSPENDED, LOST], ids=["refused", "lost"])
def test_a_wait_cut_short_says_the_store_carries_on_and_exits_3(
    error: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _follow(ending(error), STORE, CREATE, False, lambda: STORE)

    assert code == STOPPED_WAITING != FAILED
    said = capsys.readouterr().err
    # The way back is `show`, not an `events` option; with the key refused, not even that.
    see = "" if error is SUSPENDED else " See: woostore show s-1"
    assert said.endswith(f"Stopped waiting ({error}); Corner Shop carries on.{see}\n"), said
    assert "--since" not in said


def test_a_json_wait_whose_stream_ended_for_good_prints_why_as_events_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A program waiting with --json read no line saying why, where `events --json` prints
    one: it could not tell a revoked key from a suspended tenant (a user's review)."""
    ended = StreamEnded("access-withdrawn", "tenant-suspended", "its tenant was suspended")

    assert _follow(ending(ended), STORE, CREATE, True, lambda: STORE) == STOPPED_WAITING

    last = capsys.readouterr().out.splitlines()[-1]
    assert json.loads(last) == {
        "end": "access-withdrawn", "cause": "tenant-suspended", "detail": "its tenant was suspended"
    }  # fmt: skip


def test_a_store_read_again_refused_mid_wait_ends_the_wait_the_same_way() -> None:
    """After a gap the store is read again: a key suspended by then is refused there."""

    def refused() -> dict[str, object]:
        raise SUSPENDED

    assert _follow([Gap(9, "unknown-id")], STORE, CREATE, True, refused) == STOPPED_WAITING


class Lost:
    """The event stream as `woostore events` reads it: one event, then lost for good."""

    @contextmanager
    def events(self, since: int, **_: object) -> Iterator[Iterator[Event | Gap]]:
        yield ending(LOST)


def test_events_lost_for_good_says_where_to_resume(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(since=0, follow=True, json=True, store=None, tenant=None)

    assert events(Lost(), args) == UNREACHABLE  # type: ignore[arg-type]

    said = capsys.readouterr().err
    assert said == f"woostore: {LOST}; resume with --since 5\n"


def test_a_stream_ended_for_good_is_refused_and_unknown_frames_are_skipped() -> None:
    """The notifier's last frame, ``end``, says why it ended the stream: refused, without
    reconnecting. A named frame the CLI does not know (a later notifier's) is not taken for
    a store event: an older CLI did, and stopped on a traceback at the ``end`` frame."""
    body = (
        b"retry: 2000\nid: 4\n: connected\n\n"
        b'event: later-kind\ndata: {"x": 1}\n\n'
        b'id: 5\ndata: {"type": "io.woostore.store.ready", "subject": "s-1"}\n\n'
        b'event: end\ndata: {"reason": "access-withdrawn", "detail": "its key was revoked"}\n\n'
    )

    def notifier(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    notices: list[str] = []
    http = httpx.Client(transport=httpx.MockTransport(notifier))
    read: list[Event | Gap] = []
    with (
        pytest.raises(ApiError) as ended,
        EventStream(
            http, httpx.URL("http://n/api/v1/events"), None, None, notices.append
        ) as stream,
    ):
        read.extend(stream)

    assert read == [Event(5, {"type": "io.woostore.store.ready", "subject": "s-1"})]
    assert (ended.value.status, str(ended.value)) == (403, "Access withdrawn: its key was revoked")
    assert notices == []  # never "lost; reconnecting"
