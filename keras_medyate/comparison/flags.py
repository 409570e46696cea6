"""The absl flags shared by the demo and the paper-comparison CLI.

Both command-line tools fine-tune with `runner.run_one`; these are the flags
that fill its `RunConfig`, defined once. `--protocol` picks a whole recipe
(`recommended`: a head fitted by a linear probe, per-method learning rates,
clip, 1 warm-up epoch; `paper`: the papers' random head, SGD 0.125, no clip,
5 warm-up epochs); any of its flags given explicitly wins.

Example:

```python
from absl import flags
from keras_medyate.comparison import flags as run_flags

run_flags.define_run_flags(train_per_class=200)
...
config = run_flags.run_config(flags.FLAGS, method="medyate", budget_units=15936, seed=0)
```
"""

from absl import flags

from keras_medyate.comparison import runner

#: Flags whose default comes from `--protocol` unless given on the command line.
PROTOCOL_FLAGS = ("head_init", "clipnorm", "warmup_epochs", "learning_rate",
                  "full_learning_rate")


def define_run_flags(train_per_class, epochs=10):
    """Defines the model, data-size and optimizer flags."""
    flags.DEFINE_string("model", "mcunet_5fps",
                        "Preset name (mcunet_5fps, mobilenetv2_w035) or path to a tiny-training .pkl.")
    flags.DEFINE_integer("resolution", 96, "Input resolution (the papers use 128).")
    flags.DEFINE_string("train_per_class", str(train_per_class),
                        "Training images per class, or 'all'.")
    flags.DEFINE_string("test_per_class", "100", "Held-out test images per class, or 'all'.")
    flags.DEFINE_integer("epochs", epochs, "Epochs per run (the papers: 50-200).")
    flags.DEFINE_integer("batch_size", 32, "Batch size.")
    flags.DEFINE_enum("protocol", "recommended", list(runner.PROTOCOLS),
                      "recommended: head from a linear probe, per-method learning rates, clip 1, "
                      "1 warm-up epoch. paper: the papers' random head, SGD 0.125, no clip, "
                      "5 warm-up epochs.")
    flags.DEFINE_enum("head_init", None, list(runner.HEAD_INITS),
                      "Where the head starts (default: from --protocol).")
    flags.DEFINE_integer("warmup_epochs", None, "Linear warm-up epochs (default: from --protocol).")
    flags.DEFINE_float("learning_rate", None,
                       "Peak SGD learning rate of budgeted runs (default: per method, "
                       f"{runner.DEFAULT_BUDGETED_LEARNING_RATE}; the papers: 0.125).")
    flags.DEFINE_float("full_learning_rate", None,
                       "Peak SGD learning rate of full fine-tuning (default: "
                       f"{runner.DEFAULT_LEARNING_RATES['full']}).")
    flags.DEFINE_float("clipnorm", None,
                       "Per-variable gradient-norm clip, 0 disables (default: from --protocol).")
    flags.DEFINE_bool("augment", False,
                      "Random resized crop + horizontal flip of the training images.")


def run_config(values, method, budget_units, seed, ranking="lara", **overrides):
    """A `RunConfig` from parsed flags (`overrides` replace flag values)."""
    settings = runner.protocol_defaults(values.protocol)
    for name in PROTOCOL_FLAGS:
        if getattr(values, name) is not None:
            settings[name] = getattr(values, name)
    settings.update({
        "model": values.model, "epochs": values.epochs, "resolution": values.resolution,
        "augment": values.augment,
    })
    settings.update(overrides)
    return runner.RunConfig(method=method, budget_units=budget_units, seed=seed,
                            ranking=ranking, **settings)


def load_data(values, resolution=None, batch_size=None, train_per_class=None,
              test_per_class=None, dataset=None, seed=0):
    """`runner.load_data` with the flags' data settings (arguments replace them)."""
    return runner.load_data(
        dataset or values.dataset, resolution or values.resolution,
        batch_size=batch_size or values.batch_size,
        train_per_class=train_per_class or values.train_per_class,
        test_per_class=test_per_class or values.test_per_class,
        augment=values.augment, seed=seed)
