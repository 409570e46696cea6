"""The step kinds of the on-device training graph: one class per kind, one registry.

A step kind (`StepKind`) holds everything the exporter knows about one kind
of layer: which Keras layer classes, activation functions and `keras.ops`
calls it reads and how (`read`: the step's `params`, or an
`UnsupportedLayerError` naming the option), its forward pass in
builtin-convertible TensorFlow ops, what its backward pass reads from the
forward pass (`saved_for_backward`, `record`), its backward pass, the extra
gradient memory of that backward step (`working_elements`), and whether it
trains (`trains`: its kernel is a search-space candidate; which Keras classes
those are comes from `keras_medyate.layer_kinds`, shared with the inventory
and the selected kernel gradients). `graph` reads a model's layers through
`describe`, `training_graph` runs each step's `forward`/`backward`, and
`memory_model` sums what each kind keeps; none of them names a kind.

Registered kinds, in `KINDS` order: conv, depthwise, dense (`trained`); pad,
gap, avg_pool, max_pool, reshape (`spatial`); add, multiply, concatenate
(`combine`); relu, leaky_relu, activation, identity, softmax
(`activations`); affine (`affine`). `supported_layers()` lists what they read.

How to add a kind:

1. Write a `StepKind` subclass in the module of its family (or a new module
   here): set `name` (the `Step.kind` string), `layers` (the `keras.layers`
   class names it reads; the most specific class in a layer's MRO decides),
   `functions` (activation names, for `Activation(...)` and `activation=`)
   or `operations` (`keras.ops` classes; `read_operation` returns None for
   a call that is not its), and `saves_part` if what it saves is not counted
   in `"saved_activations_bytes"`.
2. Implement `read` (check the layer's options, return the params),
   `forward` (ops the converter lowers to LiteRT builtins), `input_grad`
   (single input) or `backward` (several), and, if the backward reads
   forward values, `saved_for_backward` (and `record` when what it keeps is
   computed, like a mask). A trainable kind also needs a row in
   `keras_medyate.layer_kinds` and the `trained._Trained` methods.
3. Give it `examples()`: the Keras calls `tests/test_step_kinds.py` builds to
   check its forward against Keras and its backward against TensorFlow's
   autodiff (every registered kind is tested there, with no other change).
4. Add an instance to `KINDS` below.

Example:

>>> import keras
>>> from tflite_export import step_kinds
>>> step_kinds.kind_for_layer(keras.layers.LeakyReLU()).name
'leaky_relu'
>>> step_kinds.get("concatenate").layers
('Concatenate',)
>>> step_kinds.function_step("relu6")
('relu', {'max_value': 6.0})
"""

import keras

from keras_medyate import layer_kinds
from tflite_export.step_kinds import activations, affine, combine, spatial, trained
from tflite_export.step_kinds.base import (
    Backward,
    Example,
    Reading,
    StepKind,
    UnsupportedLayerError,
    window_pads,
)

__all__ = [
    "ACTIVATIONS",
    "KINDS",
    "Backward",
    "Example",
    "Reading",
    "StepKind",
    "UnsupportedLayerError",
    "activation_name",
    "describe",
    "function_step",
    "get",
    "kind_for_layer",
    "names",
    "supported_layers",
    "window_pads",
]

#: Every registered kind, one instance each.
KINDS = (
    trained.Conv(), trained.Depthwise(), trained.Dense(), spatial.ZeroPad(), combine.Add(),
    combine.Multiply(), combine.Concatenate(), activations.Relu(), activations.LeakyRelu(),
    activations.Activation(), affine.Affine(), spatial.GlobalAveragePool(),
    spatial.AveragePool(), spatial.MaxPool(), spatial.Reshape(), activations.Identity(),
    activations.Softmax(),
)

_BY_NAME = {kind.name: kind for kind in KINDS}
_BY_FUNCTION = {function: kind for kind in KINDS for function in kind.functions}
_BY_CLASS = {getattr(keras.layers, name): kind for kind in KINDS for name in kind.layers}
assert len(_BY_NAME) == len(KINDS), "two step kinds share a name"

#: Activation functions a conv or Dense layer may carry (and "softmax" last).
ACTIVATIONS = tuple(function for kind in KINDS if not kind.final for function in kind.functions)


def get(name):
    """The registered kind named `name`.

    Raises:
        KeyError: no such kind; the message lists the kinds.
    """
    if name not in _BY_NAME:
        raise KeyError(f"No step kind {name!r}; the kinds are {names()}.")
    return _BY_NAME[name]


def names():
    """The names of the registered kinds, in `KINDS` order."""
    return tuple(kind.name for kind in KINDS)


def kind_for_layer(layer):
    """The kind that reads a Keras layer, or None.

    A layer of an updatable class (`keras_medyate.layer_kinds`) is read by the
    trained kind of that name, an exact class only unless its row accepts
    subclasses; any other layer by the kind of the most specific class of its
    MRO listed in a kind's `layers`.
    """
    if layer_kinds.kind_of(layer) is not None:
        updatable = layer_kinds.kind_of(layer, exact=True)
        return None if updatable is None else _BY_NAME.get(updatable.name)
    for cls in type(layer).__mro__:
        if cls in _BY_CLASS:
            return _BY_CLASS[cls]
    return None


def function_step(function):
    """(kind name, params) of the step computing the activation `function`."""
    kind = _BY_FUNCTION[function]
    return kind.name, kind.read_function(function)


def describe(reading):
    """How one layer call becomes a step: (kind name, params, fused activation).

    Args:
        reading: a `Reading` of the call.

    Returns:
        (kind name, params dict, name of the layer's `activation=` or None);
        the caller adds a step for a fused activation other than "linear".

    Raises:
        UnsupportedLayerError: the layer, operation, activation or an option
            is not implemented; the message names the layer and its class.
    """
    layer = reading.layer
    if type(layer).__module__.startswith("keras.src.ops."):
        return _describe_operation(reading)
    if isinstance(layer, keras.layers.Activation):
        kind, params = function_step(activation_name(reading))
        return kind, params, None
    kind = kind_for_layer(layer)
    if kind is None:
        raise UnsupportedLayerError(
            f"Layer {reading.name!r} of class {reading.cls} is not supported by the "
            f"builtin-only training export. Supported: {supported_layers()}.")
    params = kind.read(reading)
    return kind.name, params, activation_name(reading) if kind.trains else None


def _describe_operation(reading):
    for kind in KINDS:
        if reading.cls in kind.operations:
            params = kind.read_operation(reading)
            if params is not None:
                return kind.name, params, None
    raise UnsupportedLayerError(
        f"Operation {reading.name!r} ({reading.cls}, a keras.ops call in the functional graph) "
        "is not supported by the builtin-only training export. Supported: +, -, *, / of a "
        "tensor and a constant, + and * of two tensors, keras.ops.concatenate.")


def activation_name(reading):
    """The Keras name of the layer's `activation` (None without one).

    Raises:
        UnsupportedLayerError: an activation no kind computes.
    """
    activation = getattr(reading.layer, "activation", None)
    if activation is None:
        return None
    name = getattr(activation, "__name__", str(activation))
    if name in _BY_FUNCTION:
        return name
    finals = ", ".join(repr(f) for kind in KINDS if kind.final for f in kind.functions)
    raise reading.error(
        f"uses activation {name!r}; the on-device training graph supports "
        f"{', '.join(repr(a) for a in ACTIVATIONS)} (and {finals} on the classifier). Use "
        "one of these or a separate layer.")


def supported_layers():
    """The Keras layers, activations and operations the kinds read, as a sentence part."""
    listed = []
    for kind in KINDS:
        classes = (layer_kinds.by_name(kind.name).class_name,) if kind.trains else kind.layers
        listed += [f"{name} ({kind.notes[name]})" if name in kind.notes else name
                   for name in classes]
    functions = "/".join(_BY_FUNCTION)
    return (f"{', '.join(listed)}, Activation({functions}), and +, -, *, / by a constant "
            "(keras.ops)")
