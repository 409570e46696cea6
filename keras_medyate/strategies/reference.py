"""Reference strategies: full fine-tuning and classifier only.

- `full`: every channel of the search space, every epoch; the budget does not
  apply (with a plan over the whole network this is full fine-tuning of the
  kernels).
- `classifier`: no channel of the search space; only the always-trained
  classifier learns.

The strategies take no option: `kmd.strategies.Full()`, `ClassifierOnly()`.
"""

import numpy as np

from keras_medyate.strategies import base
from keras_medyate.strategies import strategy as strategy_lib


class FullSelector(base.ChannelSelector):
    """All channels of the search space."""

    name = "full"
    ignores_budget = True

    def propose(self, context):
        return np.arange(self.pool.size, dtype=np.int64)


class ClassifierOnlySelector(base.ChannelSelector):
    """No channel: only the classifier trains."""

    name = "classifier"

    def propose(self, context):
        return np.zeros(0, dtype=np.int64)


class Full(strategy_lib.Strategy):
    """Every channel of the search space, every epoch (the budget does not apply)."""

    selector_class = FullSelector

    def __init__(self):
        super().__init__()


class ClassifierOnly(strategy_lib.Strategy):
    """No channel of the search space: only the classifier trains."""

    selector_class = ClassifierOnlySelector

    def __init__(self):
        super().__init__()
