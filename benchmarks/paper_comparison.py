r"""Reproduce the TraDy / MeDyate comparison on real data and the papers' checkpoints.

    python benchmarks/paper_comparison.py --model=mcunet_5fps --dataset=cifar10 \
        --methods=medyate,trady,full_random,static_random,sparse_update,full,linear_probe \
        --budgets=15936,64832,112640 --seeds=0,1,2 --epochs=8 \
        --train_per_class=120 --test_per_class=100 --resolution=96 --out=benchmarks/results

Protocol: every method starts from the same head, fitted by a linear probe on
the frozen features (`--protocol=recommended`, the default; `--protocol=paper`
runs the papers' random head, SGD 0.125, no clip, 5 warm-up epochs). A seed
picks the training images and their order, shared by every method of that
seed, so every cell (deterministic baselines included) has one run per seed.
The recipe's choices (learning rates, augmentation, epochs) were made with
`--eval_on=validation` (a stratified part of the training images held out),
never on the test set. A run that diverges restarts at half the learning
rate, at most `--max_retries` times (the row says so). TensorFlow runs with
`--threads` threads per run, the same sequentially and under `--ray`, so a
run gives the same row wherever it runs. `full` trains every variable of the
model (biases included). `--runtime=keras,litert` also trains MeDyate on the
exported LiteRT file (same head, plan, seed, data order, recipe, epochs).

Writes OUT/paper_comparison.csv (one row per run; runs already in it are
skipped, so an interrupted sweep resumes), OUT/summary.md (mean ± std and run
count per cell, Keras vs LiteRT, per-epoch curves, speed and memory, paired
comparisons of MeDyate with each baseline on runs sharing a seed) and plots.
`--quick` runs every method once on a tiny subset (a smoke test: its accuracies
mean nothing). `--ray` fans the runs out as Ray tasks.
"""

import os
import sys
import time

from absl import flags

from keras_medyate import console
from keras_medyate import cli
from keras_medyate.comparison import settings
from keras_medyate.comparison import flags as run_flags

FLAGS = flags.FLAGS
flags.DEFINE_list("dataset", ["cifar10"], "cifar10, fashion_mnist or folder:/path (a list runs "
                  "each in turn).")
flags.DEFINE_list("methods", ["medyate", "trady", "lara_trady", "full_random", "static_random",
                              "sparse_update", "full", "classifier", "linear_probe"],
                  f"Methods to compare, among: {', '.join(settings.METHODS)}.")
flags.DEFINE_list("budgets", ["15936", "64832", "112640"],
                  "Budgets in units (the papers') or sizes such as 110KB.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds: each picks the training images, their "
                  "order, the sampling (every method of a seed shares the images and order).")
flags.DEFINE_list("runtime", ["keras"], "Where MeDyate trains: keras, litert (the exported "
                  "LiteRT file on tflite_export.OnDeviceTrainer), or both (keras,litert). "
                  "litert applies to medyate only: every other method runs in Keras only.")
flags.DEFINE_integer("threads", settings.DEFAULT_THREADS,
                     "TensorFlow intra- and inter-op threads per run (fixed so that a run "
                     "gives the same row sequentially and under --ray).")
run_flags.define_run_flags(train_per_class=200)
flags.DEFINE_string("ranking", "lara", "'lara' (the shipped ranking) or a ranking JSON path.")
flags.DEFINE_string("out", "benchmarks/results", "Output directory.")
flags.DEFINE_bool("backup", False, "Back up every epoch under OUT/backup/ (weights, optimizer, "
                  "selection state and the epochs' measurements) so that an interrupted run "
                  "resumes after its last finished epoch, its row covering every epoch (for "
                  "long runs).")
flags.DEFINE_bool("quick", False, "Tiny smoke preset: every method once, 32 px, 2 epochs.")
flags.DEFINE_integer("verbose", 0, "Keras fit verbosity (and TensorFlow's logs when > 0).")
flags.DEFINE_bool("ray", False, "Run every run as a Ray task (pip install -e '.[cluster]'); the "
                  "driver alone writes the CSV and the selection files.")
flags.DEFINE_string("ray_address", None, "With --ray: join this Ray cluster (e.g. "
                    "'ray://head:10001' or 'auto'); default: start a local one.")
flags.DEFINE_integer("ray_num_cpus", None, "With --ray and a local Ray: CPUs it may use "
                     "(default: all).")
flags.DEFINE_float("ray_cpus_per_run", None, "With --ray: CPUs each run declares (default: "
                   "--threads, at most the cluster's CPUs).")
flags.DEFINE_float("ray_gpus_per_run", 0.0, "With --ray: GPUs each run declares.")
flags.DEFINE_integer("ray_retries", 2, "With --ray: times a run is retried when its worker "
                     "dies (a run that raises is reported, not retried).")

QUICK = {
    "methods": ["medyate", "trady", "lara_trady", "full_random", "static_random",
                "sparse_update", "det_rgn", "det_raw", "prob_raw", "full", "classifier",
                "linear_probe"],
    "budgets": ["15936"], "seeds": ["0"], "epochs": 2, "train_per_class": "4",
    "test_per_class": "2", "resolution": 32, "batch_size": 8,
}


def settings_of(values):
    """The effective settings: flags, with the quick preset applied to the flags
    not given on the command line (`--quick --methods=medyate,full` runs two)."""
    config = {name: getattr(values, name) for name in (
        "methods", "budgets", "seeds", "epochs", "train_per_class", "test_per_class",
        "resolution", "batch_size")}
    if values.quick:
        config.update({name: value for name, value in QUICK.items() if not values[name].present})
    return config


def check_flags(values):
    """One-line rejections of bad values, before anything is imported or created."""
    import difflib

    from keras_medyate import memory

    run_flags.check_run_flags(values)
    config = settings_of(values)
    for method in config["methods"]:
        close = difflib.get_close_matches(method, settings.METHODS, n=1)
        cli.require(method in settings.METHODS,
                    f"--methods: unknown method {method!r}"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                    + f"; accepted: {', '.join(settings.METHODS)}.")
    cli.require(config["methods"], "--methods is empty: name at least one method.")
    cli.require(config["budgets"], "--budgets is empty: give at least one budget.")
    for budget in config["budgets"]:
        try:
            memory.parse_budget(budget)
        except ValueError as error:
            raise cli.UsageError(f"--budgets: {budget!r}: {error}") from error
    for seed in config["seeds"]:
        cli.require(str(seed).isdigit(), f"--seeds: {seed!r} is not a non-negative integer.")
    cli.require(config["seeds"], "--seeds is empty: give at least one seed.")
    for runtime in values.runtime:
        cli.require(runtime in settings.RUNTIMES, f"--runtime: unknown runtime {runtime!r}; "
                    f"accepted: {', '.join(settings.RUNTIMES)} (or both, comma-separated).")
    cli.require(values.runtime, "--runtime is empty: give keras, litert or keras,litert.")
    cli.require(values.threads >= 1, f"--threads={values.threads}: must be at least 1.")
    for dataset in values.dataset:
        cli.require(dataset.strip(), "--dataset has an empty name.")
    if values.ray_cpus_per_run is not None:
        cli.require(values.ray_cpus_per_run > 0,
                    f"--ray_cpus_per_run={values.ray_cpus_per_run}: must be positive.")


def check_model(name):
    """Rejects a --model that is neither a preset nor an existing file (after the TF import)."""
    from keras_medyate.models import PRESETS

    if name not in PRESETS and not os.path.isfile(name):
        cli.fail(f"--model={name!r} is neither a preset ({', '.join(PRESETS)}) nor an existing "
                 "tiny-training .pkl file.")


def runtimes_of(method):
    """The runtimes a method runs in: --runtime, Keras only for non-LiteRT methods."""
    wanted = [r for r in FLAGS.runtime if r == "keras" or method in settings.LITERT_METHODS]
    return wanted or ["keras"]


def main(argv):
    del argv
    for name, value in settings.ALLOCATOR_ENV.items():
        os.environ.setdefault(name, value)
    console.quiet_tensorflow(verbose=FLAGS.verbose > 0)
    from keras_medyate.comparison import runner

    # Before any TensorFlow op: the thread count every run of this sweep uses.
    runner.set_tensorflow_threads(FLAGS.threads)
    console.quiet_keras(verbose=FLAGS.verbose > 0)
    from keras_medyate import memory
    from keras_medyate.comparison import report

    check_model(FLAGS.model)
    config = settings_of(FLAGS)
    if FLAGS.ranking not in ("lara", "rgn"):
        from keras_medyate import ranking as ranking_lib
        try:  # a bad path fails here, before any data is read or any run starts
            ranking_lib.LayerRanking.load(FLAGS.ranking)
        except (ValueError, KeyError, AttributeError, TypeError) as error:
            cli.fail(f"--ranking={FLAGS.ranking!r}: {error} Pass 'lara' (the shipped ranking) "
                     "or a file written by `kmd.rank_layers(...).save(path)`.")
    budgets = [memory.parse_budget(b) for b in config["budgets"]]
    seeds = [int(s) for s in config["seeds"]]
    # Folder datasets travel with absolute paths (Ray workers run elsewhere).
    datasets = [f"folder:{os.path.abspath(d[len('folder:'):])}" if d.startswith("folder:") else d
                for d in FLAGS.dataset]
    # Every dataset is found and sized before any training (nothing is decoded yet).
    infos = {}
    for dataset in datasets:
        try:
            infos[dataset] = load_run_data(FLAGS, config, dataset, seeds[0])[3]
        except (ValueError, FileNotFoundError) as error:
            cli.fail(f"dataset {dataset!r}: {error}")
    csv_path = os.path.join(FLAGS.out, "paper_comparison.csv")
    try:
        report.check_csv(csv_path, FLAGS.eval_on)
    except ValueError as error:
        cli.fail(error)
    done = {report.run_key(r) for r in report.read_csv(csv_path)}
    others = [m for m in config["methods"] if m not in settings.LITERT_METHODS]
    if "litert" in FLAGS.runtime and others:
        print(f"note: --runtime=litert applies to {', '.join(settings.LITERT_METHODS)} only; "
              f"{', '.join(others)} run in Keras only.", flush=True)
    jobs = []  # (dataset, method, budget, seed, runtime), the ones not in the CSV yet
    for dataset in datasets:
        info = infos[dataset]
        planned = [(method, budget, seed, runtime) for seed in seeds for budget in budgets
                   for method in config["methods"] for runtime in runtimes_of(method)
                   if not (method in settings.BUDGET_FREE and budget != budgets[0])]
        print(f"{FLAGS.model} on {info.name}: {info.num_train} train / {info.num_test} "
              f"{FLAGS.eval_on} images per seed, {len(planned)} runs, {FLAGS.threads} "
              "TensorFlow threads per run", flush=True)
        for method, budget, seed, runtime in planned:
            key_budget = budget if method not in settings.BUDGET_FREE else None
            if any(k[:3] == (FLAGS.model, info.name, method) and k[4] == seed
                   and k[5] == runtime and (key_budget is None or k[3] == budget)
                   for k in done):
                print(f"{method} {runtime} {budget} seed {seed}: in the CSV, skipped")
                continue
            jobs.append((dataset, method, budget, seed, runtime))
    values = FLAGS.flag_values_dict()
    # Ray workers may run in another directory: paths travel absolute.
    values["out"] = os.path.abspath(values["out"])
    if values["ranking"] not in ("lara", "rgn"):
        values["ranking"] = os.path.abspath(values["ranking"])
    results = (ray_results(values, config, jobs) if FLAGS.ray
               else sequential_results(values, config, jobs))
    diverged, failed = [], []
    for index, ((dataset, method, budget, seed, runtime), result, seconds) in enumerate(
            results, start=1):
        label = f"[{index}/{len(jobs)}] {method:>13} {runtime:>6} budget {budget:>7,} seed {seed}"
        if "failed" in result:
            print(f"{label}: FAILED: {result['failed']}", flush=True)
            failed.append((dataset, method, budget, seed, runtime))
            continue
        if "diverged" in result:
            print(f"{label}: DIVERGED, no row written: {result['diverged']}", flush=True)
            diverged.append((infos[dataset].name, method, budget, seed, runtime))
            continue
        row = result["row"]
        os.makedirs(os.path.join(FLAGS.out, "selections"), exist_ok=True)
        report.append_csv(csv_path, row)
        if result["selection"] is not None:
            report.write_json(os.path.join(FLAGS.out, "selections", result["name"] + ".json"),
                              result["selection"])
        retried = (f", diverged {row['retries']}x: learning rate lowered to "
                   f"{row['learning_rate']:g}" if row["retries"] else "")
        print(f"{label}: top-1 {row['top1']:6.2f} % ({FLAGS.eval_on}), "
              f"{row['update_memory_kb']:8.1f} KB, {row['epoch_seconds']:.1f} s/epoch "
              f"({seconds:.0f} s){retried}", flush=True)
    if os.path.exists(csv_path):
        write_outputs(csv_path, budgets)
    problems = []
    if diverged:
        problems.append(f"{len(diverged)} run(s) diverged at every learning rate tried and were "
                        f"left out of the CSV: {diverged}. Lower their learning rate "
                        "(--learning_rate / --full_learning_rate).")
    if failed:
        problems.append(f"{len(failed)} run(s) failed and were left out of the CSV: {failed}; "
                        "run the same command again to retry them.")
    if problems:
        sys.exit(" ".join(problems))


def load_run_data(flag_values, config, dataset, seed):
    """(train_ds, eval_ds, probe_ds, info) of one seed: its training images and
    order; the test images (or the seed's held-out validation part)."""
    return run_flags.load_data(
        flag_values, dataset=dataset, resolution=config["resolution"],
        batch_size=config["batch_size"], train_per_class=config["train_per_class"],
        test_per_class=config["test_per_class"], seed=seed)


def execute_run(values, config, dataset, method, budget, seed, runtime):
    """One run, in this process (sequentially or as a Ray task, the same code).

    Every run builds its own pipelines, so its data order does not depend on
    the runs before it; a retried run rebuilds its training pipeline.

    Args:
        values: dict of the parsed flags (`FLAGS.flag_values_dict()`).
        config: `settings_of(FLAGS)`.
        dataset, method, budget, seed, runtime: the run.

    Returns:
        dict: `row`, `selection` (MeDyate's per-epoch record, else None) and `name`;
        or `diverged` (the message) when every learning rate tried diverged, or
        `failed` (the message) when the run's `--backup` cannot be resumed.
    """
    import types

    from keras_medyate.comparison import journal, report, runner
    from keras_medyate.divergence import TrainingDivergedError

    flag_values = types.SimpleNamespace(**values)
    _, eval_ds, probe_ds, info = load_run_data(flag_values, config, dataset, seed)
    run_config = run_flags.run_config(
        flag_values, method, budget, seed, ranking=values["ranking"], epochs=config["epochs"],
        resolution=config["resolution"], batch_size=config["batch_size"], runtime=runtime,
        backup_dir=os.path.join(values["out"], "backup") if values["backup"] else None)
    try:
        row, resampler = runner.run_one(
            run_config, lambda: load_run_data(flag_values, config, dataset, seed)[0], eval_ds,
            info, probe_ds=probe_ds, verbose=values["verbose"])
    except TrainingDivergedError as error:
        return {"diverged": str(error)}
    except journal.ResumeError as error:  # this run's backup: the others still run
        return {"failed": str(error)}
    selection = (report.selection_record(resampler)
                 if method == "medyate" and resampler is not None else None)
    return {"row": row, "selection": selection, "name": runner.run_name(run_config, info)}


def sequential_results(values, config, jobs):
    """Runs the jobs one after the other in this process; yields (job, result, seconds)."""
    for job in jobs:
        start = time.perf_counter()
        result = execute_run(values, config, *job)
        yield job, result, time.perf_counter() - start


def _ray_task(values, config, job):
    """The body of one Ray task (a worker process, possibly reused)."""
    console.quiet_tensorflow(verbose=values["verbose"] > 0)
    from keras_medyate.comparison import runner

    runner.set_tensorflow_threads(values["threads"])
    console.quiet_keras(verbose=values["verbose"] > 0)
    start = time.perf_counter()
    return execute_run(values, config, *job), time.perf_counter() - start


def ray_results(values, config, jobs):
    """Runs the jobs as Ray tasks; yields (job, result, seconds) as they finish.

    Each task declares `--ray_cpus_per_run` CPUs (default: `--threads`) and
    runs TensorFlow with `--threads` threads, as the sequential path does.
    Progress (done / running / failed) is printed as tasks finish. A task
    whose worker dies is retried `--ray_retries` times; a task that raises is
    reported as failed (its traceback's last line) and the sweep goes on.
    """
    if not jobs:
        return
    try:
        import ray
    except ImportError:
        cli.fail("--ray needs Ray: pip install -e '.[cluster]'")
    env_vars = {name: value for name, value in os.environ.items()
                if name.startswith("KERAS_MEDYATE_")
                or name in ("KERAS_BACKEND", *settings.ALLOCATOR_ENV)}
    init = {"runtime_env": {"env_vars": env_vars}, "log_to_driver": values["verbose"] > 0}
    if FLAGS.ray_address:
        init["address"] = FLAGS.ray_address
    elif FLAGS.ray_num_cpus:
        init["num_cpus"] = FLAGS.ray_num_cpus
    ray.init(**init)
    available = ray.cluster_resources()
    cpus = FLAGS.ray_cpus_per_run
    if cpus is None:
        cpus = min(float(FLAGS.threads), available.get("CPU", 0)) or float(FLAGS.threads)
    for resource, needed in (("CPU", cpus), ("GPU", FLAGS.ray_gpus_per_run)):
        if needed > available.get(resource, 0):
            ray.shutdown()
            cli.fail(f"Each run asks for {needed:g} {resource} (--ray_{resource.lower()}s_per_run)"
                     f" but the Ray cluster has {available.get(resource, 0):g}: no run could "
                     "ever start. Lower the request or add nodes.")
    task = ray.remote(num_cpus=cpus, num_gpus=FLAGS.ray_gpus_per_run,
                      max_retries=FLAGS.ray_retries, retry_exceptions=False)(_ray_task)
    pending = {task.remote(values, config, job): job for job in jobs}
    print(f"ray: {len(jobs)} runs on {ray.cluster_resources().get('CPU', 0):.0f} CPUs, "
          f"{cpus:g} CPUs and {FLAGS.threads} TensorFlow threads per run", flush=True)
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


def write_outputs(csv_path, budgets):
    """Summary markdown and plots from everything in the CSV."""
    import json

    from keras_medyate import models
    from keras_medyate.comparison import report, runner

    rows = report.read_csv(csv_path)
    out = os.path.dirname(csv_path)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(report.summary_file_text(rows, quick=FLAGS.quick))
    report.plot_accuracy_vs_budget(rows, os.path.join(out, "accuracy_vs_budget.png"))
    if any(r.get("epoch_top1") for r in rows):
        report.plot_epoch_curves(rows, os.path.join(out, "epoch_curves.png"))
    for model_name, dataset in {(r["model"], r["dataset"]) for r in rows}:
        candidates = sorted(
            (r for r in rows if r["model"] == model_name and r["dataset"] == dataset
             and r["method"] == "medyate" and r["runtime"] == "keras"),
            key=lambda r: (r["budget_units"], r["seed"]))
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
        # The budgets this model was run at (every invocation's, from the CSV), else this one's.
        measured = sorted({int(r["budget_units"]) for r in rows if r["model"] == model_name
                           and r["method"] not in settings.BUDGET_FREE}) or budgets
        resolution = next(int(r["resolution"]) for r in rows if r["model"] == model_name)
        model = models.from_tiny_training(model_name, classes=10,
                                          input_shape=(resolution,) * 2 + (3,))
        plans = {b: runner.build_plan(model, "medyate", b, FLAGS.ranking) for b in measured}
        report.plot_layer_ranking(plans[measured[0]].ranking, plans,
                                  os.path.join(out, f"lara_ranking_{model_name}.png"),
                                  f"LaRa layer ranking of {model_name} and the alpha = 0.2 "
                                  "search space per budget")
    print(f"wrote {out}/summary.md and plots", flush=True)


if __name__ == "__main__":
    cli.run(main, __doc__, modules=("keras_medyate.comparison.flags",), check=check_flags)
