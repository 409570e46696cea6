"""`ChannelPool`: every selectable input channel of a plan's layers, as one flat index.

A selection (which input channels of the search-space layers are trained
in an epoch) is a set of *flat* indices into a pool: all input channels of
the layers, layer after layer. The plan builds the pool (`Plan.pool`), the
strategies draw flat indices from it, the host selection state turns them
into per-layer masks, the exporter writes it into the model's metadata and
the on-device driver (`tflite_export.OnDeviceTrainer`) reads it back with
`ChannelPool.from_config`.

This module needs numpy only (no TensorFlow, no Keras), so the device
driver uses it in a process that never loads TensorFlow.

Example:

>>> import numpy as np
>>> from keras_medyate.channel_pool import ChannelPool
>>> pool = ChannelPool(("a", "b"), np.array([2, 3]), np.array([5, 1]), np.array([0, 2]))
>>> pool.size, pool.total_units
(5, 13)
>>> {name: idx.tolist() for name, idx in pool.to_dict([1, 3]).items()}
{'a': [1], 'b': [1]}
>>> pool.cost_of([1, 3])
6
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ChannelPool:
    """All selectable input channels of a list of layers, flattened.

    Attributes:
        layer_names: tuple of str, the layers in pool order.
        num_channels: int array, channels per layer.
        channel_costs: int array, memory units of one channel, per layer.
        offsets: int array, flat index of each layer's first channel.
    """

    layer_names: tuple
    num_channels: np.ndarray
    channel_costs: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_config(cls, config):
        """Inverse of `to_config` (the pool as stored in an exported model)."""
        return cls(
            layer_names=tuple(config["layers"]),
            num_channels=np.asarray(config["num_channels"], np.int64),
            channel_costs=np.asarray(config["channel_costs"], np.int64),
            offsets=np.asarray(config["offsets"], np.int64),
        )

    def to_config(self):
        """JSON-serializable description (`layers`, `num_channels`,
        `channel_costs`, `offsets`, `size`)."""
        return {
            "layers": list(self.layer_names),
            "num_channels": [int(c) for c in self.num_channels],
            "channel_costs": [int(c) for c in self.channel_costs],
            "offsets": [int(o) for o in self.offsets],
            "size": int(self.size),
        }

    @classmethod
    def from_infos(cls, infos):
        """Builds the pool of the given `LayerInfo`s."""
        num_channels = np.array([i.num_channels for i in infos], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(num_channels)[:-1]]).astype(np.int64)
        return cls(
            layer_names=tuple(i.name for i in infos),
            num_channels=num_channels,
            channel_costs=np.array([i.channel_units for i in infos], dtype=np.int64),
            offsets=offsets,
        )

    @property
    def size(self):
        """Number of channels in the pool."""
        return int(self.num_channels.sum())

    @property
    def costs(self):
        """Memory units of every flat channel."""
        return np.repeat(self.channel_costs, self.num_channels)

    @property
    def layer_of(self):
        """Pool position of the layer of every flat channel."""
        return np.repeat(np.arange(len(self.layer_names)), self.num_channels)

    @property
    def total_units(self):
        """Memory units to update every channel of the pool."""
        return int(self.costs.sum())

    def to_dict(self, flat_indices):
        """{layer name: sorted channel indices} for a set of flat indices."""
        flat = np.sort(np.asarray(flat_indices, dtype=np.int64))
        layer_of = self.layer_of[flat]
        return {
            name: (flat[layer_of == k] - self.offsets[k]).astype(np.int64)
            for k, name in enumerate(self.layer_names)
        }

    def from_dict(self, channels):
        """Flat indices of a {layer name: channel indices} selection."""
        unknown = sorted(set(channels) - set(self.layer_names))
        if unknown:
            raise ValueError(
                f"Unknown layers {unknown} in the selection; the search space has "
                f"{list(self.layer_names)}."
            )
        parts = []
        for k, name in enumerate(self.layer_names):
            idx = np.asarray(channels.get(name, []), dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < 0 or idx.max() >= self.num_channels[k]):
                raise ValueError(
                    f"Channel indices for layer {name!r} must be in "
                    f"[0, {self.num_channels[k]}), got {idx.tolist()}."
                )
            parts.append(np.unique(idx) + self.offsets[k])
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def check_flat_indices(self, flat_indices):
        """The flat indices of a selection as an int64 array, checked.

        Args:
            flat_indices: 1-D integers (a list, tuple or array; empty allowed).

        Returns:
            int64 array of the same indices, in the given order.

        Raises:
            ValueError: not 1-D, not integers, out of `[0, size)` (a negative
                index would silently count from the end), or repeated.
        """
        values = np.asarray(flat_indices)
        if values.ndim != 1:
            raise ValueError(
                f"A selection must be a 1-D list of flat channel indices, got an array of "
                f"shape {values.shape}. Pass e.g. `np.flatnonzero(mask)`, or "
                "`plan.pool.from_dict({layer: channels})`."
            )
        if values.size and not (np.issubdtype(values.dtype, np.integer)
                                and not np.issubdtype(values.dtype, np.bool_)):
            raise ValueError(
                f"Flat channel indices must be integers, got dtype {values.dtype} "
                f"({values[:5].tolist()}…). Pass integer indices in [0, {self.size})."
            )
        values = values.astype(np.int64)
        bad = values[(values < 0) | (values >= self.size)]
        if bad.size:
            raise ValueError(
                f"Flat channel indices must be in [0, {self.size}) (the pool's "
                f"{self.size} channels), got {bad[:5].tolist()}. Negative indices are not "
                "counted from the end."
            )
        unique, counts = np.unique(values, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"Flat channel indices must be distinct, got {unique[counts > 1][:5].tolist()} "
                "more than once."
            )
        return values

    def flat_mask(self, flat_indices):
        """float32 0/1 mask over the whole pool (1 = selected)."""
        selected = np.zeros(self.size, dtype=np.float32)
        selected[np.asarray(flat_indices, dtype=np.int64)] = 1.0
        return selected

    def to_masks(self, flat_indices):
        """{layer name: float32 0/1 mask over its input channels}."""
        selected = self.flat_mask(flat_indices)
        return {
            name: selected[self.offsets[k] : self.offsets[k] + self.num_channels[k]]
            for k, name in enumerate(self.layer_names)
        }

    def cost_of(self, flat_indices):
        """Memory units of a set of flat indices."""
        return int(self.costs[np.asarray(flat_indices, dtype=np.int64)].sum())
