"""`ChannelResampler`: the callback that picks each epoch's channels.

At the start of every epoch it reads the per-channel gradient norms that
`SubnetworkModel` accumulated during the previous epoch, asks the strategy for
the new selection, and writes it to the model's mask variables (no retrace).

The selector is built from the plan by the strategies' one factory
(`strategies.build`). All state that must survive a restart (the state the
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
>>> resampler = kmd.ChannelResampler(plan, strategy="medyate", seed=0)
>>> _ = trainer.fit(np.random.rand(8, 8, 8, 3), np.arange(8) % 2, epochs=2,
...                 verbose=0, callbacks=[resampler])
>>> resampler.history[1].cost_units <= plan.budget_units
True
"""

import dataclasses
import time

import keras
import numpy as np

from keras_medyate import planning
from keras_medyate import subnetwork_model as subnetwork_lib
from keras_medyate.strategies import base as strategies_base
from keras_medyate.strategies import registry


@dataclasses.dataclass
class EpochSelection:
    """The channels trained in one epoch.

    Attributes:
        epoch: int, 0-based epoch.
        channels: dict, layer name → sorted int array of input-channel indices.
        cost_units: int, memory units of the selection.
        explored: float, fraction of the search space trained so far.
        seconds: float, time the resampling took.
    """

    epoch: int
    channels: dict
    cost_units: int
    explored: float
    seconds: float

    @property
    def num_channels(self):
        return int(sum(len(v) for v in self.channels.values()))


class ChannelResampler(keras.callbacks.Callback):
    """Selects the input channels to train at the start of every epoch.

    Args:
        plan: the `Plan` of the `SubnetworkModel` being trained.
        strategy: str or `ChannelSelector` class. One of `medyate` (default),
            `trady`, `full_random`, `static_random`, `sparse_update`,
            `det_rgn`, `det_raw`, `prob_raw`, `full`, `classifier`, or your
            own subclass (the state its `initial_state()` declares is kept
            in the model like MeDyate's).
        seed: int >= 0, seed of the random draws. Defaults to 0.
        fill: `"stop"` (end the budget fill at the first channel that does
            not fit, as in the authors' code; default) or `"skip"` (skip it
            and keep filling with cheaper channels).
        norm_statistic: `"mean"` (mean of the per-step channel norms over the
            epoch; default) or `"last"` (last step's gradient).
        epsilon: float, relative floor of sampling weights. Defaults to 1e-3.
        scheme: dict, the `sparse_update` scheme (see
            `keras_medyate.strategies.sparse_update`); None builds one.
        criteria: `sparse_update` channel criterion, `"magnitude+"` default.
        probe_data: dataset of (x, y) batches for the oracles' full-gradient
            measurement before the first epoch.
        probe_steps: int >= 1 or None (every batch), batches of `probe_data`
            to use.
        log_dir: str or None, a TensorBoard log directory for per-epoch
            scalars (budget used, channels selected, explored, per layer).
        verbose: int, 1 prints one line per epoch.

    Attributes:
        history: dict, epoch → `EpochSelection`.

    Raises:
        ValueError: a bad argument (unknown strategy or fill, a seed that is
            not a non-negative integer, `probe_steps` below 1, an oracle
            without `probe_data`…).
    """

    #: Tells `SubnetworkModel.fit` that this callback writes the selection every epoch.
    writes_selection = True

    def __init__(self, plan, strategy="medyate", seed=0, fill="stop",
                 norm_statistic="mean", epsilon=1e-3, scheme=None,
                 criteria="magnitude+", probe_data=None, probe_steps=None,
                 log_dir=None, verbose=0):
        super().__init__()
        if not isinstance(plan, planning.Plan):
            raise ValueError(
                f"`plan` must be a `Plan` from `kmd.plan(...)`, got {type(plan).__name__}."
            )
        if norm_statistic not in subnetwork_lib.NORM_STATISTICS:
            raise ValueError(
                f"`norm_statistic` must be one of {subnetwork_lib.NORM_STATISTICS}, "
                f"got {norm_statistic!r}."
            )
        self.selector = registry.build(strategy, plan, fill=fill, epsilon=epsilon,
                                       scheme=scheme, criteria=criteria)
        self.selector_class = type(self.selector)
        if self.selector_class.needs_all_norms and probe_data is None:
            raise ValueError(
                f"Strategy {self.selector_class.name!r} is an oracle: it needs the full "
                "gradient before the first epoch. Pass `probe_data=` (a few training "
                "batches) to `ChannelResampler`."
            )
        self.plan = plan
        self.strategy = self.selector_class.name
        self.seed = _check_seed(seed)
        self.fill = fill
        self.norm_statistic = norm_statistic
        self.epsilon = float(epsilon)
        self.scheme = scheme
        self.criteria = criteria
        self.probe_data = probe_data
        self.probe_steps = _check_probe_steps(probe_steps)
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
        """Constructor arguments (the plan as its config; not `probe_data`)."""
        return {
            "plan": self.plan.to_config(),
            "strategy": self.strategy,
            "seed": self.seed,
            "fill": self.fill,
            "norm_statistic": self.norm_statistic,
            "epsilon": self.epsilon,
            "scheme": self.scheme,
            "criteria": self.criteria,
            "probe_steps": self.probe_steps,
            "log_dir": self.log_dir,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config, probe_data=None):
        config = dict(config)
        config["plan"] = planning.Plan.from_config(config["plan"])
        return cls(probe_data=probe_data, **config)

    def set_model(self, model):
        """Attaches to the model; a `SubnetworkModel` is made to hold the
        selector's declared state (before any backup is restored into it)."""
        super().set_model(model)
        if isinstance(model, subnetwork_lib.SubnetworkModel):
            self._check_trainer(model)
            model.store_selector_state(self.selector.state_spec())

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
            trainer.use_dense_kernel_gradients(reason=f"Strategy {self.strategy!r}")

    def on_train_begin(self, logs=None):
        self._check_trainer(self.model)
        self.history = {}
        if self.log_dir and self._writer is None:
            import tensorflow as tf  # noqa: PLC0415

            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_begin(self, epoch, logs=None):
        start = time.perf_counter()
        trainer = self.model
        pool = self.plan.pool
        step = int(trainer.epochs_selected.numpy())
        previous = trainer.current_selection() if step > 0 else None
        norms = trainer.channel_norms(self.norm_statistic) if step > 0 else None
        if self.selector.needs_all_norms and norms is None:
            norms = trainer.measure_channel_norms(self.probe_data, self.probe_steps)
        self._load_state(trainer, step)
        context = strategies_base.SelectionContext(
            epoch=step,
            rng=np.random.default_rng([self.seed, step]),
            previous=previous,
            norms=norms,
            kernels=trainer.kernel_values,
            seed=self.seed,
        )
        selected = self.selector.select(context)
        seen = trainer.selection_state[subnetwork_lib.SEEN].numpy()
        seen[selected] = 1.0
        trainer.selection_state[subnetwork_lib.SEEN].assign(seen)
        self._save_state(trainer)
        # The selector keeps to its budget (or, for full fine-tuning, ignores it by design).
        trainer.set_selection(selected, allow_over_budget=True)
        trainer.reset_norms()
        trainer.epochs_selected.assign(step + 1)
        cost = pool.cost_of(selected)
        explored = float(seen.mean()) if seen.size else 0.0
        reference = self.selector.reference_units()
        trainer.set_progress(cost / max(reference, 1), len(selected), explored)
        record = EpochSelection(
            epoch=epoch,
            channels=pool.to_dict(selected),
            cost_units=cost,
            explored=explored,
            seconds=time.perf_counter() - start,
        )
        self.history[epoch] = record
        if self.verbose:
            print(f"ChannelResampler[{self.strategy}] epoch {epoch + 1}: "
                  f"{record.num_channels} channels, {cost:,}/{self.plan.budget_units:,} "
                  f"units, explored {100 * explored:.1f} %")
        self._write_summaries(record)

    def _load_state(self, trainer, step):
        """The selector's state: its initial state before the first epoch, else
        what the model holds (a resumed run continues from it)."""
        if step == 0:
            self.selector.state = self.selector.initial_state()
            return
        self.selector.state = {
            name: np.array(trainer.selection_state[name].numpy(), dtype=dtype).reshape(shape)
            for name, (shape, dtype) in self.selector.state_spec().items()
        }

    def _save_state(self, trainer):
        for name, (shape, dtype) in self.selector.state_spec().items():
            value = np.asarray(self.selector.state[name], dtype=dtype).reshape(shape)
            trainer.selection_state[name].assign(value)

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


def _check_probe_steps(probe_steps):
    """`probe_steps` as an int or None; raises unless None or an integer >= 1."""
    if probe_steps is None:
        return None
    if not strategies_base.is_integer(probe_steps) or probe_steps < 1:
        raise ValueError(
            f"`probe_steps` must be an integer >= 1 (batches of `probe_data` the oracle "
            f"measures) or None (every batch), got {probe_steps!r}."
        )
    return int(probe_steps)
