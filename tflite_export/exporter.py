"""`export_training_model`: Keras model + plan → builtin-only trainable `.tflite`.

Steps: check the arguments and that the plan belongs to the model; build the
`TrainingModule` (hand-written forward/backward, on-device sampler); save it
as a SavedModel in a temporary directory; convert it with
`supported_ops=[TFLITE_BUILTINS]` only; check the flatbuffer's operator codes
(no Flex, no custom op may remain); write the file atomically.

Example:

>>> import os, tempfile, keras
>>> import keras_medyate as kmd
>>> from tflite_export import export_training_model
>>> model = keras.Sequential([keras.Input((8, 8, 3)),
...     keras.layers.Conv2D(4, 3, name="c1"), keras.layers.GlobalAveragePooling2D(),
...     keras.layers.Dense(2, name="head")])
>>> plan = kmd.plan(model, budget=100)
>>> path = os.path.join(tempfile.mkdtemp(), "model.tflite")
>>> summary = export_training_model(model, plan, path, batch_size=2, learning_rate=0.1)
>>> [op for op in summary.operators if op.startswith("CUSTOM")]
[]
"""

import dataclasses
import math
import os
import re
import tempfile

import tensorflow as tf

from keras_medyate import console
from keras_medyate import planning
from keras_medyate.strategies import base as strategies_base
from tflite_export import flatbuffer
from tflite_export import optimizer as optimizer_lib
from tflite_export import sampler
from tflite_export import signatures as signatures_lib


@dataclasses.dataclass
class ExportSummary:
    """What `export_training_model` wrote.

    Attributes:
        path: str, the `.tflite` file.
        size_bytes: int, its size.
        operators: sorted list of the LiteRT builtin operators it uses.
        metadata: dict, the JSON the `metadata` signature returns.
        min_runtime_version: str, the oldest LiteRT/TFLite runtime the
            converter says can run the file.
    """

    path: str
    size_bytes: int
    operators: list
    metadata: dict
    min_runtime_version: str = None


def export_training_model(model, plan, path, batch_size=8, learning_rate=None,
                          epsilon=1e-3, fill="stop", infer_batch_size=None,
                          norm_statistic="mean", kernel_gradients="selected", optimizer=None,
                          static_shapes=True):
    """Writes a LiteRT model that fine-tunes `model` on the device with MeDyate.

    The file runs with builtin LiteRT operators only (no Flex/Select TF ops,
    no custom op) and has these signatures (full contract in
    `tflite_export/README.md`): `infer(x)`, `train(x, y)`, `resample(seed)`,
    `set_mask(mask)`, `get_weights(unused)`, `set_weights(...)`,
    `get_state(unused)`, `set_state(...)`, `set_learning_rate(learning_rate)`,
    `metadata(unused)`.

    `train` is one optimizer step on the mean sparse cross-entropy, updating
    the selected input channels of the plan's search-space kernels and the
    classifier's kernel and bias; biases of the search space and every other
    weight are constants. BatchNormalization layers always run in inference
    mode (frozen). The step is the Keras optimizer's (`optimizer=`, the same
    object `SubnetworkModel` is compiled with: SGD with momentum, Nesterov,
    clipnorm, global_clipnorm, clipvalue, weight decay, a constant or
    warm-up + cosine learning rate; `tflite_export.optimizer`), plain SGD at
    `learning_rate`, or, given neither, the recommended recipe
    (`keras_medyate.recipe`: SGD, clip 1, peak 0.05, one warm-up epoch then
    cosine decay, whose length `OnDeviceTrainer.fit` sets from its data).

    Args:
        model: a built functional or Sequential `keras.Model` (its current
            weights are the starting point). Supported layers: see
            `tflite_export.graph`.
        plan: the `Plan` made for `model` by `kmd.plan`.
        path: str, output file; must end with `.tflite`.
        batch_size: int, the static batch size of `train`. Static because a
            dynamic batch leaves `BroadcastGradientArgs` (Flex) in gradient
            code, and fixed shapes let LiteRT plan the memory once.
            Defaults to 8.
        learning_rate: float, plain SGD at this constant rate (no momentum,
            no clip; changeable on the device with `set_learning_rate`).
            Give `learning_rate` or `optimizer`, not both.
        epsilon: float in [0, 1), MeDyate's relative floor of the sampling
            weights. Defaults to 1e-3.
        fill: `"stop"`, the budget fill mode (the only one on the device).
        infer_batch_size: int, the static batch of `infer`, or None
            (default): 1 with `static_shapes`, else a dynamic batch
            (forward-only code has no broadcast-gradient op).
            `OnDeviceTrainer.infer` splits and pads any batch to it.
        norm_statistic: `"mean"`, the per-channel norm statistic the device
            accumulates (the only one on the device; `ChannelResampler`'s
            default).
        kernel_gradients: `"selected"` (default) or `"dense"`. Selected:
            `train` also takes, for every search-space layer, the int32 list
            of its selected input channels (`<layer>_channels`, any length;
            `OnDeviceTrainer` passes them from the current mask), keeps only
            those channels of the layer's input and computes only their
            kernel gradient, so its memory follows the budget. Dense: `train`
            takes `x` and `y` only, keeps every input of the search space and
            computes every channel's gradient (applied to the selected ones);
            its memory follows the search space. Measurements:
            `tflite_export/README.md`.
        optimizer: a `keras.optimizers.SGD` (fresh, or already used: its
            step and momentum buffers are carried over), reproduced on the
            device step for step; anything it cannot reproduce (Adam, EMA,
            gradient accumulation, another schedule) is refused with a
            message. Defaults to None: the recommended recipe when
            `learning_rate` is None too.
        static_shapes: bool. True (default): every signature has fixed input
            shapes, so runtimes and delegates that cannot resize inputs
            (LiteRT.js, CompiledModel without resizing, GPU/NPU planners) run
            the file: `train`'s channel lists have, per layer, as many slots
            as the budget admits channels of that layer, padded with -1
            (`OnDeviceTrainer` pads them), and `infer` takes
            `infer_batch_size` images (1 unless given). False: the lists'
            length is the selection's (dynamic; LiteRT re-plans its memory
            when it changes), and `infer`'s batch is dynamic unless
            `infer_batch_size` is given. Memory of both forms:
            `tflite_export/README.md`.

    With the same `seed`, `epsilon` and state, the file's `resample` selects
    exactly the channels `kmd.ChannelResampler(plan, kmd.strategies.MeDyate(epsilon=epsilon),
    seed=seed)` selects: both draw from
    `keras_medyate.strategies.random_stream`.

    Returns:
        An `ExportSummary`.

    Raises:
        ValueError: bad arguments, or a plan made for another model.
        tflite_export.graph.UnsupportedLayerError: a layer the builtin
            training graph does not implement (named with its class).
        tflite_export.flatbuffer.NonBuiltinOpsError: the conversion would
            need Flex or custom operators (named).
    """
    _check_arguments(model, plan, path, batch_size, learning_rate, epsilon, fill,
                     infer_batch_size, norm_statistic, kernel_gradients, optimizer)
    if optimizer is None and learning_rate is None:
        optimizer = optimizer_lib.OptimizerSpec.recommended()
    if not isinstance(static_shapes, bool):
        raise ValueError(f"`static_shapes` must be True or False, got {static_shapes!r}.")
    if static_shapes and infer_batch_size is None:
        infer_batch_size = 1
    module = signatures_lib.TrainingModule(model, plan, batch_size, infer_batch_size,
                                           learning_rate, epsilon, fill, kernel_gradients,
                                           optimizer=optimizer, static_shapes=static_shapes)
    data = _convert(module)
    source = os.path.basename(path)
    flatbuffer.check_builtin_only(data, source)
    operators = flatbuffer.operators(data, source)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".tflite.tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return ExportSummary(path=path, size_bytes=len(data), operators=operators,
                         metadata=module.meta,
                         min_runtime_version=flatbuffer.min_runtime_version(data))


#: The two forms of `train` (`export_training_model(kernel_gradients=...)`).
KERNEL_GRADIENTS = ("selected", "dense")


def _check_arguments(model, plan, path, batch_size, learning_rate, epsilon, fill,
                     infer_batch_size, norm_statistic="mean", kernel_gradients="selected",
                     optimizer=None):
    if not isinstance(plan, planning.Plan):
        raise ValueError(f"`plan` must be a `Plan` from `kmd.plan(...)`, got {type(plan).__name__}.")
    plan.check_model(model, purpose="export")
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).endswith(".tflite"):
        raise ValueError(f"`path` must be a file name ending with '.tflite', got {path!r}.")
    for name, value in (("batch_size", batch_size), ("infer_batch_size", infer_batch_size)):
        if value is None and name == "infer_batch_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if optimizer is not None and learning_rate is not None:
        raise ValueError(
            f"Pass `learning_rate` (plain SGD) or `optimizer`, not both; got "
            f"learning_rate={learning_rate!r} and {type(optimizer).__name__}. Set the rate in "
            "the optimizer (e.g. keras.optimizers.SGD(0.05, momentum=0.9)).")
    if learning_rate is not None and (
            isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float))
            or not math.isfinite(learning_rate) or learning_rate <= 0):
        raise ValueError(f"`learning_rate` must be a positive finite float, got {learning_rate!r}.")
    strategies_base.check_epsilon(epsilon)
    strategies_base.check_fill_mode(
        fill, (sampler.FILL_MODE,), where=" on the device",
        hint="The 'skip' fill is sequential and has no builtin-op form; export with "
             "fill='stop' (and train on the host with `ChannelResampler(..., fill='stop')` "
             "for the same selections).")
    if norm_statistic != sampler.NORM_STATISTIC:
        raise ValueError(
            f"`norm_statistic` must be {sampler.NORM_STATISTIC!r} on the device, got "
            f"{norm_statistic!r}: `train` accumulates the mean per-step channel norm only. "
            "Export with norm_statistic='mean' (and train on the host with "
            "`ChannelResampler(..., norm_statistic='mean')` for the same selections).")
    if kernel_gradients not in KERNEL_GRADIENTS:
        raise ValueError(f"`kernel_gradients` must be one of {KERNEL_GRADIENTS}, got "
                         f"{kernel_gradients!r}.")


def _convert(module):
    """SavedModel → `.tflite` bytes with builtin ops only; clear error otherwise."""
    functions = module.signatures()
    with tempfile.TemporaryDirectory(prefix="medyate_export_") as directory:
        tf.saved_model.save(module, directory, signatures=functions)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            directory, signature_keys=list(functions))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.allow_custom_ops = False
        converter.experimental_enable_resource_variables = True
        try:
            # The converter's C++ INFO/WARNING lines ("Reading SavedModel from ...").
            with console.quiet_native_logs():
                return converter.convert()
        except Exception as error:  # ConverterError and friends
            message = str(error)
            needed = _ops_after(message, "TF Select ops:") + _ops_after(message, "Custom ops:")
            if needed or "neither a custom op nor a flex op" in message:
                raise flatbuffer.NonBuiltinOpsError(
                    "The training graph needs operators that are not LiteRT builtins: "
                    f"{sorted(set(needed)) or 'see the converter message'}. This is a bug "
                    "of the builtin-only exporter for this model's layers; please report "
                    f"it with the model summary.\nConverter message (end):\n{message[-1500:]}"
                ) from error
            raise


def _ops_after(message, label):
    ops = []
    for line in message.splitlines():
        if line.strip().startswith(label):
            ops += [op.strip() for op in re.split(r"[,\s]+", line.split(label, 1)[1]) if op.strip()]
    return ops
