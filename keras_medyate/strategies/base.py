"""What every channel-selection strategy is built on: the pool, the budget fill, the interface.

Every strategy answers one question per epoch: which input channels of the
search-space layers are updated? The answer is a set of *flat* indices into a
`ChannelPool` (all input channels of the plan's layers, layer after layer).

Budget fill (`fill_budget`): channels are taken in the order a strategy
proposes while the running cost stays within the budget. Two modes:

- `"stop"` (default, as in the authors' earlier code): the fill ends at the
  first channel that would overflow the budget;
- `"skip"`: a channel that does not fit is skipped and the fill goes on with
  the next, cheaper ones.

In both modes the selected cost never exceeds the budget.

A selector that keeps state across epochs declares it in `initial_state()`
(names, shapes and dtypes of numpy arrays); the model stores exactly that, so
training resumes exactly. Every selector is built from a plan by one factory,
`ChannelSelector.from_plan` (`registry.build` looks the class up by name).

This module and everything it imports need numpy only (no TensorFlow, no
Keras): the on-device driver `tflite_export.OnDeviceTrainer` reuses
`ChannelPool` in a process without TensorFlow.
"""

import dataclasses
import inspect

import numpy as np

FILL_MODES = ("stop", "skip")


def check_fill_mode(fill, modes=FILL_MODES, where="", hint=""):
    """Raises a clear `ValueError` unless `fill` is one of `modes`.

    Args:
        fill: the value given.
        modes: the accepted modes (a subset of `FILL_MODES`).
        where: where fewer modes apply (`" on the device"`).
        hint: a sentence on what to do instead, appended to the message.
    """
    if fill not in modes:
        message = f"`fill` must be one of {tuple(modes)}{where}, got {fill!r}."
        raise ValueError(f"{message} {hint}" if hint else message)


def is_integer(value):
    """True for Python and numpy integers; False for bools and floats (even 2.0)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


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


def fill_budget(order, costs, budget_units, mode="stop"):
    """Takes channels in `order` while their total cost fits the budget.

    Args:
        order: int array, candidate flat indices, most wanted first.
        costs: int array, cost of every flat index.
        budget_units: int, the budget.
        mode: `"stop"` (end at the first overflow) or `"skip"` (skip channels
            that do not fit and go on).

    Returns:
        The selected flat indices (int64 array, in fill order).
    """
    check_fill_mode(mode)
    order = np.asarray(order, dtype=np.int64)
    ordered_costs = np.asarray(costs, dtype=np.int64)[order]
    if mode == "stop":
        fits = np.cumsum(ordered_costs) <= budget_units
        # cumsum is monotone for non-negative costs: the fitting part is a prefix.
        return order[: int(fits.sum())]
    selected = []
    remaining = int(budget_units)
    cheapest = ordered_costs.min() if ordered_costs.size else 0
    for index, cost in zip(order.tolist(), ordered_costs.tolist()):
        if cost <= remaining:
            selected.append(index)
            remaining -= cost
            if remaining < cheapest:
                break
    return np.asarray(selected, dtype=np.int64)


def uniform_order(size, rng):
    """A uniformly random order of `size` channels."""
    return rng.permutation(size).astype(np.int64)


def weighted_order(weights, rng):
    """A random order where each next channel is drawn with p ∝ its weight.

    This is sequential sampling without replacement, done in one pass with the
    Efraimidis-Spirakis keys `log(u) / w` sorted in descending order. Channels
    of weight 0 come last, in random order.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if np.any(weights < 0) or not np.all(np.isfinite(weights)):
        raise ValueError("Sampling weights must be finite and non-negative.")
    uniform = rng.random(weights.shape[0])
    with np.errstate(divide="ignore"):
        keys = np.where(weights > 0, np.log(uniform) / np.where(weights > 0, weights, 1), -np.inf)
    # Ties (only the -inf keys) are broken by a random permutation.
    tie_break = rng.permutation(weights.shape[0])
    return np.lexsort((tie_break, -keys)).astype(np.int64)


def floored(norms, epsilon):
    """Norms with NaN set to 0 and a floor of `epsilon * max` (never zero)."""
    values = np.nan_to_num(np.asarray(norms, dtype=np.float64), nan=0.0, posinf=0.0)
    values = np.maximum(values, 0.0)
    top = values.max() if values.size else 0.0
    floor = epsilon * top if top > 0 else 1.0
    return np.maximum(values, floor)


@dataclasses.dataclass
class SelectionContext:
    """What a selector may look at when choosing the next epoch's channels.

    Attributes:
        epoch: int, 0-based epoch about to start.
        rng: `numpy.random.Generator` seeded from (seed, epoch).
        previous: int array of the flat indices trained last epoch, or None.
        norms: float array over the pool: mean per-step gradient norm of every
            channel during the last epoch (NaN where unknown), or None. Only
            the oracles may read channels outside `previous`.
        kernels: callable returning {layer name: kernel ndarray}, for
            weight-magnitude strategies.
        seed: int or None, the run's seed, for selectors whose draw is a
            function of `(seed, epoch)` (MeDyate's `random_stream`, shared
            with the device).
    """

    epoch: int
    rng: np.random.Generator
    previous: np.ndarray = None
    norms: np.ndarray = None
    kernels: object = None
    seed: int = None


class ChannelSelector:
    """Base class of all strategies: one override point, `propose`.

    A selector returns the flat indices to train in the coming epoch. State
    that must survive an epoch (and a restart) lives in `self.state`, a dict
    of numpy arrays whose names, shapes and dtypes `initial_state()` declares;
    the `ChannelResampler` stores it in the model's non-trainable variables,
    so `keras.callbacks.BackupAndRestore` and `.keras` files keep it.

    Args:
        pool: `ChannelPool`, the search space.
        budget_units: int, the memory budget.
        fill: `"stop"` or `"skip"`, see `fill_budget`.
    """

    name = None
    #: True if the selection is made once (epoch 0) and kept.
    static = False
    #: True if the selector reads the norms of channels it did not train
    #: (oracles); they need a full-gradient measurement before epoch 0.
    needs_all_norms = False
    #: True if the budget does not bound the selection (full fine-tuning):
    #: the one place that says so; `reference_units` follows from it.
    ignores_budget = False
    #: True if the strategy is defined over every layer of the network, so
    #: the plan's search space must hold them all.
    whole_network = False

    def __init__(self, pool, budget_units, fill="stop"):
        check_fill_mode(fill)
        self.pool = pool
        self.budget_units = int(budget_units)
        self.fill = fill
        self.state = self.initial_state()

    @classmethod
    def from_plan(cls, plan, fill="stop", **options):
        """Builds the selector for a `Plan`: the one factory of every strategy.

        Options the constructor does not take are left out (`epsilon` means
        nothing to `trady`), unless it takes `**kwargs`.

        Raises:
            ValueError: a whole-network strategy on a plan whose search space
                is not the whole network, or a bad option value.
        """
        if cls.whole_network and not plan.covers_whole_network:
            raise ValueError(
                f"Strategy {cls.name!r} samples the whole network, but the plan's search "
                f"space holds {len(plan.layers)} of {len(plan.candidate_layers)} layers. "
                "Build the plan without a ranking: `kmd.plan(model, budget)`."
            )
        parameters = inspect.signature(cls.__init__).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            options = {k: v for k, v in options.items() if k in parameters}
        return cls(plan.pool, plan.budget_units, fill, **options)

    def initial_state(self):
        """Override to keep state: {name: numpy array} at the start of training.

        The names, shapes and dtypes declared here are what the model stores
        (scalars as 0-d arrays). The default is no state.
        """
        return {}

    def state_spec(self):
        """{name: (shape tuple, dtype name)} of the declared state."""
        return {name: (tuple(np.shape(value)), np.asarray(value).dtype.name)
                for name, value in self.initial_state().items()}

    def reference_units(self):
        """Units a selection's cost is reported against (`budget_used`): the
        budget, or the whole pool for a selector that ignores the budget."""
        return self.pool.total_units if self.ignores_budget else self.budget_units

    def select(self, context):
        """Returns the sorted flat indices to train in `context.epoch`."""
        if self.static and context.previous is not None and context.epoch > 0:
            return np.sort(context.previous)
        selected = np.sort(np.asarray(self.propose(context), dtype=np.int64))
        if not self.ignores_budget and self.pool.cost_of(selected) > self.budget_units:
            raise AssertionError(
                f"Strategy {self.name!r} exceeded the budget: "
                f"{self.pool.cost_of(selected)} > {self.budget_units} units."
            )
        return selected

    def propose(self, context):
        """Override: the flat indices for the coming epoch."""
        raise NotImplementedError

    def fill_in_order(self, order):
        """Budget fill of `order` with this selector's fill mode."""
        return fill_budget(order, self.pool.costs, self.budget_units, self.fill)
