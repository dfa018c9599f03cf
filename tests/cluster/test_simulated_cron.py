"""WordPress's scheduled work on the simulated cluster: the model of the cron container's
rounds (simulated_cron.py), and a store's schedule showing up as its namespace's events."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cluster.support import HELM, queue_runner_is_ahead, release_for, running_store
from tests.cluster.support import QUEUE_RUNNER as QUEUE
from woostore_cluster.simulated import SimulatedCluster
from woostore_cluster.simulated_cron import (
    CORE_EVENTS,
    DAY,
    MINUTE,
    MOST_ROUNDS,
    WOOCOMMERCE_EVENTS,
    play,
    registered,
)

NS = "store-cron"


# -- the model ------------------------------------------------------------------------------


def test_a_round_every_interval_runs_what_is_due_by_then_and_moves_it_on() -> None:
    schedule = {QUEUE: 0.0, "daily": 0.0}
    rounds, last = play(
        schedule, {QUEUE: MINUTE, "daily": DAY},
        first_round=0, last_round=None, interval=60, now=185,
    )  # fmt: skip
    assert [(r.time, r.ran) for r in rounds] == [
        (0, (QUEUE, "daily")),  # due at once, both: by name
        (60, (QUEUE,)),
        (120, (QUEUE,)),
        (180, (QUEUE,)),
    ]
    assert last == 180
    assert schedule == {QUEUE: 240, "daily": DAY}


def test_rounds_already_played_are_not_played_again() -> None:
    """An event overdue since long before: the rounds up to ``last_round`` were played (by
    another look, another replica), so it runs at the first round after them, once."""
    schedule = {QUEUE: 0.0}
    rounds, last = play(
        schedule, {QUEUE: MINUTE}, first_round=0, last_round=120, interval=60, now=200
    )
    assert [(r.time, r.ran) for r in rounds] == [(180, (QUEUE,))]
    assert last == 180
    # A replica whose clock lags behind the last round finds nothing, and moves nothing back.
    assert play(schedule, {QUEUE: MINUTE}, first_round=0, last_round=180, interval=60, now=150) == (
        [],
        180,
    )


def test_a_long_catch_up_plays_the_newest_rounds_only() -> None:
    """A store left alone for longer than MOST_ROUNDS rounds: the oldest are skipped, what
    was due meanwhile runs once at the first round played, then on its beat to the present."""
    schedule = {QUEUE: 0.0}
    last = MOST_ROUNDS + 10
    rounds, latest = play(
        schedule, {QUEUE: MINUTE}, first_round=0, last_round=None, interval=60, now=last * 60 + 5
    )
    assert len(rounds) == MOST_ROUNDS
    assert (rounds[0].time, rounds[-1].time, latest) == (11 * 60, last * 60, last * 60)
    assert schedule == {QUEUE: (last + 1) * 60}


def test_an_event_runs_at_the_first_round_after_it_is_due_not_before() -> None:
    schedule = {"hourly": 100.0}
    rounds, _ = play(
        schedule, {"hourly": 3600}, first_round=0, last_round=None, interval=60, now=200
    )
    assert [(r.time, r.ran) for r in rounds] == [(120, ("hourly",))]
    assert schedule == {"hourly": 3700}


def test_occurrences_missed_while_no_round_ran_run_once() -> None:
    """A container with a long interval (or one that was down) runs an overdue recurring
    event once, then on its own beat again, as WordPress reschedules it."""
    schedule = {QUEUE: 0.0}
    rounds, _ = play(
        schedule, {QUEUE: MINUTE}, first_round=0, last_round=None, interval=600, now=700
    )
    assert [(r.time, r.ran) for r in rounds] == [(0, (QUEUE,)), (600, (QUEUE,))]
    assert schedule == {QUEUE: 660}


def test_at_time_scale_zero_every_look_is_a_round() -> None:
    schedule = {QUEUE: 10.0, "daily": 50.0}
    recurrences = {QUEUE: MINUTE, "daily": DAY}
    rounds, last = play(schedule, recurrences, first_round=0, last_round=None, interval=0, now=20)
    assert [(r.time, r.ran) for r in rounds] == [(20, (QUEUE,))]
    assert last == 20
    assert play(schedule, recurrences, first_round=0, last_round=20, interval=0, now=30)[0] == []


def test_the_message_names_each_event_run() -> None:
    schedule = {"a": 0.0, "b": 0.0}
    (only,), _ = play(
        schedule, {"a": DAY, "b": DAY}, first_round=0, last_round=None, interval=0, now=1
    )
    assert only.message == "Ran 2 due cron events: a, b"


def test_wordpress_registers_its_events_once_installed_and_woocommerces_once_active() -> None:
    assert registered(installed=False, plugins=["woocommerce"]) == {}
    assert registered(installed=True, plugins=[]) == CORE_EVENTS
    assert registered(installed=True, plugins=["woocommerce"]) == {
        **CORE_EVENTS,
        **WOOCOMMERCE_EVENTS,
    }
    assert WOOCOMMERCE_EVENTS[QUEUE] == MINUTE


# -- on the simulated cluster ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def simulated(state: Path, clock: Clock, time_scale: float = 0) -> SimulatedCluster:
    return SimulatedCluster(state, helm_binary=str(HELM), time_scale=time_scale, clock=clock)


@pytest.fixture
async def cluster(tmp_path: Path, clock: Clock) -> SimulatedCluster:
    """A store's namespace with the chart installed and its pods running, WordPress not yet
    installed."""
    cluster = simulated(tmp_path / "sim", clock)
    await running_store(cluster, NS)
    return cluster


async def install_woocommerce(cluster: SimulatedCluster) -> None:
    for args, stdin in (
        (["core", "install", "--url=http://shop.example.test", "--title=Shop",
          "--admin_user=admin", "--admin_email=a@example.test", "--prompt=admin_password"],
         "pw\n"),
        (["plugin", "activate", "woocommerce"], None),
        (["option", "get", "home"], None),  # any later command: WordPress loads with it
    ):  # fmt: skip
        result = await cluster.wp(NS, args, stdin=stdin)
        assert result.ok, result.stdout


def counts(cluster: SimulatedCluster) -> dict[str, int]:
    return {event["message"]: event["count"] for event in cluster.events(NS)}


async def test_the_schedule_shows_up_as_events_of_the_cron_container(
    cluster: SimulatedCluster, clock: Clock
) -> None:
    assert cluster.events(NS) == []  # nothing is scheduled before WordPress is installed
    await install_woocommerce(cluster)
    events = cluster.events(NS)
    assert {e["reason"] for e in events} == {"CronEventsRun"}
    assert {e["object"] for e in events} == {"pod/wordpress (container cron)"}
    ran = {hook for e in events for hook in e["message"].split(": ", 1)[1].split(", ")}
    assert ran == set(CORE_EVENTS) | set(WOOCOMMERCE_EVENTS)  # each ran once, at once

    queue_round = f"Ran 1 due cron event: {QUEUE}"
    clock.now += 59
    assert queue_round not in counts(cluster)
    clock.now += 2
    assert counts(cluster)[queue_round] == 1
    clock.now += 60
    assert counts(cluster)[queue_round] == 2
    clock.now += 3600
    assert f"Ran 2 due cron events: {QUEUE}, wp_privacy_delete_old_export_files" in counts(cluster)


async def test_wp_cron_event_list_shows_when_each_event_runs_next(
    cluster: SimulatedCluster, clock: Clock
) -> None:
    await install_woocommerce(cluster)
    clock.now += 90
    listed = await cluster.wp(NS, ["cron", "event", "list", "--format=json"])
    assert listed.ok
    events = {e["hook"]: e for e in json.loads(listed.stdout)}
    assert set(events) == set(CORE_EVENTS) | set(WOOCOMMERCE_EVENTS)
    assert events[QUEUE]["recurrence"] == "1 minute"
    assert events["woocommerce_cleanup_sessions"]["recurrence"] == "12 hours"
    # Every look is a round at time scale 0: it ran now, and runs next on its own beat.
    assert events[QUEUE]["next_run_gmt"] == _gmt(clock.now + 30)


async def test_the_real_cluster_tests_check_of_the_cron_container_reads_the_schedule(
    cluster: SimulatedCluster, clock: Clock
) -> None:
    """The check tests/e2e_kubernetes makes of a real store, on the simulated one: the queue
    runner ran (every look is a round here), so it is next due after now, not after later."""
    await install_woocommerce(cluster)
    now = datetime.fromtimestamp(clock.now, UTC)
    assert await queue_runner_is_ahead(cluster, NS, now)
    assert not await queue_runner_is_ahead(cluster, NS, now + timedelta(minutes=2))


async def test_replicas_looking_at_once_play_each_round_once(
    cluster: SimulatedCluster, clock: Clock, tmp_path: Path
) -> None:
    other = simulated(tmp_path / "sim", clock)  # another provisioner, the same cluster
    await install_woocommerce(cluster)
    for _ in range(3):
        clock.now += 60
        assert other.events(NS) == cluster.events(NS)
    assert counts(cluster)[f"Ran 1 due cron event: {QUEUE}"] == 3


async def test_nothing_runs_once_the_pods_are_gone(cluster: SimulatedCluster, clock: Clock) -> None:
    await install_woocommerce(cluster)
    before = cluster.events(NS)
    await cluster.uninstall_release(NS, "store")
    clock.now += 600
    assert cluster.events(NS) == before
    await cluster.delete_namespace(NS, timeout=60)
    assert cluster.events(NS) == []


def _gmt(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


async def test_no_round_runs_while_the_pods_are_gone_and_new_pods_start_their_own(
    tmp_path: Path, clock: Clock
) -> None:
    """At a time scale where the container's interval is 0.06 s: rounds are played on the
    running pods' beat, none while no pod runs, and new pods start a beat of their own."""
    cluster = simulated(tmp_path / "sim", clock, time_scale=0.001)
    await running_store(cluster, NS)
    await install_woocommerce(cluster)
    clock.now += 60.01
    cluster.events(NS)
    gone_at = clock.now
    await cluster.uninstall_release(NS, "store")
    clock.now += 600
    back_at = clock.now + 0.005
    clock.now = back_at
    await cluster.install_release(release_for(NS), timeout=60)
    await cluster.wait_for_rollout(NS, timeout=60)
    clock.now += 0.1
    events = cluster.events(NS)
    times = [t for e in events for t in (e["first_time"], e["last_time"])]
    assert not [t for t in times if gone_at < t < back_at]  # nothing ran with no pod
    queue = next(e for e in events if e["message"] == f"Ran 1 due cron event: {QUEUE}")
    assert queue["last_time"] == pytest.approx(back_at)  # the new pod's first round
