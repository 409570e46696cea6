"""The `>>>` examples in the core modules' docstrings run and are right."""

import doctest
import importlib

import pytest

MODULES = [
    "keras_medyate.memory",
    "keras_medyate.channels",
    "keras_medyate.walk",
    "keras_medyate.inventory",
    "keras_medyate.ranking",
    "keras_medyate.planning",
    "keras_medyate.strategies.medyate",
    "keras_medyate.kernel_gradients",
    "keras_medyate.models.bounded_relu",
    "keras_medyate.subnetwork_model",
    "keras_medyate.resampler",
    "keras_medyate.files",
    "keras_medyate.linear_probe",
    "keras_medyate.divergence",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module_name} has no example"
    assert result.failed == 0
