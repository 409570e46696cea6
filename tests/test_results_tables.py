"""benchmarks/RESULTS.md's measured tables (and the comparison's summary.md) are the report
code's output of the committed CSVs."""

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, benchmark_module


def test_results_md_tables_match_their_csvs():
    result = subprocess.run(
        [sys.executable, os.path.join("benchmarks", "update_results.py"), "--check"],
        cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "match their CSVs" in result.stdout
    blocks = int(result.stdout.split(":")[1].split()[0])
    assert blocks >= 2, result.stdout  # the recipe check and the comparison
    assert "1 summary.md" in result.stdout  # the comparison's summary.md holds the same tables


def _write_runs(folder, runs):
    """One `paper_comparison.csv` per entry of `runs` ({subfolder: changed columns}) under
    `folder`, each holding one MeDyate validation run."""
    import csv  # noqa: PLC0415

    from keras_medyate.comparison.settings import CSV_COLUMNS  # noqa: PLC0415

    row = dict.fromkeys(CSV_COLUMNS, "")
    row.update(model="mcunet_5fps", dataset="cifar10", method="medyate", runtime="keras",
               budget_units="15936", seed="0", top1="81.2", evaluated_on="validation",
               epochs="15", update_memory_kb="62.1", resolution="128", train_images="10000",
               test_images="5000", learning_rate="0.05", augment="1", crop_scale="none",
               epoch_top1="80.0;81.2")
    for name, changes in runs.items():
        os.makedirs(folder / name)
        with open(folder / name / "paper_comparison.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerow({**row, **changes})


def test_recipe_table_keeps_runs_of_other_lengths_and_sizes_apart(tmp_path):
    """A search directory mixes schedules and training-set sizes (issue 26): a 30-epoch run
    or a whole-training-set run is its own row, never averaged with a 15-epoch subset run."""
    _write_runs(tmp_path, {"base": {}, "longer": {"epochs": "30"},
                           "whole": {"train_images": "45000"}})
    rows = [line for line in benchmark_module("update_results").recipe_lines(str(tmp_path))
            if line.startswith("| medyate")]
    assert len(rows) == 3, rows
    assert sorted((line.split(" | ")[4], line.split(" | ")[5]) for line in rows) == [
        ("10,000", "15"), ("10,000", "30"), ("45,000", "15")]
    assert all("| flip |" in line and "(1 run)" in line for line in rows), rows


def test_recipe_table_refuses_runs_it_cannot_tell_apart(tmp_path):
    _write_runs(tmp_path, {"96px": {"resolution": "96"}, "128px": {}})
    with pytest.raises(ValueError, match="mixes runs of 2 .model, dataset, resolution"):
        benchmark_module("update_results").recipe_lines(str(tmp_path))
