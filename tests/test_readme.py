"""The README's python blocks run as written (on the package's own checkpoint and data)."""

import os
import re
import subprocess
import sys


README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def python_blocks():
    with open(README, encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_readme_has_python_blocks():
    assert len(python_blocks()) >= 2


def test_readme_python_blocks_run_and_train(tmp_path, weights_dir, data_dir):
    """Every ```python block, in order, in one fresh interpreter (as a user
    pastes them), from a folder outside the checkout; then the quick start's
    model must have learnt something."""
    script = "\n\n".join(python_blocks()) + "\n\n" + (
        "history = trainer.history.history\n"
        "print('README-CHECK', history['val_accuracy'][-1], history['loss'][0],"
        " history['loss'][-1])\n")
    (tmp_path / "readme.py").write_text(script)
    env = dict(os.environ, KERAS_MEDYATE_WEIGHTS_DIR=str(weights_dir),
               KERAS_MEDYATE_DATA_DIR=str(data_dir))
    result = subprocess.run([sys.executable, "readme.py"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(l for l in result.stdout.splitlines() if l.startswith("README-CHECK"))
    val_accuracy, first_loss, last_loss = map(float, line.split()[1:])
    assert val_accuracy > 0.5, result.stdout[-3000:]  # 10 classes: chance is 0.1
    assert last_loss < first_loss
