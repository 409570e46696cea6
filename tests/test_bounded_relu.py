"""`BoundedReLU`: Keras' clipped ReLU values with a one-mask gradient."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medyate.models import BoundedReLU


@pytest.mark.parametrize("bound", [2.0703125, 4.5, 6.0, None])
def test_values_are_keras_relu_bit_for_bit_and_gradient_is_one_mask(bound):
    rng = np.random.default_rng(0)
    values = rng.normal(scale=4.0, size=(3, 5, 5, 7)).astype("float32")
    values.flat[:4] = [0.0, -0.0, bound or 1.0, np.nextafter(np.float32(bound or 1.0), 0)]
    x = tf.constant(values)
    layer, reference = BoundedReLU(max_value=bound), keras.layers.ReLU(max_value=bound)
    upstream = tf.constant(rng.normal(size=values.shape).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y, y_reference = layer(x), reference(x)
    np.testing.assert_array_equal(y.numpy(), y_reference.numpy())
    gradient = tape.gradient(y, x, output_gradients=upstream).numpy()
    inside = (values > 0) & (values < (np.inf if bound is None else bound))
    np.testing.assert_array_equal(gradient, np.where(inside, upstream.numpy(), 0.0))
    # Keras' own gradient agrees everywhere but exactly at the bound (it passes there).
    at_bound = values == bound
    keras_gradient = tape.gradient(y_reference, x, output_gradients=upstream).numpy()
    np.testing.assert_array_equal(gradient[~at_bound], keras_gradient[~at_bound])


def test_is_a_keras_relu_and_saves(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, BoundedReLU(max_value=3.25, name="clip")(inputs))
    assert isinstance(model.get_layer("clip"), keras.layers.ReLU)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.get_layer("clip")) is BoundedReLU
    assert loaded.get_layer("clip").max_value == 3.25
    x = np.array([[-1.0, 1.0, 3.25, 9.0]], "float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), [[0.0, 1.0, 3.25, 3.25]])


def test_refuses_leaky_or_thresholded_relus():
    with pytest.raises(ValueError, match="negative_slope=0.1"):
        BoundedReLU(max_value=3.0, negative_slope=0.1)
