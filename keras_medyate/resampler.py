"""`ChannelResampler`: the callback that decides when the channels are drawn.

At the start of every epoch it has the model's selection state
(`SubnetworkModel.selection_state`, a `keras_medyate.selection.SelectionState`)
apply one draw of the strategy's selector: `selection_state.resample` reads the
per-channel gradient norms accumulated during the previous epoch, draws, and
writes the new selection to the model's mask variables (no retrace). The
callback keeps the records (`history`), prints and logs them.

The strategy is a configured object (`kmd.strategies.MeDyate(epsilon=1e-3)`)
or a registered name; its selector is built from the plan
(`Strategy.build`). All state that must survive a restart (the state the
selector declares, the explored set, the epoch counter, the masks and the
norm accumulators) lives in the model's non-trainable variables: attached to
a model, the resampler has it hold the selector's declared state. The random
draws of epoch `e` come from a generator seeded with `(seed, e)` (MeDyate:
from `strategies.random_stream` keyed by `(seed, e)`, the stream the exported
LiteRT model uses, so the device selects the same channels).
`keras.callbacks.BackupAndRestore` therefore resumes a run exactly where it
stopped, for any selector.

Example:

>>> import keras, numpy as np
>>> import keras_medyate as kmd
>>> model = keras.Sequential([keras.Input((8, 8, 3)),
...     keras.layers.Conv2D(8, 3, name="c1"), keras.layers.Conv2D(8, 3, name="c2"),
...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="head")])
>>> plan = kmd.plan(model, budget=200)
>>> trainer = kmd.SubnetworkModel(model, plan)
>>> trainer.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
>>> strategy = kmd.strategies.MeDyate(epsilon=1e-3)
>>> resampler = kmd.ChannelResampler(plan, strategy=strategy, seed=0)
>>> _ = trainer.fit(np.random.rand(8, 8, 8, 3), np.arange(8) % 2, epochs=2,
...                 verbose=0, callbacks=[resampler])
>>> resampler.history[1].cost_units <= plan.budget_units
True
"""

import functools
import warnings

import keras

from keras_medyate import planning
from keras_medyate import selection as selection_lib
from keras_medyate import subnetwork_model as subnetwork_lib
from keras_medyate.strategies import base as strategies_base
from keras_medyate.strategies import registry
from keras_medyate.strategies import strategy as strategy_lib

#: The record of one epoch's selection (the host and the device share it).
EpochSelection = selection_lib.Selection
#: `ChannelResampler`'s former strategy options, now the strategies' own
#: (accepted with a `DeprecationWarning`).
DEPRECATED_OPTIONS = ("epsilon", "scheme", "criteria", *strategy_lib.PROBE_OPTIONS)


class ChannelResampler(keras.callbacks.Callback):
    """Draws the input channels to train at the start of every epoch.

    The callback decides when; the draw itself is one call of the model's
    `selection_state.resample` with this strategy's selector.

    Args:
        plan: the `Plan` of the `SubnetworkModel` being trained.
        strategy: a configured strategy (`kmd.strategies.MeDyate(epsilon=1e-3)`,
            `kmd.strategies.DetRGN(probe_data=train_ds)`, ...), or a name, one
            of `medyate` (default), `trady`, `full_random`, `static_random`,
            `sparse_update`, `det_rgn`, `det_raw`, `prob_raw`, `full`,
            `classifier` (its options then keep their defaults; the oracles
            `det_*`/`prob_raw` need `probe_data`, so they are passed as
            objects), or a `ChannelSelector` subclass of your own (the state
            its `initial_state()` declares is kept in the model like
            MeDyate's). Defaults to `"medyate"`.
        seed: int >= 0, seed of the random draws. Defaults to 0.
        fill: `"stop"` (end the budget fill at the first channel that does
            not fit, as in the authors' code; default) or `"skip"` (skip it
            and keep filling with cheaper channels).
        norm_statistic: `"mean"` (mean of the per-step channel norms over the
            epoch; default) or `"last"` (last step's gradient).
        log_dir: str or None, a TensorBoard log directory for per-epoch
            scalars (budget used, channels selected, explored, per layer).
            Defaults to None.
        verbose: int, 1 prints one line per epoch. Defaults to 0.
        **deprecated_options: `epsilon`, `scheme`, `criteria`, `probe_data`,
            `probe_steps`: the strategy's options, formerly given here. They
            still work for now, with a `DeprecationWarning`; pass them to the
            strategy (`strategy=kmd.strategies.MeDyate(epsilon=...)`).

    Attributes:
        strategy: `kmd.strategies.Strategy`, the configured strategy.
        selector: `ChannelSelector`, its selector for `plan`.
        history: dict, epoch → `keras_medyate.selection.Selection` (also
            importable as `EpochSelection`).

    Raises:
        ValueError: a bad argument (unknown strategy or fill, a seed that is
            not a non-negative integer, an oracle without `probe_data`…).

    Example:

    >>> import keras
    >>> import keras_medyate as kmd
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c1"),
    ...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="head")])
    >>> plan = kmd.plan(model, budget=200)
    >>> kmd.ChannelResampler(plan, strategy=kmd.strategies.MeDyate(epsilon=1e-2)).strategy
    MeDyate(epsilon=0.01)
    """

    #: Tells `SubnetworkModel.fit` that this callback writes the selection every epoch.
    writes_selection = True

    def __init__(self, plan, strategy="medyate", seed=0, fill="stop",
                 norm_statistic="mean", *, log_dir=None, verbose=0, **deprecated_options):
        super().__init__()
        if not isinstance(plan, planning.Plan):
            raise ValueError(
                f"`plan` must be a `Plan` from `kmd.plan(...)`, got {type(plan).__name__}."
            )
        if norm_statistic not in selection_lib.NORM_STATISTICS:
            raise ValueError(
                f"`norm_statistic` must be one of {selection_lib.NORM_STATISTICS}, "
                f"got {norm_statistic!r}."
            )
        self.strategy = _configured(strategy, deprecated_options)
        self.selector = self.strategy.build(plan, fill=fill)
        self.plan = plan
        self.seed = _check_seed(seed)
        self.fill = fill
        self.norm_statistic = norm_statistic
        if log_dir is not None:
            try:
                import tensorboard  # noqa: F401, PLC0415
            except ImportError as error:
                raise ValueError(
                    "`log_dir` writes TensorBoard scalars, which needs the `tensorboard` "
                    "package: `pip install tensorboard`."
                ) from error
        self.log_dir = log_dir
        self.verbose = int(verbose)
        self.history = {}
        self._writer = None

    def get_config(self):
        """Constructor arguments (the plan and the strategy as configs; not `probe_data`)."""
        return {
            "plan": self.plan.to_config(),
            "strategy": self.strategy.get_config(),
            "seed": self.seed,
            "fill": self.fill,
            "norm_statistic": self.norm_statistic,
            "log_dir": self.log_dir,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config, probe_data=None):
        """The resampler of `get_config()`; an oracle's `probe_data` is given again."""
        config = dict(config)
        config["plan"] = planning.Plan.from_config(config["plan"])
        if isinstance(config.get("strategy"), dict) and probe_data is not None:
            config["strategy"] = {**config["strategy"], "probe_data": probe_data}
        elif probe_data is not None:  # a config of the former layout
            config["probe_data"] = probe_data
        return cls(**config)

    def set_model(self, model):
        """Attaches to the model; a `SubnetworkModel` is made to hold the
        selector's declared state (before any backup is restored into it)."""
        super().set_model(model)
        if isinstance(model, subnetwork_lib.SubnetworkModel):
            self._check_trainer(model)
            model.selection_state.hold(self.selector.state_spec())

    def _check_trainer(self, trainer):
        if not isinstance(trainer, subnetwork_lib.SubnetworkModel):
            raise ValueError(
                "`ChannelResampler` must be passed to the `fit` of a "
                f"`kmd.SubnetworkModel`, not of {type(trainer).__name__}. Wrap your "
                "model: `trainer = kmd.SubnetworkModel(model, plan)`."
            )
        if (trainer.plan.fingerprint != self.plan.fingerprint
                or list(trainer.plan.layers) != list(self.plan.layers)
                or trainer.plan.budget_units != self.plan.budget_units):
            raise ValueError(
                "The resampler's plan differs from the SubnetworkModel's plan (layers "
                "or budget); build both from the same `kmd.plan(...)` result."
            )
        if self.selector.needs_all_norms:
            trainer.use_dense_kernel_gradients(reason=f"Strategy {self.strategy.name!r}")

    def on_train_begin(self, logs=None):
        self._check_trainer(self.model)
        self.history = {}
        if self.log_dir and self._writer is None:
            import tensorflow as tf  # noqa: PLC0415

            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_begin(self, epoch, logs=None):
        trainer = self.model
        probe = None
        if self.strategy.needs_all_norms:
            probe = functools.partial(trainer.measure_channel_norms, self.strategy.probe_data,
                                      self.strategy.probe_steps)
        record = trainer.selection_state.resample(
            self.selector, self.seed, norm_statistic=self.norm_statistic,
            kernels=trainer.kernel_values, probe=probe, epoch=epoch)
        self.history[epoch] = record
        if self.verbose:
            print(f"ChannelResampler[{self.strategy.name}] epoch {epoch + 1}: "
                  f"{record.num_channels} channels, {record.cost_units:,}/"
                  f"{self.plan.budget_units:,} units, explored {100 * record.explored:.1f} %")
        self._write_summaries(record)

    def _write_summaries(self, record):
        if self._writer is None:
            return
        import tensorflow as tf  # noqa: PLC0415

        with self._writer.as_default(step=record.epoch):
            tf.summary.scalar("medyate/budget_used_units", record.cost_units)
            tf.summary.scalar("medyate/channels_selected", record.num_channels)
            tf.summary.scalar("medyate/explored", record.explored)
            for name, channels in record.channels.items():
                tf.summary.scalar(f"medyate/channels/{name}", len(channels))
        self._writer.flush()


def _check_seed(seed):
    """The seed as an int; raises unless it is an integer >= 0."""
    if not strategies_base.is_integer(seed) or seed < 0:
        raise ValueError(
            f"`seed` must be an integer >= 0 (it seeds numpy's generator with (seed, epoch)), "
            f"got {seed!r}. Pass e.g. `seed=0` (one integer per run)."
        )
    return int(seed)


def _configured(strategy, deprecated_options):
    """The configured `Strategy`, the former keyword options translated (with a warning)."""
    unknown = sorted(set(deprecated_options) - set(DEPRECATED_OPTIONS))
    if unknown:
        raise TypeError(f"ChannelResampler() got an unexpected keyword argument {unknown[0]!r}.")
    if not deprecated_options:
        return registry.create(strategy)
    given = ", ".join(f"`{name}`" for name in deprecated_options)
    if isinstance(strategy, strategy_lib.Strategy):
        raise ValueError(
            f"{given} given both to `ChannelResampler` and in the configured strategy "
            f"{strategy!r}: drop them from `ChannelResampler`."
        )
    cls = registry.strategy_class(strategy)
    accepted = set(cls.option_names)
    if registry.get(strategy).needs_all_norms:
        accepted |= set(strategy_lib.PROBE_OPTIONS)
    options = {k: v for k, v in deprecated_options.items() if k in accepted}
    strategy = registry.create(strategy, **options)
    ignored = sorted(set(deprecated_options) - accepted)
    warnings.warn(
        f"`ChannelResampler`'s {given} {'is' if len(deprecated_options) == 1 else 'are'} "
        "deprecated: a strategy takes its own options. Pass `strategy=kmd.strategies."
        f"{strategy_lib.call_form(strategy, [f'{k}=...' for k in options])}` instead"
        + (f" ({', '.join(ignored)}: no option of {strategy.name!r}, ignored)." if ignored
           else "."),
        DeprecationWarning, stacklevel=3)
    return strategy
