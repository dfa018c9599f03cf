"""``bench/backups.py`` end to end at a tiny size, on both backends (a folder and moto's S3):
each backup completes, each restore ends ready, memory is read, and the section renders.
Nothing depends on how fast it was."""

from __future__ import annotations

from bench import backups


def test_the_backups_benchmark_runs_on_a_folder_and_on_s3_and_renders_its_section() -> None:
    runs = backups.measure(sizes=(1,), s3_sizes=(1,))

    assert [(run.backend, run.size_mb) for run in runs] == [("folder", 1), ("S3", 1)]
    for run in runs:
        assert run.backup_size_bytes >= run.size_mb << 20  # the uploads, and the dump
        assert run.backup_seconds > 0
        assert run.restore_seconds > 0
        assert run.provisioner_peak_mb > 0
    section = backups.section(runs)
    assert section.startswith("## Backups")
    assert "| 1 MB store on S3 (moto): backup |" in section
    assert "| 1 MB store: restore (with its safety backup) |" in section
