"""`as_dataset`: the `(x, y)` batches of what a user passes as training data.

The library's entry points that read data (`kmd.rank_layers`,
`kmd.fit_classifier`, `SubnetworkModel.measure_channel_norms`, the oracle
strategies' probe data) accept a `tf.data.Dataset` of batches or a tuple of
numpy arrays; this is where the tuple becomes batches.

Example:

>>> import numpy as np
>>> from keras_medyate.data import as_dataset
>>> batches = as_dataset((np.zeros((5, 2), "float32"), np.arange(5)), batch_size=2)
>>> [int(y.shape[0]) for _, y in batches]
[2, 2, 1]
"""

import tensorflow as tf


def as_dataset(data, batch_size=32):
    """A `tf.data.Dataset` of `(x, y)` batches from a dataset or a numpy tuple.

    Args:
        data: a `tf.data.Dataset` (returned as it is), or a tuple or list
            `(x, y)` of arrays with the same first dimension.
        batch_size: int. Batch size of a tuple's dataset. Defaults to `32`.

    Returns:
        A `tf.data.Dataset`.

    Raises:
        ValueError: `data` is neither a dataset nor a pair of arrays.
    """
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return tf.data.Dataset.from_tensor_slices((data[0], data[1])).batch(batch_size)
    raise ValueError(
        "Expected a `tf.data.Dataset` of (x, y) batches or a tuple `(x, y)` of arrays, "
        f"got {type(data).__name__}."
    )
