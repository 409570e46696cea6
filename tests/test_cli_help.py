"""The benchmark scripts' command lines: a short `--help` of their own flags (exit 0), and
one line on standard error with exit status 2 for a bad value, before anything is created.

Fast: the help and the value checks run before TensorFlow is imported (but `--model`, whose
presets are known once the models package is imported).
"""

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

SCRIPTS = {
    "paper_comparison": [sys.executable, os.path.join(REPO, "benchmarks", "paper_comparison.py")],
    "make_rankings": [sys.executable, os.path.join(REPO, "benchmarks", "make_rankings.py")],
    "benchmark": [sys.executable, "-m", "tflite_export.benchmark"],
}


def run(script, *args, cwd):
    """Runs a script from `cwd` (a fresh folder: nothing may be created in it)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([*SCRIPTS[script], *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_paper_comparison_help_lists_its_own_flags_and_exits_0(tmp_path):
    result = run("paper_comparison", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for flag in ("--model", "--epochs", "--train_per_class", "--test_per_class", "--resolution",
                 "--protocol", "--learning_rate", "--full_learning_rate", "--methods",
                 "--budgets", "--seeds", "--runtime", "--threads", "--eval_on",
                 "--validation_fraction", "--max_retries", "--crop_scale",
                 "--out"):
        assert f"\n  {flag} " in result.stdout or f"\n  {flag}\n" in result.stdout, flag
    assert "\n  --[no]augment " in result.stdout
    # Only the script's flags: none of absl's or TensorFlow's.
    assert "--logtostderr" not in result.stdout and "--alsologtostderr" not in result.stdout
    assert len(result.stdout.splitlines()) < 150
    assert "never on the test set" in result.stdout  # --protocol documents the validation
    assert "medyate only" in result.stdout  # --runtime says what litert applies to
    assert result.stderr == "" and not os.listdir(tmp_path)


@pytest.mark.parametrize("args, message", [
    (["--budgets=0"], "--budgets: '0': The budget must be positive"),
    (["--budgets=62kb,-5"], "--budgets: '-5': Could not parse the budget '-5'"),
    (["--methods=medyte"], "unknown method 'medyte' (did you mean 'medyate'?)"),
    (["--runtime=tflite"], "--runtime: unknown runtime 'tflite'"),
    (["--protocol=papers"], "--protocol=papers: value should be one of"),
    (["--train_per_class=0"], "--train_per_class='0'"),
    (["--eval_on=validation", "--validation_fraction=1.5"], "--validation_fraction=1.5"),
    (["--threads=0"], "--threads=0: must be at least 1"),
    (["--crop_scale=0.35"], "--crop_scale=0.35: add --augment"),
    (["--augment", "--crop_scale=1.5"], "--crop_scale='1.5': give a number in (0, 1] or 'none'"),
    (["--augment", "--crop_scale=wide"], "--crop_scale='wide': give a number in (0, 1]"),
    (["stray"], "unexpected argument(s) ['stray']"),
])
def test_paper_comparison_bad_values_give_one_line_and_exit_2(tmp_path, args, message):
    out = tmp_path / "results"
    result = run("paper_comparison", *args, f"--out={out}", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout[-1000:], result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error: " in lines[0] and message in lines[0], result.stderr
    assert result.stdout == "" and not out.exists()


def test_paper_comparison_unknown_model_gives_one_line_and_exit_2(tmp_path):
    out = tmp_path / "results"
    result = run("paper_comparison", "--model=resnet50", f"--out={out}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--model='resnet50' is neither a preset" in lines[0], lines
    assert "mcunet_5fps" in lines[0] and not out.exists()


def test_make_rankings_help_and_bad_values(tmp_path):
    result = run("make_rankings", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for flag in ("--models", "--dataset", "--epochs", "--out"):
        assert f"\n  {flag} " in result.stdout, flag
    # The default output is under the current directory, not the installed package.
    assert "--out (default: rankings)" in result.stdout
    assert "--logtostderr" not in result.stdout
    bad = run("make_rankings", "--epochs=0", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "--epochs=0: must be at least 1" in bad.stderr
    assert not os.listdir(tmp_path)


def test_litert_benchmark_help_hides_internal_flags(tmp_path):
    result = run("benchmark", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for flag in ("--budgets", "--batch_size", "--threads", "--xnnpack", "--out_dir"):
        assert f"\n  {flag} " in result.stdout, flag
    for internal in ("--measure", "--export_only", "--select_all", "--use_xnnpack", "--model",
                     "--budget ", "Internal"):
        assert internal not in result.stdout, internal
    bad = run("benchmark", "--budgets=0", f"--out_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "--budgets: '0' is neither" in bad.stderr and not (tmp_path / "out").exists()
