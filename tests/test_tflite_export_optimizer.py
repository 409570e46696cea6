"""The Keras optimizer on the device: N `train` steps = N `SubnetworkModel` steps.

For every option of `keras.optimizers.SGD` the exporter reproduces (momentum,
Nesterov, clipnorm, global_clipnorm, clipvalue, weight decay with and
without exclusions, a warm-up + cosine schedule), the same optimizer object
is given to `export_training_model(optimizer=...)` and compiled into a
`SubnetworkModel`; both then train on the same batches through three
selections (one of them empty: the head-only step) and must agree on every
loss, every trained weight, every momentum buffer and the step counter,
while the non-selected slices stay bit-identical. Then: an optimizer that
already trained in Keras is carried over (step and momentum), what the
device refuses, the recipe `OnDeviceTrainer.fit` runs, the non-finite
guards, and MCUNet after an epoch of MeDyate (the issue's check).
"""

import keras
import numpy as np
import pytest

import keras_medyate as kmd
from keras_medyate import recipe

pytest.importorskip("ai_edge_litert", reason="needs the litert extra: pip install -e '.[litert]' "
                    "(included in '.[test]')")

from tests.helpers import export, keras_weight, random_data, small_cnn  # noqa: E402
from tests.test_tflite_export import randomize_batchnorm, randomize_biases  # noqa: E402
from tflite_export import OnDeviceTrainer, export_training_model  # noqa: E402
from tflite_export import optimizer as optimizer_lib  # noqa: E402
from tflite_export.on_device import NonFiniteLossError  # noqa: E402

BATCH = 4


def _cosine():
    return recipe.cosine_schedule(0.05, steps_per_epoch=2, epochs=4)


def _sgd_excluding_biases():
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9, weight_decay=0.05)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    return optimizer


def _nesterov_cosine_decay_not_biases():
    optimizer = keras.optimizers.SGD(_cosine(), momentum=0.9, nesterov=True, weight_decay=0.05)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    return optimizer


#: The default run covers every option in six exports; the slow run each alone.
OPTIMIZERS = {
    "plain": lambda: keras.optimizers.SGD(0.05),
    "momentum_clipnorm": lambda: keras.optimizers.SGD(0.05, momentum=0.9, clipnorm=1.0),
    "nesterov_cosine_decay_not_biases": _nesterov_cosine_decay_not_biases,
    "global_clipnorm": lambda: keras.optimizers.SGD(0.05, momentum=0.5, global_clipnorm=0.1),
    "clipvalue_weight_decay": lambda: keras.optimizers.SGD(0.05, clipvalue=0.005,
                                                           weight_decay=0.05),
    "recipe": lambda: recipe.recommended_optimizer(steps_per_epoch=2, epochs=4),
}
SLOW_OPTIMIZERS = {
    "momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    "nesterov": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "tight_clipnorm": lambda: keras.optimizers.SGD(0.05, clipnorm=0.05),
    "weight_decay": lambda: keras.optimizers.SGD(0.05, momentum=0.9, weight_decay=0.05),
    "weight_decay_not_biases": _sgd_excluding_biases,
    "cosine_momentum": lambda: keras.optimizers.SGD(_cosine(), momentum=0.9, clipnorm=1.0),
}
ALL_OPTIMIZERS = {**OPTIMIZERS, **SLOW_OPTIMIZERS}


def small_model():
    keras.utils.set_random_seed(0)
    model = small_cnn(size=16)
    randomize_batchnorm(model)
    randomize_biases(model)
    return model


def compiled(model, plan, optimizer):
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=optimizer,
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return trainer


def select(trainer, device, plan, selected):
    trainer.set_selection(np.asarray(selected, int), allow_over_budget=True)
    mask = np.zeros(plan.pool.size, np.float32)
    mask[selected] = 1.0
    device.set_mask(mask, allow_over_budget=True)


def keras_momentum(optimizer, model, key):
    *path, part = key.split("/")
    layer = model
    for name in path:
        layer = layer.get_layer(name)
    return optimizer.momentums[optimizer._get_variable_index(getattr(layer, part))].numpy()


def assert_weights_equal(device, model, rtol, where):
    for key, value in device.get_weights().items():
        expected = keras_weight(model, key)
        np.testing.assert_allclose(value, expected, rtol=rtol,
                                   atol=rtol * max(np.abs(expected).max(), 1e-12),
                                   err_msg=f"{key} differs from SubnetworkModel {where}")


def train_both(trainer, model, device, plan, x, y, phases, rtol=1e-5):
    """Trains both through `phases` (list of (selected indices, steps)); checks each step."""
    step = 0
    for selected, steps in phases:
        select(trainer, device, plan, selected)
        before = device.get_weights()
        for _ in range(steps):
            xb, yb = x[step * BATCH:(step + 1) * BATCH], y[step * BATCH:(step + 1) * BATCH]
            keras_loss = trainer.train_on_batch(xb, yb)
            keras_loss = keras_loss[0] if isinstance(keras_loss, list) else keras_loss
            assert device.train(xb, yb) == pytest.approx(float(keras_loss), rel=rtol)
            step += 1
        after = device.get_weights()
        for name in plan.layers:
            info = plan.layer_info(name)
            frozen = np.setdiff1d(np.arange(info.num_channels),
                                  plan.pool.to_dict(np.asarray(selected, int))[name])
            np.testing.assert_array_equal(
                np.take(after[f"{name}/kernel"], frozen, axis=info.channel_axis),
                np.take(before[f"{name}/kernel"], frozen, axis=info.channel_axis),
                err_msg=f"a non-selected slice of {name} moved")
        assert_weights_equal(device, model, rtol, f"after step {step}")
    return step


@pytest.fixture(scope="module")
def setting():
    model = small_model()
    pool = kmd.plan(model, budget=600).pool
    x, y = random_data(7 * BATCH, 16)
    rng = np.random.default_rng(0)
    first = np.flatnonzero(rng.random(pool.size) < 0.4)
    second = np.flatnonzero(rng.random(pool.size) < 0.4)
    # A budget both selections fit: the default (static) channel lists hold them.
    plan = kmd.plan(model, budget=int(max(pool.cost_of(first), pool.cost_of(second))))
    return model, plan, x, y, [(first, 3), ([], 1), (second, 3)]


@pytest.mark.parametrize("name", [*sorted(OPTIMIZERS), *[
    pytest.param(name, marks=pytest.mark.slow) for name in sorted(SLOW_OPTIMIZERS)]])
def test_device_steps_equal_subnetwork_model_steps(name, setting, tmp_path):
    model, plan, x, y, phases = setting
    model = keras.models.clone_model(model)
    model.set_weights(setting[0].get_weights())
    optimizer = ALL_OPTIMIZERS[name]()
    device, summary = export(model, plan, tmp_path, batch_size=BATCH, optimizer=optimizer)
    trainer = compiled(model, plan, optimizer)  # the same object, as a user does
    steps = train_both(trainer, model, device, plan, x, y, phases)
    state = device.get_state()
    assert int(state["step"][0]) == steps == int(optimizer.iterations.numpy())
    assert device.learning_rate() == pytest.approx(
        float(optimizer.learning_rate.numpy()), rel=1e-6, abs=1e-9)
    config = summary.metadata["optimizer"]
    assert config["momentum"] == optimizer.momentum
    if optimizer.momentum:
        for key, info in device._weights.items():
            expected = keras_momentum(optimizer, model, key)
            np.testing.assert_allclose(
                state[optimizer_lib_momentum_name(key)], expected, rtol=1e-5,
                atol=1e-5 * max(np.abs(expected).max(), 1e-12), err_msg=f"momentum of {key}")
        memory = summary.metadata["memory_model"]
        weights = sum(int(np.prod(w["shape"])) for w in summary.metadata["weights"])
        assert memory["optimizer_state_bytes"] == 3 * 4 * weights
    else:
        assert not any(k.endswith("_momentum") for k in state)
        assert summary.metadata["memory_model"]["optimizer_state_bytes"] == 0


def optimizer_lib_momentum_name(key):
    from tflite_export import metadata  # noqa: PLC0415

    return metadata.momentum_name(key)


def test_an_optimizer_that_trained_in_keras_continues_on_the_device(setting, tmp_path):
    """Export after Keras steps: the device starts at the optimizer's step and momentum."""
    model, plan, x, y, phases = setting
    model = keras.models.clone_model(model)
    model.set_weights(setting[0].get_weights())
    optimizer = keras.optimizers.SGD(_cosine(), momentum=0.9, clipnorm=1.0)
    trainer = compiled(model, plan, optimizer)
    selected = phases[0][0]
    trainer.set_selection(selected, allow_over_budget=True)
    for step in range(2):
        trainer.train_on_batch(x[step * BATCH:(step + 1) * BATCH],
                               y[step * BATCH:(step + 1) * BATCH])
    device, _ = export(model, plan, tmp_path, batch_size=BATCH, optimizer=optimizer)
    assert int(device.get_state()["step"][0]) == 2
    train_both(trainer, model, device, plan, x[2 * BATCH:], y[2 * BATCH:], [(selected, 3)])
    state = device.get_state()
    for key in device._weights:
        expected = keras_momentum(optimizer, model, key)
        np.testing.assert_allclose(state[optimizer_lib_momentum_name(key)], expected,
                                   rtol=1e-5, atol=1e-5 * max(np.abs(expected).max(), 1e-12))


def test_step_and_momentum_survive_get_state_set_state(setting, tmp_path):
    model, plan, x, y, _ = setting
    optimizer = keras.optimizers.SGD(_cosine(), momentum=0.9)
    device, summary = export(model, plan, tmp_path, batch_size=BATCH, optimizer=optimizer)
    device.resample(seed=0)
    for step in range(3):
        device.train(x[step * BATCH:(step + 1) * BATCH], y[step * BATCH:(step + 1) * BATCH])
    state, weights = device.get_state(), device.get_weights()
    assert int(state["step"][0]) == 3
    fresh = OnDeviceTrainer(summary.path)
    assert int(fresh.get_state()["step"][0]) == 0
    fresh.set_state(state)
    fresh.set_weights(weights)
    for name, value in fresh.get_state().items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)
    xb, yb = x[3 * BATCH:4 * BATCH], y[3 * BATCH:4 * BATCH]
    assert fresh.train(xb, yb) == device.train(xb, yb)
    for key, value in fresh.get_weights().items():
        np.testing.assert_array_equal(value, device.get_weights()[key])


def test_the_device_learning_rate_follows_the_keras_schedule(setting, tmp_path):
    model, plan, _, _, _ = setting
    schedule = keras.optimizers.schedules.CosineDecay(
        0.01, decay_steps=7, alpha=0.1, warmup_target=0.2, warmup_steps=3)
    device, _ = export(model, plan, tmp_path, batch_size=BATCH,
                       optimizer=keras.optimizers.SGD(schedule))
    for step in range(0, 13):
        numbers = [0.01, 7, 0.1, 0.2, 3]
        assert device.set_schedule(numbers, step=step) == pytest.approx(
            float(schedule(step)), rel=1e-6, abs=1e-9)
        assert device.learning_rate() == pytest.approx(float(schedule(step)), rel=1e-6, abs=1e-9)
    assert device.set_learning_rate(0.3) == pytest.approx(0.3)
    assert device.learning_rate() == pytest.approx(0.3)


@pytest.mark.parametrize("optimizer, message", [
    (lambda: keras.optimizers.Adam(1e-3), "Adam"),
    (lambda: keras.optimizers.SGD(0.1, use_ema=True), "use_ema"),
    (lambda: keras.optimizers.SGD(0.1, gradient_accumulation_steps=2),
     "gradient_accumulation_steps"),
    (lambda: keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)),
     "ExponentialDecay"),
])
def test_unsupported_optimizers_are_refused_with_what_is_supported(setting, tmp_path, optimizer,
                                                                   message):
    model, plan, _, _, _ = setting
    with pytest.raises(optimizer_lib.UnsupportedOptimizerError, match=message) as error:
        export_training_model(model, plan, str(tmp_path / "m.tflite"), optimizer=optimizer())
    assert "keras.optimizers.SGD" in str(error.value)
    with pytest.raises(ValueError, match="not both"):
        export_training_model(model, plan, str(tmp_path / "m.tflite"), learning_rate=0.1,
                              optimizer=keras.optimizers.SGD(0.1))


def test_fit_runs_the_recommended_recipe_by_default(setting, tmp_path):
    """Exported without an optimizer: `fit` sets warm-up + cosine over its epochs, clip 1."""
    model, plan, x, y, _ = setting
    device, summary = export(model, plan, tmp_path, batch_size=BATCH)
    config = summary.metadata["optimizer"]
    assert config["clipnorm"] == recipe.CLIPNORM and config["momentum"] == 0
    assert config["recipe"] == {"peak_learning_rate": recipe.LEARNING_RATE,
                                "warmup_epochs": recipe.WARMUP_EPOCHS}
    epochs, steps = 3, len(x) // BATCH
    history = device.fit((x, y), epochs=epochs, seed=0, validation_data=(x, y))
    expected = recipe.cosine_schedule(recipe.LEARNING_RATE, steps, epochs)
    for epoch, record in enumerate(history):
        assert record["steps"] == steps
        assert record["learning_rate"] == pytest.approx(
            float(expected((epoch + 1) * steps)), rel=1e-5, abs=1e-8)
        assert 0.0 <= record["val_accuracy"] <= 1.0
    assert int(device.get_state()["step"][0]) == epochs * steps
    # The Keras recipe on the same selections and batches gives the same weights.
    assert history[-1]["learning_rate"] == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("form", ["recipe", "momentum_clipnorm"])
def test_fit_equals_keras_fit_with_medyate(form, setting, tmp_path):
    """Whole epochs (resample + steps) = `SubnetworkModel.fit` with the resampler:
    the recipe `fit` sets by itself, and SGD(0.05, momentum 0.9, clipnorm 1)."""
    model, plan, x, y, _ = setting
    model = keras.models.clone_model(model)
    model.set_weights(setting[0].get_weights())
    epochs, steps = 2, len(x) // BATCH
    if form == "recipe":
        device, _ = export(model, plan, tmp_path, batch_size=BATCH)
        optimizer = recipe.recommended_optimizer(steps, epochs)
    else:
        optimizer = keras.optimizers.SGD(0.05, momentum=0.9, clipnorm=1.0)
        device, _ = export(model, plan, tmp_path, batch_size=BATCH, optimizer=optimizer)
    trainer = compiled(model, plan, optimizer)
    resampler = kmd.ChannelResampler(plan, "medyate", seed=3)
    trainer.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
                callbacks=[resampler])
    history = device.fit((x, y), epochs=epochs, seed=3)
    for epoch, record in enumerate(history):
        assert record["selection"].channels.keys() == resampler.history[epoch].channels.keys()
        for name, channels in record["selection"].channels.items():
            np.testing.assert_array_equal(channels, resampler.history[epoch].channels[name])
    assert_weights_equal(device, model, 1e-4, "after fit")


def test_bad_batches_are_refused_and_a_non_finite_loss_writes_nothing(setting, tmp_path):
    model, plan, x, y, _ = setting
    device, _ = export(model, plan, tmp_path, batch_size=BATCH,
                       optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    device.resample(seed=0)
    xb, yb = x[:BATCH].copy(), y[:BATCH].copy()
    xb[2, 3, 4, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite pixels in sample\(s\) \[2\]"):
        device.train(xb, yb)
    with pytest.raises(ValueError, match=r"Labels must be in \[0, 3\).*sample\(s\) \[1\]"):
        device.train(x[:BATCH], np.array([0, 7, 1, 2]))
    # Finite weights whose logits overflow: the loss is NaN.
    head = {key: np.full_like(value, 3e38) for key, value in device.get_weights().items()
            if key.startswith(plan.classifier)}
    device.set_weights(head)
    before_weights, before_state = device.get_weights(), device.get_state()
    with pytest.raises(NonFiniteLossError, match="not applied"):
        device.train(x[:BATCH], y[:BATCH])
    for key, value in device.get_weights().items():
        np.testing.assert_array_equal(value, before_weights[key], err_msg=key)
    for name, value in device.get_state().items():
        np.testing.assert_array_equal(value, before_state[name], err_msg=name)
    # `fit` stops on it, naming the epoch and step.
    with pytest.raises(NonFiniteLossError, match="Epoch 1, step 1"):
        device.fit((x[:BATCH], y[:BATCH]), epochs=2, schedule="file")


@pytest.mark.slow
def test_mcunet_an_epoch_of_medyate_with_momentum_and_clip_equals_keras(weights_dir, tmp_path):
    """The issue's check on the papers' MCUNet: SGD(0.05, momentum 0.9, clipnorm 1), one epoch."""
    from keras_medyate import models  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    model = models.mcunet_5fps(classes=10, input_shape=(48, 48, 3), weights_dir=weights_dir)
    plan = kmd.plan(model, budget=15936, ranking="lara")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(6 * BATCH, 48, 48, 3)).astype(np.float32)
    y = (np.arange(6 * BATCH) % 10).astype(np.int32)
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9, clipnorm=1.0)
    path = str(tmp_path / "mcunet.tflite")
    export_training_model(model, plan, path, batch_size=BATCH, optimizer=optimizer)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy())
    trainer.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
                callbacks=[kmd.ChannelResampler(plan, "medyate", seed=5)])
    device = OnDeviceTrainer(path)
    device.fit((x, y), epochs=1, seed=5)
    assert_weights_equal(device, model, 1e-4, "after an epoch")
    state = device.get_state()
    for key in device._weights:
        expected = keras_momentum(optimizer, model, key)
        np.testing.assert_allclose(state[optimizer_lib_momentum_name(key)], expected, rtol=1e-4,
                                   atol=1e-4 * max(np.abs(expected).max(), 1e-12))


def test_fit_resumes_the_recipe_at_initial_epoch(setting, tmp_path):
    """An app restarted after epoch 1 continues with `fit(epochs=E, initial_epoch=1)`:
    the same weights as one uninterrupted `fit(epochs=E)`, as Keras' `initial_epoch`."""
    from keras_medyate import recipe as recipe_lib  # noqa: PLC0415

    model, plan, x, y, _ = setting
    whole, summary = export(model, plan, tmp_path, batch_size=BATCH)
    whole.fit((x, y), epochs=3, seed=1)
    first = OnDeviceTrainer(summary.path)
    steps = first.steps_per_epoch((x, y))
    first.set_schedule(recipe_lib.schedule_numbers(recipe.LEARNING_RATE, steps, 3), step=0)
    first.fit((x, y), epochs=1, seed=1, schedule="file")          # epoch 1, then the app stops
    restarted = OnDeviceTrainer(summary.path)
    restarted.set_weights(first.get_weights())
    restarted.set_state(first.get_state())
    history = restarted.fit((x, y), epochs=3, seed=1, initial_epoch=1)
    assert [record["epoch"] for record in history] == [1, 2]
    for key, value in whole.get_weights().items():
        np.testing.assert_array_equal(restarted.get_weights()[key], value, err_msg=key)
    with pytest.raises(ValueError, match="initial_epoch"):
        restarted.fit((x, y), epochs=3, initial_epoch=3)
