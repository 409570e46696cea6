"""`benchmarks/runtime_matrix.py`: record an `OnDeviceTrainer` run, replay it elsewhere.

Default run: the CLI records a tiny export and `matrix --only installed`
replays it on the installed `ai_edge_litert` (Interpreter and CompiledModel):
identical outputs, a JSON and a markdown table.

Slow (`pytest -m slow`): the other runtimes of the committed table. Each test
(re)creates its environment with the `benchmarks/runtimes/setup_*.sh` script
(cached under ~/.cache/keras_medyate_runtimes or $RUNTIMES_CACHE; PyPI, npm and
Debian packages only) and skips, saying what failed, when that cannot be done:
old releases in venvs (the oldest `ai-edge-litert` and `tflite-runtime` that
load the file), aarch64 under qemu-user, LiteRT.js in Node and in headless
Chromium.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

SCRIPT = os.path.join(REPO, "benchmarks", "runtime_matrix.py")
SETUP = os.path.join(REPO, "benchmarks", "runtimes")
CACHE = os.environ.get("RUNTIMES_CACHE",
                       os.path.expanduser("~/.cache/keras_medyate_runtimes"))


def _record(folder, *options):
    done = subprocess.run(
        [sys.executable, SCRIPT, "record", "--out", str(folder), "--model", "tiny",
         "--image_size", "16", "--classes", "3", "--batch_size", "2", "--epochs", "2",
         "--steps", "2", *options], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(folder, "recording.json")) as f:
        return json.load(f)


def _replay(command, timeout=900):
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env=dict(os.environ, LITERT_NODE_DIR=os.path.join(CACHE, "node")))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"exit {done.returncode}: {done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _setup(script, *args):
    done = subprocess.run(["bash", os.path.join(SETUP, script), CACHE, *args],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode:
        pytest.skip(f"{script} failed (exit {done.returncode}): "
                    f"{(done.stderr or done.stdout)[-400:]}")
    return done.stdout


def _assert_matches(result, tolerance, failed_ok=()):
    assert result["loads"], result.get("error")
    failed = {k: v["failed"] for k, v in result["signatures"].items() if v["failed"]}
    assert set(failed) <= set(failed_ok), result["first_error"]
    assert result["resample_identical"], result
    for name, entry in result["signatures"].items():
        if name not in failed_ok:
            assert entry["max_abs_diff"] <= tolerance, (name, entry)


def test_record_and_replay_on_the_installed_runtime(tmp_path):
    # A budget that admits every channel: no empty channel list (CompiledModel
    # cannot resize an input to 0 elements).
    manifest = _record(tmp_path / "rec", "--budget", "1000000")
    signatures = {c["signature"] for c in manifest["calls"]}
    assert {"metadata", "infer", "train", "resample", "set_mask", "get_weights", "set_weights",
            "get_state", "set_state", "set_learning_rate"} <= signatures
    assert manifest["reference"]["runtime"] == "interpreter"
    out = tmp_path / "matrix"
    done = subprocess.run([sys.executable, SCRIPT, "matrix", "--recording", str(tmp_path / "rec"),
                           "--out", str(out), "--only", "installed", "--cache", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(f"{out}.json") as f:
        table = json.load(f)
    assert [row["target"] for row in table["rows"]] == ["installed Interpreter",
                                                        "installed CompiledModel"]
    for row in table["rows"]:
        _assert_matches(row, tolerance=0.0)
    with open(f"{out}.md") as f:
        text = f.read()
    assert "| installed CompiledModel |" in text and "`resample` identical" in text


# --- slow: the other runtimes ----------------------------------------------------------


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Two recordings of the default scenario: the exporter's default form, and a
    static-shape form (dense kernel gradients, fixed infer batch) for LiteRT.js."""
    root = tmp_path_factory.mktemp("recordings")
    _record(root / "default")
    _record(root / "static", "--kernel_gradients", "dense", "--infer_batch_size", "3")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["3.11:ai-edge-litert==1.0.0", "3.10:tflite-runtime==2.13.0",
                                  "3.11:tflite-runtime==2.14.0"])
def test_oldest_releases_load_and_replay(recordings, spec):
    _setup("setup_venvs.sh", spec)
    python = spec.split(":")[0]
    venv = os.path.join(CACHE, "venvs", spec.split(":")[1].replace("==", "-") + f"-py{python}")
    result = _replay([os.path.join(venv, "bin", "python"), SCRIPT, "replay", "--recording",
                      str(recordings / "default")])
    if "tflite-runtime" in spec:
        # tflite-runtime 2.13/2.14 reverse only one axis of a two-axis REVERSE_V2 (the
        # depthwise backward's kernel flip; benchmarks/runtimes/README.md): the
        # gradients reaching earlier layers differ, so weights and norms drift.
        _assert_matches(result, 0.05)
        assert result["signatures"]["train"]["max_abs_diff"] <= 1e-3
        assert result["signatures"]["infer"]["max_abs_diff"] <= 1e-5
    else:
        _assert_matches(result, 1e-5)


@pytest.mark.slow
def test_tflite_runtime_2_12_cannot_load_the_file(recordings):
    _setup("setup_venvs.sh", "3.9:tflite-runtime==2.12.0")
    venv = os.path.join(CACHE, "venvs", "tflite-runtime-2.12.0-py3.9")
    result = _replay([os.path.join(venv, "bin", "python"), SCRIPT, "replay", "--recording",
                      str(recordings / "default")])
    assert not result["loads"] and "opcode" in result["error"]


@pytest.mark.slow
def test_aarch64_under_qemu_user(recordings):
    python = _setup("setup_aarch64.sh").strip().splitlines()[-1]
    result = _replay(["bash", python, SCRIPT, "replay", "--recording",
                      str(recordings / "default")])
    assert result["isa"] == "aarch64"
    _assert_matches(result, 1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--experimental-wasm-relaxed-simd"], []],
                         ids=["relaxed-simd", "compat-wasm"])
def test_litert_js_in_node(recordings, flags):
    _setup("setup_node.sh")
    result = _replay(["node", *flags, os.path.join(SETUP, "node_replay.mjs"),
                      str(recordings / "static")])
    _assert_matches(result, 1e-3)
    # The exporter's default form: LiteRT.js refuses the inputs whose shape has a -1.
    with open(recordings / "default" / "recording.json") as f:
        if not json.load(f)["static_inputs"]:
            dynamic = _replay(["node", *flags, os.path.join(SETUP, "node_replay.mjs"),
                               str(recordings / "default")])
            assert dynamic["loads"] and dynamic["failed_calls"] > 0
            assert "-1" in dynamic["first_error"]


@pytest.mark.slow
def test_litert_js_in_headless_chromium(recordings):
    _setup("setup_node.sh")
    if not os.path.exists("/usr/bin/chromium"):
        done = subprocess.run(["bash", os.path.join(SETUP, "setup_chromium.sh")],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"setup_chromium.sh failed: {done.stderr[-300:]}")
    result = _replay(["node", os.path.join(SETUP, "chromium_replay.mjs"),
                      str(recordings / "static")])
    assert "Chrome" in result["isa"]
    _assert_matches(result, 1e-3)
