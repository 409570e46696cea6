r"""Training-step time and TensorFlow peak memory of every method, as ratios in one process.

For MCUNet-in1 (the papers' checkpoint) at each resolution, one process builds:
the forward pass (inference), full fine-tuning (every trainable variable: kernels,
biases and the head, plain SGD; `runner.compile_full_finetuning`, the definition
of the comparison's `full`), and a
`SubnetworkModel` per method and budget with the selection its strategy makes
for the first epoch (seed 0). Every step is a `tf.function` of the model's own
`train_step` (no `jit_compile`), called on the same batch; the variants are
timed interleaved (one call of each per round, `--rounds` rounds, after
`--warmup` calls), so that a slow-down of the machine hits them all alike.
*TF peak* is what one call allocates at its peak beyond what was held before
it (`tf.config.experimental.get_memory_info`: peak − current), i.e. the
step's transient memory, not the weights every model of the process holds.

    KERAS_MEDYATE_WEIGHTS_DIR=../shared/data/weights \
        python benchmarks/step_speed.py --resolutions=96,128 --batch_size=32

Run it on a quiet machine: nothing else on the cores.
"""

import json
import os
import statistics
import sys
import time

from keras_medyate import console
from keras_medyate.comparison import settings

# Before TensorFlow starts: its CPU allocator keeps the statistics the peaks read.
for _name, _value in settings.ALLOCATOR_ENV.items():
    os.environ.setdefault(_name, _value)
console.quiet_tensorflow()

from absl import flags  # noqa: E402

from keras_medyate import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("resolutions", ["96", "128"], "Input sizes.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_list("budgets", ["15936", "64832", "112640"], "Budgets of the budgeted methods.")
flags.DEFINE_list("methods", ["medyate", "trady", "full_random", "sparse_update"],
                  "Budgeted methods (classifier and full fine-tuning are always measured).")
flags.DEFINE_integer("rounds", 20, "Timed rounds (one call of every variant per round).")
flags.DEFINE_integer("warmup", 3, "Untimed calls of every variant first.")
flags.DEFINE_string("json", None, "Optional path of a JSON copy of the results.")


def variants(resolution, batch_size):
    """dict name → (callable step, description), all on one batch."""
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_medyate as kmd
    from keras_medyate import models
    from keras_medyate.comparison import runner

    shape = (resolution, resolution, 3)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(-1, 1, (batch_size, *shape)).astype(np.float32))
    y = tf.constant((np.arange(batch_size) % 10).astype(np.int32))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=False)
    steps = {}

    model = models.mcunet_5fps(classes=10, input_shape=shape)
    steps["forward (inference)"] = tf.function(lambda: model(x, training=False))

    # Every trainable variable (kernels, biases, head), as the comparison's `full`.
    full = runner.compile_full_finetuning(models.mcunet_5fps(classes=10, input_shape=shape),
                                          keras.optimizers.SGD(0.005), loss=loss)
    full_step = tf.function(full.train_step)
    steps["full fine-tuning"] = lambda: full_step((x, y))

    def subnetwork(method, budget):
        net = models.mcunet_5fps(classes=10, input_shape=shape)
        plan = runner.build_plan(net, method, budget)
        trainer = kmd.SubnetworkModel(net, plan)
        trainer.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss)
        resampler = kmd.ChannelResampler(plan, strategy=method, seed=0)
        resampler.set_model(trainer)
        resampler.on_train_begin()
        resampler.on_epoch_begin(0)
        step = tf.function(trainer.train_step)
        return (lambda: step((x, y))), len(trainer.current_selection())

    step, _ = subnetwork("classifier", int(FLAGS.budgets[0]))
    steps["classifier (SubnetworkModel)"] = step
    for method in FLAGS.methods:
        for budget in (int(b) for b in FLAGS.budgets):
            step, selected = subnetwork(method, budget)
            steps[f"{method} {budget:,} ({selected} channels)"] = step
    return steps


def measure(steps):
    import tensorflow as tf

    for step in steps.values():
        for _ in range(FLAGS.warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(FLAGS.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            result = step()
            tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)
            times[name].append(time.perf_counter() - start)
    peaks = {}  # what one call allocates beyond what is held before it (weights, slots)
    for name, step in steps.items():
        tf.config.experimental.reset_memory_stats("CPU:0")
        held = tf.config.experimental.get_memory_info("CPU:0")["current"]
        step()
        peaks[name] = (tf.config.experimental.get_memory_info("CPU:0")["peak"] - held) / 2**20
    return {name: {"median_ms": 1000 * statistics.median(values),
                   "min_ms": 1000 * min(values), "tf_peak_mb": peaks[name]}
            for name, values in times.items()}


def main(argv):
    del argv
    console.quiet_keras()
    results = {}
    for resolution in (int(r) for r in FLAGS.resolutions):
        results[resolution] = measure(variants(resolution, FLAGS.batch_size))
        forward = results[resolution]["forward (inference)"]["median_ms"]
        full = results[resolution]["full fine-tuning"]["median_ms"]
        print(f"\nMCUNet-in1 {resolution} px, batch {FLAGS.batch_size}: median of "
              f"{FLAGS.rounds} interleaved rounds, one process")
        print("| step | ms (median / min) | × forward | × full fine-tuning | TF transient peak MB |")
        print("|---|---|---|---|---|")
        for name, r in results[resolution].items():
            print(f"| {name} | {r['median_ms']:.1f} / {r['min_ms']:.1f} | "
                  f"{r['median_ms'] / forward:.2f} | {r['median_ms'] / full:.2f} | "
                  f"{r['tf_peak_mb']:.0f} |", flush=True)
        if FLAGS.json:
            with open(FLAGS.json, "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, __doc__))
