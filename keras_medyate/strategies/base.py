"""What every channel-selection strategy is built on: the budget fill, the context, the interface.

Every strategy answers one question per epoch: which input channels of the
search-space layers are updated? The answer is a set of *flat* indices into a
`keras_medyate.channel_pool.ChannelPool` (all input channels of the plan's
layers, layer after layer).

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
`ChannelSelector.from_plan`, with the options of its configured
`strategy.Strategy` (`kmd.strategies.MeDyate(epsilon=1e-3)`).

This module and everything it imports need numpy only (no TensorFlow, no
Keras), like `keras_medyate.channel_pool`: the strategies run in a process
that never loads TensorFlow (`tflite_export.OnDeviceTrainer`'s).
"""

import dataclasses

import numpy as np

# Re-exported from its own module, where it now lives; import it from
# `keras_medyate.channel_pool` (this path stays for older code).
from keras_medyate.channel_pool import ChannelPool  # noqa: F401

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


def check_epsilon(epsilon):
    """`epsilon` as a float; raises a clear `ValueError` unless it is a number in [0, 1)."""
    number = isinstance(epsilon, (int, float, np.integer, np.floating)) and not isinstance(
        epsilon, (bool, np.bool_))
    if not number or not 0 <= epsilon < 1:
        raise ValueError(
            f"`epsilon` must be a number in [0, 1) (the floor of the sampling weights, as a "
            f"fraction of the largest; 0 lets a channel of zero norm never be drawn), got "
            f"{epsilon!r}. Pass e.g. `epsilon=1e-3`, the papers' value."
        )
    return float(epsilon)


def check_probe_steps(probe_steps):
    """`probe_steps` as an int or None; raises unless None or an integer >= 1."""
    if probe_steps is None:
        return None
    if not is_integer(probe_steps) or probe_steps < 1:
        raise ValueError(
            f"`probe_steps` must be an integer >= 1 (batches of `probe_data` the oracle "
            f"measures) or None (every batch), got {probe_steps!r}."
        )
    return int(probe_steps)


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

        Args:
            plan: the `Plan`.
            fill: `"stop"` or `"skip"`, see `fill_budget`.
            **options: the constructor's own options (`epsilon=...`), as a
                `strategy.Strategy` holds them.

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
