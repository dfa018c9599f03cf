"""``bench/store_cost.py`` end to end at a tiny size: every process's CPU is read, replicas
add up under their service, and the section renders. Nothing depends on how fast it was."""

from __future__ import annotations

from bench import store_cost


def test_the_store_cost_benchmark_reads_every_process_and_renders_its_section() -> None:
    sizes = store_cost.Sizes(stores=2, warm=1)

    figures = store_cost.Figures(
        default=store_cost.measure_one(sizes),
        wide=store_cost.measure_one(sizes, replicas=3, in_flight=16),
    )

    for run in (figures.default, figures.wide):
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
    section = store_cost.section(figures)
    assert section.startswith("## The cost of a store")
    assert "| Stores a second, 3 provisioners, 16 in flight (2 stores) |" in section
    assert "| JetStream stream STORES: added a store |" in section
