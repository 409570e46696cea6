"""Multi-branch networks: LeakyReLU, Concatenate and AveragePooling2D mid-network (issue 24).

Each of these is one registered step kind (`tflite_export.step_kinds`:
`activations.LeakyRelu`, `combine.Concatenate`, `spatial.AveragePool`); the
host side reads the network unchanged. A network with an Inception-style
block (three branches concatenated, one through an average pooling), a
DenseNet-style concatenation of a tensor with a conv of itself, LeakyReLU
layers and a fused `activation="leaky_relu"` is planned, ranked and trained
with `SubnetworkModel`, exported with builtin operators only, and its
on-device `infer` and two `train` steps are compared with Keras and
`SubnetworkModel`.
"""

import keras
import numpy as np
import pytest

import keras_medyate as kmd
from keras_medyate import inventory

pytest.importorskip("ai_edge_litert", reason="needs the litert extra: pip install -e '.[litert]'")

from tests.helpers import assert_same_training, calibrate_batchnorm, export  # noqa: E402
from tflite_export import flatbuffer, graph  # noqa: E402

#: Relative margin of every pre-activation from a kink in the parity steps (as in
#: `test_tflite_export_mobile`: 5x the largest oneDNN on/off difference measured).
KINK_MARGIN = 1e-4


def multibranch_net(size=16, classes=5):
    """stem (BatchNorm, LeakyReLU) → Inception-style block [1×1 | 1×1 leaky_relu →
    depthwise 3×3 | average pooling 3×3 → 1×1] concatenated → LeakyReLU →
    DenseNet-style concatenation with a 3×3 conv of itself → average pooling 2×2 →
    1×1 conv, ReLU6 → global pooling → Dense."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.LeakyReLU(0.1, name="stem_leaky")(x)
    a = keras.layers.Conv2D(4, 1, name="a_1x1")(x)
    b = keras.layers.Conv2D(4, 1, activation="leaky_relu", name="b_reduce")(x)
    b = keras.layers.DepthwiseConv2D(3, padding="same", name="b_depthwise")(b)
    c = keras.layers.AveragePooling2D(3, strides=1, padding="same", name="c_pool")(x)
    c = keras.layers.Conv2D(4, 1, name="c_1x1")(c)
    x = keras.layers.Concatenate(name="mix")([a, b, c])
    x = keras.layers.LeakyReLU(0.2, name="mix_leaky")(x)
    grown = keras.layers.Conv2D(4, 3, padding="same", name="grow")(x)
    x = keras.layers.Concatenate(name="grow_concat")([x, grown])
    x = keras.layers.AveragePooling2D(2, name="transition_pool")(x)
    x = keras.layers.Conv2D(12, 1, name="transition")(x)
    x = keras.layers.ReLU(6.0, name="transition_relu6")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name="multibranch")


def _data(count, size=16, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(count, size, size, 3)).astype(np.float32),
            (np.arange(count) % classes).astype(np.int32))


def test_host_side_reads_concatenated_branches():
    keras.utils.set_random_seed(0)
    model = multibranch_net()
    infos = {info.name: info for info in inventory.inventory(model)}
    assert set(infos) == {"stem", "a_1x1", "b_reduce", "b_depthwise", "c_1x1", "grow",
                          "transition", "classifier"}
    # A layer after a concatenation reads every channel of it, at its grid.
    assert (infos["grow"].num_channels, infos["grow"].input_hw) == (12, (8, 8))
    assert (infos["transition"].num_channels, infos["transition"].input_hw) == (16, (4, 4))
    assert infos["transition"].channel_units == 12 + 4 * 4
    x, y = _data(32)
    ranking = kmd.rank_layers(model, (x, y), epochs=1, batch_size=8)
    assert set(ranking.layer_names) == set(infos) - {"classifier"}
    plan = kmd.plan(model, budget=600, ranking=ranking)
    assert plan.classifier == "classifier" and plan.layers
    assert plan.pool.size == sum(infos[name].num_channels for name in plan.layers)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    resampler = kmd.ChannelResampler(plan, seed=0)
    history = trainer.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[resampler])
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(0 < resampler.history[e].cost_units <= plan.budget_units for e in range(2))


def test_leaky_relu_concatenate_and_average_pooling_export_and_train_like_keras(tmp_path):
    keras.utils.set_random_seed(0)
    model = multibranch_net()
    layer_graph = graph.build_graph(model)
    kinds = [step.kind for step in layer_graph.steps]
    assert kinds.count("leaky_relu") == 3 and kinds.count("concatenate") == 2
    assert kinds.count("avg_pool") == 2

    x, y = _data(48)
    calibrate_batchnorm(model, x)
    plan = kmd.plan(model, budget=1500)  # every layer in the search space
    device, summary = export(model, plan, tmp_path, batch_size=4, learning_rate=0.01)
    with open(summary.path, "rb") as f:
        assert flatbuffer.non_builtin_operators(f.read()) == []
    assert {"CONCATENATION", "LEAKY_RELU", "AVERAGE_POOL_2D"} <= set(summary.operators)
    np.testing.assert_allclose(device.infer(x[:6], logits=True), model(x[:6]).numpy(),
                               rtol=1e-5, atol=1e-5)

    # The LeakyReLU masks are counted with the ReLU masks (one byte per element);
    # with the stem trained, every (Leaky)ReLU is in the backprop region.
    masks = sum(int(np.prod(layer_graph.shapes[step.output][1:])) for step in layer_graph.steps
                if step.kind in ("relu", "leaky_relu"))
    assert device.predicted_train_memory()["relu_mask_bytes"] == device.batch_size * masks

    selected = np.flatnonzero(device.resample(seed=0).mask)
    assert 0 < len(selected) < plan.pool.size
    assert_same_training(device, model, plan, x, y, selected, learning_rate=0.01, steps=2,
                         from_logits=True, kink_margin=KINK_MARGIN)
