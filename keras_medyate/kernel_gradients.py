"""Kernel gradients of selected input channels only.

A step that trains a few input channels of a layer needs the kernel gradient
of those channels alone. TensorFlow's own gradient of a convolution computes
every channel (`Conv2DBackpropFilter` over the whole input) and keeps the whole
input alive for it. Here the input channels that train are gathered in the
forward pass and the kernel gradient is computed from them and the gradient
at the layer's output:

* `Conv2D`: `Conv2DBackpropFilter(x[..., channels], dy)`;
* `DepthwiseConv2D`: the same with `DepthwiseConv2dNativeBackpropFilter`, on
  the output channels those input channels feed (`c · multiplier + m`);
* `Dense`: `x[..., channels]ᵀ · dy` over every position.

The result is scattered into a kernel-shaped gradient that is zero outside the
channels; on those channels it is the dense gradient's slice (the same sums,
up to float summation order). It applies to layers whose output is the affine
map itself (no fused activation), channels-last, ungrouped and undilated for
`Conv2D`; `supports` says which. The channels are a tensor (read from the
mask variable in the step): a new selection needs no retrace.

A kernel with a regularizer (`kernel_regularizer=`, or any `regularizer` on
the kernel variable) also has the regularization loss's gradient, which does
not flow through the layer's output: `regularizer_gradient` computes it from
the kernel alone, and `SubnetworkModel` adds it on the selected channels, so
the selected gradient equals the dense one there with regularizers too.

Example:

>>> import keras, numpy as np, tensorflow as tf
>>> from keras_medyate import kernel_gradients
>>> layer = keras.layers.Conv2D(4, 3, padding="same")
>>> x = tf.random.normal((2, 6, 6, 5)); layer.build(x.shape)
>>> with tf.GradientTape() as tape:
...     tape.watch(layer.kernel.value)
...     y = layer(x)
>>> dense = tape.gradient(y, layer.kernel.value)
>>> mask = tf.constant([0.0, 1.0, 0.0, 1.0, 0.0])
>>> channels = kernel_gradients.selected_channels(mask)
>>> selected = kernel_gradients.selected_kernel_gradient(
...     layer, kernel_gradients.gather_channels(x, channels), tf.ones_like(y), channels, mask)
>>> bool(np.allclose(selected.numpy()[:, :, [1, 3]], dense.numpy()[:, :, [1, 3]], atol=1e-5))
True
>>> float(abs(selected.numpy()[:, :, [0, 2, 4]]).max())
0.0
"""

import keras
import tensorflow as tf

from keras_medyate import layer_kinds


def supports(layer):
    """True if `selected_kernel_gradient` computes this layer's kernel gradient.

    The layer must be of an updatable kind (`layer_kinds.kind_of(layer,
    exact=True)`) with a selected-channel gradient here, and its output must
    be the affine map itself (the gradient at its output is the gradient at
    the convolution's output); a spatial kind must be channels-last and
    undilated, a grouped one (`Conv2D`) ungrouped.
    """
    activation = getattr(layer, "activation", None)
    if activation not in (None, keras.activations.linear):
        return False
    kind = layer_kinds.kind_of(layer, exact=True)
    if kind is None or kind.name not in _GRADIENTS:
        return False
    if kind.spatial and (layer.data_format != "channels_last"
                         or tuple(layer.dilation_rate) != (1, 1)):
        return False
    return not kind.grouped or layer.groups == 1


def selected_channels(mask):
    """int32 indices of the channels whose mask is on; `[0]` if there is none.

    Channel 0 stands in for an empty selection (a zero-channel convolution is
    not computed by every kernel); `selected_kernel_gradient` zeroes its
    gradient (its mask is off).
    """
    channels = tf.cast(tf.where(mask > 0)[:, 0], tf.int32)
    with_placeholder = tf.concat([channels, tf.zeros((1,), tf.int32)], axis=0)
    return with_placeholder[: tf.maximum(tf.size(channels), 1)]


def gather_channels(inputs, channels):
    """The input channels that train (last axis), computed in the forward pass."""
    return tf.gather(inputs, channels, axis=-1)


def selected_kernel_gradient(layer, selected_inputs, output_gradient, channels, mask):
    """Kernel-shaped gradient, zero outside the channels whose mask is on.

    Args:
        layer: a layer `supports` accepts.
        selected_inputs: `gather_channels(layer input, channels)`.
        output_gradient: the loss gradient at the layer's output.
        channels: `selected_channels(mask)`: int32 indices of the input
            channels (kernel axis 2 for convolutions, 0 for Dense).
        mask: float (C,) mask over the input channels; the placeholder
            channel of an empty selection has it off, so its gradient is 0.
    """
    kernel_shape = tuple(int(d) for d in layer.kernel.shape)
    # Under a mixed-precision policy the tapped input may precede the layer's
    # autocast: compute in the layer's dtype, return in the kernel's.
    compute_dtype = layer.compute_dtype
    selected_inputs = tf.cast(selected_inputs, compute_dtype)
    output_gradient = tf.cast(output_gradient, compute_dtype)
    # Channels first (k, ...), scaled by their mask (0 for the placeholder), scattered.
    gradient = _selected_gradient(layer, selected_inputs, output_gradient, channels,
                                  kernel_shape)
    trained = tf.cast(tf.gather(mask, channels), gradient.dtype)
    gradient = gradient * tf.reshape(trained, [-1] + [1] * (len(gradient.shape) - 1))
    axis = layer_kinds.kind_of(layer).channel_axis
    scattered = tf.scatter_nd(channels[:, None], gradient,
                              (kernel_shape[axis], *(int(d) for d in gradient.shape[1:])))
    if axis != 0:  # back to the kernel's layout, e.g. (kh, kw, C, C')
        order = list(range(1, len(kernel_shape)))
        order.insert(axis, 0)
        scattered = tf.transpose(scattered, order)
    return tf.cast(scattered, layer.kernel.dtype)


def _selected_gradient(layer, selected_inputs, output_gradient, channels, kernel_shape):
    """The selected channels' gradient, channels first: (k, units) or (k, kh, kw, C')."""
    gradient = _GRADIENTS[layer_kinds.kind_of(layer).name]
    return gradient(layer, selected_inputs, output_gradient, channels, kernel_shape)


def _dense_gradient(layer, selected_inputs, output_gradient, channels, kernel_shape):
    """`x[..., channels]ᵀ · dy` over every position: (k, units)."""
    del layer
    units = kernel_shape[1]
    inputs = tf.reshape(selected_inputs, (-1, tf.size(channels)))
    return tf.matmul(inputs, tf.reshape(output_gradient, (-1, units)), transpose_a=True)


def _conv_gradient(layer, selected_inputs, output_gradient, channels, kernel_shape):
    """`Conv2DBackpropFilter` on the selected input channels: (k, kh, kw, C')."""
    kh, kw, _, last = kernel_shape
    gradient = tf.raw_ops.Conv2DBackpropFilter(
        input=selected_inputs, filter_sizes=tf.stack([kh, kw, tf.size(channels), last]),
        out_backprop=output_gradient, strides=(1, *layer.strides, 1),
        padding=layer.padding.upper())
    return tf.transpose(gradient, (2, 0, 1, 3))


def _depthwise_gradient(layer, selected_inputs, output_gradient, channels, kernel_shape):
    """`DepthwiseConv2dNativeBackpropFilter` on the selected channels and the output
    channels they feed (`c · multiplier + m`): (k, kh, kw, multiplier)."""
    kh, kw, _, multiplier = kernel_shape
    outputs = tf.reshape(channels[:, None] * multiplier + tf.range(multiplier)[None, :], (-1,))
    gradient = tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
        input=selected_inputs, filter_sizes=tf.stack([kh, kw, tf.size(channels), multiplier]),
        out_backprop=tf.gather(output_gradient, outputs, axis=-1),
        strides=(1, *layer.strides, 1), padding=layer.padding.upper())
    return tf.transpose(gradient, (2, 0, 1, 3))


#: The selected-channel kernel gradient of each `layer_kinds` kind, channels first.
_GRADIENTS = {"conv": _conv_gradient, "depthwise": _depthwise_gradient,
              "dense": _dense_gradient}


def regularizer_gradient(kernel, scale_loss):
    """Gradient of the kernel's regularization loss, or None without a regularizer.

    The loss a training step differentiates holds the regularizers' penalties
    (`Model.compute_loss` adds `Model.losses`); the gradient at a layer's output
    misses that term, so the selected-channel path adds this one.

    Args:
        kernel: the kernel variable (a Keras variable; its `regularizer`
            attribute, set by `kernel_regularizer=`, is read).
        scale_loss: the optimizer's `scale_loss`, applied to the penalty as the
            step applies it to the whole loss (a loss-scale factor or a
            `LossScaleOptimizer`'s dynamic scale).

    Returns:
        A tensor of the kernel's shape and dtype, or None if the kernel has no
        regularizer.
    """
    regularizer = getattr(kernel, "regularizer", None)
    if regularizer is None:
        return None
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(kernel.value)
        penalty = scale_loss(regularizer(kernel.value))
    return tape.gradient(penalty, kernel.value)
