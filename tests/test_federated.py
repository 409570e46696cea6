"""Federated fine-tuning (`keras_medyate.federated`) and the device's sparse updates.

The device API (`OnDeviceTrainer.get_update` / `apply_update`): exact round
trips, exact byte counts, frozen slices untouched. The server's slice-wise
average on hand-built updates. The partitions. A two-client, two-round
simulation on Flower's engine (a tiny model), and the CLI's resume (MCUNet at
32 px). The clients never import TensorFlow.
"""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_medyate as kmd
from tests.helpers import REPO, export, random_data, small_cnn

pytest.importorskip("ai_edge_litert", reason="needs the litert extra: pip install -e '.[litert]'")
pytest.importorskip("flwr", reason="needs the federated extra: pip install -e '.[federated]'")
pytest.importorskip("ray", reason="needs the federated extra: pip install -e '.[federated]'")

from keras_medyate.federated import partition, records, simulation  # noqa: E402
from keras_medyate.federated.settings import Settings  # noqa: E402
from keras_medyate.federated.strategy import average_slices  # noqa: E402
from tflite_export.on_device import OnDeviceTrainer, SliceUpdate  # noqa: E402

BATCH = 4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """small_cnn (5 search-space layers: conv, 1x1, depthwise) exported at a small budget."""
    keras.utils.set_random_seed(0)
    model = small_cnn(size=16)
    plan = kmd.plan(model, budget=600)
    folder = tmp_path_factory.mktemp("federated_model")
    device, summary = export(model, plan, folder, batch_size=BATCH)
    return model, plan, device.path


def bits(array):
    return np.asarray(array, np.float32).view(np.uint32)


@pytest.mark.parametrize("runtime", ["interpreter", "compiled_model"])
def test_get_update_holds_the_trained_slices_and_the_head_and_applies_exactly(exported, runtime):
    model, plan, path = exported
    device = OnDeviceTrainer(path, runtime=runtime)
    original = device.get_weights()
    assert device.trained_since_sync().sum() == 0
    assert device.get_update().num_channels == 0  # nothing trained yet: the head only
    x, y = random_data(2 * BATCH, size=16)
    first = device.resample(seed=0)
    device.train(x[:BATCH], y[:BATCH])
    second = device.resample(seed=0)
    device.train(x[BATCH:], y[BATCH:])
    update = device.get_update()
    trained = (first.mask > 0) | (second.mask > 0)
    np.testing.assert_array_equal(device.trained_since_sync(), trained.astype(np.float32))
    assert update.num_channels == int(trained.sum()) > 0
    weights = device.get_weights()
    for layer in device.layer_names:
        axis = device.metadata["weights"][device.layer_names.index(layer)]["channel_axis"]
        expected = device.pool.to_dict(np.flatnonzero(trained))[layer]
        np.testing.assert_array_equal(update.channels[layer], expected)
        np.testing.assert_array_equal(
            bits(update.kernels[layer]),
            bits(np.take(weights[f"{layer}/kernel"], expected, axis=axis)))
        # Every channel outside the update is the exported value, bit for bit.
        frozen = np.setdiff1d(np.arange(weights[f"{layer}/kernel"].shape[axis]), expected)
        np.testing.assert_array_equal(
            bits(np.take(weights[f"{layer}/kernel"], frozen, axis=axis)),
            bits(np.take(original[f"{layer}/kernel"], frozen, axis=axis)))
    assert set(update.head) == {"classifier/kernel", "classifier/bias"}

    # A fresh phone (the exported weights) applies it: it then holds the same model.
    other = OnDeviceTrainer(path, runtime=runtime)
    assert other.apply_update(update) == update.num_channels
    for key, value in other.get_weights().items():
        np.testing.assert_array_equal(bits(value), bits(weights[key]), err_msg=key)
    # The wire form round-trips exactly, through Flower's ArrayRecord too.
    again = records.from_record(records.to_record(update))
    for layer in update.channels:
        np.testing.assert_array_equal(again.channels[layer], update.channels[layer])
        np.testing.assert_array_equal(bits(again.kernels[layer]), bits(update.kernels[layer]))
    for key in update.head:
        np.testing.assert_array_equal(bits(again.head[key]), bits(update.head[key]))
    # get -> apply -> get of every channel is the identity.
    whole = device.get_update(every_channel=True)
    third = OnDeviceTrainer(path, runtime=runtime)
    third.apply_update(whole.arrays())
    for key, value in third.get_weights().items():
        np.testing.assert_array_equal(bits(value), bits(weights[key]), err_msg=key)
    # Applying the server's model syncs: nothing is trained since.
    device.apply_update(whole)
    assert device.trained_since_sync().sum() == 0
    device.mark_synced(trained.astype(np.float32))  # an app restored after a restart
    np.testing.assert_array_equal(device.trained_since_sync(), trained.astype(np.float32))


def test_update_bytes_are_counted_exactly(exported):
    _, plan, path = exported
    device = OnDeviceTrainer(path)
    device.resample(seed=3)
    x, y = random_data(BATCH, size=16)
    device.train(x, y)
    update = device.get_update()
    expected = 0
    for layer in device.layer_names:
        kernel = device.get_weights()[f"{layer}/kernel"]
        axis = plan.layer_info(layer).channel_axis
        per_channel = kernel.size // kernel.shape[axis]
        chosen = len(update.channels[layer])
        expected += 4 * chosen + 4 * chosen * per_channel  # int32 index + float32 slice
    expected += 4 * (12 * 3 + 3)                            # Dense(12 -> 3) kernel and bias
    assert update.num_bytes == expected
    assert update.num_bytes == sum(a.nbytes for a in update.arrays().values())
    whole = device.get_update(every_channel=True)
    assert whole.num_bytes == 4 * plan.pool.size + 4 * sum(
        w.size for w in device.get_weights().values())


def test_apply_update_writes_only_its_slices_and_rejects_bad_updates(exported):
    _, _, path = exported
    device = OnDeviceTrainer(path)
    before = device.get_weights()
    layer = device.layer_names[1]
    axis = device.metadata["weights"][1]["channel_axis"]
    shape = list(before[f"{layer}/kernel"].shape)
    shape[axis] = 2
    values = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    empty = {name: np.zeros(0, np.int32) for name in device.layer_names}
    empty_kernels = {}
    for name in device.layer_names:
        kernel_shape = list(before[f"{name}/kernel"].shape)
        kernel_shape[device.metadata["weights"][device.layer_names.index(name)]
                     ["channel_axis"]] = 0
        empty_kernels[name] = np.zeros(kernel_shape, np.float32)
    update = SliceUpdate(channels={**empty, layer: np.array([1, 3], np.int32)},
                          kernels={**empty_kernels, layer: values}, head={})
    assert device.apply_update(update) == 2
    after = device.get_weights()
    written = np.take(after[f"{layer}/kernel"], [1, 3], axis=axis)
    np.testing.assert_array_equal(bits(written), bits(values))
    for key, value in after.items():
        if key == f"{layer}/kernel":
            untouched = np.delete(np.arange(value.shape[axis]), [1, 3])
            value, old = (np.take(v, untouched, axis=axis) for v in (value, before[key]))
        else:
            old = before[key]
        np.testing.assert_array_equal(bits(value), bits(old), err_msg=key)

    def rejected(**changes):
        bad = SliceUpdate(**{**dict(channels=update.channels, kernels=update.kernels,
                                     head={}), **changes})
        with pytest.raises(ValueError):
            device.apply_update(bad)
        for key, value in device.get_weights().items():  # nothing was written
            np.testing.assert_array_equal(bits(value), bits(after[key]), err_msg=key)

    rejected(channels={**update.channels, layer: np.array([1, 99], np.int32)})
    rejected(channels={**update.channels, layer: np.array([1, 1], np.int32)})
    rejected(kernels={**update.kernels, layer: values[..., :1, :] if axis == 2 else values[:1]})
    rejected(channels={**update.channels, "no_such_layer": np.array([0], np.int32)},
             kernels={**update.kernels, "no_such_layer": values})
    rejected(head={"classifier/kernel": np.zeros((5, 5), np.float32)})


def test_server_average_is_slice_wise_weighted_by_the_examples_of_the_trainers():
    rng = np.random.default_rng(0)
    axes = {"conv": 2, "dense": 0}
    current = {"conv/kernel": rng.normal(size=(3, 3, 4, 5)).astype(np.float32),
               "dense/kernel": rng.normal(size=(6, 2)).astype(np.float32),
               "head/kernel": rng.normal(size=(2, 3)).astype(np.float32),
               "head/bias": rng.normal(size=(3,)).astype(np.float32)}

    def client(conv, dense, examples):
        return SliceUpdate(
            channels={"conv": np.array(conv, np.int32), "dense": np.array(dense, np.int32)},
            kernels={"conv": rng.normal(size=(3, 3, len(conv), 5)).astype(np.float32),
                     "dense": rng.normal(size=(len(dense), 2)).astype(np.float32)},
            head={"head/kernel": rng.normal(size=(2, 3)).astype(np.float32),
                  "head/bias": rng.normal(size=(3,)).astype(np.float32)}), examples

    clients = [client([0, 1], [2], 10), client([1], [2, 4], 30), client([1, 3], [], 60)]
    updates, weights = zip(*clients)
    new = average_slices(current, list(updates), list(weights), axes, average="trainers")

    def slice_of(update, layer, channel):
        position = list(update.channels[layer]).index(channel)
        return np.take(update.kernels[layer], position, axis=axes[layer])

    def expected(layer, channel):
        pairs = [(slice_of(u, layer, channel), w) for u, w in clients
                 if channel in u.channels[layer]]
        if not pairs:
            return np.take(current[f"{layer}/kernel"], channel, axis=axes[layer])
        return sum(v.astype(np.float64) * w for v, w in pairs) / sum(w for _, w in pairs)

    for layer, size in (("conv", 4), ("dense", 6)):
        for channel in range(size):
            got = np.take(new[f"{layer}/kernel"], channel, axis=axes[layer])
            np.testing.assert_allclose(got, expected(layer, channel), rtol=1e-6, atol=1e-7)
    # Slices nobody trained keep their exact value (conv 2, dense 0, 1, 3, 5) ...
    np.testing.assert_array_equal(bits(new["conv/kernel"][:, :, 2]),
                                  bits(current["conv/kernel"][:, :, 2]))
    for channel in (0, 1, 3, 5):
        np.testing.assert_array_equal(bits(new["dense/kernel"][channel]),
                                      bits(current["dense/kernel"][channel]))
    # ... a slice one client trained is that client's value, exactly (conv 0, 3; dense 4).
    np.testing.assert_array_equal(bits(new["conv/kernel"][:, :, 0]),
                                  bits(slice_of(updates[0], "conv", 0)))
    np.testing.assert_array_equal(bits(new["dense/kernel"][4]),
                                  bits(slice_of(updates[1], "dense", 4)))
    # The head: every client trained it, weights 10 / 30 / 60.
    head = sum(u.head["head/kernel"].astype(np.float64) * w for u, w in clients) / 100
    np.testing.assert_allclose(new["head/kernel"], head, rtol=1e-6)

    # The default average: every client counts with its examples, those that did not
    # train a slice with its global value (FedAvg of the whole models); untrained stays.
    everyone = average_slices(current, list(updates), list(weights), axes)
    for layer, size in (("conv", 4), ("dense", 6)):
        for channel in range(size):
            whole = [slice_of(u, layer, channel) if channel in u.channels[layer]
                     else np.take(current[f"{layer}/kernel"], channel, axis=axes[layer])
                     for u in updates]
            fedavg = sum(v.astype(np.float64) * w for v, w in zip(whole, weights)) / 100
            got = np.take(everyone[f"{layer}/kernel"], channel, axis=axes[layer])
            np.testing.assert_allclose(got, fedavg, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(bits(everyone["conv/kernel"][:, :, 2]),
                                  bits(current["conv/kernel"][:, :, 2]))
    np.testing.assert_allclose(everyone["head/kernel"], head, rtol=1e-6)
    with pytest.raises(ValueError, match="average"):
        average_slices(current, list(updates), list(weights), axes, average="mean")
    # Dense updates (every channel from every client) are plain FedAvg.
    dense = [records.full_update({**current, **{k: v + i for k, v in current.items()}}, axes)
             for i in range(3)]
    averaged = average_slices(current, dense, [1, 1, 2], axes)
    for key, value in current.items():
        np.testing.assert_allclose(averaged[key], value + (0 * 1 + 1 * 1 + 2 * 2) / 4,
                                   rtol=1e-6, atol=1e-6)


def test_partitions_cover_every_example_once_and_dirichlet_skews_labels():
    labels = np.repeat(np.arange(10), 50)
    for parts in (partition.iid(labels, 5, seed=0),
                  partition.dirichlet(labels, 5, alpha=0.5, seed=0)):
        assert sorted(np.concatenate(parts).tolist()) == list(range(500))
        assert min(len(p) for p in parts) >= partition.MIN_PARTITION_SIZE
    iid = partition.iid(labels, 5, seed=0)
    assert {len(p) for p in iid} == {100}
    skewed = partition.dirichlet(labels, 5, alpha=0.1, seed=0)

    def top_class_share(parts):
        return np.mean([np.bincount(labels[p]).max() / len(p) for p in parts])

    assert top_class_share(skewed) > 2 * top_class_share(iid)
    np.testing.assert_array_equal(np.concatenate(partition.dirichlet(labels, 5, 0.5, seed=1)),
                                  np.concatenate(partition.dirichlet(labels, 5, 0.5, seed=1)))
    assert partition.client_seed(0, 1) != partition.client_seed(0, 2)
    with pytest.raises(ValueError, match="dirichlet:0.5"):
        partition.parse("dirichlet:-1")
    with pytest.raises(ValueError, match="cannot be shared"):
        partition.iid(labels[:3], 5, seed=0)


def run_python(code):
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_client_never_imports_tensorflow():
    """The client's modules import no TensorFlow; in the simulation's workers TensorFlow
    cannot even be imported (Flower's own simulation package tries to)."""
    out = run_python(
        "import sys\n"
        "from keras_medyate.federated import client, records, strategy, partition\n"
        "app = client.make_client_app('m.tflite', 'data', 'states')\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras')))\n"
        "from keras_medyate.federated import no_tensorflow\n"
        "no_tensorflow.block()\n"
        "import flwr.simulation.ray_transport.ray_actor  # imports TF when it can\n"
        "assert 'tensorflow' not in sys.modules\n"
        "try:\n"
        "    import tensorflow\n"
        "except ModuleNotFoundError as error:\n"
        "    print('blocked:', error)\n")
    assert "blocked: No module named 'tensorflow'" in out


def prepared_folder(folder, model, plan, clients, sizes, seed=0):
    """What `prepare` writes, by hand, for a tiny model and random images."""
    from tflite_export import export_training_model

    os.makedirs(folder / "data")
    export_training_model(model, plan, str(folder / "model.tflite"), batch_size=BATCH,
                          infer_batch_size=BATCH)
    x, y = random_data(sum(sizes), size=16, seed=seed)
    np.save(folder / "data" / "train_x.npy", x)
    np.save(folder / "data" / "train_y.npy", y)
    bounds = np.cumsum([0] + list(sizes))
    np.savez(folder / "data" / "partitions.npz",
             **{f"client_{i}": np.arange(bounds[i], bounds[i + 1]) for i in range(clients)})
    tx, ty = random_data(12, size=16, seed=seed + 1)
    np.save(folder / "data" / "test_x.npy", tx)
    np.save(folder / "data" / "test_y.npy", ty)
    manifest = {"model_file": "model.tflite", "dataset": "random", "full_model_bytes":
                int(sum(np.asarray(w).nbytes for w in model.weights))}
    (folder / "prepared.json").write_text(json.dumps(manifest))


def test_two_clients_two_rounds_on_flowers_simulation_engine(exported, tmp_path):
    model, plan, _ = exported
    folder = tmp_path / "run"
    os.makedirs(folder)
    prepared_folder(folder, model, plan, clients=2, sizes=(10, 6))
    settings = Settings(model="small_cnn", dataset="random", clients=2, rounds=2,
                        local_epochs=1, seed=0, batch_size=BATCH)
    lines = []
    rows = simulation.run(settings, str(folder), log=lines.append)
    assert [r["round"] for r in rows] == [0, 1, 2], lines
    whole = OnDeviceTrainer(str(folder / "model.tflite")).get_update(every_channel=True)
    for row in rows[1:]:
        assert row["clients"] == 2
        # Sparse: fewer bytes than every slice, more than the head alone.
        assert 4 * (12 * 3 + 3) < row["mean_upload_bytes"] < whole.num_bytes
        assert row["mean_upload_flower_bytes"] > row["mean_upload_bytes"]
    # Each client kept its sampler state between rounds; the global model is checkpointed.
    assert (folder / "clients" / "client_001" / "state_round_0002.npz").is_file()
    update, _ = simulation._load_checkpoint(str(folder), 2)
    assert update.num_channels == plan.pool.size
    assert (folder / "rounds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_stops_resumes_and_refuses_other_settings(tmp_path, weights_dir):
    """MCUNet at 32 px on a tiny image folder: round 1, 'interrupted', then resumed."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 14), ("test", 4)):
        for label, colour in enumerate(((200, 40, 40), (40, 200, 40))):
            os.makedirs(tmp_path / "images" / split / f"class{label}")
            for i in range(count):
                pixels = np.clip(rng.normal(colour, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(tmp_path / "images" / split / f"class{label}"
                                             / f"{i}.png")
    env = dict(os.environ, KERAS_MEDYATE_WEIGHTS_DIR=weights_dir,
               KERAS_HOME=str(tmp_path / "keras_home"))
    out = tmp_path / "out"

    def cli(*extra):
        return subprocess.run(
            [sys.executable, "-m", "keras_medyate.federated",
             f"--dataset=folder:{tmp_path / 'images'}", "--clients=2", "--rounds=2",
             "--resolution=32", "--train_per_class=14", "--test_per_class=all",
             "--server_per_class=4", "--batch_size=4", f"--out={out}", *extra],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)

    first = cli("--stop_after=1")
    assert first.returncode == 0, first.stderr[-3000:]
    with open(out / "rounds.csv", newline="") as f:
        before = list(csv.DictReader(f))
    assert [r["round"] for r in before] == ["0", "1"]
    second = cli()
    assert second.returncode == 0, second.stderr[-3000:]
    assert "continuing at round 2" in second.stdout
    assert "round   1/2" not in second.stdout  # round 1 did not run again
    with open(out / "rounds.csv", newline="") as f:
        after = list(csv.DictReader(f))
    assert [r["round"] for r in after] == ["0", "1", "2"]
    assert after[:2] == before
    assert "I0000" not in second.stderr and "Traceback" not in second.stderr
    for name in ("rounds.png", "prepared.json", "model.tflite"):
        assert (out / name).is_file()
    other = cli("--seed=1")
    assert other.returncode == 2
    assert "holds a run with other settings (seed: 0 there, 1 now)" in other.stderr
