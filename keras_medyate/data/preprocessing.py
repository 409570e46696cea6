"""Pixel preprocessing applied to image batches by the data pipelines."""

from keras_medyate.models.tiny_training import preprocess_input

#: Accepted non-callable values of the `preprocess` argument of `load`.
PREPROCESS_CHOICES = ("tiny_training", None)


# One implementation of the tiny-training input scaling (x / 127.5 - 1):
# the models package owns it, the pipelines reuse it under this name.
scale_to_unit_range = preprocess_input


def resolve_preprocess(preprocess):
    """Turns the `preprocess` argument of `load` into a batch function.

    Args:
        preprocess: str, None or callable. `"tiny_training"` (scale to `[-1, 1]`), `None`
            (keep `[0, 255]`) or a callable applied to each float32 image
            batch of shape `(B, H, W, 3)`.

    Returns:
        The function to map over image batches, or `None` for no-op.

    Raises:
        ValueError: If `preprocess` is an unknown string or another type.
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
