"""Activation kinds: ReLU, LeakyReLU, the smooth/hard activations, identity, softmax.

Each kind reads its Keras layer class and the activation functions it
computes (`functions`): an `Activation(...)` layer, or a conv's or Dense's
`activation=`, becomes a step of the kind listing the function.

Example:

>>> from tflite_export.step_kinds import activations
>>> activations.LeakyRelu().read_function("leaky_relu")
{'negative_slope': 0.2}
"""

import inspect

import keras
import tensorflow as tf

from tflite_export import layer_ops
from tflite_export.step_kinds.base import Example, StepKind


def _one_by_one(activation):
    """An example: a 1×1 conv with a fused `activation=`."""
    return lambda x: keras.layers.Conv2D(4, 1, activation=activation)(x)


class Relu(StepKind):
    """`ReLU` (no negative slope or threshold; `max_value` any), `relu`, `relu6`:
    the backward reads a bool mask `0 < y < max` of the output."""

    name = "relu"
    layers = ("ReLU",)
    functions = ("relu", "relu6")
    saves_part = "relu_mask_bytes"

    def read(self, reading):
        layer = reading.layer
        if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
            raise reading.error(
                f"has negative_slope={float(layer.negative_slope)} and "
                f"threshold={float(layer.threshold)}; only the plain (clipped) ReLU is "
                "supported (a LeakyReLU layer is).")
        return {"max_value": None if layer.max_value is None else float(layer.max_value)}

    def read_function(self, function):
        return {"max_value": 6.0 if function == "relu6" else None}

    def forward(self, step, inputs, weights):
        return layer_ops.relu_forward(inputs[0], step.params["max_value"])

    def saved_for_backward(self, step, requires_grad):
        return {"mask": (step.output, 1)}

    def record(self, step, values, requires_grad):
        return {"mask": layer_ops.relu_mask(values[step.output], step.params["max_value"])}

    def input_grad(self, step, dy, kept, context):
        return tf.where(kept["mask"], dy, tf.zeros_like(dy))

    def examples(self):
        return (Example((5, 5, 3), keras.layers.ReLU()),
                Example((5, 5, 3), keras.layers.ReLU(max_value=0.5)),
                Example((5, 5, 3), keras.layers.Activation("relu6")),
                Example((5, 5, 3), _one_by_one("relu")))


class LeakyRelu(StepKind):
    """`LeakyReLU` and `leaky_relu` (`LEAKY_RELU`): the gradient is `dy` where the
    input is positive, `negative_slope · dy` elsewhere, from a bool mask of the
    output (`y > 0` exactly where `x > 0`: Keras refuses a negative slope)."""

    name = "leaky_relu"
    layers = ("LeakyReLU",)
    functions = ("leaky_relu",)
    saves_part = "relu_mask_bytes"

    def read(self, reading):
        return {"negative_slope": float(reading.layer.negative_slope)}

    def read_function(self, function):
        default = inspect.signature(keras.activations.leaky_relu).parameters["negative_slope"]
        return {"negative_slope": float(default.default)}

    def forward(self, step, inputs, weights):
        return tf.nn.leaky_relu(inputs[0], alpha=step.params["negative_slope"])

    def saved_for_backward(self, step, requires_grad):
        return {"mask": (step.output, 1)}

    def record(self, step, values, requires_grad):
        return {"mask": tf.greater(values[step.output], 0.0)}

    def input_grad(self, step, dy, kept, context):
        slope = tf.constant(step.params["negative_slope"], dy.dtype)
        return tf.where(kept["mask"], dy, dy * slope)

    def examples(self):
        return (Example((5, 5, 3), keras.layers.LeakyReLU(0.1)),
                Example((5, 5, 3), keras.layers.LeakyReLU(0.0)),
                Example((5, 5, 3), keras.layers.Activation("leaky_relu")),
                Example((5, 5, 3), _one_by_one("leaky_relu")))


class Activation(StepKind):
    """The activations of `layer_ops.ACTIVATION_FUNCTIONS` (hard-sigmoid,
    hard-swish, sigmoid, swish): the backward reads a mask of the input, the
    input or the output (`layer_ops.ACTIVATION_SAVES`)."""

    name = "activation"
    functions = tuple(layer_ops.ACTIVATION_FUNCTIONS)

    def read_function(self, function):
        return {"function": function}

    def forward(self, step, inputs, weights):
        return layer_ops.activation_forward(inputs[0], step.params["function"])

    def saved_for_backward(self, step, requires_grad):
        saves = layer_ops.ACTIVATION_SAVES[step.params["function"]]
        tensor = step.output if saves == "output" else step.inputs[0]
        return {"saved": (tensor, 1 if saves == "input_mask" else 4)}

    def record(self, step, values, requires_grad):
        return {"saved": layer_ops.activation_saved(values[step.inputs[0]], values[step.output],
                                                    step.params["function"])}

    def input_grad(self, step, dy, kept, context):
        return layer_ops.activation_input_grad(dy, kept["saved"], step.params["function"])

    def examples(self):
        return (*[Example((5, 5, 3), keras.layers.Activation(function))
                  for function in self.functions],
                Example((5, 5, 3), _one_by_one("hard_sigmoid")))


class Identity(StepKind):
    """`Dropout` (its inference behaviour) and `Activation("linear")`."""

    name = "identity"
    layers = ("Dropout",)
    functions = ("linear",)
    rearranges = True

    def forward(self, step, inputs, weights):
        return inputs[0]

    def input_grad(self, step, dy, kept, context):
        return dy

    def examples(self):
        return (Example((5, 5, 3), keras.layers.Dropout(0.5)),
                Example((5, 5, 3), keras.layers.Activation("linear")))


class Softmax(StepKind):
    """A final `Softmax` (last axis) or `softmax` activation: the model outputs
    probabilities and the loss is computed on its input, the logits."""

    name = "softmax"
    layers = ("Softmax",)
    functions = ("softmax",)
    final = True
    notes = {"Softmax": "last"}

    def read(self, reading):
        layer = reading.layer
        axis = layer.axis if isinstance(layer.axis, int) else tuple(layer.axis)
        if axis not in (-1, len(reading.input_shape) - 1, (-1,)):
            raise reading.error(f"normalizes over axis {layer.axis}; only the last axis is "
                                "supported.")
        return {}

    def forward(self, step, inputs, weights):
        return tf.nn.softmax(inputs[0])

    def examples(self):
        return (Example((3,), keras.layers.Softmax()),
                Example((3,), keras.layers.Activation("softmax")))
