"""WordPress's scheduled work on the simulated cluster: the store pod's ``cron`` container.

On a real cluster that container runs ``wp cron event run --due-now`` every
``WOOSTORE_CRON_INTERVAL`` seconds (the image's ``woostore-cron``; WordPress cannot run its
own WP-Cron, as its egress policy blocks the request to its own URL). The simulation keeps
each store's WP-Cron schedule, the recurring events WordPress and WooCommerce register
(Action Scheduler's queue runner every minute among them), and plays the container's rounds
up to the present whenever the store is next looked at: what the container would have done
by then, round by round. A round runs every event due by its time and moves each to its
next occurrence, as WordPress reschedules a recurring event.

The schedule shows up as events: each round that ran something is a Kubernetes Event on the
WordPress pod, as ``kubectl get events`` would show the container's work, with repeats of
the same message counted into one, as the API server aggregates them.

This module is the model alone (pure functions over plain data); ``simulated.py`` keeps its
state and records the events.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MINUTE, HOUR, DAY = 60, 3600, 86400
# The recurring events a fresh install registers, with their recurrence in seconds: WordPress
# core's on installing, WooCommerce's (Action Scheduler's runner included) on activating.
CORE_EVENTS: Mapping[str, int] = {
    "wp_version_check": 12 * HOUR,
    "wp_update_plugins": 12 * HOUR,
    "wp_update_themes": 12 * HOUR,
    "wp_scheduled_delete": DAY,
    "wp_scheduled_auto_draft_delete": DAY,
    "delete_expired_transients": DAY,
    "wp_privacy_delete_old_export_files": HOUR,
    "wp_site_health_scheduled_check": 7 * DAY,
}
WOOCOMMERCE_EVENTS: Mapping[str, int] = {
    "action_scheduler_run_queue": MINUTE,  # emails, webhooks, stock: WooCommerce's queue
    "woocommerce_cleanup_sessions": 12 * HOUR,
    "woocommerce_cleanup_personal_data": DAY,
    "woocommerce_cleanup_logs": DAY,
    "woocommerce_cleanup_rate_limits": DAY,
    "woocommerce_scheduled_sales": DAY,
    "woocommerce_tracker_send_event": DAY,
    "wc_admin_daily": DAY,
}
# Rounds played at one look, at most: a store left alone for weeks is caught up in bounded
# time; the oldest rounds past this are skipped, as if the container had been down then
# (what was due meanwhile runs once, at the first round played).
MOST_ROUNDS = 50_000


@dataclass(frozen=True)
class Round:
    """One round of the container: when it began and the events it ran, in their order."""

    time: float
    ran: tuple[str, ...]

    @property
    def message(self) -> str:
        """The round as its Event says it (the same events give the same words, so repeats
        are counted into one Event)."""
        events = "event" if len(self.ran) == 1 else "events"
        return f"Ran {len(self.ran)} due cron {events}: {', '.join(self.ran)}"


def registered(installed: bool, plugins: Iterable[str]) -> dict[str, int]:
    """The recurring events (hook: recurrence) a store's WordPress registers."""
    events: dict[str, int] = {}
    if installed:
        events.update(CORE_EVENTS)
        if "woocommerce" in plugins:
            events.update(WOOCOMMERCE_EVENTS)
    return events


def play(
    schedule: dict[str, float],
    recurrences: Mapping[str, int],
    *,
    first_round: float,
    last_round: float | None,
    interval: float,
    now: float,
) -> tuple[list[Round], float | None]:
    """The rounds the container began after ``last_round`` and by ``now``, every ``interval``
    seconds from ``first_round`` (an interval of 0: a round at every look); ``schedule``
    (hook: next run) moves on as each round runs its due events. Returns the rounds that
    ran something, and the time of the last round begun, whatever it ran (never earlier than
    ``last_round``: a replica whose clock lags finds nothing to play)."""
    rounds: list[Round] = []
    if now < first_round or (last_round is not None and now < last_round):
        return rounds, last_round
    if interval <= 0:
        due = _due(schedule, now)
        if due:
            _run(schedule, recurrences, due, now)
            rounds.append(Round(now, due))
        return rounds, now
    # Rounds by their number from the first: whole numbers, so no drift adds up in floats.
    last = math.floor((now - first_round) / interval)
    done = -1 if last_round is None else round((last_round - first_round) / interval)
    number = max(done + 1, last - MOST_ROUNDS + 1)  # past the cap, the oldest are skipped
    while number <= last and schedule:
        tick = first_round + number * interval
        soonest = min(schedule.values())
        if soonest > tick:  # rounds until then run nothing: on to the first one after it
            number = max(number + 1, math.ceil((soonest - first_round) / interval))
            continue
        due = _due(schedule, tick)
        _run(schedule, recurrences, due, tick)
        rounds.append(Round(tick, due))
        number += 1
    return rounds, first_round + max(last, done) * interval


def _due(schedule: Mapping[str, float], at: float) -> tuple[str, ...]:
    """The events due by ``at``, the longest overdue first (WP-Cron runs them in time order)."""
    return tuple(sorted((hook for hook, when in schedule.items() if when <= at),
                        key=lambda hook: (schedule[hook], hook)))  # fmt: skip


def _run(
    schedule: dict[str, float], recurrences: Mapping[str, int], due: Iterable[str], at: float
) -> None:
    """Each event run at ``at`` moves to its next occurrence after it, on its own beat (as
    ``wp_reschedule_event``); occurrences missed meanwhile run once, not again and again."""
    for hook in due:
        every = recurrences[hook]
        missed = math.floor((at - schedule[hook]) / every) + 1
        schedule[hook] += missed * every
