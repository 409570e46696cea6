"""`tflite_export.runtimes`: the Interpreter and CompiledModel run an exported file alike.

One tiny export (default export settings, so the test follows the exporter's
current file format); the calls of an `OnDeviceTrainer` run (recorded by
`benchmarks/runtime_matrix.py`'s scenario: resample, several train steps,
set_mask, the persistence round trip, infer) are replayed through
`open_model` on both runtimes, which must give bit-identical outputs.
"""

import inspect
import os
import sys
import warnings

import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

import keras_medyate as kmd  # noqa: E402
from tests.helpers import benchmark_module  # noqa: E402
from tflite_export import export_training_model  # noqa: E402
from tflite_export import runtimes  # noqa: E402

BOTH = ("interpreter", "compiled_model")


def tiny_model():
    """Two search-space convolutions and a classifier (as in `exporter`'s docstring)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, name="c1", activation="relu"),
        keras.layers.Conv2D(6, 3, name="c2"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, name="head"),
    ])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_model()
    # A budget that admits every channel: `resample` then selects channels in
    # every layer (a dynamic-shape `train` cannot take an empty list on CompiledModel).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the budget covers the whole search space"
        plan = kmd.plan(model, budget=10_000)
    path = str(tmp_path_factory.mktemp("runtimes") / "tiny.tflite")
    export_training_model(model, plan, path, batch_size=2, learning_rate=0.1)
    return path


@pytest.fixture(scope="module")
def recording(exported, tmp_path_factory):
    """(runtime_matrix module, recorded calls with numpy inputs/outputs, train losses)."""
    matrix = benchmark_module("runtime_matrix")
    recorder, losses = matrix.run_scenario(exported, image_size=8, classes=3, epochs=2, steps=3)
    folder = str(tmp_path_factory.mktemp("recording"))
    recorder.save(folder, {"model": "tiny"})
    _, calls = matrix.load_recording(folder)
    return matrix, calls, losses


def test_unknown_runtime_and_missing_file_are_clear_errors(exported, tmp_path):
    with pytest.raises(runtimes.UnknownRuntimeError, match="interpreter.*compiled_model"):
        runtimes.open_model(exported, runtime="gpu")
    with pytest.raises(FileNotFoundError, match="No model file"):
        runtimes.open_model(tmp_path / "missing.tflite")
    with pytest.raises(runtimes.InvalidOptionError, match="num_threads"):
        runtimes.open_model(exported, num_threads=0)


def test_compiled_model_missing_says_what_to_install(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.compiled_model", None)
    with pytest.raises(runtimes.RuntimeNotAvailableError,
                       match=r"pip install -U ai-edge-litert.*runtime='interpreter'"):
        runtimes.open_model(exported, runtime="compiled_model")


def test_both_runtimes_declare_the_same_signatures(exported):
    a, b = (runtimes.open_model(exported, runtime=r) for r in BOTH)
    assert a.signature_names() == b.signature_names()
    assert {"infer", "train", "resample", "set_mask", "get_weights", "set_weights", "get_state",
            "set_state", "set_learning_rate", "metadata"} <= set(a.signature_names())
    for signature in a.signature_names():
        assert a.input_specs(signature) == b.input_specs(signature), signature
        assert sorted(a.output_names(signature)) == sorted(b.output_names(signature))
    x = a.input_specs("train")["x"]
    assert x.shape == (2, 8, 8, 3) and x.dtype == np.float32 and not x.is_dynamic
    assert a.input_specs("resample")["seed"] == runtimes.TensorSpec((1,), np.dtype(np.int32))


def test_every_signature_gives_identical_outputs_on_both_runtimes(exported, recording):
    matrix, calls, losses = recording
    assert {c["signature"] for c in calls} >= {"infer", "train", "resample", "set_mask",
                                               "get_weights", "set_weights", "get_state",
                                               "set_state", "set_learning_rate", "metadata"}
    assert sum(c["signature"] == "train" for c in calls) >= 7
    assert np.all(np.isfinite(losses))
    models = {r: runtimes.open_model(exported, runtime=r) for r in BOTH}
    for index, call in enumerate(calls):
        outputs = {r: m.run(call["signature"], **call["inputs"]) for r, m in models.items()}
        for name, recorded in call["outputs"].items():
            a, b = outputs["interpreter"][name], outputs["compiled_model"][name]
            where = f"call {index} {call['signature']}/{name}"
            assert a.dtype == b.dtype == recorded.dtype and a.shape == b.shape == recorded.shape, where
            np.testing.assert_array_equal(a, b, err_msg=where)
            # The recording was made by OnDeviceTrainer on the same Interpreter.
            np.testing.assert_array_equal(a, recorded, err_msg=where)
    # The weights after all the steps: read once more from both.
    unused = {"unused": np.zeros(1, np.int32)}
    final = [m.run("get_weights", **unused) for m in models.values()]
    assert final[0].keys() == final[1].keys()
    for key in final[0]:
        np.testing.assert_array_equal(final[0][key], final[1][key], err_msg=key)


def test_replay_reports_zero_difference_on_the_installed_runtime(exported, recording, tmp_path):
    matrix, calls, _ = recording
    recorder, _ = matrix.run_scenario(exported, image_size=8, classes=3, epochs=1, steps=2)
    folder = tmp_path / "recording"
    os.makedirs(folder)
    with open(exported, "rb") as source, open(folder / "model.tflite", "wb") as target:
        target.write(source.read())
    recorder.save(str(folder), {"model": "tiny"})
    _, loaded = matrix.load_recording(str(folder))
    assert len(loaded) == len(recorder.calls)
    for runtime in BOTH:
        result = matrix.replay_python(str(folder), runtime=runtime)
        assert result["loads"] and result["failed_calls"] == 0, result
        assert result["resample_identical"]
        assert all(s["max_abs_diff"] == 0 for s in result["signatures"].values()), result


def test_run_checks_names_dtypes_and_static_shapes(exported):
    for runtime in BOTH:
        model = runtimes.open_model(exported, runtime=runtime)
        with pytest.raises(ValueError, match="no signature 'fit'"):
            model.run("fit", unused=np.zeros(1, np.int32))
        with pytest.raises(ValueError, match=r"missing \['seed'\]"):
            model.run("resample", unused=np.zeros(1, np.int32))
        with pytest.raises(ValueError, match="must be int32, got int64"):
            model.run("resample", seed=np.zeros(1, np.int64))
        with pytest.raises(ValueError, match=r"must have shape \(2, 8, 8, 3\)"):
            model.run("train", **{**_train_inputs(model), "x": np.zeros((3, 8, 8, 3), np.float32)})


def _train_inputs(model):
    inputs = {}
    for name, spec in model.input_specs("train").items():
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        inputs[name] = np.zeros(shape, spec.dtype)
    return inputs


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory):
    """The same model exported with dynamic shapes (`infer`'s batch, `train`'s channel lists)."""
    if "static_shapes" not in inspect.signature(export_training_model).parameters:
        return None  # an exporter whose only form is the dynamic one: `exported` is it
    model = tiny_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        plan = kmd.plan(model, budget=10_000)
    path = str(tmp_path_factory.mktemp("runtimes_dynamic") / "tiny_dynamic.tflite")
    export_training_model(model, plan, path, batch_size=2, learning_rate=0.1,
                          static_shapes=False)
    return path


def test_compiled_model_resizes_dynamic_inputs_and_reuses_buffers(exported, dynamic):
    path = dynamic or exported
    interpreter, compiled = (runtimes.open_model(path, runtime=r) for r in BOTH)
    spec = compiled.input_specs("infer")["x"]
    assert spec.is_dynamic and spec.shape == (-1, 8, 8, 3)
    rng = np.random.default_rng(0)
    for batch in (1, 3, 1, 5, 3):
        x = rng.normal(size=(batch, 8, 8, 3)).astype(np.float32)
        a, b = interpreter.run("infer", x=x), compiled.run("infer", x=x)
        assert b["probabilities"].shape == (batch, 3)
        np.testing.assert_array_equal(a["probabilities"], b["probabilities"])
        np.testing.assert_array_equal(a["logits"], b["logits"])
    infer_buffers = [key for key in compiled._buffers if key[0] == "infer"]
    assert len(infer_buffers) == 3  # one set per batch size seen


def test_compiled_model_runs_dynamic_channel_lists_and_names_the_zero_size_limit(exported,
                                                                                dynamic):
    path = dynamic or exported
    models = [runtimes.open_model(path, runtime=r) for r in BOTH]
    lists = [n for n, s in models[1].input_specs("train").items() if s.is_dynamic]
    assert lists, "a dynamic export's train takes channel lists"
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 3)).astype(np.float32)
    for model in models:
        model.run("set_mask", mask=np.ones(7, np.float32))
    for channels in ([0, 1, 2], [1], [0, 2], [1]):
        inputs = {"x": x, "y": np.array([0, 2], np.int32)}
        inputs.update({name: np.array(channels, np.int32) for name in lists})
        losses = [model.run("train", **inputs)["loss"] for model in models]
        np.testing.assert_array_equal(*losses)
    unused = {"unused": np.zeros(1, np.int32)}
    weights = [model.run("get_weights", **unused) for model in models]
    for key in weights[0]:
        np.testing.assert_array_equal(weights[0][key], weights[1][key], err_msg=key)
    inputs = _train_inputs(models[1])
    inputs[lists[0]] = np.zeros((0,), np.int32)
    with pytest.raises(ValueError, match="cannot resize an input to a 0 dimension"):
        models[1].run("train", **inputs)


def test_builtin_kernels_without_xnnpack_agree_too(exported):
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype(np.float32)
    if not runtimes.open_model(exported).input_specs("infer")["x"].accepts(x.shape):
        x = x[:1]
    outputs = [runtimes.open_model(exported, runtime=r, use_xnnpack=False).run("infer", x=x)
               for r in BOTH]
    np.testing.assert_array_equal(outputs[0]["logits"], outputs[1]["logits"])
    reference = runtimes.open_model(exported).run("infer", x=x)
    np.testing.assert_allclose(outputs[0]["logits"], reference["logits"], atol=1e-5)


@pytest.mark.parametrize("use_xnnpack", [True, False])
def test_on_device_trainer_fits_identically_on_both_runtimes(exported, tmp_path, use_xnnpack):
    """`OnDeviceTrainer(runtime="compiled_model")` = the Interpreter: losses, selections,
    weights, state and predictions after a whole `fit` of the recipe."""
    from tflite_export import OnDeviceTrainer  # noqa: PLC0415

    path = exported if isinstance(exported, str) else exported[0]
    trainers = {runtime: OnDeviceTrainer(path, runtime=runtime, use_xnnpack=use_xnnpack)
                for runtime in ("interpreter", "compiled_model")}
    reference = trainers["interpreter"]
    rng = np.random.default_rng(0)
    n = 3 * reference.batch_size
    x = rng.uniform(-1, 1, (n, *reference.input_shape)).astype(np.float32)
    y = (np.arange(n) % reference.num_classes).astype(np.int32)
    histories = {name: t.fit((x, y), epochs=2, seed=4) for name, t in trainers.items()}
    for a, b in zip(*histories.values()):
        assert a["loss"] == b["loss"]
        np.testing.assert_array_equal(a["selection"].mask, b["selection"].mask)
    compiled = trainers["compiled_model"]
    assert compiled.runtime == "compiled_model"
    for key, value in reference.get_weights().items():
        np.testing.assert_array_equal(compiled.get_weights()[key], value, err_msg=key)
    for name, value in reference.get_state().items():
        np.testing.assert_array_equal(compiled.get_state()[name], value, err_msg=name)
    np.testing.assert_array_equal(compiled.infer(x), reference.infer(x))
