"""`BoundedReLU`: a ReLU clipped at any bound whose gradient is one mask.

The checkpoint models clip most ReLUs at the bound their int8 output range
gives (`max_value=255 * y_scale`, not 6). Keras' `ReLU(max_value=b)` computes
that as `relu` followed by `clip_by_value`, and TensorFlow differentiates the
pair with a ReluGrad, two comparisons and two selects per layer. This layer
computes the same values (`min(relu(x), b)`, bit-identical) and passes the
gradient through one mask, `0 < y < b` on its own output (which equals
`0 < x < b`: the convention of TensorFlow's fused Relu6), applied by a single
ReluGrad (no custom kernel: TensorFlow has no fused op for another bound). It also keeps the
layer's output as the only saved activation, so TensorFlow can still fuse the
ReLU into the preceding convolution. With `max_value` 6 or None it is Keras'
ReLU unchanged (fused `Relu6` / `Relu`).

It is a `keras.layers.ReLU` (same config, same `isinstance`), registered for
`.keras` files under `keras_medyate>BoundedReLU`: import `keras_medyate`
before `keras.saving.load_model`.

Example:

>>> import numpy as np
>>> from keras_medyate.models.bounded_relu import BoundedReLU
>>> layer = BoundedReLU(max_value=2.5)
>>> np.asarray(layer(np.array([-1.0, 1.0, 3.0], "float32"))).tolist()
[0.0, 1.0, 2.5]
"""

import keras
import tensorflow as tf

#: The bound TensorFlow has a fused op for.
FUSED_BOUND = 6.0


@keras.saving.register_keras_serializable(package="keras_medyate")
class BoundedReLU(keras.layers.ReLU):
    """`keras.layers.ReLU(max_value=...)` with a one-mask gradient.

    Args:
        max_value: float or None, the clipping bound (must be positive).
        **kwargs: as for `keras.layers.ReLU`; `negative_slope` and
            `threshold` must stay 0 (the checkpoint ReLUs have neither).
    """

    def __init__(self, max_value=None, **kwargs):
        super().__init__(max_value=max_value, **kwargs)
        if float(self.negative_slope) != 0.0 or float(self.threshold) != 0.0:
            raise ValueError(
                "BoundedReLU is a plain clipped ReLU: got negative_slope="
                f"{float(self.negative_slope)}, threshold={float(self.threshold)}. "
                "Use keras.layers.ReLU for a leaky or thresholded ReLU."
            )

    def call(self, inputs):
        if self.max_value is None or float(self.max_value) == FUSED_BOUND:
            return super().call(inputs)
        return _bounded_relu(inputs, float(self.max_value))


def _bounded_relu(x, bound):
    @tf.custom_gradient
    def forward(x):
        y = tf.minimum(tf.nn.relu(x), tf.cast(bound, x.dtype))

        def gradient(upstream):
            # min(y, b - y) > 0 exactly when 0 < y < b (b - y > 0 iff y < b in
            # floating point): one ReluGrad with that as its "features".
            distance_to_clip = tf.minimum(y, tf.cast(bound, y.dtype) - y)
            return tf.raw_ops.ReluGrad(gradients=upstream, features=distance_to_clip)

        return y, gradient

    return forward(x)
