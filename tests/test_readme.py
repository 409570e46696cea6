"""The README's python blocks run as written, on a fresh machine (no network, no variable).

The quick start must end above the head it starts from (the linear probe), and
its saved model must load in a new process after `import keras_medyate`.
"""

import os
import re
import subprocess
import sys

from tests.fresh_machine import fresh_machine_env

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def python_blocks():
    with open(README, encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_readme_has_python_blocks():
    assert len(python_blocks()) >= 3


def run(script, env, cwd, timeout=900):
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_readme_python_blocks_run_beat_the_probe_head_and_reload(tmp_path):
    """Every ```python block, in order, in one fresh interpreter (as a user pastes
    them), from a folder outside the checkout; the quick start must beat its head;
    then the reload block alone, in a new process."""
    env = fresh_machine_env(tmp_path)
    blocks = python_blocks()
    reload_block = next(b for b in blocks if "load_model(" in b)
    script = "\n\n".join(blocks) + "\n\n" + (
        "history = trainer.history.history\n"
        "print('README-CHECK', probe_accuracy, history['val_accuracy'][-1], history['loss'][0],"
        " history['loss'][-1])\n")
    result = run(script, env, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "subset shipped with keras-medyate" in result.stderr  # the warning says which data
    line = next(l for l in result.stdout.splitlines() if l.startswith("README-CHECK"))
    probe_accuracy, val_accuracy, first_loss, last_loss = map(float, line.split()[1:])
    assert val_accuracy > probe_accuracy > 0.3, result.stdout[-3000:]  # chance is 0.1
    assert last_loss < first_loss

    result = run(reload_block + (
        "\nimport sys\n"
        "names = {type(layer).__name__ for layer in restored.layers}\n"
        "assert 'BoundedReLU' in names, names\n"
        "print('RELOADED', type(restored).__name__)\n"), env, tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RELOADED Functional" in result.stdout
