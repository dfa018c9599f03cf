"""``bench/bursts.py`` end to end at a tiny size, so ``make bench`` does not find it broken:
every figure is there and its section renders. Nothing here depends on how fast anything was.
"""

from __future__ import annotations

from pathlib import Path

from bench import bursts


def test_the_bursts_benchmark_measures_each_figure_and_renders_its_section(
    tmp_path: Path,
) -> None:
    sizes = bursts.Sizes(
        tenants=2, cap=2, lone=3, concurrency=(1, 2), per_level=4, quiet_minute=False
    )

    figures = bursts.measure(sizes)

    # Each burst tenant got its whole cap, after its sessions were ended too.
    assert figures.burst.accepted == figures.after_quiet.accepted == 4
    assert (len(figures.lone_store), len(figures.lone_bare)) == (3, 3)
    assert len(figures.burst.latencies) == len(figures.after_quiet.latencies) == 4
    levels = [*figures.stores.values(), *figures.bare.values()]
    assert sorted(figures.stores) == sorted(figures.bare) == [1, 2]
    assert all(len(level.latencies) == 4 for level in levels)
    section = bursts.section(figures, plot_path=tmp_path / "bursts.png")
    assert section.startswith("## Bursts of creates")
    assert "| ... accepted | 4 of 4, all allowed |" in section
    assert "(the API's sessions ended), all answered in |" in section
    assert (tmp_path / "bursts.png").stat().st_size > 0
