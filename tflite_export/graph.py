"""The steps of the on-device training graph, read from a Keras model's layer calls.

The exporter never calls Keras layers: it re-implements each supported layer
with TensorFlow ops that convert to LiteRT builtins (see `layer_ops`). This
module is the bridge: it takes the layer calls of the model in topological
order, nested functional/Sequential sub-models flattened with `outer/` names,
from the same walk `kmd.plan` reads its layers from (`keras_medyate.walk`),
and describes each call as a `Step` with the parameters the builtin
implementation needs.

Supported layers: `InputLayer`, `Conv2D` (groups=1, dilation 1, "valid" or
"same"; also as a 1×1 classifier head), `DepthwiseConv2D` (dilation 1, any
depth multiplier), `Dense`, `ZeroPadding2D`, `Add`, `Multiply` (two inputs,
broadcasting: squeeze-and-excitation gating), `ReLU` (no negative slope or
threshold), `Activation` (see `ACTIVATIONS`, and "softmax" last), frozen
`BatchNormalization` (channels last), `Rescaling`, `Normalization`,
`GlobalAveragePooling2D` (keepdims or not), `AveragePooling2D`,
`MaxPooling2D`, `Flatten`, `Reshape`, `Dropout` (identity: inference
behaviour) and a final `Softmax`; and the `keras.ops` arithmetic a
functional graph records (`x + 3.0`, `x * (1 / 6)`: add, subtract,
multiply, divide by a constant; add or multiply two tensors), as in
`keras.applications.MobileNetV3`'s hard-sigmoid. Conv and Dense layers may
carry any activation of `ACTIVATIONS` (and "softmax" on the classifier).

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

import keras
import numpy as np

from keras_medyate import walk as walk_lib

STEP_KINDS = ("conv", "depthwise", "dense", "pad", "add", "multiply", "relu", "activation",
              "affine", "gap", "avg_pool", "max_pool", "reshape", "identity")

#: Activations (Keras function names) the training graph differentiates:
#: "relu"/"relu6" become `relu` steps, the others `activation` steps.
ACTIVATIONS = ("linear", "relu", "relu6", "hard_sigmoid", "hard_silu", "sigmoid", "silu")

#: `keras.ops` arithmetic on a tensor and a constant: operation class → affine form.
_CONSTANT_ARITHMETIC = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide")


class UnsupportedLayerError(ValueError):
    """A layer (or layer option) the builtin-only training graph cannot express."""


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
        while step is not None and step.kind in ("identity", "reshape"):
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
    if steps and steps[-1].kind == "softmax":
        last = steps.pop()
        logits_id, output_softmax = last.inputs[0], True
    seen = set()
    for step in steps:
        if step.kind in ("conv", "depthwise", "dense"):
            if step.name in seen:
                raise UnsupportedLayerError(
                    f"Layer {step.name!r} ({type(step.layer).__name__}) is called more than "
                    "once (a shared layer); its kernel would receive several gradients. "
                    "Use a distinct layer per call."
                )
            seen.add(step.name)
        if step.kind == "softmax":
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
        kind, params, activation = _describe(layer, name, inputs, self.shapes, arguments)
        if activation in (None, "linear"):
            out = self.tensor_id(output_key)
            self.steps.append(Step(name, kind, tuple(inputs), out, layer, params))
            return
        # A fused activation becomes a separate step on a synthetic tensor.
        pre = self._new_id(self._key_shapes[output_key])
        self.steps.append(Step(name, kind, tuple(inputs), pre, layer, params))
        out = self.tensor_id(output_key)
        if activation == "softmax":
            self.steps.append(Step(name, "softmax", (pre,), out, layer, {}))
        else:
            kind, params = _activation_step(activation)
            self.steps.append(Step(name, kind, (pre,), out, layer, params))


def _activation_name(layer, name):
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    fn_name = getattr(activation, "__name__", str(activation))
    if fn_name in ACTIVATIONS or fn_name == "softmax":
        return fn_name
    raise UnsupportedLayerError(
        f"Layer {name!r} ({type(layer).__name__}) uses activation {fn_name!r}; the "
        f"on-device training graph supports {', '.join(repr(a) for a in ACTIVATIONS)} "
        "(and 'softmax' on the classifier). Use one of these or a separate layer."
    )


def _activation_step(activation):
    """(kind, params) of the step computing a (non-linear) activation of `ACTIVATIONS`."""
    if activation in ("relu", "relu6"):
        return "relu", {"max_value": 6.0 if activation == "relu6" else None}
    return "activation", {"function": activation}


def _check_channels_last(layer, name):
    fmt = getattr(layer, "data_format", "channels_last")
    if fmt != "channels_last":
        raise UnsupportedLayerError(
            f"Layer {name!r} ({type(layer).__name__}) uses data_format={fmt!r}; only "
            "'channels_last' (NHWC, the LiteRT layout) is supported."
        )


def _check_regularizers(layer, name):
    for attribute in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
        if getattr(layer, attribute, None) is not None:
            raise UnsupportedLayerError(
                f"Layer {name!r} ({type(layer).__name__}) has a {attribute}; the "
                "on-device loss is the plain cross-entropy. Remove the regularizer "
                "before exporting."
            )


def _conv_params(layer, name, input_shape):
    _check_channels_last(layer, name)
    _check_regularizers(layer, name)
    if tuple(layer.dilation_rate) != (1, 1):
        raise UnsupportedLayerError(
            f"Layer {name!r} ({type(layer).__name__}) has dilation_rate="
            f"{tuple(layer.dilation_rate)}; only (1, 1) is supported."
        )
    if layer.padding not in ("valid", "same"):
        raise UnsupportedLayerError(
            f"Layer {name!r} ({type(layer).__name__}) has padding={layer.padding!r}; "
            "only 'valid' and 'same' are supported."
        )
    kh, kw = (int(k) for k in layer.kernel_size)
    sh, sw = (int(s) for s in layer.strides)
    return {"kernel_size": (kh, kw), "strides": (sh, sw), "padding": layer.padding,
            "pads": window_pads(layer.padding, input_shape, (kh, kw), (sh, sw)),
            "use_bias": bool(layer.use_bias)}


def window_pads(padding, input_shape, window, strides):
    """((top, bottom), (left, right)) zeros a "valid" or "same" window op (conv,
    pooling) pads its NHWC input with: TensorFlow's SAME split for "same"."""
    if padding != "same":
        return ((0, 0), (0, 0))
    return tuple(_same_pads(int(size), int(k), int(s))
                 for size, k, s in zip(input_shape[1:3], window, strides))


def _same_pads(size, kernel, stride):
    """TensorFlow's SAME padding (before, after) along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2)


def _describe(layer, name, inputs, shapes, arguments=()):
    """(kind, params, fused activation name) of one Keras layer (or `keras.ops` operation)."""
    cls = type(layer).__name__
    in_shape = shapes[inputs[0]] if inputs else None
    if type(layer).__module__.startswith("keras.src.ops."):
        return _describe_operation(layer, name, inputs, shapes, arguments)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        params = _conv_params(layer, name, in_shape)
        params["depth_multiplier"] = int(layer.depth_multiplier)
        return "depthwise", params, _activation_name(layer, name)
    if isinstance(layer, keras.layers.Conv2D) and type(layer).__name__ == "Conv2D":
        params = _conv_params(layer, name, in_shape)
        if int(layer.groups) != 1:
            raise UnsupportedLayerError(
                f"Layer {name!r} (Conv2D) has groups={layer.groups}; only groups=1 is "
                "supported (use DepthwiseConv2D for depthwise convolutions)."
            )
        return "conv", params, _activation_name(layer, name)
    if isinstance(layer, keras.layers.Dense) and cls == "Dense":
        _check_regularizers(layer, name)
        if getattr(layer, "lora_enabled", False):
            raise UnsupportedLayerError(f"Layer {name!r} (Dense) has LoRA enabled; disable it.")
        return "dense", {"use_bias": bool(layer.use_bias)}, _activation_name(layer, name)
    if isinstance(layer, keras.layers.ZeroPadding2D):
        _check_channels_last(layer, name)
        (top, bottom), (left, right) = layer.padding
        return "pad", {"pads": ((int(top), int(bottom)), (int(left), int(right)))}, None
    if isinstance(layer, keras.layers.Add):
        return _two_tensor_step("add", name, cls, inputs, shapes)
    if isinstance(layer, keras.layers.Multiply):
        return _two_tensor_step("multiply", name, cls, inputs, shapes)
    if isinstance(layer, keras.layers.ReLU):
        if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
            raise UnsupportedLayerError(
                f"Layer {name!r} (ReLU) has negative_slope={float(layer.negative_slope)} "
                f"and threshold={float(layer.threshold)}; only the plain (clipped) ReLU "
                "is supported."
            )
        max_value = None if layer.max_value is None else float(layer.max_value)
        return "relu", {"max_value": max_value}, None
    if isinstance(layer, keras.layers.Activation):
        activation = _activation_name(layer, name)
        if activation == "linear":
            return "identity", {}, None
        if activation == "softmax":
            return "softmax", {}, None
        kind, params = _activation_step(activation)
        return kind, params, None
    if isinstance(layer, keras.layers.Rescaling):
        return "affine", {"scale": _constant(layer.scale), "shift": _constant(layer.offset)}, None
    if isinstance(layer, keras.layers.Normalization):
        return "affine", _normalization_params(layer, name), None
    if isinstance(layer, keras.layers.Softmax):
        axis = layer.axis if isinstance(layer.axis, int) else tuple(layer.axis)
        if axis not in (-1, len(in_shape) - 1, (-1,)):
            raise UnsupportedLayerError(
                f"Layer {name!r} (Softmax) normalizes over axis {layer.axis}; only the "
                "last axis is supported."
            )
        return "softmax", {}, None
    if isinstance(layer, keras.layers.BatchNormalization):
        return "affine", _batchnorm_params(layer, name, in_shape), None
    if isinstance(layer, keras.layers.GlobalAveragePooling2D):
        _check_channels_last(layer, name)
        return "gap", {"keepdims": bool(layer.keepdims)}, None
    if isinstance(layer, (keras.layers.AveragePooling2D, keras.layers.MaxPooling2D)):
        return _pool_params(layer, name, in_shape)
    if isinstance(layer, (keras.layers.Flatten, keras.layers.Reshape)):
        if isinstance(layer, keras.layers.Flatten):
            _check_channels_last(layer, name)
        return "reshape", {}, None
    if isinstance(layer, keras.layers.Dropout):
        return "identity", {}, None
    raise UnsupportedLayerError(
        f"Layer {name!r} of class {cls} is not supported by the builtin-only training "
        "export. Supported: Conv2D, DepthwiseConv2D, Dense, ZeroPadding2D, Add, Multiply, "
        f"ReLU, Activation({'/'.join(ACTIVATIONS)}/softmax), BatchNormalization (frozen), "
        "Rescaling, Normalization, GlobalAveragePooling2D, AveragePooling2D, MaxPooling2D, "
        "Flatten, Reshape, Dropout, Softmax (last), and +, -, *, / by a constant."
    )


def _constant(value):
    """A layer's constant (scalar or per-channel) as float32 numpy."""
    return np.asarray(keras.ops.convert_to_numpy(value), np.float32)


def _two_tensor_step(kind, name, cls, inputs, shapes):
    """`add` of tensors of one shape, or `multiply` of two, one possibly broadcast."""
    if kind == "multiply" and len(inputs) != 2:
        raise UnsupportedLayerError(
            f"Layer {name!r} ({cls}) multiplies {len(inputs)} tensors; only two are "
            "supported. Chain two-input Multiply layers instead.")
    output = np.broadcast_shapes(*[tuple(1 if d is None else d for d in shapes[t])
                                   for t in inputs])
    for tensor in inputs:
        shape = tuple(1 if d is None else d for d in shapes[tensor])
        if kind == "add" and shape != output:
            raise UnsupportedLayerError(
                f"Layer {name!r} ({cls}) adds tensors of shapes "
                f"{[shapes[t] for t in inputs]}; only equal shapes are supported.")
        if len(shape) != len(output):
            raise UnsupportedLayerError(
                f"Layer {name!r} ({cls}) broadcasts tensors of different ranks "
                f"{[shapes[t] for t in inputs]}; give them one rank (e.g. keepdims=True).")
    return kind, {}, None


def _describe_operation(layer, name, inputs, shapes, arguments):
    """A `keras.ops` operation of a functional graph: arithmetic with a constant
    (an `affine` step) or between two tensors (`add` / `multiply`)."""
    cls = type(layer).__name__
    if cls in ("Add", "Multiply") and len(inputs) == 2:
        return _two_tensor_step(cls.lower(), name, cls, inputs, shapes)
    constants = [a for a in arguments if not isinstance(a, tuple)]
    if cls not in _CONSTANT_ARITHMETIC or len(inputs) != 1 or len(arguments) != 2 \
            or len(constants) != 1:
        raise UnsupportedLayerError(
            f"Operation {name!r} ({cls}, a keras.ops call in the functional graph) is not "
            "supported by the builtin-only training export. Supported: +, -, *, / of a "
            "tensor and a constant, + and * of two tensors.")
    value = np.asarray(constants[0], np.float32)
    shape = tuple(1 if d is None else int(d) for d in shapes[inputs[0]])
    if value.ndim > len(shape) or np.broadcast_shapes(shape, value.shape) != shape:
        raise UnsupportedLayerError(
            f"Operation {name!r} ({cls}) combines a tensor of shape {shapes[inputs[0]]} with a "
            f"constant of shape {value.shape} that enlarges it; only constants that broadcast "
            "to the tensor's shape (scalars, per-channel vectors) are supported.")
    tensor_first = isinstance(arguments[0], tuple)
    if cls == "Add":
        return "affine", {"scale": None, "shift": value}, None
    if cls == "Multiply":
        return "affine", {"scale": value, "shift": None}, None
    if cls == "Subtract":
        if tensor_first:
            return "affine", {"scale": None, "shift": -value}, None
        return "affine", {"scale": np.float32(-1.0), "shift": value}, None
    if not tensor_first:
        raise UnsupportedLayerError(
            f"Operation {name!r} divides a constant by a tensor; only a tensor divided by "
            "a constant is supported.")
    return "affine", {"scale": np.float32(1.0) / value, "shift": None}, None


def _normalization_params(layer, name):
    axis = tuple(layer.axis) if isinstance(layer.axis, (list, tuple)) else (layer.axis,)
    if axis != (-1,):
        raise UnsupportedLayerError(
            f"Layer {name!r} (Normalization) normalizes over axis {layer.axis}; only the "
            "last (channels) axis is supported.")
    mean, variance = _constant(layer.mean), _constant(layer.variance)
    std = np.maximum(np.sqrt(variance), np.float32(keras.backend.epsilon()))
    if layer.invert:
        return {"scale": std, "shift": mean}
    return {"scale": np.float32(1.0) / std, "shift": -mean / std}


def _pool_params(layer, name, in_shape):
    _check_channels_last(layer, name)
    kind = "max_pool" if isinstance(layer, keras.layers.MaxPooling2D) else "avg_pool"
    ph, pw = (int(p) for p in layer.pool_size)
    sh, sw = (int(s) for s in layer.strides)
    return kind, {"pool_size": (ph, pw), "strides": (sh, sw), "padding": layer.padding,
                  "pads": window_pads(layer.padding, in_shape, (ph, pw), (sh, sw))}, None


def _batchnorm_params(layer, name, in_shape):
    axis = layer.axis if isinstance(layer.axis, int) else list(layer.axis)
    rank = len(in_shape)
    if isinstance(axis, list):
        axis = axis[0] if len(axis) == 1 else None
    if axis is None or axis % rank != rank - 1:
        raise UnsupportedLayerError(
            f"Layer {name!r} (BatchNormalization) normalizes axis {layer.axis}; only the "
            "last (channels) axis is supported."
        )
    mean = np.asarray(keras.ops.convert_to_numpy(layer.moving_mean), np.float64)
    variance = np.asarray(keras.ops.convert_to_numpy(layer.moving_variance), np.float64)
    gamma = (np.asarray(keras.ops.convert_to_numpy(layer.gamma), np.float64)
             if layer.scale else np.ones_like(mean))
    beta = (np.asarray(keras.ops.convert_to_numpy(layer.beta), np.float64)
            if layer.center else np.zeros_like(mean))
    scale = gamma / np.sqrt(variance + float(layer.epsilon))
    shift = beta - mean * scale
    return {"scale": scale.astype(np.float32), "shift": shift.astype(np.float32)}
