"""keras-medyate: memory-budgeted dynamic channel-subset fine-tuning for Keras 3.

Implements MeDyate (arXiv 2510.20979) and TraDy (arXiv 2510.19675): fine-tune
a pretrained CNN under a hard memory budget by training, each epoch, a small
resampled subset of the input channels of its conv/dense kernels.

Example:

```python
import keras
import keras_medyate as kmd

ranking = kmd.rank_layers(model, proxy_ds, epochs=2)       # LaRa + RGN
plan = kmd.plan(model, budget="110KB", ranking=ranking)    # search space + budget
trainer = kmd.SubnetworkModel(model, plan)                 # masked train_step
trainer.compile(optimizer=keras.optimizers.SGD(0.125), loss=..., metrics=[...])
resampler = kmd.ChannelResampler(plan, strategy="medyate", seed=0)
trainer.fit(train_ds, epochs=50, callbacks=[resampler])
```
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_medyate.inventory import LayerInfo  # noqa: E402
from keras_medyate.memory import format_units, parse_budget  # noqa: E402
from keras_medyate.planning import Plan, plan  # noqa: E402
from keras_medyate.ranking import LayerRanking, rank_layers  # noqa: E402
from keras_medyate.resampler import ChannelResampler, EpochSelection  # noqa: E402
from keras_medyate.strategies import STRATEGIES  # noqa: E402
from keras_medyate.subnetwork_model import SubnetworkModel  # noqa: E402
from keras_medyate.version import __version__  # noqa: E402

__all__ = [
    "ChannelResampler",
    "EpochSelection",
    "LayerInfo",
    "LayerRanking",
    "Plan",
    "STRATEGIES",
    "SubnetworkModel",
    "format_units",
    "parse_budget",
    "plan",
    "rank_layers",
    "__version__",
]
