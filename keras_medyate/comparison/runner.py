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

Protocol: plain SGD (no momentum, no weight decay), cosine decay with linear
warm-up, BatchNorm frozen, the ranking shipped with keras-medyate. The
tiny-training checkpoints need a per-variable gradient clip (`clipnorm=1`)
for the papers' learning rate not to diverge in float; full fine-tuning uses
its own, lower learning rate (see `benchmarks/RESULTS.md`).

Example:

```python
from keras_medyate import comparison, data
train_ds, test_ds, info = data.load("cifar10", image_size=96, train_per_class=50)
row, history = comparison.run_one(
    comparison.RunConfig(model="mcunet_5fps", method="medyate", budget_units=15936),
    train_ds, test_ds, info)
print(row["top1"], row["update_memory_kb"])
```
"""

import dataclasses
import time
import warnings

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
}
#: Methods whose result does not depend on the budget (run once per seed).
BUDGET_FREE = ("full", "classifier")
CSV_COLUMNS = (
    "model", "dataset", "method", "budget_units", "seed", "top1", "epochs", "train_seconds",
    "peak_memory_mb", "update_memory_kb", "epoch_seconds", "first_epoch_seconds",
    "resample_seconds_per_epoch",
    "explored", "search_space_layers", "channels_per_epoch", "full_memory_kb", "resolution",
    "train_images", "test_images", "learning_rate",
)


@dataclasses.dataclass
class RunConfig:
    """Settings of one run (defaults: the papers' protocol, scaled down)."""

    model: str = "mcunet_5fps"
    method: str = "medyate"
    budget_units: int = 15936
    seed: int = 0
    epochs: int = 10
    warmup_epochs: int = 1
    resolution: int = 96
    learning_rate: float = 0.125
    full_learning_rate: float = 0.01
    clipnorm: float = 1.0
    ranking: str = "lara"
    probe_steps: int = 4

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(
                f"Unknown method {self.method!r}. Accepted: {', '.join(METHODS)}.")


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


def run_one(config, train_ds, test_ds, info, verbose=0):
    """Fine-tunes a fresh copy of `config.model` with one method.

    Returns:
        (row, resampler): a dict with the `CSV_COLUMNS`, and the
        `ChannelResampler` (its `history` holds the per-epoch selections).
    """
    import keras
    import tensorflow as tf

    import keras_medyate as kmd
    from keras_medyate import models

    keras.utils.set_random_seed(config.seed)
    model = models.from_tiny_training(
        config.model, classes=info.num_classes,
        input_shape=(config.resolution, config.resolution, 3))
    plan = build_plan(model, config.method, config.budget_units, config.ranking)
    strategy = METHODS[config.method][1]
    trainer = kmd.SubnetworkModel(model, plan)
    learning_rate = config.full_learning_rate if strategy == "full" else config.learning_rate
    trainer.compile(
        optimizer=keras.optimizers.SGD(
            cosine_schedule(learning_rate, len(train_ds), config.epochs, config.warmup_epochs),
            clipnorm=config.clipnorm or None),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    resampler = kmd.ChannelResampler(
        plan, strategy=strategy, seed=config.seed,
        probe_data=train_ds if kmd.strategies.get(strategy).needs_all_norms else None,
        probe_steps=config.probe_steps)
    timer = EpochTimer()
    tf.config.experimental.reset_memory_stats("CPU:0")
    start = time.perf_counter()
    # The pipelines are already shuffled (deterministically, per seed).
    trainer.fit(train_ds, epochs=config.epochs, callbacks=[resampler, timer], verbose=verbose,
                shuffle=False)
    train_seconds = time.perf_counter() - start
    peak_mb = tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20
    _, top1 = trainer.evaluate(test_ds, verbose=0)
    history = list(resampler.history.values())
    update_units = plan.full_finetune_units if strategy == "full" else max(
        h.cost_units for h in history)
    row = {
        "model": config.model,
        "dataset": info.name,
        "method": config.method,
        "budget_units": _budget_column(config, plan),
        "seed": config.seed,
        "top1": round(100 * float(top1), 3),
        "epochs": config.epochs,
        "train_seconds": round(train_seconds, 2),
        "peak_memory_mb": round(peak_mb, 2),
        "update_memory_kb": round(memory.units_to_kb(update_units, plan.bytes_per_element), 2),
        "epoch_seconds": round(timer.steady_epoch_seconds(), 3),
        "first_epoch_seconds": round(timer.seconds[0], 3),
        "resample_seconds_per_epoch": round(sum(h.seconds for h in history) / len(history), 4),
        "explored": round(history[-1].explored, 4),
        "search_space_layers": len(plan.layers),
        "channels_per_epoch": round(sum(h.num_channels for h in history) / len(history), 1),
        "full_memory_kb": round(memory.units_to_kb(plan.full_finetune_units), 2),
        "resolution": config.resolution,
        "train_images": info.num_train,
        "test_images": info.num_test,
        "learning_rate": learning_rate,
    }
    return row, resampler


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
        """Median epoch time after the first (which also traces the step)."""
        later = self.seconds[1:] or self.seconds
        return float(np.median(later))


def _budget_column(config, plan):
    if config.method == "full":
        return plan.full_finetune_units
    if config.method == "classifier":
        return 0
    return config.budget_units
