"""The per-channel affine map `x * scale + shift`: frozen `BatchNormalization`,
`Rescaling`, `Normalization`, and a functional graph's arithmetic with a constant.

Example:

>>> import keras
>>> from tflite_export.step_kinds import affine, base
>>> reading = base.Reading(keras.layers.Rescaling(0.5, offset=1.0), "rescale", (0,),
...                        {0: (None, 4, 4, 3)})
>>> params = affine.Affine().read(reading)
>>> float(params["scale"]), float(params["shift"])
(0.5, 1.0)
"""

import keras
import numpy as np
import tensorflow as tf

from tflite_export.step_kinds.base import (
    Example,
    StepKind,
    UnsupportedLayerError,
    constant,
    static_shape,
)


class Affine(StepKind):
    """`x * scale + shift` (`MUL`, `ADD`); either may be absent (None)."""

    name = "affine"
    layers = ("BatchNormalization", "Rescaling", "Normalization")
    operations = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide")
    notes = {"BatchNormalization": "frozen"}

    def read(self, reading):
        layer = reading.layer
        if isinstance(layer, keras.layers.Rescaling):
            return {"scale": constant(layer.scale), "shift": constant(layer.offset)}
        if isinstance(layer, keras.layers.Normalization):
            return _normalization(reading)
        return _batchnorm(reading)

    def read_operation(self, reading):
        """A tensor and a constant: `x + c`, `x - c`, `c - x`, `x * c`, `x / c`."""
        name, cls, arguments = reading.name, reading.cls, reading.arguments
        constants = [a for a in arguments if not isinstance(a, tuple)]
        if len(reading.inputs) != 1 or len(arguments) != 2 or len(constants) != 1:
            return None
        value = np.asarray(constants[0], np.float32)
        shape = static_shape(reading.input_shape)
        if value.ndim > len(shape) or np.broadcast_shapes(shape, value.shape) != shape:
            raise UnsupportedLayerError(
                f"Operation {name!r} ({cls}) combines a tensor of shape {reading.input_shape} "
                f"with a constant of shape {value.shape} that enlarges it; only constants that "
                "broadcast to the tensor's shape (scalars, per-channel vectors) are supported.")
        tensor_first = isinstance(arguments[0], tuple)
        if cls == "Add":
            return {"scale": None, "shift": value}
        if cls == "Multiply":
            return {"scale": value, "shift": None}
        if cls == "Subtract":
            if tensor_first:
                return {"scale": None, "shift": -value}
            return {"scale": np.float32(-1.0), "shift": value}
        if not tensor_first:
            raise UnsupportedLayerError(
                f"Operation {name!r} divides a constant by a tensor; only a tensor divided by "
                "a constant is supported.")
        return {"scale": np.float32(1.0) / value, "shift": None}

    def forward(self, step, inputs, weights):
        x = inputs[0]
        if step.params["scale"] is not None:
            x = x * tf.constant(step.params["scale"])
        if step.params["shift"] is not None:
            x = x + tf.constant(step.params["shift"])
        return x

    def input_grad(self, step, dy, kept, context):
        scale = step.params["scale"]
        return dy if scale is None else dy * tf.constant(scale)

    def examples(self):
        uniform = keras.initializers.RandomUniform
        return (
            Example((5, 5, 3), keras.layers.BatchNormalization(
                gamma_initializer=uniform(0.5, 2.0), beta_initializer="random_normal",
                moving_mean_initializer="random_normal",
                moving_variance_initializer=uniform(0.5, 2.0))),
            Example((5, 5, 3), keras.layers.Rescaling(0.5, offset=-1.0)),
            Example((5, 5, 3), keras.layers.Normalization(mean=[0.1, -0.2, 0.3],
                                                          variance=[0.5, 1.5, 2.0])),
            Example((5, 5, 3), keras.layers.Normalization(mean=[0.1, -0.2, 0.3],
                                                          variance=[0.5, 1.5, 2.0], invert=True)),
            Example((5, 5, 3), lambda x: (3.0 - (x + 3.0) * (1.0 / 6.0)) / 2.0 - 1.0),
        )


def _normalization(reading):
    layer = reading.layer
    axis = tuple(layer.axis) if isinstance(layer.axis, (list, tuple)) else (layer.axis,)
    if axis != (-1,):
        raise UnsupportedLayerError(
            f"Layer {reading.name!r} (Normalization) normalizes over axis {layer.axis}; only "
            "the last (channels) axis is supported.")
    mean, variance = constant(layer.mean), constant(layer.variance)
    std = np.maximum(np.sqrt(variance), np.float32(keras.backend.epsilon()))
    if layer.invert:
        return {"scale": std, "shift": mean}
    return {"scale": np.float32(1.0) / std, "shift": -mean / std}


def _batchnorm(reading):
    layer = reading.layer
    axis = layer.axis if isinstance(layer.axis, int) else list(layer.axis)
    rank = len(reading.input_shape)
    if isinstance(axis, list):
        axis = axis[0] if len(axis) == 1 else None
    if axis is None or axis % rank != rank - 1:
        raise UnsupportedLayerError(
            f"Layer {reading.name!r} (BatchNormalization) normalizes axis {layer.axis}; only "
            "the last (channels) axis is supported.")

    def value(variable):
        return np.asarray(keras.ops.convert_to_numpy(variable), np.float64)

    mean, variance = value(layer.moving_mean), value(layer.moving_variance)
    gamma = value(layer.gamma) if layer.scale else np.ones_like(mean)
    beta = value(layer.beta) if layer.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + float(layer.epsilon))
    shift = beta - mean * scale
    return {"scale": scale.astype(np.float32), "shift": shift.astype(np.float32)}
