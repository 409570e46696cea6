"""Random strategies: TraDy, dynamic full random, static random.

- `trady` (TraDy, arXiv 2510.19675, Algorithm 1): every epoch, channels drawn
  uniformly without replacement inside the search space (the top-K layers)
  until the budget is full.
- `full_random` (D-Full Random): the same draw over the *whole* network; it
  needs a plan whose search space is every updatable layer
  (`kmd.plan(model, budget)` without a ranking).
- `static_random` (S-Full Random, PaCA): one uniform draw before training,
  kept for every epoch.

The strategies take no option: `kmd.strategies.TraDy()`, `FullRandom()`,
`StaticRandom()`.
"""

from keras_medyate.strategies import base
from keras_medyate.strategies import strategy as strategy_lib


class UniformSelector(base.ChannelSelector):
    """Uniform channels inside the search space, redrawn every epoch (TraDy)."""

    name = "trady"

    def propose(self, context):
        return self.fill_in_order(base.uniform_order(self.pool.size, context.rng))


class FullRandomSelector(UniformSelector):
    """Uniform channels over the whole network, redrawn every epoch."""

    name = "full_random"
    whole_network = True


class StaticRandomSelector(UniformSelector):
    """One uniform draw over the whole network, kept for all epochs."""

    name = "static_random"
    static = True
    whole_network = True


class TraDy(strategy_lib.Strategy):
    """TraDy (arXiv 2510.19675): uniform channels inside the search space, every epoch.

    Example:

    >>> import keras_medyate as kmd
    >>> kmd.strategies.TraDy().name
    'trady'
    """

    selector_class = UniformSelector

    def __init__(self):
        super().__init__()


class FullRandom(strategy_lib.Strategy):
    """D-Full Random: uniform channels over the whole network, every epoch.

    It needs a plan over every layer: `kmd.plan(model, budget)` without a ranking.
    """

    selector_class = FullRandomSelector

    def __init__(self):
        super().__init__()


class StaticRandom(strategy_lib.Strategy):
    """S-Full Random (PaCA): one uniform draw over the whole network, kept.

    It needs a plan over every layer: `kmd.plan(model, budget)` without a ranking.
    """

    selector_class = StaticRandomSelector

    def __init__(self):
        super().__init__()
