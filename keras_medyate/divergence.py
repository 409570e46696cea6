"""`DivergenceGuard`: stop a run whose loss explodes, and say which learning rate did it.

Keras' `TerminateOnNaN` stops quietly and lets `fit` return as if it had
finished; a benchmark then records a meaningless accuracy. This callback
raises `TrainingDivergedError` instead, as soon as a batch's loss is NaN/inf
or the running loss exceeds `factor` times the first batch's, naming the
learning rate, so that no result is written for the run.

Example:

>>> import keras, numpy as np
>>> from keras_medyate.divergence import DivergenceGuard, TrainingDivergedError
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
>>> model.compile(optimizer=keras.optimizers.SGD(1e3), loss="mse")
>>> x, y = np.random.default_rng(0).normal(size=(256, 4)), np.ones((256, 1))
>>> try:
...     model.fit(x, y, batch_size=8, epochs=3, verbose=0,
...               callbacks=[DivergenceGuard(learning_rate=1e3)])
... except TrainingDivergedError as error:
...     print("stopped:", "learning rate 1000" in str(error))
stopped: True
"""

import math

import keras


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN/inf or grew beyond the guard's factor."""


class DivergenceGuard(keras.callbacks.Callback):
    """Raises `TrainingDivergedError` when the training loss diverges.

    Acts after every training batch: the loss in the logs (Keras' running
    mean over the epoch) is compared with the first batch's loss of the
    first epoch.

    Args:
        learning_rate: float or None. The (peak) learning rate, quoted in the
            error; None reads the optimizer's current learning rate.
        factor: float > 1. Growth of the loss over its first value that
            counts as divergence. Defaults to `10.0`.
    """

    def __init__(self, learning_rate=None, factor=10.0):
        super().__init__()
        if not factor > 1:
            raise ValueError(f"`factor` must be > 1; received {factor!r}.")
        self.learning_rate = learning_rate
        self.factor = factor
        self.first_loss = None

    def on_train_begin(self, logs=None):
        self.first_loss = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if self.first_loss is None and math.isfinite(loss):
            self.first_loss = loss
            return
        if not math.isfinite(loss):
            problem = f"the training loss became {loss}"
        elif loss > self.factor * max(self.first_loss, 1e-12):
            problem = (f"the training loss grew from {self.first_loss:.4g} to {loss:.4g} "
                       f"(more than {self.factor:g}x)")
        else:
            return
        raise TrainingDivergedError(
            f"Training diverged at batch {batch + 1}: {problem} with learning rate "
            f"{self._learning_rate():g}. Lower the learning rate (e.g. by 2-5x) or clip "
            "the gradients (`clipnorm=1.0`).")

    def _learning_rate(self):
        if self.learning_rate is not None:
            return float(self.learning_rate)
        optimizer = getattr(self.model, "optimizer", None)
        try:
            return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        except (AttributeError, TypeError, ValueError):
            return math.nan
