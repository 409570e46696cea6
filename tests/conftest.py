"""Shared fixtures: tiny models and random data, fast on 2 CPU cores."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get(
    "KERAS_MEDYATE_DATA_DIR", os.path.join(os.path.dirname(REPO), "shared", "data")
)


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


def random_data(n=32, size=16, num_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size, size, 3)).astype("float32")
    y = (np.arange(n) % num_classes).astype("int32")
    return x, y


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)
    yield
