"""Runs keras-medyate on one device and under `MirroredStrategy` over 2 logical CPUs.

Used by `tests/test_multi_device.py` in a fresh process (logical devices must be
configured before TensorFlow starts). Prints one JSON line: for each check, the
largest weight difference and whether the selections are equal.

    python tests/multi_device_check.py /tmp/some_dir
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras  # noqa: E402

import keras_medyate as kmd  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests import helpers  # noqa: E402

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def unseen_model():
    """A model of this file only: stem, a depthwise-separable residual block, a
    strided block, a hidden Dense and a logits head."""
    inputs = keras.Input((20, 20, 3))
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="stem")(inputs)
    shortcut = x
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw1")(x)
    x = keras.layers.Conv2D(12, 1, name="pw1")(x)
    x = keras.layers.Add(name="res")([x, shortcut])
    x = keras.layers.Conv2D(20, 3, strides=2, activation="relu", name="down")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="head")(x), name="unseen")


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 20, 20, 3)).astype("float32")
    y = (np.arange(n) % 5).astype("int32")
    return x, y


def dataset(x, y, batch=16):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def train(strategy_scope, method, epochs, backup=None, interrupt_at=None, save=None):
    """SubnetworkModel + ChannelResampler: returns (weights, selections)."""
    keras.utils.set_random_seed(0)
    with strategy_scope():
        model = unseen_model()
        plan = kmd.plan(model, budget=900, classifier="head")
        trainer = kmd.SubnetworkModel(model, plan)
        trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss=LOSS)
    x, y = data()
    oracle = kmd.strategies.strategy_class(method).selector_class.needs_all_norms
    options = {"probe_data": dataset(*data(16, seed=1)), "probe_steps": 1} if oracle else {}
    resampler = kmd.ChannelResampler(plan, strategy=kmd.strategies.create(method, **options),
                                     seed=3)
    callbacks = [resampler]
    if backup is not None:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(backup))
    if interrupt_at is not None:
        callbacks.append(helpers.interrupt_at(interrupt_at))
    try:
        trainer.fit(dataset(x, y), epochs=epochs, verbose=0, callbacks=callbacks)
    except RuntimeError:
        pass
    selections = {str(e): {k: [int(c) for c in v] for k, v in h.channels.items()}
                  for e, h in resampler.history.items()}
    if save is not None:
        trainer.save(save)
    return [w.copy() for w in model.get_weights()], selections, trainer


def relative(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12)))


def largest_difference(a, b):
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))


def main(directory):
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    one = tf.distribute.get_strategy  # the default strategy: one device
    results = {"replicas": mirrored.num_replicas_in_sync}

    for method in ("medyate", "det_rgn"):  # det_rgn: the oracles' probe measurement
        single_w, single_s, single = train(one().scope, method, epochs=3)
        multi_w, multi_s, multi = train(mirrored.scope, method, epochs=3)
        # The per-channel gradient norms the samplers read (of the whole batch).
        single_n, multi_n = single.channel_norms(), multi.channel_norms()
        results[f"fit_{method}"] = {"max_weight_difference": largest_difference(single_w, multi_w),
                                    "same_selections": single_s == multi_s,
                                    "max_relative_norm_difference": relative(single_n, multi_n)}

    keras.utils.set_random_seed(0)
    x, y = data()
    reference = kmd.rank_layers(unseen_model(), dataset(x, y), epochs=1)
    keras.utils.set_random_seed(0)
    with mirrored.scope():
        model = unseen_model()
    distributed = kmd.rank_layers(model, dataset(x, y), epochs=1)
    results["rank_layers"] = {
        "same_order": reference.order("lara") == distributed.order("lara"),
        "max_relative_lara_difference": max(
            abs(reference.scores["lara"][n] - distributed.scores["lara"][n])
            / max(abs(reference.scores["lara"][n]), 1e-12) for n in reference.scores["lara"])}

    backup = os.path.join(directory, "backup")
    whole_w, whole_s, _ = train(mirrored.scope, "medyate", epochs=4)
    train(mirrored.scope, "medyate", epochs=4, backup=backup, interrupt_at=2)
    resumed_w, resumed_s, trainer = train(mirrored.scope, "medyate", epochs=4, backup=backup,
                                          save=os.path.join(directory, "trained.keras"))
    results["backup_and_restore"] = {
        "max_weight_difference": largest_difference(whole_w, resumed_w),
        "same_selections": all(whole_s[e] == resumed_s[e] for e in resumed_s),
        "resumed_epochs": sorted(int(e) for e in resumed_s)}

    x_test = data(8, seed=2)[0]
    with mirrored.scope():
        loaded = keras.models.load_model(os.path.join(directory, "trained.keras"))
    results["save_load"] = {
        "max_output_difference": float(np.max(np.abs(
            loaded.predict(x_test, verbose=0) - trainer.predict(x_test, verbose=0)))),
        "same_selection_state": all(
            np.array_equal(np.asarray(loaded.selection_state[k]),
                           np.asarray(trainer.selection_state[k]))
            for k in trainer.selection_state)}
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
