"""Kinds that combine tensors: `Add`, `Multiply`, `Concatenate` (layers, or the
`+`, `*` and `keras.ops.concatenate` of a functional graph).

A tensor read twice (`Add()([x, x])`) receives both gradients: the training
graph sums what `backward` yields per tensor.

Example:

>>> from tflite_export.step_kinds import combine
>>> combine.Concatenate().operations
('Concatenate',)
"""

import keras
import numpy as np
import tensorflow as tf

from tflite_export import layer_ops
from tflite_export.step_kinds.base import Example, StepKind, static_shape


def _check_broadcast(reading, equal):
    """Refuses tensors of different ranks (and, if `equal`, of different shapes)."""
    shapes = [reading.shapes[t] for t in reading.inputs]
    output = np.broadcast_shapes(*[static_shape(s) for s in shapes])
    for shape in shapes:
        if equal and static_shape(shape) != output:
            raise reading.error(f"adds tensors of shapes {shapes}; only equal shapes are "
                                "supported.")
        if len(shape) != len(output):
            raise reading.error(f"broadcasts tensors of different ranks {shapes}; give them one "
                                "rank (e.g. keepdims=True).")
    return {}


def _pointwise_branches(merge):
    """An example: `merge` of two 1×1 / 3×3 conv branches of one tensor."""
    def build(x):
        return merge([keras.layers.Conv2D(3, 1)(x),
                      keras.layers.Conv2D(3, 3, padding="same")(x)])
    return build


class Add(StepKind):
    """`Add` of tensors of one shape (`ADD`); each input gets the output gradient."""

    name = "add"
    layers = ("Add",)
    operations = ("Add",)

    def read(self, reading):
        return _check_broadcast(reading, equal=True)

    def read_operation(self, reading):
        return self.read(reading) if len(reading.inputs) == 2 else None

    def forward(self, step, inputs, weights):
        total = inputs[0]
        for other in inputs[1:]:
            total = total + other
        return total

    def backward(self, step, dy, kept, context):
        for tensor in step.inputs:
            if context.wants(tensor):
                yield tensor, dy

    def examples(self):
        return (Example((5, 5, 3), _pointwise_branches(keras.layers.Add())),
                Example((5, 5, 3), lambda x: x + keras.layers.Conv2D(3, 1)(x)))


class Multiply(StepKind):
    """`Multiply` of two tensors, one possibly broadcast (squeeze-and-excitation
    gating): each input's gradient is `dY · other`, summed over its broadcast axes."""

    name = "multiply"
    layers = ("Multiply",)
    operations = ("Multiply",)

    def read(self, reading):
        if len(reading.inputs) != 2:
            raise reading.error(f"multiplies {len(reading.inputs)} tensors; only two are "
                                "supported. Chain two-input Multiply layers instead.")
        return _check_broadcast(reading, equal=False)

    def read_operation(self, reading):
        return self.read(reading) if len(reading.inputs) == 2 else None

    def forward(self, step, inputs, weights):
        return inputs[0] * inputs[1]

    def saved_for_backward(self, step, requires_grad):
        # The operand the gradient of input i is multiplied by, if i needs one.
        return {f"other{i}": (step.inputs[1 - i], 4) for i in range(2)
                if step.inputs[i] in requires_grad}

    def backward(self, step, dy, kept, context):
        for i, tensor in enumerate(step.inputs):
            if context.wants(tensor):
                yield tensor, layer_ops.multiply_input_grad(dy, kept[f"other{i}"],
                                                            context.shape(tensor))

    def examples(self):
        return (
            Example((5, 5, 3), lambda x: keras.layers.Multiply()(
                [x, keras.layers.GlobalAveragePooling2D(keepdims=True)(x)])),
            Example((5, 5, 3), _pointwise_branches(keras.layers.Multiply())),
            Example((5, 5, 3), lambda x: keras.layers.Conv2D(3, 1)(x) * x),
        )


class Concatenate(StepKind):
    """`Concatenate` of tensors of one rank along any axis but the batch
    (`CONCATENATION`); each input's gradient is its slice of the output gradient."""

    name = "concatenate"
    layers = ("Concatenate",)
    operations = ("Concatenate",)

    def read(self, reading):
        shapes = [reading.shapes[t] for t in reading.inputs]
        if len({len(shape) for shape in shapes}) != 1:
            raise reading.error(f"concatenates tensors of different ranks {shapes}; give them "
                                "one rank.")
        axis = int(reading.layer.axis) % len(shapes[0])
        if axis == 0:
            raise reading.error("concatenates along the batch axis; only the other axes are "
                                "supported.")
        return {"axis": axis, "sizes": tuple(int(shape[axis]) for shape in shapes)}

    def read_operation(self, reading):
        return self.read(reading)

    def forward(self, step, inputs, weights):
        return tf.concat(inputs, axis=step.params["axis"])

    def backward(self, step, dy, kept, context):
        axis, offset = step.params["axis"], 0
        for tensor, size in zip(step.inputs, step.params["sizes"]):
            if context.wants(tensor):
                begin = [0] * len(dy.shape)
                begin[axis] = offset
                extent = [int(d) for d in dy.shape]
                extent[axis] = size
                yield tensor, tf.slice(dy, begin, extent)
            offset += size

    def examples(self):
        return (
            Example((5, 5, 3), lambda x: keras.layers.Concatenate()(
                [keras.layers.Conv2D(2, 1)(x), keras.layers.Conv2D(4, 3, padding="same")(x)])),
            # DenseNet-style: the input is concatenated and read by a branch.
            Example((5, 5, 3), lambda x: keras.layers.Concatenate()(
                [x, keras.layers.Conv2D(2, 3, padding="same")(x)])),
            Example((5, 5, 3), lambda x: keras.layers.Concatenate(axis=1)(
                [x, keras.layers.Rescaling(2.0)(x), keras.layers.Conv2D(3, 1)(x)])),
            Example((6,), lambda x: keras.ops.concatenate([keras.layers.Dense(3)(x), x], axis=-1)),
        )
