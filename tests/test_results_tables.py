"""benchmarks/RESULTS.md's measured tables (and the comparison's summary.md) are the report
code's output of the committed CSVs."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_results_md_tables_match_their_csvs():
    result = subprocess.run(
        [sys.executable, os.path.join("benchmarks", "update_results.py"), "--check"],
        cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "match their CSVs" in result.stdout
    blocks = int(result.stdout.split(":")[1].split()[0])
    assert blocks >= 2, result.stdout  # the recipe check and the comparison
    assert "1 summary.md" in result.stdout  # the comparison's summary.md holds the same tables


def test_recipe_table_keeps_runs_of_other_lengths_and_sizes_apart(tmp_path):
    """A search directory mixes schedules and training-set sizes (issue 26): a 30-epoch run
    or a whole-training-set run is its own row, never averaged with a 15-epoch subset run."""
    import csv
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "update_results", os.path.join(REPO, "benchmarks", "update_results.py"))
    update_results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(update_results)
    source = os.path.join(REPO, "benchmarks", "papers_scale", "search", "subset_medyate_aug_off",
                          "paper_comparison.csv")
    with open(source, newline="") as handle:
        row = next(csv.DictReader(handle))
    for name, changes in {"base": {}, "longer": {"epochs": "30"},
                          "whole": {"train_images": "45000"}}.items():
        os.makedirs(tmp_path / name)
        with open(tmp_path / name / "paper_comparison.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            writer.writeheader()
            writer.writerow({**row, **changes})
    rows = [line for line in update_results.recipe_lines(str(tmp_path))
            if line.startswith("| medyate")]
    assert len(rows) == 3, rows
    assert sorted((line.split(" | ")[4], line.split(" | ")[5]) for line in rows) == [
        ("10,000", "15"), ("10,000", "30"), ("45,000", "15")]
    assert all("(1 run)" in line for line in rows)
