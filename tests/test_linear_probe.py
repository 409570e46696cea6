"""`fit_classifier`: a converged, L2-chosen linear probe written into the head."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medyate import linear_probe
from keras_medyate.linear_probe import fit_classifier


def blobs(num_classes=3, per_class=40, size=8, seed=0):
    """Images whose class sets the mean of one colour channel (linearly separable
    after pooling), plus noise. `per_class` may be a list of counts."""
    rng = np.random.default_rng(seed)
    counts = per_class if isinstance(per_class, list) else [per_class] * num_classes
    labels = np.repeat(np.arange(num_classes), counts)
    x = rng.normal(scale=0.5, size=(len(labels), size, size, 3)).astype("float32")
    for c in range(num_classes):
        x[labels == c, :, :, c % 3] += 1.5 * (1 + c // 3)
    order = rng.permutation(len(labels))
    return x[order], labels[order].astype("int32")


def pooled_model(classes=3, activation="softmax", size=8, name="head"):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation=activation, name=name)(x)
    return keras.Model(inputs, outputs)


def predictions(model, x):
    return np.argmax(np.asarray(model(x, training=False)), axis=-1)


def test_softmax_head_fits_and_is_written():
    x, y = blobs()
    model = pooled_model()
    backbone_before = model.get_layer("conv").get_weights()[0].copy()
    report = fit_classifier(model, (x, y), verbose=0)
    assert report.classifier == "head"
    assert report.train_accuracy == pytest.approx(np.mean(predictions(model, x) == y))
    assert report.train_accuracy > 0.9
    assert report.l2 in linear_probe.DEFAULT_L2_GRID
    assert set(report.validation_accuracies) == set(linear_probe.DEFAULT_L2_GRID)
    assert report.validation_accuracy == report.validation_accuracies[report.l2]
    assert report.num_examples == len(y) and report.num_features == 6
    assert report.converged and report.seconds > 0
    # The backbone is untouched: only the head was written.
    np.testing.assert_array_equal(model.get_layer("conv").get_weights()[0], backbone_before)


def test_solution_is_the_regularised_optimum():
    """At the solution the gradient of the objective (mean cross-entropy on the
    standardised features + l2/2 ||W||^2) vanishes: checked with TF autodiff."""
    x, y = blobs(per_class=30)
    model = pooled_model(activation="linear")
    l2 = 1e-2
    fit_classifier(model, (x, y), l2=l2, verbose=0)
    features = keras.Model(model.inputs[0], model.get_layer("head").input)(x).numpy()
    features = features.astype(np.float64)
    mean, scale = features.mean(0), features.std(0)
    kernel, bias = model.get_layer("head").get_weights()
    # Back to the standardised parameterisation the solver used.
    w = tf.Variable(kernel.astype(np.float64) * scale[:, None])
    b = tf.Variable(bias.astype(np.float64) + mean @ kernel.astype(np.float64))
    z = (features - mean) / scale
    with tf.GradientTape() as tape:
        logits = z @ w + b
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        loss += 0.5 * l2 * tf.reduce_sum(w**2)
    grad_w, grad_b = tape.gradient(loss, [w, b])
    assert np.abs(grad_w.numpy()).max() < 1e-4
    assert np.abs(grad_b.numpy()).max() < 1e-4


def test_l2_is_chosen_on_held_out_data():
    x, y = blobs(per_class=[140, 30, 30])
    model = pooled_model()
    report = fit_classifier(model, (x, y), l2=(1e-3, 100.0), verbose=0)
    # A huge L2 shrinks the kernel to nothing: the bias then predicts the
    # majority class, which is worse on held-out data.
    assert report.l2 == 1e-3
    assert report.validation_accuracies[1e-3] > report.validation_accuracies[100.0]


def test_dataset_input_one_hot_labels_and_flattened_features():
    x, y = blobs(size=6)
    inputs = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(3, name="head")(h)
    model = keras.Model(inputs, outputs)
    data = tf.data.Dataset.from_tensor_slices((x, np.eye(3, dtype="float32")[y])).batch(16)
    report = fit_classifier(model, data, verbose=0)
    assert report.num_features == 4 * 4 * 2 and report.num_examples == len(y)
    assert report.train_accuracy == pytest.approx(np.mean(predictions(model, x) == y))


def test_nested_backbone_and_sequential():
    x, y = blobs()
    backbone = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c"),
                                 keras.layers.GlobalAveragePooling2D()], name="backbone")
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(backbone(inputs))
    nested = keras.Model(inputs, outputs)
    assert fit_classifier(nested, (x, y), verbose=0).train_accuracy > 0.8
    sequential = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                                   keras.layers.GlobalAveragePooling2D(),
                                   keras.layers.Dense(3, name="head")])
    assert fit_classifier(sequential, (x, y), verbose=0).train_accuracy > 0.8


def test_keras_applications_conv_head():
    """MobileNetV3's head is a 1x1 Conv2D on a 1x1 map followed by Flatten."""
    model = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), weights=None, classes=3, include_preprocessing=False)
    x, y = blobs(size=32, per_class=10)
    with pytest.warns(UserWarning, match="constant"):  # random weights, frozen BatchNorm
        report = fit_classifier(model, (x, y), verbose=0)
    assert report.classifier == "logits"
    assert report.train_accuracy == pytest.approx(np.mean(predictions(model, x) == y))


def test_unsupported_heads_are_explained():
    x, y = blobs()
    relu = pooled_model(activation="relu")
    with pytest.raises(ValueError, match=r"activation 'relu'.*Supported heads"):
        fit_classifier(relu, (x, y), verbose=0)
    inputs = keras.Input((8, 8, 3))
    spatial = keras.Model(inputs, keras.layers.Dense(3, name="head")(inputs))
    with pytest.raises(ValueError, match=r"not on a feature vector.*Pool or flatten"):
        fit_classifier(spatial, (x, y), verbose=0)
    with pytest.raises(ValueError, match=r"head 'head' has 2 outputs"):
        fit_classifier(pooled_model(classes=2), (x, y), verbose=0)
    with pytest.raises(ValueError, match=r"`l2` must be"):
        fit_classifier(pooled_model(), (x, y), l2=-1.0, verbose=0)
    with pytest.raises(ValueError, match=r"exceed max_feature_bytes"):
        fit_classifier(pooled_model(), (x, y), max_feature_bytes=100, verbose=0)


def test_constant_features_warn_and_say_what_to_do():
    """A backbone whose output ignores its input (random weights, frozen BatchNorm:
    features ~1e-11) leaves the probe at chance: that must not pass in silence."""
    x, y = blobs()
    model = pooled_model()
    conv = model.get_layer("conv")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel * 1e-11, bias * 0])
    with pytest.warns(UserWarning, match=r"(?s)6 of the 6 features feeding 'head' are constant"
                                         r".*chance.*load pretrained weights"):
        fit_classifier(model, (x, y), verbose=0)


def test_informative_features_do_not_warn():
    import warnings  # noqa: PLC0415

    x, y = blobs()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", UserWarning)
        report = fit_classifier(pooled_model(), (x, y), verbose=0)
    assert not [w for w in seen if issubclass(w.category, UserWarning)], [
        str(w.message) for w in seen]
    assert report.train_accuracy > 0.9
