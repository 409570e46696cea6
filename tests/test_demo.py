"""The README's main job runs end to end (tiny settings, real data and checkpoint)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, SHARED_DATA

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(SHARED_DATA, "weights", "mcunet-5fps.pkl")),
    reason=f"paper checkpoints not found in {SHARED_DATA}",
)


def test_demo_prints_the_report(tmp_path):
    env = dict(os.environ,
               KERAS_MEDYATE_WEIGHTS_DIR=os.path.join(SHARED_DATA, "weights"),
               KERAS_MEDYATE_DATA_DIR=SHARED_DATA,
               KERAS_HOME=os.environ.get("KERAS_HOME", str(tmp_path / "keras_home")))
    # Fashion-MNIST comes from the Debian package: no tarball to unpack here.
    result = subprocess.run(
        [sys.executable, "-m", "keras_medyate.demo", "--dataset=fashion_mnist",
         "--resolution=32", "--train_per_class=3", "--test_per_class=2", "--epochs=2",
         "--batch_size=10"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "== medyate: fine-tuning" in out and "Plan: " in out and "== full: fine-tuning" in out
    report = out[out.index("method"):]
    lines = {line.split()[0]: line for line in report.splitlines()[1:3]}
    assert set(lines) == {"medyate", "full"}
    assert "% of full" in lines["medyate"] and "100.0 % of full" in lines["full"]
    assert "total wall time" in out
