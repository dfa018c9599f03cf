"""``bench/warm_pool.py`` end to end, small and quick (2 claims; a cold store in about 1.5 s
instead of 75), so ``make bench`` does not find it broken: claims come from the pool, the
reaper refills it one store at a time, the cold starts are cold, and the section renders.
Nothing here depends on how fast anything was."""

from __future__ import annotations

from bench import warm_pool


def test_the_warm_pool_benchmark_claims_refills_starts_cold_and_renders_its_section() -> None:
    figures = warm_pool.measure(claims=2, time_scale=0.02)

    assert len(figures.claims) == len(figures.breakdown) == 2
    assert len(figures.burst) == warm_pool.REFILL_POOL
    assert len(figures.cold) == warm_pool.COLD_STORES
    # Two refills, the second asked for once the first was pooled: the slot it did not take
    # was left to owners.
    first, second = sorted(figures.refills, key=lambda refill: refill.asked)
    assert second.asked >= first.pooled
    assert set(figures.phase_seconds) == {"fill", "claims", "refill", "cold", "stop"}
    section = warm_pool.section(figures)
    assert section.startswith("## Warm pool")
    assert "| Claims measured (4 at a time) | 2 |" in section
