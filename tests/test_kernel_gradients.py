"""Selected-channel kernel gradients (`kernel_gradients`) and their use in `SubnetworkModel`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_medyate as kmd
from keras_medyate import kernel_gradients
from tests.helpers import random_data, small_cnn

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _dense_and_selected(layer, input_shape, channels, seed=0):
    """(TF's whole-kernel gradient, the selected one) of sum(y * w) for random w."""
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=input_shape).astype("float32"))
    layer.build(x.shape)
    with tf.GradientTape() as tape:
        tape.watch(layer.kernel.value)
        y = layer(x)
        weights = tf.constant(rng.normal(size=y.shape).astype("float32"))
        loss = tf.reduce_sum(y * weights)
    dense = tape.gradient(loss, layer.kernel.value).numpy()
    mask = np.zeros(input_shape[-1], np.float32)
    mask[channels] = 1.0
    channels = kernel_gradients.selected_channels(tf.constant(mask))
    selected = kernel_gradients.selected_kernel_gradient(
        layer, kernel_gradients.gather_channels(x, channels), weights, channels,
        tf.constant(mask)).numpy()
    return dense, selected


@pytest.mark.parametrize("layer, input_shape, channels", [
    (lambda: keras.layers.Conv2D(5, 3, padding="same"), (2, 7, 7, 6), [0, 2, 5]),
    (lambda: keras.layers.Conv2D(5, 3, strides=2, padding="valid"), (2, 9, 8, 6), [1, 4]),
    (lambda: keras.layers.Conv2D(4, (1, 3), strides=(2, 1), padding="same", use_bias=False),
     (3, 6, 5, 4), [3]),
    (lambda: keras.layers.DepthwiseConv2D(3, padding="same"), (2, 6, 6, 5), [0, 3, 4]),
    (lambda: keras.layers.DepthwiseConv2D(5, strides=2, depth_multiplier=2, padding="same"),
     (2, 9, 9, 4), [1, 2]),
    (lambda: keras.layers.Dense(3), (4, 6), [0, 5]),
    (lambda: keras.layers.Dense(3), (2, 3, 3, 6), [2, 3, 4]),
])
def test_selected_gradient_is_the_dense_slice_and_zero_elsewhere(layer, input_shape, channels):
    layer = layer()
    dense, selected = _dense_and_selected(layer, input_shape, channels)
    axis = 0 if isinstance(layer, keras.layers.Dense) else 2
    others = np.setdiff1d(np.arange(dense.shape[axis]), channels)
    np.testing.assert_allclose(np.take(selected, channels, axis), np.take(dense, channels, axis),
                               rtol=1e-5, atol=1e-5)
    assert not np.take(selected, others, axis).any()


def test_an_empty_mask_selects_channel_zero_only():
    assert kernel_gradients.selected_channels(tf.constant([0.0, 0.0, 0.0])).numpy().tolist() == [0]
    channels = kernel_gradients.selected_channels(tf.constant([0.0, 1.0, 1.0]))
    assert channels.numpy().tolist() == [1, 2]


@pytest.mark.parametrize("layer, expected", [
    (keras.layers.Conv2D(4, 3), True),
    (keras.layers.Conv2D(4, 3, activation="relu"), False),
    (keras.layers.Conv2D(4, 3, groups=2), False),
    (keras.layers.Conv2D(4, 3, dilation_rate=2), False),
    (keras.layers.DepthwiseConv2D(3), True),
    (keras.layers.SeparableConv2D(4, 3), False),
    (keras.layers.Dense(3), True),
    (keras.layers.Dense(3, activation="softmax"), False),
])
def test_supports_only_what_it_computes(layer, expected):
    assert kernel_gradients.supports(layer) is expected


def _trained_two_epochs(kernel_gradients_mode, optimizer, builder=small_cnn, seed=3):
    keras.utils.set_random_seed(seed)
    model = builder()
    plan = kmd.plan(model, budget=600)
    trainer = kmd.SubnetworkModel(model, plan, kernel_gradients=kernel_gradients_mode)
    trainer.compile(optimizer=optimizer(), loss=LOSS)
    trainer.set_selection(np.arange(0, plan.pool.size, 3), allow_over_budget=True)
    x, y = random_data(8)
    trainer.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return trainer


@pytest.mark.parametrize("optimizer", [lambda: keras.optimizers.SGD(0.1, momentum=0.9),
                                       lambda: keras.optimizers.Adam(0.01)])
def test_selected_and_dense_kernel_gradients_train_the_same_weights(optimizer):
    selected = _trained_two_epochs("selected", optimizer)
    dense = _trained_two_epochs("dense", optimizer)
    assert selected._taps is not None and dense._taps is None
    for name, values in selected.kernel_values().items():
        np.testing.assert_allclose(values, dense.kernel_values()[name], rtol=1e-5, atol=1e-5,
                                   err_msg=name)
    mask = selected.plan.pool.flat_mask(selected.current_selection()) > 0
    np.testing.assert_allclose(selected.channel_norms("last")[mask],
                               dense.channel_norms("last")[mask], rtol=1e-4, atol=1e-6)
    assert not selected.channel_norms("last")[~mask].any()


def test_layers_the_selected_path_cannot_take_use_the_dense_gradient():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu",
                            name="fused")(inputs)
    x = keras.layers.Conv2D(8, 1, name="plain")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    plan = kmd.plan(model, budget=400)  # both layers in the search space
    trainer = kmd.SubnetworkModel(model, plan)
    assert trainer._taps.layer_names == ["plain"]
    before = {n: v.copy() for n, v in trainer.kernel_values().items()}
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    trainer.set_selection(np.arange(plan.pool.size), allow_over_budget=True)
    trainer.fit(*random_data(8), epochs=1, verbose=0)
    assert all(not np.array_equal(before[n], v) for n, v in trainer.kernel_values().items())


def test_an_oracle_switches_an_auto_model_to_dense_kernel_gradients():
    x, y = random_data(8)
    for mode, expect_error in (("auto", False), ("selected", True)):
        model = small_cnn()
        plan = kmd.plan(model, budget=600)
        trainer = kmd.SubnetworkModel(model, plan, kernel_gradients=mode)
        trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
        resampler = kmd.ChannelResampler(plan, strategy=kmd.strategies.DetRGN(probe_data=(x, y)))
        if expect_error:
            with pytest.raises(ValueError, match="Strategy 'det_rgn' reads the gradient norms"):
                trainer.fit(x, y, epochs=1, verbose=0, callbacks=[resampler])
            continue
        trainer.fit(x, y, epochs=2, verbose=0, callbacks=[resampler])
        assert trainer._taps is None
        # Every channel's norm is measured, trained or not.
        assert (trainer.channel_norms("last") > 0).all()
    with pytest.raises(ValueError, match="kernel_gradients"):
        kmd.SubnetworkModel(model, plan, kernel_gradients="sparse")


def test_channels_of_layers_with_no_selection_read_a_zero_norm():
    keras.utils.set_random_seed(0)
    model = small_cnn()
    plan = kmd.plan(model, budget=600)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    last = plan.layers[-1]
    offset = plan.pool.offsets[plan.layers.index(last)]
    trainer.set_selection(offset + np.arange(plan.layer_info(last).num_channels),
                          allow_over_budget=True)
    trainer.fit(*random_data(8), batch_size=8, epochs=1, verbose=0)
    norms = trainer.channel_norms("last")
    # The other layers' placeholder channel 0 is differentiated, not trained: 0.
    assert not norms[:offset].any() and norms[offset:].all()


def test_an_xla_compiled_step_uses_dense_kernel_gradients():
    keras.utils.set_random_seed(0)
    x, y = random_data(8)
    trained = {}
    for jit_compile in (False, True):
        keras.utils.set_random_seed(0)
        model = small_cnn()
        plan = kmd.plan(model, budget=600)
        trainer = kmd.SubnetworkModel(model, plan)
        trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS, jit_compile=jit_compile)
        trainer.set_selection(np.arange(0, plan.pool.size, 2), allow_over_budget=True)
        trainer.fit(x, y, batch_size=8, epochs=1, verbose=0)
        trained[jit_compile] = trainer.kernel_values()
    for name, values in trained[False].items():
        np.testing.assert_allclose(trained[True][name], values, rtol=1e-4, atol=1e-5)


def test_mixed_precision_trains_the_selected_channels_like_the_dense_path():
    x, y = random_data(8)
    trained, initial = {}, {}
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        for mode in ("selected", "dense"):
            keras.utils.set_random_seed(0)
            model = small_cnn()
            plan = kmd.plan(model, budget=600)
            trainer = kmd.SubnetworkModel(model, plan, kernel_gradients=mode)
            trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
            trainer.set_selection(np.arange(0, plan.pool.size, 2), allow_over_budget=True)
            initial[mode] = trainer.kernel_values()
            trainer.fit(x, y, batch_size=8, epochs=1, verbose=0)
            trained[mode] = trainer.kernel_values()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for name, values in trained["dense"].items():
        assert trained["selected"][name].dtype == np.float32
        # The step moves a kernel by ~1e-3: the tolerance is 1 % of that move
        # (float16 sums), so a kernel that did not train cannot pass.
        update = np.abs(values - initial["dense"][name]).max()
        assert update > 1e-4, name
        np.testing.assert_allclose(trained["selected"][name], values, rtol=0, atol=1e-2 * update,
                                   err_msg=name)
        np.testing.assert_array_equal(initial["selected"][name], initial["dense"][name])


def _regularized_model():
    """A model of this test only: each kernel kind with a regularizer, activations
    as separate layers (so every regularized layer takes the selected path)."""
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", kernel_regularizer=keras.regularizers.L2(0.5),
                            name="conv_l2")(inputs)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise_l1",
                                     depthwise_regularizer=keras.regularizers.L1(0.05))(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.Conv2D(8, 1, name="conv_plain")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(7, kernel_regularizer=keras.regularizers.L1L2(l1=0.01, l2=0.2),
                           name="dense_l1l2")(x)
    x = keras.layers.ReLU(name="relu3")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="regularized")


@pytest.mark.parametrize("optimizer", [lambda: keras.optimizers.SGD(0.05),
                                       lambda: keras.optimizers.Adam(0.01)], ids=["sgd", "adam"])
def test_kernel_regularizers_are_honoured_by_selected_kernel_gradients(optimizer):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(16, 10, 10, 3)).astype("float32")
    y = (np.arange(16) % 3).astype("int32")
    trained, initial = {}, None
    for mode in ("selected", "dense"):
        keras.utils.set_random_seed(11)
        model = _regularized_model()
        plan = kmd.plan(model, budget=300)
        trainer = kmd.SubnetworkModel(model, plan, kernel_gradients=mode)
        if mode == "selected":
            assert set(trainer._taps.layer_names) == set(plan.layers)
            initial = trainer.kernel_values()
        trainer.compile(optimizer=optimizer(), loss=LOSS)
        # Every other channel of every layer: regularized channels train and others stay.
        selection = np.arange(0, plan.pool.size, 2)
        trainer.set_selection(selection, allow_over_budget=True)
        trainer.fit(x, y, batch_size=8, epochs=3, verbose=0)
        trained[mode] = trainer.kernel_values()
    for name, values in trained["dense"].items():
        np.testing.assert_allclose(trained["selected"][name], values, rtol=1e-6, atol=1e-6,
                                   err_msg=name)
    # The regularizers did move the weights, well beyond the tolerance.
    for name in ("conv_l2", "depthwise_l1", "dense_l1l2"):
        assert np.abs(trained["selected"][name] - initial[name]).max() > 1e-3, name


def test_the_regularizer_gradient_is_its_penalty_derivative():
    layer = keras.layers.Conv2D(3, 1, kernel_regularizer=keras.regularizers.L2(0.5))
    layer.build((None, 4, 4, 2))
    gradient = kernel_gradients.regularizer_gradient(layer.kernel, lambda loss: 2.0 * loss)
    np.testing.assert_allclose(gradient.numpy(), 2.0 * 2 * 0.5 * layer.kernel.numpy(), rtol=1e-6)
    plain = keras.layers.Dense(2)
    plain.build((None, 3))
    assert kernel_gradients.regularizer_gradient(plain.kernel, lambda loss: loss) is None
