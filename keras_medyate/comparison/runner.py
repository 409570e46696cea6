"""One fine-tuning run of one method, measured.

Methods and the search space they use (as in TraDy / MeDyate):

| method | plan | strategy |
|---|---|---|
| `medyate` | LaRa ranking, K by alpha = 0.2 | `medyate` |
| `trady` | RGN ranking, K by TraDy's 97 % rule | `trady` |
| `lara_trady` | LaRa ranking, K by alpha | `trady` |
| `full_random`, `static_random`, `det_rgn` | whole network | same name |
| `sparse_update` | whole network, scheme built in LaRa order | `sparse_update` |
| `det_raw`, `prob_raw` | LaRa ranking, K by alpha | same name (oracles) |
| `full` | whole network, every channel | `full` |
| `classifier` | whole network, no channel | `classifier` |
| `linear_probe` | the head fitted on frozen features, no SGD | – |

Protocol (`protocol="recommended"`, the default): every method starts from
the same head, fitted to convergence on the frozen features of the training
images (`kmd.fit_classifier`, a linear probe), then plain SGD (no momentum,
no weight decay), cosine decay after a linear warm-up, a per-variable
gradient clip, BatchNorm frozen, the LaRa ranking shipped with keras-medyate,
and each method's measured peak learning rate (`DEFAULT_LEARNING_RATES`;
see `benchmarks/RESULTS.md`). `protocol="paper"` gives the papers' own
settings back: a fresh random head, SGD at 0.125 for every method, no clip,
5 warm-up epochs.
A run whose loss becomes NaN/inf or grows 10× stops with
`TrainingDivergedError` (it names the learning rate) and yields no row.

Example:

```python
from keras_medyate import comparison
train_ds, test_ds, probe_ds, info = comparison.load_data("cifar10", 96, train_per_class=50)
row, resampler = comparison.run_one(
    comparison.RunConfig(model="mcunet_5fps", method="medyate", budget_units=15936),
    train_ds, test_ds, info, probe_ds=probe_ds)
print(row["top1"], row["update_memory_kb"])
```
"""

import dataclasses
import math
import os
import time
import warnings
from typing import Optional

import keras
import numpy as np

from keras_medyate import memory

#: method → (plan kind, strategy). Plan kinds: "lara" (LaRa + alpha rule),
#: "rgn97" (RGN + 97 % rule), "lara_all" (every layer, LaRa order), "all".
METHODS = {
    "medyate": ("lara", "medyate"),
    "trady": ("rgn97", "trady"),
    "lara_trady": ("lara", "trady"),
    "full_random": ("all", "full_random"),
    "static_random": ("all", "static_random"),
    "sparse_update": ("lara_all", "sparse_update"),
    "det_rgn": ("all", "det_rgn"),
    "det_raw": ("lara", "det_raw"),
    "prob_raw": ("lara", "prob_raw"),
    "full": ("all", "full"),
    "classifier": ("all", "classifier"),
    "linear_probe": ("all", "classifier"),
}
#: Methods whose result does not depend on the budget (run once per seed).
BUDGET_FREE = ("full", "classifier", "linear_probe")
#: Where the head comes from before fine-tuning.
HEAD_INITS = ("linear_probe", "random")
#: Peak SGD learning rate per method under the recommended protocol
#: (measured on MCUNet / CIFAR-10 with a probe-fitted head: benchmarks/RESULTS.md).
DEFAULT_LEARNING_RATES = {"full": 0.005, "classifier": 0.05}
DEFAULT_BUDGETED_LEARNING_RATE = 0.05
#: The two protocols: our recommended recipe and the papers' settings.
PROTOCOLS = {
    "recommended": {"head_init": "linear_probe", "clipnorm": 1.0, "warmup_epochs": 1},
    "paper": {"head_init": "random", "clipnorm": 0.0, "warmup_epochs": 5,
              "learning_rate": 0.125, "full_learning_rate": 0.125},
}
CSV_COLUMNS = (
    "model", "dataset", "method", "budget_units", "seed", "top1", "epochs", "train_seconds",
    "peak_memory_mb", "update_memory_kb", "epoch_seconds", "first_epoch_seconds",
    "resample_seconds_per_epoch",
    "explored", "search_space_layers", "channels_per_epoch", "full_memory_kb", "resolution",
    "train_images", "test_images", "learning_rate", "head_init", "augment", "clipnorm",
    "warmup_epochs", "probe_l2", "probe_seconds",
)


@dataclasses.dataclass
class RunConfig:
    """Settings of one run (defaults: the recommended protocol, scaled down).

    `learning_rate` / `full_learning_rate` of None take the method's default
    (`DEFAULT_LEARNING_RATES`); `protocol_defaults("paper")` gives the papers'.
    With `backup_dir`, each epoch is backed up (`keras.callbacks.BackupAndRestore`,
    selection state included) and an interrupted run resumes where it stopped.
    """

    model: str = "mcunet_5fps"
    method: str = "medyate"
    budget_units: int = 15936
    seed: int = 0
    epochs: int = 10
    warmup_epochs: int = 1
    resolution: int = 96
    learning_rate: Optional[float] = None
    full_learning_rate: Optional[float] = None
    clipnorm: float = 1.0
    ranking: str = "lara"
    probe_steps: int = 4
    head_init: str = "linear_probe"
    augment: bool = False
    backup_dir: Optional[str] = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(
                f"Unknown method {self.method!r}. Accepted: {', '.join(METHODS)}.")
        if self.head_init not in HEAD_INITS:
            raise ValueError(
                f"Unknown head_init {self.head_init!r}. Accepted: {', '.join(HEAD_INITS)}.")
        if self.method == "linear_probe" and self.head_init != "linear_probe":
            raise ValueError("method='linear_probe' needs head_init='linear_probe'.")

    def peak_learning_rate(self):
        """The peak SGD learning rate this run uses."""
        strategy = METHODS[self.method][1]
        if strategy == "full":
            return self.full_learning_rate or DEFAULT_LEARNING_RATES["full"]
        if self.learning_rate:
            return self.learning_rate
        return DEFAULT_LEARNING_RATES.get(self.method, DEFAULT_BUDGETED_LEARNING_RATE)


def protocol_defaults(protocol):
    """The `RunConfig` settings of a protocol ("recommended" or "paper")."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}. Accepted: {', '.join(PROTOCOLS)}.")
    return dict(PROTOCOLS[protocol])


def build_plan(model, method, budget_units, ranking="lara"):
    """The plan a method uses (see the module docstring)."""
    import keras_medyate as kmd

    kind, _ = METHODS[method]
    with warnings.catch_warnings():
        # "full" and "classifier" ignore the budget; big budgets only warn.
        warnings.simplefilter("ignore", UserWarning)
        if kind == "all":
            return kmd.plan(model, budget_units)
        if kind == "lara":
            return kmd.plan(model, budget_units, ranking=_ranking(ranking, "lara"))
        if kind == "rgn97":
            return kmd.plan(model, budget_units, ranking=_ranking(ranking, "rgn"),
                            k_rule="cumulative")
        everything = len(kmd.plan(model, budget_units).layers)
        return kmd.plan(model, budget_units, ranking=_ranking(ranking, "lara"), k=everything)


def _ranking(ranking, metric):
    # "lara" names the shipped ranking; the metric comes from the method.
    return metric if ranking in ("lara", "rgn") else ranking


def cosine_schedule(peak, steps_per_epoch, epochs, warmup_epochs):
    """Cosine decay to 0 after a linear warm-up, as in the papers."""
    import keras

    warmup = min(warmup_epochs, max(epochs - 1, 0)) * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(epochs * steps_per_epoch - warmup, 1),
        warmup_target=peak, warmup_steps=warmup)


def load_data(dataset, resolution, batch_size=32, train_per_class=None, test_per_class=None,
              augment=False, seed=0):
    """The pipelines of a comparison run: (train, test, probe, info).

    The images (the per-class subsets) are the same for every `seed`; `train`
    is shuffled (and augmented when `augment`) in an order fixed by `seed`, the
    run's seed. `probe` is the same training images in a fixed order without
    augmentation: the linear probe is fitted on it. A dataset smaller than
    asked raises before any image is decoded.
    """
    from keras_medyate import data

    options = dict(image_size=resolution, batch_size=batch_size, train_per_class=train_per_class,
                   test_per_class=test_per_class, seed=0)
    train_ds, test_ds, info = data.load(dataset, augment=augment, shuffle_seed=seed, **options)
    probe_ds, _, _ = data.load(dataset, shuffle=False, **options)
    return train_ds, test_ds, probe_ds, info


_PROBE_HEADS = {}


def probe_head(config, model, probe_ds, info, verbose=0):
    """Fits `model`'s head on frozen features, once per model, data and resolution.

    The fitted head is cached in the process, so every method of a
    comparison starts from the same head. Returns the `ClassifierFit`.
    """
    from keras_medyate.linear_probe import fit_classifier

    key = (config.model, config.resolution, info)
    if key not in _PROBE_HEADS:
        report = fit_classifier(model, probe_ds, verbose=verbose)
        layer = model.get_layer(report.classifier)
        _PROBE_HEADS[key] = (report, [w.copy() for w in layer.get_weights()])
    report, weights = _PROBE_HEADS[key]
    model.get_layer(report.classifier).set_weights(weights)
    return report


def run_one(config, train_ds, test_ds, info, probe_ds=None, verbose=0):
    """Fine-tunes a fresh copy of `config.model` with one method.

    Args:
        config: a `RunConfig`.
        train_ds, test_ds: batched `(x, y)` pipelines.
        info: the `DatasetInfo` of the data.
        probe_ds: the training images without augmentation, for the linear
            probe (default: `train_ds`).
        verbose: 0 silent; 1 the plan and one line per epoch; 2 Keras' own
            per-epoch lines.

    Returns:
        (row, resampler): a dict with the `CSV_COLUMNS`, and the
        `ChannelResampler` (its `history` holds the per-epoch selections;
        None for `linear_probe`).

    Raises:
        TrainingDivergedError: the loss became NaN/inf or grew 10x.
    """
    import keras
    import tensorflow as tf

    import keras_medyate as kmd
    from keras_medyate import divergence, models

    keras.utils.set_random_seed(config.seed)
    model = models.from_tiny_training(
        config.model, classes=info.num_classes,
        input_shape=(config.resolution, config.resolution, 3))
    probe = None
    if config.head_init == "linear_probe":
        # The result line only: a progress bar garbles logs.
        probe = probe_head(config, model, probe_ds if probe_ds is not None else train_ds, info,
                           verbose=2 if verbose else 0)
    plan = build_plan(model, config.method, config.budget_units, config.ranking)
    strategy = METHODS[config.method][1]
    needs_all_norms = kmd.strategies.get(strategy).needs_all_norms
    trainer = kmd.SubnetworkModel(model, plan)
    learning_rate = config.peak_learning_rate()
    epochs = 0 if config.method == "linear_probe" else config.epochs
    trainer.compile(
        optimizer=keras.optimizers.SGD(
            cosine_schedule(learning_rate, len(train_ds), max(epochs, 1), config.warmup_epochs),
            clipnorm=config.clipnorm or None),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    resampler = kmd.ChannelResampler(
        plan, strategy=strategy, seed=config.seed,
        probe_data=train_ds if needs_all_norms else None,
        probe_steps=config.probe_steps)
    timer = EpochTimer()
    guard = divergence.DivergenceGuard(learning_rate=learning_rate)
    callbacks = [resampler, timer, guard]
    if config.backup_dir:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(
            os.path.join(config.backup_dir, run_name(config, info))))
    if verbose == 1:
        if config.method not in BUDGET_FREE:
            print(plan.summary(), flush=True)
        callbacks.append(EpochPrinter(epochs))
    tf.config.experimental.reset_memory_stats("CPU:0")
    start = time.perf_counter()
    if epochs:
        # The pipelines are already shuffled (deterministically, per seed).
        trainer.fit(train_ds, epochs=epochs, callbacks=callbacks,
                    verbose=2 if verbose == 2 else 0, shuffle=False)
    train_seconds = time.perf_counter() - start
    peak_mb = tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20
    _, top1 = trainer.evaluate(test_ds, verbose=0)
    history = list(resampler.history.values())
    if kmd.strategies.get(strategy).ignores_budget:
        update_units = plan.full_finetune_units
    else:
        update_units = max((h.cost_units for h in history), default=0)
    row = {
        "model": config.model,
        "dataset": info.name,
        "method": config.method,
        "budget_units": budget_column(config.method, config.budget_units, plan),
        "seed": config.seed,
        "top1": round(100 * float(top1), 3),
        "epochs": epochs,
        # The probe alone is fitted, not trained: its time is the fit's.
        "train_seconds": round(train_seconds if epochs else (probe.seconds if probe else 0.0), 2),
        "peak_memory_mb": round(peak_mb, 2),
        "update_memory_kb": round(memory.units_to_kb(update_units, plan.bytes_per_element), 2),
        "epoch_seconds": round(timer.steady_epoch_seconds(), 3),
        "first_epoch_seconds": round(timer.seconds[0], 3) if timer.seconds else 0.0,
        "resample_seconds_per_epoch": round(
            sum(h.seconds for h in history) / len(history), 4) if history else 0.0,
        "explored": round(history[-1].explored, 4) if history else 0.0,
        "search_space_layers": len(plan.layers),
        "channels_per_epoch": round(
            sum(h.num_channels for h in history) / len(history), 1) if history else 0.0,
        "full_memory_kb": round(memory.units_to_kb(plan.full_finetune_units), 2),
        "resolution": config.resolution,
        "train_images": info.num_train,
        "test_images": info.num_test,
        "learning_rate": learning_rate if epochs else 0.0,
        "head_init": config.head_init,
        "augment": int(bool(config.augment)),
        "clipnorm": config.clipnorm,
        "warmup_epochs": config.warmup_epochs,
        "probe_l2": probe.l2 if probe else "",
        "probe_seconds": round(probe.seconds, 2) if probe else "",
    }
    return row, (resampler if epochs else None)


class EpochPrinter(keras.callbacks.Callback):
    """Prints one short line per epoch: loss, accuracy, channels, budget, time."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        line = (f"  epoch {epoch + 1:>3}/{self.epochs}  loss {logs.get('loss', math.nan):.4f}  "
                f"accuracy {100 * logs.get('accuracy', math.nan):5.1f} %")
        if "channels_selected" in logs:
            line += (f"  channels {int(round(float(logs['channels_selected']))):>5}  "
                     f"budget used {100 * float(logs['budget_used']):5.1f} %  "
                     f"explored {100 * float(logs['explored']):5.1f} %")
        print(line + f"  {time.perf_counter() - self._start:5.1f} s", flush=True)


class EpochTimer(keras.callbacks.Callback):
    """Records each epoch's wall time (resampling included)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)

    def steady_epoch_seconds(self):
        """Median epoch time after the first (which also traces the step); 0 if none ran."""
        later = self.seconds[1:] or self.seconds
        return float(np.median(later)) if later else 0.0


def run_name(config, info):
    """A file-system-safe name of one run: model, dataset, method, budget, seed."""
    dataset = info.name.replace(":", "_").replace("/", "_")
    return f"{config.model}_{dataset}_{config.method}_{config.budget_units}_{config.seed}"


def budget_column(method, budget_units, plan):
    """The budget a run is recorded under: the plan's full fine-tuning units for
    a method whose strategy ignores the budget (full fine-tuning), 0 for the
    head-only methods, else the budget."""
    from keras_medyate import strategies

    if strategies.get(METHODS[method][1]).ignores_budget:
        return plan.full_finetune_units
    if method in BUDGET_FREE:
        return 0
    return budget_units
