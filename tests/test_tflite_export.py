"""Builtin-only on-device training export, run through the LiteRT interpreter.

Everything on the device side goes through `OnDeviceTrainer`, i.e. through
`ai_edge_litert.interpreter.Interpreter` signature runners, the same calls an
Android app makes.
"""

import os
import re

import keras
import numpy as np
import pytest

import keras_medyate as kmd

pytest.importorskip("ai_edge_litert", reason="needs the litert extra: pip install -e '.[litert]' "
                    "(included in '.[test]')")

from tests.helpers import (  # noqa: E402
    assert_same_training,
    export,
    keras_weight,
    random_data,
    small_cnn,
)
from tflite_export import OnDeviceTrainer, export_training_model, flatbuffer, graph, metadata  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ANDROID_MD = os.path.join(os.path.dirname(HERE), "tflite_export", "ANDROID.md")


# --- models of this file -------------------------------------------------------------


def randomize_batchnorm(model, seed=1):
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(size=c) * 0.1,
                               rng.normal(size=c) * 0.1, rng.uniform(0.5, 2.0, c)])


def randomize_biases(model, seed=2, keep_zero=()):
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        bias = getattr(layer, "bias", None)
        if bias is not None and layer.name not in keep_zero:
            bias.assign(rng.normal(size=bias.shape).astype(np.float32) * 0.1)


def zoo_model():
    """Odd input size; explicit padding + valid stride-2 conv with fused ReLU6;
    stride-2 "same" depthwise with depth multiplier 2 and fused ReLU; 2x2 "same"
    conv + ReLU(max_value=2.5); frozen BatchNorm; Activation("relu"); residual
    Add; a nested functional backbone; Flatten; a hidden Dense with ReLU; a
    softmax classifier."""
    inputs = keras.Input((15, 15, 3))
    x = keras.layers.ZeroPadding2D(((1, 2), (0, 1)), name="pad")(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2, activation="relu6", name="stem")(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2,
                                     activation="relu", name="dw")(x)
    shortcut = x
    x = keras.layers.Conv2D(12, 2, padding="same", name="mix")(x)
    x = keras.layers.ReLU(max_value=2.5, name="clip")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu", name="act")(x)
    x = keras.layers.Conv2D(12, 1, name="project")(x)
    x = keras.layers.Add(name="add")([x, shortcut])
    backbone = keras.Model(inputs, x, name="backbone")
    outer_in = keras.Input((15, 15, 3))
    y = backbone(outer_in)
    y = keras.layers.Flatten(name="flat")(y)
    y = keras.layers.Dense(10, activation="relu", name="hidden")(y)
    outputs = keras.layers.Dense(4, activation="softmax", name="head")(y)
    model = keras.Model(outer_in, outputs, name="zoo")
    randomize_batchnorm(model)
    # "hidden" keeps its zero bias: Dense + ReLU without a bias is the case the
    # TF 2.21 converter mis-fuses (see layer_ops.dense_forward).
    randomize_biases(model, keep_zero=("hidden",))
    return model


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """small_cnn (Conv 3x3/s2 "same", BN, ReLU6, residual, 1x1, depthwise, GAP, Dense)."""
    keras.utils.set_random_seed(0)
    model = small_cnn(size=16)
    randomize_batchnorm(model)
    randomize_biases(model)
    plan = kmd.plan(model, budget=600)
    device, summary = export(model, plan, tmp_path_factory.mktemp("small"), batch_size=4,
                             learning_rate=0.05)
    return model, plan, device, summary


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    keras.utils.set_random_seed(1)
    model = zoo_model()
    plan = kmd.plan(model, budget=400, classifier="head")
    device, summary = export(model, plan, tmp_path_factory.mktemp("zoo"), batch_size=3,
                             learning_rate=0.02)
    return model, plan, device, summary


# --- the file -------------------------------------------------------------------


def test_exported_file_uses_builtin_operators_only(small, zoo):
    for _, _, device, summary in (small, zoo):
        with open(summary.path, "rb") as f:
            data = f.read()
        assert flatbuffer.non_builtin_operators(data) == []
        names = flatbuffer.operators(data)
        assert not [n for n in names if "CUSTOM" in n or "Flex" in n]
        # The training math is there, as builtins.
        assert {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "ASSIGN_VARIABLE",
                "TOPK_V2", "CUMSUM", "BITWISE_XOR", "RIGHT_SHIFT"} <= set(names)
        assert set(device.metadata["signatures"]) == set(metadata.SIGNATURES)
        # Runs on any LiteRT/TFLite runtime from 2.16 on (ANDROID.md: litert 1.4.1).
        version = tuple(int(v) for v in summary.min_runtime_version.split(".")[:2])
        assert version <= (2, 16), summary.min_runtime_version


def test_check_builtin_only_names_flex_ops():
    # A real TF function whose conversion needs Flex, converted with Select TF ops.
    import tensorflow as tf  # noqa: PLC0415

    module = tf.Module()
    module.f = tf.function(lambda x: {"y": tf.bitwise.left_shift(x, 3)},
                           input_signature=[tf.TensorSpec([4], tf.int32, name="x")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.f.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    data = converter.convert()
    assert flatbuffer.non_builtin_operators(data) == ["CUSTOM:FlexLeftShift"]
    with pytest.raises(flatbuffer.NonBuiltinOpsError, match="FlexLeftShift"):
        flatbuffer.check_builtin_only(data, "flex.tflite")


def test_infer_equals_keras(small, zoo):
    model, _, device, _ = small
    x, _ = random_data(5, 16)  # dynamic infer batch: 5 ≠ train batch
    np.testing.assert_allclose(device.infer(x, logits=True), model(x).numpy(), atol=1e-5)
    model, _, device, _ = zoo
    x = np.random.default_rng(3).normal(size=(2, 15, 15, 3)).astype(np.float32)
    np.testing.assert_allclose(device.infer(x), model(x).numpy(), atol=1e-5)
    assert device.metadata["output"] == "softmax"


# --- train equals SubnetworkModel -------------------------------------------------


def test_train_equals_subnetwork_model_small_cnn(small, tmp_path):
    model, plan, _, _ = small
    # A fresh export: the module fixture's device is used by other tests.
    # Over-budget selections: the dynamic channel lists (a static file lists at
    # most what the budget admits; test_static_train_equals_subnetwork_model).
    device, _ = export(model, plan, tmp_path, batch_size=4, learning_rate=0.05,
                       static_shapes=False)
    x, y = random_data(12, 16)
    rng = np.random.default_rng(0)
    selected = np.flatnonzero(rng.random(plan.pool.size) < 0.4)
    assert_same_training(device, model, plan, x, y, selected, 0.05, steps=3,
                         from_logits=True)


def test_train_equals_subnetwork_model_zoo(zoo, tmp_path):
    model, plan, _, _ = zoo
    device, _ = export(model, plan, tmp_path, batch_size=3, learning_rate=0.02,
                       static_shapes=False)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 15, 15, 3)).astype(np.float32)
    y = (np.arange(9) % 4).astype(np.int32)
    selected = np.flatnonzero(rng.random(plan.pool.size) < 0.5)
    assert set(plan.layers) == {"backbone/stem", "backbone/dw", "backbone/mix",
                                "backbone/project", "hidden"}
    before, after = assert_same_training(device, model, plan, x, y, selected, 0.02, steps=3,
                                         from_logits=False)
    # The selected slices did move, in every layer that has one.
    for name, channels in plan.pool.to_dict(selected).items():
        axis = plan.layer_info(name).channel_axis
        if len(channels):
            assert not np.array_equal(np.take(after[f"{name}/kernel"], channels, axis),
                                      np.take(before[f"{name}/kernel"], channels, axis))
    # Nothing else changed: Keras with the device's weights predicts like the device.
    assert device.metadata["weights"][0]["tensor"] == "backbone_stem_kernel"
    np.testing.assert_allclose(device.infer(x), model(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("fixture", ["small", "zoo"])
def test_static_train_equals_subnetwork_model(fixture, request, tmp_path):
    """The default export (fixed-length channel lists padded with -1, fixed
    `infer` batch) trains like `SubnetworkModel` on selections of the budget."""
    model, plan, _, _ = request.getfixturevalue(fixture)
    batch = 4 if fixture == "small" else 3
    device, summary = export(model, plan, tmp_path, batch_size=batch, learning_rate=0.05)
    assert summary.metadata["static_shapes"]
    capacities = [e["capacity"] for e in summary.metadata["train_channel_inputs"]]
    specs = device._model.input_specs("train")
    for entry in summary.metadata["train_channel_inputs"]:
        assert list(specs[entry["tensor"]].shape) == [entry["capacity"]]
    assert not any(spec.is_dynamic for name in device._model.signature_names()
                   for spec in device._model.input_specs(name).values())
    selection = device.resample(seed=2)
    counts = [len(selection.channels[name]) for name in plan.pool.layer_names]
    assert all(c <= cap for c, cap in zip(counts, capacities))
    assert any(c < cap for c, cap in zip(counts, capacities)), "no list is padded"
    size = model.input_shape[1]
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3 * batch, size, size, 3)).astype(np.float32)
    y = (np.arange(3 * batch) % model.output_shape[-1]).astype(np.int32)
    assert_same_training(device, model, plan, x, y, np.flatnonzero(selection.mask), 0.05,
                         steps=3, from_logits=fixture == "small")


def test_backward_stops_at_the_earliest_search_space_layer():
    # Only the last conv and the head are trained: no gradient op reaches the stem.
    from tflite_export import training_graph  # noqa: PLC0415

    model = small_cnn(size=16)
    g = graph.build_graph(model)
    tg = training_graph.TrainingGraph(g, training_graph.WeightSource(g, {}),
                                      trained=["b2_conv"], classifier="classifier")
    needing = [s for s in g.steps if s.output in tg.requires_grad]
    assert [s.kind for s in needing] == ["conv", "relu", "gap", "dense"]
    assert [s.name for s in needing if s.kind in ("conv", "dense")] == ["b2_conv", "classifier"]
    conv = g.step_of_layer("b2_conv")
    assert conv.inputs[0] not in tg.requires_grad  # no input gradient for the earliest layer


def test_fit_trains_and_loss_decreases(tmp_path):
    keras.utils.set_random_seed(2)
    model = small_cnn(size=16, batchnorm=False)
    plan = kmd.plan(model, budget=900)
    device, _ = export(model, plan, tmp_path, batch_size=8, learning_rate=0.1)
    x, y = random_data(36, 16, seed=4)  # 36 = 4 batches of 8 + 4 dropped
    history = device.fit((x, y), epochs=4, seed=7)
    assert [h["steps"] for h in history] == [4] * 4
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(h["selection"].cost_units <= plan.budget_units for h in history)
    assert [h["selection"].epoch for h in history] == [1, 2, 3, 4]
    state = device.get_state()
    assert state["max_filled"][0] == 1.0 and state["measured"].sum() > 0


def test_set_learning_rate_changes_the_step(small, tmp_path):
    model, plan, _, _ = small
    device, _ = export(model, plan, tmp_path, batch_size=4, learning_rate=0.05)
    x, y = random_data(4, 16)
    device.set_mask(np.zeros(plan.pool.size))
    start = device.get_weights()
    device.train(x, y)
    step_a = device.get_weights()["classifier/bias"] - start["classifier/bias"]
    device.set_weights(start)
    assert device.set_learning_rate(0.1) == pytest.approx(0.1)
    device.train(x, y)
    step_b = device.get_weights()["classifier/bias"] - start["classifier/bias"]
    np.testing.assert_allclose(step_b, 2 * step_a, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="positive finite"):
        device.set_learning_rate(-1)


# --- persistence --------------------------------------------------------------------


def test_get_set_weights_and_state_round_trip_exactly(small, tmp_path):
    model, plan, device, _ = small
    x, y = random_data(4, 16)
    device.resample(seed=3)
    device.train(x, y)
    weights, state = device.get_weights(), device.get_state()
    assert set(weights) == {f"{n}/kernel" for n in plan.layers} | {"classifier/kernel",
                                                                  "classifier/bias"}
    for key, value in weights.items():
        assert value.shape == keras_weight(model, key).shape  # Keras layout
    # A restarted app: a new interpreter on the same file, then restore.
    restarted = OnDeviceTrainer(device.path)
    assert not np.array_equal(restarted.get_weights()["classifier/kernel"],
                              weights["classifier/kernel"])
    restarted.set_weights(weights)
    restarted.set_state(state)
    for key in weights:
        np.testing.assert_array_equal(restarted.get_weights()[key], weights[key])
    for key in state:
        np.testing.assert_array_equal(restarted.get_state()[key], state[key])
    # Both continue identically (the sampler state was restored too).
    assert restarted.resample(5).mask.tolist() == device.resample(5).mask.tolist()
    assert restarted.train(x, y) == device.train(x, y)
    # A partial set_weights keeps the other tensors.
    restarted.set_weights({"classifier/bias": np.zeros(3, np.float32)})
    np.testing.assert_array_equal(restarted.get_weights()["classifier/bias"], 0)


def test_set_mask_accepts_flat_masks_and_dicts(small):
    _, plan, device, _ = small
    choice = {plan.layers[1]: [0, 2], plan.layers[-1]: [1]}
    selection = device.set_mask(choice)
    assert {k: v.tolist() for k, v in selection.channels.items() if len(v)} == choice
    assert selection.cost_units == plan.pool.cost_of(plan.pool.from_dict(choice))
    assert device.selection().channels[plan.layers[1]].tolist() == [0, 2]
    flat = device.set_mask(selection.mask)
    assert flat.cost_units == selection.cost_units
    with pytest.raises(ValueError, match="over the budget"):
        device.set_mask(np.ones(plan.pool.size))


# --- clear errors ---------------------------------------------------------------------


def test_wrong_shapes_and_keys_are_clear_errors(small):
    _, plan, device, _ = small
    x, y = random_data(4, 16)
    with pytest.raises(ValueError, match=r"`x` for `train` must have shape \(4, 16, 16, 3\).*static"):
        device.train(x[:3], y[:3])
    with pytest.raises(ValueError, match=r"`y` must be an int array of shape \(4,\)"):
        device.train(x, y.astype(np.float32))
    with pytest.raises(ValueError, match=r"Labels must be in \[0, 3\)"):
        device.train(x, y + 3)
    with pytest.raises(ValueError, match=r"`x` for `infer` must have shape \(N, 16, 16, 3\)"):
        device.infer(x[:, :8])
    kernel = plan.layers[0] + "/kernel"
    with pytest.raises(ValueError, match=rf"'{kernel}' must have shape \(3, 3, 3, 8\), got \(3, 3, 8\)"):
        device.set_weights({kernel: np.zeros((3, 3, 8))})
    with pytest.raises(ValueError, match=r"Unknown weight names \['nope/kernel'\]"):
        device.set_weights({"nope/kernel": np.zeros(3)})
    with pytest.raises(ValueError, match="NaN or infinite"):
        device.set_weights({"classifier/bias": np.full(3, np.nan)})
    with pytest.raises(ValueError, match=rf"flat mask must have shape \({plan.pool.size},\)"):
        device.set_mask(np.ones(3))
    with pytest.raises(ValueError, match=r"layer .stem. must be in \[0, 3\), got \[9\]"):
        device.set_mask({plan.layers[0]: [9]})
    with pytest.raises(ValueError, match=r"missing \['seen'\]"):
        device.set_state({k: v for k, v in device.get_state().items() if k != "seen"})


def test_corrupt_or_foreign_files_are_clear_errors(small, tmp_path):
    _, _, _, summary = small
    with open(summary.path, "rb") as f:
        data = f.read()
    with pytest.raises(FileNotFoundError, match="No model file"):
        OnDeviceTrainer(tmp_path / "missing.tflite")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(flatbuffer.CorruptModelError, match="no 'TFL3' file identifier"):
        OnDeviceTrainer(garbage)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(flatbuffer.CorruptModelError, match="damaged or truncated"):
        OnDeviceTrainer(truncated)
    with pytest.raises(flatbuffer.CorruptModelError):
        flatbuffer.operators(data[:64], "cut.tflite")
    # A valid LiteRT model that is not a keras-medyate export.
    import tensorflow as tf  # noqa: PLC0415

    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x * 2.0},
                           input_signature=[tf.TensorSpec([2], tf.float32, name="x")])
    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions(
        [module.f.get_concrete_function()], module).convert())
    with pytest.raises(metadata.MetadataError, match="lacks the signatures"):
        OnDeviceTrainer(foreign)


@pytest.mark.filterwarnings("ignore:The budget of")
def test_unsupported_layers_and_options_are_named(tmp_path):
    def build(*layers):
        return keras.Sequential([keras.Input((8, 8, 3)), *layers,
                                 keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(2, name="head")])

    cases = [
        (build(keras.layers.Conv2D(4, 3, name="c"), keras.layers.LayerNormalization(name="norm")),
         r"Layer 'norm' of class LayerNormalization is not supported"),
        (build(keras.layers.Conv2D(4, 3, name="c"), keras.layers.Lambda(lambda t: t, name="fn")),
         r"Layer 'fn' of class Lambda is not supported"),
        # (LeakyReLU is supported since issue 24: tests/test_tflite_export_multibranch.py.)
        (build(keras.layers.Conv2D(4, 3, name="c"), keras.layers.PReLU(name="prelu")),
         r"'prelu' of class PReLU"),
        (build(keras.layers.Conv2D(6, 3, groups=3, name="grouped")),
         r"'grouped' \(Conv2D\) has groups=3"),
        (build(keras.layers.Conv2D(4, 3, dilation_rate=2, name="dilated")),
         r"'dilated' \(Conv2D\) has dilation_rate=\(2, 2\)"),
        (build(keras.layers.Conv2D(4, 3, activation="gelu", name="c")),
         r"'c' \(Conv2D\) uses activation 'gelu'"),
        (build(keras.layers.Conv2D(4, 3, name="c"), keras.layers.ReLU(negative_slope=0.1, name="r")),
         r"'r' \(ReLU\) has negative_slope=0.1"),
    ]
    inputs = keras.Input((8, 8, 3))
    shared = keras.layers.Conv2D(3, 3, padding="same", name="shared")
    x = keras.layers.GlobalAveragePooling2D()(shared(shared(inputs)))
    cases.append((keras.Model(inputs, keras.layers.Dense(2, name="head")(x)),
                  r"'shared' \(Conv2D\) is called more than once"))
    for model, message in cases:
        plan = kmd.plan(model, budget=10**5)
        with pytest.raises(graph.UnsupportedLayerError, match=message):
            export_training_model(model, plan, str(tmp_path / "m.tflite"))
    assert not os.path.exists(tmp_path / "m.tflite")


def test_bad_arguments_are_clear_errors(small, tmp_path):
    model, plan, _, _ = small
    other = small_cnn(size=16, num_classes=4)
    with pytest.raises(ValueError, match="The plan was made for another model"):
        export_training_model(model, kmd.plan(other, budget=600), str(tmp_path / "m.tflite"))
    with pytest.raises(ValueError, match="ending with '.tflite'"):
        export_training_model(model, plan, str(tmp_path / "m.bin"))
    with pytest.raises(ValueError, match="`batch_size` must be a positive int, got 0"):
        export_training_model(model, plan, str(tmp_path / "m.tflite"), batch_size=0)
    with pytest.raises(ValueError, match="`fill` must be one of \\('stop',\\) on the device"):
        export_training_model(model, plan, str(tmp_path / "m.tflite"), fill="skip")
    with pytest.raises(ValueError, match="`learning_rate` must be a positive finite float"):
        export_training_model(model, plan, str(tmp_path / "m.tflite"), learning_rate=float("nan"))


# --- other layers, docs -------------------------------------------------------------


def test_reshape_and_dropout_export_as_inference_layers(tmp_path):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((10, 10, 3)),
        keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
        keras.layers.Reshape((8 * 8 * 4,), name="reshape"),
        keras.layers.Dropout(0.5, name="drop"),
        keras.layers.Dense(3, name="head"),
        keras.layers.Activation("linear", name="linear"),  # identity after the head
    ])
    plan = kmd.plan(model, budget=200)
    device, _ = export(model, plan, tmp_path, batch_size=2, infer_batch_size=2)
    x = np.random.default_rng(0).normal(size=(2, 10, 10, 3)).astype(np.float32)
    np.testing.assert_allclose(device.infer(x, logits=True), model(x, training=False).numpy(),
                               atol=1e-5)
    assert device.metadata["infer_batch_size"] == 2
    # Any other batch is split into (padded) chunks of the file's batch.
    three = np.concatenate([x, x[:1]])
    np.testing.assert_allclose(device.infer(three, logits=True),
                               model(three, training=False).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match=r"must have shape \(N, 10, 10, 3\)"):
        device.infer(x[:, :5])
    assert np.isfinite(device.train(x, np.array([0, 1])))


def test_android_guide_names_exist_in_the_model(small):
    """Every signature and tensor name the Kotlin guide uses is in the file."""
    _, _, device, _ = small
    with open(ANDROID_MD, encoding="utf-8") as f:
        text = f.read()
    kotlin = "\n".join(re.findall(r"```kotlin\n(.*?)```", text, flags=re.DOTALL))
    signatures = device._model._interpreter.get_signature_list()
    literal_calls = re.findall(r'runSignature\(\w+, \w+, "(\w+)"\)', kotlin)
    assert set(literal_calls) <= set(signatures)
    used = set(re.findall(r'"(\w+)"', kotlin)) & set(signatures)
    assert used == set(metadata.SIGNATURES), set(metadata.SIGNATURES) - used
    names = set(re.findall(r'"(\w+)"\s+to\b', kotlin))
    known = {n for s in signatures.values() for n in s["inputs"] + s["outputs"]}
    assert names, "the guide shows no tensor names"
    assert names <= known, f"names in ANDROID.md that the model lacks: {names - known}"
    # The persistence tensors the guide reads from the metadata exist too.
    weights = {w["tensor"] for w in device.metadata["weights"]}
    state = {t["tensor"] for t in device.metadata["state"]}
    assert weights <= set(signatures["get_weights"]["outputs"]) == set(
        signatures["set_weights"]["inputs"])
    assert state == set(signatures["get_state"]["outputs"]) == set(
        signatures["set_state"]["inputs"])
