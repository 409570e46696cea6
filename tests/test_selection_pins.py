"""Pinned selections: the same seed selects the same channels as before a refactor.

The host samplers (`keras_medyate.strategies`, seeded by `ChannelResampler`
with `numpy.random.default_rng([seed, epoch])`) and MeDyate's sampler (host
and device: `keras_medyate.strategies.random_stream`, a counter-based hash)
select channels from a random stream that code changes must not alter by
accident. The channel lists below were recorded from the code as it was; a
change that alters a stream on purpose updates them in the same commit and
says so.

Re-pinned on purpose (issue 12, item 1): the host MeDyate entries (`HOST`
and `FIT` with strategy "medyate") were recorded again from the code after
`MeDyateSelector` moved from `default_rng([seed, epoch])` to the device's
stream (`random_stream`), so that host and device select the same channels.
The device pins (`test_device_resample_selects_the_pinned_channels`) did not
change; the stream pin now pins the words and exponential variates of the
same hash. Every other pin is unchanged.
"""

import os

import keras
import numpy as np
import pytest

import keras_medyate as kmd
from keras_medyate.strategies import base, get
from tests.helpers import make_pool, random_data, small_cnn

POOL = dict(num_channels=[6, 9, 5], costs=[7, 3, 11])
BUDGET = 40

#: (strategy, fill) → flat selections of epochs 0..3 (see `_select_four_epochs`).
HOST = {
    ("medyate", "stop"): [[0, 1, 2, 5, 6, 8, 14], [2, 4, 9, 12, 13, 15],
                          [2, 5, 7, 8, 9, 10, 13, 17], [7, 8, 10, 11, 16, 19]],
    ("medyate", "skip"): [[0, 1, 2, 5, 6, 8, 13, 14], [2, 4, 7, 9, 11, 12, 13, 15],
                          [2, 5, 8, 9, 10, 12, 13, 17], [2, 8, 10, 13, 16, 19]],
    ("trady", "stop"): [[1, 3, 7, 9, 18], [5, 11, 12, 13, 15, 19], [5, 6, 8, 12, 16, 18],
                        [0, 7, 9, 13, 15, 18]],
    ("static_random", "skip"): [[1, 3, 7, 9, 10, 11, 13, 18]] * 4,
    ("det_rgn", "skip"): [[0, 1, 2, 7, 8, 9, 11, 13, 14], [1, 2, 3, 5, 6, 8, 12, 13],
                          [1, 2, 3, 8, 9, 10, 12, 13, 14], [2, 6, 7, 8, 9, 10, 11, 12, 13, 14]],
    ("prob_raw", "stop"): [[0, 1, 9, 13, 14, 18], [1, 2, 3, 5, 8, 9, 11], [2, 3, 14, 17, 18],
                           [7, 10, 15, 16, 19]],
    ("sparse_update", "stop"): [[3, 4, 5, 8, 11, 12, 13]] * 4,
}

#: (strategy, seed, fill) → flat selections of `fit` epochs 0..2 on `small_cnn`.
FIT = {
    ("medyate", 3, "stop"): [[7, 11, 13, 23, 38, 50], [9, 17, 32, 33, 44], [1, 6, 20, 41]],
    ("medyate", 4, "skip"): [[0, 12, 26, 33], [6, 7, 10, 14, 15, 16, 28],
                             [20, 25, 29, 34, 42, 44]],
    ("trady", 3, "stop"): [[2, 11, 17, 28], [10, 25, 28, 31, 42, 44],
                           [12, 17, 20, 26, 35, 37, 38, 41]],
}


def _select_four_epochs(strategy, fill):
    pool = make_pool(POOL["num_channels"], POOL["costs"])
    selector = get(strategy)(pool, BUDGET, fill)
    rng = np.random.default_rng(11)
    kernels = {name: rng.normal(size=(3, 3, int(count), 2))
               for name, count in zip(pool.layer_names, pool.num_channels)}
    previous, selections = None, []
    for epoch in range(4):
        norms = rng.gamma(1.0, size=pool.size)
        if previous is None and not selector.needs_all_norms:
            norms = None
        context = base.SelectionContext(epoch=epoch, rng=np.random.default_rng([5, epoch]),
                                        previous=previous, norms=norms,
                                        kernels=lambda: kernels)
        previous = selector.select(context)
        selections.append(previous.tolist())
    return selections


@pytest.mark.parametrize("strategy, fill", sorted(HOST))
def test_host_selectors_select_the_pinned_channels(strategy, fill):
    assert _select_four_epochs(strategy, fill) == HOST[(strategy, fill)]


@pytest.mark.parametrize("strategy, seed, fill", sorted(FIT))
def test_resampler_in_fit_selects_the_pinned_channels(strategy, seed, fill):
    keras.utils.set_random_seed(0)
    model = small_cnn()
    plan = kmd.plan(model, budget=600)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    resampler = kmd.ChannelResampler(plan, strategy=strategy, seed=seed, fill=fill)
    x, y = random_data(16)
    trainer.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=[resampler])
    flat = [plan.pool.from_dict(resampler.history[epoch].channels).tolist()
            for epoch in range(3)]
    assert flat == FIT[(strategy, seed, fill)]


def test_medyate_random_stream_is_pinned():
    from keras_medyate.strategies import random_stream  # noqa: PLC0415

    words = random_stream.words(3, 2, 5)
    assert words.tolist() == [2195366, 4266808156, 3424274041, 2087208534, 2153269262]
    np.testing.assert_array_equal(
        random_stream.exponentials(words),
        np.array([7.578926086425781, 0.006577919237315655, 0.22655437886714935,
                  0.7216163277626038, 0.6904565691947937], np.float32))


def test_device_resample_selects_the_pinned_channels(tmp_path):
    pytest.importorskip("ai_edge_litert", reason="needs the litert extra: pip install -e "
                        "'.[litert]' (included in '.[test]')")
    from tflite_export import OnDeviceTrainer, export_training_model  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    model = small_cnn(size=16)
    plan = kmd.plan(model, budget=600)
    path = os.path.join(str(tmp_path), "pins.tflite")
    export_training_model(model, plan, path, batch_size=4, learning_rate=0.05)
    device = OnDeviceTrainer(path)
    assert np.flatnonzero(device.resample(0).mask).tolist() == [8, 12, 15, 37, 49]
    assert np.flatnonzero(device.resample(9).mask).tolist() == [5, 7, 10, 19, 25, 50]
    x, y = random_data(8, 16, seed=5)
    device.train(x[:4], y[:4])
    device.train(x[4:], y[4:])
    assert np.flatnonzero(device.resample(9).mask).tolist() == [1, 27, 28, 34]
    device.train(x[:4], y[:4])
    assert np.flatnonzero(device.resample(9).mask).tolist() == [14, 33, 36, 43]
