r"""Computes the LaRa/RGN layer rankings shipped in `keras_medyate/rankings/`.

As in MeDyate (§2), the ranking comes from a short full-gradient fine-tuning
on a proxy dataset; the papers show it transfers across tasks. The shipped
rankings use Fashion-MNIST (not CIFAR-10, the demo's target) as the proxy.

It writes `<preset>.json` files into `--out` (default: `rankings/` in the
current directory; nothing is written into the installed package unless you
point `--out` there). Command that produced the shipped files (2 CPU cores,
about 30 s each), run from the repository's root:

    python benchmarks/make_rankings.py --models=mcunet_5fps,mobilenetv2_w035 \
        --dataset=fashion_mnist --train_per_class=200 --epochs=3 --resolution=128 \
        --out=keras_medyate/rankings

`kmd.plan(model, budget, ranking="lara")` then picks the shipped file whose
fingerprint matches the model's layers; `kmd.plan(..., ranking="path.json")`
uses a file of your own.
"""

import os
import shlex
import sys
import time

from absl import flags

from keras_medyate import cli

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["mcunet_5fps", "mobilenetv2_w035"], "Presets to rank.")
flags.DEFINE_string("dataset", "fashion_mnist", "Proxy dataset (keras_medyate.data.load name).")
flags.DEFINE_integer("train_per_class", 200, "Proxy images per class.")
flags.DEFINE_integer("epochs", 3, "Epochs of the proxy fine-tuning.")
flags.DEFINE_integer("resolution", 128, "Input resolution.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "SGD learning rate of the proxy run (full fine-tuning of these checkpoints diverges above ~3e-3).")
flags.DEFINE_integer("seed", 0, "Seed of the data order and the new head.")
flags.DEFINE_string("out", "rankings", "Folder of the JSON files (created if needed); "
                    "keras_medyate/rankings to replace the shipped ones.")


def check_flags(values):
    """One-line rejections of bad values, before TensorFlow is imported."""
    cli.require(values.models, "--models is empty: name at least one preset.")
    for name in ("train_per_class", "epochs", "resolution", "batch_size"):
        cli.require(getattr(values, name) >= 1,
                    f"--{name}={getattr(values, name)}: must be at least 1.")
    cli.require(values.learning_rate > 0,
                f"--learning_rate={values.learning_rate}: must be positive.")
    cli.require(values.seed >= 0, f"--seed={values.seed}: must be >= 0.")
    cli.require(values.out.strip(), "--out is empty: name the folder of the JSON files.")


def main(argv):
    del argv
    import keras

    import keras_medyate as kmd
    from keras_medyate import data, models

    for preset in FLAGS.models:
        if preset not in models.PRESETS:
            cli.fail(f"--models: unknown preset {preset!r}; accepted: "
                     f"{', '.join(models.PRESETS)}.")

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    try:
        train_ds, _, info = data.load(FLAGS.dataset, image_size=FLAGS.resolution,
                                      batch_size=FLAGS.batch_size,
                                      train_per_class=FLAGS.train_per_class, test_per_class=1,
                                      seed=FLAGS.seed)
    except (ValueError, FileNotFoundError) as error:
        cli.fail(f"--dataset={FLAGS.dataset!r}: {error}")
    os.makedirs(FLAGS.out, exist_ok=True)
    for preset in FLAGS.models:
        keras.utils.set_random_seed(FLAGS.seed)
        model = getattr(models, preset)(classes=info.num_classes,
                                        input_shape=(FLAGS.resolution, FLAGS.resolution, 3))
        start = time.perf_counter()
        ranking = kmd.rank_layers(
            model, train_ds, epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate, verbose=1,
            metadata={"preset": preset, "proxy_dataset": info.name,
                      "proxy_images": info.num_train, "command": command},
        )
        path = os.path.join(FLAGS.out, f"{preset}.json")
        ranking.save(path)
        print(f"{preset}: {time.perf_counter() - start:.0f} s, top LaRa layers "
              f"{ranking.order('lara')[:5]} -> {os.path.normpath(path)}")


if __name__ == "__main__":
    cli.run(main, __doc__, check=check_flags)
