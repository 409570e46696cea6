"""MeDyate: norm-proportional dynamic channel sampling (arXiv 2510.20979, §4).

- Epoch 1: channels drawn uniformly at random inside the search space until
  the budget is full.
- Start of epoch 2: the channels trained in epoch 1 get their measured
  gradient norm; every channel never trained gets the *maximum* observed norm
  (once), so unexplored channels are the most likely to be drawn.
- Every later epoch: the channels trained in the previous epoch get their new
  norm (the others keep their stored value) and channels are drawn without
  replacement with probability proportional to the stored norm, until the
  budget is full. A floor of `epsilon x max` keeps zero-norm channels
  reachable.

Only norms of channels that were actually trained are used: that is all a
device running the method has.
"""

import numpy as np

from keras_medyate.strategies import base


class MeDyateSelector(base.ChannelSelector):
    """Norm-proportional sampling with max-fill of unseen channels.

    Args:
        pool: `ChannelPool`, the search space.
        budget_units: int, the memory budget.
        fill: `"stop"` or `"skip"`.
        epsilon: float, relative floor of the sampling weights. Defaults to
            `1e-3`.

    Example:

    >>> import numpy as np
    >>> from keras_medyate.strategies import base, medyate
    >>> pool = base.ChannelPool(("a",), np.array([4]), np.array([1]), np.array([0]))
    >>> selector = medyate.MeDyateSelector(pool, budget_units=2)
    >>> ctx = base.SelectionContext(epoch=0, rng=np.random.default_rng(0))
    >>> len(selector.select(ctx))
    2
    """

    name = "medyate"

    def __init__(self, pool, budget_units, fill="stop", epsilon=1e-3):
        super().__init__(pool, budget_units, fill)
        if not 0 <= epsilon < 1:
            raise ValueError(f"`epsilon` must be in [0, 1), got {epsilon!r}.")
        self.epsilon = float(epsilon)

    def initial_state(self):
        """The stored norm of every channel, which channels were measured, and
        whether the one-time max-fill of unseen channels was done."""
        return {
            "channel_memory": np.zeros(self.pool.size, np.float64),
            "channel_measured": np.zeros(self.pool.size, bool),
            "memory_max_filled": np.array(False),
        }

    def observe(self, previous, norms):
        """Stores the last epoch's norms of the channels it trained."""
        if previous is None or norms is None or len(previous) == 0:
            return
        previous = np.asarray(previous, dtype=np.int64)
        values = np.nan_to_num(np.asarray(norms, np.float64)[previous], nan=0.0)
        self.state["channel_memory"][previous] = values
        self.state["channel_measured"][previous] = True

    def propose(self, context):
        self.observe(context.previous, context.norms)
        measured = self.state["channel_measured"]
        if context.epoch == 0 or not measured.any():
            return self.fill_in_order(base.uniform_order(self.pool.size, context.rng))
        if not self.state["memory_max_filled"]:
            memory = self.state["channel_memory"]
            memory[~measured] = memory[measured].max()
            self.state["memory_max_filled"] = True
        weights = base.floored(self.state["channel_memory"], self.epsilon)
        return self.fill_in_order(base.weighted_order(weights, context.rng))
