"""`benchmarks/paper_comparison.py`: CSV, summary and plots, resume, data errors."""

import csv
import os
import subprocess
import sys

import pytest

from keras_medyate.comparison import runner
from tests.helpers import REPO

REQUIRED = ["model", "dataset", "method", "budget_units", "seed", "top1", "epochs",
            "train_seconds", "peak_memory_mb", "update_memory_kb", "head_init", "probe_l2"]


def run_cli(tmp_path, weights_dir, data_dir, *args):
    env = dict(os.environ, KERAS_MEDYATE_WEIGHTS_DIR=weights_dir, KERAS_MEDYATE_DATA_DIR=data_dir,
               KERAS_HOME=str(tmp_path / "keras_home"))
    return subprocess.run(
        [sys.executable, "benchmarks/paper_comparison.py", "--dataset=fashion_mnist",
         f"--out={tmp_path / 'results'}", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_quick_preset_with_two_methods_writes_csv_summary_and_plots(tmp_path, weights_dir,
                                                                    data_dir):
    """The default run's end-to-end CLI check (every method: the slow test below), its resume,
    and a diverging run that writes no row."""
    result = run_cli(tmp_path, weights_dir, data_dir, "--quick", "--methods=linear_probe,medyate")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "I0000" not in result.stderr and "cuInit" not in result.stderr, result.stderr[-2000:]
    results = tmp_path / "results"
    with open(results / "paper_comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(REQUIRED) <= set(rows[0])
    assert sorted(r["method"] for r in rows) == ["linear_probe", "medyate"]
    summary = (results / "summary.md").read_text()
    assert "| medyate | 15,936 |" in summary
    assert (results / "accuracy_vs_budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A second call finds both runs in the CSV and skips them (resume); the run it adds
    # diverges (full fine-tuning at a huge rate, no retry): no row, exit 1.
    again = run_cli(tmp_path, weights_dir, data_dir, "--quick",
                    "--methods=linear_probe,medyate,full", "--full_learning_rate=1e6",
                    "--max_retries=0")
    assert again.returncode == 1, again.stderr[-3000:]
    assert again.stdout.count("in the CSV, skipped") == 2
    assert "DIVERGED, no row written" in again.stdout and "learning rate 1e+06" in again.stdout
    with open(results / "paper_comparison.csv", newline="") as f:
        assert sorted(r["method"] for r in csv.DictReader(f)) == ["linear_probe", "medyate"]


@pytest.mark.slow  # 90 s: every method once; the default run has the two-method check above
def test_quick_preset_writes_csv_summary_and_plots(tmp_path, weights_dir, data_dir):
    result = run_cli(tmp_path, weights_dir, data_dir, "--quick")
    assert result.returncode == 0, result.stderr[-3000:]
    # Only the CLI's own progress: no TensorFlow start-up lines, no Keras warnings.
    assert "I0000" not in result.stderr and "cuInit" not in result.stderr, result.stderr[-2000:]
    assert "shuffle=True" not in result.stderr
    results = tmp_path / "results"
    with open(results / "paper_comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(REQUIRED) <= set(rows[0])
    assert sorted(r["method"] for r in rows) == sorted(runner.METHODS)
    probe_l2 = {r["probe_l2"] for r in rows if r["method"] != "linear_probe"}
    assert len(probe_l2) == 1 and "" not in probe_l2  # every method starts from one probe head
    for row in rows:
        assert 0.0 <= float(row["top1"]) <= 100.0
        assert float(row["peak_memory_mb"]) >= 0 and row["head_init"] == "linear_probe"
        if row["method"] not in runner.BUDGET_FREE:
            assert int(row["budget_units"]) == 15936
            assert 0 < float(row["update_memory_kb"]) <= 15936 * 4 / 1024 + 1e-6
            assert float(row["train_seconds"]) > 0
    probe = next(r for r in rows if r["method"] == "linear_probe")
    assert int(probe["epochs"]) == 0 and float(probe["update_memory_kb"]) == 0
    summary = (results / "summary.md").read_text()
    assert "| medyate | 15,936 |" in summary and "Paired comparison" in summary
    assert "Smoke run (`--quick`)" in summary and "mean nothing" in summary
    for name in ["accuracy_vs_budget.png", "lara_ranking_mcunet_5fps.png",
                 "selection_heatmap_mcunet_5fps_fashion_mnist.png"]:
        assert (results / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    # A second call finds every run in the CSV and skips it (resume).
    again = run_cli(tmp_path, weights_dir, data_dir, "--quick")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("in the CSV, skipped") == len(runner.METHODS)
    with open(results / "paper_comparison.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)


def test_too_small_dataset_fails_before_any_work(tmp_path, weights_dir, data_dir):
    result = run_cli(tmp_path, weights_dir, data_dir, "--methods=medyate",
                     "--train_per_class=7000", "--test_per_class=all")
    assert result.returncode != 0
    assert "train_per_class=7000" in result.stderr and "6000 train images" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()  # no empty output folder left behind


def test_run_seed_picks_the_training_images_and_their_order(fashion_mnist_dir):
    """A seed picks its own training images and order (shared by every method of the seed,
    issue 23: deterministic baselines get a spread); the test images are the same."""
    def images(seed):
        train_ds, test_ds, probe_ds, _ = runner.load_data("fashion_mnist", 8, batch_size=64,
                                                          train_per_class=5, test_per_class=1,
                                                          seed=seed)
        return [[(float(x.numpy().sum()), int(y)) for xs, ys in ds for x, y in zip(xs, ys)]
                for ds in (train_ds, probe_ds, test_ds)]

    first, probe_first, test_first = images(0)
    again, probe_again, _ = images(0)
    other, probe_other, test_other = images(1)
    assert first == again and probe_first == probe_again  # a seed is reproducible
    assert sorted(first) == sorted(probe_first) and first != probe_first  # shuffled
    assert sorted(first) != sorted(other) and probe_first != probe_other  # other images
    assert test_first == test_other


def test_a_bad_ranking_path_fails_before_any_work(tmp_path, weights_dir, data_dir):
    result = run_cli(tmp_path, weights_dir, data_dir, "--methods=medyate",
                     f"--ranking={tmp_path / 'missing.json'}")
    assert result.returncode != 0
    assert "--ranking=" in result.stderr and "missing.json" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()
