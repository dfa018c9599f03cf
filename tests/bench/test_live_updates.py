"""``bench/live_updates.py`` end to end at a tiny size, so ``make bench`` does not find it
broken: every client connects and follows the stream, the notifier restarts under the storm's
clients and they all come back, and the section and its plot render. Nothing here depends on
how fast anything was."""

from __future__ import annotations

from pathlib import Path

from bench import live_updates


def test_the_live_updates_benchmark_follows_the_stream_and_renders_its_section(
    tmp_path: Path,
) -> None:
    figures = live_updates.measure(scales=(20,), storm_clients=20, seconds=1.0)

    assert figures.failures == {}
    [load] = figures.loads
    assert (load.clients, load.connected, load.refused, load.failed) == (20, 20, 0, 0)
    assert load.published > 0
    assert load.complete == 20  # every client read every event, each once
    assert load.latencies
    storm = figures.storm
    assert storm is not None
    assert storm.connected == 20
    assert storm.restart_seconds is not None  # the notifier came back
    assert len(storm.reconnected) == len(storm.caught_up) == 20  # and so did every client
    section = live_updates.section(figures, plot_path=tmp_path / "live.png")
    assert section.startswith("## Live updates")
    assert (tmp_path / "live.png").stat().st_size > 0
