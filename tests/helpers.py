"""Helpers the test files share: tiny models, random data, channel pools,
checkpoint files, and the device-vs-Keras training comparison.

Test files import these from here (never from each other); `conftest.py`
holds the fixtures. Nothing here imports `ai_edge_litert` or `tflite_export`
at import time: a test file that needs them skips first when they are missing.

Example::

    from tests.helpers import random_data, small_cnn

    def test_plan_fits(tmp_path):
        plan = kmd.plan(small_cnn(), budget=600)
"""

import io
import os
import pickle
import zipfile

import keras
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Preset name → checkpoint file, for the two checkpoints the tests load.
MODEL_FILES = {"mcunet_5fps": "mcunet-5fps.pkl", "mobilenetv2_w035": "mbv2-w0.35.pkl"}


# --- models and data ------------------------------------------------------------


def three_layer_net(num_classes=3):
    """Conv(3→4, 3x3, stride 2) → DepthwiseConv(3x3) → Conv 1x1 (4→6) → GAP → Dense."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(inputs)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.Conv2D(6, 1, name="pointwise")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name="three_layer_net")


def small_cnn(name="small_cnn", num_classes=3, size=16, batchnorm=True):
    """A small MobileNet-like functional CNN with a residual add and BatchNorm."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(inputs)
    if batchnorm:
        x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0)(x)
    shortcut = x
    x = keras.layers.Conv2D(16, 1, name="b1_expand")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="b1_depthwise")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.Conv2D(8, 1, name="b1_project")(x)
    x = keras.layers.Add()([x, shortcut])
    x = keras.layers.Conv2D(12, 3, strides=2, padding="same", name="b2_conv")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def calibrate_batchnorm(model, x):
    """Sets every BatchNormalization's moving statistics to those of its input on `x`.

    Randomly initialised MobileNetV3s shrink activations through their SE gates
    and default statistics to ~1e-10 by the head, where every gradient is
    noise; with calibrated statistics the activations keep unit scale, as in a
    trained network, and a parity test compares real numbers.
    """
    layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    # One training-mode pass: each layer's moving statistics become its batch's
    # (then inference mode normalises exactly as that pass did).
    model(x, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def efficientnet_lite_like(input_shape=(64, 64, 3), classes=5, width=0.5, name="efficientnet_lite"):
    """An EfficientNet-Lite-style network (scaled down): EfficientNet-B0's MBConv
    stages without squeeze-and-excitation, ReLU6 instead of swish, a fixed
    32-channel stem and a 1×1 head conv before pooling (what distinguishes
    the Lite variants), BatchNorm after every conv, residuals when stride is 1
    and the channels match."""
    def filters(count):
        return max(8, int(count * width) // 8 * 8)

    # (expand ratio, kernel, stride, output channels, repeats): B0's stages, fewer repeats.
    stages = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 1), (6, 3, 2, 80, 2),
              (6, 5, 1, 112, 1), (6, 5, 2, 192, 1), (6, 3, 1, 320, 1)]
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    block = 0
    for expand, kernel, stride, out, repeats in stages:
        for repeat in range(repeats):
            prefix = f"block{block}_"
            block_in, channels = x, int(x.shape[-1])
            if expand != 1:
                x = keras.layers.Conv2D(channels * expand, 1, use_bias=False,
                                        name=prefix + "expand")(x)
                x = keras.layers.BatchNormalization(name=prefix + "expand_bn")(x)
                x = keras.layers.ReLU(6.0, name=prefix + "expand_relu")(x)
            step = stride if repeat == 0 else 1
            x = keras.layers.DepthwiseConv2D(kernel, strides=step, padding="same",
                                             use_bias=False, name=prefix + "depthwise")(x)
            x = keras.layers.BatchNormalization(name=prefix + "depthwise_bn")(x)
            x = keras.layers.ReLU(6.0, name=prefix + "depthwise_relu")(x)
            x = keras.layers.Conv2D(filters(out), 1, use_bias=False, name=prefix + "project")(x)
            x = keras.layers.BatchNormalization(name=prefix + "project_bn")(x)
            if step == 1 and channels == filters(out):
                x = keras.layers.Add(name=prefix + "add")([x, block_in])
            block += 1
    x = keras.layers.Conv2D(1280 // 4, 1, use_bias=False, name="head")(x)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.ReLU(6.0, name="head_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    # (The real head has Dropout(0.2) here: the identity in export, random in
    # SubnetworkModel's training step, so a parity test leaves it out.)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def random_data(n=32, size=16, num_classes=3, seed=0):
    """`n` normal images (size x size x 3, float32) and cyclic int32 labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size, size, 3)).astype("float32")
    y = (np.arange(n) % num_classes).astype("int32")
    return x, y


def make_pool(num_channels, costs):
    """A `ChannelPool` of layers `layer0`, `layer1`, ... with these channel
    counts and per-channel costs."""
    from keras_medyate.strategies import base  # noqa: PLC0415

    num_channels = np.asarray(num_channels, np.int64)
    offsets = np.concatenate([[0], np.cumsum(num_channels)[:-1]]).astype(np.int64)
    names = tuple(f"layer{i}" for i in range(len(num_channels)))
    return base.ChannelPool(names, num_channels, np.asarray(costs, np.int64), offsets)


# --- tiny-training checkpoint files ----------------------------------------------


def write_checkpoint(path, data):
    """Writes `data` as a tiny-training `.pkl` (a zip with `archive/data.pkl`)."""
    buffer = io.BytesIO()
    pickle.dump(data, buffer, protocol=2)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/version", "3\n")
    return path


# --- on-device export vs SubnetworkModel --------------------------------------------


def export(model, plan, directory, name="model", **kwargs):
    """Exports and opens the model; returns (OnDeviceTrainer, ExportSummary)."""
    from tflite_export import OnDeviceTrainer, export_training_model  # noqa: PLC0415

    path = os.path.join(str(directory), f"{name}.tflite")
    summary = export_training_model(model, plan, path, **kwargs)
    return OnDeviceTrainer(path, num_threads=2), summary


def keras_trainer(model, plan, learning_rate, from_logits):
    """A `SubnetworkModel` compiled with plain SGD and sparse cross-entropy."""
    import keras_medyate as kmd  # noqa: PLC0415

    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits))
    return trainer


def keras_weight(model, key):
    """The Keras value of `"<layer>/<kernel|bias>"` (nested names: `"outer/inner/kernel"`)."""
    *path, part = key.split("/")
    layer = model
    for name in path:
        layer = layer.get_layer(name)
    return np.asarray(getattr(layer, part).numpy())


def assert_same_training(device, model, plan, x, y, selected, learning_rate, steps,
                         from_logits, rtol=1e-5):
    """N `train` steps on the device equal N `SubnetworkModel` plain-SGD steps."""
    trainer = keras_trainer(model, plan, learning_rate, from_logits)
    trainer.set_selection(selected)
    mask = np.zeros(plan.pool.size, np.float32)
    mask[selected] = 1.0
    device.set_mask(mask, allow_over_budget=True)
    batch = device.batch_size
    before = device.get_weights()
    for step in range(steps):
        xb, yb = x[step * batch:(step + 1) * batch], y[step * batch:(step + 1) * batch]
        keras_loss = trainer.train_on_batch(xb, yb)
        keras_loss = keras_loss[0] if isinstance(keras_loss, list) else keras_loss
        device_loss = device.train(xb, yb)
        assert device_loss == pytest.approx(float(keras_loss), rel=rtol)
    after = device.get_weights()
    for key, value in after.items():
        expected = keras_weight(model, key)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(value, expected, rtol=rtol, atol=rtol * scale,
                                   err_msg=f"{key} differs from SubnetworkModel")
    # Non-selected input channels of the search space: bit-identical.
    for name in plan.layers:
        info = plan.layer_info(name)
        key = f"{name}/kernel"
        frozen = np.setdiff1d(np.arange(info.num_channels),
                              plan.pool.to_dict(selected)[name])
        np.testing.assert_array_equal(np.take(after[key], frozen, axis=info.channel_axis),
                                      np.take(before[key], frozen, axis=info.channel_axis),
                                      err_msg=f"a non-selected slice of {name} moved")
    # The per-channel norm accumulators equal SubnetworkModel's on the trained
    # channels (the only ones the sampler reads); the device measures no other.
    state = device.get_state()
    expected_sums = np.concatenate([v.numpy() for v in trainer._norm_sums])
    trained = np.zeros(plan.pool.size, bool)
    trained[selected] = True
    np.testing.assert_allclose(state["norm_sum"][trained], expected_sums[trained],
                               rtol=max(1e-4, rtol),
                               atol=max(1e-6, rtol) * max(expected_sums.max(), 1e-30))
    assert not state["norm_sum"][~trained].any(), "a channel that was not trained was measured"
    assert state["norm_steps"][0] == steps
    return before, after


def interrupt_at(epoch):
    """A callback that raises `RuntimeError("interrupted")` when `epoch` begins
    (a crash in the middle of `fit`, for the resume tests)."""
    import keras  # noqa: PLC0415

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, current, logs=None):
            if current == epoch:
                raise RuntimeError("interrupted")

    return Interrupt()
