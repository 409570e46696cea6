"""Kinds that move or pool values over the grid: zero padding, poolings, reshapes.

Example:

>>> from tflite_export.step_kinds import spatial
>>> [(kind.name, kind.layers) for kind in (spatial.AveragePool(), spatial.Reshape())]
[('avg_pool', ('AveragePooling2D',)), ('reshape', ('Flatten', 'Reshape'))]
"""

import keras
import tensorflow as tf

from tflite_export import layer_ops
from tflite_export.step_kinds.base import Example, StepKind, window_pads


class ZeroPad(StepKind):
    """`ZeroPadding2D` (channels last): `PAD`; its gradient, the crop."""

    name = "pad"
    layers = ("ZeroPadding2D",)

    def read(self, reading):
        reading.check_channels_last()
        (top, bottom), (left, right) = reading.layer.padding
        return {"pads": ((int(top), int(bottom)), (int(left), int(right)))}

    def forward(self, step, inputs, weights):
        return layer_ops.pad_nhwc(inputs[0], step.params["pads"])

    def input_grad(self, step, dy, kept, context):
        shape = context.shape(step.inputs[0])
        return layer_ops.crop_nhwc(dy, step.params["pads"], shape[1], shape[2])

    def examples(self):
        return (Example((5, 5, 3), keras.layers.ZeroPadding2D(((1, 0), (2, 1)))),)


class GlobalAveragePool(StepKind):
    """`GlobalAveragePooling2D` (channels last, keepdims or not)."""

    name = "gap"
    layers = ("GlobalAveragePooling2D",)

    def read(self, reading):
        reading.check_channels_last()
        return {"keepdims": bool(reading.layer.keepdims)}

    def forward(self, step, inputs, weights):
        return tf.reduce_mean(inputs[0], axis=[1, 2], keepdims=step.params["keepdims"])

    def input_grad(self, step, dy, kept, context):
        return layer_ops.gap_input_grad(dy, context.shape(step.inputs[0]))

    def examples(self):
        return (Example((5, 5, 3), keras.layers.GlobalAveragePooling2D()),
                Example((5, 5, 3), keras.layers.GlobalAveragePooling2D(keepdims=True)))


class _Pool(StepKind):
    """A pooling window over the grid (channels last, "valid"/"same")."""

    def read(self, reading):
        reading.check_channels_last()
        layer = reading.layer
        ph, pw = (int(p) for p in layer.pool_size)
        sh, sw = (int(s) for s in layer.strides)
        return {"pool_size": (ph, pw), "strides": (sh, sw), "padding": layer.padding,
                "pads": window_pads(layer.padding, reading.input_shape, (ph, pw), (sh, sw))}

    def forward(self, step, inputs, weights):
        params = step.params
        return layer_ops.pool_forward(inputs[0], self.name, params["pool_size"],
                                      params["strides"], params["padding"])


class AveragePool(_Pool):
    """`AveragePooling2D`: the gradient divided by each window's count of real
    elements, spread back by a transposed depthwise conv of ones."""

    name = "avg_pool"
    layers = ("AveragePooling2D",)

    def input_grad(self, step, dy, kept, context):
        params = step.params
        return layer_ops.avg_pool_input_grad(dy, context.shape(step.inputs[0]),
                                             params["pool_size"], params["strides"],
                                             params["pads"])

    def examples(self):
        return (Example((6, 6, 3), keras.layers.AveragePooling2D(2)),
                Example((7, 7, 3), keras.layers.AveragePooling2D(3, strides=2, padding="same")),
                Example((6, 6, 3), keras.layers.AveragePooling2D(3, strides=1, padding="same")))


class MaxPool(_Pool):
    """`MaxPooling2D`: each window's gradient to its first maximum (row-major),
    from the kept input and output."""

    name = "max_pool"
    layers = ("MaxPooling2D",)

    def saved_for_backward(self, step, requires_grad):
        return {"input": (step.inputs[0], 4), "output": (step.output, 4)}

    def input_grad(self, step, dy, kept, context):
        params = step.params
        return layer_ops.max_pool_input_grad(kept["input"], kept["output"], dy,
                                             params["pool_size"], params["strides"],
                                             params["pads"])

    def examples(self):
        return (Example((6, 6, 3), keras.layers.MaxPooling2D(2)),
                Example((7, 7, 3), keras.layers.MaxPooling2D(3, strides=2, padding="same")))


class Reshape(StepKind):
    """`Flatten` (channels last) and `Reshape`: `RESHAPE` both ways."""

    name = "reshape"
    layers = ("Flatten", "Reshape")
    rearranges = True

    def read(self, reading):
        if isinstance(reading.layer, keras.layers.Flatten):
            reading.check_channels_last()
        return {"shape": tuple(int(d) for d in reading.output_shape[1:])}

    def forward(self, step, inputs, weights):
        return tf.reshape(inputs[0], [-1, *step.params["shape"]])

    def input_grad(self, step, dy, kept, context):
        return tf.reshape(dy, context.shape(step.inputs[0]))

    def examples(self):
        return (Example((4, 4, 3), keras.layers.Flatten()),
                Example((4, 4, 3), keras.layers.Reshape((16, 3))))
