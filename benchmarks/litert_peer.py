"""Our builtin-only `train` next to the official LiteRT on-device-training recipe.

The peer is the recipe of TensorFlow's "On-device training with TensorFlow
Lite" guide: a `tf.Module` whose `train` signature is a `tf.function` using
`tf.GradientTape` (autodiff), converted with Select TF ops (Flex) and
resource variables, here with the kernel gradients masked to the same
selected input channels as ours. Current LiteRT runtimes ship no Flex
delegate, so the peer is converted and run by TensorFlow 2.18's
`tf.lite.Interpreter` (the last release that links Flex) in a separate
virtual environment that this script creates (`--venv`, about 600 MB from
PyPI, once).

For every budget, with the same MCUNet checkpoint, resolution, batch, plan and
selection (our file's `resample(seed=0)`, or every channel for `all`):

- ours: `tflite_export.export_training_model` (kernel_gradients="selected"),
  measured by `tflite_export.benchmark`'s children (ai_edge_litert);
- peer: exported and measured in the TF 2.18 venv (tf.lite.Interpreter);

each signature in its own fresh process (train − infer peak RSS), with and
without the XNNPACK delegate, plus one check that both files' first `train`
step gives the same loss from the same weights and batch.

Usage:

    KERAS_MEDYATE_WEIGHTS_DIR=../shared/data/weights \\
        python benchmarks/litert_peer.py --budgets=15936,112640,all --batch_size=8
"""

import json
import os
import subprocess
import sys
import time
import warnings

from absl import app
from absl import flags

from tflite_export import benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_TF = "tensorflow-cpu==2.18.1"

FLAGS = flags.FLAGS
# The shared flags (resolution, batch_size, threads, steps, warmup, xnnpack, out_dir,
# weights_dir, json, model, budget, use_xnnpack) are tflite_export.benchmark's.
FLAGS.set_default("budgets", ["15936", "112640", "all"])
FLAGS.set_default("out_dir", "/tmp/medyate_peer")
flags.DEFINE_string("venv", os.path.join(ROOT, "..", ".peer-tf218"),
                    f"Virtual environment with {PEER_TF} (created when missing).")
# Internal modes.
flags.DEFINE_enum("peer", None, ["export", "measure"], "Internal: run inside the venv.")
flags.DEFINE_string("mask", None, "Internal: .json of the selection.")
flags.DEFINE_enum("signature", None, ["train", "infer"], "Internal: signature to measure.")


def _model_and_plan(budget):
    import keras  # noqa: PLC0415

    import keras_medyate as kmd  # noqa: PLC0415
    from keras_medyate import models  # noqa: PLC0415

    keras.utils.set_random_seed(0)  # the same fresh head in both environments
    size = FLAGS.resolution
    model = models.mcunet_5fps(classes=10, input_shape=(size, size, 3),
                               weights_dir=FLAGS.weights_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the budget covers the whole search space"
        plan = kmd.plan(model, budget=10**9 if budget == "all" else int(budget),
                        ranking="lara")
    return model, plan


# --- the peer, inside the TF 2.18 venv ------------------------------------------------


def peer_export():
    """The official recipe: autodiff `train`, Flex allowed, gradients masked."""
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    import keras  # noqa: PLC0415

    from tflite_export import graph  # noqa: PLC0415

    model, plan = _model_and_plan(FLAGS.budget)
    # The loss Keras computes for this model (as our export does).
    output_softmax = graph.build_graph(model).output_softmax
    with open(FLAGS.mask, encoding="utf-8") as f:
        selection = json.load(f)
    batch, size = FLAGS.batch_size, FLAGS.resolution

    trained = {}  # id of a Keras variable → mask (None: the whole tensor trains)
    for name in plan.layers:
        kernel = model.get_layer(name).kernel
        axis = plan.layer_info(name).channel_axis
        shape = [1] * len(kernel.shape)
        shape[axis] = int(kernel.shape[axis])
        mask = np.zeros(shape, np.float32)
        mask.reshape(-1)[selection[name]] = 1.0
        trained[id(kernel)] = mask
    head = model.get_layer(plan.classifier)
    trained[id(head.kernel)] = None
    trained[id(head.bias)] = None

    class PeerModule(tf.Module):
        """State in plain `tf.Variable`s (LiteRT's initializer does not set Keras
        variables); the Keras model runs through `stateless_call` on them."""

        def __init__(self):
            super().__init__()
            self.values = []    # one per trainable Keras variable, in order
            self.trained = []   # (tf.Variable, mask tf.Variable or None)
            for variable in model.trainable_variables:
                value = np.asarray(variable.numpy(), np.float32)
                if id(variable) in trained:
                    state = tf.Variable(value)
                    mask = trained[id(variable)]
                    self.trained.append((state, None if mask is None else tf.Variable(mask)))
                    self.values.append(state)
                else:
                    self.values.append(tf.constant(value))
            self.frozen = [tf.constant(np.asarray(v.numpy())) for v in
                           model.non_trainable_variables]
            self.learning_rate = tf.Variable(0.01)

        def _outputs(self, x):
            values = [tf.convert_to_tensor(v) for v in self.values]
            logits, _ = model.stateless_call(values, list(self.frozen), x, training=False)
            return logits

        @tf.function(input_signature=[tf.TensorSpec([batch, size, size, 3], tf.float32),
                                      tf.TensorSpec([batch], tf.int32)])
        def train(self, x, y):
            variables = [v for v, _ in self.trained]
            with tf.GradientTape() as tape:
                logits = self._outputs(x)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                    y, logits, from_logits=not output_softmax))
            grads = tape.gradient(loss, variables)
            for (variable, mask), grad in zip(self.trained, grads):
                if mask is not None:
                    grad = grad * mask
                variable.assign_sub(self.learning_rate * grad)
            return {"loss": tf.reshape(loss, [1])}

        @tf.function(input_signature=[tf.TensorSpec([batch, size, size, 3], tf.float32)])
        def infer(self, x):
            return {"outputs": self._outputs(x)}

    module = PeerModule()
    import tempfile  # noqa: PLC0415
    with tempfile.TemporaryDirectory() as directory:
        tf.saved_model.save(module, directory, signatures={
            "train": module.train.get_concrete_function(),
            "infer": module.infer.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                               tf.lite.OpsSet.SELECT_TF_OPS]
        converter.experimental_enable_resource_variables = True
        data = converter.convert()
    with open(FLAGS.model, "wb") as f:
        f.write(data)
    print(json.dumps({"file_mb": len(data) / 2**20, "tensorflow": tf.__version__}))


def peer_measure():
    """One signature of the peer file with TF 2.18's interpreter (Flex linked)."""
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    rss_imports_kb = benchmark.status_kb("VmRSS")
    kwargs = {} if FLAGS.use_xnnpack else {
        "experimental_op_resolver_type":
            tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    interpreter = tf.lite.Interpreter(model_path=FLAGS.model, num_threads=FLAGS.threads,
                                      **kwargs)
    runner = interpreter.get_signature_runner(FLAGS.signature)
    rng = np.random.default_rng(0)
    size = FLAGS.resolution
    x = rng.uniform(-1, 1, (FLAGS.batch_size, size, size, 3)).astype(np.float32)
    y = (np.arange(FLAGS.batch_size) % 10).astype(np.int32)

    def call():
        if FLAGS.signature == "train":
            return float(runner(x=x, y=y)["loss"][0])
        runner(x=x)
        return None

    print(json.dumps(benchmark.time_calls(call, rss_imports_kb)))


# --- the driver, in the project's environment -------------------------------------------


def _venv_python():
    python = os.path.join(FLAGS.venv, "bin", "python")
    if not os.path.exists(python):
        print(f"creating {FLAGS.venv} with {PEER_TF} (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", FLAGS.venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", PEER_TF, "absl-py"], check=True)
    return python


def _ours(budget, directory):
    """Exports our file, returns (path, selection dict layer → channels)."""
    import numpy as np  # noqa: PLC0415

    from tflite_export import OnDeviceTrainer, export_training_model  # noqa: PLC0415

    model, plan = _model_and_plan(budget)
    path = os.path.join(directory, f"ours_{budget}.tflite")
    export_training_model(model, plan, path, batch_size=FLAGS.batch_size, learning_rate=0.01)
    device = OnDeviceTrainer(path)
    mask = device.resample(seed=0).mask
    if budget == "all":
        mask = np.ones(plan.pool.size, np.float32)
    return path, {name: [int(c) for c in channels]
                  for name, channels in plan.pool.to_dict(np.flatnonzero(mask)).items()}


def main(argv):
    del argv
    if FLAGS.peer == "export":
        peer_export()
        return
    if FLAGS.peer == "measure":
        peer_measure()
        return
    python = _venv_python()
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    common = [f"--resolution={FLAGS.resolution}", f"--batch_size={FLAGS.batch_size}",
              f"--threads={FLAGS.threads}", f"--steps={FLAGS.steps}", f"--warmup={FLAGS.warmup}"]
    if FLAGS.weights_dir:
        common.append(f"--weights_dir={FLAGS.weights_dir}")
    peer_env = {"PYTHONPATH": ROOT}
    rows = []
    for budget in FLAGS.budgets:
        ours_path, selection = _ours(budget, FLAGS.out_dir)
        mask_path = os.path.join(FLAGS.out_dir, f"selection_{budget}.json")
        with open(mask_path, "w", encoding="utf-8") as f:
            json.dump(selection, f)
        peer_path = os.path.join(FLAGS.out_dir, f"peer_{budget}.tflite")
        described = benchmark.last_json([python, os.path.abspath(__file__), "--peer=export",
                              f"--budget={budget}", f"--mask={mask_path}",
                              f"--model={peer_path}", *common], peer_env)
        for xnnpack in FLAGS.xnnpack:
            use = xnnpack.lower() in ("1", "true", "yes")
            row = {"budget": budget, "xnnpack": use,
                   "selected_channels": sum(len(c) for c in selection.values()),
                   "peer_file_mb": described["file_mb"], "peer_tensorflow": described["tensorflow"],
                   "ours_file_mb": os.path.getsize(ours_path) / 2**20}
            for signature in ("train", "infer"):
                row[f"ours_{signature}"] = benchmark.run_child(ours_path, signature, use,
                                                               budget == "all")
                row[f"peer_{signature}"] = benchmark.last_json(
                    [python, os.path.abspath(__file__), "--peer=measure",
                     f"--model={peer_path}", f"--signature={signature}",
                     f"--use_xnnpack={use}", *common], peer_env)
            benchmark.record(rows, row)
    print(f"\nMCUNet-in1 {FLAGS.resolution}px, batch {FLAGS.batch_size}, {FLAGS.threads} "
          f"threads; latency = median of {FLAGS.steps} calls; memory = train − infer peak RSS")
    print(table(rows))


def table(rows):
    """The Markdown table of `tflite_export/README.md`."""
    lines = ["| budget | selected channels | XNNPACK | train − infer MB: ours / peer | "
             "train ms: ours / peer | infer ms: ours / peer | file MB: ours / peer | "
             "first-step loss: ours / peer |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ours_extra = r["ours_train"]["peak_rss_mb"] - r["ours_infer"]["peak_rss_mb"]
        peer_extra = r["peer_train"]["peak_rss_mb"] - r["peer_infer"]["peak_rss_mb"]
        lines.append(
            f"| {r['budget']} | {r['selected_channels']} | {'on' if r['xnnpack'] else 'off'} | "
            f"{ours_extra:.1f} / {peer_extra:.1f} | {r['ours_train']['median_ms']:.1f} / "
            f"{r['peer_train']['median_ms']:.1f} | {r['ours_infer']['median_ms']:.1f} / "
            f"{r['peer_infer']['median_ms']:.1f} | {r['ours_file_mb']:.2f} / "
            f"{r['peer_file_mb']:.2f} | {r['ours_train']['first_result']:.4f} / "
            f"{r['peer_train']['first_result']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
