"""The README's main job runs end to end (tiny settings, real data and checkpoint)."""

import os
import subprocess
import sys

from tests.helpers import REPO


def test_demo_prints_the_report(tmp_path, weights_dir, data_dir):
    env = dict(os.environ, KERAS_MEDYATE_WEIGHTS_DIR=weights_dir, KERAS_MEDYATE_DATA_DIR=data_dir,
               KERAS_HOME=os.environ.get("KERAS_HOME", str(tmp_path / "keras_home")))
    # Fashion-MNIST comes from the Debian package: no tarball to unpack here.
    result = subprocess.run(
        [sys.executable, "-m", "keras_medyate.demo", "--dataset=fashion_mnist",
         "--resolution=32", "--train_per_class=3", "--test_per_class=2", "--epochs=2",
         "--batch_size=10"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "I0000" not in result.stderr and "cuInit" not in result.stderr, result.stderr[-2000:]
    out = result.stdout
    # The plan is shown before MeDyate trains; every run says what it is.
    assert out.index("Plan: ") < out.index("epoch   1/2", out.index("== medyate"))
    assert "== linear_probe" in out and "== full: full fine-tuning" in out
    assert "channels_selected" not in out and "budget_used" not in out
    report = out[out.index("method"):]
    lines = {line.split()[0]: line for line in report.splitlines()[1:4]}
    assert set(lines) == {"linear_probe", "medyate", "full"}
    assert "% of full" in lines["medyate"] and "100.0 % of full" in lines["full"]
    assert "total wall time" in out
