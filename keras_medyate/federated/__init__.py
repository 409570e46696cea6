"""Federated fine-tuning across phones on Flower, uploading only the trained slices.

Each simulated phone trains the exported LiteRT file (`tflite_export`) with
`OnDeviceTrainer` on data that stays on it, MeDyate resampling a budgeted
set of input channels every epoch, and uploads only the slices it trained
since the last sync, plus the head (`OnDeviceTrainer.get_update`): a few
tens of KB for MCUNet at the papers' smallest budget, against 1.80 MB for
the whole model. The server (`SliceFedAvg`, a Flower `FedAvg`) averages each
slice over the clients that trained it, weighted by their examples; a slice
nobody trained keeps its value. Flower's simulation engine runs the clients
on this machine; the clients never import TensorFlow.

The command line (`python -m keras_medyate.federated --help`) prepares the
data, the starting head and the exported file, runs the rounds, and writes
`rounds.csv` and a plot; an interrupted run resumes.

Modules: `partition` (IID / Dirichlet by label), `records` (updates as
Flower `ArrayRecord`s), `client` (the `ClientApp`), `strategy`
(`SliceFedAvg`), `prepare` (data, head, export: TensorFlow), `simulation`
(the rounds on Flower's engine, resume), `results` (CSV and plot),
`no_tensorflow` (keeps TensorFlow out of the client processes).

Attributes are loaded lazily: `import keras_medyate.federated` imports
neither TensorFlow nor Flower.

Example:

```python
from keras_medyate import federated

settings = federated.Settings(dataset="cifar10", clients=4, rounds=3,
                              partition="dirichlet:0.5", train_per_class=60)
rows = federated.run(settings, "federated_run")   # [{"round": 0, ...}, ...]
print(rows[-1]["test_accuracy"], rows[-1]["mean_upload_bytes"])
```
"""

import importlib

_EXPORTS = {
    "SliceFedAvg": "strategy",
    "average_slices": "strategy",
    "make_client_app": "client",
    "Settings": "settings",
    "run": "simulation",
}
_MODULES = ("client", "no_tensorflow", "partition", "prepare", "records", "results",
            "settings", "simulation", "strategy")

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_MODULES))
