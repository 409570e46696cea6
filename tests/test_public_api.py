"""The package's public surface: lazy subpackages, core names, no import side effects."""

import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import keras_medyate as kmd
from tests.helpers import REPO

LAZY_PACKAGES = ("keras_medyate.data", "keras_medyate.models", "keras_medyate.comparison")
SUBMODULES = ("channels", "comparison", "console", "data", "inventory", "memory", "models",
              "planning", "ranking", "resampler", "strategies", "subnetwork_model")
CORE_NAMES = ("ChannelResampler", "EpochSelection", "LayerInfo", "LayerRanking", "Plan",
              "STRATEGIES", "SubnetworkModel", "fit_classifier", "format_units", "parse_budget", "plan",
              "rank_layers", "recommended_optimizer", "__version__")


def run_python(code):
    """Runs `code` in a fresh interpreter from the repository, without the logging
    variable this test session sets; returns the completed process."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_subpackages_are_attributes():
    import keras_medyate.comparison  # noqa: F401, PLC0415 - the same object as the attribute
    from keras_medyate.models import mcunet_5fps  # noqa: PLC0415

    assert kmd.models.mcunet_5fps is mcunet_5fps
    assert callable(kmd.data.load)
    assert kmd.comparison is sys.modules["keras_medyate.comparison"]
    assert kmd.strategies.get("medyate") is not None
    assert kmd.memory.parse_budget("1KB") == 256


def test_core_names_are_reexported():
    from keras_medyate import SubnetworkModel, plan  # noqa: PLC0415
    from keras_medyate.planning import plan as planning_plan  # noqa: PLC0415
    from keras_medyate.subnetwork_model import SubnetworkModel as Model  # noqa: PLC0415

    assert plan is planning_plan and SubnetworkModel is Model
    for name in CORE_NAMES:
        assert getattr(kmd, name) is not None, name
    assert sorted(kmd.__all__) == sorted(CORE_NAMES)


def test_dir_lists_core_names_and_submodules():
    listed = dir(kmd)
    for name in CORE_NAMES + SUBMODULES:
        assert name in listed, name
    assert "demo" not in listed  # a program, run with `python -m keras_medyate.demo`


PACKAGES_WITH_ALL = ("keras_medyate", "keras_medyate.data", "keras_medyate.models",
                     "keras_medyate.strategies", "keras_medyate.comparison", "tflite_export",
                     "tflite_export.step_kinds")


def test_every_submodule_is_listed_as_public_internal_or_a_program():
    """A new module is a decision: public (an attribute), internal, or a program."""
    on_disk = {info.name for info in pkgutil.iter_modules(kmd.__path__)
               if not info.name.startswith("_")}
    assert on_disk == kmd._SUBMODULES | kmd._PROGRAMS | kmd._INTERNAL
    assert not kmd._SUBMODULES & (kmd._PROGRAMS | kmd._INTERNAL)
    with pytest.raises(AttributeError, match=r"keras_medyate\.files is internal"):
        kmd.__getattr__("files")


def test_every_package_declares_its_public_names():
    for package in PACKAGES_WITH_ALL:
        module = importlib.import_module(package)
        names = module.__all__
        assert names and len(set(names)) == len(names), package
        for name in names:
            try:
                value = getattr(module, name)
            except ModuleNotFoundError as error:  # `OnDeviceTrainer` without LiteRT
                pytest.importorskip(error.name)
                raise
            assert value is not None, f"{package}.{name}"


def test_unknown_attribute_says_what_exists():
    with pytest.raises(AttributeError, match=r"no attribute 'modles'\. Did you mean 'models'\?"):
        kmd.modles  # noqa: B018
    with pytest.raises(AttributeError, match=r"Public names: .*SubnetworkModel.*submodules: .*data"):
        kmd.no_such_name  # noqa: B018
    with pytest.raises(AttributeError, match=r"python -m keras_medyate\.demo"):
        kmd.demo  # noqa: B018
    assert not hasattr(kmd, "no_such_name")


def test_import_is_lazy_and_sets_no_environment_variable():
    result = run_python(
        "import os, sys\n"
        "import keras_medyate as kmd\n"
        f"loaded = [m for m in {LAZY_PACKAGES!r} if m in sys.modules]\n"
        "assert not loaded, f'imported eagerly: {loaded}'\n"
        "assert 'TF_CPP_MIN_LOG_LEVEL' not in os.environ, os.environ['TF_CPP_MIN_LOG_LEVEL']\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
        "assert callable(kmd.models.mcunet_5fps)\n"
        "assert 'keras_medyate.models' in sys.modules\n"
        "assert 'keras_medyate.data' not in sys.modules\n"
        "print('ok')\n")
    assert result.stdout.strip() == "ok"


def test_numpy_parts_and_the_device_driver_import_without_tensorflow():
    """The pool, the strategies, memory units and channel norms need numpy only, so
    `OnDeviceTrainer` reuses them in a process that never loads TensorFlow."""
    code = (
        "import sys\n"
        "import keras_medyate.channels, keras_medyate.memory, keras_medyate.strategies\n"
        "from keras_medyate.strategies.base import ChannelPool\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    try:
        import ai_edge_litert  # noqa: F401, PLC0415
    except ImportError:
        pass
    else:
        code += (
            "from tflite_export import OnDeviceTrainer\n"
            "import tflite_export.on_device as on_device\n"
            "assert on_device.ChannelPool is ChannelPool\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n")
    result = run_python(code + "print('ok')\n")
    assert result.stdout.strip() == "ok"


def test_quiet_tensorflow_import_prints_nothing_and_examples_run():
    """The console module's examples run, and TensorFlow's start-up lines are gone."""
    result = run_python(
        "import doctest\n"
        "import keras_medyate.console as console\n"
        "result = doctest.testmod(console)\n"
        "assert result.attempted > 0 and result.failed == 0, result\n")
    assert "absl::InitializeLog" not in result.stderr, result.stderr
    assert "cpu_feature_guard" not in result.stderr, result.stderr
    assert "oneDNN custom operations" not in result.stderr, result.stderr
