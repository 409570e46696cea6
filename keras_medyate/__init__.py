"""keras-medyate: memory-budgeted dynamic channel-subset fine-tuning for Keras 3.

Implements MeDyate (arXiv 2510.20979) and TraDy (arXiv 2510.19675): fine-tune
a pretrained CNN under a hard memory budget by training, each epoch, a small
resampled subset of the input channels of its conv/dense kernels.

Example:

```python
import keras
import keras_medyate as kmd

model = kmd.models.mcunet_5fps(classes=10)                 # a pretrained backbone
kmd.fit_classifier(model, train_ds)                        # head from a linear probe
ranking = kmd.rank_layers(model, proxy_ds, epochs=2)       # LaRa + RGN (or ranking="lara")
plan = kmd.plan(model, budget="110KB", ranking=ranking)    # search space + budget
trainer = kmd.SubnetworkModel(model, plan)                 # masked train_step
trainer.compile(optimizer=kmd.recommended_optimizer(len(train_ds), epochs=50),  # the recipe
                loss=..., metrics=[...])
resampler = kmd.ChannelResampler(plan, strategy="medyate", seed=0)
trainer.fit(train_ds, epochs=50, callbacks=[resampler])
```

Every name is loaded on first use (PEP 562): `import keras_medyate` imports
neither TensorFlow nor Keras, so that a program can call
`keras_medyate.console.quiet_tensorflow()` before TensorFlow starts. The
public surface is explicit: the core names of `__all__` (`kmd.plan`,
`kmd.SubnetworkModel`, ...), which come from their modules, and the public
submodules of `_SUBMODULES` (`kmd.models`, `kmd.data`, `kmd.comparison`,
`kmd.strategies`, ...). Other modules are internal (`_INTERNAL`) or programs:
`keras_medyate.demo` runs with `python -m keras_medyate.demo`.

Saved models load after a plain `import keras_medyate`: the package's Keras
classes (`kmd.models.BoundedReLU`, `kmd.SubnetworkModel`) are registered for
`keras.saving.load_model` the moment Keras itself is imported (or at once, if
it already is), so the import stays free of TensorFlow until Keras starts.
"""

import difflib
import importlib
import importlib.abc
import importlib.util
import sys
import warnings

from keras_medyate.version import __version__

#: Core names re-exported here, with the submodule each one comes from.
_EXPORTS = {
    "ChannelResampler": "resampler",
    "EpochSelection": "resampler",
    "LayerInfo": "inventory",
    "LayerRanking": "ranking",
    "Plan": "planning",
    "STRATEGIES": "strategies",
    "SubnetworkModel": "subnetwork_model",
    "fit_classifier": "linear_probe",
    "format_units": "memory",
    "parse_budget": "memory",
    "plan": "planning",
    "rank_layers": "ranking",
    "recommended_optimizer": "recipe",
}

#: The public submodules and subpackages, each an attribute loaded on first use
#: (`kmd.models`, `kmd.data`, ...). Every module of the package is listed here, in
#: `_PROGRAMS` or in `_INTERNAL` (`tests/test_public_api.py` checks that).
_SUBMODULES = frozenset({
    "channel_pool",
    "channels",
    "comparison",
    "console",
    "data",
    "divergence",
    "federated",
    "inventory",
    "kernel_gradients",
    "layer_kinds",
    "linear_probe",
    "memory",
    "models",
    "planning",
    "ranking",
    "recipe",
    "resampler",
    "selection",
    "strategies",
    "subnetwork_model",
    "walk",
})

#: Submodules that are programs (`python -m ...`), not attributes: importing
#: `demo` defines its absl command-line flags in the process-wide registry.
_PROGRAMS = frozenset({"demo"})

#: Plumbing of the package's own programs and files, importable by their full
#: name but not attributes: the command-line helpers, the cache paths, the version.
_INTERNAL = frozenset({"cli", "files", "version"})

__all__ = sorted(_EXPORTS) + ["__version__"]


#: The classes registered for `.keras` files (`@keras.saving.register_keras_serializable(
#: package="keras_medyate")`): registered name -> the module that defines it.
_KERAS_REGISTERED = {
    "keras_medyate>BoundedReLU": "keras_medyate.models.bounded_relu",
    "keras_medyate>SubnetworkModel": "keras_medyate.subnetwork_model",
}


class _LazyRegisteredClass:
    """Stands in Keras' custom-object registry for a class whose module is not
    imported yet; `from_config` (all Keras' deserializer calls) imports it.
    The module's own registration then replaces this stand-in."""

    def __init__(self, registered_name, module):
        self.registered_name = registered_name
        self.module = module

    def from_config(self, config):
        name = self.registered_name.split(">", 1)[1]
        return getattr(importlib.import_module(self.module), name).from_config(config)

    def __repr__(self):
        return f"<{self.registered_name}, imported from {self.module} on first use>"


def _register_with_keras():
    """Puts a stand-in for each class of `_KERAS_REGISTERED` in Keras' registry
    (a class already registered stays). Imports nothing of this package."""
    import keras

    registry = keras.saving.get_custom_objects()
    for registered_name, module in _KERAS_REGISTERED.items():
        registry.setdefault(registered_name, _LazyRegisteredClass(registered_name, module))


class _RegisterAfterKerasImport(importlib.abc.MetaPathFinder):
    """Runs `_register_with_keras` right after the `keras` package finishes importing.

    It finds nothing itself: on the first look-up of `keras` it removes itself,
    lets the other finders find Keras, and wraps that loader's `exec_module`.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            try:
                _register_with_keras()
            except Exception as error:  # never break `import keras` itself
                warnings.warn(
                    f"keras_medyate could not register its Keras classes ({error}); import "
                    "keras_medyate.models and keras_medyate.subnetwork_model before "
                    "keras.saving.load_model.", RuntimeWarning, stacklevel=2)

        loader.exec_module = exec_then_register
        return spec


def _install_keras_registration():
    keras_module = sys.modules.get("keras")
    if keras_module is None:
        if not any(isinstance(f, _RegisterAfterKerasImport) for f in sys.meta_path):
            sys.meta_path.insert(0, _RegisterAfterKerasImport())
    elif hasattr(keras_module, "saving"):
        _register_with_keras()


_install_keras_registration()


def __getattr__(name):
    """Imports a core name's module or a submodule the first time it is used."""
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        value = getattr(module, name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(_unknown_attribute_message(name))
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)


def _unknown_attribute_message(name):
    message = f"module {__name__!r} has no attribute {name!r}."
    if name in _PROGRAMS:
        return (f"{message} {__name__}.{name} is a program: run `python -m "
                f"{__name__}.{name}`, or `from {__name__} import {name}` to import it.")
    if name in _INTERNAL:
        return (f"{message} {__name__}.{name} is internal, not part of the public surface: "
                f"`import {__name__}.{name}` if you need it.")
    close = difflib.get_close_matches(name, list(_EXPORTS) + sorted(_SUBMODULES), n=3)
    if close:
        message += f" Did you mean {' or '.join(repr(c) for c in close)}?"
    return (f"{message} Public names: {', '.join(sorted(_EXPORTS))}; submodules: "
            f"{', '.join(sorted(_SUBMODULES))}.")
