"""The README's main job runs end to end on a fresh machine: offline, no variable set.

`python -m keras_medyate.demo` must need nothing but the installed package (the
MCUNet checkpoint and a CIFAR-10 subset ship with it), say which data and which
weights it used, show only its own flags with `--help` (exit 0), and turn a bad
value into one line with exit status 2.
"""

import os
import subprocess
import sys

import pytest

from tests.fresh_machine import fresh_machine_env


def demo(args, env, timeout=600):
    """Runs the demo from an empty folder `<HOME>/work`."""
    work = os.path.join(env["HOME"], "work")
    os.makedirs(work, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "keras_medyate.demo", *args], cwd=work,
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_demo_runs_offline_with_no_variable_and_prints_the_report(tmp_path):
    env = fresh_machine_env(tmp_path)
    result = demo(["--resolution=32", "--train_per_class=3", "--test_per_class=2",
                   "--epochs=2", "--batch_size=10"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "I0000" not in result.stderr and "cuInit" not in result.stderr, result.stderr[-2000:]
    out = result.stdout
    # Which weights and which data, the shipped ones here.
    assert "weights: " in out and "mcunet-5fps.pkl (shipped with keras-medyate" in out, out[:2000]
    assert "data: 30 train / 20 test images from the CIFAR-10 subset shipped with" in out, \
        out[:2000]
    assert "no full CIFAR-10 was found" in out
    # The plan is shown before MeDyate trains; every run says what it is.
    assert out.index("Plan: ") < out.index("epoch   1/2", out.index("== medyate"))
    assert "== linear_probe" in out and "== full: full fine-tuning" in out
    assert "channels_selected" not in out and "budget_used" not in out
    report = out[out.index("method"):]
    lines = {line.split()[0]: line for line in report.splitlines()[1:4]}
    assert set(lines) == {"linear_probe", "medyate", "full"}
    assert "% of full" in lines["medyate"] and "100.0 % of full" in lines["full"]
    assert "total wall time" in out
    assert not os.path.exists(os.path.join(env["HOME"], ".keras", "keras_medyate", "weights"))


def test_help_lists_the_demo_flags_only_and_exits_0(tmp_path):
    result = demo(["--help"], fresh_machine_env(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for flag in ("--model", "--epochs", "--train_per_class", "--test_per_class",
                 "--resolution", "--protocol", "--learning_rate", "--budget", "--[no]full"):
        assert f"\n  {flag} " in out or f"\n  {flag}\n" in out, flag
    assert "--alsologtostderr" not in out and "--xml_output_file" not in out
    assert len(out.splitlines()) < 120


@pytest.mark.parametrize("arg, message", [
    ("--budgets=0", "Unknown command line flag 'budgets'"),
    ("--budget=0", "--budget=0: The budget must be positive"),
    ("--budget=62kb,-5", "Could not parse the budget"),
    ("--model=resnet50", "--model='resnet50' is neither a preset"),
    ("--strategy=medyte", "--strategy='medyte' is not one of"),
    ("--epochs=0", "--epochs=0: must be at least 1"),
    ("--dataset=imagenet", "Unknown dataset 'imagenet'"),
])
def test_bad_values_give_one_line_and_exit_2(tmp_path, arg, message):
    env = fresh_machine_env(tmp_path)
    result = demo([arg], env, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert lines[0].startswith("python -m keras_medyate.demo: error: ")
    assert result.stdout == "" and os.listdir(os.path.join(env["HOME"], "work")) == []
    assert not os.path.exists(os.path.join(env["HOME"], ".keras", "keras_medyate"))
