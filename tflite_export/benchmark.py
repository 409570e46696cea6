"""Measures exported MCUNet training models: memory, latency, against the analytic budget.

For every budget (and `all`: every layer in the search space, every channel
selected), every form of `train` (`--kernel_gradients`) and every delegate
setting (`--xnnpack`), the parent process exports MCUNet-in1 (the paper's
checkpoint) with a LaRa plan, then runs two fresh child processes on the
file, one for `train` (after `resample`, as an app does each epoch) and one
for `infer`, so that each peak RSS belongs to one signature. A child imports
only numpy, `ai_edge_litert` and the numpy-only `ChannelPool` (through
`tflite_export.on_device`), never TensorFlow, like an app would.

With `--baseline_checkout=DIR` (a checkout of an earlier commit, e.g. a
`git worktree`), the same rows are also exported by that checkout's exporter
in the same run ("before").

Usage (the README's numbers):

    KERAS_MEDYATE_WEIGHTS_DIR=../shared/data/weights \\
        python -m tflite_export.benchmark --resolution=128 --batch_size=8 \\
        --budgets=15936,64832,112640,all --threads=2 --json=/tmp/b8.json

Peak memory is the process's VmHWM (`/proc/self/status`). *train − infer* is
the difference of the two children's peaks: what training costs beyond
running the same file for inference. *RSS growth at the first call* is VmRSS
after the first call minus VmRSS before the interpreter was created (LiteRT
does not report its arena size to Python; this is the arena plus the
delegate's buffers and the memory-mapped model pages touched).
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("resolution", 128, "Input height and width of MCUNet.")
flags.DEFINE_integer("batch_size", 8, "Static batch of `train` (and batch of `infer`).")
flags.DEFINE_list("budgets", ["15936", "64832", "112640", "all"],
                  "Budgets in units; `all` = every layer and every channel.")
flags.DEFINE_list("kernel_gradients", ["static"], "Forms of `train` to export: static "
                  "(the default export: fixed-length channel lists), selected (dynamic "
                  "lists: export_training_model(static_shapes=False)), dense "
                  "(kernel_gradients='dense').")
flags.DEFINE_list("xnnpack", ["false", "true"], "Delegate settings to measure.")
flags.DEFINE_string("ranking", "lara", "Shipped ranking of the plan (lara or rgn).")
flags.DEFINE_integer("threads", 2, "Interpreter threads.")
flags.DEFINE_integer("steps", 20, "Timed calls per signature (after warm-up).")
flags.DEFINE_integer("warmup", 3, "Untimed calls first.")
flags.DEFINE_string("out_dir", "/tmp/medyate_benchmark", "Where the .tflite files go.")
flags.DEFINE_string("weights_dir", None, "Directory of mcunet-5fps.pkl (default: "
                    "$KERAS_MEDYATE_WEIGHTS_DIR or the cache).")
flags.DEFINE_string("baseline_checkout", None, "Optional checkout whose exporter makes the "
                    "'before' rows in the same run.")
flags.DEFINE_string("json", None, "Optional path of a JSON copy of the results.")
# Child modes (internal).
flags.DEFINE_enum("measure", None, ["train", "infer"], "Internal: measure one signature.")
flags.DEFINE_enum("export_only", None, ["static", "selected", "dense", "landed"],
                  "Internal: export one file and print its description.")
flags.DEFINE_string("budget", None, "Internal: the budget of --export_only.")
flags.DEFINE_bool("use_xnnpack", True, "Internal: delegate setting of --measure.")
flags.DEFINE_bool("select_all", False, "Internal: --measure trains every channel.")
flags.DEFINE_string("model", None, "Internal: the .tflite file to measure or write.")


def status_kb(field):
    """A field of /proc/self/status in kB (VmRSS, VmHWM)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_child():
    """Child process: one signature, timed; prints a JSON line."""
    import numpy as np  # noqa: PLC0415

    from tflite_export.on_device import OnDeviceTrainer  # noqa: PLC0415

    rss_imports_kb = status_kb("VmRSS")
    trainer = OnDeviceTrainer(FLAGS.model, num_threads=FLAGS.threads,
                              use_xnnpack=FLAGS.use_xnnpack)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (FLAGS.batch_size, *trainer.input_shape)).astype(np.float32)
    y = (np.arange(FLAGS.batch_size) % trainer.num_classes).astype(np.int32)
    predicted = None
    if FLAGS.measure == "train":
        trainer.resample(seed=0)
        if FLAGS.select_all:
            trainer.set_mask(np.ones(trainer.pool_size), allow_over_budget=True)
        if "memory_model" in trainer.metadata:
            predicted = trainer.predicted_train_memory()["total_bytes"] / 2**20
        selected = int(np.sum(trainer.selection().mask))

        def call():
            return trainer.train(x, y)
    else:
        selected = None

        def call():
            trainer.infer(x)
    print(json.dumps(dict(time_calls(call, rss_imports_kb),
                          rss_after_imports_mb=rss_imports_kb / 1024,
                          predicted_train_extra_mb=predicted, selected_channels=selected,
                          tensorflow_imported="tensorflow" in sys.modules)))


def time_calls(call, rss_imports_kb):
    """Runs `call` once, `--warmup` times, then `--steps` timed times.

    Returns:
        dict: `median_ms`, `min_ms`, `peak_rss_mb` (VmHWM), `first_call_growth_mb`
        (VmRSS after the first call minus `rss_imports_kb`) and `first_result`
        (what the first call returned).
    """
    first = call()
    rss_first_call_kb = status_kb("VmRSS")
    for _ in range(FLAGS.warmup):
        call()
    times = []
    for _ in range(FLAGS.steps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"median_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times),
            "peak_rss_mb": status_kb("VmHWM") / 1024,
            "first_call_growth_mb": (rss_first_call_kb - rss_imports_kb) / 1024,
            "first_result": first}


def record(rows, row):
    """Appends a finished row, prints it and rewrites `--json` (results as they come)."""
    rows.append(row)
    print(json.dumps(row), flush=True)
    if FLAGS.json:
        with open(FLAGS.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)


def export_child():
    """Child process: exports one file with this checkout's exporter; prints JSON."""
    import inspect  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    import keras_medyate as kmd  # noqa: PLC0415
    from keras_medyate import models  # noqa: PLC0415
    from tflite_export import export_training_model  # noqa: PLC0415

    size = FLAGS.resolution
    model = models.mcunet_5fps(classes=10, input_shape=(size, size, 3),
                               weights_dir=FLAGS.weights_dir)
    every = FLAGS.budget == "all"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the budget covers the whole search space"
        plan = kmd.plan(model, budget=10**9 if every else int(FLAGS.budget),
                        ranking=FLAGS.ranking)
    kwargs = {}
    # "landed": the baseline checkout's exporter with its own defaults.
    if (FLAGS.export_only != "landed"
            and "kernel_gradients" in inspect.signature(export_training_model).parameters):
        kwargs["kernel_gradients"] = "dense" if FLAGS.export_only == "dense" else "selected"
        if "static_shapes" in inspect.signature(export_training_model).parameters:
            kwargs["static_shapes"] = FLAGS.export_only == "static"
            # `infer` at the train batch in every form (the static default is 1).
            kwargs["infer_batch_size"] = FLAGS.batch_size if kwargs["static_shapes"] else None
    start = time.perf_counter()
    summary = export_training_model(model, plan, FLAGS.model, batch_size=FLAGS.batch_size,
                                    learning_rate=0.01, **kwargs)
    infos = plan.search_space
    weight_units = sum(i.weight_units_per_channel * i.num_channels for i in infos)
    activation_units = sum(i.activation_units_per_channel * i.num_channels for i in infos)
    bound = None
    if "memory_model" in summary.metadata:
        from tflite_export import memory_model  # noqa: PLC0415
        bound = memory_model.budget_bound(summary.metadata["memory_model"], plan.pool.costs,
                                          plan.search_space_units if every
                                          else plan.budget_units)["total_bytes"] / 2**20
    print(json.dumps({
        "budget_units": plan.search_space_units if every else plan.budget_units,
        "every_channel": every,
        "budget_mb_at_batch": 4 * FLAGS.batch_size * (plan.search_space_units if every
                                                      else plan.budget_units) / 2**20,
        "layers": len(plan.layers),
        "pool": plan.pool.size,
        "search_space_units": plan.search_space_units,
        "search_space_mb_at_batch": 4 * (2 * weight_units
                                         + FLAGS.batch_size * activation_units) / 2**20,
        "predicted_bound_mb": bound,
        "file_mb": summary.size_bytes / 2**20,
        "export_s": time.perf_counter() - start,
        "exporter": os.path.dirname(os.path.dirname(inspect.getfile(export_training_model))),
    }))


def last_json(command, env=None):
    """Runs a child command; returns the JSON of its last output line."""
    output = subprocess.run(command, capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {})))
    if output.returncode != 0:
        tail = "\n".join(output.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"The child {' '.join(command[:4])} … failed (exit "
                           f"{output.returncode}):\n{tail}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def run_child(path, signature, use_xnnpack, select_all):
    """Measures one signature of `path` in a fresh process (`measure_child`)."""
    command = [sys.executable, "-m", "tflite_export.benchmark", f"--measure={signature}",
               f"--model={path}", f"--batch_size={FLAGS.batch_size}",
               f"--threads={FLAGS.threads}", f"--steps={FLAGS.steps}",
               f"--warmup={FLAGS.warmup}", f"--use_xnnpack={use_xnnpack}",
               f"--select_all={select_all}"]
    return last_json(command)


def export_file(budget, form, checkout=None):
    label = "landed" if checkout else form
    path = os.path.join(FLAGS.out_dir, f"mcunet{FLAGS.resolution}_b{budget}_"
                        f"bs{FLAGS.batch_size}_{label}.tflite")
    command = [sys.executable, "-m", "tflite_export.benchmark", f"--export_only={label}",
               f"--budget={budget}", f"--model={path}", f"--resolution={FLAGS.resolution}",
               f"--batch_size={FLAGS.batch_size}", f"--ranking={FLAGS.ranking}"]
    if FLAGS.weights_dir:
        command.append(f"--weights_dir={FLAGS.weights_dir}")
    if checkout:
        # The earlier checkout's packages first; this file's child code is used.
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {"PYTHONPATH": os.pathsep.join([os.path.abspath(checkout), here])}
        command[1:3] = ["-c", "import sys, runpy; sys.argv[0] = 'benchmark'; "
                        f"sys.path.insert(0, {os.path.abspath(checkout)!r}); "
                        f"exec(open({os.path.join(here, 'tflite_export', 'benchmark.py')!r})"
                        ".read())"]
        return path, last_json(command, env)
    return path, last_json(command)


def main(argv):
    del argv
    if FLAGS.measure:
        measure_child()
        return
    if FLAGS.export_only:
        export_child()
        return
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    variants = [(form, None) for form in FLAGS.kernel_gradients]
    if FLAGS.baseline_checkout:
        variants.insert(0, ("landed", FLAGS.baseline_checkout))
    rows = []
    for budget in FLAGS.budgets:
        for form, checkout in variants:
            path, described = export_file(budget, form, checkout)
            for xnnpack in FLAGS.xnnpack:
                use = xnnpack.lower() in ("1", "true", "yes")
                row = dict(described, form=form, xnnpack=use,
                           train=run_child(path, "train", use, budget == "all"),
                           infer=run_child(path, "infer", use, False))
                record(rows, row)
    print(f"\nMCUNet-in1 {FLAGS.resolution}px, batch {FLAGS.batch_size}, {FLAGS.threads} "
          f"threads, ranking {FLAGS.ranking}; latency = median of {FLAGS.steps} calls")
    print(table(rows))


def table(rows):
    """The Markdown table of the README from the benchmark rows."""
    lines = ["| budget (units) | train | XNNPACK | layers / channels (selected) | analytic budget "
             "× batch (MB) | predicted train − infer (MB) | **measured train − infer** (MB) | "
             "RSS growth at the first call: train / infer (MB) | train ms | infer ms | "
             "train / infer |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        train, infer = r["train"], r["infer"]
        budget = "every channel" if r["every_channel"] else f"{r['budget_units']:,}"
        predicted = train.get("predicted_train_extra_mb")
        lines.append(
            f"| {budget} | {r['form']} | {'on' if r['xnnpack'] else 'off'} | {r['layers']} / "
            f"{r['pool']} ({train['selected_channels']}) | {r['budget_mb_at_batch']:.2f} | "
            f"{'–' if predicted is None else f'{predicted:.1f}'} | "
            f"**{train['peak_rss_mb'] - infer['peak_rss_mb']:.1f}** | "
            f"{train['first_call_growth_mb']:.1f} / {infer['first_call_growth_mb']:.1f} | "
            f"{train['median_ms']:.1f} | {infer['median_ms']:.1f} | "
            f"{train['median_ms'] / infer['median_ms']:.1f}× |")
    return "\n".join(lines)


def check_flags(values):
    """One-line rejections of bad values (`keras_medyate.cli`), before any export."""
    from keras_medyate.cli import require

    for budget in values.budgets:
        require(budget == "all" or (budget.isdigit() and int(budget) > 0),
                f"--budgets: {budget!r} is neither a positive number of units nor 'all'.")
    for form in values.kernel_gradients:
        require(form in ("static", "selected", "dense"),
                f"--kernel_gradients: {form!r}; accepted: static, selected, dense.")
    for setting in values.xnnpack:
        require(setting in ("true", "false"), f"--xnnpack: {setting!r}; accepted: true, false.")
    require(values.ranking in ("lara", "rgn"),
            f"--ranking={values.ranking!r}; accepted: lara, rgn.")
    for name in ("resolution", "batch_size", "threads", "steps"):
        require(getattr(values, name) >= 1, f"--{name}={getattr(values, name)}: must be >= 1.")
    require(values.warmup >= 0, f"--warmup={values.warmup}: must be >= 0.")


if __name__ == "__main__":
    if any(arg.startswith(("--measure", "--export_only")) for arg in sys.argv[1:]):
        app.run(main)  # a child process this script started (maybe from another checkout)
    else:
        from keras_medyate import cli

        cli.run(main, __doc__, check=check_flags)
