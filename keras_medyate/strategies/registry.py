"""Strategy names → selector classes."""

from keras_medyate.strategies import medyate, oracles, random, reference, sparse_update

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
    if isinstance(strategy, type) and issubclass(strategy, medyate.base.ChannelSelector):
        return strategy
    if isinstance(strategy, str) and strategy.lower() in _SELECTORS:
        return _SELECTORS[strategy.lower()]
    raise ValueError(
        f"Unknown strategy {strategy!r}. Accepted: {', '.join(STRATEGIES)} "
        "(or a `ChannelSelector` subclass)."
    )
