"""SubnetworkModel + ChannelResampler inside `model.fit`."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_medyate as kmd
from keras_medyate.strategies import base
from tests.helpers import interrupt_at as interrupt_callback
from tests.helpers import random_data, small_cnn

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class SliceRecorder(keras.callbacks.Callback):
    """Checks, every epoch, that exactly the selected slices changed."""

    def __init__(self, trainer, plan, resampler):
        super().__init__()
        self.trainer, self.plan, self.resampler = trainer, plan, resampler
        self.changed_selected = 0
        self.epochs_checked = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.before = {n: self.plan.layer_info(n).kernel.numpy().copy() for n in self.plan.layers}
        self.head_before = self.plan.layer_info(self.plan.classifier).kernel.numpy().copy()
        self.biases_before = {n: self.plan.layer_info(n).layer.bias.numpy().copy()
                              for n in self.plan.layers}

    def on_epoch_end(self, epoch, logs=None):
        selection = self.resampler.history[epoch].channels
        for name in self.plan.layers:
            info = self.plan.layer_info(name)
            after = info.kernel.numpy()
            selected = np.zeros(info.num_channels, bool)
            selected[selection[name]] = True
            before_frozen = np.take(self.before[name], np.flatnonzero(~selected), axis=info.channel_axis)
            after_frozen = np.take(after, np.flatnonzero(~selected), axis=info.channel_axis)
            np.testing.assert_array_equal(before_frozen, after_frozen,
                                          err_msg=f"frozen slice of {name} moved")
            if selected.any():
                moved = np.take(after, np.flatnonzero(selected), axis=info.channel_axis) != \
                    np.take(self.before[name], np.flatnonzero(selected), axis=info.channel_axis)
                self.changed_selected += int(moved.any())
            np.testing.assert_array_equal(self.biases_before[name], info.layer.bias.numpy())
        assert not np.array_equal(self.head_before,
                                  self.plan.layer_info(self.plan.classifier).kernel.numpy())
        self.epochs_checked += 1


@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: keras.optimizers.SGD(0.05),
        lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        lambda: keras.optimizers.Adam(0.01),
        lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
        lambda: keras.optimizers.RMSprop(0.01),
    ],
    ids=["sgd", "momentum", "adam", "adamw", "rmsprop"],
)
def test_non_selected_slices_stay_bit_identical(optimizer):
    model = small_cnn()
    bn = model.get_layer("stem_bn")
    bn_stats = [bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()]
    plan = kmd.plan(model, budget=600)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=optimizer(), loss=LOSS)
    resampler = kmd.ChannelResampler(plan, strategy="trady", seed=3)
    recorder = SliceRecorder(trainer, plan, resampler)
    x, y = random_data(32)
    trainer.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[resampler, recorder])
    assert recorder.epochs_checked == 3
    assert recorder.changed_selected > 0
    # BatchNorm ran in inference mode: its moving statistics did not move.
    np.testing.assert_array_equal(bn_stats[0], bn.moving_mean.numpy())
    np.testing.assert_array_equal(bn_stats[1], bn.moving_variance.numpy())


def test_trained_weights_live_in_the_original_model():
    model = small_cnn()
    plan = kmd.plan(model, budget=600)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    head_before = model.get_layer("classifier").kernel.numpy().copy()
    x, y = random_data(16)
    trainer.fit(x, y, epochs=1, verbose=0, callbacks=[kmd.ChannelResampler(plan)])
    assert not np.array_equal(head_before, model.get_layer("classifier").kernel.numpy())
    np.testing.assert_allclose(model.predict(x, verbose=0), trainer.predict(x, verbose=0))


def test_optimizer_slots_exist_only_for_updated_variables():
    model = small_cnn()
    plan = kmd.plan(model, budget=600, layers=["b2_conv"])
    trainer = kmd.SubnetworkModel(model, plan)
    assert [v.path.split("/")[-2:] for v in trainer.trainable_variables] == [
        ["b2_conv", "kernel"], ["classifier", "kernel"], ["classifier", "bias"]]
    trainer.compile(optimizer=keras.optimizers.Adam(0.01), loss=LOSS)
    x, y = random_data(8)
    trainer.fit(x, y, epochs=1, verbose=0, callbacks=[kmd.ChannelResampler(plan)])
    slot_shapes = sorted(tuple(v.shape) for v in trainer.optimizer.variables if len(v.shape))
    assert slot_shapes == sorted([(3,), (3,), (12, 3), (12, 3), (3, 3, 8, 12), (3, 3, 8, 12)])


def test_backprop_stops_at_the_earliest_search_space_layer():
    model = small_cnn(batchnorm=False)
    plan = kmd.plan(model, budget=600, layers=["b2_conv"])
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    x, y = random_data(8)

    # autograph=False: the step has no tensor-dependent Python control flow,
    # and a plain trace does not go through autograph's conversion cache
    # (which, in a long pytest session, once returned another method's
    # converted code for `train_step`).
    @tf.function(autograph=False)
    def one_step(x, y):
        return trainer.train_step((x, y))

    graph = one_step.get_concrete_function(tf.constant(x), tf.constant(y)).graph
    backprop = [op for op in graph.get_operations() if "Backprop" in op.type]
    # Only b2_conv is differentiated; no layer below it is. TF's gradient of
    # the conv emits an input gradient and a whole-kernel gradient that feed
    # nothing (pruned when the function runs); the kernel gradient used is the
    # selected-channel one.
    assert backprop and all("/b2_conv" in op.name for op in backprop), [o.name for o in backprop]
    used = [op for op in backprop if any(t.consumers() for t in op.outputs)]
    assert [(op.type, op.name.split("/")[:2]) for op in used] == [
        ("Conv2DBackpropFilter", ["selected_kernel_gradient", "b2_conv"])]


def test_mask_changes_never_retrace_the_train_step():
    traces = []

    class CountingTrainer(kmd.SubnetworkModel):
        def train_step(self, data):
            traces.append(1)  # runs only while tracing
            return super().train_step(data)

    model = small_cnn()
    plan = kmd.plan(model, budget=600)
    trainer = CountingTrainer(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS, metrics=["accuracy"])
    resampler = kmd.ChannelResampler(plan, strategy="medyate", seed=0)
    x, y = random_data(32)
    trainer.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[resampler])
    after_first_epoch = len(traces)
    trainer.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[resampler])
    selections = [h.channels for h in resampler.history.values()]
    assert any(not np.array_equal(selections[0][n], selections[1][n]) for n in plan.layers)
    assert len(traces) == after_first_epoch


def test_channel_norms_are_the_gradient_norms_of_the_step():
    model = small_cnn(batchnorm=False)
    plan = kmd.plan(model, budget=600)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.0), loss=LOSS)
    x, y = random_data(8)
    trainer.set_selection(np.arange(plan.pool.size), allow_over_budget=True)
    trainer.fit(x, y, batch_size=8, epochs=1, verbose=0)
    with tf.GradientTape() as tape:
        loss = LOSS(y, model(x, training=True))
    kernels = [plan.layer_info(n).kernel for n in plan.layers]
    grads = tape.gradient(loss, kernels)
    expected = np.concatenate([
        np.sqrt((np.moveaxis(g.numpy(), plan.layer_info(n).channel_axis, 0) ** 2)
                .reshape(plan.layer_info(n).num_channels, -1).sum(1))
        for n, g in zip(plan.layers, grads)])
    np.testing.assert_allclose(trainer.channel_norms("mean"), expected, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(trainer.channel_norms("last"), expected, rtol=1e-5, atol=1e-8)


def test_logs_report_budget_channels_and_exploration():
    model = small_cnn()
    plan = kmd.plan(model, budget=600)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    resampler = kmd.ChannelResampler(plan, strategy="medyate", seed=0)
    x, y = random_data(16)
    history = trainer.fit(x, y, epochs=3, verbose=0, callbacks=[resampler])
    for epoch in range(3):
        record = resampler.history[epoch]
        assert history.history["channels_selected"][epoch] == record.num_channels
        assert history.history["budget_used"][epoch] == pytest.approx(record.cost_units / 600)
        assert history.history["explored"][epoch] == pytest.approx(record.explored)
        assert 0 < record.cost_units <= 600
    assert history.history["explored"][2] >= history.history["explored"][0]


class LeastRecentSelector(base.ChannelSelector):
    """A user-defined strategy with its own state: the channels trained longest
    ago first (never-trained ones first of all), ties broken at random."""

    name = "least_recent"

    def initial_state(self):
        return {"last_trained": np.full(self.pool.size, -1, np.int64),
                "rounds": np.array(0, np.int64)}

    def propose(self, context):
        order = np.lexsort((context.rng.permutation(self.pool.size), self.state["last_trained"]))
        selected = self.fill_in_order(order)
        self.state["last_trained"][selected] = self.state["rounds"]
        self.state["rounds"] = self.state["rounds"] + 1
        return selected


def run_with_backup(tmp_path, epochs, interrupt_at=None, seed=5, strategy="medyate"):
    keras.utils.set_random_seed(0)
    model = small_cnn()
    plan = kmd.plan(model, budget=600)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss=LOSS)
    resampler = kmd.ChannelResampler(plan, strategy=strategy, seed=seed)
    callbacks = [resampler]
    if tmp_path is not None:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(str(tmp_path)))
    if interrupt_at is not None:
        callbacks.append(interrupt_callback(interrupt_at))
    x, y = random_data(32)
    try:
        trainer.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    except RuntimeError:
        pass
    return model, resampler


def assert_resumes_exactly(tmp_path, strategy):
    """Interrupted at epoch 3 and resumed = one uninterrupted run: same
    selections, same weights; returns (reference, resumed) resamplers."""
    reference_model, reference = run_with_backup(None, epochs=5, strategy=strategy)
    run_with_backup(tmp_path / "backup", epochs=5, interrupt_at=3, strategy=strategy)
    resumed_model, resumed = run_with_backup(tmp_path / "backup", epochs=5, strategy=strategy)
    assert sorted(resumed.history) == [3, 4]  # only the epochs it ran
    for epoch in (3, 4):
        for name in reference.history[epoch].channels:
            np.testing.assert_array_equal(reference.history[epoch].channels[name],
                                          resumed.history[epoch].channels[name])
    for a, b in zip(reference_model.get_weights(), resumed_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    return reference, resumed


def test_backup_and_restore_resumes_exactly(tmp_path):
    assert_resumes_exactly(tmp_path, "medyate")


def test_user_defined_selector_state_resumes_exactly_and_is_saved(tmp_path):
    reference, resumed = assert_resumes_exactly(tmp_path, LeastRecentSelector)
    # Its state lives in the model: the resumed run ends where the reference did.
    for name in ("last_trained", "rounds"):
        np.testing.assert_array_equal(reference.model.selection_state[name].numpy(),
                                      resumed.model.selection_state[name].numpy())
    assert int(resumed.model.selection_state["rounds"].numpy()) == 5
    # Every channel was trained once before any was trained twice.
    first_rounds = [reference.history[e].channels for e in range(3)]
    trained = np.concatenate([reference.plan.pool.from_dict(c) for c in first_rounds])
    assert len(np.unique(trained)) == len(trained)
    # A `.keras` file keeps it too.
    reference.model.save(tmp_path / "least_recent.keras")
    loaded = keras.models.load_model(tmp_path / "least_recent.keras")
    np.testing.assert_array_equal(loaded.selection_state["last_trained"].numpy(),
                                  reference.model.selection_state["last_trained"].numpy())
    assert loaded.selection_state["last_trained"].dtype == "int64"


def test_oracle_uses_probe_data_before_the_first_epoch():
    model = small_cnn()
    plan = kmd.plan(model, budget=600)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS)
    x, y = random_data(16)
    resampler = kmd.ChannelResampler(
        plan, strategy=kmd.strategies.DetRaw(probe_data=(x, y), probe_steps=1))
    trainer.fit(x, y, epochs=2, verbose=0, callbacks=[resampler])
    norms = trainer.measure_channel_norms((x, y))
    assert norms.shape == (plan.pool.size,) and np.all(norms >= 0)
    assert all(0 < h.cost_units <= 600 for h in resampler.history.values())


def test_every_strategy_runs_in_fit(tmp_path):
    x, y = random_data(16)
    for strategy in kmd.STRATEGIES:
        model = small_cnn()
        plan = kmd.plan(model, budget=600)
        trainer = kmd.SubnetworkModel(model, plan)
        trainer.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS)
        probe = {"probe_data": (x, y)} if kmd.strategies.get(strategy).needs_all_norms else {}
        resampler = kmd.ChannelResampler(plan, strategy=kmd.strategies.create(strategy, **probe),
                                         log_dir=str(tmp_path / strategy) if strategy == "medyate" else None)
        trainer.fit(x, y, epochs=2, verbose=0, callbacks=[resampler])
        cost = resampler.history[1].cost_units
        if strategy == "full":
            assert cost == plan.search_space_units
        elif strategy == "classifier":
            assert cost == 0
        else:
            assert 0 < cost <= 600, strategy
    assert os.listdir(tmp_path / "medyate")  # TensorBoard event file written


def test_resampler_config_roundtrip():
    model = small_cnn()
    plan = kmd.plan(model, budget="4KB")
    resampler = kmd.ChannelResampler(plan, strategy="trady", seed=7, fill="skip")
    config = resampler.get_config()
    clone = kmd.ChannelResampler.from_config(config)
    assert clone.get_config() == config
    assert clone.plan.layers == plan.layers and clone.plan.budget_units == 1024


def _nested_model():
    backbone = small_cnn(name="backbone", num_classes=4)
    backbone = keras.Model(backbone.inputs, backbone.get_layer("b2_conv").output, name="backbone")
    inputs = keras.Input((16, 16, 3))
    x = backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="nested")


def _sequential_model():
    return keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(8, 3, strides=2, name="c1"),
        keras.layers.ReLU(),
        keras.layers.DepthwiseConv2D(3, name="dw"),
        keras.layers.Conv2D(8, 1, name="pw"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, name="head"),
    ], name="sequential_net")


@pytest.mark.parametrize("builder, expected_first", [
    (_sequential_model, "c1"),
    (small_cnn, "stem"),
    (_nested_model, "backbone/stem"),
])
def test_works_on_sequential_functional_and_nested(builder, expected_first):
    model = builder()
    x, y = random_data(16)
    ranking = kmd.rank_layers(model, (x, y), epochs=1, batch_size=8)
    plan = kmd.plan(model, budget=300, ranking=ranking)
    assert kmd.plan(model, budget=300).layers[0] == expected_first
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS, metrics=["accuracy"])
    resampler = kmd.ChannelResampler(plan, strategy="medyate")
    history = trainer.fit(x, y, epochs=2, verbose=0, callbacks=[resampler])
    assert np.isfinite(history.history["loss"]).all()
    assert all(h.cost_units <= 300 for h in resampler.history.values())


@pytest.mark.slow  # 4-5 s; the same flow on small models: test_works_on_sequential_functional_and_nested
def test_works_on_keras_applications_mobilenetv2():
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                           weights=None, classes=5)
    plan = kmd.plan(model, budget="110KB")
    assert plan.classifier == "predictions" and len(plan.layers) == 52
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05),
                    loss=keras.losses.SparseCategoricalCrossentropy())
    resampler = kmd.ChannelResampler(plan, strategy="medyate")
    x, y = random_data(8, size=32, num_classes=5)
    trainer.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[resampler])
    assert all(h.cost_units <= plan.budget_units for h in resampler.history.values())
    assert resampler.history[1].explored > resampler.history[0].explored


def test_keras_save_and_load_keep_weights_masks_and_state(tmp_path):
    model = small_cnn()
    plan = kmd.plan(model, budget=600)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS)
    x, y = random_data(16)
    trainer.fit(x, y, epochs=2, verbose=0, callbacks=[kmd.ChannelResampler(plan, seed=1)])
    trainer.save(tmp_path / "trainer.keras")
    loaded = keras.models.load_model(tmp_path / "trainer.keras")
    assert isinstance(loaded, kmd.SubnetworkModel)
    assert loaded.plan.layers == plan.layers and loaded.plan.budget_units == 600
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), trainer.predict(x, verbose=0))
    np.testing.assert_array_equal(loaded.current_selection(), trainer.current_selection())
    assert int(loaded.selection_state.epochs_selected.numpy()) == 2
    np.testing.assert_array_equal(loaded.selection_state["channel_seen"].numpy(),
                                  trainer.selection_state["channel_seen"].numpy())


def _gradient_ops(trainer, x, y):
    """Op types of the traced training step that belong to backprop."""
    step = tf.function(trainer.train_step, autograph=False)  # see one_step above
    graph = step.get_concrete_function((tf.TensorSpec(x.shape, tf.float32),
                                        tf.TensorSpec(y.shape, tf.int32))).graph
    return {op.type for op in graph.get_operations()
            if "Backprop" in op.type or op.type.endswith("Grad")}


def test_an_empty_selection_differentiates_only_the_head():
    keras.utils.set_random_seed(0)
    model = small_cnn()
    plan = kmd.plan(model, budget=600)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss=LOSS)
    x, y = random_data(16)
    trainer.set_selection(np.arange(5), allow_over_budget=True)
    assert {"Conv2DBackpropFilter", "Conv2DBackpropInput"} <= _gradient_ops(trainer, x, y)
    trainer.set_selection(np.array([], np.int64))
    assert not any("Conv" in op for op in _gradient_ops(trainer, x, y))

    # In fit: the classifier strategy moves the head and nothing else, and a
    # selection after empty epochs trains again (the step switches back).
    before = [w.copy() for w in model.get_weights()]
    trainer.fit(x, y, epochs=2, verbose=0,
                callbacks=[kmd.ChannelResampler(plan, strategy="classifier")])
    moved = {v.path for v, a in zip(model.weights, before) if not np.array_equal(v.numpy(), a)}
    assert moved == {"classifier/kernel", "classifier/bias"}
    trainer.fit(x, y, epochs=1, verbose=0, callbacks=[kmd.ChannelResampler(plan, "medyate")])
    moved = {v.path for v, a in zip(model.weights, before) if not np.array_equal(v.numpy(), a)}
    assert len(moved) > 2
