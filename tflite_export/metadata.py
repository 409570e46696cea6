"""The JSON description embedded in every exported model (`metadata` signature).

The `metadata(unused)` signature returns the UTF-8 bytes of this JSON as a
`uint8[N]` tensor, so an app (or `OnDeviceTrainer`) learns from the file alone
the layer names, the channel pool layout, the batch sizes and the names of the
`get_weights`/`set_weights`/`get_state`/`set_state` tensors.

Tensor names are signature argument names, so they only use `[A-Za-z0-9_]`:
the weight `"<layer>/kernel"` travels as `"<layer>_kernel"` (other characters
of nested-model names become `_`); `weights[i]["key"]` gives the Keras name.

Example:

>>> from tflite_export import metadata
>>> metadata.tensor_name("backbone/conv1/kernel")
'backbone_conv1_kernel'
"""

import json
import re

import numpy as np

FORMAT = "keras_medyate.tflite_export"
#: 2: `train` takes the selected channels of every layer (`train_channel_inputs`).
#: 3: the Keras optimizer on the device (`optimizer`; its step, schedule and
#: momentum buffers in the state; `set_schedule`).
FORMAT_VERSION = 3
#: Signatures every exported model has (names are part of the contract).
SIGNATURES = ("infer", "train", "resample", "set_mask", "get_weights", "set_weights",
              "get_state", "set_state", "set_learning_rate", "set_schedule", "metadata")
#: Signatures added after format version 2 (older files lack them).
SIGNATURES_SINCE = {"set_schedule": 3}
#: Sampler state tensors, with their dtype, in `get_state`/`set_state` order.
STATE_TENSORS = (
    ("mask", "float32", "pool"),
    ("memory", "float32", "pool"),
    ("measured", "float32", "pool"),
    ("seen", "float32", "pool"),
    ("norm_sum", "float32", "pool"),
    ("norm_steps", "float32", "scalar"),
    ("epoch", "int32", "scalar"),
    ("max_filled", "float32", "scalar"),
)
#: Optimizer state tensors every file of format >= 3 has, after the sampler's;
#: the momentum buffers (`"<weight tensor>_momentum"`) follow when momentum > 0.
OPTIMIZER_STATE_TENSORS = (
    ("step", "int32", [1]),
    ("learning_rate_schedule", "float32", [5]),
)


#: The oldest runtimes found to train the default export correctly (replayed call for
#: call against ai-edge-litert 2.3: benchmarks/runtimes/README.md).
MIN_RUNTIME = {
    "interpreter": "ai-edge-litert 1.0.0 or tflite-runtime / TensorFlow Lite 2.13.0",
    "compiled_model": "ai-edge-litert 2.2.0 (LiteRT 2.x CompiledModel)",
    "web": "@litertjs/core 2.5.3 (static shapes only)",
}


class MetadataError(ValueError):
    """The model file holds no (or an incompatible) keras-medyate description."""


def tensor_name(key):
    """The signature tensor name of a weight key (`"a/b/kernel"` → `"a_b_kernel"`)."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", key)
    return name if not name[:1].isdigit() else f"t_{name}"


def channel_input_names(layer_names):
    """The `train` input names listing each layer's selected channels."""
    return [tensor_name(f"{name}/channels") for name in layer_names]


def momentum_name(key):
    """The state tensor name of a weight's momentum buffer."""
    return tensor_name(f"{key}/momentum")


def optimizer_state(weight_shapes, momentum):
    """(name, dtype, shape) of the optimizer's state tensors, in `get_state` order.

    Args:
        weight_shapes: list of (key, shape, ...) of the trained weights.
        momentum: bool, whether the optimizer keeps momentum buffers.
    """
    tensors = [(name, dtype, list(shape)) for name, dtype, shape in OPTIMIZER_STATE_TENSORS]
    if momentum:
        tensors += [(momentum_name(key), "float32", [int(d) for d in shape])
                    for key, shape, *_ in weight_shapes]
    return tensors


def build(*, model_name, input_shape, num_classes, output_softmax, batch_size,
          infer_batch_size, learning_rate, epsilon, fill, plan, weight_shapes,
          version, kernel_gradients="selected", memory=None, optimizer=None,
          optimizer_tensors=(), capacities=None):
    """The metadata dict of one export (see the module docstring).

    Args:
        weight_shapes: list of (key, shape, channel_axis or None) in signature order.
        plan: the `Plan`; its pool gives the channel layout.
        optimizer: dict, `OptimizerSpec.to_config()`.
        optimizer_tensors: list of (name, dtype, shape) from `optimizer_state`.
        capacities: list of int per pool layer (static channel lists) or None.
        Others: as in `export_training_model`.
    """
    pool = plan.pool
    weights = []
    names = set()
    for key, shape, channel_axis in weight_shapes:
        name = tensor_name(key)
        if name in names:
            raise ValueError(
                f"Two weights map to the same tensor name {name!r}; rename the layers so "
                "that their names differ in letters, digits or underscores."
            )
        names.add(name)
        weights.append({"key": key, "tensor": name, "shape": [int(d) for d in shape],
                        "channel_axis": channel_axis})
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "keras_medyate_version": version,
        "model_name": model_name,
        "input_shape": [int(d) for d in input_shape],
        "num_classes": int(num_classes),
        "output": "softmax" if output_softmax else "logits",
        "batch_size": int(batch_size),
        "infer_batch_size": None if infer_batch_size is None else int(infer_batch_size),
        "learning_rate": float(learning_rate),
        "strategy": "medyate",
        "epsilon": float(epsilon),
        "fill": fill,
        "budget_units": int(plan.budget_units),
        "bytes_per_element": int(plan.bytes_per_element),
        "classifier": plan.classifier,
        "pool": pool.to_config(),
        "weights": weights,
        "state": [{"tensor": name, "dtype": dtype,
                   "shape": [int(pool.size)] if kind == "pool" else [1]}
                  for name, dtype, kind in STATE_TENSORS]
                 + [{"tensor": name, "dtype": dtype, "shape": list(shape)}
                    for name, dtype, shape in optimizer_tensors],
        "optimizer": optimizer,
        "min_runtime": dict(MIN_RUNTIME),
        "signatures": list(SIGNATURES),
        "kernel_gradients": kernel_gradients,
        "memory_model": memory,
        "train_channel_inputs": (
            [{"layer": name, "tensor": tensor,
              "capacity": None if capacities is None else int(capacity)}
             for name, tensor, capacity in zip(
                 pool.layer_names, channel_input_names(pool.layer_names),
                 capacities or [None] * len(pool.layer_names))]
            if kernel_gradients == "selected" else []),
        "static_shapes": infer_batch_size is not None and (
            kernel_gradients == "dense" or capacities is not None),
    }


def encode(meta):
    """The uint8 array the `metadata` signature returns."""
    return np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), np.uint8)


def decode(data, source="the model"):
    """Parses and checks the bytes returned by the `metadata` signature.

    Raises:
        MetadataError: not keras-medyate metadata, or a newer format version.
    """
    try:
        meta = json.loads(bytes(np.asarray(data, np.uint8)).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MetadataError(f"The `metadata` signature of {source} does not return JSON "
                            f"({error}). Was it exported by `export_training_model`?") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise MetadataError(
            f"{source} was not exported by `tflite_export.export_training_model` (metadata "
            f"format {meta.get('format') if isinstance(meta, dict) else None!r}, expected "
            f"{FORMAT!r})."
        )
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise MetadataError(
            f"{source} uses metadata format version {meta['format_version']}, newer than "
            f"this keras-medyate ({FORMAT_VERSION}); upgrade keras-medyate."
        )
    return meta
