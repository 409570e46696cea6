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
    drive(guard, [5.0, 6.0])  # a new fit measures from its own first loss


def test_bad_factor_is_refused():
    with pytest.raises(ValueError, match=r"`factor` must be > 1; received 1"):
        DivergenceGuard(factor=1)


def test_real_fit_reads_the_optimizer_learning_rate():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1e3), loss="mse")
    x, y = np.random.default_rng(0).normal(size=(256, 4)), np.ones((256, 1))
    with pytest.raises(TrainingDivergedError, match=r"learning rate 1000"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[DivergenceGuard()])
