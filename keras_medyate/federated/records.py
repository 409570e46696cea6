"""`SliceUpdate` ↔ Flower `ArrayRecord`, and the global model in that form.

Numpy and `flwr.app` only. The wire form is `SliceUpdate.arrays()`: per
search-space layer `"<layer>/channels"` (int32 indices) and
`"<layer>/kernel"` (the slices), plus the head's `"<classifier>/kernel"`,
`"<classifier>/bias"`. Every layer is always present (an empty index array
when none of its channels was trained), so the replies of all clients have
the same keys, as Flower's strategies check. The server's global model
travels in the same form with every channel (`full_update`).
"""

import numpy as np
from flwr.app import Array, ArrayRecord

from tflite_export.on_device import SliceUpdate


def to_record(update):
    """The `ArrayRecord` of a `SliceUpdate` (one `Array` per wire array)."""
    return ArrayRecord({key: Array(np.ascontiguousarray(value))
                        for key, value in update.arrays().items()})


def from_record(record):
    """The `SliceUpdate` of an `ArrayRecord` written by `to_record`."""
    return SliceUpdate.from_arrays({key: array.numpy() for key, array in record.items()})


def full_update(weights, channel_axes):
    """A `SliceUpdate` holding every channel of `weights`.

    Args:
        weights: dict `"<layer>/kernel"` / head key → array (as
            `OnDeviceTrainer.get_weights()` returns).
        channel_axes: dict search-space layer → input-channel axis.
    """
    channels, kernels, head = {}, {}, {}
    for key, value in weights.items():
        layer, part = key.rsplit("/", 1)
        if part == "kernel" and layer in channel_axes:
            channels[layer] = np.arange(np.shape(value)[channel_axes[layer]], dtype=np.int32)
            kernels[layer] = np.asarray(value, np.float32)
        else:
            head[key] = np.asarray(value, np.float32)
    return SliceUpdate(channels=channels, kernels=kernels, head=head)


def dense_weights(update, channel_axes):
    """dict weight key → array of an update that holds every channel (`full_update`).

    Raises:
        ValueError: a layer whose channels are not all present, in order.
    """
    weights = {}
    for layer, channels in update.channels.items():
        size = np.shape(update.kernels[layer])[channel_axes[layer]]
        if not np.array_equal(channels, np.arange(size)):
            raise ValueError(f"The model's {layer!r} lacks some input channels: a global model "
                             "carries every channel (`full_update`).")
        weights[f"{layer}/kernel"] = np.asarray(update.kernels[layer], np.float32)
    weights.update(update.head)
    return weights
