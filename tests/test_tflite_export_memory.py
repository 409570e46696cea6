"""`train` keeps only what the selection needs: selected-channel kernel gradients.

- the kernel-gradient ops (taps taken from the output gradient, selected
  channels, folded padding) equal TensorFlow's autodiff;
- both forms of `train` (`kernel_gradients="selected"` and `"dense"`) equal
  `SubnetworkModel`, with empty and full selections, with and without XNNPACK;
- (slow) a process that trains one channel per layer allocates far less than
  one that keeps every input: the memory follows the selection.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import tensorflow as tf

import keras_medyate as kmd

pytest.importorskip("ai_edge_litert", reason="needs the litert extra: pip install -e '.[litert]'")

from tests.helpers import assert_same_training, export, random_data, small_cnn  # noqa: E402
from tflite_export import OnDeviceTrainer, layer_ops  # noqa: E402
from tflite_export.graph import window_pads  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- the ops against autodiff -------------------------------------------------------

CASES = [  # (H, W), kernel, strides, padding
    ((7, 7), (3, 3), (1, 1), "same"),
    ((8, 9), (3, 3), (2, 2), "same"),
    ((15, 15), (5, 5), (2, 2), "valid"),
    ((8, 8), (2, 2), (1, 1), "same"),
    ((9, 8), (3, 1), (2, 1), "valid"),
    ((6, 6), (1, 1), (1, 1), "valid"),
    ((7, 7), (7, 7), (1, 1), "valid"),
]


def autodiff(op, x_shape, kernel_shape, seed):
    """(x, output-gradient weights, dK by TF autodiff) of `sum(op(x, K) * weights)`."""
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=x_shape), tf.float32)
    k = tf.Variable(rng.normal(size=kernel_shape).astype(np.float32))
    with tf.GradientTape() as tape:
        y = op(x, k)
        weights = tf.constant(rng.normal(size=y.shape), tf.float32)
        loss = tf.reduce_sum(y * weights)
    return x, weights, tape.gradient(loss, k).numpy()


@pytest.mark.parametrize("hw,kernel,strides,padding", CASES)
def test_conv_kernel_grad_equals_autodiff_on_selected_channels(hw, kernel, strides, padding):
    x, weights, expected = autodiff(
        lambda x, k: tf.nn.conv2d(x, k, [1, *strides, 1], padding.upper()),
        (2, *hw, 5), (*kernel, 5, 4), seed=0)
    pads = window_pads(padding, (None, *hw), kernel, strides)
    full = layer_ops.conv_kernel_grad(x, weights, kernel, strides, pads).numpy()
    np.testing.assert_allclose(full, expected, rtol=1e-5, atol=1e-5)
    chosen = tf.constant([3, 0, 4], tf.int32)
    flat = tf.reshape(layer_ops.select_channels(x, chosen), [-1, 3])
    picked = layer_ops.conv_kernel_grad(flat, weights, kernel, strides, pads, input_hw=hw)
    np.testing.assert_allclose(picked.numpy(), expected[:, :, [3, 0, 4], :], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw,kernel,strides,padding",
                         [c for c in CASES if c[2][0] == c[2][1]])
@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_kernel_grad_equals_autodiff_on_selected_channels(hw, kernel, strides, padding,
                                                                    multiplier):
    x, weights, expected = autodiff(
        lambda x, k: tf.nn.depthwise_conv2d(x, k, [1, *strides, 1], padding.upper()),
        (2, *hw, 4), (*kernel, 4, multiplier), seed=1)
    pads = window_pads(padding, (None, *hw), kernel, strides)
    chosen = tf.constant([2, 1], tf.int32)
    picked = layer_ops.depthwise_kernel_grad(
        layer_ops.select_channels(x, chosen),
        layer_ops.select_channels(weights, chosen, multiplier), kernel, strides, pads,
        multiplier)
    np.testing.assert_allclose(picked.numpy(), expected[:, :, [2, 1], :], rtol=1e-5, atol=1e-5)


def test_after_is_exact_and_orders_nothing_else():
    x = tf.constant([[-0.0, 1.5, -2.0, np.inf]], tf.float32)
    out = layer_ops.after(x, tf.constant([[3.0, -7.0]]))
    np.testing.assert_array_equal(out.numpy(), [[0.0, 1.5, -2.0, np.inf]])


# --- both forms of `train` ------------------------------------------------------------


def padded_model():
    """Explicit ZeroPadding2D in front of trained convs (folded into their padding)."""
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="pad1")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu6", name="stem")(x)
    x = keras.layers.ZeroPadding2D(((2, 1), (1, 2)), name="pad2")(x)
    x = keras.layers.DepthwiseConv2D(3, activation="relu", name="dw")(x)
    x = keras.layers.Conv2D(6, 1, name="pw")(x)
    x = keras.layers.ZeroPadding2D(1, name="pad3")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, activation="relu", name="mix")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    keras.utils.set_random_seed(4)
    model = padded_model()
    plan = kmd.plan(model, budget=1500, classifier="head")
    directory = tmp_path_factory.mktemp("padded")
    files = {}
    for form in ("selected", "dense", "static"):
        path = os.path.join(directory, f"{form}.tflite")
        from tflite_export import export_training_model  # noqa: PLC0415
        # "selected": dynamic channel lists, whose memory follows the selection;
        # "static" (the default export): fixed-length lists, memory follows the budget.
        export_training_model(model, plan, path, batch_size=4, learning_rate=0.05,
                              kernel_gradients="dense" if form == "dense" else "selected",
                              static_shapes=form == "static")
        files[form] = path
    return model, plan, files


FAST = {("selected", True, 0.4), ("selected", False, 0.0), ("dense", True, 1.0)}


@pytest.mark.parametrize("form,use_xnnpack,fraction", [
    pytest.param(form, xnnpack, fraction,
                 marks=() if (form, xnnpack, fraction) in FAST else pytest.mark.slow)
    for form in ("selected", "dense") for xnnpack in (True, False) for fraction in (0.0, 0.4, 1.0)
])
def test_train_equals_subnetwork_model_for_every_form_and_selection(padded, form, use_xnnpack,
                                                                     fraction):
    model, plan, files = padded
    assert set(plan.layers) == {"stem", "dw", "pw", "mix"}
    device = OnDeviceTrainer(files[form], use_xnnpack=use_xnnpack)
    x, y = random_data(12, 12, num_classes=3, seed=2)
    rng = np.random.default_rng(5)
    selected = np.flatnonzero(rng.random(plan.pool.size) < fraction)
    if fraction == 1.0:
        selected = np.arange(plan.pool.size)
    weights = [w.copy() for w in model.get_weights()]
    try:
        before, after = assert_same_training(device, model, plan, x, y, selected, 0.05,
                                             steps=3, from_logits=True)
    finally:
        model.set_weights(weights)
    if fraction == 0.0:  # nothing in the search space moved, the head did
        for name in plan.layers:
            np.testing.assert_array_equal(after[f"{name}/kernel"], before[f"{name}/kernel"])
        assert not np.array_equal(after["head/kernel"], before["head/kernel"])


def test_selected_form_declares_its_channel_inputs(padded):
    _, plan, files = padded
    selected = OnDeviceTrainer(files["selected"]).metadata
    dense = OnDeviceTrainer(files["dense"]).metadata
    assert selected["kernel_gradients"] == "selected" and dense["kernel_gradients"] == "dense"
    assert [e["layer"] for e in selected["train_channel_inputs"]] == list(plan.pool.layer_names)
    assert [e["tensor"] for e in selected["train_channel_inputs"]] == [
        "stem_channels", "dw_channels", "pw_channels", "mix_channels"]
    assert dense["train_channel_inputs"] == []


def test_bad_kernel_gradients_is_a_clear_error(tmp_path):
    model = small_cnn(size=16)
    plan = kmd.plan(model, budget=600)
    with pytest.raises(ValueError, match="kernel_gradients.*'selected', 'dense'.*'sparse'"):
        export(model, plan, tmp_path, kernel_gradients="sparse")


# --- memory follows the selection (slow: three processes) -----------------------------


CHILD = r"""
import json, sys
import numpy as np
from tflite_export.on_device import OnDeviceTrainer
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
path, count = sys.argv[1], int(sys.argv[2])
device = OnDeviceTrainer(path, num_threads=1, use_xnnpack=False)
start = peak()
mask = {name: list(range(min(count, device.pool.num_channels[i])))
        for i, name in enumerate(device.layer_names)}
device.set_mask(mask, allow_over_budget=True)
x = np.random.default_rng(0).uniform(-1, 1, (device.batch_size, *device.input_shape))
for _ in range(2):
    device.train(x.astype(np.float32), np.zeros(device.batch_size, np.int32))
print(json.dumps({"start_mb": start, "peak_mb": peak()}))
"""


def _train_peak_mb(path, channels_per_layer):
    output = subprocess.run([sys.executable, "-c", CHILD, path, str(channels_per_layer)],
                            check=True, capture_output=True, text=True, cwd=ROOT,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    measured = json.loads(output.stdout.strip().splitlines()[-1])
    return measured["peak_mb"] - measured["start_mb"]


@pytest.mark.slow
def test_train_memory_follows_the_selection_not_the_search_space(tmp_path):
    # Three 1x1 convs on 64 channels at 48x48, batch 8: each input is 4.5 MB.
    inputs = keras.Input((48, 48, 3))
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="stem")(inputs)
    for i in range(3):
        x = keras.layers.Conv2D(64, 1, activation="relu", name=f"pw{i}")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(x))
    plan = kmd.plan(model, budget=400_000, classifier="head")
    assert {"pw0", "pw1", "pw2"} <= set(plan.layers)
    from tflite_export import export_training_model  # noqa: PLC0415
    paths = {}
    for form in ("selected", "dense"):
        paths[form] = str(tmp_path / f"{form}.tflite")
        export_training_model(model, plan, paths[form], batch_size=8, kernel_gradients=form,
                              static_shapes=False)
    one = _train_peak_mb(paths["selected"], 1)
    every = _train_peak_mb(paths["selected"], 64)
    dense = _train_peak_mb(paths["dense"], 1)
    # Keeping every input of the 4 search-space layers costs >= 4 x 4.5 MB more.
    assert every - one > 12, (one, every, dense)
    assert dense - one > 12, (one, every, dense)


# --- the memory model ------------------------------------------------------------------


def test_memory_model_counts_the_unpadded_inputs_and_the_selection(padded):
    model, plan, files = padded
    device = OnDeviceTrainer(files["selected"])
    memory = device.metadata["memory_model"]
    # Explicit paddings are folded: the kept input is the pad layer's input.
    sizes = {"stem": (12, 12), "dw": (6, 6), "pw": (7, 7), "mix": (7, 7)}
    assert memory["kept_bytes_per_channel"] == [4 * 4 * h * w for h, w in
                                                (sizes[n] for n in plan.pool.layer_names)]
    assert memory["num_channels"] == [int(c) for c in plan.pool.num_channels]
    empty = device.predicted_train_memory(np.zeros(plan.pool.size))
    full = device.predicted_train_memory(np.ones(plan.pool.size))
    assert empty["selected_inputs_bytes"] == sum(memory["kept_bytes_per_channel"])
    assert full["total_bytes"] - empty["total_bytes"] == sum(
        b * c for b, c in zip(memory["kept_bytes_per_channel"], memory["num_channels"]))
    dense = OnDeviceTrainer(files["dense"]).predicted_train_memory(np.zeros(plan.pool.size))
    assert dense["selected_inputs_bytes"] == full["selected_inputs_bytes"] - sum(
        memory["kept_bytes_per_channel"])


def test_static_lists_keep_what_the_budget_admits_whatever_the_selection(padded):
    from tflite_export import memory_model, signatures  # noqa: PLC0415

    model, plan, files = padded
    device = OnDeviceTrainer(files["static"])
    memory = device.metadata["memory_model"]
    capacities = signatures.channel_capacities(plan.pool, plan.budget_units)
    assert memory["capacities"] == capacities
    assert [e["capacity"] for e in device.metadata["train_channel_inputs"]] == capacities
    kept = sum(b * c for b, c in zip(memory["kept_bytes_per_channel"], capacities))
    rng = np.random.default_rng(0)
    for mask in (np.zeros(plan.pool.size), np.ones(plan.pool.size),
                 rng.random(plan.pool.size) < 0.3):
        assert device.predicted_train_memory(mask)["selected_inputs_bytes"] == kept
    # Never more than the whole search space; and every selection within the
    # budget fits the lists (a channel of layer l costs at least the cheapest).
    assert all(c <= n for c, n in zip(capacities, plan.pool.num_channels))
    for index, count in enumerate(plan.pool.num_channels):
        start = int(plan.pool.offsets[index])
        cheapest = int(np.min(plan.pool.costs[start:start + int(count)]))
        assert capacities[index] == min(int(count), plan.budget_units // cheapest)
    bound = memory_model.budget_bound(memory, plan.pool.costs, plan.budget_units)
    assert bound["selected_inputs_bytes"] == kept


@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_budget_bound_is_above_every_selection_within_the_budget(data):
    from tflite_export import memory_model  # noqa: PLC0415

    counts = data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    kept = data.draw(st.lists(st.integers(0, 500), min_size=len(counts), max_size=len(counts)))
    costs = np.array(data.draw(st.lists(st.integers(1, 50), min_size=sum(counts),
                                        max_size=sum(counts))))
    budget = data.draw(st.integers(0, int(costs.sum())))
    model = {"kernel_gradients": "selected", "kept_bytes_per_channel": kept,
             "num_channels": counts, "relu_mask_bytes": 7, "classifier_input_bytes": 3,
             "backward_working_bytes": 11, "weight_update_bytes": 5}
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=sum(counts),
                                       max_size=sum(counts))))
    # Drop channels until the selection fits the budget.
    for index in np.flatnonzero(mask)[::-1]:
        if costs[mask].sum() <= budget:
            break
        mask[index] = False
    bound = memory_model.budget_bound(model, costs, budget)["total_bytes"]
    assert memory_model.predict(model, mask)["total_bytes"] <= bound


@pytest.mark.slow
def test_benchmark_cli_measures_before_and_after_and_prints_the_table(weights_dir, tmp_path):
    """`python -m tflite_export.benchmark` on MCUNet at 32 px, this checkout as the baseline."""
    output = subprocess.run(
        [sys.executable, "-m", "tflite_export.benchmark", "--resolution=32", "--batch_size=2",
         "--budgets=15936", "--kernel_gradients=selected", "--xnnpack=false", "--steps=2",
         "--warmup=0", f"--weights_dir={weights_dir}", f"--out_dir={tmp_path}",
         f"--baseline_checkout={ROOT}", f"--json={tmp_path / 'rows.json'}"],
        check=True, capture_output=True, text=True, cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["form"] for r in rows] == ["landed", "selected"]
    for row in rows:
        assert row["train"]["selected_channels"] > 0
        assert not row["train"]["tensorflow_imported"] and not row["infer"]["tensorflow_imported"]
        assert row["train"]["predicted_train_extra_mb"] > 0
    assert "| 15,936 | selected | off |" in output.stdout
