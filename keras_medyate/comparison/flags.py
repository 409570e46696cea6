"""The absl flags shared by the demo and the paper-comparison CLI.

Both command-line tools fine-tune with `runner.run_one`; these are the flags
that fill its `RunConfig`, defined once.

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


def define_run_flags(train_per_class, epochs=10, learning_rate=0.125):
    """Defines the model, data-size and optimizer flags (defaults: the papers', scaled down)."""
    flags.DEFINE_string("model", "mcunet_5fps",
                        "Preset name (mcunet_5fps, mobilenetv2_w035) or path to a tiny-training .pkl.")
    flags.DEFINE_integer("resolution", 96, "Input resolution (the papers use 128).")
    flags.DEFINE_integer("train_per_class", train_per_class, "Training images per class.")
    flags.DEFINE_integer("test_per_class", 100, "Held-out test images per class.")
    flags.DEFINE_integer("epochs", epochs, "Epochs per run (the papers: 50-200).")
    flags.DEFINE_integer("warmup_epochs", 1, "Linear warm-up epochs (the papers: 5).")
    flags.DEFINE_integer("batch_size", 32, "Batch size.")
    flags.DEFINE_float("learning_rate", learning_rate,
                       "Peak SGD learning rate of budgeted runs (the papers: 0.125).")
    flags.DEFINE_float("full_learning_rate", 0.01, "Peak SGD learning rate of full fine-tuning.")
    flags.DEFINE_float("clipnorm", 1.0, "Per-variable gradient-norm clip (0 disables).")


def run_config(values, method, budget_units, seed, ranking="lara", **overrides):
    """A `RunConfig` from parsed flags (`overrides` replace flag values)."""
    settings = {
        "model": values.model, "epochs": values.epochs, "warmup_epochs": values.warmup_epochs,
        "resolution": values.resolution, "learning_rate": values.learning_rate,
        "full_learning_rate": values.full_learning_rate, "clipnorm": values.clipnorm,
        **overrides,
    }
    return runner.RunConfig(method=method, budget_units=budget_units, seed=seed,
                            ranking=ranking, **settings)
