"""The on-device export of the paper's MCUNet checkpoint (64 px, budget 15,936 units)."""

import numpy as np
import pytest

import keras_medyate as kmd

pytest.importorskip("ai_edge_litert", reason="needs the litert extra: pip install -e '.[litert]' "
                    "(included in '.[test]')")

from tests.helpers import assert_same_training, export  # noqa: E402
from tflite_export import flatbuffer  # noqa: E402

# Slow (the export of MCUNet alone takes 4-7 s on 2 cores): the same checks run on
# small models in tests/test_tflite_export.py (builtin ops, infer == Keras,
# train == SubnetworkModel, fit) and on the sampler in test_tflite_export_sampler.py.
pytestmark = pytest.mark.slow
SIZE, BATCH, BUDGET = 64, 4, 15936


@pytest.fixture(scope="module")
def mcunet(tmp_path_factory, weights_dir):
    import keras  # noqa: PLC0415

    from keras_medyate import models  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    model = models.mcunet_5fps(classes=10, input_shape=(SIZE, SIZE, 3), weights_dir=weights_dir)
    plan = kmd.plan(model, budget=BUDGET, ranking="lara")
    device, summary = export(model, plan, tmp_path_factory.mktemp("mcunet"), batch_size=BATCH,
                             learning_rate=0.01)
    return model, plan, device, summary


def images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, size=(n, SIZE, SIZE, 3)).astype(np.float32)


def test_mcunet_export_is_builtin_and_infers_like_keras(mcunet):
    model, plan, device, summary = mcunet
    with open(summary.path, "rb") as f:
        assert flatbuffer.non_builtin_operators(f.read()) == []
    assert device.metadata["pool"]["layers"] == plan.layers
    assert device.metadata["output"] == "softmax"
    x = images(3, 0)
    np.testing.assert_allclose(device.infer(x), model(x).numpy(), atol=1e-5)


def test_mcunet_train_equals_subnetwork_model(mcunet):
    model, plan, device, _ = mcunet
    selection = device.resample(seed=0)
    assert 0 < selection.cost_units <= BUDGET
    x = images(2 * BATCH, 1)
    y = (np.arange(2 * BATCH) % 10).astype(np.int32)
    assert_same_training(device, model, plan, x, y, np.flatnonzero(selection.mask),
                         learning_rate=0.01, steps=2, from_logits=False)


def test_mcunet_fit_runs_medyate_on_the_device(mcunet):
    _, _, device, _ = mcunet
    x = images(2 * BATCH, 2)
    y = (np.arange(2 * BATCH) % 10).astype(np.int32)
    history = device.fit((x, y), epochs=3, seed=1)
    assert all(np.isfinite(h["loss"]) for h in history)
    assert all(0 < h["selection"].cost_units <= BUDGET for h in history)
    state = device.get_state()
    assert state["max_filled"][0] == 1
    assert state["seen"].sum() >= max(h["selection"].num_channels for h in history)
