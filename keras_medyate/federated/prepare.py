"""The server's preparation of a federated run: data, starting head, exported file.

This is the only part of `keras_medyate.federated` that imports TensorFlow
(the data pipelines, the Keras model, the exporter); the clients read what
it writes:

- `data/train_x.npy`, `data/train_y.npy`: the clients' images (preprocessed
  as the model expects) and labels, and `data/partitions.npz` (one index
  array per client, `partition`); `data/test_x.npy`, `data/test_y.npy`;
- `model.tflite`: the model with its starting head, exported with
  `tflite_export.export_training_model` at the budget's plan (LaRa ranking,
  K by MeDyate's alpha rule; `keras_medyate.comparison.build_plan`); in
  `dense` mode with `kernel_gradients="dense"` (every channel trained);
- `prepared.json`: what was prepared (counts, label histograms, head, plan,
  `full_model_bytes`), written last: a folder without it is prepared again.

The starting head never sees the clients' data. `server_probe` (default)
fits it by a linear probe (`kmd.fit_classifier`) on `server_per_class`
images of every class that the server holds out before the clients' images
are shared out: a probe on the clients' union would leak their data to the
server. `random` keeps Keras' initialisation. The probe is the default
because the recipe starts from a fitted head: SGD from a random head on
these BatchNorm-folded checkpoints needs many more rounds to reach the same
accuracy (`benchmarks/RESULTS.md`), and a server with a few labelled images
per class is the usual federated set-up.
"""

import json
import os
import time

import numpy as np

from keras_medyate.federated import partition as partition_lib

MANIFEST = "prepared.json"
MODEL_FILE = "model.tflite"
DATA_DIR = "data"


def is_prepared(out_dir):
    """Whether `prepare` finished in `out_dir`."""
    return os.path.isfile(os.path.join(out_dir, MANIFEST))


def load_manifest(out_dir):
    """The `prepared.json` dict of a prepared folder."""
    with open(os.path.join(out_dir, MANIFEST), encoding="utf-8") as f:
        return json.load(f)


def _to_arrays(dataset, count, path):
    """Writes a batched (x, y) pipeline into `path`_x.npy / _y.npy; returns (x memmap, y)."""
    x = None
    y = np.zeros(count, np.int32)
    start = 0
    for images, labels in dataset:
        images = np.asarray(images, np.float32)
        if x is None:
            x = np.lib.format.open_memmap(path + "_x.npy", mode="w+", dtype=np.float32,
                                          shape=(count,) + images.shape[1:])
        x[start:start + len(images)] = images
        y[start:start + len(images)] = np.asarray(labels)
        start += len(images)
    if start != count:
        raise RuntimeError(f"Expected {count} images, the pipeline gave {start}.")
    x.flush()
    np.save(path + "_y.npy", y)
    return x, y


def server_split(labels, per_class, seed):
    """(server indices, client indices): `per_class` images of every class held out.

    Raises:
        ValueError: a class with no more than `per_class` images.
    """
    if not per_class:
        return np.zeros(0, np.int64), np.arange(len(labels))
    rng = np.random.default_rng((int(seed), 0x5E7))
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) <= per_class:
            raise ValueError(
                f"Class {int(label)} has {len(members)} training images; holding out "
                f"{per_class} for the server's head leaves none for the clients. Use more "
                "images per class (--train_per_class) or fewer for the server "
                "(--server_per_class).")
        held.append(rng.permutation(members)[:per_class])
    held = np.sort(np.concatenate(held))
    return held, np.setdiff1d(np.arange(len(labels)), held)


def prepare(settings, out_dir, log=print):
    """Prepares `out_dir` for `settings` (a `Settings`); returns the manifest dict."""
    from keras_medyate import console

    console.quiet_tensorflow(verbose=settings.verbose)
    import keras

    from keras_medyate import data, memory, models
    from keras_medyate.comparison import runner
    from keras_medyate.linear_probe import fit_classifier
    from tflite_export import OnDeviceTrainer, export_training_model

    console.quiet_keras(verbose=settings.verbose)
    start = time.perf_counter()
    folder = os.path.join(out_dir, DATA_DIR)
    os.makedirs(folder, exist_ok=True)
    train_ds, test_ds, info = data.load(
        settings.dataset, image_size=settings.resolution, batch_size=256,
        train_per_class=settings.train_per_class, test_per_class=settings.test_per_class,
        seed=settings.seed, shuffle=False)
    log(f"data: {info.num_train} training / {info.num_test} test images, "
        f"{info.num_classes} classes, from {info.source}")
    all_x, all_y = _to_arrays(train_ds, info.num_train, os.path.join(folder, "all_train"))
    test_x, test_y = _to_arrays(test_ds, info.num_test, os.path.join(folder, "test"))
    del test_x
    per_class = settings.server_per_class if settings.head == "server_probe" else 0
    held, shared = server_split(all_y, per_class, settings.seed)
    client_x = np.lib.format.open_memmap(os.path.join(folder, "train_x.npy"), mode="w+",
                                         dtype=np.float32, shape=(len(shared),) + all_x.shape[1:])
    for begin in range(0, len(shared), 512):
        client_x[begin:begin + 512] = all_x[shared[begin:begin + 512]]
    client_x.flush()
    client_y = all_y[shared]
    np.save(os.path.join(folder, "train_y.npy"), client_y)
    parts = partition_lib.partition(client_y, settings.clients, settings.partition,
                                    settings.seed)
    np.savez(os.path.join(folder, "partitions.npz"),
             **{f"client_{i}": p for i, p in enumerate(parts)})
    server_x, server_y = np.asarray(all_x[held]), all_y[held]
    del all_x, client_x
    os.remove(os.path.join(folder, "all_train_x.npy"))
    os.remove(os.path.join(folder, "all_train_y.npy"))

    keras.utils.set_random_seed(settings.seed)
    model = models.from_tiny_training(
        settings.model, classes=info.num_classes,
        input_shape=(settings.resolution, settings.resolution, 3))
    head = {"kind": settings.head, "server_images": int(len(held))}
    if settings.head == "server_probe":
        fit = fit_classifier(model, (server_x, server_y), seed=settings.seed, verbose=0)
        head.update(l2=fit.l2, server_train_accuracy=fit.train_accuracy)
        log(f"head: linear probe on the server's {len(held)} held-out images "
            f"({per_class} per class; L2 {fit.l2:g}), never on the clients' data")
    else:
        log("head: random (Keras' initialisation)")
    budget = memory.parse_budget(settings.budget)
    plan = runner.build_plan(model, "medyate", budget)
    path = os.path.join(out_dir, MODEL_FILE)
    export_training_model(
        model, plan, path, batch_size=settings.batch_size, infer_batch_size=settings.batch_size,
        kernel_gradients="dense" if settings.mode == "dense" else "selected")
    device = OnDeviceTrainer(path, num_threads=1)
    dense_update = device.get_update(every_channel=True)
    full_model_bytes = int(sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize
                               for w in model.weights))
    manifest = {
        "settings": settings.identity(),
        "dataset": info.name,
        "source": info.source,
        "class_names": list(info.class_names),
        "num_classes": info.num_classes,
        "client_images": [int(len(p)) for p in parts],
        "client_label_counts": [np.bincount(client_y[p], minlength=info.num_classes).tolist()
                                for p in parts],
        "test_images": int(info.num_test),
        "head": head,
        "plan": {"layers": list(plan.layers), "classifier": plan.classifier,
                 "pool_channels": int(plan.pool.size), "budget_units": int(budget)},
        "full_model_bytes": full_model_bytes,
        "dense_update_bytes": dense_update.num_bytes,
        "model_file": MODEL_FILE,
        "prepare_seconds": round(time.perf_counter() - start, 1),
    }
    with open(os.path.join(out_dir, MANIFEST + ".tmp"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    os.replace(os.path.join(out_dir, MANIFEST + ".tmp"), os.path.join(out_dir, MANIFEST))
    log(f"plan: {len(plan.layers)} search-space layers, {plan.pool.size} input channels, "
        f"budget {memory.format_units(budget)}; exported {MODEL_FILE} "
        f"({os.path.getsize(path) / 2**20:.2f} MB); the whole model is "
        f"{full_model_bytes / 2**20:.2f} MB, every search-space slice + head "
        f"{dense_update.num_bytes / 1024:.1f} KB")
    sizes = manifest["client_images"]
    log(f"clients: {settings.clients} ({settings.partition}), {min(sizes)}-{max(sizes)} "
        f"images each, {sum(sizes)} in all")
    return manifest
