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

`--ray` fans the runs out as Ray tasks (one run = one task declaring
`--ray_cpus_per_run` / `--ray_gpus_per_run`), on a local Ray by default or on
the cluster of `--ray_address`; the rows equal the sequential ones but for the
timing columns (`tests/test_ray_sweep.py`). Finished runs are skipped the same
way, and a task whose worker dies is retried (`--ray_retries`).
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
flags.DEFINE_bool("ray", False, "Run every run as a Ray task (pip install -e '.[cluster]'); the "
                  "driver alone writes the CSV and the selection files.")
flags.DEFINE_string("ray_address", None, "With --ray: join this Ray cluster (e.g. "
                    "'ray://head:10001' or 'auto'); default: start a local one.")
flags.DEFINE_integer("ray_num_cpus", None, "With --ray and a local Ray: CPUs it may use "
                     "(default: all).")
flags.DEFINE_float("ray_cpus_per_run", 1.0, "With --ray: CPUs each run declares.")
flags.DEFINE_float("ray_gpus_per_run", 0.0, "With --ray: GPUs each run declares.")
flags.DEFINE_integer("ray_retries", 2, "With --ray: times a run is retried when its worker "
                     "dies (a run that raises is reported, not retried).")

QUICK = {
    "methods": ["medyate", "trady", "lara_trady", "full_random", "static_random",
                "sparse_update", "det_rgn", "det_raw", "prob_raw", "full", "classifier"],
    "budgets": ["15936"], "seeds": ["0"], "epochs": 2, "train_per_class": "4",
    "test_per_class": "2", "resolution": 32, "batch_size": 8,
}
QUICK["methods"] = QUICK["methods"] + ["linear_probe"]


def settings():
    """The effective settings: flags, with the quick preset applied to the flags
    not given on the command line (`--quick --methods=medyate,full` runs two)."""
    values = {name: getattr(FLAGS, name) for name in (
        "methods", "budgets", "seeds", "epochs", "train_per_class", "test_per_class",
        "resolution", "batch_size")}
    if FLAGS.quick:
        values.update({name: value for name, value in QUICK.items() if not FLAGS[name].present})
    return values


def main(argv):
    del argv
    from keras_medyate import memory
    from keras_medyate.comparison import report, runner

    console.quiet_keras(verbose=FLAGS.verbose > 0)
    config = settings()
    for method in config["methods"]:
        if method not in runner.METHODS:
            raise app.UsageError(f"Unknown method {method!r}; accepted: {', '.join(runner.METHODS)}")
    if FLAGS.ranking not in ("lara", "rgn"):
        from keras_medyate import ranking as ranking_lib
        try:  # a bad path fails here, before any data is read or any run starts
            ranking_lib.LayerRanking.load(FLAGS.ranking)
        except (ValueError, KeyError, AttributeError, TypeError) as error:
            sys.exit(f"error: --ranking={FLAGS.ranking!r}: {error} Pass 'lara' (the shipped "
                     "ranking) or a file written by `kmd.rank_layers(...).save(path)`.")
    budgets = [memory.parse_budget(b) for b in config["budgets"]]
    seeds = [int(s) for s in config["seeds"]]
    # Folder datasets travel with absolute paths (Ray workers run elsewhere).
    datasets = [f"folder:{os.path.abspath(d[len('folder:'):])}" if d.startswith("folder:") else d
                for d in FLAGS.dataset]
    # Every dataset is found and sized before any training (nothing is decoded yet).
    loaded = {}
    for dataset in datasets:
        try:
            loaded[dataset] = load_run_data(FLAGS, config, dataset, seeds[0])
        except (ValueError, FileNotFoundError) as error:
            sys.exit(f"error: dataset {dataset!r}: {error}")
    csv_path = os.path.join(FLAGS.out, "paper_comparison.csv")
    done = {report.run_key(r) for r in report.read_csv(csv_path)}
    jobs = []  # (dataset, method, budget, seed), the ones not in the CSV yet
    for dataset in datasets:
        info = loaded[dataset][3]
        planned = [(method, budget, seed) for seed in seeds for budget in budgets
                   for method in config["methods"]
                   if not (method in runner.BUDGET_FREE and budget != budgets[0])]
        print(f"{FLAGS.model} on {info.name}: {info.num_train} train / {info.num_test} test "
              f"images, {len(planned)} runs", flush=True)
        for method, budget, seed in planned:
            key_budget = budget if method not in runner.BUDGET_FREE else None
            if any(k[:3] == (FLAGS.model, info.name, method) and k[4] == seed
                   and (key_budget is None or k[3] == budget) for k in done):
                print(f"{method} {budget} seed {seed}: in the CSV, skipped")
                continue
            jobs.append((dataset, method, budget, seed))
    values = FLAGS.flag_values_dict()
    # Ray workers may run in another directory: paths travel absolute.
    values["out"] = os.path.abspath(values["out"])
    if values["ranking"] not in ("lara", "rgn"):
        values["ranking"] = os.path.abspath(values["ranking"])
    results = (ray_results(values, config, jobs) if FLAGS.ray
               else sequential_results(values, config, jobs, loaded))
    diverged, failed = [], []
    for index, ((dataset, method, budget, seed), result, seconds) in enumerate(results, start=1):
        label = f"[{index}/{len(jobs)}] {method:>13} budget {budget:>7,} seed {seed}"
        if "failed" in result:
            print(f"{label}: FAILED: {result['failed']}", flush=True)
            failed.append((dataset, method, budget, seed))
            continue
        if "diverged" in result:
            print(f"{label}: DIVERGED, no row written: {result['diverged']}", flush=True)
            diverged.append((loaded[dataset][3].name, method, budget, seed))
            continue
        row = result["row"]
        os.makedirs(os.path.join(FLAGS.out, "selections"), exist_ok=True)
        report.append_csv(csv_path, row)
        if result["selection"] is not None:
            report.write_json(os.path.join(FLAGS.out, "selections", result["name"] + ".json"),
                              result["selection"])
        print(f"{label}: top-1 {row['top1']:6.2f} %, {row['update_memory_kb']:8.1f} KB, "
              f"{row['epoch_seconds']:.1f} s/epoch ({seconds:.0f} s)", flush=True)
    if os.path.exists(csv_path):
        write_outputs(csv_path, budgets, seeds)
    problems = []
    if diverged:
        problems.append(f"{len(diverged)} run(s) diverged and were left out of the CSV: "
                        f"{diverged}. Lower their learning rate (--learning_rate / "
                        "--full_learning_rate).")
    if failed:
        problems.append(f"{len(failed)} run(s) failed and were left out of the CSV: {failed}; "
                        "run the same command again to retry them.")
    if problems:
        sys.exit(" ".join(problems))


def load_run_data(flag_values, config, dataset, seed):
    """(train_ds, test_ds, probe_ds, info) of one run: the same images for every
    seed; the run's seed orders the training epochs."""
    return run_flags.load_data(
        flag_values, dataset=dataset, resolution=config["resolution"],
        batch_size=config["batch_size"], train_per_class=config["train_per_class"],
        test_per_class=config["test_per_class"], seed=seed)


def execute_run(values, config, dataset, method, budget, seed, data=None):
    """One run, in this process: the result dict the driver records.

    Args:
        values: dict of the parsed flags (`FLAGS.flag_values_dict()`).
        config: `settings()`.
        dataset, method, budget, seed: the run.
        data: optional `(train_ds, test_ds, probe_ds, info)` already loaded.

    Returns:
        dict: `row`, `selection` (MeDyate's per-epoch record, else None) and `name`;
        or `diverged` (the message) when the loss diverged.
    """
    import types

    from keras_medyate import comparison
    from keras_medyate.comparison import report, runner
    from keras_medyate.divergence import TrainingDivergedError

    flag_values = types.SimpleNamespace(**values)
    if data is None:
        data = load_run_data(flag_values, config, dataset, seed)
    train_ds, test_ds, probe_ds, info = data
    run_config = run_flags.run_config(
        flag_values, method, budget, seed, ranking=values["ranking"], epochs=config["epochs"],
        resolution=config["resolution"],
        backup_dir=os.path.join(values["out"], "backup") if values["backup"] else None)
    try:
        row, resampler = comparison.run_one(run_config, train_ds, test_ds, info,
                                            probe_ds=probe_ds, verbose=values["verbose"])
    except TrainingDivergedError as error:
        return {"diverged": str(error)}
    selection = report.selection_record(resampler) if method == "medyate" else None
    return {"row": row, "selection": selection, "name": runner.run_name(run_config, info)}


def sequential_results(values, config, jobs, loaded):
    """Runs the jobs one after the other in this process; yields (job, result, seconds).

    Every run gets a fresh training pipeline (as a Ray task does): a reused one
    would continue its shuffling where the previous run left it, so a run's
    result would depend on the runs before it.
    """
    for job in jobs:
        dataset, method, budget, seed = job
        _, test_ds, probe_ds, info = loaded[dataset]
        start = time.perf_counter()
        train_ds = load_run_data(FLAGS, config, dataset, seed)[0]
        result = execute_run(values, config, dataset, method, budget, seed,
                             data=(train_ds, test_ds, probe_ds, info))
        yield job, result, time.perf_counter() - start


def _ray_task(values, config, job):
    """The body of one Ray task (a fresh worker process)."""
    console.quiet_tensorflow(verbose=values["verbose"] > 0)
    console.quiet_keras(verbose=values["verbose"] > 0)
    start = time.perf_counter()
    return execute_run(values, config, *job), time.perf_counter() - start


def ray_results(values, config, jobs):
    """Runs the jobs as Ray tasks; yields (job, result, seconds) as they finish.

    Progress (done / running / failed) is printed as tasks finish. A task whose
    worker dies is retried `--ray_retries` times; a task that raises is
    reported as failed (its traceback's last line) and the sweep goes on.
    """
    if not jobs:
        return
    try:
        import ray
    except ImportError as error:
        raise app.UsageError("--ray needs Ray: pip install -e '.[cluster]'") from error
    env_vars = {name: value for name, value in os.environ.items()
                if name.startswith("KERAS_MEDYATE_") or name == "KERAS_BACKEND"}
    init = {"runtime_env": {"env_vars": env_vars}, "log_to_driver": values["verbose"] > 0}
    if FLAGS.ray_address:
        init["address"] = FLAGS.ray_address
    elif FLAGS.ray_num_cpus:
        init["num_cpus"] = FLAGS.ray_num_cpus
    ray.init(**init)
    available = ray.cluster_resources()
    for resource, needed in (("CPU", FLAGS.ray_cpus_per_run), ("GPU", FLAGS.ray_gpus_per_run)):
        if needed > available.get(resource, 0):
            ray.shutdown()
            raise app.UsageError(
                f"Each run asks for {needed:g} {resource} (--ray_{resource.lower()}s_per_run) but "
                f"the Ray cluster has {available.get(resource, 0):g}: no run could ever start. "
                "Lower the request or add nodes.")
    task = ray.remote(num_cpus=FLAGS.ray_cpus_per_run, num_gpus=FLAGS.ray_gpus_per_run,
                      max_retries=FLAGS.ray_retries, retry_exceptions=False)(_ray_task)
    pending = {task.remote(values, config, job): job for job in jobs}
    print(f"ray: {len(jobs)} runs on {ray.cluster_resources().get('CPU', 0):.0f} CPUs",
          flush=True)
    finished = failed = 0
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                result, seconds = ray.get(ready[0])
            except (ray.exceptions.RayError) as error:
                failed += 1
                message = str(error).strip().splitlines()
                result, seconds = {"failed": message[-1] if message else repr(error)}, 0.0
            finished += 1
            print(f"ray: {finished} done, {len(pending)} running or queued, {failed} failed",
                  flush=True)
            yield job, result, seconds
    finally:
        ray.shutdown()


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
