"""The channels trained in an epoch, and the host state that chooses them.

- `Selection`: the record of one selection, the same type on the host
  (`ChannelResampler.history`) and on the device
  (`tflite_export.OnDeviceTrainer.resample`).
- `SelectionState`: the non-trainable variables a `SubnetworkModel` keeps for
  its selection (the input-channel masks, the per-channel gradient-norm
  accumulators, the explored set, the epoch counter, the strategy's own state
  and the values the logs report), and `resample`, the one call that applies
  an epoch's draw to them: the host's counterpart of the device's
  `tflite_export.sampler.resample` (observe the last epoch's norms, draw,
  write the mask, mark the explored channels, zero the accumulators, count
  the epoch).

This module imports numpy only (the device driver uses `Selection` in a
process without TensorFlow); the variables are made by the model's
`add_weight`, so they are the model's own: `.keras` files and
`keras.callbacks.BackupAndRestore` keep them.

Example:

>>> import numpy as np
>>> from keras_medyate.selection import Selection
>>> record = Selection(channels={"conv": np.array([0, 2])}, cost_units=12,
...                    mask=np.array([1, 0, 1], np.float32), epoch=1)
>>> record.num_channels, record.explored
(2, None)
"""

import dataclasses
import time

import numpy as np

from keras_medyate.strategies import base as strategies_base

NORM_STATISTICS = ("mean", "last")
#: The selection state the owner itself keeps (the explored set); a selector
#: may not declare state under this name.
SEEN = "channel_seen"


@dataclasses.dataclass
class Selection:
    """The channels selected for one epoch, on the host or on the device.

    Attributes:
        channels: dict, layer name → sorted int64 array of input-channel
            indices.
        cost_units: int, memory units of the selection (at most the budget,
            except for the strategies that ignore it and `allow_over_budget`).
        epoch: int or None. On the host (`ChannelResampler.history`), the
            0-based `fit` epoch the selection trains; on the device, the
            number of resamples done so far (after `resample`; None after
            `set_mask`).
        mask: float32 array over the flat channel pool (1 = selected), or None.
        explored: float or None, the fraction of the search space trained so
            far (host).
        seconds: float or None, the time the resampling took (host).
    """

    channels: dict
    cost_units: int
    epoch: int = None
    mask: np.ndarray = None
    explored: float = None
    seconds: float = None

    @property
    def num_channels(self):
        """Number of selected channels."""
        return int(sum(len(v) for v in self.channels.values()))


class SelectionState:
    """The host's selection state, in a model's variables, and its per-epoch update.

    A `SubnetworkModel` owns one (`trainer.selection_state`); its training
    step reads the masks and adds to the norm accumulators, and
    `ChannelResampler` calls `resample` once per epoch. It is also a
    read-only mapping, name → variable, of the named state: `channel_seen`
    (the explored set) and the state of the selectors held so far (`hold`).

    Args:
        plan: the `Plan` of the model.
        add_variable: callable `(name, shape, value=0.0, dtype="float32")` →
            a non-trainable variable of the model (its `add_weight`).
        on_head_only_change: callable of no argument or None, called when a
            written selection switches between empty (the step then trains
            the head alone) and not empty.

    Attributes:
        masks: dict layer name → float32 variable over its input channels.
        norm_sums, norm_last: lists of float32 variables (one per layer, plan
            order): the sum of the per-step channel norms since the last
            resample, and the last step's.
        norm_steps: float32 variable, the steps accumulated.
        epochs_selected: int64 variable, the resamples done.
        head_only: bool, the last written selection was empty.
        written: bool, a selection was written since the model was built.
    """

    def __init__(self, plan, add_variable, on_head_only_change=None):
        self.plan = plan
        self.pool = plan.pool
        self._add_variable = add_variable
        self._on_head_only_change = on_head_only_change
        self.masks, self.norm_sums, self.norm_last = {}, [], []
        # The variables are made in this order since the first release: a
        # model's saved weights are matched to them by position.
        for k, (name, count) in enumerate(zip(self.pool.layer_names, self.pool.num_channels)):
            suffix = f"{k}_{name.replace('/', '_')}"
            self.masks[name] = add_variable(f"mask_{suffix}", (int(count),), 1.0)
            self.norm_sums.append(add_variable(f"norm_sum_{suffix}", (int(count),)))
            self.norm_last.append(add_variable(f"norm_last_{suffix}", (int(count),)))
        self.norm_steps = add_variable("norm_steps", ())
        self._variables = {SEEN: add_variable(SEEN, (self.pool.size,), dtype="float64")}
        self.epochs_selected = add_variable("epochs_selected", (), dtype="int64")
        self._progress = {name: add_variable(name, ())
                          for name in ("budget_used", "channels_selected", "explored")}
        self.selector_spec = {}
        self.head_only = False
        self.written = False

    # --- the named state: a read-only mapping ------------------------------------

    def __getitem__(self, name):
        return self._variables[name]

    def __iter__(self):
        return iter(self._variables)

    def __len__(self):
        return len(self._variables)

    def __contains__(self, name):
        return name in self._variables

    def keys(self):
        return self._variables.keys()

    def values(self):
        return self._variables.values()

    def items(self):
        return self._variables.items()

    def hold(self, spec):
        """Holds a non-trainable variable for every entry of a selector's state.

        Entries already held are kept (their shape and dtype must match);
        new ones start at zero. `ChannelResampler` calls this when it is
        attached to the model, before any backup is restored.

        Args:
            spec: dict name → `(shape, dtype)`, as `ChannelSelector.state_spec()`
                returns it.

        Raises:
            ValueError: a name the owner uses itself, or an entry held with
                another shape or dtype.
        """
        for name, (shape, dtype) in spec.items():
            shape, dtype = tuple(int(d) for d in shape), np.dtype(dtype).name
            if name in self.selector_spec:
                if self.selector_spec[name] != (shape, dtype):
                    raise ValueError(
                        f"Selector state {name!r} is held with shape and dtype "
                        f"{self.selector_spec[name]}, not {(shape, dtype)}: another "
                        "strategy stored it. Use a fresh `SubnetworkModel`."
                    )
                continue
            if name in self._variables:
                raise ValueError(
                    f"A selector may not declare state named {name!r}: the selection "
                    "state keeps the explored set under that name."
                )
            self._variables[name] = self._add_variable(name, shape, dtype=dtype)
            self.selector_spec[name] = (shape, dtype)

    # --- the selection -------------------------------------------------------------

    def write(self, flat_indices, allow_over_budget=False):
        """Writes the masks of a selection of flat pool indices.

        Args:
            flat_indices: 1-D integers in `[0, pool.size)`, each at most once.
            allow_over_budget: bool, accept a selection costing more than the
                plan's budget. Defaults to False.

        Raises:
            ValueError: an index that is not an integer, out of range or
                repeated, or a selection over the budget.
        """
        flat_indices = self.pool.check_flat_indices(flat_indices)
        cost = self.pool.cost_of(flat_indices)
        if cost > self.plan.budget_units and not allow_over_budget:
            raise ValueError(
                f"The selection costs {cost:,} units, over the plan's budget of "
                f"{self.plan.budget_units:,} units. Select fewer channels or pass "
                "`allow_over_budget=True`."
            )
        self.written = True
        masks = self.pool.to_masks(flat_indices)
        for name, variable in self.masks.items():
            variable.assign(masks[name])
        head_only = len(flat_indices) == 0
        if head_only != self.head_only:
            self.head_only = head_only
            if self._on_head_only_change is not None:
                self._on_head_only_change()

    def current(self):
        """Flat pool indices of the channels whose mask is on."""
        values = np.concatenate([np.asarray(self.masks[n].numpy()) for n in self.pool.layer_names])
        return np.flatnonzero(values > 0).astype(np.int64)

    # --- the gradient norms ----------------------------------------------------------

    def record_norms(self, layer_norms):
        """Adds one training step's per-channel norms (a list, plan order)."""
        for norms, norm_sum, norm_last in zip(layer_norms, self.norm_sums, self.norm_last):
            norm_sum.assign_add(norms)
            norm_last.assign(norms)
        self.norm_steps.assign_add(1.0)

    def norms(self, statistic="mean"):
        """Per-channel gradient norms since the last resample, flat over the pool.

        Args:
            statistic: `"mean"` (the mean of the per-step norms; default) or
                `"last"` (the norm of the last step's gradient).

        Returns:
            float64 array over the pool, or None if no step ran.
        """
        if statistic not in NORM_STATISTICS:
            raise ValueError(f"`statistic` must be one of {NORM_STATISTICS}, got {statistic!r}.")
        steps = float(self.norm_steps.numpy())
        if steps == 0:
            return None
        if statistic == "mean":
            parts = [np.asarray(v.numpy(), np.float64) / steps for v in self.norm_sums]
        else:
            parts = [np.asarray(v.numpy(), np.float64) for v in self.norm_last]
        return np.concatenate(parts)

    def reset_norms(self):
        """Zeroes the per-channel norm accumulators."""
        for variable in self.norm_sums + self.norm_last:
            variable.assign(np.zeros(variable.shape, np.float32))
        self.norm_steps.assign(0.0)

    def reset(self):
        """Forgets the selector state, the explored set, the epoch counter and the norms."""
        for variable in self._variables.values():
            variable.assign(np.zeros(variable.shape, variable.dtype))
        self.epochs_selected.assign(0)
        self.reset_norms()

    def logs(self):
        """The values the training logs report: `budget_used`, `channels_selected`, `explored`."""
        return {name: variable.value for name, variable in self._progress.items()}

    # --- one epoch's draw --------------------------------------------------------------

    def resample(self, selector, seed, norm_statistic="mean", kernels=None, probe=None,
                 epoch=None):
        """Applies one epoch's draw of `selector` to the state, in one call.

        As the device's `tflite_export.sampler.resample`: hands the selector
        the last selection and the norms its channels measured (if a resample
        and a step ran since), draws, writes the masks, adds the selection to
        the explored set, zeroes the norm accumulators and counts the epoch.
        The selector's state is loaded from the variables before the draw
        (its initial state before the first one) and written back after, so a
        restored model continues exactly. The draw's generator is
        `numpy.random.default_rng([seed, e])` for the `e`-th resample.

        Args:
            selector: the `ChannelSelector` (its state must be held: `hold`).
            seed: int >= 0, the run's seed.
            norm_statistic: `"mean"` or `"last"`, the norms the selector reads.
                Defaults to `"mean"`.
            kernels: callable returning {layer name: kernel ndarray}, for the
                weight-magnitude strategies, or None.
            probe: callable returning every channel's gradient norm (flat), for
                a selector that needs them (`needs_all_norms`) when no step ran
                since the last resample; or None.
            epoch: int or None, the `fit` epoch the record names. Defaults to
                the number of resamples done before this one.

        Returns:
            `Selection` with every field set.
        """
        start = time.perf_counter()
        step = int(self.epochs_selected.numpy())
        previous = self.current() if step > 0 else None
        norms = self.norms(norm_statistic) if step > 0 else None
        if selector.needs_all_norms and norms is None:
            norms = probe()
        self._load_selector_state(selector, step)
        context = strategies_base.SelectionContext(
            epoch=step, rng=np.random.default_rng([seed, step]), previous=previous,
            norms=norms, kernels=kernels, seed=seed)
        selected = selector.select(context)
        seen = self._variables[SEEN].numpy()
        seen[selected] = 1.0
        self._variables[SEEN].assign(seen)
        self._save_selector_state(selector)
        # The selector keeps to its budget (or, for full fine-tuning, ignores it by design).
        self.write(selected, allow_over_budget=True)
        self.reset_norms()
        self.epochs_selected.assign(step + 1)
        cost = self.pool.cost_of(selected)
        explored = float(seen.mean()) if seen.size else 0.0
        progress = (cost / max(selector.reference_units(), 1), len(selected), explored)
        for variable, value in zip(self._progress.values(), progress):
            variable.assign(float(value))
        return Selection(channels=self.pool.to_dict(selected), cost_units=cost,
                         epoch=step if epoch is None else epoch,
                         mask=self.pool.flat_mask(selected), explored=explored,
                         seconds=time.perf_counter() - start)

    def _load_selector_state(self, selector, step):
        """The selector's initial state before the first resample, else the held one."""
        if step == 0:
            selector.state = selector.initial_state()
            return
        selector.state = {
            name: np.array(self._variables[name].numpy(), dtype=dtype).reshape(shape)
            for name, (shape, dtype) in selector.state_spec().items()
        }

    def _save_selector_state(self, selector):
        for name, (shape, dtype) in selector.state_spec().items():
            value = np.asarray(selector.state[name], dtype=dtype).reshape(shape)
            self._variables[name].assign(value)
