"""The updatable layer kinds: which Keras layers have input channels to train.

One row (`UpdatableKind`) per Keras layer class whose kernel's input channels
keras-medyate selects: the kind's name (`"conv"`, `"depthwise"`, `"dense"`,
as in `LayerInfo.kind` and in the exported graph's steps), the kernel
attribute, the kernel's input-channel axis and rank, and how one kernel slice
reads the layer's input (over an `H x W` grid or per position; a grouped
conv's slice reads one input channel per group). Every reader classifies a
layer here: `inventory` (which layers are updatable, their axis and costs),
`kernel_gradients.supports` (which have a selected-channel gradient),
`channels.input_axis` and the on-device exporter (`tflite_export.step_kinds`).

A layer is matched through its class's method resolution order: the most
specific registered class wins, so the order of the rows does not matter.
Readers that re-implement a layer's computation (`exact=True`: the selected
kernel gradients, the exporter) accept a subclass only where its row says so
(`subclasses`): a subclass of `Conv2D` may compute something else.

Adding an updatable layer class: a row in `KINDS`, its selected-channel
gradient in `kernel_gradients` (optional: without it the layer trains with
the whole kernel's gradient) and its step kind in `tflite_export.step_kinds`
(optional: without it the exporter refuses the layer).

Importing this module imports neither Keras nor TensorFlow (`channels`, which
uses it, is numpy-only); the layer classes are looked up when first needed.

Example:

>>> import keras
>>> from keras_medyate import layer_kinds
>>> [(kind.name, kind.class_name, kind.channel_axis) for kind in layer_kinds.KINDS]
[('conv', 'Conv2D', 2), ('depthwise', 'DepthwiseConv2D', 2), ('dense', 'Dense', 0)]
>>> layer_kinds.kind_of(keras.layers.DepthwiseConv2D(3)).name
'depthwise'
>>> layer_kinds.kind_of(keras.layers.ReLU()) is None
True
"""

import dataclasses
import functools


@dataclasses.dataclass(frozen=True)
class UpdatableKind:
    """One Keras layer class whose kernel's input channels can be trained.

    Attributes:
        name: str, the kind (`LayerInfo.kind`, the exported step's kind).
        class_name: str, the `keras.layers` class.
        channel_axis: int, the kernel's input-channel axis.
        kernel_rank: int, the kernel's number of dimensions.
        spatial: bool, the layer slides over an `(H, W)` grid (channels-last
            or channels-first, a dilation rate); otherwise it maps the last
            axis at every position (Dense).
        grouped: bool, the layer has `groups`: one kernel slice reads one
            input channel per group.
        subclasses: bool, readers that re-implement the computation
            (`exact=True`) accept subclasses of the class too.
        kernel_attribute: str, the layer attribute holding the kernel.
    """

    name: str
    class_name: str
    channel_axis: int
    kernel_rank: int
    spatial: bool
    grouped: bool = False
    subclasses: bool = False
    kernel_attribute: str = "kernel"

    @property
    def layer_class(self):
        """The Keras layer class (Keras is imported here, not with the module)."""
        import keras  # noqa: PLC0415

        return getattr(keras.layers, self.class_name)

    def kernel(self, layer):
        """The layer's kernel variable, or None before it is built."""
        return getattr(layer, self.kernel_attribute, None)

    def groups(self, in_channels, kernel_shape):
        """Input channels one kernel slice reads: the groups of a grouped conv, else 1.

        Args:
            in_channels: int, channels of the layer's input.
            kernel_shape: tuple, the kernel's shape.
        """
        if not self.grouped:
            return 1
        return int(in_channels) // int(kernel_shape[self.channel_axis])


#: Every updatable layer class (a conv's kernel is (kh, kw, in, out), a
#: depthwise conv's (kh, kw, in, multiplier), a Dense layer's (in, units)).
KINDS = (
    UpdatableKind("conv", "Conv2D", channel_axis=2, kernel_rank=4, spatial=True, grouped=True),
    UpdatableKind("depthwise", "DepthwiseConv2D", channel_axis=2, kernel_rank=4, spatial=True,
                  subclasses=True),
    UpdatableKind("dense", "Dense", channel_axis=0, kernel_rank=2, spatial=False),
)


@functools.lru_cache(maxsize=None)
def _by_class():
    return {kind.layer_class: kind for kind in KINDS}


def kind_of(layer, exact=False):
    """The `UpdatableKind` of a layer, or None if its input channels cannot be trained.

    Args:
        layer: a Keras layer (or any object).
        exact: bool, refuse a subclass of a registered class unless its row
            accepts subclasses (for readers that re-implement the layer).

    Returns:
        The row of the most specific registered class in `type(layer).__mro__`,
        or None.
    """
    by_class = _by_class()
    for cls in type(layer).__mro__:
        kind = by_class.get(cls)
        if kind is not None:
            if exact and cls is not type(layer) and not kind.subclasses:
                return None
            return kind
    return None


def by_name(name):
    """The row named `name` (`"conv"`, `"depthwise"`, `"dense"`).

    Raises:
        KeyError: no such kind; the message lists the kinds.
    """
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(f"No updatable layer kind {name!r}; the kinds are "
                   f"{[kind.name for kind in KINDS]}.")


def layer_classes():
    """The Keras layer classes whose input channels can be selected."""
    return tuple(kind.layer_class for kind in KINDS)


def class_names(conjunction="or"):
    """The classes as a phrase for messages: `"Conv2D, DepthwiseConv2D or Dense"`."""
    names = [kind.class_name for kind in KINDS]
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}" if len(names) > 1 else names[0]


def channel_axis_of_rank(rank):
    """The input-channel axis of a kernel with `rank` dimensions (0 if no kind has that rank)."""
    return next((kind.channel_axis for kind in KINDS if kind.kernel_rank == rank), 0)
