"""Oracle strategies that read the full gradient of every channel.

They cannot run on a device (they need the weight gradient of channels that
are not trained) and serve as references, as in TraDy and MeDyate:

- `det_rgn` (D-Det RGN): the channels of highest reweighted gradient norm
  `||G_c|| / cost_c`, greedily, until the budget is full;
- `det_raw` (LaRa Det Raw): the channels of highest raw norm `||G_c||`;
- `prob_raw` (LaRa Prob Raw): sampling without replacement with p ∝ `||G_c||`.

The norms are the per-step mean of the last epoch for every channel of the
search space (the masked training step computes them for free), and, before
epoch 1, a gradient-only measurement on the strategy's `probe_data`:
`kmd.strategies.DetRGN(probe_data=train_ds, probe_steps=4)`.
"""

import numpy as np

from keras_medyate.strategies import base
from keras_medyate.strategies import strategy as strategy_lib


class _OracleSelector(base.ChannelSelector):
    needs_all_norms = True

    def __init__(self, pool, budget_units, fill="stop", epsilon=1e-3):
        super().__init__(pool, budget_units, fill)
        self.epsilon = float(epsilon)

    def norms_of(self, context):
        if context.norms is None:
            raise ValueError(
                f"Strategy {self.name!r} needs the gradient norms of every channel "
                "before each epoch; pass `probe_data=` to the strategy (e.g. "
                "`kmd.strategies.DetRGN(probe_data=train_ds)`)."
            )
        return np.nan_to_num(np.asarray(context.norms, np.float64), nan=0.0)


class DetRGNSelector(_OracleSelector):
    """Top reweighted gradient norm (norm / memory cost), deterministic."""

    name = "det_rgn"

    def propose(self, context):
        rgn = self.norms_of(context) / self.pool.costs
        return self.fill_in_order(np.argsort(-rgn, kind="stable"))


class DetRawSelector(_OracleSelector):
    """Top raw gradient norm, deterministic."""

    name = "det_raw"

    def propose(self, context):
        return self.fill_in_order(np.argsort(-self.norms_of(context), kind="stable"))


class ProbRawSelector(_OracleSelector):
    """Sampling with p ∝ the full raw gradient norm."""

    name = "prob_raw"

    def propose(self, context):
        weights = base.floored(self.norms_of(context), self.epsilon)
        return self.fill_in_order(base.weighted_order(weights, context.rng))


class _Oracle(strategy_lib.Strategy):
    """An oracle strategy: `probe_data` is required."""

    option_names = strategy_lib.PROBE_OPTIONS

    def __init__(self, probe_data=None, probe_steps=None):
        super().__init__(probe_data=probe_data, probe_steps=probe_steps)


class DetRGN(_Oracle):
    """D-Det RGN: the channels of highest gradient norm per memory unit (an oracle).

    Args:
        probe_data: dataset of `(x, y)` batches, or a tuple `(x, y)`
            (required): the model measures every channel's gradient on it
            before the first epoch (and after an epoch that trained no channel).
        probe_steps: int >= 1 or None, how many batches of `probe_data` to
            use; None: all of them. Defaults to None.

    Example:

    >>> import numpy as np
    >>> import keras_medyate as kmd
    >>> x, y = np.zeros((4, 8, 8, 3), np.float32), np.zeros(4, np.int32)
    >>> kmd.strategies.DetRGN(probe_data=(x, y), probe_steps=1)
    DetRGN(probe_data=..., probe_steps=1)
    """

    selector_class = DetRGNSelector


class DetRaw(_Oracle):
    """LaRa Det Raw: the channels of highest gradient norm (an oracle).

    Args:
        probe_data: as for `DetRGN` (required).
        probe_steps: int >= 1 or None, as for `DetRGN`. Defaults to None.
    """

    selector_class = DetRawSelector


class ProbRaw(_Oracle):
    """LaRa Prob Raw: channels drawn with p ∝ their gradient norm (an oracle).

    Args:
        probe_data: as for `DetRGN` (required).
        probe_steps: int >= 1 or None, as for `DetRGN`. Defaults to None.
        epsilon: float in [0, 1), the floor of the sampling weights as a
            fraction of the largest. Defaults to `1e-3`.
    """

    selector_class = ProbRawSelector
    option_names = (*strategy_lib.PROBE_OPTIONS, "epsilon")

    def __init__(self, probe_data=None, probe_steps=None, epsilon=1e-3):
        self.epsilon = base.check_epsilon(epsilon)
        super().__init__(probe_data, probe_steps)
        self.options["epsilon"] = self.epsilon
