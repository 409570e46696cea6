"""Channel-selection strategies behind one `ChannelSelector` interface."""

from keras_medyate.strategies.base import ChannelPool, ChannelSelector, SelectionContext, fill_budget
from keras_medyate.strategies.registry import STRATEGIES, build, get
