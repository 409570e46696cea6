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
trainer.compile(optimizer=keras.optimizers.SGD(0.05, clipnorm=1.0), loss=..., metrics=[...])
resampler = kmd.ChannelResampler(plan, strategy="medyate", seed=0)
trainer.fit(train_ds, epochs=50, callbacks=[resampler])
```

Every name is loaded on first use (PEP 562): `import keras_medyate` imports
neither TensorFlow nor Keras, so that a program can call
`keras_medyate.console.quiet_tensorflow()` before TensorFlow starts. The core
names (`kmd.plan`, `kmd.SubnetworkModel`, ...) come from their modules, and
every public submodule is an attribute (`kmd.models`, `kmd.data`,
`kmd.comparison`, `kmd.strategies`, ...). `keras_medyate.demo` is a program:
run it with `python -m keras_medyate.demo`.

To load a saved `SubnetworkModel` with `keras.models.load_model`, touch
`kmd.SubnetworkModel` (or import `keras_medyate.subnetwork_model`) first: its
Keras registration runs when its module is imported.
"""

import difflib
import importlib
import pkgutil

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
}

#: Submodules that are programs (`python -m ...`), not attributes: importing
#: `demo` defines its absl command-line flags in the process-wide registry.
_PROGRAMS = frozenset({"demo"})

#: Every public submodule and subpackage found next to this file.
_SUBMODULES = frozenset(
    info.name for info in pkgutil.iter_modules(__path__)
    if not info.name.startswith("_") and info.name not in _PROGRAMS
)

__all__ = sorted(_EXPORTS) + ["__version__"]


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
    close = difflib.get_close_matches(name, list(_EXPORTS) + sorted(_SUBMODULES), n=3)
    if close:
        message += f" Did you mean {' or '.join(repr(c) for c in close)}?"
    return (f"{message} Public names: {', '.join(sorted(_EXPORTS))}; submodules: "
            f"{', '.join(sorted(_SUBMODULES))}.")
