"""A federated run on Flower's simulation engine, round by round, resumable.

`run(settings, out_dir)` prepares the folder (`prepare`: data, head,
exported file; once), then runs the rounds and appends one row per round to
`rounds.csv` (`results`), round 0 being the starting model:

- `sparse` / `dense`: a Flower `ServerApp` whose `SliceFedAvg` strategy runs
  Flower's own round loop (`Strategy.start`), and the `ClientApp` of
  `client`, on `flwr.simulation.run_simulation` with `settings.clients`
  virtual phones. Flower runs the clients in Ray workers, `settings.parallel`
  at a time; this module starts that Ray instance itself (a new local one,
  never an existing cluster) so that its workers start with
  `no_tensorflow.block`. The server evaluates the global model after every
  round on the test images, with the same LiteRT file (`infer`).
- `centralized`: no federation, the reference: one `OnDeviceTrainer` on the
  union of the clients' data, `local_epochs` epochs per "round" with the
  same recipe and schedule, so every example is seen as often.

After each round the global model (and, centralized, the trainer's state)
is saved in `checkpoints/`, then the row is appended; the clients keep their
sampler state per round in `clients/`. A run started again with the same
settings and `out_dir` continues after its last row (the same seeds, so the
same numbers); other settings are refused.
"""

import json
import logging
import os
import sys
import time
import warnings

import numpy as np

from keras_medyate.federated import client as client_lib
from keras_medyate.federated import partition as partition_lib
from keras_medyate.federated import prepare as prepare_lib
from keras_medyate.federated import records, results

CSV_NAME = "rounds.csv"
PLOT_NAME = "rounds.png"
RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"
CLIENT_STATES = "clients"
#: Ray's object store for the simulation (messages of a few hundred KB).
OBJECT_STORE_BYTES = 256 * 2**20
#: Test images per `infer` chunk of the server's evaluation.
EVAL_CHUNK = 256


class SettingsMismatchError(ValueError):
    """`out_dir` holds a run with other settings."""


def run(settings, out_dir, log=print, stop_after=None):
    """Prepares (once) and runs a federated experiment; returns the rows of `rounds.csv`.

    Args:
        settings: a `Settings`.
        out_dir: the run's folder (created; an earlier run there is resumed).
        log: callable taking one line of progress.
        stop_after: int, stop after this round as if interrupted (tests).

    Raises:
        SettingsMismatchError: `out_dir` holds a run with other settings.
        strategy.ClientFailure: a client failed.
    """
    os.makedirs(out_dir, exist_ok=True)
    _check_identity(settings, out_dir)
    if prepare_lib.is_prepared(out_dir):
        manifest = prepare_lib.load_manifest(out_dir)
        log(f"{out_dir} is prepared ({prepare_lib.MANIFEST}): its data and model are reused")
    else:
        manifest = prepare_lib.prepare(settings, out_dir, log)
    csv_path = os.path.join(out_dir, CSV_NAME)
    rows = results.read_rows(csv_path)
    last = settings.rounds if stop_after is None else min(settings.rounds, int(stop_after))
    done = rows[-1]["round"] if rows else None
    if done is not None:
        log(f"{CSV_NAME} has rounds 0-{done}" + (f"; continuing at round {done + 1}"
                                                 if done < last else "; nothing left to run"))
    if done is None or done < last:
        if settings.mode == "centralized":
            _centralized(settings, out_dir, manifest, done, last, log)
        else:
            _federated(settings, out_dir, manifest, done, last, log)
    rows = results.read_rows(csv_path)
    title = (f"{settings.model} on {manifest['dataset'].split('/')[-1]}: {settings.mode}, "
             f"{settings.clients} clients, {settings.partition}, budget {settings.budget}")
    results.plot(rows, os.path.join(out_dir, PLOT_NAME), title)
    return rows


def _check_identity(settings, out_dir):
    """Refuses a folder whose run (`run.json`, or `prepared.json` written by a direct
    `prepare` call) has other settings; records them in a new folder."""
    path = os.path.join(out_dir, RUN_FILE)
    identity = settings.identity()
    recorded = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            recorded.append(json.load(f))
    if prepare_lib.is_prepared(out_dir):
        recorded.append(prepare_lib.load_manifest(out_dir).get("settings", identity))
    for saved in recorded:
        if saved != identity:
            changed = sorted(k for k in set(saved) | set(identity)
                             if saved.get(k) != identity.get(k))
            raise SettingsMismatchError(
                f"{out_dir} holds a run with other settings ("
                + ", ".join(f"{k}: {saved.get(k)!r} there, {identity.get(k)!r} now"
                            for k in changed)
                + "). Use another --out, or delete that folder to start over.")
    if not os.path.isfile(path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(identity, f, indent=1)


class Evaluator:
    """Top-1 of a model on the prepared test images, with the exported file's `infer`."""

    def __init__(self, model_path, data_dir, threads):
        from tflite_export.on_device import OnDeviceTrainer

        self.device = OnDeviceTrainer(model_path, num_threads=threads)
        self.x = np.load(os.path.join(data_dir, "test_x.npy"), mmap_mode="r")
        self.y = np.load(os.path.join(data_dir, "test_y.npy"))
        self.channel_axes = {w["key"].rsplit("/", 1)[0]: w["channel_axis"]
                             for w in self.device.metadata["weights"]
                             if w["channel_axis"] is not None}

    def accuracy(self, update):
        """Top-1 (%) with the weights of `update` (a `SliceUpdate`)."""
        self.device.apply_update(update)
        batches = ((np.asarray(self.x[i:i + EVAL_CHUNK]), self.y[i:i + EVAL_CHUNK])
                   for i in range(0, len(self.y), EVAL_CHUNK))
        return 100.0 * self.device.evaluate(batches)


def _checkpoint_path(out_dir, round_number):
    return os.path.join(out_dir, CHECKPOINTS, f"round_{int(round_number):04d}.npz")


def _save_checkpoint(out_dir, round_number, update, state=None):
    path = _checkpoint_path(out_dir, round_number)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {f"update:{k}": v for k, v in update.arrays().items()}
    arrays.update({f"state:{k}": v for k, v in (state or {}).items()})
    np.savez(path + ".tmp.npz", **arrays)
    os.replace(path + ".tmp.npz", path)
    stale = _checkpoint_path(out_dir, round_number - 2)
    if os.path.isfile(stale):
        os.remove(stale)


def _load_checkpoint(out_dir, round_number):
    from tflite_export.on_device import SliceUpdate

    path = _checkpoint_path(out_dir, round_number)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{CSV_NAME} ends at round {round_number} but {path} is "
                                "missing; delete the folder to start over.")
    with np.load(path) as saved:
        update = {k.split(":", 1)[1]: saved[k] for k in saved.files if k.startswith("update:")}
        state = {k.split(":", 1)[1]: saved[k] for k in saved.files if k.startswith("state:")}
    return SliceUpdate.from_arrays(update), state


def _row(round_number, accuracy, full_model_bytes, cost=None):
    cost = cost or {}
    return {"round": round_number, "test_accuracy": accuracy,
            "mean_upload_bytes": cost.get("mean_upload_bytes", 0.0),
            "full_model_bytes": full_model_bytes, "seconds": cost.get("seconds", 0.0),
            "mean_upload_flower_bytes": cost.get("mean_upload_flower_bytes", 0.0),
            "mean_channels": cost.get("mean_channels", 0.0),
            "train_loss": cost.get("train_loss", ""), "clients": cost.get("clients", 0),
            "load_1min": os.getloadavg()[0]}


def _log_row(log, row, first_accuracy, rounds):
    full = row["full_model_bytes"]
    line = (f"round {row['round']:>3}/{rounds}: test accuracy {row['test_accuracy']:5.1f} %")
    if row["round"] > 0:
        line += f" ({row['test_accuracy'] - first_accuracy:+.1f} since round 0)"
        if row["mean_upload_bytes"]:
            line += (f", upload {row['mean_upload_bytes'] / 1024:.1f} KB per client "
                     f"({100 * row['mean_upload_bytes'] / full:.1f} % of the "
                     f"{full / 2**20:.2f} MB model)")
        line += f", {row['seconds']:.0f} s (load {row['load_1min']:.1f})"
    else:
        line += " (the starting model)"
    log(line)


def _federated(settings, out_dir, manifest, done, last, log):
    from flwr.app import ConfigRecord, MetricRecord
    from flwr.serverapp import ServerApp

    from keras_medyate.federated.strategy import SliceFedAvg

    model_path = os.path.join(out_dir, manifest["model_file"])
    data_dir = os.path.join(out_dir, prepare_lib.DATA_DIR)
    evaluator = Evaluator(model_path, data_dir, settings.parallel * settings.threads)
    full_bytes = manifest["full_model_bytes"]
    csv_path = os.path.join(out_dir, CSV_NAME)
    _quiet_flower(settings.verbose)  # before the strategy: FedAvg logs its settings
    if done is None:
        offset, initial = 0, evaluator.device.get_update(every_channel=True)
        first = {}
    else:
        offset, (initial, _) = done, _load_checkpoint(out_dir, done)
        first = {"accuracy": results.read_rows(csv_path)[0]["test_accuracy"]}
    strategy = SliceFedAvg(evaluator.channel_axes, settings.clients,
                           average=settings.average, round_offset=offset,
                           accept_failures=bool(settings.accept_failures))

    def evaluate(server_round, arrays):
        round_number = offset + server_round
        if server_round == 0 and done is not None:
            return None  # already in the CSV
        update = records.from_record(arrays)
        accuracy = evaluator.accuracy(update)
        cost = strategy.rounds.get(round_number, {})
        row = _row(round_number, accuracy, full_bytes, cost)
        if cost.get("tensorflow_imported"):
            raise RuntimeError("A client process imported TensorFlow.")
        _save_checkpoint(out_dir, round_number, update)
        results.append_row(csv_path, row)
        first.setdefault("accuracy", accuracy)
        _log_row(log, row, first["accuracy"], settings.rounds)
        return MetricRecord({"accuracy": accuracy})

    server_app = ServerApp()

    @server_app.main()
    def main(grid, context):
        del context
        strategy.start(
            grid=grid, initial_arrays=records.to_record(initial), num_rounds=last - offset,
            train_config=ConfigRecord({
                "local-epochs": settings.local_epochs,
                "total-epochs": settings.total_epochs,
                "seed": settings.seed,
                "every-channel": settings.mode == "dense",
            }),
            evaluate_fn=evaluate)

    client_app = client_lib.make_client_app(model_path, data_dir,
                                            os.path.join(out_dir, CLIENT_STATES),
                                            num_threads=settings.threads)
    run_on_flower(server_app, client_app, settings.clients, settings.parallel,
                  verbose=settings.verbose)


def run_on_flower(server_app, client_app, num_clients, parallel, verbose=False):
    """`flwr.simulation.run_simulation` on a new local Ray instance whose workers
    cannot import TensorFlow (`no_tensorflow.block`); the instance is shut down after.

    Args:
        server_app, client_app: Flower's `ServerApp` and `ClientApp`.
        num_clients: int, virtual SuperNodes (partition ids 0..n-1).
        parallel: int, clients run at once (one Ray CPU each).
        verbose: bool, Flower's and Ray's own log lines.
    """
    with warnings.catch_warnings():
        if not verbose:
            # In a notebook, importing Ray warns that ipywidgets is missing (tqdm, and
            # Ray's own INFO line): nothing the simulation uses.
            warnings.filterwarnings("ignore", message="IProgress not found")
            logging.getLogger("ray.widgets.util").setLevel(logging.WARNING)
        import ray
        from flwr.simulation import run_simulation

    _quiet_flower(verbose)
    # Ray's FutureWarning about GPU variables when a worker has no GPU: keep its
    # current behaviour, quietly (a value the user set wins).
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process; the federated "
                           "simulation starts its own instance (call ray.shutdown() first).")
    ray.init(address="local", num_cpus=int(parallel), num_gpus=0, include_dashboard=False,
             object_store_memory=OBJECT_STORE_BYTES, log_to_driver=verbose,
             logging_level=logging.INFO if verbose else logging.ERROR,
             runtime_env={
                 "worker_process_setup_hook": "keras_medyate.federated.no_tensorflow.block",
                 "env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
    try:
        run_simulation(server_app=server_app, client_app=client_app,
                       num_supernodes=int(num_clients),
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
                       verbose_logging=verbose)
    finally:
        if ray.is_initialized():
            ray.shutdown()


def _quiet_flower(verbose):
    """Flower's INFO and WARNING lines (its settings, the round log, the deprecation
    notice of `run_simulation`) are left out unless `verbose`; errors stay."""
    logging.getLogger("flwr").setLevel(logging.INFO if verbose else logging.ERROR)


def _centralized(settings, out_dir, manifest, done, last, log):
    from tflite_export.on_device import OnDeviceTrainer

    model_path = os.path.join(out_dir, manifest["model_file"])
    data_dir = os.path.join(out_dir, prepare_lib.DATA_DIR)
    threads = settings.parallel * settings.threads
    evaluator = Evaluator(model_path, data_dir, threads)
    device = OnDeviceTrainer(model_path, num_threads=threads)
    full_bytes = manifest["full_model_bytes"]
    csv_path = os.path.join(out_dir, CSV_NAME)
    x = np.load(os.path.join(data_dir, "train_x.npy"))
    y = np.load(os.path.join(data_dir, "train_y.npy"))
    if done is None:
        row = _row(0, evaluator.accuracy(device.get_update(every_channel=True)), full_bytes)
        _save_checkpoint(out_dir, 0, device.get_update(every_channel=True), device.get_state())
        results.append_row(csv_path, row)
        _log_row(log, row, row["test_accuracy"], settings.rounds)
        done = 0
    else:
        update, state = _load_checkpoint(out_dir, done)
        device.apply_update(update)
        device.set_state(state)
    first = results.read_rows(csv_path)[0]["test_accuracy"]
    for round_number in range(done + 1, last + 1):
        start = time.perf_counter()
        loss, _ = client_lib.local_training(
            device, x, y, epochs=settings.local_epochs,
            first_epoch=(round_number - 1) * settings.local_epochs,
            total_epochs=settings.total_epochs,
            sampler_seed=partition_lib.client_seed(settings.seed, 0),
            order_seed=partition_lib.client_seed(settings.seed + 1, 0))
        seconds = time.perf_counter() - start
        update = device.get_update(every_channel=True)
        row = _row(round_number, evaluator.accuracy(update), full_bytes,
                   {"seconds": seconds, "train_loss": loss, "clients": 1})
        _save_checkpoint(out_dir, round_number, update, device.get_state())
        results.append_row(csv_path, row)
        _log_row(log, row, first, settings.rounds)
