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

import functools
import importlib.util
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


@functools.cache
def benchmark_module(name):
    """`benchmarks/<name>.py` as a module, loaded once (a script that defines absl
    flags cannot be executed twice in one process)."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


# --- kinks: where a parity test could depend on float rounding ---------------------

#: Kinks (input values where the derivative jumps) of Keras' piecewise activations.
ACTIVATION_KINKS = {"relu": (0.0,), "relu6": (0.0, 6.0), "hard_sigmoid": (-3.0, 3.0),
                    "hard_silu": (-3.0, 3.0), "hard_swish": (-3.0, 3.0), "leaky_relu": (0.0,)}


def _kinks_of(layer):
    """The kinks of a layer's activation (a ReLU or LeakyReLU layer, an `Activation`,
    or a conv / Dense `activation=`), or () for a smooth or linear one."""
    if isinstance(layer, keras.layers.LeakyReLU):
        return (0.0,)
    if isinstance(layer, keras.layers.ReLU):
        kinks = [float(layer.threshold)]
        if layer.max_value is not None:
            kinks.append(float(layer.max_value))
        return tuple(kinks)
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", "")
    return ACTIVATION_KINKS.get(name, ())


def kink_margins(model, x, max_pool=True):
    """Per sample: the smallest distance of a pre-activation to a kink of its
    activation, over every layer of `model` with a piecewise-linear activation,
    relative to that layer's pre-activation RMS over the batch.

    A parity test whose pre-activations all keep such a margin cannot depend on
    which side of a kink a value lands under another op order or thread count.
    A max pooling is a kink too (which input is the maximum): its margin is the gap
    between the largest and the second largest value of each window. BatchNormalization
    runs in inference mode, so each sample's margin is its own.

    Args:
        model: a functional Keras model.
        x: a batch of inputs.
        max_pool: bool, measure max-pooling near ties too (default True).

    Returns:
        float64 array, one relative margin per sample (inf if no layer has a kink).
    """
    def kinked_layer(layer):
        pooling = max_pool and isinstance(layer, keras.layers.MaxPooling2D)
        return (bool(_kinks_of(layer)) or pooling) and hasattr(layer, "input")

    kinked = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if kinked_layer(layer)]
    if not kinked:
        return np.full(len(x), np.inf)
    taps = keras.Model(model.input, [layer.input for layer in kinked])
    inputs = taps(x, training=False)
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    margins = np.full(len(x), np.inf)
    for layer, value in zip(kinked, inputs):
        if isinstance(layer, keras.layers.MaxPooling2D):
            gaps = _max_pool_gaps(layer, value)
            rms = max(float(np.sqrt(np.mean(np.asarray(value, np.float64)**2))), 1e-30)
            margins = np.minimum(margins, gaps.reshape(len(x), -1).min(axis=1) / rms)
            continue
        if isinstance(layer, (keras.layers.ReLU, keras.layers.Activation,
                              keras.layers.LeakyReLU)):
            pre = np.asarray(value, np.float64)
        else:  # a fused activation: the layer's affine map alone
            saved = layer.activation
            layer.activation = keras.activations.linear
            try:
                pre = np.asarray(layer(value), np.float64)
            finally:
                layer.activation = saved
        rms = max(float(np.sqrt(np.mean(pre**2))), 1e-30)
        distance = np.min([np.abs(pre - kink) for kink in _kinks_of(layer)], axis=0)
        margins = np.minimum(margins, distance.reshape(len(x), -1).min(axis=1) / rms)
    return margins


def _max_pool_gaps(layer, inputs):
    """Largest minus second largest value of every window of a MaxPooling2D
    (channels last; "same" padding pads with -inf, which never ties); inf for
    an exact tie."""
    import tensorflow as tf  # noqa: PLC0415

    (ph, pw), (sh, sw) = layer.pool_size, layer.strides
    values = tf.convert_to_tensor(inputs, tf.float32)
    if layer.padding == "same":
        height, width = int(values.shape[1]), int(values.shape[2])
        out_h, out_w = -(-height // sh), -(-width // sw)
        pad_h = max((out_h - 1) * sh + ph - height, 0)
        pad_w = max((out_w - 1) * sw + pw - width, 0)
        values = tf.pad(values, [[0, 0], [pad_h // 2, pad_h - pad_h // 2],
                                 [pad_w // 2, pad_w - pad_w // 2], [0, 0]],
                        constant_values=-np.inf)
    channels = int(values.shape[-1])
    # (n, oh, ow, ph * pw * C): window position major, channel minor.
    patches = tf.image.extract_patches(values, [1, ph, pw, 1], [1, sh, sw, 1], [1, 1, 1, 1],
                                       "VALID").numpy().astype(np.float64)
    patches = patches.reshape(*patches.shape[:3], ph * pw, channels)
    top = np.sort(patches, axis=3)
    gaps = top[:, :, :, -1] - top[:, :, :, -2]
    # An exact tie (values clipped to the same bound) is exact on both sides, which
    # break it the same way (tested per op): only a near tie is a kink.
    return np.where(np.isfinite(gaps) & (gaps > 0), gaps, np.inf)


def samples_away_from_kinks(model, x, count, margin, exclude=(), max_pool=True):
    """Indices of the first `count` samples of `x` whose `kink_margins` are >= margin.

    Args:
        model: the Keras model, with its current weights.
        x: the candidate samples.
        count: int, how many to take.
        margin: float, the relative margin every pre-activation must keep.
        exclude: indices not to take (samples already used).
        max_pool: bool, as for `kink_margins`.

    Returns:
        int array of `count` indices, in candidate order.

    Raises:
        AssertionError: fewer than `count` such samples (draw more candidates or
            test at a smaller input size).
    """
    margins = kink_margins(model, x, max_pool=max_pool)
    margins[np.asarray(exclude, np.int64)] = -np.inf
    clean = np.flatnonzero(margins >= margin)
    assert len(clean) >= count, (
        f"only {len(clean)} of {len(x)} candidate samples keep a margin of {margin:g} from "
        f"every kink (need {count}); the largest margins: {np.sort(margins)[::-1][:count]}")
    return clean[:count]


def random_data(n=32, size=16, num_classes=3, seed=0):
    """`n` normal images (size x size x 3, float32) and cyclic int32 labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size, size, 3)).astype("float32")
    y = (np.arange(n) % num_classes).astype("int32")
    return x, y


def make_pool(num_channels, costs):
    """A `ChannelPool` of layers `layer0`, `layer1`, ... with these channel
    counts and per-channel costs."""
    from keras_medyate.channel_pool import ChannelPool  # noqa: PLC0415

    num_channels = np.asarray(num_channels, np.int64)
    offsets = np.concatenate([[0], np.cumsum(num_channels)[:-1]]).astype(np.int64)
    names = tuple(f"layer{i}" for i in range(len(num_channels)))
    return ChannelPool(names, num_channels, np.asarray(costs, np.int64), offsets)


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
                         from_logits, rtol=1e-5, kink_margin=None, kink_max_pool=True):
    """N `train` steps on the device equal N `SubnetworkModel` plain-SGD steps.

    Args:
        kink_margin: None (step k trains on the k-th `batch_size` slice of `x`) or a
            float: `x`, `y` are candidates, and step k trains on the first unused
            ones whose pre-activations all keep this relative margin from every
            kink under the weights of that step (`samples_away_from_kinks`,
            asserted), so that no ReLU mask can flip between the two sides' op
            orders and the elementwise `rtol` holds on any machine.
        kink_max_pool: bool, count max-pooling near ties as kinks (default True).
    """
    trainer = keras_trainer(model, plan, learning_rate, from_logits)
    trainer.set_selection(selected, allow_over_budget=True)
    mask = np.zeros(plan.pool.size, np.float32)
    mask[selected] = 1.0
    device.set_mask(mask, allow_over_budget=True)
    batch = device.batch_size
    before = device.get_weights()
    used = []
    for step in range(steps):
        if kink_margin is None:
            xb, yb = x[step * batch:(step + 1) * batch], y[step * batch:(step + 1) * batch]
        else:  # the Keras model holds this step's weights (both sides agree to rtol)
            pick = samples_away_from_kinks(model, x, batch, kink_margin, exclude=used,
                                           max_pool=kink_max_pool)
            used.extend(pick.tolist())
            xb, yb = x[pick], y[pick]
        keras_loss = trainer.train_on_batch(xb, yb)
        keras_loss = keras_loss[0] if isinstance(keras_loss, list) else keras_loss
        device_loss = device.train(xb, yb)
        assert device_loss == pytest.approx(float(keras_loss), rel=rtol), \
            (step, device_loss, keras_loss)
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
