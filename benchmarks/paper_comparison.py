r"""Reproduce the TraDy / MeDyate comparison on real data and the papers' checkpoints.

    python benchmarks/paper_comparison.py --model=mcunet_5fps --dataset=cifar10 \
        --methods=medyate,trady,full_random,static_random,sparse_update,full,linear_probe \
        --budgets=15936,64832,112640 --seeds=0,1,2 --epochs=8 \
        --train_per_class=120 --test_per_class=100 --resolution=96 --out=benchmarks/results

Every method starts from the same head, fitted by a linear probe on the frozen
features (`--protocol=recommended`, the default); `--protocol=paper` runs the
papers' own settings (random head, SGD 0.125, no clip, 5 warm-up epochs).
`--train_per_class=all` / `--test_per_class=all` use every image.

Writes `OUT/paper_comparison.csv` (one row per run; runs already in it are
skipped, so an interrupted run resumes), `OUT/summary.md` (mean ± std per
method × budget, speed and memory, paired comparison of MeDyate with each
baseline), and the plots `OUT/accuracy_vs_budget.png`,
`OUT/selection_heatmap_<model>_<dataset>.png` and `OUT/lara_ranking_<model>.png`.

`--quick` runs every method once on a tiny subset (32 px, 2 epochs) in a few
minutes: it checks the pipeline, not the accuracies (its summary says so).

A run whose loss diverges is reported and left out of the CSV; the command then
exits with status 1 after the other runs.
"""

import os
import sys
import time

from keras_medyate import console

# Before TensorFlow is imported (by the imports below): only this tool's own output.
console.quiet_tensorflow(verbose=any(arg.startswith("--verbose") and arg != "--verbose=0"
                                     for arg in sys.argv))

from absl import app, flags  # noqa: E402

from keras_medyate.comparison import flags as run_flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("dataset", ["cifar10"], "cifar10, fashion_mnist or folder:/path (a list runs "
                  "each in turn).")
flags.DEFINE_list("methods", ["medyate", "trady", "lara_trady", "full_random", "static_random",
                              "sparse_update", "full", "classifier", "linear_probe"],
                  "Methods to compare.")
flags.DEFINE_list("budgets", ["15936", "64832", "112640"],
                  "Budgets in units (the papers') or sizes such as 110KB.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (data order, new head, sampling).")
run_flags.define_run_flags(train_per_class=200)
flags.DEFINE_string("ranking", "lara", "'lara' (the shipped ranking) or a ranking JSON path.")
flags.DEFINE_string("out", "benchmarks/results", "Output directory.")
flags.DEFINE_bool("backup", False, "Back up every epoch under OUT/backup/ so that an "
                  "interrupted run resumes at its last finished epoch (for long runs).")
flags.DEFINE_bool("quick", False, "Tiny smoke preset: every method once, 32 px, 2 epochs.")
flags.DEFINE_integer("verbose", 0, "Keras fit verbosity (and TensorFlow's logs when > 0).")

QUICK = {
    "methods": ["medyate", "trady", "lara_trady", "full_random", "static_random",
                "sparse_update", "det_rgn", "det_raw", "prob_raw", "full", "classifier"],
    "budgets": ["15936"], "seeds": ["0"], "epochs": 2, "train_per_class": "4",
    "test_per_class": "2", "resolution": 32, "batch_size": 8,
}
QUICK["methods"] = QUICK["methods"] + ["linear_probe"]


def settings():
    """The effective settings: flags, with the quick preset applied."""
    values = {name: getattr(FLAGS, name) for name in (
        "methods", "budgets", "seeds", "epochs", "train_per_class", "test_per_class",
        "resolution", "batch_size")}
    if FLAGS.quick:
        values.update(QUICK)
    return values


def main(argv):
    del argv
    from keras_medyate import comparison, memory
    from keras_medyate.comparison import report, runner
    from keras_medyate.divergence import TrainingDivergedError

    console.quiet_keras(verbose=FLAGS.verbose > 0)
    config = settings()
    for method in config["methods"]:
        if method not in runner.METHODS:
            raise app.UsageError(f"Unknown method {method!r}; accepted: {', '.join(runner.METHODS)}")
    budgets = [memory.parse_budget(b) for b in config["budgets"]]
    seeds = [int(s) for s in config["seeds"]]
    # Every dataset is found and sized before any training (nothing is decoded yet).
    # The images are the same for every seed; the run's seed orders the training epochs.
    def load(dataset, seed):
        return run_flags.load_data(
            FLAGS, dataset=dataset, resolution=config["resolution"],
            batch_size=config["batch_size"], train_per_class=config["train_per_class"],
            test_per_class=config["test_per_class"], seed=seed)

    loaded = {}
    for dataset in FLAGS.dataset:
        try:
            loaded[dataset] = load(dataset, seeds[0])
        except (ValueError, FileNotFoundError) as error:
            sys.exit(f"error: dataset {dataset!r}: {error}")
    csv_path = os.path.join(FLAGS.out, "paper_comparison.csv")
    done = {report.run_key(r) for r in report.read_csv(csv_path)}
    diverged = []
    for dataset in FLAGS.dataset:
        _, test_ds, probe_ds, info = loaded[dataset]
        train_by_seed = {}
        jobs = [(method, budget, seed) for seed in seeds for budget in budgets
                for method in config["methods"]
                if not (method in runner.BUDGET_FREE and budget != budgets[0])]
        print(f"{FLAGS.model} on {info.name}: {info.num_train} train / {info.num_test} test "
              f"images, {len(jobs)} runs", flush=True)
        for index, (method, budget, seed) in enumerate(jobs, start=1):
            run_config = run_flags.run_config(
                FLAGS, method, budget, seed, ranking=FLAGS.ranking,
                epochs=config["epochs"], resolution=config["resolution"],
                backup_dir=os.path.join(FLAGS.out, "backup") if FLAGS.backup else None)
            key_budget = budget if method not in runner.BUDGET_FREE else None
            if any(k[:3] == (FLAGS.model, info.name, method) and k[4] == seed
                   and (key_budget is None or k[3] == budget) for k in done):
                print(f"[{index}/{len(jobs)}] {method} {budget} seed {seed}: in the CSV, skipped")
                continue
            if seed not in train_by_seed:
                train_by_seed[seed] = load(dataset, seed)[0]
            train_ds = train_by_seed[seed]
            start = time.perf_counter()
            try:
                row, resampler = comparison.run_one(run_config, train_ds, test_ds, info,
                                                    probe_ds=probe_ds, verbose=FLAGS.verbose)
            except TrainingDivergedError as error:
                print(f"[{index}/{len(jobs)}] {method:>13} budget {budget:>7,} seed {seed}: "
                      f"DIVERGED, no row written: {error}", flush=True)
                diverged.append((info.name, method, budget, seed))
                continue
            os.makedirs(os.path.join(FLAGS.out, "selections"), exist_ok=True)
            report.append_csv(csv_path, row)
            done.add(report.run_key(row))
            if method == "medyate":
                name = runner.run_name(run_config, info) + ".json"
                report.write_json(os.path.join(FLAGS.out, "selections", name),
                                  report.selection_record(resampler))
            print(f"[{index}/{len(jobs)}] {method:>13} budget {budget:>7,} seed {seed}: "
                  f"top-1 {row['top1']:6.2f} %, {row['update_memory_kb']:8.1f} KB, "
                  f"{row['epoch_seconds']:.1f} s/epoch ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    if os.path.exists(csv_path):
        write_outputs(csv_path, budgets, seeds)
    if diverged:
        sys.exit(f"{len(diverged)} run(s) diverged and were left out of the CSV: {diverged}. "
                 "Lower their learning rate (--learning_rate / --full_learning_rate).")


def write_outputs(csv_path, budgets, seeds):
    """Summary markdown and plots from everything in the CSV."""
    import json

    from keras_medyate import models
    from keras_medyate.comparison import report, runner

    rows = report.read_csv(csv_path)
    out = os.path.dirname(csv_path)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as f:
        f.write("# Paper comparison: summary\n\nGenerated by `benchmarks/paper_comparison.py` "
                "from `paper_comparison.csv`.\n\n")
        if FLAGS.quick:
            f.write("> **Smoke run (`--quick`)**: a few images per class at 32 px for 2 epochs. "
                    "It checks that every method runs; its accuracies mean nothing.\n\n")
        f.write(report.summary_markdown(rows))
    report.plot_accuracy_vs_budget(rows, os.path.join(out, "accuracy_vs_budget.png"))
    for model_name, dataset in {(r["model"], r["dataset"]) for r in rows}:
        candidates = sorted(
            (r for r in rows if r["model"] == model_name and r["dataset"] == dataset
             and r["method"] == "medyate"), key=lambda r: (r["budget_units"], r["seed"]))
        if not candidates:
            continue
        first = candidates[0]
        tag = dataset.replace(":", "_").replace("/", "_")
        path = os.path.join(out, "selections",
                            f"{model_name}_{tag}_medyate_{int(first['budget_units'])}_"
                            f"{int(first['seed'])}.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                selection = json.load(f)
            report.plot_selection_heatmap(
                selection, os.path.join(out, f"selection_heatmap_{model_name}_{tag}.png"),
                f"MeDyate on {dataset}, {int(first['budget_units']):,} units, seed "
                f"{int(first['seed'])}")
    for model_name in sorted({r["model"] for r in rows}):
        model = models.from_tiny_training(model_name, classes=10,
                                          input_shape=(int(rows[0]["resolution"]),) * 2 + (3,))
        plans = {b: runner.build_plan(model, "medyate", b, FLAGS.ranking) for b in budgets}
        report.plot_layer_ranking(plans[budgets[0]].ranking, plans,
                                  os.path.join(out, f"lara_ranking_{model_name}.png"),
                                  f"LaRa layer ranking of {model_name} and the alpha = 0.2 "
                                  "search space per budget")
    print(f"wrote {out}/summary.md and plots", flush=True)


if __name__ == "__main__":
    app.run(main)
