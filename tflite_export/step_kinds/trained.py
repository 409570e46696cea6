"""The kinds whose kernel a plan can train: `Conv2D`, `DepthwiseConv2D`, `Dense`.

Which Keras layers they are, and each kernel's input-channel axis, come from
`keras_medyate.layer_kinds` (the classification the inventory and the
selected kernel gradients share). Besides the `StepKind` methods, a trained
kind says what its kernel gradient keeps from the forward pass
(`kept_input`, `keep_input`) and computes it (`kernel_grad`).

Example:

>>> from tflite_export.step_kinds import trained
>>> trained.Depthwise().updatable.channel_axis
2
"""

import keras
import tensorflow as tf

from keras_medyate import layer_kinds
from tflite_export import layer_ops
from tflite_export.step_kinds import spatial
from tflite_export.step_kinds.base import Example, StepKind, window_pads


class _Trained(StepKind):
    """A kind with a kernel (and an optional bias) that a plan may train.

    Attributes:
        folds_padding: bool, an explicit `ZeroPadding2D` in front of it is
            folded into its own padding for the kernel gradient.
    """

    trains = True
    folds_padding = False

    @property
    def updatable(self):
        """The `layer_kinds.UpdatableKind` row of the kind."""
        return layer_kinds.by_name(self.name)

    @staticmethod
    def kernel_and_bias(step, weights):
        """(kernel, bias or None) of the step from the weights dict."""
        return weights.get(f"{step.name}/kernel"), weights.get(f"{step.name}/bias")

    def kept_input(self, step, producer):
        """(tensor id, pads) of what the kernel gradient keeps from the forward pass.

        An explicit `ZeroPadding2D` producing a window kind's input is folded
        into the window's padding: the unpadded tensor is kept, smaller than
        the padded one, which is freed after the step.

        Args:
            step: the `Step`.
            producer: the `Step` producing its input (None for the model input).
        """
        pads = step.params.get("pads")
        if self.folds_padding and producer is not None and producer.kind == spatial.ZeroPad.name:
            (top, bottom), (left, right) = producer.params["pads"]
            (s_top, s_bottom), (s_left, s_right) = pads
            return producer.inputs[0], ((top + s_top, bottom + s_bottom),
                                        (left + s_left, right + s_right))
        return step.inputs[0], pads

    def keep_input(self, kept):
        """(tensor kept for `kernel_grad`, its (H, W) if reshaped else None)."""
        return kept, None

    def kernel_grad(self, step, x, pads, dz, indices, input_hw):
        """dL/dK of the kept input's channels (the selected ones if `indices` is given).

        Args:
            step: the `Step`.
            x: what `keep_input` kept.
            pads: the pads of `kept_input`.
            dz: the loss gradient at the step's output.
            indices: int32 tensor of the selected input channels, or None.
            input_hw: (H, W) from `keep_input`, or None.
        """
        raise NotImplementedError


class _Window(_Trained):
    """A kind sliding a kernel window over the (H, W) grid: `Conv2D`, `DepthwiseConv2D`.

    Attributes:
        forward_op: the `layer_ops` forward, `(x, kernel, bias, strides, padding)`.
        input_grad_op: the `layer_ops` input gradient, `(dz, kernel, input_shape,
            strides, pads)`.
    """

    folds_padding = True
    forward_op = None
    input_grad_op = None

    def read(self, reading):
        layer = reading.layer
        reading.check_channels_last()
        reading.check_regularizers()
        if tuple(layer.dilation_rate) != (1, 1):
            raise reading.error(f"has dilation_rate={tuple(layer.dilation_rate)}; only (1, 1) "
                                "is supported.")
        if layer.padding not in ("valid", "same"):
            raise reading.error(f"has padding={layer.padding!r}; only 'valid' and 'same' are "
                                "supported.")
        kh, kw = (int(k) for k in layer.kernel_size)
        sh, sw = (int(s) for s in layer.strides)
        return {"kernel_size": (kh, kw), "strides": (sh, sw), "padding": layer.padding,
                "pads": window_pads(layer.padding, reading.input_shape, (kh, kw), (sh, sw)),
                "use_bias": bool(layer.use_bias)}

    def forward(self, step, inputs, weights):
        kernel, bias = self.kernel_and_bias(step, weights)
        return self.forward_op(inputs[0], kernel, bias, step.params["strides"],
                               step.params["padding"])

    def input_grad(self, step, dy, kept, context):
        kernel, _ = self.kernel_and_bias(step, context.weights)
        return self.input_grad_op(dy, kernel, context.shape(step.inputs[0]),
                                  step.params["strides"], step.params["pads"])

    def working_elements(self, step, shapes):
        """The output gradient on the input grid the kernel gradient reads its taps
        from (zero-inserted, padded), per sample."""
        kh, kw = step.params["kernel_size"]
        height, width = (int(d) for d in shapes[step.inputs[0]][1:3])
        channels = int(shapes[step.output][-1])
        return (height + kh) * (width + kw) * channels


class Conv(_Window):
    """`Conv2D` (groups 1, dilation 1, "valid"/"same", channels last; also a 1×1
    classifier head): kernel gradient one matmul per tap, input gradient a
    transposed conv (`layer_ops`)."""

    name = "conv"
    forward_op = staticmethod(layer_ops.conv_forward)
    input_grad_op = staticmethod(layer_ops.conv_input_grad)

    def read(self, reading):
        params = super().read(reading)
        if int(reading.layer.groups) != 1:
            raise reading.error(f"has groups={reading.layer.groups}; only groups=1 is supported "
                                "(use DepthwiseConv2D for depthwise convolutions).")
        return params

    def keep_input(self, kept):
        # Kept in the matmul layout of dK (B·H·W, C): a RESHAPE is a copy in
        # LiteRT, made once here instead of keeping both.
        batch, height, width = (int(d) for d in kept.shape[:3])
        return tf.reshape(kept, [batch * height * width, -1]), (height, width)

    def kernel_grad(self, step, x, pads, dz, indices, input_hw):
        return layer_ops.conv_kernel_grad(x, dz, step.params["kernel_size"],
                                          step.params["strides"], pads, input_hw=input_hw)

    def examples(self):
        return (
            Example((6, 6, 3), lambda x: keras.layers.Conv2D(4, 3, strides=2, padding="same")(x)),
            # An explicit padding, folded into the conv for its kernel gradient.
            Example((6, 6, 3), lambda x: keras.layers.Conv2D(4, 2, use_bias=False)(
                keras.layers.ZeroPadding2D(((1, 0), (2, 1)))(x))),
        )


class Depthwise(_Window):
    """`DepthwiseConv2D` (dilation 1, any depth multiplier): per-tap kernel
    gradient, input gradient a depthwise conv with the flipped kernel."""

    name = "depthwise"
    forward_op = staticmethod(layer_ops.depthwise_forward)
    input_grad_op = staticmethod(layer_ops.depthwise_input_grad)

    def read(self, reading):
        params = super().read(reading)
        params["depth_multiplier"] = int(reading.layer.depth_multiplier)
        return params

    def kernel_grad(self, step, x, pads, dz, indices, input_hw):
        params = step.params
        if indices is not None:
            dz = layer_ops.select_channels(dz, indices, params["depth_multiplier"])
        return layer_ops.depthwise_kernel_grad(x, dz, params["kernel_size"], params["strides"],
                                               pads, params["depth_multiplier"])

    def examples(self):
        return (
            Example((6, 6, 3), lambda x: keras.layers.DepthwiseConv2D(
                3, strides=2, padding="same", depth_multiplier=2)(x)),
            Example((6, 6, 3), lambda x: keras.layers.DepthwiseConv2D(3, use_bias=False)(
                keras.layers.ZeroPadding2D(1)(x))),
        )


class Dense(_Trained):
    """`Dense` over the last axis (inputs of any rank; no LoRA)."""

    name = "dense"

    def read(self, reading):
        reading.check_regularizers()
        if getattr(reading.layer, "lora_enabled", False):
            raise reading.error("has LoRA enabled; disable it.")
        return {"use_bias": bool(reading.layer.use_bias)}

    def forward(self, step, inputs, weights):
        kernel, bias = self.kernel_and_bias(step, weights)
        return layer_ops.dense_forward(inputs[0], kernel, bias)

    def input_grad(self, step, dy, kept, context):
        kernel, _ = self.kernel_and_bias(step, context.weights)
        return layer_ops.dense_input_grad(dy, kernel, context.shape(step.inputs[0]))

    def kernel_grad(self, step, x, pads, dz, indices, input_hw):
        return layer_ops.dense_kernel_grad(x, dz)

    def examples(self):
        return (Example((6,), lambda x: keras.layers.Dense(5)(x)),
                Example((4, 4, 3), lambda x: keras.layers.Dense(5, use_bias=False)(x)))
