"""Host and device select the same channels: same seed + same state ⇒ same selection.

`kmd.ChannelResampler(plan, kmd.strategies.MeDyate(epsilon=...), seed)` trains a
`SubnetworkModel` for a few epochs; before every epoch the host's state (the
selector's stored norms, measured set and max-fill flag, the explored set,
the epoch counter, the current mask and the norm accumulators) is copied
into the exported LiteRT model with `set_state`, and its `resample(seed)`
must select exactly the channels the host selected that epoch, and store the
same norms bit for bit. Both draw from `keras_medyate.strategies.random_stream`.
Models: a small CNN, a depthwise/residual network and `keras.applications`
MobileNetV2 (random weights, 32 px); several budgets; epsilon 0, 1e-3, 0.3.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_medyate as kmd

pytest.importorskip("ai_edge_litert", reason="needs the litert extra: pip install -e '.[litert]' "
                    "(included in '.[test]')")

from keras_medyate import selection  # noqa: E402
from tests.helpers import export, random_data, small_cnn  # noqa: E402

EPOCHS = 4
SEED = 11


def depthwise_residual(size=16, num_classes=3):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0)(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw1")(x)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(8, 1, name="pw1")(y)
    x = keras.layers.Add()([x, y])
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw2")(x)
    x = keras.layers.Conv2D(12, 1, activation="relu", name="pw2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, name="head")(x)
    return keras.Model(inputs, outputs, name="depthwise_residual")


def mobilenet_v2(size=32, num_classes=3):
    return keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35,
                                          weights=None, classes=num_classes)


MODELS = {"small_cnn": (small_cnn, 16, True), "depthwise_residual": (depthwise_residual, 16, True),
          "mobilenet_v2": (mobilenet_v2, 32, False)}


class CaptureHostState(keras.callbacks.Callback):
    """Records, before the resampler runs, the state the device needs (its
    `get_state` layout), and after it, the stored norms it produced."""

    def __init__(self):
        super().__init__()
        self.before, self.memory_after = {}, {}

    def _memory(self):
        return np.asarray(self.model.selection_state["channel_memory"].numpy(), np.float32)

    def on_epoch_begin(self, epoch, logs=None):
        trainer = self.model
        pool = trainer.plan.pool
        state = trainer.selection_state
        self.before[epoch] = {
            "mask": pool.flat_mask(trainer.current_selection()),
            "memory": self._memory(),
            "measured": np.asarray(state["channel_measured"].numpy(), np.float32),
            "seen": np.asarray(state[selection.SEEN].numpy(), np.float32),
            "norm_sum": np.concatenate([v.numpy() for v in state.norm_sums]).astype(np.float32),
            "norm_steps": np.array([state.norm_steps.numpy()], np.float32),
            "epoch": np.array([state.epochs_selected.numpy()], np.int32),
            "max_filled": np.array([float(state["memory_max_filled"].numpy())], np.float32),
        }

    def on_epoch_end(self, epoch, logs=None):
        self.memory_after[epoch] = self._memory()


@pytest.mark.parametrize("model_name, budget_fraction, epsilon", [
    ("small_cnn", 0.1, 1e-3), ("small_cnn", 0.3, 0.0), ("small_cnn", 0.6, 0.3),
    ("depthwise_residual", 0.15, 0.0), ("depthwise_residual", 0.4, 1e-3),
    # keras.applications MobileNetV2: 17–20 s each, beyond the default run's budget.
    pytest.param("mobilenet_v2", 0.05, 0.0, marks=pytest.mark.slow),
    pytest.param("mobilenet_v2", 0.2, 1e-3, marks=pytest.mark.slow),
])
def test_host_and_device_select_the_same_channels_every_epoch(tmp_path, model_name,
                                                               budget_fraction, epsilon):
    build, size, from_logits = MODELS[model_name]
    keras.utils.set_random_seed(0)
    model = build(size=size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total = kmd.plan(model, budget=10**9).search_space_units
    plan = kmd.plan(model, budget=max(1, int(budget_fraction * total)))
    device, _ = export(model, plan, tmp_path, batch_size=4, epsilon=epsilon)

    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits))
    capture = CaptureHostState()
    resampler = kmd.ChannelResampler(plan, strategy=kmd.strategies.MeDyate(epsilon=epsilon),
                                     seed=SEED)
    x, y = random_data(16, size)
    trainer.fit(x, y, batch_size=8, epochs=EPOCHS, shuffle=False, verbose=0,
                callbacks=[capture, resampler])

    for epoch in range(EPOCHS):
        device.set_state(capture.before[epoch])
        selection = device.resample(SEED)
        host = plan.pool.from_dict(resampler.history[epoch].channels)
        assert np.flatnonzero(selection.mask).tolist() == np.sort(host).tolist(), epoch
        assert selection.cost_units == resampler.history[epoch].cost_units
        np.testing.assert_array_equal(device.get_state()["memory"].view(np.int32),
                                      capture.memory_after[epoch].view(np.int32))
    # The run explored beyond its first selection (the draws are not all equal).
    assert len({tuple(h.channels[plan.layers[-1]]) for h in resampler.history.values()}) > 1 \
        or budget_fraction >= 0.6


def test_export_refuses_what_the_device_cannot_do(tmp_path):
    from tflite_export import export_training_model  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    model = small_cnn(size=16)
    plan = kmd.plan(model, budget=600)
    path = str(tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="`norm_statistic` must be 'mean' on the device, got "
                                         "'last'.*norm_statistic='mean'"):
        export_training_model(model, plan, path, norm_statistic="last")
    with pytest.raises(ValueError, match="`fill` must be one of \\('stop',\\) on the device, "
                                         "got 'skip'.*fill='stop'"):
        export_training_model(model, plan, path, fill="skip")
