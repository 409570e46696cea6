"""Oracle strategies that read the full gradient of every channel.

They cannot run on a device (they need the weight gradient of channels that
are not trained) and serve as references, as in TraDy and MeDyate:

- `det_rgn` (D-Det RGN): the channels of highest reweighted gradient norm
  `||G_c|| / cost_c`, greedily, until the budget is full;
- `det_raw` (LaRa Det Raw): the channels of highest raw norm `||G_c||`;
- `prob_raw` (LaRa Prob Raw): sampling without replacement with p ∝ `||G_c||`.

The norms are the per-step mean of the last epoch for every channel of the
search space (the masked training step computes them for free), and, before
epoch 1, a gradient-only measurement on `probe_data` given to the
`ChannelResampler`.
"""

import numpy as np

from keras_medyate.strategies import base


class _OracleSelector(base.ChannelSelector):
    needs_all_norms = True

    def __init__(self, pool, budget_units, fill="stop", epsilon=1e-3):
        super().__init__(pool, budget_units, fill)
        self.epsilon = float(epsilon)

    def norms_of(self, context):
        if context.norms is None:
            raise ValueError(
                f"Strategy {self.name!r} needs the gradient norms of every channel "
                "before each epoch; pass `probe_data=` to `ChannelResampler`."
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
