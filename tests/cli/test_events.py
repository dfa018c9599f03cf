"""woostore events: replay from a sequence, follow, and resume after the stream drops."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.conftest import (
    PROVISIONING,
    Lines,
    Platform,
    create_ready,
    story,
    woostore,
)
from woostore_cli.main import main
from woostore_provisioner.recipe import PROVISION

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CLI = Path(__file__).resolve().parents[2] / "cli"
NOTHING = "00000000-0000-4000-8000-000000000000"  # the id of no store and no tenant


def test_events_since_0_prints_a_store_in_order(platform: Platform) -> None:
    store_id = create_ready(platform, "History")
    assert woostore(platform, "create", "Beside", "--wait").code == 0  # another store's events

    result = woostore(platform, "events", "--since", "0")  # stops once the stream is idle

    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if store_id in line]
    # time (2 words), kind, store, status, then for progress: "step", n/total, state, title
    assert [line.split()[2] for line in lines] == [kind.split()[0] for kind in PROVISIONING]
    assert all(line.split()[3] == store_id for line in lines)
    progress = [line.split(" step ", 1)[1] for line in lines[1:-1]]
    steps, total = PROVISION.steps, len(PROVISION.steps)
    assert progress[:3] == [
        f"1/{total} started: {steps[0].title}",
        f"1/{total} completed: {steps[0].title}",
        f"2/{total} started: {steps[1].title}",
    ]
    assert progress[-1] == f"{total}/{total} completed: {steps[-1].title}"
    assert lines[0].endswith('queued "History"')

    # --json: the sequences are the SSE ids; --since N starts after N.
    replay = woostore(platform, "events", "--since", "0", "--json").json_lines()
    sequences = [line["sequence"] for line in replay]
    assert sequences == sorted(set(sequences))
    mine = [line for line in replay if line["event"]["subject"] == store_id]
    after_requested = woostore(platform, "events", "--since", str(mine[0]["sequence"]), "--json")
    later = [line for line in after_requested.json_lines() if line["event"]["subject"] == store_id]
    assert later == mine[1:]
    # --store: that store's events alone, as the stream sent them (the platform has others).
    assert len(mine) < len(replay)
    narrowed = woostore(platform, "events", "--since", "0", "--store", store_id, "--json")
    assert narrowed.json_lines() == mine
    for nowhere in ("--store", NOTHING), ("--tenant", NOTHING):  # printed nothing, exited 0
        refused = woostore(platform, "events", "--since", "0", *nowhere)
        assert (refused.code, refused.out) == (1, "")
        assert refused.err.startswith("Not found: "), refused.err
    # --tenant: an admin's, by name: a tenant that has no store yet has no event either.
    assert woostore(platform, "tenants", "create", "no-stores-yet").code == 0
    quiet = woostore(platform, "events", "--since", "0", "--tenant", "no-stores-yet", "--json")
    assert (quiet.code, quiet.out) == (0, ""), quiet.err


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _follow_events(
    platform: Platform, *args: str, token: str | None = None
) -> tuple[subprocess.Popen[str], Lines, Lines]:
    """``woostore events --follow --json ARGS`` as a process of its own (with the platform's
    token, or ``token``); its output lines."""
    env = {
        **os.environ,
        "PYTHONPATH": str(CLI),
        "WOOSTORE_URL": platform.api_url,
        "WOOSTORE_TOKEN": token or platform.token,
    }
    follower = subprocess.Popen(
        [sys.executable, "-m", "woostore_cli.main", "events", "--follow", "--json", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with SIGINT ignored, and children inherit that; a
        # Python that starts with SIGINT ignored never raises KeyboardInterrupt. Give the CLI
        # the Ctrl-C a terminal would, however this suite was started.
        preexec_fn=_default_sigint,
    )
    assert follower.stdout is not None
    assert follower.stderr is not None
    return follower, Lines(follower.stdout), Lines(follower.stderr)


def _streams_open(platform: Platform) -> float:
    metrics = httpx.get(f"{platform.ops_urls['notifier']}/metrics").text
    return next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("woostore_sse_connections ")
    )


def _wait_for_streams(platform: Platform, count: int, deadline: float = 30) -> None:
    give_up = time.monotonic() + deadline
    while (now := _streams_open(platform)) != count:
        assert time.monotonic() < give_up, f"{now:.0f} event streams open, not {count}"
        time.sleep(0.05)


def _events_of(store_id: str, out: Lines) -> list[dict[str, Any]]:
    return [e["event"] for e in map(json.loads, out.items) if e["event"]["subject"] == store_id]


def test_follow_ended_by_its_keys_revocation_says_so_in_one_line(platform: Platform) -> None:
    """It said "event stream lost ...; reconnecting", then "Unauthorized" as it reconnected
    (a user's review): the stream was not lost, it was ended."""
    tenant_id = woostore(platform, "tenants", "create", "revoked-follower", "--json").json()["id"]
    token = woostore(platform, "keys", "create", "follower", "--tenant", tenant_id).out.strip()
    before = _streams_open(platform)
    follower, out, err = _follow_events(platform, token=token)
    try:
        _wait_for_streams(platform, int(before) + 1)
        assert woostore(platform, "keys", "revoke", token[:16]).code == 0

        assert follower.wait(timeout=30) == 1  # refused by the platform
        detail = "the event stream was ended: its key was revoked"
        assert err.rest() == [f"Access withdrawn: {detail}\n"]
        # --json: where a program reads the rest, as a gap is told, and why: a program may
        # wait for a suspended tenant to be resumed, never for a revoked key
        ended = {"end": "access-withdrawn", "cause": "key-revoked", "detail": detail}
        assert json.loads(out.rest()[-1]) == ended
    finally:
        follower.kill()
        follower.wait()


def test_follow_resumes_after_the_stream_drops(platform: Platform) -> None:
    follower, out, err = _follow_events(platform)
    try:
        created = httpx.post(
            f"{platform.api_url}/api/v1/stores", json={"name": "Resumed"}, headers=platform.headers
        )
        store_id = created.json()["id"]

        def seen(kind: str) -> bool:
            return any(event["type"].endswith(kind) for event in _events_of(store_id, out))

        out.wait_for(lambda _: seen(".progress"), 30, "the store's first progress event")
        platform.stop("notifier")  # the stream drops mid-provisioning
        platform.start("notifier")
        err.wait_for(lambda lines: any("reconnecting" in line for line in lines), 10, "a notice")
        out.wait_for(lambda _: seen(".ready"), 60, "the store's ready event")
    finally:
        follower.send_signal(signal.SIGINT)  # what Ctrl-C does
        code = follower.wait(10)

    assert code == 130
    events = [json.loads(line) for line in out.rest()]
    sequences = [event["sequence"] for event in events]
    assert sequences == sorted(set(sequences)), "an event was repeated or reordered"
    mine = [event["event"] for event in events if event["event"]["subject"] == store_id]
    assert [e["type"].rsplit(".", 1)[1] for e in mine] == [k.split()[0] for k in PROVISIONING]
    assert "Traceback" not in "".join(err.rest())


def test_events_since_an_id_the_stream_never_reached_says_so_and_where_it_is(
    platform: Platform,
) -> None:
    """A mistyped id is likelier than a stream started again: it was told "Events were
    lost", which sent a user looking for a fault. Refused (exit 1), as a store that does not
    exist is: it exited 0, read by a script as the events after it shown."""
    result = woostore(platform, "events", "--since", "99999999")

    assert result.code == 1, result.err
    told = re.search(r"No event 99999999 yet: the newest is (\d+)\. If the event stream was "
                     r"started again, events were lost", result.err)  # fmt: skip
    assert told is not None, result.err
    assert int(told[1]) < 99999999  # the stream's own newest
    assert result.err.rstrip().endswith(f"then follow on with --since {told[1]}.")
    assert result.out == ""


def test_follow_since_now_shows_new_events_only_and_resumes_where_it_started(
    platform: Platform,
) -> None:
    """`events --follow` printed every event kept before the new ones (a user's review).
    Lost before its first event, the stream resumes where it started, not at the beginning."""
    before = create_ready(platform, "Before")
    _wait_for_streams(platform, 0)  # create's own, ended as it returned, is let go
    follower, out, err = _follow_events(platform, "--since", "now")
    try:
        _wait_for_streams(platform, 1)
        platform.stop("notifier")  # before any event
        platform.start("notifier")
        err.wait_for(lambda lines: any("reconnecting" in line for line in lines), 10, "a notice")
        resumed_after = int(re.findall(r"reconnecting after event (\d+)", "".join(err.items))[0])
        created = httpx.post(
            f"{platform.api_url}/api/v1/stores", json={"name": "After"}, headers=platform.headers
        )
        after = created.json()["id"]
        out.wait_for(lambda _: any(e["type"].endswith(".ready") for e in _events_of(after, out)),
                     60, "the new store's ready event")  # fmt: skip
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(10)

    events = [json.loads(line) for line in out.rest()]
    assert resumed_after > 0  # where it started: the events of "Before" came earlier
    assert all(event["sequence"] > resumed_after for event in events)
    assert _events_of(before, out) == []
    assert story(_events_of(after, out)) == PROVISIONING


def test_events_since_now_without_follow_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It would wait a second for events that cannot have come yet and print nothing. Said
    with the events command's usage, not every command's."""
    with pytest.raises(SystemExit) as refused:
        main(["events", "--since", "now", "--url", "http://127.0.0.1:9", "--token=x"])
    assert refused.value.code == 2
    said = capsys.readouterr().err
    assert said.startswith("usage: woostore events "), said
    assert said.endswith(
        "woostore events: error: --since now shows new events only: add --follow to wait for them\n"
    )
