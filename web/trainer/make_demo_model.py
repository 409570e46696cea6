"""Exports a small model for the browser trainer page (web/trainer/index.html).

    python web/trainer/make_demo_model.py --out /tmp/demo.tflite

A 2-convolution CNN (32×32 RGB, 4 classes, random He-initialised weights: no
download) with a MeDyate plan, exported by `tflite_export.export_training_model`
with static input shapes (LiteRT.js cannot resize inputs): the exporter's
default (`static_shapes=True`: `train`'s channel lists have a fixed capacity)
with `infer_batch_size` fixed. Any file exported with static shapes works in
the page; this one is only small and quick to train.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def demo_model(image_size=32, classes=4, seed=0):
    import keras  # noqa: PLC0415

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu",
                            kernel_initializer="he_normal", name="conv1")(inputs)
    x = keras.layers.Conv2D(24, 3, strides=2, padding="same", activation="relu",
                            kernel_initializer="he_normal", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="web_demo_cnn")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the .tflite file to write")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--budget", default="6KB", help="kmd.plan budget")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--infer_batch_size", type=int, default=4)
    parser.add_argument("--learning_rate", type=float, default=0.3)
    parser.add_argument("--kernel_gradients", default=None, choices=["dense", "selected"],
                        help="default: the exporter's")
    args = parser.parse_args(argv)
    from keras_medyate import console  # noqa: PLC0415

    console.quiet_tensorflow()
    import keras_medyate as kmd  # noqa: PLC0415
    from tflite_export import export_training_model  # noqa: PLC0415

    model = demo_model(args.image_size, args.classes)
    budget = int(args.budget) if args.budget.isdigit() else args.budget
    plan = kmd.plan(model, budget=budget)
    options = {} if args.kernel_gradients is None else {"kernel_gradients": args.kernel_gradients}
    summary = export_training_model(
        model, plan, args.out, batch_size=args.batch_size, learning_rate=args.learning_rate,
        infer_batch_size=args.infer_batch_size, **options)
    print(json.dumps({"path": summary.path, "size_bytes": summary.size_bytes,
                      "budget_units": summary.metadata["budget_units"],
                      "pool_size": summary.metadata["pool"]["size"]}))


if __name__ == "__main__":
    main()
