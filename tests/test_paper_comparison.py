"""`benchmarks/paper_comparison.py --quick` produces a well-formed CSV, summary and plots."""

import csv
import os
import subprocess
import sys

import pytest

from keras_medyate.comparison import runner
from tests.conftest import REPO, SHARED_DATA

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(SHARED_DATA, "weights", "mcunet-5fps.pkl")),
    reason=f"paper checkpoints not found in {SHARED_DATA}",
)
REQUIRED = ["model", "dataset", "method", "budget_units", "seed", "top1", "epochs",
            "train_seconds", "peak_memory_mb", "update_memory_kb"]


def run_cli(out, *extra):
    env = dict(os.environ,
               KERAS_MEDYATE_WEIGHTS_DIR=os.path.join(SHARED_DATA, "weights"),
               KERAS_MEDYATE_DATA_DIR=SHARED_DATA,
               KERAS_HOME=str(out / "keras_home"))
    return subprocess.run(
        [sys.executable, "benchmarks/paper_comparison.py", "--quick", "--dataset=fashion_mnist",
         f"--out={out / 'results'}", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_quick_preset_writes_csv_summary_and_plots(tmp_path):
    result = run_cli(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = tmp_path / "results"
    with open(results / "paper_comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(REQUIRED) <= set(rows[0])
    assert sorted(r["method"] for r in rows) == sorted(runner.METHODS)
    for row in rows:
        assert 0.0 <= float(row["top1"]) <= 100.0
        assert float(row["train_seconds"]) > 0 and float(row["peak_memory_mb"]) > 0
        if row["method"] not in ("full", "classifier"):
            assert int(row["budget_units"]) == 15936
            assert 0 < float(row["update_memory_kb"]) <= 15936 * 4 / 1024 + 1e-6
    summary = (results / "summary.md").read_text()
    assert "| medyate | 15,936 |" in summary and "Paired comparison" in summary
    for name in ["accuracy_vs_budget.png", "lara_ranking_mcunet_5fps.png",
                 "selection_heatmap_mcunet_5fps_fashion_mnist.png"]:
        assert (results / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    # A second call finds every run in the CSV and skips it (resume).
    again = run_cli(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("in the CSV, skipped") == len(runner.METHODS)
    with open(results / "paper_comparison.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
