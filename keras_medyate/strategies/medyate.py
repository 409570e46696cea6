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

The random draw and its order are `random_stream` (a counter-based hash of
`(seed, epoch)`, float32 throughout), the one definition the exported LiteRT
model (`tflite_export.sampler`) computes too: given the same seed and state,
host and device select the same channels.

`MeDyate` is the strategy as `ChannelResampler` takes it (its options);
`MeDyateSelector` draws the channels.
"""

import numpy as np

from keras_medyate.strategies import base, random_stream
from keras_medyate.strategies import strategy as strategy_lib


class MeDyateSelector(base.ChannelSelector):
    """Norm-proportional sampling with max-fill of unseen channels.

    Args:
        pool: `ChannelPool`, the search space.
        budget_units: int, the memory budget.
        fill: `"stop"` or `"skip"`.
        epsilon: float, relative floor of the sampling weights. Defaults to
            `1e-3`.

    The draw of epoch `e` is `random_stream.medyate_order(seed, e, ...)` with
    `seed = context.seed` (the `ChannelResampler`'s seed); a context without
    a seed takes one from `context.rng`.

    Example:

    >>> import numpy as np
    >>> from keras_medyate.channel_pool import ChannelPool
    >>> from keras_medyate.strategies import base, medyate
    >>> pool = ChannelPool(("a",), np.array([4]), np.array([1]), np.array([0]))
    >>> selector = medyate.MeDyateSelector(pool, budget_units=2)
    >>> ctx = base.SelectionContext(epoch=0, rng=np.random.default_rng(0))
    >>> len(selector.select(ctx))
    2
    """

    name = "medyate"

    def __init__(self, pool, budget_units, fill="stop", epsilon=1e-3):
        super().__init__(pool, budget_units, fill)
        self.epsilon = base.check_epsilon(epsilon)

    def initial_state(self):
        """The stored norm of every channel (float32, as on the device), which
        channels were measured, and whether the one-time max-fill of unseen
        channels was done."""
        return {
            "channel_memory": np.zeros(self.pool.size, np.float32),
            "channel_measured": np.zeros(self.pool.size, bool),
            "memory_max_filled": np.array(False),
        }

    def observe(self, previous, norms):
        """Stores the last epoch's norms of the channels it trained."""
        if previous is None or norms is None or len(previous) == 0:
            return
        previous = np.asarray(previous, dtype=np.int64)
        values = random_stream.clean_norms(np.asarray(norms)[previous])
        self.state["channel_memory"][previous] = values
        self.state["channel_measured"][previous] = True

    def propose(self, context):
        self.observe(context.previous, context.norms)
        seed = context.seed
        if seed is None:
            seed = int(context.rng.integers(2**32))
        measured = self.state["channel_measured"]
        memory = self.state["channel_memory"]
        uniform = context.epoch == 0 or not measured.any()
        if not uniform and not self.state["memory_max_filled"]:
            memory[~measured] = random_stream.max_fill_value(memory, measured)
            self.state["memory_max_filled"] = np.array(True)
        order = random_stream.medyate_order(seed, context.epoch, memory, self.epsilon, uniform)
        return self.fill_in_order(order)


class MeDyate(strategy_lib.Strategy):
    """MeDyate (arXiv 2510.20979): norm-proportional sampling, max-fill of unseen channels.

    Args:
        epsilon: float in [0, 1), the floor of the sampling weights as a
            fraction of the largest (0: a channel whose stored norm is 0 is
            never drawn). Defaults to `1e-3`.

    Raises:
        ValueError: `epsilon` is not a number in [0, 1).

    Example:

    >>> import keras_medyate as kmd
    >>> strategy = kmd.strategies.MeDyate(epsilon=1e-2)
    >>> strategy.name, strategy.epsilon
    ('medyate', 0.01)
    """

    selector_class = MeDyateSelector
    option_names = ("epsilon",)

    def __init__(self, epsilon=1e-3):
        self.epsilon = base.check_epsilon(epsilon)
        super().__init__(epsilon=self.epsilon)

