r"""The main job: MeDyate vs full fine-tuning of MCUNet on a CIFAR-10 subset.

    python -m keras_medyate.demo

It loads the paper's MCUNet-in1 checkpoint with a new 10-way head, builds a
MeDyate plan at the paper's smallest budget (15,936 units = 62 KB) from the
shipped LaRa ranking, fine-tunes with the `ChannelResampler`, then fine-tunes
a fresh copy of every layer for reference, and prints accuracy, the memory
the update needs (analytic, as in the papers) next to full fine-tuning,
TensorFlow's measured peak memory, channels explored and time.

Defaults finish in about 5 minutes on 2 CPU cores (plus about a minute the
first time, to unpack CIFAR-10). Offline, set `KERAS_MEDYATE_WEIGHTS_DIR` and
`KERAS_MEDYATE_DATA_DIR` (see the README).

Learning rates: MeDyate uses the papers' SGD at 0.125 with cosine decay and
warm-up. These checkpoints have BatchNorm folded into the convs, and in float
their first layers get weight gradients far larger than the weights; plain
SGD then diverges (full fine-tuning even at 0.05), so both runs clip each
variable's gradient norm to 1 (`--clipnorm`) and full fine-tuning uses 0.01.
"""

import time
import warnings

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "mcunet_5fps", "Preset name or path to a tiny-training .pkl.")
flags.DEFINE_string("dataset", "cifar10", "cifar10, fashion_mnist or folder:/path.")
flags.DEFINE_string("budget", "15936", "Memory budget: units or a size such as 62KB.")
flags.DEFINE_string("strategy", "medyate", "Channel-selection strategy.")
flags.DEFINE_integer("resolution", 96, "Input resolution (the papers use 128).")
flags.DEFINE_integer("train_per_class", 500, "Training images per class.")
flags.DEFINE_integer("test_per_class", 100, "Test images per class.")
flags.DEFINE_integer("epochs", 10, "Epochs of each run.")
flags.DEFINE_integer("warmup_epochs", 1, "Linear warm-up epochs of the cosine schedule.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("learning_rate", 0.125, "Peak SGD learning rate of the budgeted run.")
flags.DEFINE_float("full_learning_rate", 0.01, "Peak SGD learning rate of full fine-tuning.")
flags.DEFINE_float("clipnorm", 1.0, "Per-variable gradient-norm clip (0 disables).")
flags.DEFINE_bool("full", True, "Also run full fine-tuning for reference.")
flags.DEFINE_integer("seed", 0, "Seed of the data order, the new head and the sampling.")


def cosine_schedule(peak, steps_per_epoch, epochs, warmup_epochs):
    """Cosine decay to 0 with a linear warm-up, as in the papers."""
    import keras

    warmup = min(warmup_epochs, max(epochs - 1, 0)) * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(epochs * steps_per_epoch - warmup, 1),
        warmup_target=peak, warmup_steps=warmup)


def peak_memory_mb():
    """TensorFlow's CPU allocator peak since the last reset, in MB."""
    import tensorflow as tf

    return tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20


def reset_peak_memory():
    import tensorflow as tf

    tf.config.experimental.reset_memory_stats("CPU:0")


def run(strategy, ranking, learning_rate, train_ds, test_ds, info, budget):
    """Fine-tunes a fresh model with one strategy; returns a result dict."""
    import keras

    import keras_medyate as kmd
    from keras_medyate import memory, models

    keras.utils.set_random_seed(FLAGS.seed)
    model = models.from_tiny_training(
        FLAGS.model, classes=info.num_classes,
        input_shape=(FLAGS.resolution, FLAGS.resolution, 3))
    with warnings.catch_warnings():
        # Full fine-tuning ignores the budget; its plan may not fit it.
        warnings.simplefilter("ignore", UserWarning)
        plan = kmd.plan(model, budget=budget, ranking=ranking)
    trainer = kmd.SubnetworkModel(model, plan)
    schedule = cosine_schedule(learning_rate, len(train_ds), FLAGS.epochs, FLAGS.warmup_epochs)
    trainer.compile(
        optimizer=keras.optimizers.SGD(schedule, clipnorm=FLAGS.clipnorm or None),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    resampler = kmd.ChannelResampler(plan, strategy=strategy, seed=FLAGS.seed)
    if strategy == "full":
        print(f"\n== full fine-tuning: every input channel of {len(plan.layers)} layers "
              f"({plan.pool.size} channels, {memory.format_units(plan.full_finetune_units)})",
              flush=True)
    else:
        print(f"\n== {strategy}: {plan.summary()}", flush=True)
    reset_peak_memory()
    start = time.perf_counter()
    trainer.fit(train_ds, epochs=FLAGS.epochs, callbacks=[resampler], verbose=2)
    seconds = time.perf_counter() - start
    peak = peak_memory_mb()
    _, accuracy = trainer.evaluate(test_ds, verbose=0)
    costs = [h.cost_units for h in resampler.history.values()]
    return {
        "strategy": strategy,
        "accuracy": accuracy,
        "update_units": max(costs),
        "full_units": plan.full_finetune_units,
        "explored": resampler.history[max(resampler.history)].explored,
        "seconds": seconds,
        "peak_mb": peak,
        "plan": plan,
        "resample_seconds": sum(h.seconds for h in resampler.history.values()),
    }


def main(argv):
    del argv
    import keras_medyate as kmd
    from keras_medyate import data, memory

    total_start = time.perf_counter()
    budget = memory.parse_budget(FLAGS.budget)
    print(f"keras-medyate {kmd.__version__} demo: {FLAGS.model} on {FLAGS.dataset} "
          f"({FLAGS.train_per_class}/class train, {FLAGS.test_per_class}/class test, "
          f"{FLAGS.resolution} px, {FLAGS.epochs} epochs), budget "
          f"{memory.format_units(budget)}", flush=True)
    train_ds, test_ds, info = data.load(
        FLAGS.dataset, image_size=FLAGS.resolution, batch_size=FLAGS.batch_size,
        train_per_class=FLAGS.train_per_class, test_per_class=FLAGS.test_per_class,
        seed=FLAGS.seed)
    print(f"data: {info.num_train} train / {info.num_test} test images from {info.source}",
          flush=True)
    results = [run(FLAGS.strategy, "lara", FLAGS.learning_rate, train_ds, test_ds, info, budget)]
    if FLAGS.full:
        results.append(run("full", None, FLAGS.full_learning_rate, train_ds, test_ds, info,
                           budget))
    print_report(results, time.perf_counter() - total_start)


def print_report(results, total_seconds):
    from keras_medyate import memory

    full_units = results[0]["full_units"]
    print("\n" + "=" * 78)
    print(f"{'method':<12}{'top-1':>8}{'update memory (analytic)':>30}{'TF peak':>10}"
          f"{'explored':>10}{'time':>8}")
    for r in results:
        units = full_units if r["strategy"] == "full" else r["update_units"]
        share = 100 * units / full_units
        print(f"{r['strategy']:<12}{100 * r['accuracy']:>7.1f}%"
              f"{memory.units_to_kb(units):>14.1f} KB ({share:5.1f} % of full)"
              f"{r['peak_mb']:>7.0f} MB{100 * r['explored']:>9.0f}%{r['seconds']:>7.0f}s")
    print(f"full fine-tuning would need {memory.format_units(full_units)}; "
          f"the budget was {memory.format_units(results[0]['plan'].budget_units)}.")
    if len(results) > 1:
        print(f"per-epoch time: {results[0]['strategy']} is "
              f"{results[1]['seconds'] / results[0]['seconds']:.1f}x faster than full "
              "fine-tuning (backprop stops at the deepest-ranked layers); resampling took "
              f"{results[0]['resample_seconds']:.2f} s in total.")
    print(f"total wall time {total_seconds:.0f} s")


if __name__ == "__main__":
    app.run(main)
