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
| `full` | every trainable variable of the model (kernels and biases) | plain Keras `fit` |
| `classifier` | whole network, no channel | `classifier` |
| `linear_probe` | the head fitted on frozen features, no SGD | – |

Protocol (`protocol="recommended"`, the default): every method starts from
the same head, fitted to convergence on the frozen features of the training
images (`kmd.fit_classifier`, a linear probe), then the recipe of
`keras_medyate.recipe`: plain SGD (no momentum, no weight decay), cosine
decay after a linear warm-up, a per-variable gradient clip, BatchNorm frozen,
the LaRa ranking shipped with keras-medyate, and each method's peak learning
rate (`DEFAULT_LEARNING_RATES`). `protocol="paper"` gives the papers' own
settings back: a fresh random head, SGD at 0.125 for every method, no clip,
5 warm-up epochs.

Seeds: a run's seed picks its training images (the per-class subset), their
order in every epoch, the new head (`head_init="random"`) and the channel
sampling; every method of one seed shares the same images and order. The
test images are the same for every seed. With `validation_fraction`, a
stratified part of the seed's training images is held out and the run is
evaluated on it instead of the test split: that is where recipe choices
(learning rates, augmentation, epochs) are made.

A run whose loss becomes NaN/inf or grows 10x (`DivergenceGuard`) restarts
from scratch at half the learning rate, at most `max_retries` times (the row
records `retries` and the final `learning_rate`); if every try diverges,
`TrainingDivergedError` (naming the learning rates) and no row.

`runtime="litert"` (MeDyate only) trains the same model, head, plan, seed,
data order, recipe and epochs on the exported LiteRT file
(`tflite_export.OnDeviceTrainer`) instead of Keras.

Example:

```python
from keras_medyate import comparison
train_ds, test_ds, probe_ds, info = comparison.load_data("cifar10", 96, train_per_class=50)
row, resampler = comparison.run_one(
    comparison.RunConfig(model="mcunet_5fps", method="medyate", budget_units=15936),
    train_ds, test_ds, info, probe_ds=probe_ds)
print(row["top1"], row["update_memory_kb"], row["epoch_top1"])
```
"""

import dataclasses
import math
import os
import shutil
import tempfile
import time
import warnings

import keras
import numpy as np

from keras_medyate import inventory, memory, recipe
from keras_medyate.comparison import journal as journal_lib
from keras_medyate.comparison.settings import (  # noqa: F401 - re-exported
    BUDGET_FREE,
    CSV_COLUMNS,
    DEFAULT_BUDGETED_LEARNING_RATE,
    DEFAULT_LEARNING_RATES,
    DEFAULT_THREADS,
    EVAL_ON,
    HEAD_INITS,
    LITERT_METHODS,
    MAX_RETRIES,
    METHODS,
    PAPER_CROP_SCALE,
    PROTOCOLS,
    RUNTIMES,
    RunConfig,
    augmentation_label,
    data_augmentation,
    protocol_defaults,
)


def set_tensorflow_threads(threads):
    """Fixes TensorFlow's intra- and inter-op thread pools to `threads` each.

    Float sums are split across the intra-op threads, so a run's numbers
    depend on this count; the comparison fixes it (`--threads`) so that a run
    gives the same row wherever it runs (sequentially, or as a Ray task).
    Must be called before TensorFlow runs its first op in the process;
    calling it again with the same count is a no-op.

    Raises:
        ValueError: `threads` is not a positive int.
        RuntimeError: TensorFlow already runs with another thread count.
    """
    import tensorflow as tf

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"`threads` must be a positive int, got {threads!r}.")
    threading = tf.config.threading
    for kind, get, set_ in (
            ("intra", threading.get_intra_op_parallelism_threads,
             threading.set_intra_op_parallelism_threads),
            ("inter", threading.get_inter_op_parallelism_threads,
             threading.set_inter_op_parallelism_threads)):
        if get() == threads:
            continue
        try:
            set_(threads)
        except RuntimeError as error:
            raise RuntimeError(
                f"Cannot set TensorFlow's {kind}-op threads to {threads}: TensorFlow already "
                f"runs with {get() or 'its default'} in this process ({error}). Set the "
                "threads before any TensorFlow op runs (a fresh process).") from error


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


def full_finetuning_units(plan):
    """Memory units of full fine-tuning: every layer but the classifier, biases included.

    The papers' reference (`plan.full_finetune_units`: kernels and the input
    activations their derivatives read) plus every bias element (a bias
    derivative reads no stored activation). The classifier is trained by
    every method and charged to none, as in the papers.
    """
    return inventory.full_finetune_units(
        [info for info in plan.infos if info.name != plan.classifier], biases=True)


def compile_full_finetuning(model, optimizer, **compile_kwargs):
    """Compiles `model` itself for full fine-tuning: every trainable variable.

    Kernels, biases and the head all train; BatchNorm layers are frozen
    (inference mode, their statistics and scale/offset fixed), as in every
    other method. Returns the model.
    """
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    model.compile(optimizer=optimizer, **compile_kwargs)
    return model


def _all_layers(model):
    """Every layer of `model`, nested models' layers included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def load_data(dataset, resolution, batch_size=32, train_per_class=None, test_per_class=None,
              augment=False, seed=0, validation_fraction=0.0):
    """The pipelines of a comparison run: (train, evaluation, probe, info).

    `seed`, the run's seed, picks the training images (`train_per_class` of
    each class) and orders every epoch of `train` (augmented when `augment`);
    every method of one seed gets the same images in the same order. The
    test images are the same for every seed. `probe` is the training images
    in a fixed order without augmentation: the linear probe is fitted on it.

    With `validation_fraction` > 0 a stratified share of the seed's training
    images (that fraction of every class, at least one) is held out: `train`
    and `probe` hold the rest and the evaluation pipeline is the held-out
    part (`info.num_train` / `info.num_test` count them); the test split is
    not read. A dataset smaller than asked raises before any image is
    decoded.
    """
    from keras_medyate import data

    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(
            f"`validation_fraction` must be in [0, 1), got {validation_fraction!r}.")
    options = dict(image_size=resolution, batch_size=batch_size, train_per_class=train_per_class,
                   test_per_class=test_per_class)
    train_ds, test_ds, info = data.load(dataset, augment=augment, seed=seed, **options)
    if validation_fraction:
        return _validation_pipelines(info, resolution, batch_size, train_per_class, augment,
                                     seed, validation_fraction)
    probe_ds, _, _ = data.load(dataset, shuffle=False, seed=seed, **options)
    if seed != 0:  # the test images do not depend on the run's seed
        _, test_ds, _ = data.load(dataset, shuffle=False, seed=0, **options)
    return train_ds, test_ds, probe_ds, info


def _validation_pipelines(info, resolution, batch_size, train_per_class, augment, seed,
                          fraction):
    """(train, validation, probe, info) from one seed's training images."""
    # The building blocks of `data.load` (same per-class subset for `seed`),
    # split before any decoding. To be replaced by a `validation_fraction`
    # argument of `data.load` when it has one.
    from keras_medyate.data import augmentation, pipeline, preprocessing
    from keras_medyate.data.cifar10 import find_cifar10
    from keras_medyate.data.fashion_mnist import find_fashion_mnist
    from keras_medyate.data.folder import find_folder

    if info.name == "cifar10":
        raw = find_cifar10()
    elif info.name == "fashion_mnist":
        raw = find_fashion_mnist()
    else:
        raw = find_folder(info.name[len("folder:"):])
    per_class = data_per_class(train_per_class)
    train = pipeline.subset_per_class(raw.train, per_class, info.num_classes,
                                      raw.class_names, seed, "train")
    held = []
    for class_id in range(info.num_classes):
        members = np.flatnonzero(train.labels == class_id)
        count = max(1, int(round(fraction * len(members))))
        if count >= len(members):
            raise ValueError(
                f"validation_fraction={fraction} of the {len(members)} training images of class "
                f"{info.class_names[class_id]!r} leaves none to train on; use more training "
                "images (--train_per_class) or a smaller fraction.")
        rng = np.random.default_rng((int(seed), 0x76616C, class_id))
        held.append(rng.permutation(members)[:count])
    held = np.sort(np.concatenate(held))
    kept = np.setdiff1d(np.arange(len(train)), held)
    fit, validation = train.take(kept), train.take(held)
    size = info.image_size
    preprocess = preprocessing.resolve_preprocess("tiny_training")
    train_ds = pipeline.build_pipeline(fit, size, batch_size, True, seed, preprocess,
                                       augmentation.resolve_augmentation(augment))
    probe_ds = pipeline.build_pipeline(fit, size, batch_size, False, seed, preprocess)
    validation_ds = pipeline.build_pipeline(validation, size, batch_size, False, seed, preprocess)
    info = dataclasses.replace(info, num_train=len(fit), num_test=len(validation))
    return train_ds, validation_ds, probe_ds, info


def data_per_class(value):
    """A per-class count from a flag: an int, or None for 'all'."""
    from keras_medyate import data

    return data.per_class_count(value, "train_per_class")


_PROBE_HEADS = {}


def probe_head(config, model, probe_ds, info, verbose=0):
    """Fits `model`'s head on frozen features, once per model, data and seed.

    The fitted head is cached in the process (the key holds the seed, which
    picks the training images), so every method of one seed starts from the
    same head. Returns the `ClassifierFit`.
    """
    from keras_medyate.linear_probe import fit_classifier

    key = (config.model, config.resolution, info, config.seed, config.evaluated_on)
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
        train_ds: the batched `(x, y)` training pipeline, or a callable
            returning a fresh one (then a retried run sees the same data
            order as its first try; a reused pipeline continues its order).
        test_ds: the batched evaluation pipeline (test or validation).
        info: the `DatasetInfo` of the data.
        probe_ds: the training images without augmentation, for the linear
            probe (default: the training pipeline).
        verbose: 0 silent; 1 the plan and one line per epoch; 2 Keras' own
            per-epoch lines.

    Returns:
        (row, resampler): a dict with the `CSV_COLUMNS`, and the
        `ChannelResampler` (its `history` holds the per-epoch selections;
        None for `linear_probe`, `full` and LiteRT runs).

    Raises:
        TrainingDivergedError: the loss became NaN/inf or grew 10x at the
            learning rate and at each of its `max_retries` halvings.
    """
    from keras_medyate.divergence import TrainingDivergedError

    fresh = train_ds if callable(train_ds) else (lambda: train_ds)
    learning_rate = config.peak_learning_rate()
    first_try = 0
    backup = backup_path(config, info)
    interrupted = journal_lib.RunJournal.read(backup, run_settings(config, info)) if backup else None
    if interrupted:  # resumes the try that was interrupted, at its learning rate
        learning_rate = interrupted["learning_rate"]
        first_try = min(interrupted["retries"], config.max_retries)
    failures = []
    for retry in range(first_try, config.max_retries + 1):
        try:
            row, resampler = _run_once(config, fresh(), test_ds, info, probe_ds, learning_rate,
                                       verbose, retry)
        except TrainingDivergedError as error:
            failures.append(str(error))
            if backup:  # the diverged try's epochs: the next try starts afresh
                shutil.rmtree(backup, ignore_errors=True)
            if retry == config.max_retries:
                tries = " | ".join(f"try {first_try + i + 1}: {m}"
                                   for i, m in enumerate(failures))
                raise TrainingDivergedError(
                    f"{config.method} diverged at every learning rate tried ({tries}). Lower "
                    "--learning_rate / --full_learning_rate.") from error
            if verbose:
                print(f"  diverged at learning rate {learning_rate:g}; retrying at "
                      f"{learning_rate / 2:g}", flush=True)
            learning_rate /= 2
            continue
        row["retries"] = retry
        return row, resampler
    raise AssertionError("unreachable")


def _run_once(config, train_ds, test_ds, info, probe_ds, learning_rate, verbose, retries=0):
    """One try of `run_one` at `learning_rate`, after `retries` diverged ones."""
    from keras_medyate import models

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
    epochs = 0 if config.method == "linear_probe" else config.epochs
    if config.runtime == "litert":
        measured = _train_litert(config, model, plan, train_ds, test_ds, info, epochs,
                                 learning_rate)
    else:
        measured = _train_keras(config, model, plan, strategy, train_ds, test_ds, info, epochs,
                                learning_rate, verbose, retries)
    full_units = full_finetuning_units(plan)
    row = {
        "model": config.model,
        "dataset": info.name,
        "method": config.method,
        "runtime": config.runtime,
        "budget_units": budget_column(config.method, config.budget_units, plan),
        "seed": config.seed,
        "top1": round(100 * float(measured["top1"]), 3),
        "evaluated_on": config.evaluated_on,
        "epochs": epochs,
        # The probe alone is fitted, not trained: its time is the fit's.
        "train_seconds": round(measured["train_seconds"] if epochs
                               else (probe.seconds if probe else 0.0), 2),
        "peak_memory_mb": measured["peak_memory_mb"],
        "update_memory_kb": round(memory.units_to_kb(measured["update_units"],
                                                     plan.bytes_per_element), 2),
        "epoch_seconds": round(_steady(measured["epoch_seconds"]), 3),
        "first_epoch_seconds": round(measured["epoch_seconds"][0], 3)
        if measured["epoch_seconds"] else 0.0,
        "resample_seconds_per_epoch": round(measured["resample_seconds"], 4),
        "explored": round(measured["explored"], 4),
        "search_space_layers": len(plan.layers),
        "channels_per_epoch": round(measured["channels_per_epoch"], 1),
        "full_memory_kb": round(memory.units_to_kb(full_units, plan.bytes_per_element), 2),
        "resolution": config.resolution,
        "train_images": info.num_train,
        "test_images": info.num_test,
        "learning_rate": learning_rate if epochs else 0.0,
        "retries": 0,
        "head_init": config.head_init,
        "augment": int(bool(config.augment)),
        "crop_scale": augmentation_label(config.augment, config.crop_scale),
        "clipnorm": config.clipnorm,
        "warmup_epochs": config.warmup_epochs,
        "probe_l2": probe.l2 if probe else "",
        "probe_seconds": round(probe.seconds, 2) if probe else "",
        "threads": _threads(),
        "batch_size": config.batch_size,
        "epoch_top1": ";".join("" if a is None else f"{100 * a:.2f}"
                               for a in measured["epoch_top1"]),
        "epoch_eval_seconds": round(measured["epoch_eval_seconds"], 2),
    }
    return row, measured.get("resampler")


def _threads():
    """TensorFlow's intra-op thread count in this process (0: its default, all cores)."""
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads()


def _reset_peak_memory():
    """Resets TensorFlow's CPU allocator peak; False where it keeps no statistics.

    TensorFlow keeps CPU allocator statistics only with its BFC allocator
    (`TF_CPU_ALLOCATOR_USE_BFC=true` on some builds); without them the
    `peak_memory_mb` column is left empty rather than made up.
    """
    import tensorflow as tf

    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
    except ValueError:  # "Cannot reset memory stats for device 'CPU:0'"
        return False
    return True


def _steady(seconds):
    """Median epoch time after the first (which also traces the step); 0 if none ran."""
    later = seconds[1:] or seconds
    return float(np.median(later)) if later else 0.0


def _optimizer(config, learning_rate, steps_per_epoch, epochs):
    """The run's fresh SGD: `keras_medyate.recipe`'s schedule and clip."""
    return recipe.recommended_optimizer(
        steps_per_epoch=max(int(steps_per_epoch), 1), epochs=max(epochs, 1),
        learning_rate=learning_rate, warmup_epochs=config.warmup_epochs,
        clipnorm=config.clipnorm)


def _train_keras(config, model, plan, strategy, train_ds, test_ds, info, epochs, learning_rate,
                 verbose, retries=0):
    """Trains in Keras; the measurements `run_one` turns into a row."""
    import tensorflow as tf

    import keras_medyate as kmd
    from keras_medyate import divergence

    optimizer = _optimizer(config, learning_rate, len(train_ds), epochs)
    compiled = dict(loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    full = config.method == "full"
    if full:
        trainer, resampler = compile_full_finetuning(model, optimizer, **compiled), None
    else:
        trainer = kmd.SubnetworkModel(model, plan)
        trainer.compile(optimizer=optimizer, **compiled)
        probe = (dict(probe_data=train_ds, probe_steps=config.probe_steps)
                 if kmd.strategies.get(strategy).needs_all_norms else {})
        resampler = kmd.ChannelResampler(
            plan, strategy=kmd.strategies.create(strategy, **probe), seed=config.seed)
    timer = journal_lib.EpochTimer()
    evaluator = journal_lib.EpochEvaluator(test_ds, epochs) if config.epoch_eval else None
    guard = divergence.DivergenceGuard(learning_rate=learning_rate)
    # The evaluator comes after the timer: its time is not an epoch's.
    callbacks = [c for c in (resampler, timer, evaluator, guard) if c is not None]
    backup = None
    if config.backup_dir:
        parts = {"timer": timer, "evaluator": evaluator, "guard": journal_lib.GuardBaseline(guard),
                 "resampler": journal_lib.ResamplerRecords(resampler) if resampler else None}
        # Last: it backs up what the measuring callbacks recorded of the epoch.
        backup = journal_lib.RunJournal(
            backup_path(config, info), {k: v for k, v in parts.items() if v is not None},
            learning_rate=learning_rate, retries=retries, settings=run_settings(config, info),
            evaluator=evaluator)
        callbacks.append(backup)
    if verbose == 1:
        if config.method not in BUDGET_FREE:
            print(plan.summary(), flush=True)
        callbacks.append(EpochPrinter(epochs))
    measures_peak = _reset_peak_memory()
    start = time.perf_counter()
    if epochs:
        # The pipelines are already shuffled (deterministically, per seed).
        trainer.fit(train_ds, epochs=epochs, callbacks=callbacks,
                    verbose=2 if verbose == 2 else 0, shuffle=False)
    eval_seconds = evaluator.seconds if evaluator else 0.0
    # A resumed run: this session's wall time, less its evaluations, plus the
    # finished sessions' training time (`journal`).
    session_eval = eval_seconds - (evaluator.restored_seconds if evaluator else 0.0)
    train_seconds = (time.perf_counter() - start - session_eval
                     + (backup.restored_train_seconds if backup else 0.0))
    peak_mb = (round(tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20, 2)
               if measures_peak else "")
    accuracies = evaluator.accuracies if evaluator else [None] * epochs
    if accuracies and accuracies[-1] is not None:
        top1 = accuracies[-1]  # the same evaluation, after the last epoch
    else:
        _, top1 = trainer.evaluate(test_ds, verbose=0)
    history = list(resampler.history.values()) if resampler else []
    if full:
        pool = plan.pool
        update_units, explored = full_finetuning_units(plan), 1.0 if epochs else 0.0
        channels = float(pool.size) if epochs else 0.0
    else:
        update_units = max((h.cost_units for h in history), default=0)
        explored = history[-1].explored if history else 0.0
        channels = sum(h.num_channels for h in history) / len(history) if history else 0.0
    return {
        "top1": float(top1),
        "train_seconds": train_seconds,
        "peak_memory_mb": peak_mb,
        "update_units": update_units,
        "epoch_seconds": timer.seconds,
        "resample_seconds": sum(h.seconds for h in history) / len(history) if history else 0.0,
        "explored": explored,
        "channels_per_epoch": channels,
        "epoch_top1": accuracies,
        "epoch_eval_seconds": eval_seconds,
        "resampler": resampler if (epochs and not full) else None,
    }


def _train_litert(config, model, plan, train_ds, test_ds, info, epochs, learning_rate):
    """Trains MeDyate on the exported LiteRT file; the measurements for the row.

    The same head (written into `model` before the export), plan, seed, data
    pipeline (the same epoch orders), recipe and epochs as the Keras run. The
    device drops a last partial batch, so the schedule counts full batches.
    """
    from tflite_export import OnDeviceTrainer, export_training_model

    full_batches = info.num_train // config.batch_size
    optimizer = _optimizer(config, learning_rate, full_batches, epochs)
    with tempfile.TemporaryDirectory(prefix="medyate_litert_") as folder:
        path = os.path.join(folder, "medyate.tflite")
        # `infer` at the train batch: the per-epoch evaluation calls it on batches.
        export_training_model(model, plan, path, batch_size=config.batch_size,
                              infer_batch_size=config.batch_size, optimizer=optimizer)
        device = OnDeviceTrainer(path)
        start = time.perf_counter()
        history = device.fit(train_ds, epochs=epochs, seed=config.seed,
                             validation_data=test_ds)
        wall = time.perf_counter() - start
        top1 = device.evaluate(test_ds)
    seconds = [float(h["seconds"]) for h in history]
    selections = [h["selection"] for h in history]
    pool = plan.pool
    seen = np.zeros(pool.size, bool)
    for selection in selections:
        seen |= np.asarray(selection.mask) > 0
    return {
        "top1": float(top1),
        "train_seconds": sum(seconds),
        "peak_memory_mb": "",  # TensorFlow's allocator does not see the interpreter
        "update_units": max((s.cost_units for s in selections), default=0),
        "epoch_seconds": seconds,
        "resample_seconds": 0.0,  # inside the device's epoch seconds
        "explored": float(seen.mean()) if seen.size else 0.0,
        "channels_per_epoch": float(np.mean([s.num_channels for s in selections]))
        if selections else 0.0,
        "epoch_top1": [float(h["val_accuracy"]) for h in history],
        # Whatever `fit` spent beyond the epochs' own seconds: the evaluations.
        "epoch_eval_seconds": max(wall - sum(seconds), 0.0),
    }


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


def run_settings(config, info):
    """What defines a run, as a JSON-serializable dict: a backup made with other
    settings is not resumed (`journal.RunJournal.read`)."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "backup_dir"}
    settings.update(dataset=getattr(info, "name", None),
                    train_images=getattr(info, "num_train", None),
                    test_images=getattr(info, "num_test", None))
    return settings


def backup_path(config, info):
    """The run's own backup folder under `config.backup_dir`, or None without one."""
    return os.path.join(config.backup_dir, run_name(config, info)) if config.backup_dir else None


def run_name(config, info):
    """A file-system-safe name of one run: model, dataset, method, budget, seed."""
    dataset = info.name.replace(":", "_").replace("/", "_")
    name = f"{config.model}_{dataset}_{config.method}_{config.budget_units}_{config.seed}"
    return name if config.runtime == "keras" else f"{name}_{config.runtime}"


def budget_column(method, budget_units, plan):
    """The budget a run is recorded under: full fine-tuning's units (biases
    included, `full_finetuning_units`) for `full`, 0 for the head-only
    methods, else the budget."""
    if method == "full":
        return full_finetuning_units(plan)
    if method in BUDGET_FREE:
        return 0
    return budget_units
