"""The `>>>` examples in the docstrings run and are right, in every module that has them.

The modules are discovered, not listed: every module of `keras_medyate` and
`tflite_export` (subpackages included, `__main__` programs left out) whose
source holds a `>>>` example. A module whose import needs an optional package
(`ai_edge_litert`, `flwr`, `ray`, ...) is skipped with the package's name, and
under `CI=true` that is a failure, as for every test (`tests/conftest.py`).
Each module's examples run after the session's seeding fixture, as every test does.
"""

import doctest
import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

from tests.helpers import REPO

PACKAGES = ("keras_medyate", "tflite_export")
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
#: Modules whose examples change process-wide state (TensorFlow's log level,
#: Python's loggers and warning filters): they run in a fresh interpreter.
IN_FRESH_PROCESS = frozenset({"keras_medyate.console"})


def _modules(path, prefix):
    """(module name, source path) of every module under `path`, subpackages included,
    without importing anything."""
    for info in pkgutil.iter_modules([path], prefix):
        leaf = info.name.rsplit(".", 1)[-1]
        if leaf == "__main__":
            continue
        folder = os.path.join(path, leaf)
        if info.ispkg:
            yield info.name, os.path.join(folder, "__init__.py")
            yield from _modules(folder, info.name + ".")
        else:
            yield info.name, folder + ".py"


def modules_with_examples():
    """The names of the modules whose source holds a `>>>` example, sorted."""
    found = []
    for package in PACKAGES:
        folder = os.path.join(REPO, package)
        for name, source in [(package, os.path.join(folder, "__init__.py")),
                             *_modules(folder, package + ".")]:
            with open(source, encoding="utf-8") as f:
                if ">>>" in f.read():
                    found.append(name)
    return sorted(found)


MODULES = modules_with_examples()


def test_examples_are_discovered_in_every_package_and_subpackage():
    for name in ("keras_medyate.memory", "keras_medyate.strategies.medyate",
                 "keras_medyate.models.tiny_training", "keras_medyate.data.cache",
                 "tflite_export.sampler", "tflite_export.step_kinds.base"):
        assert name in MODULES, name
    assert not any(name.endswith("__main__") for name in MODULES)


def _import(module_name):
    """Imports the module; a missing optional package skips (fails under CI)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing.split(".")[0] in PACKAGES or not missing:
            raise
        pytest.importorskip(missing, reason=f"{module_name} needs {missing!r}: {error}")
        raise


def _run_in_fresh_process(module_name):
    code = ("import doctest, importlib\n"
            f"module = importlib.import_module({module_name!r})\n"
            f"result = doctest.testmod(module, optionflags={OPTIONS})\n"
            "print(result.attempted, result.failed)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    attempted, failed = (int(v) for v in result.stdout.split()[-2:])
    assert failed == 0, result.stdout[-5000:]
    return attempted


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name):
    module = _import(module_name)
    examples = [example for test in doctest.DocTestFinder().find(module)
                for example in test.examples]
    assert examples, f"{module_name} holds `>>>` but no docstring example doctest finds"
    if module_name in IN_FRESH_PROCESS:
        attempted = _run_in_fresh_process(module_name)
    else:
        result = doctest.testmod(module, optionflags=OPTIONS)
        assert result.failed == 0
        attempted = result.attempted
    if any(not example.options.get(doctest.SKIP) for example in examples):
        assert attempted > 0, f"{module_name} has no example that runs"
