r"""The main job: MeDyate vs full fine-tuning and a linear probe, MCUNet on CIFAR-10.

    python -m keras_medyate.demo

It loads the paper's MCUNet-in1 checkpoint with a new 10-way head, fits that
head on the frozen features (a linear probe: the reference every fine-tuning
must beat), then, starting from that head, fine-tunes with MeDyate at the
paper's smallest budget (15,936 units = 62 KB; plan from the shipped LaRa
ranking, channels resampled every epoch) and, for reference, fine-tunes every
layer of a fresh copy. It prints accuracy, the memory the update needs
(analytic, as in the papers) next to full fine-tuning, TensorFlow's measured
peak memory, channels explored and time.

Defaults finish in about 4 minutes on 2 CPU cores (plus about a minute the
first time, to unpack CIFAR-10). Offline, set `KERAS_MEDYATE_WEIGHTS_DIR` and
`KERAS_MEDYATE_DATA_DIR` (see the README).

Recipe (`--protocol=recommended`): head from the linear probe, plain SGD with
cosine decay after 1 warm-up epoch, a per-variable gradient clip of 1, peak
learning rate 0.05 for MeDyate and 0.005 for full fine-tuning (measured in
`benchmarks/RESULTS.md`). `--protocol=paper` runs the papers' settings
(random head, SGD 0.125, no clip, 5 warm-up epochs); on these BatchNorm-folded
checkpoints they diverge, and the run stops with a message.
"""

import sys
import time

from keras_medyate import console

# Before TensorFlow is imported (by the imports below): only the demo's own output.
console.quiet_tensorflow(verbose="--verbose" in sys.argv)

from absl import app, flags  # noqa: E402

from keras_medyate.comparison import flags as run_flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "cifar10", "cifar10, fashion_mnist or folder:/path.")
flags.DEFINE_string("budget", "15936", "Memory budget: units or a size such as 62KB.")
flags.DEFINE_string("strategy", "medyate", "Channel-selection method to demonstrate.")
run_flags.define_run_flags(train_per_class=500)
flags.DEFINE_bool("full", True, "Also run full fine-tuning for reference.")
flags.DEFINE_integer("seed", 0, "Seed of the data order and the sampling.")
flags.DEFINE_bool("verbose", False, "Keras' progress bars and TensorFlow's own log lines.")


def main(argv):
    del argv
    import keras_medyate as kmd
    from keras_medyate import comparison, memory
    from keras_medyate.divergence import TrainingDivergedError

    console.quiet_keras(verbose=FLAGS.verbose)
    total_start = time.perf_counter()
    budget = memory.parse_budget(FLAGS.budget)
    print(f"keras-medyate {kmd.__version__} demo: {FLAGS.model} on {FLAGS.dataset} "
          f"({FLAGS.train_per_class}/class train, {FLAGS.test_per_class}/class test, "
          f"{FLAGS.resolution} px, {FLAGS.epochs} epochs), budget "
          f"{memory.format_units(budget)}", flush=True)
    try:
        train_ds, test_ds, probe_ds, info = run_flags.load_data(FLAGS, seed=FLAGS.seed)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    print(f"data: {info.num_train} train / {info.num_test} test images from {info.source}",
          flush=True)
    methods = []
    if run_flags.run_config(FLAGS, FLAGS.strategy, budget, FLAGS.seed).head_init == "linear_probe":
        methods.append("linear_probe")
    methods += [FLAGS.strategy] + (["full"] if FLAGS.full else [])
    titles = {"linear_probe": "linear probe (head fitted on frozen features, no fine-tuning)",
              "full": "full fine-tuning (every channel)"}
    results = []
    for method in methods:
        config = run_flags.run_config(FLAGS, method, budget, FLAGS.seed)
        print(f"\n== {method}: {titles.get(method, 'budgeted fine-tuning')}", flush=True)
        try:
            row, _ = comparison.run_one(config, train_ds, test_ds, info, probe_ds=probe_ds,
                                        verbose=2 if FLAGS.verbose else 1)
        except TrainingDivergedError as error:
            sys.exit(f"error: {method}: {error}")
        print(f"   test top-1 {row['top1']:.1f} %", flush=True)
        results.append(row)
    print_report(results, budget, time.perf_counter() - total_start)


def print_report(rows, budget, total_seconds):
    from keras_medyate import memory

    full_kb = rows[0]["full_memory_kb"]
    print("\n" + "=" * 78)
    print(f"{'method':<14}{'top-1':>7}{'update memory (analytic)':>30}{'TF peak':>10}"
          f"{'explored':>10}{'time':>7}")
    for row in rows:
        share = 100 * row["update_memory_kb"] / full_kb
        print(f"{row['method']:<14}{row['top1']:>6.1f}%"
              f"{row['update_memory_kb']:>14.1f} KB ({share:5.1f} % of full)"
              f"{row['peak_memory_mb']:>7.0f} MB{100 * row['explored']:>9.0f}%"
              f"{row['train_seconds']:>6.0f}s")
    print(f"full fine-tuning would need {full_kb:.1f} KB; the budget was "
          f"{memory.format_units(budget)}.")
    by_method = {row["method"]: row for row in rows}
    budgeted = [row for row in rows if row["method"] not in ("linear_probe", "full")]
    if budgeted and "full" in by_method and budgeted[0]["epoch_seconds"] > 0:
        ours = budgeted[0]
        print(f"per-epoch time: {ours['method']} takes "
              f"{ours['epoch_seconds'] / by_method['full']['epoch_seconds']:.2f}x the time of "
              "full fine-tuning (backprop stops at the deepest-ranked layers); resampling took "
              f"{ours['resample_seconds_per_epoch']:.3f} s per epoch.")
    print(f"total wall time {total_seconds:.0f} s")


if __name__ == "__main__":
    app.run(main)
