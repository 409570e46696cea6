"""The `StepKind` base class, what its methods are given, and the reading helpers.

A kind's methods see a step of the graph (`graph.Step`: its kind, input and
output tensor ids, layer and `params`) and:

- when reading a Keras layer, a `Reading` (the layer, its name, the ids and
  static shapes of its inputs, the output shape, the call's arguments);
- in the forward pass, the input tensors and the weights (`WeightSource.read()`);
- in the backward pass, the output gradient, what the forward pass recorded
  for it, and a `Backward` (static shapes with the batch, which tensors need a
  gradient, the weights).

Example:

>>> from tflite_export.step_kinds import base
>>> base.window_pads("same", (None, 7, 7, 3), (3, 3), (2, 2))
((1, 1), (1, 1))
"""

import dataclasses

import keras
import numpy as np


class UnsupportedLayerError(ValueError):
    """A layer (or layer option) the builtin-only training graph cannot express."""


@dataclasses.dataclass(frozen=True)
class Reading:
    """One Keras layer call (or `keras.ops` operation) as a kind reads it.

    Attributes:
        layer: the Keras layer or operation.
        name: str, its name in the flattened graph (`"outer/inner"`).
        inputs: tuple of int, the ids of the tensors it reads.
        shapes: dict tensor id → static shape (batch dimension None).
        arguments: tuple, the call's positional arguments, tensors replaced
            by their walk keys (`walk.LayerCall.arguments`).
        output_shape: tuple, the static shape of its output.
    """

    layer: object
    name: str
    inputs: tuple
    shapes: dict
    arguments: tuple = ()
    output_shape: tuple = None

    @property
    def cls(self):
        """str, the class name of the layer."""
        return type(self.layer).__name__

    @property
    def input_shape(self):
        """The shape of the first input (None without inputs)."""
        return self.shapes[self.inputs[0]] if self.inputs else None

    def error(self, text):
        """An `UnsupportedLayerError` reading "Layer 'name' (Class) <text>"."""
        return UnsupportedLayerError(f"Layer {self.name!r} ({self.cls}) {text}")

    def check_channels_last(self):
        """Refuses a layer whose `data_format` is not channels-last."""
        fmt = getattr(self.layer, "data_format", "channels_last")
        if fmt != "channels_last":
            raise self.error(f"uses data_format={fmt!r}; only 'channels_last' (NHWC, the "
                             "LiteRT layout) is supported.")

    def check_regularizers(self):
        """Refuses a layer with a regularizer (the device's loss is the plain cross-entropy)."""
        for attribute in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
            if getattr(self.layer, attribute, None) is not None:
                raise self.error(f"has a {attribute}; the on-device loss is the plain "
                                 "cross-entropy. Remove the regularizer before exporting.")


@dataclasses.dataclass(frozen=True)
class Backward:
    """What a step's backward pass reads besides its output gradient and its records.

    Attributes:
        shapes: dict tensor id → static shape (batch dimension None).
        batch: int, the static batch of the pass.
        requires_grad: set of the tensor ids that need a gradient.
        weights: dict `"<layer>/kernel"` / `"<layer>/bias"` → tensor.
    """

    shapes: dict
    batch: int
    requires_grad: set
    weights: dict

    def shape(self, tensor):
        """The static shape of `tensor`, batch included."""
        return (self.batch, *[int(d) for d in self.shapes[tensor][1:]])

    def wants(self, tensor):
        """True if `tensor` needs a gradient."""
        return tensor in self.requires_grad


@dataclasses.dataclass(frozen=True)
class Example:
    """A Keras call a kind reads, for the generic autodiff test (`tests/test_step_kinds.py`).

    Attributes:
        input_shape: tuple, the shape (no batch) of the tensor `build` is called on.
        build: callable, Keras tensor → Keras tensor, the layer(s) of the kind.
    """

    input_shape: tuple
    build: object


class StepKind:
    """One kind of step of the on-device training graph.

    A subclass sets the class attributes and overrides what its kind needs;
    one instance is registered in `step_kinds.KINDS`.

    Attributes:
        name: str, the `Step.kind` of its steps.
        layers: tuple of str, the `keras.layers` classes it reads (a layer is
            read by the kind of the most specific class in its MRO).
        functions: tuple of str, the activation functions it computes (an
            `Activation` layer, a conv's or Dense's `activation=`).
        operations: tuple of str, the `keras.ops` operation classes it may
            read in a functional graph (`read_operation` decides).
        trains: bool, its kernel can be trained (a `layer_kinds` kind).
        final: bool, only as the model's output: not a step of the training
            graph (the loss is computed on its input).
        rearranges: bool, its output holds its input's values, moved (the
            logits' producer is looked for through it).
        saves_part: str, the `memory_model` part its saved tensors count in.
        notes: dict, a layer class of `layers` → what the supported-layer
            list says of it (`"frozen"`).
    """

    name = None
    layers = ()
    functions = ()
    operations = ()
    trains = False
    final = False
    rearranges = False
    saves_part = "saved_activations_bytes"
    notes = {}

    def __repr__(self):
        return f"<step kind {self.name!r}>"

    # --- reading ----------------------------------------------------------------

    def read(self, reading):
        """The step's params for a layer of `layers` (a `Reading`).

        Raises:
            UnsupportedLayerError: an option the kind does not implement.
        """
        del reading
        return {}

    def read_function(self, function):
        """The step's params for the activation `function` (one of `functions`)."""
        del function
        return {}

    def read_operation(self, reading):
        """The step's params for a `keras.ops` call of `operations`, or None if the
        call is not of this kind (`x + 3.0` is an affine step, `x + y` an add)."""
        del reading
        return None

    # --- forward ----------------------------------------------------------------

    def forward(self, step, inputs, weights):
        """The output tensor of `step` from its input tensors (and the weights)."""
        raise NotImplementedError(f"step kind {self.name!r} has no forward pass")

    def saved_for_backward(self, step, requires_grad):
        """What the backward pass reads: dict name → (tensor id, bytes per element).

        Args:
            step: the `Step`.
            requires_grad: set of the tensor ids that need a gradient.
        """
        del step, requires_grad
        return {}

    def record(self, step, values, requires_grad):
        """The tensors `saved_for_backward` names, taken in the forward pass.

        Args:
            step: the `Step` (its output is in `values`).
            values: dict tensor id → tensor of the forward pass so far.
            requires_grad: set of the tensor ids that need a gradient.

        Returns:
            dict name → tensor (what `backward` gets as `kept`).
        """
        return {name: values[tensor]
                for name, (tensor, _) in self.saved_for_backward(step, requires_grad).items()}

    # --- backward ---------------------------------------------------------------

    def backward(self, step, dy, kept, context):
        """Yields (input tensor id, gradient) for every input that needs one.

        The default differentiates the first input with `input_grad`.

        Args:
            step: the `Step`.
            dy: the loss gradient at its output.
            kept: dict, what `record` took in the forward pass.
            context: a `Backward`.
        """
        source = step.inputs[0]
        if context.wants(source):
            yield source, self.input_grad(step, dy, kept, context)

    def input_grad(self, step, dy, kept, context):
        """The gradient at the first input (single-input kinds)."""
        raise NotImplementedError(f"step kind {self.name!r} has no backward pass")

    def working_elements(self, step, shapes):
        """Gradient elements per sample its backward step holds on top of the output
        and input gradients (a conv's tap grid), for `memory_model`."""
        del step, shapes
        return 0

    # --- the generic test -------------------------------------------------------

    def examples(self):
        """The Keras calls the generic autodiff test builds (`Example`s)."""
        return ()


def window_pads(padding, input_shape, window, strides):
    """((top, bottom), (left, right)) zeros a "valid" or "same" window op (conv,
    pooling) pads its NHWC input with: TensorFlow's SAME split for "same".

    Args:
        padding: `"valid"` or `"same"`.
        input_shape: the NHWC input shape (batch may be None).
        window: (kh, kw).
        strides: (sh, sw).

    Returns:
        ((top, bottom), (left, right)).
    """
    if padding != "same":
        return ((0, 0), (0, 0))
    return tuple(_same_pads(int(size), int(k), int(s))
                 for size, k, s in zip(input_shape[1:3], window, strides))


def _same_pads(size, kernel, stride):
    """TensorFlow's SAME padding (before, after) along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2)


def constant(value):
    """A layer's constant (scalar or per-channel) as float32 numpy."""
    return np.asarray(keras.ops.convert_to_numpy(value), np.float32)


def static_shape(shape):
    """A shape with None (the batch) read as 1, for broadcasting checks."""
    return tuple(1 if d is None else int(d) for d in shape)
