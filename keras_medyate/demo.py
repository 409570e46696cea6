r"""The main job: MeDyate vs full fine-tuning and a linear probe, MCUNet on CIFAR-10.

    python -m keras_medyate.demo

It loads the paper's MCUNet-in1 checkpoint with a new 10-way head, fits that
head on the frozen features (a linear probe: the reference every fine-tuning
must beat), then, starting from that head, fine-tunes with MeDyate at the
papers' smallest budget (15,936 units, 62.2 KB; plan from the shipped LaRa
ranking, channels resampled every epoch) and, for reference, fine-tunes every
layer of a fresh copy. It prints accuracy, the memory the update needs
(analytic, as in the papers) next to full fine-tuning, TensorFlow's measured
peak memory, channels explored and time.

It runs as is on a fresh machine, offline, with no variable set: the MCUNet
checkpoint and a 6,000-image CIFAR-10 subset (500 training and 100 test images
per class, exactly the images the default settings pick from the full dataset)
ship with the package. A full CIFAR-10 is used instead when one is found
(`$KERAS_MEDYATE_DATA_DIR`, Keras' own cache of
`keras.datasets.cifar10.load_data()`) or can be downloaded; the run prints
which data and which checkpoint it used. Defaults finish in about 4 minutes on
2 CPU cores.

Recipe (`--protocol=recommended`): head from the linear probe, plain SGD with
cosine decay after 1 warm-up epoch, a per-variable gradient clip of 1, peak
learning rate 0.05 for MeDyate and 0.01 for full fine-tuning
(`keras_medyate.recipe`). `--protocol=paper` runs the papers' settings
(random head, SGD 0.125, no clip, 5 warm-up epochs); on these BatchNorm-folded
checkpoints they diverge, and the run stops with a message.
"""

import os
import sys
import time
import warnings

from absl import flags

from keras_medyate import console
from keras_medyate import cli
from keras_medyate.comparison import flags as run_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "cifar10", "cifar10, fashion_mnist or folder:/path.")
flags.DEFINE_string("budget", "15936",
                    "Memory budget: units (the papers' smallest, 15936) or a size such as 62KB.")
flags.DEFINE_string("strategy", "medyate", "Channel-selection method to demonstrate.")
run_flags.define_run_flags(train_per_class=500)
# The demo reports the final top-1 only: no evaluation pass after every epoch.
FLAGS.set_default("epoch_eval", False)
flags.DEFINE_bool("full", True, "Also run full fine-tuning for reference.")
flags.DEFINE_integer("seed", 0, "Seed of the data order and the sampling.")
flags.DEFINE_bool("verbose", False, "Keras' progress bars and TensorFlow's own log lines.")

#: Methods that are not a budgeted channel selection (the demo runs them itself).
_NOT_STRATEGIES = ("full", "linear_probe")


def check_flags(values):
    """Rejects bad values with one line (exit status 2) before any work."""
    from keras_medyate import memory
    from keras_medyate.comparison import settings

    run_flags.check_run_flags(values)
    try:
        memory.parse_budget(values.budget)
    except ValueError as error:
        raise cli.UsageError(f"--budget={values.budget}: {error}") from None
    strategies = sorted(set(settings.METHODS) - set(_NOT_STRATEGIES))
    cli.require(values.strategy in strategies,
                f"--strategy={values.strategy!r} is not one of {', '.join(strategies)}.")
    cli.require(values.seed >= 0, f"--seed={values.seed}: must be >= 0.")
    # The checks below import TensorFlow: quiet it first.
    console.quiet_tensorflow(verbose=values.verbose)
    from keras_medyate.data import datasets
    from keras_medyate.models import presets

    cli.require(os.path.isfile(values.model) or presets.preset_name_for(values.model),
                f"--model={values.model!r} is neither a preset ({', '.join(presets.PRESETS)}) "
                "nor an existing tiny-training .pkl file.")
    try:
        datasets.check_name(values.dataset)
    except ValueError as error:
        raise cli.UsageError(f"--dataset={values.dataset!r}: {error}") from None


def main(argv):
    del argv
    console.quiet_tensorflow(verbose=FLAGS.verbose)
    import keras_medyate as kmd
    from keras_medyate import comparison, memory
    from keras_medyate.data.cifar10 import SHIPPED_SOURCE
    from keras_medyate.divergence import TrainingDivergedError
    from keras_medyate.models import presets

    console.quiet_keras(verbose=FLAGS.verbose)
    total_start = time.perf_counter()
    budget = memory.parse_budget(FLAGS.budget)
    print(f"keras-medyate {kmd.__version__} demo: {FLAGS.model} on {FLAGS.dataset} "
          f"({FLAGS.train_per_class}/class train, {FLAGS.test_per_class}/class test, "
          f"{FLAGS.resolution} px, {FLAGS.epochs} epochs), budget "
          f"{memory.format_units(budget)}", flush=True)
    try:
        weights = presets.resolve_weights(FLAGS.model)
    except (ValueError, FileNotFoundError) as error:
        cli.fail(error)
    shipped = os.path.dirname(os.path.abspath(weights)) == os.path.abspath(presets.SHIPPED_DIR)
    print(f"weights: {weights}" + (" (shipped with keras-medyate; MIT, MIT HAN Lab "
                                   "tiny-training)" if shipped else ""), flush=True)
    with warnings.catch_warnings():
        # Said below in one line instead (the data line names the subset).
        warnings.filterwarnings("ignore", message="CIFAR-10 was not found locally")
        try:
            train_ds, test_ds, probe_ds, info = run_flags.load_data(FLAGS, seed=FLAGS.seed)
        except (ValueError, FileNotFoundError) as error:
            cli.fail(error)
    print(f"data: {info.num_train} train / {info.num_test} test images from {info.source}",
          flush=True)
    if info.source.startswith(SHIPPED_SOURCE):
        print("      (no full CIFAR-10 was found or downloaded; for it, run `python -c \"import "
              "keras; keras.datasets.cifar10.load_data()\"` once online, or set "
              "KERAS_MEDYATE_DATA_DIR)", flush=True)
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
        peak = row.get("peak_memory_mb")
        # TensorFlow keeps no CPU allocator statistics on some machines (oneDNN off).
        peak = f"{peak:>7.0f} MB" if isinstance(peak, (int, float)) else f"{'n/a':>10}"
        print(f"{row['method']:<14}{row['top1']:>6.1f}%"
              f"{row['update_memory_kb']:>14.1f} KB ({share:5.1f} % of full)"
              f"{peak}{100 * row['explored']:>9.0f}%{row['train_seconds']:>6.0f}s")
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
    cli.run(main, __doc__, modules=("keras_medyate.comparison.flags",), check=check_flags)
