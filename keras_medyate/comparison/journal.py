"""A run's per-epoch measurements, and the backup that keeps them across a resume.

The measuring callbacks of a comparison run (`EpochTimer`: each epoch's
time; `EpochEvaluator`: top-1 after each epoch, timed apart; a
`ChannelResampler`'s `history`: each epoch's selection) only see the epochs
of their own `fit`. `keras.callbacks.BackupAndRestore` resumes an interrupted
run at its last finished epoch (the weights, the optimizer and, through the
model's variables, the selection state), so alone it would leave a resumed
run's row with the last session's epochs only: the time of a few epochs as
the training time, a curve with holes.

`RunJournal` is that backup plus `journal.json` in the same folder: at the
end of every epoch, before the weights, it writes what the measuring parts
hold (`journal_state()`); on a resume it hands each part back the finished
epochs' (`restore_journal(state, epochs)`), so a resumed run's row covers
every epoch. It also records the run's learning rate and retry, which a
resumed run takes back (`read`).

What a resume does not keep: the training pipeline's epoch orders and
augmentation draws start again at the first epoch's (`tf.data` reshuffles per
iterator, the flip layer draws from a generator in this process), so the
epochs after a resume are a valid run of the recipe but not bit-identical to
an uninterrupted one. The time lost to an interrupted epoch is not counted.

Example:

>>> import keras, numpy as np, tempfile
>>> from keras_medyate.comparison import journal
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
>>> model.compile(optimizer="sgd", loss="mse")
>>> timer = journal.EpochTimer()
>>> folder = tempfile.mkdtemp()
>>> backup = journal.RunJournal(folder, {"timer": timer}, learning_rate=0.01)
>>> _ = model.fit(np.zeros((8, 4)), np.zeros((8, 2)), epochs=2, verbose=0,
...               callbacks=[timer, backup])
>>> len(timer.seconds)
2
"""

import json
import os
import time

import keras
import numpy as np

#: The measurements' file, next to Keras' backup of the weights.
JOURNAL_FILE = "journal.json"


class ResumeError(ValueError):
    """A backup that cannot be resumed (other settings, or no measurements);
    the message says which folder to delete."""


class EpochTimer(keras.callbacks.Callback):
    """Records each epoch's wall time (from its `on_epoch_begin` to its `on_epoch_end`:
    a resampler listed before it resamples outside it).

    Attributes:
        seconds: list of floats, one per finished epoch (the restored ones first).
    """

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)

    def journal_state(self):
        return {"seconds": list(self.seconds)}

    def restore_journal(self, state, epochs):
        self.seconds = [float(s) for s in state["seconds"][:epochs]]


class EpochEvaluator(keras.callbacks.Callback):
    """Top-1 on an evaluation pipeline after every epoch, timed apart from training.

    Attributes:
        accuracies: list over the run's epochs: the top-1 (a fraction) after
            each finished epoch, None for the others.
        epoch_seconds: list of the evaluations' times, one per finished epoch.
        restored_seconds: float, the restored epochs' evaluation time.
    """

    def __init__(self, data, epochs):
        super().__init__()
        self.data = data
        self.accuracies = [None] * epochs
        self.epoch_seconds = []
        self.restored_seconds = 0.0

    @property
    def seconds(self):
        """Total evaluation time, the restored epochs' included."""
        return sum(self.epoch_seconds)

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        results = self.model.evaluate(self.data, verbose=0, return_dict=True)
        self.accuracies[epoch] = float(results["accuracy"])
        self.epoch_seconds.append(time.perf_counter() - start)

    def journal_state(self):
        return {"accuracies": list(self.accuracies), "seconds": list(self.epoch_seconds)}

    def restore_journal(self, state, epochs):
        self.accuracies[:epochs] = state["accuracies"][:epochs]
        self.epoch_seconds = [float(s) for s in state["seconds"][:epochs]]
        self.restored_seconds = sum(self.epoch_seconds)


class ResamplerRecords:
    """A `ChannelResampler`'s per-epoch `history` as a journal part."""

    def __init__(self, resampler):
        self.resampler = resampler

    def journal_state(self):
        return [{"epoch": int(epoch), "channels": {k: np.asarray(v).tolist()
                                                   for k, v in record.channels.items()},
                 "cost_units": int(record.cost_units), "explored": record.explored,
                 "seconds": record.seconds}
                for epoch, record in sorted(self.resampler.history.items())]

    def restore_journal(self, state, epochs):
        from keras_medyate.selection import Selection  # noqa: PLC0415

        for item in state:
            if item["epoch"] < epochs:
                self.resampler.history[item["epoch"]] = Selection(
                    channels={k: np.asarray(v, np.int64) for k, v in item["channels"].items()},
                    cost_units=item["cost_units"], epoch=item["epoch"],
                    explored=item["explored"], seconds=item["seconds"])


class GuardBaseline:
    """A `DivergenceGuard`'s baseline (the first batch's loss) as a journal part:
    a resumed run is compared with the loss it started from, not with the
    already low loss of its first resumed batch."""

    def __init__(self, guard):
        self.guard = guard

    def journal_state(self):
        return {"first_loss": self.guard.first_loss}

    def restore_journal(self, state, epochs):
        self.guard.first_loss = state["first_loss"]


class RunJournal(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that also keeps a run's per-epoch measurements.

    Put it after the measuring callbacks in `fit`'s list: it writes their
    state once they have recorded an epoch, and restores it after they have
    started afresh (the resampler's new `history`, the guard's baseline).

    It also keeps the run's training time, measured as `run_one` measures an
    uninterrupted run's (the wall time less the evaluations, `evaluator`'s),
    so that a resumed run's time includes the finished sessions' resampling
    and callbacks.

    Args:
        backup_dir: str, the run's own backup folder.
        parts: dict name → object with `journal_state()` (JSON-serializable)
            and `restore_journal(state, epochs)`.
        learning_rate: float, the peak learning rate of this try.
        retries: int, the divergence retries before this try.
        settings: JSON-serializable dict, what defines the run; a backup made
            with other settings is refused (`read`).
        evaluator: the `EpochEvaluator` among the parts, or None.
    """

    def __init__(self, backup_dir, parts, learning_rate, retries=0, settings=None,
                 evaluator=None):
        super().__init__(backup_dir)
        self.parts = dict(parts)
        self.learning_rate = float(learning_rate)
        self.retries = int(retries)
        self.settings = settings
        self.evaluator = evaluator
        self.restored_epochs = 0
        self.restored_train_seconds = 0.0
        self.train_seconds = []  # the run's training time at the end of each epoch
        self._start = None

    @staticmethod
    def read(backup_dir, settings=None):
        """The journal of an interrupted run in `backup_dir` (a dict), or None.

        Raises:
            ResumeError: the backup was made with other `settings` than these.
        """
        path = os.path.join(backup_dir, JOURNAL_FILE)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            journal = json.load(f)
        saved = journal.get("settings")
        if settings is not None and saved != settings:
            changed = sorted(k for k in set(settings) | set(saved or {})
                             if (saved or {}).get(k) != settings.get(k))
            raise ResumeError(
                f"The backup in {backup_dir} is of a run with other settings ("
                + ", ".join(f"{k}: {(saved or {}).get(k)!r} there, {settings.get(k)!r} now"
                            for k in changed)
                + f"). Run with its settings to resume it, or delete {backup_dir} to start "
                "this one from the beginning.")
        return journal

    def _finished_epochs(self):
        """The epochs the restored backup had finished (0: nothing restored)."""
        path = self._training_metadata_path  # where Keras' backup writes its epoch
        if not os.path.exists(path):
            return 0
        with open(path, encoding="utf-8") as f:
            return int(json.load(f)["epoch"])

    def _session_train_seconds(self):
        evaluated = (self.evaluator.seconds - self.evaluator.restored_seconds
                     if self.evaluator is not None else 0.0)
        return time.perf_counter() - self._start - evaluated

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()
        self.restored_epochs, self.restored_train_seconds, self.train_seconds = 0, 0.0, []
        super().on_train_begin(logs)
        epochs = self._finished_epochs()
        if not epochs:
            return
        journal = self.read(self.backup_dir, self.settings)
        held = journal["epochs"] if journal else 0
        if held < epochs:
            kept = (f"its {JOURNAL_FILE} holds the measurements of {held}" if journal
                    else f"it has no {JOURNAL_FILE} (a backup of an older keras-medyate)")
            raise ResumeError(
                f"The backup in {self.backup_dir} resumes the run after epoch {epochs}, but "
                f"{kept}: the run's row would miss the earlier epochs. Delete "
                f"{self.backup_dir} to run it again from the start.")
        if not np.isclose(journal["learning_rate"], self.learning_rate):
            raise ResumeError(
                f"The backup in {self.backup_dir} was trained at learning rate "
                f"{journal['learning_rate']:g}, this try at {self.learning_rate:g}: resume it "
                "with the rate of its journal (`RunJournal.read`), or delete the folder.")
        for name, part in self.parts.items():
            part.restore_journal(journal["parts"][name], epochs)
        self.restored_epochs = epochs
        self.train_seconds = [float(s) for s in journal["train_seconds"][:epochs]]
        self.restored_train_seconds = self.train_seconds[-1]

    def on_epoch_end(self, epoch, logs=None):
        # The measurements first: a backup never holds an epoch its journal lacks.
        os.makedirs(self.backup_dir, exist_ok=True)
        path = os.path.join(self.backup_dir, JOURNAL_FILE)
        self.train_seconds.append(self.restored_train_seconds + self._session_train_seconds())
        journal = {"epochs": epoch + 1, "learning_rate": self.learning_rate,
                   "retries": self.retries, "settings": self.settings,
                   "train_seconds": self.train_seconds,
                   "parts": {name: part.journal_state() for name, part in self.parts.items()}}
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(journal, f)
        os.replace(path + ".tmp", path)
        super().on_epoch_end(epoch, logs)
