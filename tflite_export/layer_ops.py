"""Forward and backward of each supported layer, in builtin-convertible TF ops.

TensorFlow's own gradients of convolutions, ReLU and the softmax
cross-entropy are kernels (`Conv2DBackpropFilter`, `ReluGrad`,
`SparseSoftmaxCrossEntropyWithLogits`…) that LiteRT only runs through the Flex
delegate, which current runtimes no longer ship. Every function here is
written with ops that the converter lowers to LiteRT builtins
(`CONV_2D`, `DEPTHWISE_CONV_2D`, `TRANSPOSE_CONV`, `FULLY_CONNECTED`,
`BATCH_MATMUL`, `STRIDED_SLICE`, `PAD`, `RESHAPE`, `SELECT_V2`, `SUM`…):

- kernel gradient of a k×k conv: for every tap (i, j), the output gradient
  moved onto the input grid where that tap reads (zero-inserted for strides,
  padded, sliced: `output_grad_taps`), times the whole input:
  `dK[i, j] = Uᵢⱼᵀ · X` (one matmul per tap; the input is never sliced, so
  no per-tap copy of it is kept from the forward pass);
- input gradient of a conv: `conv2d_transpose` of the output gradient;
- depthwise kernel gradient: per tap, `sum(X * Uᵢⱼ)` over batch and
  positions;
- depthwise input gradient: depthwise conv of the zero-inserted, padded
  output gradient with the spatially flipped kernel;
- ReLU / clipped ReLU: a boolean mask `0 < y < max` taken in the forward pass;
- hard-sigmoid (`relu6(x + 3) / 6`), hard-swish, sigmoid, swish: the
  derivative TensorFlow's own gradient computes, from what the forward pass
  keeps (a mask, the input or the output: `activation_saved`);
- multiply (squeeze-and-excitation gating): `dY · other`, summed over the
  axes an input was broadcast along;
- average pooling: the output gradient divided by each window's count of
  real (unpadded) elements, spread back by a depthwise transposed conv with
  a kernel of ones; max pooling: the output gradient routed, in each window,
  to the first element (row-major) equal to the maximum, as TensorFlow does;
- cross-entropy: `logsumexp(logits) - logits[y]`, gradient
  `(softmax(logits) - onehot(y)) / batch`.

All shapes are static (NHWC, batch included) except in the inference path.

Example:

>>> import numpy as np, tensorflow as tf
>>> from tflite_export import layer_ops
>>> x = tf.constant(np.random.rand(2, 5, 5, 3), tf.float32)
>>> dz = tf.ones((2, 3, 3, 4))
>>> layer_ops.conv_kernel_grad(x, dz, (3, 3), (1, 1), ((0, 0), (0, 0))).shape
TensorShape([3, 3, 3, 4])
"""

import numpy as np
import tensorflow as tf


def pad_nhwc(x, pads):
    """Zero-pads the two spatial axes of an NHWC tensor by ((top, bottom), (left, right))."""
    (top, bottom), (left, right) = pads
    if top == bottom == left == right == 0:
        return x
    return tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])


def crop_nhwc(x, pads, height, width):
    """Inverse of `pad_nhwc`: keeps `height` x `width` after the leading pads."""
    (top, _), (left, _) = pads
    if x.shape[1] == height and x.shape[2] == width and top == left == 0:
        return x
    return x[:, top:top + height, left:left + width, :]


# --- forward ------------------------------------------------------------------


def conv_forward(x, kernel, bias, strides, padding):
    """Conv2D as Keras computes it: `conv2d(x, K) + b` (NHWC)."""
    y = tf.nn.conv2d(x, kernel, strides=[1, *strides, 1], padding=padding.upper())
    return y if bias is None else tf.nn.bias_add(y, bias)


def depthwise_forward(x, kernel, bias, strides, padding):
    """DepthwiseConv2D: `depthwise_conv2d(x, K) + b`."""
    y = tf.nn.depthwise_conv2d(x, kernel, strides=[1, *strides, 1], padding=padding.upper())
    return y if bias is None else tf.nn.bias_add(y, bias)


def dense_forward(x, kernel, bias):
    """Dense over the last axis (inputs of any rank).

    The product is a rank-3 `BATCH_MATMUL` (batch of one): the TF 2.21
    converter turns a rank-2 `MatMul` into `FULLY_CONNECTED`, fuses a
    following ReLU into it, and then drops that fused ReLU when it rewrites a
    `FULLY_CONNECTED` with variable weights into `BATCH_MATMUL` (seen when
    the bias is absent or zero). `BATCH_MATMUL` has no fused activation.
    """
    units = int(kernel.shape[-1])
    flat = tf.reshape(x, [1, -1, int(x.shape[-1])])
    y = tf.matmul(flat, tf.expand_dims(kernel, 0))
    y = tf.reshape(y, _with_last(x, units))
    return y if bias is None else y + bias


def relu_forward(x, max_value):
    """ReLU (max_value None), ReLU6 (6) or clipped ReLU."""
    if max_value is None:
        return tf.nn.relu(x)
    if float(max_value) == 6.0:
        return tf.nn.relu6(x)
    return tf.minimum(tf.nn.relu(x), tf.constant(max_value, x.dtype))


def relu_mask(y, max_value):
    """Where the (clipped) ReLU passes gradient, read from its output `y`."""
    positive = tf.greater(y, 0.0)
    if max_value is None:
        return positive
    return tf.logical_and(positive, tf.less(y, tf.constant(max_value, y.dtype)))


def _with_last(x, size):
    shape = tf.shape(x) if any(d is None for d in x.shape) else list(x.shape)
    if isinstance(shape, list):
        return shape[:-1] + [int(size)]
    return tf.concat([shape[:-1], [int(size)]], axis=0)


# --- loss -----------------------------------------------------------------------


def cross_entropy(logits, labels):
    """Mean sparse categorical cross-entropy and its gradient w.r.t. the logits.

    Args:
        logits: float32 (B, K).
        labels: int32 (B,).

    Returns:
        (loss scalar, dlogits (B, K)).
    """
    batch, classes = int(logits.shape[0]), int(logits.shape[1])
    onehot = tf.one_hot(labels, classes, dtype=logits.dtype)
    top = tf.reduce_max(logits, axis=1, keepdims=True)
    shifted = logits - top
    exp = tf.exp(shifted)
    total = tf.reduce_sum(exp, axis=1, keepdims=True)
    log_total = tf.math.log(total)
    per_sample = tf.reduce_sum(onehot * (log_total - shifted), axis=1)
    loss = tf.reduce_sum(per_sample) / float(batch)
    dlogits = (exp / total - onehot) / float(batch)
    return loss, dlogits


# --- backward: convolutions -----------------------------------------------------


def output_grad_taps(dz, input_hw, kernel_size, strides, pads):
    """The output gradient seen from every tap of the kernel, on the input grid.

    Tap (i, j) of a conv reads input position `s·o + (i, j) - pad` for output
    position `o`, so `dK[i, j] = Σ_q X[q]ᵀ · U[q + pad - (i, j)]`, where `U` is
    `dZ` with `s - 1` zeros inserted between positions (`zero_insert`). The
    slice of `U` for a tap is built from the output gradient only: the input
    `X` is read whole, never sliced, so the converter cannot schedule per-tap
    copies of it in the forward pass and keep them alive until the backward
    pass (it did with slices of the padded input: 117.7 of 141 MB of the
    MCUNet `train` signature with every channel trained).

    Args:
        dz: (B, Ho, Wo, C) output gradient.
        input_hw: (H, W) of the unpadded input.
        kernel_size, strides, pads: of the conv.

    Returns:
        list of (B, H, W, C) tensors in tap order (i major, j minor).
    """
    kh, kw = kernel_size
    height, width = input_hw
    (top, _), (left, _) = pads
    grid = zero_insert(dz, strides)
    # Row r of `grid` is read at input row q by tap i with r = q + top - i.
    pad_top, pad_left = max(0, kh - 1 - top), max(0, kw - 1 - left)
    pad_bottom = max(0, height + top - int(grid.shape[1]))
    pad_right = max(0, width + left - int(grid.shape[2]))
    if pad_top or pad_bottom or pad_left or pad_right:
        grid = tf.pad(grid, [[0, 0], [pad_top, pad_bottom], [pad_left, pad_right], [0, 0]])
    taps = []
    for i in range(kh):
        for j in range(kw):
            row, col = top - i + pad_top, left - j + pad_left
            if (row, col) == (0, 0) and tuple(grid.shape[1:3]) == (height, width):
                taps.append(grid)
            else:
                taps.append(grid[:, row:row + height, col:col + width, :])
    return taps


def conv_kernel_grad(x, dz, kernel_size, strides, pads, input_hw=None):
    """dL/dK of a Conv2D (groups=1): one `Uᵢⱼᵀ · X` matmul per tap (`output_grad_taps`).

    Args:
        x: the conv input, unpadded: (B, H, W, Ci), or already flattened to
            (B·H·W, Ci) (then `input_hw` gives (H, W)). `Ci` may be dynamic
            (the selected input channels only).
        dz: gradient w.r.t. the conv output before the bias (B, Ho, Wo, Co).
        kernel_size: (kh, kw).
        strides: (sh, sw).
        pads: ((top, bottom), (left, right)) zero padding of `x`.
        input_hw: (H, W), needed when `x` is flat.

    Returns:
        (kh, kw, Ci, Co).
    """
    kh, kw = kernel_size
    batch = int(dz.shape[0])
    height, width = input_hw if input_hw is not None else (int(d) for d in x.shape[1:3])
    co = int(dz.shape[3])
    positions = batch * height * width
    flat_x = x if len(x.shape) == 2 else tf.reshape(x, [positions, -1])
    products = []
    for tap in output_grad_taps(dz, (height, width), kernel_size, strides, pads):
        # (Co, Ci): the transpose falls on the backward-pass operand.
        products.append(tf.matmul(tf.reshape(tap, [positions, co]), flat_x, transpose_a=True))
    stacked = products[0][None] if len(products) == 1 else tf.stack(products, axis=0)
    return tf.reshape(tf.transpose(stacked, [0, 2, 1]), [kh, kw, -1, co])


def conv_input_grad(dz, kernel, input_shape, strides, pads):
    """dL/dX of a Conv2D: `conv2d_transpose` on the padded domain, then crop."""
    batch, height, width, ci = (int(d) for d in input_shape)
    kh, kw, _, co = (int(d) for d in kernel.shape)
    if (kh, kw) == (1, 1) and tuple(strides) == (1, 1) and pads == ((0, 0), (0, 0)):
        flat = tf.matmul(tf.reshape(dz, [-1, co]), kernel[0, 0], transpose_b=True)
        return tf.reshape(flat, [batch, height, width, ci])
    (top, bottom), (left, right) = pads
    padded = [batch, height + top + bottom, width + left + right, ci]
    dxp = tf.nn.conv2d_transpose(dz, kernel, output_shape=padded,
                                 strides=[1, *strides, 1], padding="VALID")
    return crop_nhwc(dxp, pads, height, width)


def depthwise_kernel_grad(x, dz, kernel_size, strides, pads, depth_multiplier):
    """dL/dK of a DepthwiseConv2D: per tap, `sum(X * Uᵢⱼ)` (kh, kw, C, dm).

    `x` (B, H, W, C) and `dz` (B, Ho, Wo, C·dm) hold the same C input channels
    (C may be dynamic: the selected ones); the taps come from the output
    gradient (`output_grad_taps`), never from slices of `x`.
    """
    kh, kw = kernel_size
    batch, height, width = (int(d) for d in x.shape[:3])
    if depth_multiplier > 1:
        x = tf.expand_dims(x, -1)
    taps = []
    for tap in output_grad_taps(dz, (height, width), kernel_size, strides, pads):
        if depth_multiplier > 1:
            tap = tf.reshape(tap, [batch, height, width, -1, depth_multiplier])
        taps.append(tf.reduce_sum(x * tap, axis=[0, 1, 2]))
    return tf.reshape(tf.stack(taps, axis=0), [kh, kw, -1, depth_multiplier])


def zero_insert(dz, strides):
    """Inserts `stride - 1` zeros between the spatial positions of an NHWC tensor.

    Only 4-D PAD and RESHAPE ops are used; the channel count may be dynamic.
    """
    sh, sw = strides
    batch, height, width = (int(d) for d in dz.shape[:3])
    if sh > 1:
        z = tf.reshape(dz, [batch, height, 1, -1])
        z = tf.pad(z, [[0, 0], [0, 0], [0, sh - 1], [0, 0]])
        z = tf.reshape(z, [batch, height * sh, width, -1])
        dz = z[:, :(height - 1) * sh + 1]
        height = (height - 1) * sh + 1
    if sw > 1:
        z = tf.reshape(dz, [batch * height, width, 1, -1])
        z = tf.pad(z, [[0, 0], [0, 0], [0, sw - 1], [0, 0]])
        z = tf.reshape(z, [batch, height, width * sw, -1])
        dz = z[:, :, :(width - 1) * sw + 1]
    return dz


def depthwise_input_grad(dz, kernel, input_shape, strides, pads):
    """dL/dX of a DepthwiseConv2D: depthwise conv of the zero-inserted dZ with the
    flipped kernel (summed over the depth multiplier), then crop."""
    batch, height, width, channels = (int(d) for d in input_shape)
    kh, kw, _, multiplier = (int(d) for d in kernel.shape)
    (top, bottom), (left, right) = pads
    padded_h, padded_w = height + top + bottom, width + left + right
    dzu = zero_insert(dz, strides)
    full_h = int(dzu.shape[1]) + kh - 1
    full_w = int(dzu.shape[2]) + kw - 1
    dzu = tf.pad(dzu, [[0, 0], [kh - 1, kh - 1 + padded_h - full_h],
                       [kw - 1, kw - 1 + padded_w - full_w], [0, 0]])
    # Two one-axis reverses, not one two-axis REVERSE_V2: TFLite 2.13/2.14 (tflite-runtime)
    # reverse only the first of two axes (benchmarks/runtimes/matrix.md).
    flipped = tf.reverse(tf.reverse(kernel, axis=[0]), axis=[1])
    flipped = tf.reshape(flipped, [kh, kw, channels * multiplier, 1])
    dxp = tf.nn.depthwise_conv2d(dzu, flipped, strides=[1, 1, 1, 1], padding="VALID")
    if multiplier > 1:
        dxp = tf.reduce_sum(
            tf.reshape(dxp, [batch, padded_h, padded_w, channels, multiplier]), axis=-1)
    return crop_nhwc(dxp, pads, height, width)


# --- backward: dense and the rest -------------------------------------------------


def dense_kernel_grad(x, dz):
    """dL/dW of a Dense layer: `Xᵀ · dZ` over every leading position.

    `x` may hold a dynamic number of input features (the selected ones); its
    leading dimensions are static.
    """
    positions = 1
    for d in x.shape[:-1]:
        positions *= int(d)
    flat_x = tf.reshape(x, [positions, -1])
    flat_dz = tf.reshape(dz, [positions, int(dz.shape[-1])])
    # (units, features): the transpose falls on the backward-pass operand.
    return tf.transpose(tf.matmul(flat_dz, flat_x, transpose_a=True))


def after(x, dependency):
    """`x`, unchanged, but computed after `dependency` (an exact `x + 0`).

    The converter orders ops by data dependencies only: a copy that nothing
    in the forward pass reads is scheduled late, keeping its (large) source
    alive. Adding a zero derived from one element of the copy makes the
    consumer of `x` wait for it; `x + 0` is `x` for every finite `x`.
    """
    first = tf.reshape(tf.slice(dependency, [0] * len(dependency.shape),
                                [1] * len(dependency.shape)), [])
    zero = tf.minimum(tf.abs(first), 0.0)
    return x + zero


def select_channels(x, indices, depth_multiplier=1):
    """The channels `indices` of the last axis of `x` (`GATHER`).

    With `depth_multiplier` m > 1 the last axis holds `C·m` channels in
    groups of m (a depthwise output) and whole groups are taken.
    """
    if depth_multiplier == 1:
        return tf.gather(x, indices, axis=len(x.shape) - 1)
    grouped = tf.reshape(x, [*[int(d) for d in x.shape[:-1]], -1, depth_multiplier])
    picked = tf.gather(grouped, indices, axis=len(x.shape) - 1)
    return tf.reshape(picked, [*[int(d) for d in x.shape[:-1]], -1])


def dense_input_grad(dz, kernel, input_shape):
    """dL/dX of a Dense layer: `dZ · Wᵀ`."""
    flat = tf.matmul(tf.reshape(dz, [-1, int(dz.shape[-1])]), kernel, transpose_b=True)
    return tf.reshape(flat, [int(d) for d in input_shape])


def bias_grad(dz):
    """dL/db: the output gradient summed over every axis but the last."""
    return tf.reduce_sum(tf.reshape(dz, [-1, int(dz.shape[-1])]), axis=0)


# --- activations, multiply, pooling -------------------------------------------


def hard_sigmoid(x):
    """Keras' hard-sigmoid: `relu6(x + 3) / 6`."""
    return tf.nn.relu6(x + tf.constant(3.0, x.dtype)) / tf.constant(6.0, x.dtype)


class _Function:
    """One activation of the `activation` step kind: its forward, what its backward
    reads (`saves`: a bool mask of its input, its input or its output) and its
    input gradient."""

    saves = "input"

    def forward(self, x):
        raise NotImplementedError

    def saved(self, x, y):
        """The tensor `saves` names (x: input, y: output)."""
        return y if self.saves == "output" else x

    def input_grad(self, dy, saved):
        raise NotImplementedError


class _HardSigmoid(_Function):
    saves = "input_mask"

    def forward(self, x):
        return hard_sigmoid(x)

    def saved(self, x, y):
        return _hard_sigmoid_mask(x)

    def input_grad(self, dy, saved):
        return tf.where(saved, dy / tf.constant(6.0, dy.dtype), tf.zeros_like(dy))


class _HardSilu(_Function):
    def forward(self, x):
        return x * hard_sigmoid(x)

    def input_grad(self, dy, saved):
        x = saved
        through_gate = tf.where(_hard_sigmoid_mask(x), (dy * x) / tf.constant(6.0, dy.dtype),
                                tf.zeros_like(dy))
        return dy * hard_sigmoid(x) + through_gate


class _Sigmoid(_Function):
    saves = "output"

    def forward(self, x):
        return tf.sigmoid(x)

    def input_grad(self, dy, saved):
        return dy * (saved * (1.0 - saved))


class _Silu(_Function):
    def forward(self, x):
        return x * tf.sigmoid(x)

    def input_grad(self, dy, saved):
        sigmoid = tf.sigmoid(saved)
        return dy * (sigmoid * (1.0 + saved * (1.0 - sigmoid)))


#: The activations of the `activation` step kind (Keras function names), one
#: class each: `graph.ACTIVATIONS` lists them with the ReLUs and "linear".
ACTIVATION_FUNCTIONS = {"hard_sigmoid": _HardSigmoid(), "hard_silu": _HardSilu(),
                        "sigmoid": _Sigmoid(), "silu": _Silu()}

#: What the backward pass of each activation reads: a mask of its input
#: (bool), its input or its output (float).
ACTIVATION_SAVES = {name: function.saves for name, function in ACTIVATION_FUNCTIONS.items()}


def _activation(function):
    if function not in ACTIVATION_FUNCTIONS:
        raise ValueError(f"Unknown activation {function!r}.")
    return ACTIVATION_FUNCTIONS[function]


def activation_forward(x, function):
    """`function` of `ACTIVATION_FUNCTIONS` as Keras computes it."""
    return _activation(function).forward(x)


def activation_saved(x, y, function):
    """The tensor `ACTIVATION_SAVES` names for `function` (x: input, y: output)."""
    return _activation(function).saved(x, y)


def _hard_sigmoid_mask(x):
    shifted = x + tf.constant(3.0, x.dtype)
    return tf.logical_and(tf.greater(shifted, 0.0), tf.less(shifted, 6.0))


def activation_input_grad(dy, saved, function):
    """dL/dX of an activation from `activation_saved`'s tensor."""
    return _activation(function).input_grad(dy, saved)


def multiply_input_grad(dy, other, input_shape):
    """dL/dA of `A * other` (A of `input_shape`, possibly broadcast)."""
    product = dy * other
    axes = [axis for axis, (size, full) in enumerate(zip(input_shape, product.shape))
            if int(size) == 1 and int(full) != 1]
    return tf.reduce_sum(product, axis=axes, keepdims=True) if axes else product


def pool_forward(x, kind, pool_size, strides, padding):
    """`AVERAGE_POOL_2D` / `MAX_POOL_2D` as Keras' pooling layers compute them."""
    pool = tf.nn.max_pool2d if kind == "max_pool" else tf.nn.avg_pool2d
    return pool(x, ksize=pool_size, strides=strides, padding=padding.upper())


def avg_pool_input_grad(dy, input_shape, pool_size, strides, pads):
    """dL/dX of an average pooling (SAME windows average their real elements only)."""
    channels = int(input_shape[-1])
    counts = []
    for size, out, kernel, stride, (before, _) in zip(
            input_shape[1:3], dy.shape[1:3], pool_size, strides, pads):
        starts = np.arange(int(out)) * stride - before
        counts.append(np.minimum(starts + kernel, int(size)) - np.maximum(starts, 0))
    count = np.outer(counts[0], counts[1]).astype(np.float32)[None, :, :, None]
    ones = tf.ones([*pool_size, channels, 1], dy.dtype)
    return depthwise_input_grad(dy / tf.constant(count), ones, input_shape, strides, pads)


def max_pool_input_grad(x, y, dy, pool_size, strides, pads):
    """dL/dX of a max pooling: each window's gradient to its first maximum (row-major)."""
    batch, height, width, channels = (int(d) for d in x.shape)
    out_h, out_w = int(y.shape[1]), int(y.shape[2])
    (top, bottom), (left, right) = pads
    lowest = tf.constant(x.dtype.min, x.dtype)
    padded = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=lowest)
    (ph, pw), (sh, sw) = pool_size, strides
    taken, routed = None, []
    for i in range(ph):
        for j in range(pw):
            window = padded[:, i: i + sh * (out_h - 1) + 1: sh, j: j + sw * (out_w - 1) + 1: sw, :]
            hit = tf.equal(window, y)
            if taken is None:
                taken = hit
            else:
                hit = tf.logical_and(hit, tf.logical_not(taken))
                taken = tf.logical_or(taken, hit)
            routed.append(tf.where(hit, dy, tf.zeros_like(dy)))
    # Tap t of channel c is depthwise output channel c·T + t: one transposed
    # depthwise conv with a one-hot kernel puts every tap's gradient back.
    taps = ph * pw
    stacked = tf.reshape(tf.stack(routed, axis=-1), [batch, out_h, out_w, channels * taps])
    one_hot = np.zeros((ph, pw, channels, taps), np.float32)
    for i in range(ph):
        for j in range(pw):
            one_hot[i, j, :, i * pw + j] = 1.0
    return depthwise_input_grad(stacked, tf.constant(one_hot), x.shape, strides, pads)


def gap_input_grad(dy, input_shape):
    """dL/dX of a global average pooling: dY / (H W) broadcast over the positions."""
    batch, height, width, channels = (int(d) for d in input_shape)
    dy = tf.reshape(dy, [batch, 1, 1, channels]) / float(height * width)
    return dy * tf.ones([1, height, width, 1], dy.dtype)
