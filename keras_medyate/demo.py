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

from absl import app, flags

from keras_medyate.comparison import flags as run_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "cifar10", "cifar10, fashion_mnist or folder:/path.")
flags.DEFINE_string("budget", "15936", "Memory budget: units or a size such as 62KB.")
flags.DEFINE_string("strategy", "medyate", "Channel-selection strategy.")
run_flags.define_run_flags(train_per_class=500)
flags.DEFINE_bool("full", True, "Also run full fine-tuning for reference.")
flags.DEFINE_integer("seed", 0, "Seed of the data order, the new head and the sampling.")


def main(argv):
    del argv
    import keras_medyate as kmd
    from keras_medyate import comparison, data, memory

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
    methods = [FLAGS.strategy] + (["full"] if FLAGS.full else [])
    results = []
    for method in methods:
        config = run_flags.run_config(FLAGS, method, budget, FLAGS.seed)
        print(f"\n== {method}: fine-tuning ({'every channel' if method == 'full' else 'budgeted'})",
              flush=True)
        row, resampler = comparison.run_one(config, train_ds, test_ds, info, verbose=2)
        if method != "full":
            print(resampler.plan.summary(), flush=True)
        results.append(row)
    print_report(results, budget, time.perf_counter() - total_start)


def print_report(rows, budget, total_seconds):
    from keras_medyate import memory

    full_kb = rows[0]["full_memory_kb"]
    print("\n" + "=" * 78)
    print(f"{'method':<12}{'top-1':>8}{'update memory (analytic)':>30}{'TF peak':>10}"
          f"{'explored':>10}{'time':>8}")
    for row in rows:
        share = 100 * row["update_memory_kb"] / full_kb
        print(f"{row['method']:<12}{row['top1']:>7.1f}%"
              f"{row['update_memory_kb']:>14.1f} KB ({share:5.1f} % of full)"
              f"{row['peak_memory_mb']:>7.0f} MB{100 * row['explored']:>9.0f}%"
              f"{row['train_seconds']:>7.0f}s")
    print(f"full fine-tuning would need {full_kb:.1f} KB; the budget was "
          f"{memory.format_units(budget)}.")
    if len(rows) > 1:
        print(f"per-epoch time: {rows[0]['method']} is "
              f"{rows[1]['epoch_seconds'] / rows[0]['epoch_seconds']:.1f}x faster than full "
              "fine-tuning (backprop stops at the deepest-ranked layers); resampling took "
              f"{rows[0]['resample_seconds_per_epoch']:.3f} s per epoch.")
    print(f"total wall time {total_seconds:.0f} s")


if __name__ == "__main__":
    app.run(main)
