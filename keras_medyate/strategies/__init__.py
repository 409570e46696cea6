"""Channel-selection strategies: configured `Strategy` objects and their `ChannelSelector`s.

Pass a strategy to `kmd.ChannelResampler(plan, strategy=...)` as a configured
object or by name (its options then keep their defaults):

| name | strategy | options |
|---|---|---|
| `medyate` | `MeDyate` | `epsilon` |
| `trady` | `TraDy` | |
| `full_random` | `FullRandom` | |
| `static_random` | `StaticRandom` | |
| `sparse_update` | `SparseUpdate` | `scheme`, `criteria` |
| `det_rgn` | `DetRGN` | `probe_data` (required), `probe_steps` |
| `det_raw` | `DetRaw` | `probe_data` (required), `probe_steps` |
| `prob_raw` | `ProbRaw` | `probe_data` (required), `probe_steps`, `epsilon` |
| `full` | `Full` | |
| `classifier` | `ClassifierOnly` | |

A selector of your own (a `ChannelSelector` subclass) is configured with
`Strategy(MySelector, **options)`.

Example:

>>> import keras_medyate as kmd
>>> kmd.strategies.create("medyate").epsilon == kmd.strategies.MeDyate().epsilon
True
"""

from keras_medyate.channel_pool import ChannelPool  # noqa: F401 - kept here for older code
from keras_medyate.strategies.base import ChannelSelector, SelectionContext, fill_budget
from keras_medyate.strategies.medyate import MeDyate
from keras_medyate.strategies.oracles import DetRaw, DetRGN, ProbRaw
from keras_medyate.strategies.random import FullRandom, StaticRandom, TraDy
from keras_medyate.strategies.reference import ClassifierOnly, Full
from keras_medyate.strategies.registry import STRATEGIES, build, create, get, strategy_class
from keras_medyate.strategies.sparse_update import SparseUpdate
from keras_medyate.strategies.strategy import Strategy

__all__ = [
    "STRATEGIES",
    "ChannelSelector",
    "ClassifierOnly",
    "DetRGN",
    "DetRaw",
    "Full",
    "FullRandom",
    "MeDyate",
    "ProbRaw",
    "SelectionContext",
    "SparseUpdate",
    "StaticRandom",
    "Strategy",
    "TraDy",
    "build",
    "create",
    "fill_budget",
    "get",
    "strategy_class",
]
