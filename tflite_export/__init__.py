"""On-device (LiteRT) MeDyate fine-tuning: a builtin-only trainable `.tflite`.

`export_training_model` turns a Keras model and its `kmd.plan` into a LiteRT
model whose signatures run the whole method on the phone: `train` (one SGD
step on the selected input channels of the search space and the classifier,
accumulating per-channel gradient norms; it keeps and differentiates only the
selected channels, so its memory follows the budget: `memory_model`), `resample` (the MeDyate sampler
itself), `infer`, `set_mask`, and `get/set_weights`, `get/set_state` for
persistence. Only LiteRT builtin operators are used (no Flex).

`OnDeviceTrainer` drives such a file from Python through
`ai_edge_litert.interpreter.Interpreter`, exactly as the Android app does;
importing it does not import TensorFlow.

Example:

```python
import keras_medyate as kmd
from tflite_export import OnDeviceTrainer, export_training_model

plan = kmd.plan(model, budget=15936, ranking="lara")
export_training_model(model, plan, "medyate.tflite", batch_size=8, learning_rate=0.05)

trainer = OnDeviceTrainer("medyate.tflite", num_threads=2)
history = trainer.fit(train_batches, epochs=10, seed=0)   # resample + train, per epoch
probabilities = trainer.infer(images)
weights = trainer.get_weights()          # {"<layer>/kernel": ndarray, ...}
print(trainer.predicted_train_memory())  # bytes `train` keeps beyond `infer`
```

See `tflite_export/README.md` (signature contract, measurements) and
`tflite_export/ANDROID.md` (Kotlin).

Both need LiteRT's Python package, `ai_edge_litert` (the exporter reads the
flatbuffer schema from it): `pip install "keras-medyate[litert]"`.
"""

import importlib

__all__ = ["OnDeviceTrainer", "SliceUpdate", "export_training_model"]

#: The command that installs what this package needs beyond keras-medyate itself.
LITERT_INSTALL = 'pip install "keras-medyate[litert]"'

# Lazy: `OnDeviceTrainer` needs only numpy + ai_edge_litert (+ the numpy-only
# `keras_medyate.channel_pool.ChannelPool`), and the exporter pulls in
# TensorFlow; an app-side process imports only what it uses.
_EXPORTS = {"export_training_model": "exporter", "OnDeviceTrainer": "on_device",
            "SliceUpdate": "on_device"}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tflite_export' has no attribute {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] != "ai_edge_litert":
            raise
        raise ModuleNotFoundError(
            f"tflite_export.{name} needs LiteRT's Python package `ai_edge_litert`, which is "
            f"not installed. Install the litert extra: {LITERT_INSTALL}", name=error.name,
        ) from error
    return getattr(module, name)
