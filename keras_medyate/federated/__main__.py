r"""Federated fine-tuning on Flower's simulation engine, uploading only the trained slices.

    python -m keras_medyate.federated --dataset=cifar10 --clients=10 --rounds=10 \
        --partition=dirichlet:0.5 --budget=15936 --out=federated_cifar10

The server holds out --server_per_class images of every class, fits the
model's new head on them (a linear probe: the starting head never sees the
clients' data) and exports the model as a LiteRT file that trains on the
phone. The remaining training images are shared out to --clients simulated
phones (IID, or Dirichlet(α) label skew). Every round, each phone trains the
file with LiteRT (no TensorFlow) for --local_epochs epochs, MeDyate
resampling its channels within --budget every epoch, and uploads only the
input-channel slices it trained and the head; the server averages each slice
over the phones that trained it (weighted by their examples) and evaluates
the global model on the test images.

It writes, in --out: rounds.csv (round, test_accuracy in %, mean_upload_bytes
per client, full_model_bytes, seconds, ...; round 0 = the starting model),
rounds.png, prepared.json, the exported model.tflite. Run the same command
again to resume an interrupted run. --mode=dense trains and uploads every
channel of the same search space (federated averaging of the search space);
--mode=centralized trains one model on the union of the clients' data (the
reference, same epochs).
"""

import sys

from absl import flags

from keras_medyate import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "mcunet_5fps",
                    "Preset name (mcunet_5fps, mobilenetv2_w035, proxylessnas_w03) or path to a "
                    "tiny-training .pkl.")
flags.DEFINE_string("dataset", "cifar10", "cifar10, fashion_mnist or folder:/path (with "
                    "train/<class>/ and test/<class>/ images).")
flags.DEFINE_integer("clients", 10, "Simulated phones.")
flags.DEFINE_integer("rounds", 10, "Federated rounds.")
flags.DEFINE_string("partition", "iid", "iid, or dirichlet:ALPHA (label skew; 0.5 is strong).")
flags.DEFINE_string("budget", "15936",
                    "Memory budget of each phone's training: units (the papers' smallest MCUNet "
                    "budget, 15936 = 62.2 KB) or a size such as 62KB.")
flags.DEFINE_integer("local_epochs", 1, "Epochs each phone trains per round.")
flags.DEFINE_integer("resolution", 96, "Input resolution in pixels.")
flags.DEFINE_string("train_per_class", "120",
                    "Training images per class, the server's held-out images included, or "
                    "'all'.")
flags.DEFINE_string("test_per_class", "100", "Test images per class, or 'all'.")
flags.DEFINE_integer("seed", 0, "Seed of the images, the partition, the head's split, the "
                     "phones' channel draws and data orders.")
flags.DEFINE_string("out", "federated_run", "Folder of the run (resumed if it exists).")
flags.DEFINE_enum("mode", "sparse", ["sparse", "dense", "centralized"],
                  "sparse: MeDyate on each phone, trained slices uploaded. dense: every channel "
                  "of the search space trained and uploaded (FedAvg). centralized: one trainer "
                  "on the union of the phones' data (reference).")
flags.DEFINE_enum("head", "server_probe", ["server_probe", "random"],
                  "Starting head: a linear probe on the server's held-out images, or random.")
flags.DEFINE_integer("server_per_class", 10,
                     "Images per class the server holds out for the head (server_probe).")
flags.DEFINE_enum("average", "all_clients", ["all_clients", "trainers"],
                  "How the server averages a trained slice. all_clients: over every client, "
                  "those that did not train it counting with the global value (FedAvg of the "
                  "whole models, from the sparse uploads). trainers: over the clients that "
                  "trained it only (each slice takes its trainers' full change; measured to "
                  "lose accuracy, benchmarks/federated/results.md).")
flags.DEFINE_integer("batch_size", 16, "Training batch of the exported file.")
flags.DEFINE_integer("parallel", 2, "Phones trained at the same time (one CPU each).")
flags.DEFINE_integer("threads", 1, "LiteRT threads per phone.")
flags.DEFINE_bool("verbose", False, "Flower's, Ray's and TensorFlow's own log lines.")
flags.DEFINE_integer("stop_after", None, "Internal: stop after this round, as if interrupted.")


def settings_from(values):
    """The `Settings` of parsed flags (`ValueError` for a value it rejects)."""
    from keras_medyate.federated.settings import Settings

    return Settings(
        model=values.model, dataset=values.dataset, clients=values.clients,
        rounds=values.rounds, partition=values.partition, budget=values.budget,
        local_epochs=values.local_epochs, resolution=values.resolution,
        train_per_class=values.train_per_class, test_per_class=values.test_per_class,
        seed=values.seed, mode=values.mode, head=values.head,
        server_per_class=values.server_per_class, average=values.average,
        batch_size=values.batch_size,
        parallel=values.parallel, threads=values.threads, verbose=values.verbose)


def check(values):
    """Rejects bad values with one line (exit status 2) before any work."""
    from keras_medyate import memory

    for name in ("train_per_class", "test_per_class"):
        value = str(getattr(values, name)).strip()
        cli.require(value.lower() == "all" or (value.isdigit() and int(value) > 0),
                    f"--{name}={value!r}: give a positive number of images per class or 'all'.")
    try:
        memory.parse_budget(values.budget)
    except ValueError as error:
        raise cli.UsageError(f"--budget={values.budget}: {error}") from None
    try:
        settings_from(values)
    except ValueError as error:
        raise cli.UsageError(error) from None
    # The dataset check imports TensorFlow: quiet it first.
    from keras_medyate import console

    console.quiet_tensorflow(verbose=values.verbose)
    from keras_medyate.data import datasets

    try:
        datasets.check_name(values.dataset)
    except ValueError as error:
        raise cli.UsageError(f"--dataset={values.dataset!r}: {error}") from None


def main(argv):
    del argv
    from keras_medyate import console

    console.quiet_tensorflow(verbose=FLAGS.verbose)
    from keras_medyate.federated import simulation

    settings = settings_from(FLAGS)
    print(f"keras-medyate federated ({settings.mode}): {settings.model} on {settings.dataset}, "
          f"{settings.clients} clients ({settings.partition}), {settings.rounds} rounds of "
          f"{settings.local_epochs} local epoch(s), budget {settings.budget}, "
          f"{settings.resolution} px -> {FLAGS.out}", flush=True)
    try:
        rows = simulation.run(settings, FLAGS.out, log=lambda line: print(line, flush=True),
                              stop_after=FLAGS.stop_after)
    except (simulation.SettingsMismatchError, FileNotFoundError) as error:
        cli.fail(error)
    except ValueError as error:  # data too small for the partition, ...
        cli.fail(error)
    if rows and rows[-1]["round"] > 0:
        gain = rows[-1]["test_accuracy"] - rows[0]["test_accuracy"]
        uploads = [r["mean_upload_bytes"] for r in rows if r["round"] > 0]
        upload = sum(uploads) / len(uploads)
        print(f"done: round {rows[-1]['round']} {rows[-1]['test_accuracy']:.1f} % "
              f"({gain:+.1f} points since round 0)"
              + (f"; mean upload per client and round {upload / 1024:.1f} KB = "
                 f"{100 * upload / rows[0]['full_model_bytes']:.1f} % of the whole model"
                 if settings.mode != "centralized" else "")
              + f"; {FLAGS.out}/rounds.csv, {FLAGS.out}/rounds.png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, __doc__, check=check))
