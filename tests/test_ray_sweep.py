"""`benchmarks/paper_comparison.py --ray`: the sweep as Ray tasks gives the sequential CSV.

Slow (two sweeps and a local Ray); needs the `cluster` extra
(`pip install -e ".[cluster]"`).
"""

import csv
import json

import pytest

from tests.test_paper_comparison import run_cli

pytest.importorskip("ray", reason="needs the cluster extra: pip install -e '.[cluster]'")

METHODS = "medyate,trady,det_rgn,full,classifier,linear_probe"
#: Columns that measure the machine, not the run.
TIMING = {"train_seconds", "epoch_seconds", "first_epoch_seconds",
          "resample_seconds_per_epoch", "probe_seconds", "peak_memory_mb",
          "epoch_eval_seconds"}


def rows_of(path):
    with open(path, newline="") as f:
        return {(r["method"], r["budget_units"], r["seed"]): r for r in csv.DictReader(f)}


@pytest.mark.slow
def test_ray_sweep_gives_the_sequential_rows_and_resumes(tmp_path, weights_dir, data_dir):
    sequential_dir, ray_dir = tmp_path / "sequential", tmp_path / "ray"
    sequential = run_cli(sequential_dir, weights_dir, data_dir, "--quick", f"--methods={METHODS}")
    assert sequential.returncode == 0, sequential.stderr[-3000:]
    # Default flags: both paths run TensorFlow with --threads threads (2) per run, so the
    # floating-point sums run in the same order.
    ray_args = ("--quick", f"--methods={METHODS}", "--ray")
    swept = run_cli(ray_dir, weights_dir, data_dir, *ray_args)
    assert swept.returncode == 0, swept.stderr[-3000:]
    assert "ray: 6 done, 0 running or queued, 0 failed" in swept.stdout

    expected = rows_of(sequential_dir / "results" / "paper_comparison.csv")
    got = rows_of(ray_dir / "results" / "paper_comparison.csv")
    assert sorted(got) == sorted(expected) and len(got) == len(METHODS.split(","))
    for key, row in expected.items():
        differing = {c: (row[c], got[key][c]) for c in row
                     if c not in TIMING and row[c] != got[key][c]}
        assert not differing, (key, differing)
    # The driver wrote MeDyate's per-epoch selections, equal to the sequential ones.
    name = "mcunet_5fps_fashion_mnist_medyate_15936_0.json"
    assert (json.loads((ray_dir / "results" / "selections" / name).read_text())
            == json.loads((sequential_dir / "results" / "selections" / name).read_text()))

    # Resume: every run is in the CSV, nothing is submitted again.
    again = run_cli(ray_dir, weights_dir, data_dir, *ray_args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("in the CSV, skipped") == len(METHODS.split(","))
    assert len(rows_of(ray_dir / "results" / "paper_comparison.csv")) == len(expected)
