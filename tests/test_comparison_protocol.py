"""The comparison's protocol (issue 23): full fine-tuning trains every variable, a validation
split from the training images, diverging runs retried at half the rate, per-cell counts and
seed-paired tests in the report, fixed TensorFlow threads, and the LiteRT runtime's plumbing."""

import csv
import math
import os
import subprocess
import sys
import types

import keras
import numpy as np
import pytest

from keras_medyate import inventory, recipe
from keras_medyate.comparison import report, runner, settings
from keras_medyate.divergence import TrainingDivergedError
from tests.helpers import REPO, small_cnn


def _images(dataset):
    """(pixel sum, label) of every image of a batched pipeline, in its order."""
    return [(round(float(x.numpy().sum()), 2), int(y)) for xs, ys in dataset
            for x, y in zip(xs, ys)]


# --- full fine-tuning: every trainable variable --------------------------------------------


def test_full_finetuning_units_count_biases():
    model = small_cnn(batchnorm=False)
    infos = inventory.inventory(model)
    biases = sum(int(np.prod(i.layer.bias.shape)) for i in infos)
    assert biases == 8 + 16 + 16 + 8 + 12 + 3
    assert (inventory.full_finetune_units(infos, biases=True)
            == inventory.full_finetune_units(infos) + biases)


def test_full_finetuning_trains_biases_and_freezes_batchnorm():
    model = small_cnn(batchnorm=True)
    runner.compile_full_finetuning(model, keras.optimizers.SGD(0.1),
                                   loss=keras.losses.SparseCategoricalCrossentropy(
                                       from_logits=True))
    before = {v.path: v.numpy().copy() for v in model.weights}
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype("float32")
    model.fit(x, np.arange(8) % 3, epochs=1, batch_size=8, verbose=0)
    moved = {path for path, value in before.items()
             if not np.array_equal(value, _var(model, path))}
    for layer in ("stem", "b1_expand", "b1_depthwise", "b1_project", "b2_conv", "classifier"):
        assert f"{layer}/kernel" in moved and f"{layer}/bias" in moved, (layer, sorted(moved))
    assert not any(path.startswith("stem_bn/") for path in moved)  # inference mode, frozen


def _var(model, path):
    return next(v for v in model.weights if v.path == path).numpy()


# --- retries -----------------------------------------------------------------------------


def test_a_diverging_run_is_retried_at_half_the_learning_rate(monkeypatch):
    tried = []

    def fake_run_once(config, train_ds, test_ds, info, probe_ds, learning_rate, verbose,
                      retries):
        tried.append((learning_rate, train_ds))
        if len(tried) < 3:
            raise TrainingDivergedError(f"diverged with learning rate {learning_rate:g}")
        return {"learning_rate": learning_rate}, None

    monkeypatch.setattr(runner, "_run_once", fake_run_once)
    pipelines = iter(["first", "second", "third"])
    config = settings.RunConfig(method="medyate")
    row, _ = runner.run_one(config, lambda: next(pipelines), None, None)
    assert [lr for lr, _ in tried] == [0.05, 0.025, 0.0125]
    assert [ds for _, ds in tried] == ["first", "second", "third"]  # a fresh pipeline per try
    assert row == {"learning_rate": 0.0125, "retries": 2}

    tried.clear()
    with pytest.raises(TrainingDivergedError,
                       match=r"try 1: .*rate 0\.01 \| try 2: .*rate 0\.005\)"):
        runner.run_one(settings.RunConfig(method="full", max_retries=1), "data", None, None)
    assert [lr for lr, _ in tried] == [0.01, 0.005]


# --- the recipe is keras_medyate.recipe ------------------------------------------------------


def test_the_runner_uses_the_recipe_constants():
    assert settings.RunConfig(method="full").peak_learning_rate() == \
        recipe.FULL_FINETUNING_LEARNING_RATE
    assert settings.RunConfig(method="medyate").peak_learning_rate() == recipe.LEARNING_RATE
    recommended = settings.protocol_defaults("recommended")
    assert recommended["clipnorm"] == recipe.CLIPNORM
    assert recommended["warmup_epochs"] == recipe.WARMUP_EPOCHS
    assert not hasattr(runner, "cosine_schedule")
    with pytest.raises(ValueError, match="medyate only"):
        settings.RunConfig(method="full", runtime="litert")


# --- data: a seed picks the training images; a validation split from them -------------------


def test_validation_split_is_held_out_from_the_seeds_training_images(fashion_mnist_dir):
    train_ds, test_ds, probe_ds, info = runner.load_data("fashion_mnist", 8, batch_size=64,
                                                         train_per_class=5, test_per_class=1,
                                                         seed=1)
    fit_ds, validation_ds, fit_probe, split = runner.load_data(
        "fashion_mnist", 8, batch_size=64, train_per_class=5, test_per_class=1, seed=1,
        validation_fraction=0.2)
    everything, fit, held = _images(probe_ds), _images(fit_probe), _images(validation_ds)
    assert (split.num_train, split.num_test) == (40, 10)
    assert sorted(fit + held) == sorted(everything)  # a split of the seed's training images
    assert not set(fit) & set(held)
    assert sorted(y for _, y in held) == list(range(10))  # stratified: one per class
    assert sorted(_images(fit_ds)) == sorted(fit)
    assert not set(held) & set(_images(test_ds))
    other = runner.load_data("fashion_mnist", 8, batch_size=64, train_per_class=5,
                             test_per_class=1, seed=2, validation_fraction=0.2)
    assert _images(other[1]) != held


# --- report: counts and spread per cell, pairs that share a seed -----------------------------


def _row(method, budget, seed, top1, runtime="keras", **extra):
    row = {column: "" for column in settings.CSV_COLUMNS}
    row.update(model="m", dataset="d", method=method, budget_units=budget, seed=seed, top1=top1,
               runtime=runtime, evaluated_on="test", epochs=2, retries=0, epoch_seconds=1.0,
               update_memory_kb=1.0, peak_memory_mb="", resample_seconds_per_epoch=0.0,
               explored=0.5, epoch_top1="50.00;60.00", epoch_eval_seconds=2.0, test_images=10,
               learning_rate=0.05)
    row.update(extra)
    return row


def test_report_counts_runs_per_cell_and_labels_single_runs():
    rows = [_row("medyate", 100, 0, 70.0), _row("medyate", 100, 1, 72.0),
            _row("medyate", 200, 0, 71.0),
            _row("full", 999, 0, 69.0), _row("full", 999, 1, 69.5),
            _row("medyate", 100, 0, 69.0, runtime="litert"),
            _row("linear_probe", 0, 0, 60.0, epochs=0, epoch_top1="")]
    table = "\n".join(report.accuracy_table([report.normalize(r) for r in rows]))
    assert "| medyate | 71.00 ± 1.41 (n=2) | 71.00 (1 run) |" in table
    assert "| medyate (LiteRT) | 69.00 (1 run) |  |" in table
    assert "| full (999 units) | 69.25 ± 0.35 (n=2) (any budget) |" in table
    summary = report.summary_markdown(rows)
    assert "| 100 | 71.00 ± 1.41 (n=2) | 69.00 (1 run) | -1.00 (1) |" in summary  # Keras|LiteRT
    assert "after every epoch" in summary and "Evaluation cost" in summary
    # Pairs share a seed and a budget; the full run of seed 1 pairs with medyate seed 1 only.
    assert "| full | 100 | 2 | +1.75 |" in summary
    assert "| full | 200 | 1 | +2.00 | (1 pair) |" in summary


def test_old_or_other_split_csv_is_refused(tmp_path):
    path = tmp_path / "paper_comparison.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["model", "dataset", "method"], ["m", "d", "full"]])
    with pytest.raises(ValueError, match="another version.*runtime"):
        report.check_csv(str(path), "test")
    path.unlink()
    report.append_csv(str(path), _row("medyate", 100, 0, 70.0))
    report.check_csv(str(path), "test")
    with pytest.raises(ValueError, match="evaluated on test, not validation"):
        report.check_csv(str(path), "validation")
    (row,) = report.read_csv(str(path))
    assert row["epoch_top1"] == [50.0, 60.0] and math.isnan(row["peak_memory_mb"])
    assert report.run_key(row) == ("m", "d", "medyate", 100, 0, "keras")


def test_a_csv_written_before_the_crop_scale_column_is_upgraded_and_resumes(tmp_path):
    path = tmp_path / "paper_comparison.csv"
    old_columns = [c for c in settings.CSV_COLUMNS if c != "crop_scale"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_columns)
        writer.writeheader()
        for augment in (0, 1):
            row = _row("medyate", 100, augment, 70.0 + augment, augment=augment)
            writer.writerow({c: row[c] for c in old_columns})
    report.check_csv(str(path), "test")  # upgraded in place, not refused
    with open(path, newline="") as f:
        assert tuple(next(csv.reader(f))) == settings.CSV_COLUMNS
    plain, augmented = report.read_csv(str(path))
    assert (plain["crop_scale"], augmented["crop_scale"]) == ("", "0.08")  # the authors' crop
    assert (plain["top1"], augmented["top1"], augmented["epoch_top1"]) == (70.0, 71.0, [50, 60])
    assert [report.augmentation_text(r) for r in (plain, augmented)] == [
        "no", "crop 0.08–1 + flip"]
    report.append_csv(str(path), _row("medyate", 100, 2, 72.0, augment=1, crop_scale="none"))
    assert report.augmentation_text(report.read_csv(str(path))[-1]) == "flip"


def test_crop_scale_picks_the_random_resized_crop():
    assert settings.data_augmentation(False, 0.5) is False
    assert settings.data_augmentation(True, 0.35).crop_scale == (0.35, 1.0)
    flip_only = settings.data_augmentation(True, None)
    assert flip_only.crop_scale is None and flip_only.horizontal_flip
    assert settings.augmentation_label(True, 0.35) == "0.35"
    assert settings.augmentation_label(True, None) == "none"
    assert settings.augmentation_label(False, 0.35) == ""
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="crop_scale"):
            settings.RunConfig(augment=True, crop_scale=bad)


# --- threads ------------------------------------------------------------------------------


def test_threads_are_fixed_before_tensorflow_starts():
    code = (
        "import tensorflow as tf\n"
        "from keras_medyate.comparison import runner\n"
        "runner.set_tensorflow_threads(2)\n"
        "tf.ones(1)\n"
        "runner.set_tensorflow_threads(2)\n"
        "assert tf.config.threading.get_intra_op_parallelism_threads() == 2\n"
        "assert tf.config.threading.get_inter_op_parallelism_threads() == 2\n"
        "try:\n"
        "    runner.set_tensorflow_threads(3)\n"
        "except RuntimeError as error:\n"
        "    print(error)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Cannot set TensorFlow's intra-op threads to 3" in result.stdout


# --- the LiteRT runtime: same head, plan, seed, data, recipe, epochs ------------------------


def test_litert_runtime_trains_the_probe_head_with_the_recipe(monkeypatch, weights_dir,
                                                              fashion_mnist_dir):
    import tflite_export

    monkeypatch.setenv("KERAS_MEDYATE_WEIGHTS_DIR", weights_dir)
    calls = {}

    def export_training_model(model, plan, path, batch_size, optimizer, infer_batch_size):
        calls["export"] = dict(head=[w.copy() for w in model.get_layer(
            plan.classifier).get_weights()], plan=plan, batch_size=batch_size,
            optimizer=optimizer, infer_batch_size=infer_batch_size)
        open(path, "wb").close()

    class OnDeviceTrainer:
        def __init__(self, path):
            calls["path"] = path

        def fit(self, dataset, epochs, seed, validation_data):
            calls["fit"] = dict(epochs=epochs, seed=seed, validation=validation_data,
                                order=_images(dataset))
            pool = calls["export"]["plan"].pool
            selection = types.SimpleNamespace(mask=np.ones(pool.size), cost_units=100,
                                              num_channels=3)
            return [{"loss": 1.0, "steps": 4, "seconds": 2.0 + e, "selection": selection,
                     "val_accuracy": 0.1 * (e + 1)} for e in range(epochs)]

        def evaluate(self, dataset):
            return 0.25

    monkeypatch.setattr(tflite_export, "export_training_model", export_training_model,
                        raising=False)
    monkeypatch.setattr(tflite_export, "OnDeviceTrainer", OnDeviceTrainer, raising=False)
    train_ds, test_ds, probe_ds, info = runner.load_data("fashion_mnist", 32, batch_size=8,
                                                         train_per_class=3, test_per_class=1,
                                                         seed=0)
    config = settings.RunConfig(method="medyate", runtime="litert", epochs=2, resolution=32,
                                batch_size=8, seed=0)
    row, resampler = runner.run_one(config, train_ds, test_ds, info, probe_ds=probe_ds)
    assert resampler is None and row["runtime"] == "litert" and row["top1"] == 25.0
    assert row["epoch_top1"] == "10.00;20.00" and row["epoch_seconds"] == 3.0
    assert row["train_seconds"] == 5.0 and row["explored"] == 1.0
    export = calls["export"]
    assert export["batch_size"] == 8 and calls["fit"]["epochs"] == 2
    assert export["infer_batch_size"] == 8  # the per-epoch evaluation runs `infer` on batches
    assert calls["fit"]["seed"] == 0 and calls["fit"]["validation"] is test_ds
    # The probe head (as every Keras run of this seed starts from) was in the exported model.
    cached = [v for k, v in runner._PROBE_HEADS.items() if k[0] == "mcunet_5fps" and k[3] == 0]
    assert all(np.array_equal(a, b) for a, b in zip(export["head"], cached[-1][1]))
    # The recipe's SGD, its schedule counted in full batches (30 images / 8 = 3).
    optimizer = export["optimizer"]
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.clipnorm == recipe.CLIPNORM
    schedule = optimizer._learning_rate  # the schedule object (`learning_rate` is its value)
    assert schedule.warmup_steps == 3 and schedule.decay_steps == 3
    assert math.isclose(schedule.warmup_target, recipe.LEARNING_RATE)


# --- an interrupted run resumes, and its row covers every epoch ----------------------------


class _Interrupted(Exception):
    pass


def test_a_resumed_run_keeps_the_measurements_of_its_finished_epochs(
        monkeypatch, tmp_path, weights_dir, fashion_mnist_dir):
    from keras_medyate.comparison import journal

    monkeypatch.setenv("KERAS_MEDYATE_WEIGHTS_DIR", weights_dir)
    train_ds, test_ds, probe_ds, info = runner.load_data("fashion_mnist", 32, batch_size=8,
                                                         train_per_class=2, test_per_class=1,
                                                         seed=0)
    config = settings.RunConfig(method="medyate", epochs=3, resolution=32, batch_size=8,
                                seed=0, backup_dir=str(tmp_path))
    folder = runner.backup_path(config, info)
    save = journal.RunJournal.on_epoch_end

    def stop_after_two_epochs(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch == 1:
            raise _Interrupted()

    with monkeypatch.context() as patch:
        patch.setattr(journal.RunJournal, "on_epoch_end", stop_after_two_epochs)
        with pytest.raises(_Interrupted):
            runner.run_one(config, train_ds, test_ds, info, probe_ds=probe_ds)
    kept = journal.RunJournal.read(folder)
    assert kept["epochs"] == 2 and kept["retries"] == 0
    assert len(kept["parts"]["timer"]["seconds"]) == 2
    row, resampler = runner.run_one(config, train_ds, test_ds, info, probe_ds=probe_ds)
    curve = row["epoch_top1"].split(";")
    assert len(curve) == 3 and all(curve)
    assert curve[:2] == [f"{100 * a:.2f}" for a in kept["parts"]["evaluator"]["accuracies"][:2]]
    assert row["first_epoch_seconds"] == round(kept["parts"]["timer"]["seconds"][0], 3)
    # The finished session's training time (its epochs, resampling and callbacks) is kept.
    assert kept["train_seconds"][1] >= sum(kept["parts"]["timer"]["seconds"])
    assert row["train_seconds"] > kept["train_seconds"][1]
    assert kept["parts"]["guard"]["first_loss"] > 0  # the resumed run's divergence baseline
    assert sorted(resampler.history) == [0, 1, 2]
    for record in kept["parts"]["resampler"]:
        restored = resampler.history[record["epoch"]]
        assert {k: v.tolist() for k, v in restored.channels.items()} == record["channels"]
        assert restored.cost_units == record["cost_units"] <= config.budget_units
    assert not os.path.exists(folder)  # a finished run's backup is removed


def test_a_backup_without_its_measurements_is_refused(tmp_path):
    from keras_medyate.comparison import journal

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((8, 4)), np.zeros((8, 2))
    timer = journal.EpochTimer()
    backup = journal.RunJournal(str(tmp_path), {"timer": timer}, learning_rate=0.01)

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise _Interrupted()

    with pytest.raises(_Interrupted):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[timer, backup, Stop()])
    os.remove(tmp_path / journal.JOURNAL_FILE)  # as an older keras-medyate left it
    resumed = journal.RunJournal(str(tmp_path), {"timer": journal.EpochTimer()},
                                 learning_rate=0.01)
    with pytest.raises(journal.ResumeError, match="Delete .* to run it again from the start"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[resumed])


def test_an_interrupted_retry_resumes_at_its_rate_and_a_diverged_try_drops_its_backup(
        monkeypatch, tmp_path):
    import json

    from keras_medyate.comparison import journal

    info = types.SimpleNamespace(name="cifar10", num_train=100, num_test=10)
    config = settings.RunConfig(method="medyate", backup_dir=str(tmp_path))
    folder = runner.backup_path(config, info)
    os.makedirs(folder)
    with open(os.path.join(folder, journal.JOURNAL_FILE), "w") as f:
        json.dump({"epochs": 1, "learning_rate": 0.025, "retries": 1, "parts": {},
                   "settings": runner.run_settings(config, info)}, f)
    # The same run with other settings (here more epochs) is not resumed from it.
    longer = settings.RunConfig(method="medyate", backup_dir=str(tmp_path), epochs=20)
    with pytest.raises(journal.ResumeError, match=r"epochs: 10 there, 20 now.*delete"):
        runner.run_one(longer, lambda: "data", None, info)
    tried = []

    def fake_run_once(config, train_ds, test_ds, info, probe_ds, learning_rate, verbose,
                      retries):
        tried.append((learning_rate, retries, os.path.exists(folder)))
        if len(tried) == 1:
            raise TrainingDivergedError("diverged")
        return {"learning_rate": learning_rate}, None

    monkeypatch.setattr(runner, "_run_once", fake_run_once)
    row, _ = runner.run_one(config, lambda: "data", None, info)
    assert tried == [(0.025, 1, True), (0.0125, 2, False)]
    assert row["retries"] == 2
