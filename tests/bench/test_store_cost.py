"""``bench/store_cost.py`` end to end at a tiny size: every process's CPU is read, replicas
add up under their service, and the section renders with its plot. Nothing depends on how
fast it was."""

from __future__ import annotations

from pathlib import Path

from bench import store_cost


def test_the_store_cost_benchmark_reads_every_process_and_renders_its_section(
    tmp_path: Path,
) -> None:
    figures = store_cost.measure(store_cost.Sizes(stores=2, warm=1), replicas=(1, 3))

    assert set(figures.by_replicas) == {1, 3}
    for run in (figures.default, *figures.by_replicas.values()):
        assert set(run.cpu) == {
            "api",
            "provisioner",
            "reaper",
            "notifier",
            "nats",
            "postgres",
            "helm",
        }
        assert run.stores == 2
        assert run.seconds > 0
        assert set(run.streams) == {"STORES", "WORK"}
        assert all(messages > 0 and size > 0 for messages, size in run.streams.values())
    section = store_cost.section(figures, plot_path=tmp_path / "cost.png")
    assert section.startswith("## The cost of a store")
    assert "| Stores a second, 1 provisioner, 16 in flight (2 stores) |" in section
    assert "| Stores a second, 3 provisioners, 16 in flight (2 stores) |" in section
    assert "| JetStream stream STORES: added a store |" in section
    assert "![Throughput and CPU a store against replicas](cost.png)" in section
    assert (tmp_path / "cost.png").stat().st_size > 0
