"""The Flower `ClientApp` of a simulated phone: trains the exported LiteRT file.

Imports numpy, Flower's client API and `tflite_export.on_device` (LiteRT),
never TensorFlow: what a phone runs. Each `train` message is one round:

1. open the exported file (`OnDeviceTrainer`) and restore this client's
   sampler state from its previous round (a phone keeps it between rounds);
2. `apply_update` with the global model the message carries (the sync);
3. `local_training`: per epoch `resample(seed)` (MeDyate on the device, a
   seed per client) then `train` on every batch of the client's own data;
4. reply with `get_update()`: the slices trained since the sync and the head
   (or every channel, for dense federated averaging), its exact payload
   bytes and the number of examples (the averaging weight).

The client's data are arrays written by `keras_medyate.federated.prepare`
(`data/train_x.npy`, `data/train_y.npy` and the client's index array in
`data/partitions.npz`), standing for the images that stay on the phone.

Example (what `keras_medyate.federated.simulation` passes to Flower):

```python
from keras_medyate.federated import client

app = client.make_client_app("run/model.tflite", "run/data", "run/clients")
```
"""

import math
import os
import sys
import time

import numpy as np
from flwr.app import Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from keras_medyate import recipe as recipe_lib
from keras_medyate.federated import partition as partition_lib
from keras_medyate.federated import records
from tflite_export.on_device import OnDeviceTrainer

#: Keys of the `ConfigRecord` the server sends with each round.
CONFIG_KEYS = ("round", "local-epochs", "total-epochs", "seed", "every-channel")
#: The reply's `MetricRecord` key that weights the averages (Flower's default).
NUM_EXAMPLES = "num-examples"


def local_training(device, x, y, epochs, first_epoch, total_epochs, sampler_seed, order_seed,
                   every_channel=False):
    """`epochs` epochs of the recipe on (x, y); the mean loss.

    Per epoch: `resample(sampler_seed)` (or every channel of the search
    space), then `train` on every batch of a new order of the examples. A
    last partial batch is completed with the first examples of the epoch's
    order (the file's batch is static), so every example is seen once per
    epoch. The learning rate follows the recipe's schedule over
    `total_epochs` epochs of these batches, from epoch `first_epoch` (a file
    exported with its own Keras optimizer keeps that optimizer's schedule).

    Args:
        device: an `OnDeviceTrainer`.
        x, y: the examples (float32 images, int labels).
        epochs, first_epoch, total_epochs: ints.
        sampler_seed: int, passed to every `resample`.
        order_seed: int, seeds the epochs' orders (with the epoch index).
        every_channel: bool, train every channel of the search space
            (`set_mask`), for dense federated averaging.

    Returns:
        (mean loss, steps per epoch); (nan, 0) when there is no example.
    """
    count = len(y)
    if count == 0:
        return math.nan, 0
    batch = device.batch_size
    steps = -(-count // batch)
    recipe = device.optimizer.get("recipe")
    if recipe:
        device.set_schedule(recipe_lib.schedule_numbers(
            recipe["peak_learning_rate"], steps, total_epochs, recipe["warmup_epochs"]),
            step=first_epoch * steps)
    if every_channel:
        device.set_mask(np.ones(device.pool_size, np.float32), allow_over_budget=True)
    losses = []
    for epoch in range(first_epoch, first_epoch + epochs):
        if not every_channel:
            device.resample(sampler_seed)
        order = np.random.default_rng((int(order_seed), epoch)).permutation(count)
        order = np.resize(order, steps * batch)  # wraps around to fill the last batch
        for step in range(steps):
            chosen = order[step * batch:(step + 1) * batch]
            losses.append(device.train(x[chosen], y[chosen]))
    return float(np.mean(losses)), steps


def load_partition(data_dir, partition_id):
    """The examples of one client: (x float32, y int32), read from `prepare`'s arrays."""
    with np.load(os.path.join(data_dir, "partitions.npz")) as parts:
        indices = parts[f"client_{int(partition_id)}"]
    x = np.load(os.path.join(data_dir, "train_x.npy"), mmap_mode="r")
    y = np.load(os.path.join(data_dir, "train_y.npy"))
    return np.asarray(x[indices], np.float32), np.asarray(y[indices], np.int32)


def state_path(state_dir, partition_id, round_number):
    """Where a client keeps its sampler and optimizer state after a round."""
    return os.path.join(state_dir, f"client_{int(partition_id):03d}",
                        f"state_round_{int(round_number):04d}.npz")


def make_client_app(model_path, data_dir, state_dir, num_threads=1):
    """The `ClientApp` of the simulated phones.

    Args:
        model_path: the exported `.tflite` every client trains.
        data_dir: the folder of `prepare`'s arrays (`train_x.npy`,
            `train_y.npy`, `partitions.npz`).
        state_dir: where each client keeps its state between rounds.
        num_threads: LiteRT threads per client. Defaults to 1.

    Returns:
        A `flwr.clientapp.ClientApp` with a `train` handler.
    """
    model_path, data_dir, state_dir = (os.path.abspath(p) for p in
                                       (model_path, data_dir, state_dir))
    app = ClientApp()

    @app.train()
    def train(message: Message, context) -> Message:
        start = time.perf_counter()
        partition_id = int(context.node_config["partition-id"])
        config = message.content["config"]
        round_number = int(config["round"])
        epochs = int(config["local-epochs"])
        every_channel = bool(config["every-channel"])
        device = OnDeviceTrainer(model_path, num_threads=num_threads)
        previous = state_path(state_dir, partition_id, round_number - 1)
        if os.path.isfile(previous):
            with np.load(previous) as saved:
                device.set_state({key: saved[key] for key in saved.files})
        global_model = next(iter(message.content.array_records.values()))
        device.apply_update(records.from_record(global_model))  # the sync
        x, y = load_partition(data_dir, partition_id)
        seed = int(config["seed"])
        loss, steps = local_training(
            device, x, y, epochs=epochs, first_epoch=(round_number - 1) * epochs,
            total_epochs=int(config["total-epochs"]),
            sampler_seed=partition_lib.client_seed(seed, partition_id),
            order_seed=partition_lib.client_seed(seed + 1, partition_id),
            every_channel=every_channel)
        update = device.get_update(every_channel=every_channel)
        path = state_path(state_dir, partition_id, round_number)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.savez(path + ".tmp.npz", **device.get_state())
        os.replace(path + ".tmp.npz", path)
        stale = state_path(state_dir, partition_id, round_number - 2)
        if os.path.isfile(stale):
            os.remove(stale)
        metrics = MetricRecord({
            NUM_EXAMPLES: len(y),
            "train-loss": 0.0 if math.isnan(loss) else loss,
            "steps": steps * epochs,
            "upload-bytes": update.num_bytes,
            "channels": update.num_channels,
            "seconds": time.perf_counter() - start,
            "tensorflow-imported": int("tensorflow" in sys.modules),
        })
        content = RecordDict({"arrays": records.to_record(update), "metrics": metrics})
        return Message(content=content, reply_to=message)

    return app

