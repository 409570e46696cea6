"""`SliceFedAvg`: Flower's FedAvg, averaging sparse updates slice by slice.

Each client uploads the input-channel slices it trained since the last sync
and the head (`tflite_export.on_device.SliceUpdate`). A slice no client
trained keeps its global value; the head, which every client trains, is the
usual weighted average. For the other slices, two averages
(`AVERAGES`):

- `"all_clients"` (default): every client counts with its examples, a
  client that did not train the slice with the global value (which its copy
  still holds, bit for bit). This is exactly FedAvg of the clients' whole
  models, computed from sparse uploads: a slice's change is its trainers'
  changes scaled by their share of all the examples.
- `"trainers"`: the average over the clients that trained the slice only,
  weighted by their examples (a slice one client trained takes that client's
  value). With MeDyate each client trains a different ~18 % of the channels,
  so most slices have one or two trainers and the global model receives
  every client's full local change at once, next to a head averaged over all
  of them: measured in `benchmarks/federated/results.md`, it loses accuracy
  for several rounds before the learning rate decays.

With dense updates (every client sends every channel) both are FedAvg.

Numpy and Flower only. The round loop is Flower's (`Strategy.start`); this
class overrides `configure_train` (it remembers the global model the round
starts from and numbers the round) and `aggregate_train`.

>>> import numpy as np
>>> from tflite_export.on_device import SliceUpdate
>>> current = {"conv/kernel": np.zeros((1, 1, 3, 2), np.float32),
...            "head/kernel": np.zeros((2, 2), np.float32)}
>>> def update(channels, value, head):
...     return SliceUpdate(
...         {"conv": np.array(channels, np.int32)},
...         {"conv": np.full((1, 1, len(channels), 2), value, np.float32)},
...         {"head/kernel": np.full((2, 2), head, np.float32)})
>>> updates = [update([0, 1], 1.0, 1.0), update([1], 4.0, 4.0)]
>>> new = average_slices(current, updates, weights=[1, 2], channel_axes={"conv": 2})
>>> new["conv/kernel"][0, 0, :, 0].tolist()   # channel 2: nobody trained it
[0.3333333432674408, 3.0, 0.0]
>>> new = average_slices(current, updates, [1, 2], {"conv": 2}, average="trainers")
>>> new["conv/kernel"][0, 0, :, 0].tolist()
[1.0, 3.0, 0.0]
>>> float(new["head/kernel"][0, 0])
3.0
"""

import time

import numpy as np
from flwr.serverapp.strategy import FedAvg

from keras_medyate.federated import records
from keras_medyate.federated.settings import AVERAGES




class ClientFailure(RuntimeError):
    """A client's reply was an error (the simulation stops instead of averaging the rest)."""


def average_slices(current, updates, weights, channel_axes, average="all_clients"):
    """The new global weights: slice-wise weighted average of sparse updates.

    Args:
        current: dict weight key → array, the global model the round started
            from (`"<layer>/kernel"` of every search-space layer, and the
            head).
        updates: list of `SliceUpdate`, one per client.
        weights: list of numbers (examples per client), same order.
        channel_axes: dict search-space layer → input-channel axis.
        average: `"all_clients"` (default) or `"trainers"` (`AVERAGES`).

    Returns:
        dict weight key → float32 array. A slice (one input channel of one
        kernel) in no update keeps `current`'s exact value. A trained slice
        is, with `"trainers"`, the `weights`-weighted mean of the clients
        whose update holds it; with `"all_clients"`, the weighted mean over
        every client, those that did not send it counting with `current`'s
        value. Each head weight is the weighted mean over every client that
        sent it.

    Raises:
        ValueError: an update of a layer or head weight `current` lacks, a
            negative weight, or an unknown `average`.
    """
    if average not in AVERAGES:
        raise ValueError(f"`average` must be one of {', '.join(AVERAGES)}, got {average!r}.")
    weights = [float(w) for w in weights]
    if len(weights) != len(updates):
        raise ValueError(f"{len(updates)} updates but {len(weights)} weights.")
    if any(w < 0 or not np.isfinite(w) for w in weights):
        raise ValueError(f"Weights must be finite and >= 0, got {weights}.")
    result = {key: np.array(value, np.float32) for key, value in current.items()}
    for layer, axis in channel_axes.items():
        key = f"{layer}/kernel"
        kernel = result[key]
        moved = np.moveaxis(kernel, axis, 0)               # channel first (a view)
        total = np.zeros(moved.shape, np.float64)
        weight_sum = np.zeros(moved.shape[0], np.float64)
        for update, weight in zip(updates, weights):
            channels = np.asarray(update.channels.get(layer, ()), np.int64)
            if channels.size == 0 or weight == 0:
                continue
            values = np.moveaxis(np.asarray(update.kernels[layer], np.float64), axis, 0)
            np.add.at(total, channels, weight * values)
            np.add.at(weight_sum, channels, weight)
        trained = weight_sum > 0
        if trained.any():
            shape = (-1,) + (1,) * (moved.ndim - 1)
            if average == "all_clients":  # the others hold the global value
                everyone = sum(weights)
                total[trained] += ((everyone - weight_sum[trained]).reshape(shape)
                                   * moved[trained].astype(np.float64))
                weight_sum[trained] = everyone
            moved[trained] = (total[trained] / weight_sum[trained].reshape(shape)).astype(
                np.float32)
    for update in updates:
        unknown = (set(update.channels) - set(channel_axes)) | (set(update.head) - set(current))
        if unknown:
            raise ValueError(f"An update holds {sorted(unknown)}, which the model lacks.")
    head_keys = set(current) - {f"{layer}/kernel" for layer in channel_axes}
    for key in head_keys:
        senders = [(u.head[key], w) for u, w in zip(updates, weights) if key in u.head and w > 0]
        if senders:
            total = sum(np.asarray(v, np.float64) * w for v, w in senders)
            result[key] = (total / sum(w for _, w in senders)).astype(np.float32)
    return result


class SliceFedAvg(FedAvg):
    """Federated averaging of sparse updates, slice by slice (see the module docstring).

    Every round samples every client (`num_clients`), sends each the whole
    global model (`records.full_update`) and a `ConfigRecord`, and averages
    the replies with `average_slices`, weighted by their
    `"num-examples"`. Evaluation is server-side (`Strategy.start`'s
    `evaluate_fn`); no federated evaluation round runs.

    Args:
        channel_axes: dict search-space layer → input-channel axis (the
            file's metadata: `weights[i]["channel_axis"]`).
        num_clients: int, clients sampled in every round (all of them).
        average: `"all_clients"` (default) or `"trainers"`: how a trained
            slice is averaged (`average_slices`).
        round_offset: int, rounds already done (a resumed run): the
            config's `"round"` is `round_offset + server_round`.
        accept_failures: bool, average the other replies when a client
            fails; by default a failure raises `ClientFailure`.
        **kwargs: more `FedAvg` arguments (`weighted_by_key`, ...).

    Attributes:
        rounds: dict round → what it cost: `mean_upload_bytes` (exact
            payload of the updates), `mean_upload_flower_bytes`
            (`ArrayRecord.count_bytes()`, Flower's own framing included),
            `mean_channels`, `train_loss`, `seconds` (from sending the
            round to the end of the averaging), `clients`.
    """

    def __init__(self, channel_axes, num_clients, average="all_clients", round_offset=0,
                 accept_failures=False, **kwargs):
        if average not in AVERAGES:
            raise ValueError(f"`average` must be one of {', '.join(AVERAGES)}, got {average!r}.")
        kwargs.setdefault("fraction_train", 1.0)
        kwargs.setdefault("min_train_nodes", num_clients)
        kwargs.setdefault("min_available_nodes", num_clients)
        kwargs.setdefault("fraction_evaluate", 0.0)
        super().__init__(**kwargs)
        self.channel_axes = dict(channel_axes)
        self.average = average
        self.num_clients = int(num_clients)
        self.round_offset = int(round_offset)
        self.accept_failures = bool(accept_failures)
        self.rounds = {}
        self._current = None
        self._started = None

    def configure_train(self, server_round, arrays, config, grid):
        """Remembers the global model, numbers the round, then FedAvg's sampling."""
        self._current = arrays
        self._started = time.perf_counter()
        config["round"] = self.round_offset + server_round
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):
        """`average_slices` of the replies' updates onto the round's global model."""
        replies = list(replies)
        valid, failed = self._check_and_log_replies(replies, is_train=True)
        if failed and not self.accept_failures:
            reasons = "; ".join(str(m.error.reason) for m in failed)
            raise ClientFailure(f"{len(failed)} of {len(replies)} clients failed in round "
                                f"{self.round_offset + server_round}: {reasons}")
        if not valid:
            return None, None
        contents = [message.content for message in valid]
        arrays = [next(iter(c.array_records.values())) for c in contents]
        metrics = [next(iter(c.metric_records.values())) for c in contents]
        updates = [records.from_record(a) for a in arrays]
        weights = [m[self.weighted_by_key] for m in metrics]
        current = records.dense_weights(records.from_record(self._current), self.channel_axes)
        new = average_slices(current, updates, weights, self.channel_axes, self.average)
        self.rounds[self.round_offset + server_round] = {
            "mean_upload_bytes": float(np.mean([u.num_bytes for u in updates])),
            "mean_upload_flower_bytes": float(np.mean([a.count_bytes() for a in arrays])),
            "mean_channels": float(np.mean([u.num_channels for u in updates])),
            "train_loss": float(np.average([m["train-loss"] for m in metrics],
                                           weights=np.maximum(weights, 1e-12))),
            "tensorflow_imported": int(max(m["tensorflow-imported"] for m in metrics)),
            "seconds": time.perf_counter() - self._started,
            "clients": len(valid),
        }
        aggregated = self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        return records.to_record(records.full_update(new, self.channel_axes)), aggregated
