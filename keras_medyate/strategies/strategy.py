"""`Strategy`: a channel-selection strategy and its options, before it meets a plan.

`kmd.ChannelResampler(plan, strategy=...)` takes one: a configured object,
`kmd.strategies.MeDyate(epsilon=1e-3)`, or a registered name, `"medyate"`,
whose options then keep their defaults. Each built-in strategy is a subclass
whose constructor takes and checks its own options (MeDyate's `epsilon`,
Sparse Update's `scheme` and `criteria`, the oracles' `probe_data`); its
`build(plan, fill)` makes the `ChannelSelector` that draws the channels of
that plan. A selector of your own is configured with
`Strategy(MySelector, **options)`.

This module imports numpy only.

Example:

>>> from keras_medyate import strategies
>>> strategies.MeDyate(epsilon=1e-2)
MeDyate(epsilon=0.01)
>>> strategies.MeDyate(epsilon=2)
Traceback (most recent call last):
...
ValueError: `epsilon` must be a number in [0, 1) ...
"""

from keras_medyate.strategies import base

#: The options of a strategy whose selector reads every channel's gradient
#: (`needs_all_norms`, the oracles): the batches measured before the first epoch.
PROBE_OPTIONS = ("probe_data", "probe_steps")


class Strategy:
    """A `ChannelSelector` class with its options: what `ChannelResampler` takes.

    The built-in strategies are subclasses with their own arguments
    (`kmd.strategies.MeDyate(epsilon=1e-3)`, `kmd.strategies.TraDy()`, ...);
    this class itself configures a selector of your own. Options are checked
    here, when the strategy is made; those that need the plan (a Sparse
    Update scheme's layers, a whole-network strategy's plan) when `build`
    makes its selector.

    Args:
        selector_class: `ChannelSelector` subclass, the selector to build (a
            subclass of `Strategy` names its own in the class attribute).
        probe_data: dataset of `(x, y)` batches, or a tuple `(x, y)`: the
            batches the model measures every channel's gradient on before the
            first epoch. Required by a selector that reads the norms of
            channels it does not train (`needs_all_norms`: the oracles), and
            refused by the others. Defaults to None.
        probe_steps: int >= 1 or None, how many batches of `probe_data` to
            use; None: all of them. Defaults to None.
        **options: the selector's own constructor arguments, passed to it as
            they are (`build`).

    Attributes:
        name: str, the selector's `name`.
        needs_all_norms: bool, the selector reads every channel's norm (an
            oracle: the model then computes whole-kernel gradients).
        options: dict, the selector's options.

    Raises:
        ValueError: `selector_class` is not a `ChannelSelector` subclass, an
            oracle without `probe_data`, `probe_data` for a selector that
            does not read it, or `probe_steps` below 1.

    Example:

    >>> import numpy as np
    >>> from keras_medyate import strategies
    >>> class FirstChannels(strategies.ChannelSelector):
    ...     name = "first_channels"
    ...     def propose(self, context):
    ...         return self.fill_in_order(np.arange(self.pool.size))
    >>> strategies.Strategy(FirstChannels).name
    'first_channels'
    """

    #: The selector a subclass builds.
    selector_class = None
    #: The constructor arguments of a subclass, by name (`ChannelResampler`
    #: matches its deprecated keywords against them).
    option_names = ()

    def __init__(self, selector_class=None, probe_data=None, probe_steps=None, **options):
        selector_class = selector_class or type(self).selector_class
        if not (isinstance(selector_class, type)
                and issubclass(selector_class, base.ChannelSelector)):
            raise ValueError(
                f"`selector_class` must be a `ChannelSelector` subclass, got {selector_class!r}. "
                "For a built-in strategy use its class, e.g. `kmd.strategies.MeDyate()`."
            )
        self.selector_class = selector_class
        self.probe_steps = base.check_probe_steps(probe_steps)
        if selector_class.needs_all_norms and probe_data is None:
            raise ValueError(
                f"Strategy {selector_class.name!r} is an oracle: it needs the full gradient "
                "before the first epoch. Pass `probe_data=` (a few training batches): "
                f"`strategy=kmd.strategies.{call_form(self, ['probe_data=train_ds'])}`."
            )
        if not selector_class.needs_all_norms and (probe_data is not None
                                                   or probe_steps is not None):
            raise ValueError(
                f"Strategy {selector_class.name!r} reads only the norms of the channels it "
                "trains, so it takes no `probe_data` or `probe_steps` (the oracles det_rgn, "
                "det_raw and prob_raw do). Drop them."
            )
        self.probe_data = probe_data
        self.options = dict(options)

    @property
    def name(self):
        return self.selector_class.name

    @property
    def needs_all_norms(self):
        return self.selector_class.needs_all_norms

    def build(self, plan, fill="stop"):
        """The selector of this strategy for `plan`.

        Args:
            plan: the `Plan` to select in.
            fill: `"stop"` or `"skip"`, the budget fill (`base.fill_budget`).
                Defaults to `"stop"`.

        Returns:
            A new `ChannelSelector` (its state at the initial state).

        Raises:
            ValueError: an option that does not fit the plan (a whole-network
                strategy on a partial search space, a scheme over the budget).
        """
        return self.selector_class.from_plan(plan, fill=fill, **self.options)

    def get_config(self):
        """`name` and the options (not `probe_data`): `strategies.create` takes it back."""
        config = {"name": self.name, **self.options}
        if self.needs_all_norms:
            config["probe_steps"] = self.probe_steps
        return config

    def __repr__(self):
        arguments = [f"{k}={v!r}" for k, v in self.get_config().items() if k != "name"]
        return call_form(self, (["probe_data=..."] if self.needs_all_norms else []) + arguments)


def call_form(strategy, arguments):
    """How `strategy` is written with these arguments: `MeDyate(epsilon=0.01)`."""
    if type(strategy) is Strategy:  # a selector of the user's
        arguments = [strategy.selector_class.__name__, *arguments]
    return f"{type(strategy).__name__}({', '.join(arguments)})"
