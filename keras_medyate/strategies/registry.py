"""Strategy names → selector classes, and the factory that builds a selector for a plan."""

from keras_medyate.strategies import base, medyate, oracles, random, reference, sparse_update

_SELECTORS = {
    cls.name: cls
    for cls in (
        medyate.MeDyateSelector,
        random.UniformSelector,
        random.FullRandomSelector,
        random.StaticRandomSelector,
        sparse_update.SparseUpdateSelector,
        oracles.DetRGNSelector,
        oracles.DetRawSelector,
        oracles.ProbRawSelector,
        reference.FullSelector,
        reference.ClassifierOnlySelector,
    )
}

STRATEGIES = tuple(_SELECTORS)


def get(strategy):
    """Returns the selector class for a strategy name or class.

    Raises:
        ValueError: unknown name; the message lists the accepted names.
    """
    if isinstance(strategy, type) and issubclass(strategy, base.ChannelSelector):
        return strategy
    if isinstance(strategy, str) and strategy.lower() in _SELECTORS:
        return _SELECTORS[strategy.lower()]
    raise ValueError(
        f"Unknown strategy {strategy!r}. Accepted: {', '.join(STRATEGIES)} "
        "(or a `ChannelSelector` subclass)."
    )


def build(strategy, plan, fill="stop", **options):
    """The selector of `strategy` (a name or a `ChannelSelector` class) for `plan`.

    Every strategy is built the same way, by its class's `from_plan`; options
    it does not take (`epsilon` for `trady`, ...) are left out.

    Raises:
        ValueError: unknown strategy, bad `fill` or option, or a whole-network
            strategy on a plan that is not the whole network.
    """
    return get(strategy).from_plan(plan, fill=fill, **options)
