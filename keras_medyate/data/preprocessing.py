"""Pixel preprocessing applied to image batches by the data pipelines."""

from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np
import tensorflow as tf

PREPROCESS_CHOICES = ("tiny_training", None)
"""Accepted non-callable values of the ``preprocess`` argument of ``load``."""

PreprocessArg = Union[str, None, Callable]


def scale_to_unit_range(images):
    """Maps pixel values from ``[0, 255]`` to ``[-1, 1]`` (``x / 127.5 - 1``).

    This is the input scaling of the MCUNet / tiny-training model family.

    Example:

    >>> import numpy as np
    >>> scale_to_unit_range(np.array([0.0, 127.5, 255.0]))
    array([-1.,  0.,  1.], dtype=float32)

    Args:
        images: Array-like or tensor of pixel values in ``[0, 255]``, any
            shape and any numeric dtype.

    Returns:
        A float32 array of the same shape with values in ``[-1, 1]``: a
        NumPy array for NumPy (or list) input, a ``tf.Tensor`` otherwise.
    """
    if isinstance(images, (tf.Tensor, tf.Variable)):
        images = tf.cast(images, tf.float32)
        return images / 127.5 - 1.0
    images = np.asarray(images, dtype=np.float32)
    return images / np.float32(127.5) - np.float32(1.0)


def resolve_preprocess(preprocess: PreprocessArg) -> Optional[Callable]:
    """Turns the ``preprocess`` argument of ``load`` into a batch function.

    Args:
        preprocess: ``"tiny_training"`` (scale to ``[-1, 1]``), ``None``
            (keep ``[0, 255]``) or a callable applied to each float32 image
            batch of shape ``(B, H, W, 3)``.

    Returns:
        The function to map over image batches, or ``None`` for no-op.

    Raises:
        ValueError: If ``preprocess`` is an unknown string or another type.
    """
    if preprocess is None:
        return None
    if isinstance(preprocess, str):
        if preprocess == "tiny_training":
            return scale_to_unit_range
        raise ValueError(
            f"Unknown preprocess={preprocess!r}. Use 'tiny_training' "
            "(scale pixels to [-1, 1]), None (keep [0, 255]) or a callable "
            "applied to each image batch."
        )
    if callable(preprocess):
        return preprocess
    raise ValueError(
        "`preprocess` must be 'tiny_training', None or a callable; "
        f"received {preprocess!r} of type {type(preprocess).__name__}."
    )
