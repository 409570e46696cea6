"""The steps of the on-device training graph, read from a Keras model's layer calls.

The exporter never calls Keras layers: it re-implements each supported layer
with TensorFlow ops that convert to LiteRT builtins (see `layer_ops`). This
module is the bridge: it takes the layer calls of the model in topological
order, nested functional/Sequential sub-models flattened with `outer/` names,
from the same walk `kmd.plan` reads its layers from (`keras_medyate.walk`),
and describes each call as a `Step` with the parameters the builtin
implementation needs.

Which layers are supported, and how each becomes a step, is the step-kind
registry's (`tflite_export.step_kinds`, one class per kind; its
`supported_layers()` lists them): Conv2D, DepthwiseConv2D, Dense, the
activations, poolings, merges (Add, Multiply, Concatenate), frozen
BatchNormalization and friends, and the `keras.ops` arithmetic a functional
graph records (`x + 3.0`, `x * (1 / 6)`), as in `keras.applications`'
MobileNetV3. Conv and Dense layers may carry any activation of `ACTIVATIONS`
(and "softmax" on the classifier); a softmax is only supported last.

Example:

>>> import keras
>>> from tflite_export import graph
>>> model = keras.Sequential([keras.Input((8, 8, 3)),
...     keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
...     keras.layers.GlobalAveragePooling2D(name="gap"),
...     keras.layers.Dense(2, name="head")])
>>> [(s.name, s.kind) for s in graph.build_graph(model).steps]
[('c1', 'conv'), ('c1', 'relu'), ('gap', 'gap'), ('head', 'dense')]
"""

import dataclasses

from keras_medyate import walk as walk_lib
from tflite_export import step_kinds
from tflite_export.step_kinds import UnsupportedLayerError, window_pads  # noqa: F401 - public

#: The kinds of step (`step_kinds.KINDS`).
STEP_KINDS = step_kinds.names()

#: Activations (Keras function names) the training graph differentiates, each
#: computed by the step kind that lists it (`relu`, `leaky_relu`, `activation`, ...).
ACTIVATIONS = step_kinds.ACTIVATIONS


@dataclasses.dataclass
class Step:
    """One operation of the flattened graph.

    Attributes:
        name: str, the layer name (prefixed `"outer/"` inside nested models),
            as in `kmd.plan(...).layers`.
        kind: str, one of `STEP_KINDS`.
        inputs: tuple of int, ids of the input tensors.
        output: int, id of the output tensor.
        layer: the Keras layer (None for synthetic steps).
        params: dict, kind-specific parameters (strides, padding, constants).
    """

    name: str
    kind: str
    inputs: tuple
    output: int
    layer: object = None
    params: dict = dataclasses.field(default_factory=dict)

    @property
    def spec(self):
        """The `step_kinds.StepKind` that runs and differentiates this step."""
        return step_kinds.get(self.kind)


@dataclasses.dataclass
class LayerGraph:
    """The model as a list of steps in topological order.

    Attributes:
        steps: list of `Step`.
        input_id: int, id of the model input tensor.
        logits_id: int, id of the tensor the cross-entropy is computed on.
        output_softmax: bool, True if the model outputs `softmax(logits)`.
        shapes: dict id → static shape tuple (batch dimension None).
        input_shape: tuple, the model input shape without the batch dimension.
        num_classes: int, size of the logits.
    """

    steps: list
    input_id: int
    logits_id: int
    output_softmax: bool
    shapes: dict
    input_shape: tuple
    num_classes: int

    def step_of_layer(self, name, kind=None):
        """The step implementing layer `name` (and of `kind`, if given)."""
        for step in self.steps:
            if step.name == name and (kind is None or step.kind == kind):
                return step
        raise KeyError(f"No step for layer {name!r} in the exported graph.")

    def producer(self, tensor):
        """The step that outputs `tensor` (None for the model input)."""
        for step in self.steps:
            if step.output == tensor:
                return step
        return None

    def logits_layer(self):
        """Name of the layer computing the logits (identity and reshape steps skipped:
        a 1×1 Conv2D head followed by `Flatten` computes them)."""
        step = self.producer(self.logits_id)
        while step is not None and step.spec.rearranges:
            step = self.producer(step.inputs[0])
        return None if step is None else step.name

    def consumers(self):
        """dict tensor id → list of steps that read it."""
        result = {}
        for step in self.steps:
            for tensor in step.inputs:
                result.setdefault(tensor, []).append(step)
        return result


def build_graph(model):
    """Flattens a built functional or Sequential Keras model into a `LayerGraph`.

    Args:
        model: a built `keras.Model` with one image-like input and one output.

    Returns:
        A `LayerGraph`.

    Raises:
        UnsupportedLayerError: a layer, or an option of a layer, that the
            builtin training graph does not implement; the message names the
            layer, its class and what to change.
        ValueError: the model has several inputs/outputs or unknown shapes.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(model.inputs)} inputs and "
            f"{len(model.outputs)} outputs; the on-device export supports one image "
            "input and one classification output."
        )
    try:
        flat = walk_lib.walk(model)
    except walk_lib.UnreadableModelError as error:
        raise UnsupportedLayerError(str(error)) from error
    builder = _Builder(flat.shapes)
    input_id = builder.tensor_id(flat.inputs[0])
    for call in flat.calls:
        builder.add(call)
    output_id = builder.tensor_id(flat.outputs[0])
    steps = builder.steps
    shapes = builder.shapes
    input_shape = tuple(shapes[input_id][1:])
    if any(d is None for d in input_shape):
        raise ValueError(
            f"Model {model.name!r} has an unknown input size {input_shape}; build it "
            "with a fixed `keras.Input(shape=(H, W, C))`."
        )
    logits_id, output_softmax = output_id, False
    if steps and steps[-1].spec.final:
        last = steps.pop()
        logits_id, output_softmax = last.inputs[0], True
    seen = set()
    for step in steps:
        if step.spec.trains:
            if step.name in seen:
                raise UnsupportedLayerError(
                    f"Layer {step.name!r} ({type(step.layer).__name__}) is called more than "
                    "once (a shared layer); its kernel would receive several gradients. "
                    "Use a distinct layer per call."
                )
            seen.add(step.name)
        if step.spec.final:
            raise UnsupportedLayerError(
                f"Layer {step.name!r} applies a softmax inside the network; only a final "
                "softmax (the model output) is supported."
            )
    logits_shape = shapes[logits_id]
    if len(logits_shape) != 2:
        raise UnsupportedLayerError(
            f"The model output must be (batch, classes) logits or probabilities, got "
            f"shape {logits_shape}. Add a `GlobalAveragePooling2D`/`Flatten` before the "
            "classifier."
        )
    return LayerGraph(steps=steps, input_id=input_id, logits_id=logits_id,
                      output_softmax=output_softmax, shapes=shapes,
                      input_shape=input_shape, num_classes=int(logits_shape[-1]))


class _Builder:
    """Turns the walk's layer calls into steps on integer tensor ids."""

    def __init__(self, shapes):
        self.steps = []
        self.shapes = {}
        self._key_shapes = shapes
        self._ids = {}

    def tensor_id(self, key):
        """The integer id of a tensor of the walk (given on first use)."""
        if key not in self._ids:
            self._ids[key] = self._new_id(self._key_shapes[key])
        return self._ids[key]

    def _new_id(self, shape):
        tensor = len(self.shapes)
        self.shapes[tensor] = shape
        return tensor

    def add(self, call):
        """Emits the step(s) of one layer call; a nested model's call is checked
        only (its own calls follow it)."""
        if call.nested:
            model = call.layer
            if len(model.inputs) != 1 or len(call.inputs) != 1 or len(model.outputs) != 1:
                raise UnsupportedLayerError(
                    f"Nested model {call.name!r} must have one input and one output.")
            return
        if len(call.outputs) != 1:
            raise UnsupportedLayerError(
                f"Layer {call.name!r} ({type(call.layer).__name__}) has {len(call.outputs)} "
                "outputs; only single-output layers are supported."
            )
        inputs = [self.tensor_id(key) for key in call.inputs]
        self._emit(call.layer, call.name, inputs, call.outputs[0], call.arguments)

    def _emit(self, layer, name, inputs, output_key, arguments=()):
        output_shape = self._key_shapes[output_key]
        kind, params, activation = step_kinds.describe(step_kinds.Reading(
            layer, name, tuple(inputs), self.shapes, tuple(arguments), output_shape))
        if activation in (None, "linear"):
            out = self.tensor_id(output_key)
            self.steps.append(Step(name, kind, tuple(inputs), out, layer, params))
            return
        # A fused activation becomes a separate step on a synthetic tensor.
        pre = self._new_id(output_shape)
        self.steps.append(Step(name, kind, tuple(inputs), pre, layer, params))
        out = self.tensor_id(output_key)
        kind, params = step_kinds.function_step(activation)
        self.steps.append(Step(name, kind, (pre,), out, layer, params))
