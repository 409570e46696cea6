"""Strategy names → strategy and selector classes; `create` makes a configured `Strategy`."""

from keras_medyate.strategies import base, medyate, oracles, random, reference, sparse_update
from keras_medyate.strategies import strategy as strategy_lib

_STRATEGY_CLASSES = {
    cls.selector_class.name: cls
    for cls in (
        medyate.MeDyate,
        random.TraDy,
        random.FullRandom,
        random.StaticRandom,
        sparse_update.SparseUpdate,
        oracles.DetRGN,
        oracles.DetRaw,
        oracles.ProbRaw,
        reference.Full,
        reference.ClassifierOnly,
    )
}

_BY_SELECTOR = {cls.selector_class: cls for cls in _STRATEGY_CLASSES.values()}

STRATEGIES = tuple(_STRATEGY_CLASSES)


def strategy_class(strategy):
    """The `Strategy` class for a name, a `Strategy` (class or object) or a selector class.

    A `ChannelSelector` subclass of your own gives `Strategy` itself.

    Raises:
        ValueError: unknown name or type; the message lists the accepted names.
    """
    if isinstance(strategy, strategy_lib.Strategy):
        return type(strategy)
    if isinstance(strategy, type) and issubclass(strategy, strategy_lib.Strategy) \
            and strategy.selector_class is not None:
        return strategy
    if isinstance(strategy, type) and issubclass(strategy, base.ChannelSelector):
        return _BY_SELECTOR.get(strategy, strategy_lib.Strategy)
    if isinstance(strategy, str) and strategy.lower() in _STRATEGY_CLASSES:
        return _STRATEGY_CLASSES[strategy.lower()]
    if isinstance(strategy, str):
        raise ValueError(
            f"Unknown strategy {strategy!r}. Accepted: {', '.join(STRATEGIES)} "
            "(or a `kmd.strategies.Strategy`, or a `ChannelSelector` subclass)."
        )
    raise ValueError(
        f"`strategy` must be a name ({', '.join(STRATEGIES)}), a configured strategy such "
        "as `kmd.strategies.MeDyate(epsilon=1e-3)`, or a `ChannelSelector` subclass; got "
        f"{strategy!r}."
    )


def get(strategy):
    """The selector class of a strategy (a name, a `Strategy` or a selector class).

    Raises:
        ValueError: unknown name; the message lists the accepted names.
    """
    if isinstance(strategy, strategy_lib.Strategy):
        return strategy.selector_class
    if isinstance(strategy, type) and issubclass(strategy, base.ChannelSelector):
        return strategy
    return strategy_class(strategy).selector_class


def create(strategy, **options):
    """A configured `Strategy`.

    Args:
        strategy: a `Strategy` object (returned as it is), a registered name
            (`"medyate"`, ...) or `Strategy` subclass (made with `options`), a
            `ChannelSelector` subclass (`Strategy(that class, **options)`), or
            a dict from `Strategy.get_config()`.
        **options: the strategy's constructor arguments (`epsilon=1e-2`).

    Returns:
        `Strategy`.

    Raises:
        ValueError: an unknown name or type, options given with a `Strategy`
            object, or a bad option value.

    Example:

    >>> from keras_medyate import strategies
    >>> strategies.create("medyate", epsilon=1e-2)
    MeDyate(epsilon=0.01)
    """
    if isinstance(strategy, strategy_lib.Strategy):
        if options:
            raise ValueError(
                f"Options {sorted(options)} were given with the configured strategy "
                f"{strategy!r}: pass them to its constructor instead."
            )
        return strategy
    if isinstance(strategy, dict):
        config = dict(strategy)
        return create(config.pop("name"), **config, **options)
    cls = strategy_class(strategy)
    if cls is strategy_lib.Strategy:
        return strategy_lib.Strategy(strategy, **options)
    return cls(**options)


def build(strategy, plan, fill="stop", **options):
    """The selector of `strategy` for `plan`: `create(strategy, **options).build(plan, fill)`.

    Raises:
        ValueError: unknown strategy, bad `fill` or option, or a whole-network
            strategy on a plan that is not the whole network.
    """
    return create(strategy, **options).build(plan, fill=fill)
