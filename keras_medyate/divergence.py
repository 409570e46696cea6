"""`DivergenceGuard`: stop a run whose loss explodes, and say which learning rate did it.

Keras' `TerminateOnNaN` stops quietly and lets `fit` return as if it had
finished; a benchmark then records a meaningless accuracy. This callback
raises `TrainingDivergedError` instead, as soon as a batch's loss is NaN/inf
or the running loss exceeds `factor` times the first batch's, naming the
learning rate, so that no result is written for the run.

A `SubnetworkModel` also checks every batch inside its training step: when
the batch's inputs, loss or gradients hold a NaN/inf it skips the update (no
weight is written) and records what was wrong (`NONFINITE_CAUSES`); the guard
reads that record after the batch (`nonfinite_status()`) and raises
`NonFiniteTrainingError` naming the epoch and batch. `SubnetworkModel.fit`
adds a guard that checks only this (`DivergenceGuard(factor=math.inf)`)
when its callbacks hold none.

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


#: What a training step found non-finite, by the code it records (0: nothing).
NONFINITE_CAUSES = {
    1: ("the batch's inputs hold NaN or inf values",
        "Check the data pipeline (e.g. `np.isfinite(x).all()` on every batch) and "
        "drop or repair those samples."),
    2: ("the batch's loss is NaN or inf",
        "Check the labels and sample weights of this batch and the loss settings "
        "(`from_logits`), or lower the learning rate (e.g. by 2-5x)."),
    3: ("the gradients of the batch hold NaN or inf values",
        "Lower the learning rate (e.g. by 2-5x) or clip the gradients "
        "(`clipnorm=1.0`)."),
}


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN/inf or grew beyond the guard's factor."""


class NonFiniteTrainingError(TrainingDivergedError):
    """A batch's inputs, loss or gradients were NaN/inf; its update was skipped."""


def nonfinite_message(code, epoch=None, batch=None):
    """The error message for a step that recorded non-finite `code`.

    Args:
        code: int, a key of `NONFINITE_CAUSES`.
        epoch: int or None, the 1-based epoch (None: not in `fit`).
        batch: int or None, the 1-based batch of that epoch.

    Returns:
        str: where it happened, what was non-finite, that the weights are
        those from before the batch, and what to do.
    """
    problem, advice = NONFINITE_CAUSES.get(int(code), ("a value was NaN or inf", ""))
    where = ", ".join(part for part in (
        f"epoch {epoch}" if epoch is not None else "",
        f"batch {batch}" if batch is not None else "") if part) or "this batch"
    return (f"Training stopped at {where}: {problem}. Its update was skipped: the weights "
            f"are those from before this batch. {advice}").strip()


class DivergenceGuard(keras.callbacks.Callback):
    """Raises `TrainingDivergedError` when the training loss diverges.

    Acts after every training batch. First, on a model that checks its own
    steps (a `SubnetworkModel`: `nonfinite_status()`), a batch whose inputs,
    loss or gradients were NaN/inf raises `NonFiniteTrainingError` naming the
    epoch and batch (the model skipped that batch's update). Then the loss in
    the logs (Keras' running mean over the epoch) is compared with the first
    batch's loss of the first epoch.

    Args:
        learning_rate: float or None. The (peak) learning rate, quoted in the
            error; None reads the optimizer's current learning rate.
        factor: float > 1. Growth of the loss over its first value that
            counts as divergence. Defaults to `10.0`; `math.inf` checks only
            for NaN/inf.
    """

    def __init__(self, learning_rate=None, factor=10.0):
        super().__init__()
        if not factor > 1:
            raise ValueError(f"`factor` must be > 1; received {factor!r}.")
        self.learning_rate = learning_rate
        self.factor = factor
        self.first_loss = None
        self.epoch = None

    def on_train_begin(self, logs=None):
        self.first_loss = None
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        status = getattr(self.model, "nonfinite_status", None)
        code = status() if status is not None else 0
        if code:
            raise NonFiniteTrainingError(nonfinite_message(
                code, None if self.epoch is None else self.epoch + 1, batch + 1))
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
