"""``bench/scale.py`` end to end at a tiny size, so ``make bench`` does not find it broken:
every read answers, a reaper pass over the seeded stores has nothing to do, and retention
prunes exactly the events it aged. Nothing here depends on how fast anything was."""

from __future__ import annotations

from bench import scale


def test_the_scale_benchmark_reads_reaps_prunes_and_renders_its_section() -> None:
    # More stores than a page (50) holds, so the read by cursor has a next page to read.
    sizes = scale.Sizes(
        stores=120, tenants=3, events_per_store=4, failed_every=10, reads=2, passes=1
    )

    figures = scale.measure(sizes)

    assert len(figures.reads) == 7
    assert all(len(seconds) == 2 for seconds in figures.reads.values())
    assert len(figures.passes) == 1  # run() raises if the pass did anything
    assert figures.pruned == 120 * 4 // 2  # the half made 40 days old, and nothing more
    assert figures.batches == 1
    assert figures.bytes["database"] > figures.bytes["store_events"] > 0
    section = scale.section(figures)
    assert section.startswith("## The control plane at 120 stores")
    assert "| One store with its 4 events: p50 / p99 |" in section
    assert "| Events past retention pruned | 240 in " in section
