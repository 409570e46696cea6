"""Measures exported MCUNet training models: file size, latency, peak memory.

For every budget, the parent process exports MCUNet-in1 (the paper's
checkpoint) with a LaRa plan, then runs two fresh child processes on the
file, one for `train` and one for `infer`, so that each peak RSS belongs to
one signature. A child imports only numpy, `ai_edge_litert` and the
numpy-only `ChannelPool` (through `tflite_export.on_device`), never
TensorFlow, like an app would.

Usage (the README's numbers):

    KERAS_MEDYATE_WEIGHTS_DIR=../shared/data/weights \\
        python -m tflite_export.benchmark --resolution=128 --batch_size=8 \\
        --budgets=15936,64832,112640 --threads=2

Peak memory is the process's VmHWM (`/proc/self/status`), reported next to
the RSS measured after the imports and before the interpreter was created.
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
flags.DEFINE_list("budgets", ["15936", "64832", "112640"], "Budgets in units.")
flags.DEFINE_string("ranking", "lara", "Shipped ranking of the plan (lara or rgn).")
flags.DEFINE_integer("threads", 2, "Interpreter threads.")
flags.DEFINE_integer("steps", 20, "Timed calls per signature (after warm-up).")
flags.DEFINE_integer("warmup", 3, "Untimed calls first.")
flags.DEFINE_string("out_dir", "/tmp/medyate_benchmark", "Where the .tflite files go.")
flags.DEFINE_string("weights_dir", None, "Directory of mcunet-5fps.pkl (default: "
                    "$KERAS_MEDYATE_WEIGHTS_DIR or the cache).")
flags.DEFINE_string("json", None, "Optional path of a JSON copy of the results.")
# Child mode (internal).
flags.DEFINE_enum("measure", None, ["train", "infer"], "Internal: measure one signature.")
flags.DEFINE_string("model", None, "Internal: the .tflite file to measure.")


def _status_kb(field):
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_child():
    """Child process: one signature, timed; prints a JSON line."""
    import numpy as np  # noqa: PLC0415

    from tflite_export.on_device import OnDeviceTrainer  # noqa: PLC0415

    rss_imports_kb = _status_kb("VmRSS")
    trainer = OnDeviceTrainer(FLAGS.model, num_threads=FLAGS.threads)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (FLAGS.batch_size, *trainer.input_shape)).astype(np.float32)
    y = (np.arange(FLAGS.batch_size) % trainer.num_classes).astype(np.int32)
    if FLAGS.measure == "train":
        trainer.resample(seed=0)

        def call():
            trainer.train(x, y)
    else:
        def call():
            trainer.infer(x)
    for _ in range(FLAGS.warmup):
        call()
    times = []
    for _ in range(FLAGS.steps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    print(json.dumps({
        "median_ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "peak_rss_mb": _status_kb("VmHWM") / 1024,
        "rss_after_imports_mb": rss_imports_kb / 1024,
        "tensorflow_imported": "tensorflow" in sys.modules,
    }))


def run_child(path, signature):
    command = [sys.executable, "-m", "tflite_export.benchmark", f"--measure={signature}",
               f"--model={path}", f"--batch_size={FLAGS.batch_size}",
               f"--threads={FLAGS.threads}", f"--steps={FLAGS.steps}",
               f"--warmup={FLAGS.warmup}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    if FLAGS.measure:
        measure_child()
        return
    import keras_medyate as kmd  # noqa: PLC0415
    from keras_medyate import memory  # noqa: PLC0415
    from keras_medyate import models  # noqa: PLC0415
    from tflite_export import export_training_model  # noqa: PLC0415

    os.makedirs(FLAGS.out_dir, exist_ok=True)
    size = FLAGS.resolution
    model = models.mcunet_5fps(classes=10, input_shape=(size, size, 3),
                               weights_dir=FLAGS.weights_dir)
    rows = []
    for budget in (int(b) for b in FLAGS.budgets):
        plan = kmd.plan(model, budget=budget, ranking=FLAGS.ranking)
        path = os.path.join(FLAGS.out_dir, f"mcunet{size}_b{budget}_bs{FLAGS.batch_size}.tflite")
        start = time.perf_counter()
        summary = export_training_model(model, plan, path, batch_size=FLAGS.batch_size,
                                        learning_rate=0.01)
        export_s = time.perf_counter() - start
        infos = plan.search_space
        weight_units = sum(i.weight_units_per_channel * i.num_channels for i in infos)
        activation_units = sum(i.activation_units_per_channel * i.num_channels for i in infos)
        row = {
            "budget_units": budget,
            # What the static graph keeps for the search space at this batch:
            # dW + kernel copy (2 x weights) and the layers' full inputs.
            "search_space_mb_at_batch": 4 * (2 * weight_units
                                             + FLAGS.batch_size * activation_units) / 2**20,
            "budget_kb": memory.units_to_kb(budget),
            "layers": len(plan.layers),
            "pool": plan.pool.size,
            "search_space_units": plan.search_space_units,
            "file_mb": summary.size_bytes / 2**20,
            "export_s": export_s,
            "train": run_child(path, "train"),
            "infer": run_child(path, "infer"),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nMCUNet-in1 {size}px, batch {FLAGS.batch_size}, {FLAGS.threads} threads, "
          f"ranking {FLAGS.ranking}; latency = median of {FLAGS.steps} calls")
    print("| budget: units / KB per sample (analytic) | K layers / channels | search space: "
          "units / MB at this batch (analytic) | file (MB) | train ms (median / min) | "
          "infer ms (median / min) | peak RSS train (MB) | peak RSS infer (MB) | "
          "train − infer (MB) | RSS after imports (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        train, infer = r["train"], r["infer"]
        print(f"| {r['budget_units']:,} / {r['budget_kb']:.1f} | {r['layers']} / {r['pool']} | "
              f"{r['search_space_units']:,} / {r['search_space_mb_at_batch']:.1f} | "
              f"{r['file_mb']:.2f} | {train['median_ms']:.1f} / {train['min_ms']:.1f} | "
              f"{infer['median_ms']:.1f} / {infer['min_ms']:.1f} | "
              f"{train['peak_rss_mb']:.1f} | {infer['peak_rss_mb']:.1f} | "
              f"{train['peak_rss_mb'] - infer['peak_rss_mb']:.1f} | "
              f"{train['rss_after_imports_mb']:.1f} |")
    if FLAGS.json:
        with open(FLAGS.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    app.run(main)
