"""`DivergenceGuard` stops a diverging run with a message that names the learning rate."""

import math

import keras
import numpy as np
import pytest

from keras_medyate.divergence import DivergenceGuard, TrainingDivergedError


def drive(guard, losses):
    """Feeds batch losses to the callback's hook, as `fit` does."""
    guard.on_train_begin()
    for batch, loss in enumerate(losses):
        guard.on_train_batch_end(batch, {"loss": loss})


def test_nan_and_inf_stop_the_run():
    for bad in (math.nan, math.inf):
        with pytest.raises(TrainingDivergedError, match=r"became (nan|inf) with learning rate 0.125"):
            drive(DivergenceGuard(learning_rate=0.125), [2.3, 2.0, bad])


def test_tenfold_growth_stops_the_run_and_smaller_growth_does_not():
    drive(DivergenceGuard(learning_rate=0.1), [2.3, 5.0, 20.0, 22.9])
    with pytest.raises(TrainingDivergedError, match=r"grew from 2.3 to 23.1 \(more than 10x\)"):
        drive(DivergenceGuard(learning_rate=0.1), [2.3, 5.0, 23.1])


def test_state_is_reset_for_each_fit():
    guard = DivergenceGuard(learning_rate=0.1)
    drive(guard, [0.1, 0.2])
    assert guard.first_loss == 0.1
    drive(guard, [5.0, 6.0])  # a new fit measures from its own first loss
    assert guard.first_loss == 5.0  # (from 0.1, 6.0 would be 60x: it would have raised)


def test_bad_factor_is_refused():
    with pytest.raises(ValueError, match=r"`factor` must be > 1; received 1"):
        DivergenceGuard(factor=1)


def test_real_fit_reads_the_optimizer_learning_rate():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1e3), loss="mse")
    x, y = np.random.default_rng(0).normal(size=(256, 4)), np.ones((256, 1))
    with pytest.raises(TrainingDivergedError, match=r"learning rate 1000"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[DivergenceGuard()])


# --- Non-finite batches in a SubnetworkModel: stopped inside the step ------------------


def guarded_model(activation="relu"):
    """A model of these tests only: a strided stem, a 1x1 conv, a logits head."""
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(5, 3, strides=2, padding="same", name="stem")(inputs)
    x = keras.layers.Activation(activation, name="stem_act")(x)
    x = keras.layers.Conv2D(4, 1, name="mix")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x), name="guarded")


class WeightRecorder(keras.callbacks.Callback):
    """Every weight and optimizer variable after each batch, keyed by (epoch, batch)."""

    def __init__(self):
        super().__init__()
        self.after = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.after[(self.epoch, batch)] = (
            [np.array(w) for w in self.model.get_weights()],
            [np.array(v.numpy()) for v in self.model.optimizer.variables])


def _trainer(model, optimizer=None):
    import keras_medyate as kmd  # noqa: PLC0415

    plan = kmd.plan(model, budget=200)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=optimizer or keras.optimizers.Adam(0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return trainer, plan


def _images(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 2)).astype("float32"), (np.arange(n) % 3).astype("int32")


def _assert_stopped_before_writing(recorder, epoch, batch, trainer):
    """The weights and optimizer state after the bad batch are those before it."""
    weights, slots = recorder.after[(epoch, batch - 1)]
    for before, now in zip(weights, trainer.get_weights()):
        np.testing.assert_array_equal(now, before)
    for before, now in zip(slots, trainer.optimizer.variables):
        np.testing.assert_array_equal(now.numpy(), before)


def test_a_nan_pixel_stops_fit_before_any_weight_is_written():
    import keras_medyate as kmd  # noqa: PLC0415
    from keras_medyate.divergence import NonFiniteTrainingError  # noqa: PLC0415

    keras.utils.set_random_seed(1)
    trainer, plan = _trainer(guarded_model())
    x, y = _images()
    x[9, 3, 2, 1] = np.nan  # image 9: the 2nd batch of 8 (unshuffled)
    recorder = WeightRecorder()
    with pytest.raises(NonFiniteTrainingError,
                       match=r"epoch 1, batch 2: the batch's inputs hold NaN or inf values\. "
                             r"Its update was skipped: the weights are those from before"):
        trainer.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                    callbacks=[kmd.ChannelResampler(plan, seed=0), recorder])
    assert sorted(recorder.after) == [(0, 0), (0, 1)]
    _assert_stopped_before_writing(recorder, 0, 1, trainer)
    assert all(np.isfinite(w).all() for w in trainer.get_weights())
    # A new fit with clean data trains again (the stop does not stick to the model).
    clean = np.nan_to_num(x)
    trainer.fit(clean, y, batch_size=8, epochs=1, verbose=0,
                callbacks=[kmd.ChannelResampler(plan, seed=0)])
    assert trainer.nonfinite_status() == 0


def test_a_nan_loss_and_nan_gradients_are_named():
    import keras_medyate as kmd  # noqa: PLC0415
    from keras_medyate.divergence import NonFiniteTrainingError  # noqa: PLC0415

    # The loss: a NaN sample weight in the 3rd batch (inputs are finite).
    keras.utils.set_random_seed(2)
    trainer, plan = _trainer(guarded_model())
    x, y = _images()
    weights = np.ones(len(x), np.float32)
    weights[17] = np.nan
    recorder = WeightRecorder()
    with pytest.raises(NonFiniteTrainingError, match=r"epoch 1, batch 3: the batch's loss is NaN"):
        trainer.fit(x, y, sample_weight=weights, batch_size=8, epochs=1, shuffle=False,
                    verbose=0, callbacks=[kmd.ChannelResampler(plan, seed=0), recorder])
    _assert_stopped_before_writing(recorder, 0, 2, trainer)

    # The gradients: sqrt(|.|) has an infinite slope at 0, where an all-zero
    # image puts the stem's output (zero bias); loss and inputs stay finite.
    keras.utils.set_random_seed(3)
    trainer, plan = _trainer(guarded_model(lambda t: keras.ops.sqrt(keras.ops.abs(t))),
                             optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    x, y = _images()
    x[8:16] = 0.0
    recorder = WeightRecorder()
    with pytest.raises(NonFiniteTrainingError,
                       match=r"epoch 1, batch 2: the gradients of the batch hold NaN or inf.*"
                             r"Lower the learning rate"):
        trainer.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
                    callbacks=[kmd.ChannelResampler(plan, strategy="full"), recorder])
    _assert_stopped_before_writing(recorder, 0, 1, trainer)


def test_train_on_batch_and_a_users_guard_report_the_same_error():
    import keras_medyate as kmd  # noqa: PLC0415
    from keras_medyate.divergence import NonFiniteTrainingError  # noqa: PLC0415

    keras.utils.set_random_seed(4)
    trainer, plan = _trainer(guarded_model())
    x, y = _images(8)
    trainer.set_selection(np.arange(3))
    before = [np.array(w) for w in trainer.get_weights()]
    bad = x.copy()
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(NonFiniteTrainingError, match=r"this batch: the batch's inputs hold"):
        trainer.train_on_batch(bad, y)
    for a, b in zip(before, trainer.get_weights()):
        np.testing.assert_array_equal(a, b)
    trainer.train_on_batch(x, y)  # a finite batch trains again
    assert any(not np.array_equal(a, b) for a, b in zip(before, trainer.get_weights()))
    # With the user's own guard (and its learning rate) the check is the same.
    guard = DivergenceGuard(learning_rate=0.01)
    with pytest.raises(NonFiniteTrainingError, match=r"epoch 1, batch 1: the batch's inputs"):
        trainer.fit(bad, y, batch_size=8, epochs=1, verbose=0,
                    callbacks=[kmd.ChannelResampler(plan, seed=0), guard])
