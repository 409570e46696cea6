"""The L2 norm of every input-channel slice of a kernel (or of its gradient).

One definition for every place that measures channels: the masked training
step and the oracles' probe (`SubnetworkModel`), the RGN ranking, the
exported on-device `train` signature (TensorFlow tensors, `xp=tf`) and the
Sparse Update weight magnitudes (numpy arrays, the default). The input-channel
axis is 2 for a 4-D conv kernel and 0 for a Dense kernel (`input_axis`, read
from `layer_kinds`).

This module needs numpy only; TensorFlow is passed in by the callers that use it.

Example:

>>> import numpy as np
>>> from keras_medyate import channels
>>> kernel = np.ones((3, 3, 2, 4))              # Conv2D: 2 input channels
>>> channels.input_axis(kernel)
2
>>> channels.channel_norms(kernel, 2).tolist()  # sqrt(3 * 3 * 4)
[6.0, 6.0]
"""

import numpy as np

from keras_medyate import layer_kinds


def input_axis(kernel):
    """Input-channel axis of a Keras kernel: 2 for 4-D conv kernels, else 0.

    Args:
        kernel: an array (or anything `np.ndim` reads) holding a kernel.

    Returns:
        int, the axis of the `layer_kinds` kind with a kernel of that rank.
    """
    return layer_kinds.channel_axis_of_rank(np.ndim(kernel))


def channel_norms(kernel, axis, xp=np):
    """L2 norm of every slice of `kernel` along `axis`: sqrt(sum of squares).

    Args:
        kernel: a numpy array (`xp=numpy`, computed in float64) or a
            TensorFlow tensor (`xp=tensorflow`, in its own dtype and with
            ops that LiteRT runs as builtins).
        axis: int, the input-channel axis.
        xp: `numpy` (default) or the `tensorflow` module.

    Returns:
        A 1-D array or tensor with one norm per input channel.
    """
    other_axes = [a for a in range(len(kernel.shape)) if a != axis]
    if xp is np:
        kernel = np.asarray(kernel, np.float64)
        return np.sqrt(np.sum(kernel**2, axis=tuple(other_axes)))
    return xp.sqrt(xp.reduce_sum(xp.square(kernel), axis=other_axes))
