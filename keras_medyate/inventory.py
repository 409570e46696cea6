"""Updatable layers of a Keras model and the per-input-channel cost model.

The unit of selection in TraDy and MeDyate is an *input channel* of a kernel:
the slice along the kernel's input-channel axis (axis 2 for `Conv2D` and
`DepthwiseConv2D`, axis 0 for `Dense`). Updating that slice needs the slice's
weights and the input activation values that its weight derivative reads:

- weight units per channel = kernel size / kernel.shape[axis]
  (`C' x D x D` for a Conv2D, `D x D x depth_multiplier` for a depthwise conv,
  `out_units` for a Dense layer);
- activation units per channel = `H x W` of the layer's *input* (times the
  number of groups of a grouped conv, whose kernel slice reads one input
  channel per group), or the number of positions for a Dense layer (1 on a
  pooled feature vector); the input before an explicit `ZeroPadding2D` is
  counted, since padding zeros need not be stored;
- dW MACs per channel = weight units x output positions (`D^2 C' H' W'`).

All counts are per input sample, as in the papers.

Example:

>>> import keras
>>> from keras_medyate.inventory import inventory
>>> model = keras.Sequential([keras.Input((8, 8, 3)),
...                           keras.layers.Conv2D(4, 3, padding="same", name="conv"),
...                           keras.layers.GlobalAveragePooling2D(),
...                           keras.layers.Dense(2, name="head")])
>>> [(info.name, info.channel_units) for info in inventory(model)]
[('conv', 100), ('head', 3)]
"""

import dataclasses
import hashlib
import json

import keras
import numpy as np

from keras_medyate import layer_kinds
from keras_medyate import walk as walk_lib


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """One updatable layer and the cost of updating one of its input channels.

    Attributes:
        name: str. Unique name in the model; layers of nested models are
            prefixed with the nested model's name (`"backbone/conv1"`).
        kind: str. The `layer_kinds` row: `"conv"`, `"depthwise"` or `"dense"`.
        kernel_shape: tuple. Shape of the Keras kernel.
        channel_axis: int. The kernel's input-channel axis (2 or 0).
        num_channels: int. Size of the kernel along `channel_axis`.
        input_hw: tuple. Spatial size (or positions) of the layer's input.
        output_hw: tuple. Spatial size (or positions) of the layer's output.
        weight_units_per_channel: int. Kernel elements in one channel slice.
        activation_units_per_channel: int. Input elements one slice needs.
        dw_macs_per_channel: int. Multiply-adds of one slice's weight
            derivative, per sample.
        layer: the Keras layer (not serialized, not compared).
    """

    name: str
    kind: str
    kernel_shape: tuple
    channel_axis: int
    num_channels: int
    input_hw: tuple
    output_hw: tuple
    weight_units_per_channel: int
    activation_units_per_channel: int
    dw_macs_per_channel: int
    layer: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def channel_units(self):
        """Memory units to update one input channel (weights + activation)."""
        return self.weight_units_per_channel + self.activation_units_per_channel

    @property
    def layer_units(self):
        """Memory units to update the whole layer (`M_i` in MeDyate)."""
        return self.num_channels * self.channel_units

    @property
    def kernel(self):
        """The layer's kernel variable."""
        return _kernel_of(self.layer)

    def to_config(self):
        """JSON-serializable description (without the layer object)."""
        config = dataclasses.asdict(self)
        config.pop("layer")
        config["kernel_shape"] = list(self.kernel_shape)
        config["input_hw"] = list(self.input_hw)
        config["output_hw"] = list(self.output_hw)
        return config


def supported_layer_types():
    """The Keras layer classes whose input channels can be selected (`layer_kinds`)."""
    return layer_kinds.layer_classes()


def inventory(model):
    """Lists the updatable layers of a functional or Sequential model.

    The layers come from `keras_medyate.walk` (nested functional/Sequential
    sub-models flattened, named `"outer/inner"`), the walk the on-device
    exporter reads too. Layers the user froze (`trainable=False`, or inside a
    frozen sub-model) are left out. Input sizes are read from the
    model's symbolic graph, so the model must be built with a fixed spatial
    input size.

    Args:
        model: a built `keras.Model` (functional or Sequential).

    Returns:
        A list of `LayerInfo` in topological order (input to output).

    Raises:
        ValueError: the model is subclassed or unbuilt, a layer is shared,
            or an input spatial size is unknown.
    """
    check_graph_model(model)
    infos, described = [], set()
    for call in walk_lib.walk(model).calls:
        layer = call.layer
        if (call.nested or not call.trainable or layer_kinds.kind_of(layer) is None
                or id(layer) in described):
            continue
        described.add(id(layer))  # a shared layer has one cost (checked in `_io_shapes`)
        infos.append(_describe(layer, call.name))
    names = [info.name for info in infos]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(
            f"Layer names must be unique, but {duplicated} appear more than once. "
            "Give the layers distinct `name=` arguments."
        )
    return infos


def check_graph_model(model):
    """Raises a clear error unless `model` is a built functional/Sequential model."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Expected a `keras.Model`, got {type(model).__name__}. "
            "keras-medyate works on Keras 3 functional or Sequential models "
            "(`import keras`, not `tf.keras`/tf_keras)."
        )
    if not walk_lib.is_graph_model(model):
        raise ValueError(
            f"Model {model.name!r} is a subclassed model ({type(model).__name__}); "
            "its layer graph and activation shapes cannot be read. Build it as a "
            "functional model (`keras.Model(inputs, outputs)`) or a `keras.Sequential` "
            "with an `keras.Input(shape)` first."
        )
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(
            f"Model {model.name!r} is not built. Start a Sequential model with "
            "`keras.Input(shape=(H, W, C))` or call `model.build((None, H, W, C))` "
            "before planning, so that activation sizes are known."
        )


def _describe(layer, name):
    kind = layer_kinds.kind_of(layer)
    kernel = _kernel_of(layer)
    kernel_shape = tuple(int(d) for d in kernel.shape)
    input_shape, output_shape = _io_shapes(layer, name)
    channel_axis = kind.channel_axis
    if not kind.spatial:
        input_hw = tuple(input_shape[1:-1]) or (1,)
        output_hw = tuple(output_shape[1:-1]) or (1,)
        groups = 1
    else:
        if layer.data_format == "channels_first":
            input_hw, output_hw = tuple(input_shape[2:]), tuple(output_shape[2:])
            in_channels = input_shape[1]
        else:
            input_hw, output_hw = tuple(input_shape[1:3]), tuple(output_shape[1:3])
            in_channels = input_shape[3]
        # A grouped conv's kernel slice reads one input channel per group.
        groups = kind.groups(in_channels, kernel_shape)
    if any(d is None for d in input_hw + output_hw):
        raise ValueError(
            f"Layer {name!r} has an unknown spatial input size {input_shape}. Build the "
            "model with a fixed input size, e.g. "
            "`keras.applications.MobileNetV2(input_shape=(128, 128, 3), ...)`."
        )
    num_channels = kernel_shape[channel_axis]
    weight_units = int(np.prod(kernel_shape)) // num_channels
    activation_units = int(np.prod(input_hw)) * groups
    output_positions = int(np.prod(output_hw))
    return LayerInfo(
        name=name,
        kind=kind.name,
        kernel_shape=kernel_shape,
        channel_axis=channel_axis,
        num_channels=num_channels,
        input_hw=tuple(int(d) for d in input_hw),
        output_hw=tuple(int(d) for d in output_hw),
        weight_units_per_channel=weight_units,
        activation_units_per_channel=activation_units,
        dw_macs_per_channel=weight_units * output_positions,
        layer=layer,
    )


def _kernel_of(layer):
    kind = layer_kinds.kind_of(layer)
    kernel = None if kind is None else kind.kernel(layer)
    if kernel is None:
        raise ValueError(f"Layer {layer.name!r} has no kernel; is it built?")
    return kernel


def _io_shapes(layer, name):
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        raise ValueError(
            f"Layer {name!r} is not connected to the model's graph; build the model "
            "with `keras.Input` so that its activation sizes are known."
        )
    # Calling a nested model creates extra nodes in its layers; all share the
    # shapes of the first one, which is the layer's own place in the graph.
    distinct = {
        tuple(tuple(t.shape) for t in node.input_tensors) for node in nodes
    }
    if len(distinct) > 1:
        raise ValueError(
            f"Layer {name!r} is called {len(nodes)} times on inputs of different "
            "shapes (a shared layer). Shared layers are not supported: each input "
            "channel must have one activation cost."
        )
    node = nodes[0]
    input_shape = tuple(node.input_tensors[0].shape)
    # Explicit zero padding (PyTorch-style symmetric padding) adds no stored
    # activation: the weight derivative needs only the unpadded input.
    parents = getattr(node, "parent_nodes", [])
    if len(parents) == 1 and isinstance(parents[0].operation, keras.layers.ZeroPadding2D):
        input_shape = tuple(parents[0].input_tensors[0].shape)
    return input_shape, tuple(node.output_tensors[0].shape)


def full_finetune_units(infos, biases=False):
    """Memory units to update every layer in `infos`.

    Over every layer but the classifier this is the papers' full fine-tuning
    reference (1,309,808 units for MCUNet-in1 at 128 px): kernels and the
    input activations their derivatives read. With `biases=True`, every bias
    element is added too (a bias derivative reads no stored activation): the
    memory of training every variable of those layers, as full fine-tuning in
    the comparison does.
    """
    units = sum(info.layer_units for info in infos)
    if biases:
        units += sum(bias_units(info) for info in infos)
    return int(units)


def bias_units(info):
    """Elements of a layer's bias (0 without one)."""
    bias = getattr(info.layer, "bias", None) if info.layer is not None else None
    return int(np.prod(bias.shape)) if bias is not None else 0


def model_fingerprint(infos):
    """A short hash of the layer names, kinds and kernel shapes.

    It identifies the architecture (not the weights, not the resolution), so a
    ranking computed at one resolution can be reused at another.
    """
    description = [[i.name, i.kind, list(i.kernel_shape)] for i in infos]
    digest = hashlib.sha256(json.dumps(description).encode("utf-8")).hexdigest()
    return digest[:16]


def find_classifier(infos, name=None):
    """The always-trained head: `name`, else the last Dense layer, else the last layer.

    Raises:
        ValueError: no updatable layer, or `name` is not an updatable layer.
    """
    if not infos:
        raise ValueError(
            f"The model has no updatable layer ({layer_kinds.class_names()} with "
            "trainable=True). If you froze the backbone (`trainable=False`), unfreeze "
            "it: keras-medyate decides which channels to train."
        )
    names = [info.name for info in infos]
    if name is not None:
        if name not in names:
            raise ValueError(
                f"`classifier={name!r}` is not an updatable layer of the model. "
                f"Candidates (last five): {names[-5:]}."
            )
        return name
    dense = [info.name for info in infos if info.kind == "dense"]
    return dense[-1] if dense else names[-1]
