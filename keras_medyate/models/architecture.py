"""Architecture → Keras: a float functional model from a tiny-training checkpoint.

The checkpoint (nested dicts from `keras_medyate.models.checkpoint`) describes
a quantized inverted-residual network; this module rebuilds the architecture
it describes as a Keras 3 functional model and loads the dequantized
(float32) weights:

* convolution weights: `w_float = w_int8 * w_scales[out]`, converted from the
  PyTorch layout `(out, in / groups, kh, kw)` to Keras' `(kh, kw, in, out)`
  (`(kh, kw, in, multiplier)` for depthwise convolutions);
* biases: `b_float = b_int32 * x_scale * w_scales[out]` (the int32 bias lives in
  the accumulator's scale; batch normalization is already folded into it);
* padding: symmetric `k // 2` zeros on each side, as in PyTorch. A stride-1
  layer (odd kernel) uses `padding="same"`, which is exactly that and costs
  no pad / slice pair; a stride-2 layer gets an explicit `ZeroPadding2D`
  (named `<layer>_pad`) followed by a `padding="valid"` convolution
  (Keras' `"same"` pads asymmetrically there);
* activations: the checkpoints store no activation function (`act` is
  `None`); the clipping is encoded in each layer's *output* quantization
  range. A layer whose output zero point is the int8 minimum (-128) has the
  real range `[0, 255 * y_scale]`: it is a clipped ReLU,
  `ReLU(max_value=255 * y_scale)`, built as a `BoundedReLU` (same values,
  a one-mask gradient; see `keras_medyate.models.bounded_relu`). That upper
  bound is exactly 6 (ReLU6) for 11 of the 28 ReLU layers of MCUNet-5fps (9
  of 34 in MobileNetV2-w0.35) and between 2.07 and 6 for the others (quantization calibration tightened the
  original ReLU6 to the observed maximum). Layers with any other zero point are
  linear (the block projections and the classifier). Checked numerically: fed
  the int8 network's own inputs, every layer of the float model reproduces the
  int8 outputs to within half a quantization step, and on natural images the
  tightened bounds are essentially never reached, so `clip="relu6"` gives the
  same predictions.

The weights are released by MIT HAN Lab under the MIT license
(`LICENSE.tiny-training`); keep that notice wherever the weights, or models
derived from them, are redistributed.
"""

import math

import keras
import numpy as np

from keras_medyate.models import checkpoint
from keras_medyate.models.bounded_relu import BoundedReLU

#: How the ReLUs are clipped: at the stored output range, or at 6.
CLIPS = ("quantized", "relu6")


def check_arguments(classes, input_shape, clip):
    """Validates the build options before any file is read.

    Returns:
        `(classes, input_shape)` normalized (an int or None, a tuple).

    Raises:
        ValueError: `clip` is not one of `CLIPS`, `classes` is not None or
            a positive int, or `input_shape` is not `(height, width, channels)`.
    """
    if clip not in CLIPS:
        raise ValueError(f"clip must be 'quantized' or 'relu6', got {clip!r}.")
    if classes is not None:
        if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 1:
            raise ValueError(
                f"classes must be None (keep the ImageNet head) or a positive int, got {classes!r}."
            )
        classes = int(classes)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or any(
        d is not None and (not isinstance(d, (int, np.integer)) or d < 1) for d in input_shape
    ):
        raise ValueError(
            f"input_shape must be (height, width, channels) with positive ints (or None for "
            f"height/width), got {input_shape!r}."
        )
    return classes, input_shape


def _dequantize(conv):
    """Returns the float32 (PyTorch-layout) weight and bias of a quantized conv entry."""
    params = conv["params"]
    w_scales = np.asarray(params["w_scales"], dtype=np.float64).reshape(-1)
    weight = params["weight"].astype(np.float64) * w_scales[:, None, None, None]
    bias = params["bias"].astype(np.float64) * float(params["x_scale"]) * w_scales
    return weight.astype(np.float32), bias.astype(np.float32)


def _activation_bound(conv, clip):
    """Upper clipping bound of the layer's ReLU, or None if the layer is linear.

    A ReLU-terminated layer is recognised by its output quantization range starting at
    exactly zero (zero point = int8 minimum). `clip="quantized"` uses the upper end of
    that range, `(127 - y_zero) * y_scale`; `clip="relu6"` uses 6.
    """
    act = conv.get("act")
    params = conv["params"]
    relu_from_range = round(float(params["y_zero"])) == -128
    if act == "relu6" or (act is None and relu_from_range):
        if clip == "relu6" or act == "relu6":
            return 6.0
        bound = float((127 - float(params["y_zero"])) * float(params["y_scale"]))
        # 255 * (6 / 255) is 6 up to float rounding: keep an exact ReLU6 (fusable by
        # converters such as TFLite).
        return 6.0 if abs(bound - 6.0) < 1e-6 else bound
    if act == "relu":
        return math.inf
    return None


def _kind(conv):
    groups = int(conv.get("groups", 1) or 1)
    cin = int(conv["in_channel"])
    if groups == 1:
        return "conv"
    if groups == cin:
        return "depthwise"
    return "grouped"


def _keras_kernel(conv, weight):
    """Converts a PyTorch conv weight (out, in/groups, kh, kw) to the Keras layout."""
    if _kind(conv) == "depthwise":
        cin = int(conv["in_channel"])
        multiplier = weight.shape[0] // cin
        _, _, kh, kw = weight.shape
        # PyTorch output channel o = c * multiplier + m, same order as Keras' depthwise output.
        return weight.reshape(cin, multiplier, kh, kw).transpose(2, 3, 0, 1)
    return weight.transpose(2, 3, 1, 0)


def _conv_block(x, conv, name, clip, weights):
    """Appends (padding +) convolution (+ clipped ReLU) for one checkpoint entry."""
    kh, kw = checkpoint.as_pair(conv.get("kernel_size", 1), "", name)
    strides = checkpoint.stride_of(conv)
    kind = _kind(conv)
    # Stride 1 with an odd kernel: TensorFlow's SAME padding is the symmetric
    # k // 2 (no pad / slice pair in the forward and backward pass). Other
    # layers keep PyTorch's symmetric padding explicitly (SAME would pad
    # asymmetrically for stride 2).
    padding = "valid"
    if strides == (1, 1) and kh % 2 == 1 and kw % 2 == 1:
        padding = "same"
    elif kh > 1 or kw > 1:
        x = keras.layers.ZeroPadding2D(padding=(kh // 2, kw // 2), name=f"{name}_pad")(x)
    cout = int(conv["out_channel"])
    if kind == "depthwise":
        layer = keras.layers.DepthwiseConv2D(
            kernel_size=(kh, kw), strides=strides, padding=padding,
            depth_multiplier=cout // int(conv["in_channel"]), use_bias=True, name=name,
        )
    else:
        layer = keras.layers.Conv2D(
            cout, kernel_size=(kh, kw), strides=strides, padding=padding,
            groups=int(conv.get("groups", 1) or 1), use_bias=True, name=name,
        )
    x = layer(x)
    weight, bias = _dequantize(conv)
    weights[name] = [_keras_kernel(conv, weight), bias]
    bound = _activation_bound(conv, clip)
    if bound is not None:
        x = BoundedReLU(max_value=None if math.isinf(bound) else bound,
                        name=f"{name}_relu")(x)
    return x


def build(data, path, *, include_top, classes, input_shape, name, clip):
    """The float Keras model a checkpoint describes (see the module docstring).

    Args:
        data: dict. The checkpoint, as `checkpoint.load_tiny_training_checkpoint`
            returns it (validated).
        path: str. The file it was read from (for messages).
        include_top, classes, input_shape, name, clip: as in
            `keras_medyate.models.from_tiny_training`, already checked by
            `check_arguments`.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: `input_shape` does not have the checkpoint's input channels.
    """
    first = data["first_conv"]
    if input_shape[-1] != int(first["in_channel"]):
        raise ValueError(
            f"input_shape={input_shape!r} has {input_shape[-1]} channels but the checkpoint "
            f"{path!r} expects {first['in_channel']} (RGB)."
        )
    weights = {}
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_block(inputs, first, "first_conv", clip, weights)
    for i, block in enumerate(data["blocks"]):
        block_input = x
        if block.get("pointwise1") is not None:
            x = _conv_block(x, block["pointwise1"], f"block{i}_expand", clip, weights)
        x = _conv_block(x, block["depthwise"], f"block{i}_depthwise", clip, weights)
        x = _conv_block(x, block["pointwise2"], f"block{i}_project", clip, weights)
        residual = block.get("residual")
        if residual is not None:
            shortcut = block_input
            conv = checkpoint.shortcut_conv(residual)
            if conv is not None:
                shortcut = _conv_block(block_input, conv, f"block{i}_shortcut", clip, weights)
            x = keras.layers.Add(name=f"block{i}_add")([x, shortcut])
    if data.get("feature_mix") is not None:
        x = _conv_block(x, data["feature_mix"], "feature_mix", clip, weights)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    if include_top:
        classifier = data["classifier"]
        if classes is None:
            dense = keras.layers.Dense(int(classifier["out_channel"]), name="classifier")
            x = dense(x)
            weight, bias = _dequantize(classifier)
            weights["classifier"] = [weight[:, :, 0, 0].T, bias]
        else:
            x = keras.layers.Dense(
                classes, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                name="classifier",
            )(x)
        x = keras.layers.Softmax(name="predictions")(x)
    model = keras.Model(inputs, x, name=name)
    for layer_name, values in weights.items():
        layer = model.get_layer(layer_name)
        expected = [tuple(v.shape) for v in layer.get_weights()]
        got = [tuple(v.shape) for v in values]
        if expected != got:  # pragma: no cover - guarded by validation
            raise ValueError(
                f"Checkpoint {path!r}: weights of layer {layer_name!r} have shapes {got}, "
                f"the layer expects {expected}."
            )
        layer.set_weights(values)
    return model
