"""What a new user meets in the first hour, each import in a fresh process.

* `import keras_medyate` (no TensorFlow yet) is enough for
  `keras.saving.load_model` to find the package's layers and models, whichever
  of `keras` and `keras_medyate` is imported first;
* without LiteRT, `tflite_export`'s import error names the extra to install;
* the package ships what its default needs (the checkpoint and its notice, the
  CIFAR-10 subset) and declares it as package data, with its licence files.
"""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

LOAD_AFTER_PLAIN_IMPORT = """
import sys
import keras_medyate
assert "tensorflow" not in sys.modules and "keras" not in sys.modules
import keras
model = keras.saving.load_model("model.keras")
trainer = keras.saving.load_model("trainer.keras")
print("LOADED", sum(type(l).__name__ == "BoundedReLU" for l in model.layers),
      type(trainer).__name__)
"""

LOAD_KERAS_FIRST = """
import keras
try:  # without keras_medyate, Keras cannot: the loads above and below are not vacuous
    keras.saving.load_model("model.keras")
except Exception as error:
    print("REFUSED", "BoundedReLU" in str(error))
import keras_medyate
model = keras.saving.load_model("model.keras")
print("LOADED", sum(type(l).__name__ == "BoundedReLU" for l in model.layers))
"""


def save_models(folder):
    """A model with the package's layers and a compiled SubnetworkModel, saved
    (in this process: saving needs no fresh interpreter)."""
    import keras  # noqa: PLC0415
    import keras_medyate as kmd  # noqa: PLC0415

    model = kmd.models.mcunet_5fps(classes=3, input_shape=(32, 32, 3))
    model.save(os.path.join(folder, "model.keras"))
    plan = kmd.plan(model, budget=15936, ranking="lara")
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    trainer.save(os.path.join(folder, "trainer.keras"))
    keras.backend.clear_session()


def python(code, cwd, timeout=300, **env):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **env))


def test_saved_models_load_after_import_keras_medyate_in_a_new_process(tmp_path):
    save_models(str(tmp_path))
    result = python(LOAD_AFTER_PLAIN_IMPORT, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    count, kind = re.search(r"LOADED (\d+) (\w+)", result.stdout).groups()
    assert int(count) > 0 and kind == "SubnetworkModel"
    result = python(LOAD_KERAS_FIRST, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REFUSED True" in result.stdout, result.stdout[-2000:]
    assert int(re.search(r"LOADED (\d+)", result.stdout).group(1)) > 0


@pytest.mark.parametrize("name", ["OnDeviceTrainer", "export_training_model"])
def test_tflite_export_without_litert_names_the_extra(tmp_path, name):
    code = ("import sys\n"
            "sys.modules['ai_edge_litert'] = None  # as if it were not installed\n"
            f"from tflite_export import {name}\n")
    result = python(code, tmp_path, timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: ") and "ai_edge_litert" in last, last
    assert 'pip install "keras-medyate[litert]"' in last, last


def test_shipped_files_exist_are_declared_and_carry_their_notices():
    assets = os.path.join(REPO, "keras_medyate", "assets")
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        setup = f.read()
    for name in ("mcunet-5fps.pkl", "cifar10_subset.tar.gz", "LICENSE.tiny-training",
                 "README.md"):
        assert os.path.isfile(os.path.join(assets, name)), name
        assert f'"assets/{name}"' in setup, name
    total = sum(os.path.getsize(os.path.join(assets, n)) for n in os.listdir(assets))
    assert total < 4 * 2**20  # "a few MB"
    with open(os.path.join(assets, "LICENSE.tiny-training"), encoding="utf-8") as f:
        assert "Copyright (c) 2022 MIT HAN Lab" in f.read()
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as f:
        assert "Apache License" in f.read() and 'license="Apache-2.0"' in setup
    assert 'URL = "https://github.com/keras-medyate/keras-medyate"' in setup
    with open(os.path.join(REPO, "NOTICE"), encoding="utf-8") as f:
        notice = f.read()
    assert "mcunet-5fps.pkl" in notice and "cifar10_subset.tar.gz" in notice


def test_every_registered_class_has_a_lazy_stand_in():
    """`import keras_medyate` registers a stand-in for each class the package registers
    with Keras: the list in `keras_medyate/__init__.py` must name them all."""
    import keras_medyate  # noqa: PLC0415

    found = {}
    package = os.path.join(REPO, "keras_medyate")
    for folder, _, names in os.walk(package):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            module = os.path.relpath(path[:-3], REPO).replace(os.sep, ".")
            for match in re.finditer(r'register_keras_serializable\(package="keras_medyate"\)\n'
                                     r'class (\w+)', text):
                found[f"keras_medyate>{match.group(1)}"] = module
    assert found and found == keras_medyate._KERAS_REGISTERED


def test_importing_any_module_first_registers_without_warning(tmp_path):
    """The stand-ins import nothing, so no import order can make a circular import."""
    code = ("import warnings\n"
            "warnings.simplefilter('error')\n"
            "import keras_medyate.ranking\n"
            "import keras\n"
            "print(sorted(k for k in keras.saving.get_custom_objects() if 'keras_medyate' in k))\n")
    result = python(code, tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "keras_medyate>BoundedReLU" in result.stdout
    assert "keras_medyate>SubnetworkModel" in result.stdout
