"""``bench/footprint.py`` end to end, made quick (time scale 0, a short idle window): ``make
run`` starts, gets ready and idle, every kind of process it runs is read, and Ctrl-C stops
all of it, PostgreSQL included. Nothing depends on how much memory or time it took."""

from __future__ import annotations

from bench import footprint
from tests.support import still_runs


def test_the_footprint_benchmark_reads_every_process_of_make_run_and_stops_them() -> None:
    figures = footprint.measure({"WOOSTORE_SIM_TIME_SCALE": "0"}, settle=0.5)

    assert set(figures.usage) == {
        "make", "launcher", "api", "provisioner", "reaper", "notifier", "nats-server", "postgres"
    }  # fmt: skip
    assert figures.usage["postgres"].processes > 1  # the postmaster and its children
    for usage in figures.usage.values():
        assert 0 < usage.uss <= usage.pss <= usage.rss
    assert 0 < figures.ready_seconds <= figures.idle_after_seconds
    assert figures.pooled == 2  # make run's own pool, full before anything is read
    read = [pid for usage in figures.usage.values() for pid in usage.pids]
    assert not [pid for pid in read if still_runs(pid)]  # Ctrl-C stopped every one
    section = footprint.section(figures)
    assert section.startswith("## The footprint of `make run`")
    assert "| All of them, RSS (target ≤ 450 MB) |" in section
