"""Runtime matrix: where the exported training file runs, checked call for call.

Records every signature call (inputs and outputs) of an `OnDeviceTrainer` run
on the x86 `ai_edge_litert` Interpreter (the reference), then replays the same
inputs on other runtimes and compares their outputs with the recorded ones:

- `record`: exports a model with the *current* `export_training_model`
  (export options on the command line), runs a short fine-tuning scenario
  through a recording `OnDeviceTrainer`, writes `RECORDING/model.tflite`,
  `RECORDING/recording.json` (the calls; each tensor's dtype, shape and byte
  range) and `RECORDING/recording.bin` (the tensors, little-endian), a format
  that Python and JavaScript both read.
- `replay`: replays a recording in this Python process through
  `tflite_export.runtimes.open_model` (`--runtime interpreter|compiled_model`),
  prints/writes one result as JSON. Needs only numpy and a LiteRT package
  (`ai_edge_litert` or `tflite_runtime`), so it runs in the throwaway venvs of
  old releases and in the arm64 Python under qemu.
- `matrix`: replays one recording on every target it finds (the installed
  runtime's two APIs; the venvs of `benchmarks/runtimes/setup_venvs.sh`; the
  arm64 Python of `setup_aarch64.sh`; LiteRT.js in Node and headless Chromium
  from `setup_node.sh` / `setup_chromium.sh`) and writes a JSON and a markdown
  table.

Example (the committed table, `benchmarks/runtimes/README.md`):

    python benchmarks/runtime_matrix.py record --out /tmp/rec --model=tiny
    python benchmarks/runtime_matrix.py replay --recording /tmp/rec --runtime compiled_model
    python benchmarks/runtime_matrix.py matrix --recording /tmp/rec --out benchmarks/runtimes/matrix

This file imports only the standard library and numpy at module level (the
`record` step imports Keras and `tflite_export` when it runs).
"""

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIMES_DIR = os.path.join(REPO, "benchmarks", "runtimes")
DEFAULT_CACHE = os.environ.get("RUNTIMES_CACHE",
                               os.path.expanduser("~/.cache/keras_medyate_runtimes"))
FORMAT = "keras_medyate.runtime_recording"
_DTYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "int64": np.int64,
           "int8": np.int8, "bool": np.bool_}


# --- the recording format ---------------------------------------------------------------


class Recorder:
    """Collects calls and writes `recording.json` + `recording.bin`."""

    def __init__(self):
        self.calls = []
        self._blob = bytearray()

    def _tensor(self, array):
        array = np.ascontiguousarray(array)
        dtype = array.dtype.name
        if dtype not in _DTYPES:
            raise ValueError(f"Cannot record a tensor of dtype {dtype}.")
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        entry = {"dtype": dtype, "shape": list(array.shape), "offset": len(self._blob),
                 "nbytes": len(data)}
        self._blob += data
        self._blob += b"\0" * (-len(self._blob) % 8)  # keep every tensor 8-byte aligned
        return entry

    def add(self, signature, inputs, outputs):
        self.calls.append({
            "signature": signature,
            "inputs": {k: self._tensor(v) for k, v in inputs.items()},
            "outputs": {k: self._tensor(v) for k, v in outputs.items()},
        })

    def save(self, folder, info):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "recording.bin"), "wb") as f:
            f.write(bytes(self._blob))
        manifest = dict(info, format=FORMAT, format_version=1, calls=self.calls)
        with open(os.path.join(folder, "recording.json"), "w") as f:
            json.dump(manifest, f, indent=1)


def load_recording(folder):
    """(manifest dict, list of calls with numpy `inputs`/`outputs`)."""
    with open(os.path.join(folder, "recording.json")) as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder!r} holds no runtime recording (format "
                         f"{manifest.get('format')!r}); make one with `record`.")
    with open(os.path.join(folder, "recording.bin"), "rb") as f:
        blob = f.read()

    def tensor(entry):
        data = blob[entry["offset"]:entry["offset"] + entry["nbytes"]]
        dtype = np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<")
        return np.frombuffer(data, dtype).astype(_DTYPES[entry["dtype"]]).reshape(entry["shape"])

    calls = [{"signature": c["signature"],
              "inputs": {k: tensor(v) for k, v in c["inputs"].items()},
              "outputs": {k: tensor(v) for k, v in c["outputs"].items()}}
             for c in manifest["calls"]]
    return manifest, calls


# --- record --------------------------------------------------------------------------


def _build_model(name, image_size, classes):
    import keras  # noqa: PLC0415

    if name == "tiny":
        inputs = keras.Input((image_size, image_size, 3), name="image")
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv1")(inputs)
        x = keras.layers.BatchNormalization(name="bn1")(x)
        x = keras.layers.ReLU(6.0, name="relu1")(x)
        x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw2")(x)
        x = keras.layers.ReLU(name="relu2")(x)
        x = keras.layers.Conv2D(12, 1, name="pw2")(x)
        x = keras.layers.ReLU(name="relu3")(x)
        x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="conv3")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        outputs = keras.layers.Dense(classes, activation="softmax", name="classifier")(x)
        return keras.Model(inputs, outputs, name="matrix_tiny")
    if name == "mcunet":
        from keras_medyate.models import mcunet_5fps  # noqa: PLC0415

        return mcunet_5fps(classes=classes, input_shape=(image_size, image_size, 3))
    if name == "mobilenetv3":
        base = keras.applications.MobileNetV3Small(
            input_shape=(image_size, image_size, 3), include_top=False, pooling="avg",
            weights=None, minimalistic=True, alpha=0.75)
        outputs = keras.layers.Dense(classes, activation="softmax", name="classifier")(base.output)
        return keras.Model(base.input, outputs, name="mobilenetv3_small_matrix")
    raise ValueError(f"Unknown --model {name!r}; use tiny, mcunet or mobilenetv3.")


def _synthetic_data(n, image_size, classes, seed):
    """Images whose class sets a brightness pattern, so that the loss falls."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n).astype(np.int32)
    x = rng.normal(0.0, 0.3, (n, image_size, image_size, 3)).astype(np.float32)
    band = max(1, image_size // classes)
    for i, label in enumerate(y):
        x[i, :, label * band:(label + 1) * band, label % 3] += 1.5
    return x, y


def run_scenario(path, image_size, classes, epochs=2, steps=3, seed=0, learning_rate=0.05):
    """Drives an exported file with a recording `OnDeviceTrainer` (x86 Interpreter).

    The scenario: set_learning_rate, get_weights, infer; per epoch resample(seed)
    and `steps` train steps; set_mask (every other channel of the last draw) and
    one step; get_state/get_weights, set_state/set_weights (round trip), infer,
    resample, get_state. The constructor's own calls (metadata, get_state) are
    recorded too.

    Returns:
        (Recorder, list of train losses).
    """
    sys.path.insert(0, REPO)
    from tflite_export.on_device import OnDeviceTrainer  # noqa: PLC0415

    recorder = Recorder()

    class RecordingTrainer(OnDeviceTrainer):
        """Every signature call goes through `_run`: record it."""

        def _run(self, signature, **inputs):
            outputs = super()._run(signature, **inputs)
            recorder.add(signature, inputs, outputs)
            return outputs

    trainer = RecordingTrainer(path, num_threads=2)
    batch = trainer.batch_size
    x, y = _synthetic_data(batch * steps, image_size, classes, seed)
    infer_batch = trainer.metadata.get("infer_batch_size") or 3
    x_infer, _ = _synthetic_data(infer_batch, image_size, classes, seed + 1)
    trainer.set_learning_rate(learning_rate)
    trainer.get_weights()
    trainer.infer(x_infer)
    losses = []
    for _ in range(epochs):
        selection = trainer.resample(seed)
        for step in range(steps):
            losses.append(trainer.train(x[step * batch:(step + 1) * batch],
                                        y[step * batch:(step + 1) * batch]))
    # An app-chosen selection: every other channel of the last draw (within the budget,
    # so within a static file's per-layer capacities), one more step.
    chosen = {name: np.asarray(channels)[::2] for name, channels in selection.channels.items()}
    trainer.set_mask(chosen)
    losses.append(trainer.train(x[:batch], y[:batch]))
    state = trainer.get_state()
    weights = trainer.get_weights()
    trainer.set_state(state)
    trainer.set_weights(weights)
    trainer.infer(x_infer)
    trainer.resample(seed + 1)
    trainer.get_state()
    return recorder, losses


def record(args):
    """Exports a model with the current code and records an `OnDeviceTrainer` run."""
    sys.path.insert(0, REPO)
    from keras_medyate import console  # noqa: PLC0415

    console.quiet_tensorflow()
    import keras  # noqa: PLC0415

    import keras_medyate as kmd  # noqa: PLC0415
    from tflite_export import export_training_model  # noqa: PLC0415

    keras.utils.set_random_seed(args.seed)
    model = _build_model(args.model, args.image_size, args.classes)
    plan = kmd.plan(model, budget=args.budget)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "model.tflite")
    options = {"batch_size": args.batch_size, "learning_rate": args.learning_rate}
    for key in ("infer_batch_size", "kernel_gradients"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    for item in args.option or []:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    started = time.time()
    summary = export_training_model(model, plan, path, **options)
    export_seconds = time.time() - started
    recorder, losses = run_scenario(path, args.image_size, args.classes, epochs=args.epochs,
                                    steps=args.steps, seed=args.seed,
                                    learning_rate=args.learning_rate)
    info = {
        "model": args.model, "image_size": args.image_size, "classes": args.classes,
        "budget": args.budget, "export_options": options, "epochs": args.epochs,
        "steps": args.steps, "seed": args.seed, "losses": [float(v) for v in losses],
        "size_bytes": summary.size_bytes, "min_runtime_version": summary.min_runtime_version,
        "export_seconds": round(export_seconds, 1),
        "reference": {"runtime": "interpreter", "version": _litert_version(),
                      "isa": platform.machine(), "python": platform.python_version()},
        "static_inputs": _all_static(path),
    }
    recorder.save(args.out, info)
    print(json.dumps({k: v for k, v in info.items() if k != "losses"}, indent=1))
    print(f"{len(recorder.calls)} calls recorded to {args.out}; losses "
          f"{losses[0]:.4f} → {losses[-1]:.4f}")


def _litert_version():
    sys.path.insert(0, REPO)
    from tflite_export import runtimes  # noqa: PLC0415

    return runtimes.runtime_version("interpreter")


def _all_static(path):
    """True if no signature input has a -1 (LiteRT.js and static delegates need this)."""
    sys.path.insert(0, REPO)
    from tflite_export import runtimes  # noqa: PLC0415

    model = runtimes.open_model(path)
    return all(not spec.is_dynamic for s in model.signature_names()
               for spec in model.input_specs(s).values())


# --- replay ---------------------------------------------------------------------------


def compare(calls, replayed):
    """Per-signature max abs difference and `resample` identity.

    Args:
        calls: the recorded calls.
        replayed: list (one per call) of dict output → ndarray, or an error str.

    Returns:
        dict with `signatures` {name: {calls, failed, max_abs_diff}},
        `resample_identical`, `failed_calls`, `first_error`.
    """
    signatures, failed, first_error, resample_identical = {}, 0, None, True
    for call, result in zip(calls, replayed):
        entry = signatures.setdefault(call["signature"],
                                      {"calls": 0, "failed": 0, "max_abs_diff": 0.0})
        entry["calls"] += 1
        if isinstance(result, str):
            entry["failed"] += 1
            failed += 1
            first_error = first_error or f"{call['signature']}: {result}"
            if call["signature"] == "resample":
                resample_identical = False
            continue
        for name, want in call["outputs"].items():
            got = result.get(name)
            if got is None or np.shape(got) != want.shape:
                entry["failed"] += 1
                failed += 1
                first_error = first_error or (
                    f"{call['signature']}: output {name!r} missing or of shape "
                    f"{None if got is None else np.shape(got)} (recorded {want.shape})")
                entry["max_abs_diff"] = float("inf")
                continue
            got = np.asarray(got)
            if want.size:
                diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
                entry["max_abs_diff"] = max(entry["max_abs_diff"], diff)
                entry["max_abs_recorded"] = max(entry.get("max_abs_recorded", 0.0),
                                                float(np.max(np.abs(want.astype(np.float64)))))
            if call["signature"] == "resample" and not np.array_equal(got, want):
                resample_identical = False
    return {"signatures": signatures, "resample_identical": resample_identical,
            "failed_calls": failed, "first_error": first_error}


def replay_python(folder, runtime="interpreter", use_xnnpack=True, num_threads=2):
    """Replays a recording here through `tflite_export.runtimes`; returns a result dict."""
    sys.path.insert(0, REPO)
    from tflite_export import runtimes  # noqa: PLC0415

    manifest, calls = load_recording(folder)
    result = {"runtime": runtime, "version": runtimes.runtime_version(runtime),
              "isa": platform.machine(), "python": platform.python_version(),
              "numpy": np.__version__, "use_xnnpack": bool(use_xnnpack)}
    started = time.time()
    try:
        model = runtimes.open_model(os.path.join(folder, "model.tflite"), runtime=runtime,
                                    num_threads=num_threads, use_xnnpack=use_xnnpack)
        model.signature_names()
    except Exception as error:  # noqa: BLE001 (reported, not raised: it is the finding)
        result.update(loads=False, error=f"{type(error).__name__}: {error}"[:500])
        return result
    replayed = []
    for call in calls:
        try:
            replayed.append(model.run(call["signature"], **call["inputs"]))
        except Exception as error:  # noqa: BLE001
            replayed.append(f"{type(error).__name__}: {error}"[:300])
    result.update(loads=True, seconds=round(time.time() - started, 2), **compare(calls, replayed))
    return result


def replay(args):
    result = replay_python(args.recording, args.runtime, not args.no_xnnpack)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print("RESULT " + json.dumps(result))


# --- matrix ---------------------------------------------------------------------------


def _targets(cache):
    """[(label, command prefix to run `replay` with, runtime api)] found on this machine."""
    targets = [("installed Interpreter", [sys.executable], "interpreter"),
               ("installed CompiledModel", [sys.executable], "compiled_model")]
    def order(venv):
        name = os.path.basename(venv)
        package, _, rest = name.rpartition("-py")[0].rpartition("-")
        return (package, tuple(int(p) for p in rest.split(".") if p.isdigit()))

    for venv in sorted(glob.glob(os.path.join(cache, "venvs", "*")), key=order):
        if os.path.isfile(os.path.join(venv, ".ok")):
            targets.append((os.path.basename(venv), [os.path.join(venv, "bin", "python")],
                            "interpreter"))
            if os.path.basename(venv).startswith("ai-edge-litert-2"):
                targets.append((os.path.basename(venv) + " CompiledModel",
                                [os.path.join(venv, "bin", "python")], "compiled_model"))
    arm = os.path.join(cache, "aarch64", "python.sh")
    if os.path.isfile(arm):
        targets.append(("aarch64 (qemu-user)", ["bash", arm], "interpreter"))
    return targets


def _run_node(folder, cache, mode):
    """LiteRT.js: mode "node" (relaxed SIMD on), "node-compat" (Node 20's default: the
    compat Wasm build) or "chromium"."""
    node_dir = os.path.join(cache, "node")
    if not os.path.isdir(os.path.join(node_dir, "node_modules", "@litertjs", "core")):
        return {"runtime": "litert.js", "loads": False,
                "error": f"not set up: run benchmarks/runtimes/setup_node.sh (no {node_dir})"}
    if mode == "chromium":
        command = ["node", os.path.join(RUNTIMES_DIR, "chromium_replay.mjs")]
    else:
        command = (["node"] + (["--experimental-wasm-relaxed-simd"] if mode == "node" else [])
                   + [os.path.join(RUNTIMES_DIR, "node_replay.mjs")])
    env = dict(os.environ, LITERT_NODE_DIR=node_dir)
    return _run_json(command + [os.path.abspath(folder)], env, timeout=900)


def _run_json(command, env=None, timeout=900):
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"loads": False, "error": f"timed out after {timeout} s: {' '.join(command)}"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if lines:
        return json.loads(lines[-1][len("RESULT "):])
    start = done.stdout.find("{")
    try:
        return json.loads(done.stdout[start:])
    except ValueError:
        return {"loads": False, "error": (f"exit {done.returncode}: "
                                          + (done.stderr or done.stdout)[-400:])}


def matrix(args):
    manifest, _ = load_recording(args.recording)
    rows = []
    selected = set(args.only.split(",")) if args.only else None
    for label, prefix, runtime in _targets(args.cache):
        if selected and not any(sel in label for sel in selected):
            continue
        command = prefix + [os.path.abspath(__file__), "replay", "--recording",
                            os.path.abspath(args.recording), "--runtime", runtime]
        print(f"… {label}", file=sys.stderr, flush=True)
        result = _run_json(command)
        result["target"] = label
        rows.append(result)
    for mode, label in (("node", "LiteRT.js Node (relaxed SIMD)"),
                        ("node-compat", "LiteRT.js Node (compat Wasm)"),
                        ("chromium", "LiteRT.js headless Chromium")):
        if selected and not any(sel in label for sel in selected):
            continue
        print(f"… {label}", file=sys.stderr, flush=True)
        result = _run_node(args.recording, args.cache, mode)
        result["target"] = label
        rows.append(result)
    out = {"recording": {k: v for k, v in manifest.items() if k != "calls"},
           "num_calls": len(manifest["calls"]), "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(out, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(markdown_table(out))
    print(markdown_table(out))


def markdown_table(out):
    """The matrix as a markdown table (one row per runtime)."""
    signatures = []
    for row in out["rows"]:
        for name in row.get("signatures", {}):
            if name not in signatures:
                signatures.append(name)
    rec = out["recording"]
    lines = [
        f"Recording: model `{rec['model']}` {rec['image_size']} px, export options "
        f"`{json.dumps(rec['export_options'])}`, {out['num_calls']} calls, all inputs static: "
        f"{rec.get('static_inputs')}; reference: x86 {rec['reference']['version']} Interpreter "
        f"(Python {rec['reference']['python']}).",
        "",
        "| runtime | version | ISA | loads | calls failed | "
        + " | ".join(f"`{s}`" for s in signatures) + " | max rel. | `resample` identical |",
        "|---|---|---|---|---|" + "---|" * len(signatures) + "---|---|",
    ]
    for row in out["rows"]:
        if not row.get("loads"):
            cells = ["—"] * len(signatures)
            lines.append(f"| {row['target']} | {row.get('version', '?')} | {row.get('isa', '?')} "
                         f"| **no**: {_cell(row.get('error', ''))} | — | " + " | ".join(cells)
                         + " | — | — |")
            continue
        cells = []
        for name in signatures:
            entry = row["signatures"].get(name)
            if entry is None:
                cells.append("—")
            elif entry["failed"]:
                cells.append(f"{entry['failed']}/{entry['calls']} failed")
            else:
                cells.append("0" if entry["max_abs_diff"] == 0 else f"{entry['max_abs_diff']:.1e}")
        failed = row.get("failed_calls", 0)
        failed_text = str(failed) + (f" ({_cell(row.get('first_error', ''))})" if failed else "")
        relative = max([e["max_abs_diff"] / e["max_abs_recorded"]
                        for e in row["signatures"].values()
                        if not e["failed"] and e.get("max_abs_recorded")] or [0.0])
        lines.append(f"| {row['target']} | {row.get('version', '?')} | {row.get('isa', '?')} | yes "
                     f"| {failed_text} | " + " | ".join(cells) + " | "
                     + ("0" if relative == 0 else f"{relative:.0e}") + " | "
                     + ("yes" if row.get("resample_identical") else "**no**") + " |")
    lines.append("")
    lines.append("Cells: max |output − recorded output| over the signature's calls (0 = "
                 "bit-identical); `k/n failed` = calls that raised; max rel. = the largest "
                 "of these divided by the largest |recorded output| of its signature.")
    return "\n".join(lines) + "\n"


def _cell(text):
    text = " ".join(str(text).split())
    return (text[:160] + "…" if len(text) > 160 else text).replace("|", "\\|")


# --- CLI ------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Record an OnDeviceTrainer run and replay it on other LiteRT runtimes.")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="export a model (current code) and record its calls")
    rec.add_argument("--out", required=True, help="recording folder to write")
    rec.add_argument("--model", default="tiny", choices=["tiny", "mcunet", "mobilenetv3"],
                     help="tiny: a 4-conv CNN (no weights); mcunet: mcunet_5fps (needs its "
                          "checkpoint); mobilenetv3: MobileNetV3Small minimalistic, weights=None")
    rec.add_argument("--image_size", type=int, default=32)
    rec.add_argument("--classes", type=int, default=4)
    rec.add_argument("--budget", default="2KB", help="kmd.plan budget (units or '64KB')")
    rec.add_argument("--batch_size", type=int, default=4, help="export batch_size")
    rec.add_argument("--learning_rate", type=float, default=0.05)
    rec.add_argument("--infer_batch_size", type=int, default=None,
                     help="export infer_batch_size (static infer batch); default: dynamic")
    rec.add_argument("--kernel_gradients", default=None, choices=["selected", "dense"],
                     help="export kernel_gradients; default: the exporter's")
    rec.add_argument("--option", action="append", metavar="KEY=VALUE",
                     help="any other export_training_model argument (VALUE parsed as JSON "
                          "if it can be, e.g. --option static_shapes=true); repeatable")
    rec.add_argument("--epochs", type=int, default=2)
    rec.add_argument("--steps", type=int, default=3, help="train steps per epoch")
    rec.add_argument("--seed", type=int, default=0)
    rep = sub.add_parser("replay", help="replay a recording in this Python (numpy + LiteRT)")
    rep.add_argument("--recording", required=True)
    rep.add_argument("--runtime", default="interpreter", choices=["interpreter", "compiled_model"])
    rep.add_argument("--no_xnnpack", action="store_true", help="LiteRT's builtin kernels only")
    rep.add_argument("--json", default=None, help="also write the result here")
    mat = sub.add_parser("matrix", help="replay on every target found; write .json and .md")
    mat.add_argument("--recording", required=True)
    mat.add_argument("--out", default=os.path.join(RUNTIMES_DIR, "matrix"),
                     help="output path without extension")
    mat.add_argument("--cache", default=DEFAULT_CACHE,
                     help="where the setup_*.sh scripts put venvs, sysroot and node_modules")
    mat.add_argument("--only", default=None,
                     help="comma-separated substrings of target labels to run")
    args = parser.parse_args(argv)
    if args.command == "record":
        budget = args.budget
        args.budget = int(budget) if str(budget).isdigit() else budget
        record(args)
    elif args.command == "replay":
        replay(args)
    else:
        matrix(args)


if __name__ == "__main__":
    main()
