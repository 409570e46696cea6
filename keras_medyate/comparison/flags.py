"""The absl flags shared by the demo and the paper-comparison CLI.

Both command-line tools fine-tune with `runner.run_one`; these are the flags
that fill its `RunConfig`, defined once. `--protocol` picks a whole recipe
(`recommended`: a head fitted by a linear probe, per-method learning rates,
clip, 1 warm-up epoch; `paper`: the papers' random head, SGD 0.125, no clip,
5 warm-up epochs); any of its flags given explicitly wins. `check_run_flags`
rejects bad values with one line (see `keras_medyate.cli`). Importing this
module does not import TensorFlow.

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

from keras_medyate import recipe
from keras_medyate.comparison import settings
from keras_medyate.cli import UsageError, require

#: Flags whose default comes from `--protocol` unless given on the command line.
PROTOCOL_FLAGS = ("head_init", "clipnorm", "warmup_epochs", "learning_rate",
                  "full_learning_rate")
#: Share of each class's training images `--eval_on=validation` holds out.
VALIDATION_FRACTION = 0.2


def define_run_flags(train_per_class, epochs=10, epoch_eval=True):
    """Defines the model, data-size, evaluation and optimizer flags.

    `epoch_eval` is the default of `--epoch_eval` (evaluation after every
    epoch; a program that prints no curve can turn it off by default).
    """
    flags.DEFINE_string("model", "mcunet_5fps",
                        "Preset name (mcunet_5fps, mobilenetv2_w035, proxylessnas_w03) or path "
                        "to a tiny-training .pkl.")
    flags.DEFINE_integer("resolution", 96, "Input resolution (the papers use 128).")
    flags.DEFINE_string("train_per_class", str(train_per_class),
                        "Training images per class, or 'all'. A run's seed picks them.")
    flags.DEFINE_string("test_per_class", "100",
                        "Held-out test images per class, or 'all' (the same for every seed).")
    flags.DEFINE_integer("epochs", epochs, "Epochs per run (the papers: 50-200).")
    flags.DEFINE_integer("batch_size", 32, "Batch size.")
    flags.DEFINE_enum(
        "protocol", "recommended", list(settings.PROTOCOLS),
        "recommended: head from a linear probe, SGD with a per-method peak learning rate "
        f"({recipe.LEARNING_RATE}; full fine-tuning {recipe.FULL_FINETUNING_LEARNING_RATE}), "
        f"cosine decay after {recipe.WARMUP_EPOCHS} warm-up epoch, clip {recipe.CLIPNORM:g}, "
        "no augmentation: every one of these choices was made on a validation split carved "
        "from the training images (--eval_on=validation, benchmarks/recipe/run.sh), never on "
        "the test set. paper: the papers' random head, SGD 0.125, no clip, 5 warm-up epochs.")
    flags.DEFINE_enum(
        "eval_on", "test", list(settings.EVAL_ON),
        "What top1 is measured on. test: the test split. validation: a stratified "
        f"{VALIDATION_FRACTION:.0%} of each class of the run's training images, held out from "
        "training (see --validation_fraction); make every recipe choice this way.")
    flags.DEFINE_float("validation_fraction", VALIDATION_FRACTION,
                       "With --eval_on=validation: the share of each class's training images "
                       "held out.")
    flags.DEFINE_enum("head_init", None, list(settings.HEAD_INITS),
                      "Where the head starts (default: from --protocol).")
    flags.DEFINE_integer("warmup_epochs", None, "Linear warm-up epochs (default: from --protocol).")
    flags.DEFINE_float("learning_rate", None,
                       "Peak SGD learning rate of budgeted runs and the classifier (default: "
                       f"{settings.DEFAULT_BUDGETED_LEARNING_RATE}; the papers: 0.125).")
    flags.DEFINE_float("full_learning_rate", None,
                       "Peak SGD learning rate of full fine-tuning (default: "
                       f"{settings.DEFAULT_LEARNING_RATES['full']}).")
    flags.DEFINE_float("clipnorm", None,
                       "Per-variable gradient-norm clip, 0 disables (default: from --protocol).")
    flags.DEFINE_bool("augment", False,
                      "Random resized crop (see --crop_scale) + horizontal flip of the "
                      "training images.")
    flags.DEFINE_string("crop_scale", None,
                        "With --augment: the smallest share of the image area the random "
                        f"resized crop keeps, in (0, 1] (default {settings.PAPER_CROP_SCALE:g}, "
                        "the authors'; milder crops keep more), or 'none' for a flip only.")
    flags.DEFINE_integer("max_retries", settings.MAX_RETRIES,
                         "A run whose loss diverges restarts at half the learning rate, at most "
                         "this many times (the row records `retries` and the final rate).")
    flags.DEFINE_bool("epoch_eval", epoch_eval,
                      "Evaluate after every epoch (the `epoch_top1` column and the curves); "
                      "its time is recorded apart (`epoch_eval_seconds`).")


def check_run_flags(values):
    """Rejects bad values of the flags above (`cli.UsageError`, one line each)."""
    for name in ("train_per_class", "test_per_class"):
        value = str(getattr(values, name)).strip()
        require(value.lower() == "all" or (value.isdigit() and int(value) > 0),
                f"--{name}={value!r}: give a positive number of images per class or 'all'.")
    for name in ("resolution", "epochs", "batch_size"):
        require(getattr(values, name) >= 1,
                f"--{name}={getattr(values, name)}: must be at least 1.")
    for name in ("learning_rate", "full_learning_rate"):
        value = getattr(values, name)
        require(value is None or value > 0, f"--{name}={value}: must be positive.")
    require(values.clipnorm is None or values.clipnorm >= 0,
            f"--clipnorm={values.clipnorm}: must be >= 0 (0 disables the clip).")
    require(values.warmup_epochs is None or values.warmup_epochs >= 0,
            f"--warmup_epochs={values.warmup_epochs}: must be >= 0.")
    require(values.max_retries >= 0, f"--max_retries={values.max_retries}: must be >= 0.")
    if values.crop_scale is not None:
        require(values.augment, f"--crop_scale={values.crop_scale}: add --augment (the crop "
                "is part of the training augmentation).")
        try:
            crop_scale(values)
        except ValueError:
            raise UsageError(f"--crop_scale={values.crop_scale!r}: give a number in (0, 1] or "
                             "'none' (flip only).") from None
    require(0 < values.validation_fraction < 1,
            f"--validation_fraction={values.validation_fraction}: must be between 0 and 1.")


def crop_scale(values):
    """`--crop_scale` as a number, None for 'none', the default when not given.

    Raises:
        ValueError: If the flag is neither a number in (0, 1] nor 'none'.
    """
    text = values.crop_scale
    if text is None:
        return settings.PAPER_CROP_SCALE
    if text.strip().lower() == "none":
        return None
    value = float(text)
    settings.check_crop_scale(value)
    return value


def run_config(values, method, budget_units, seed, ranking="lara", **overrides):
    """A `RunConfig` from parsed flags (`overrides` replace flag values)."""
    config = settings.protocol_defaults(values.protocol)
    for name in PROTOCOL_FLAGS:
        if getattr(values, name) is not None:
            config[name] = getattr(values, name)
    config.update({
        "model": values.model, "epochs": values.epochs, "resolution": values.resolution,
        "augment": values.augment, "crop_scale": crop_scale(values),
        "batch_size": values.batch_size,
        "max_retries": values.max_retries, "epoch_eval": values.epoch_eval,
        "evaluated_on": values.eval_on,
    })
    config.update(overrides)
    return settings.RunConfig(method=method, budget_units=budget_units, seed=seed,
                              ranking=ranking, **config)


def load_data(values, resolution=None, batch_size=None, train_per_class=None,
              test_per_class=None, dataset=None, seed=0):
    """`runner.load_data` with the flags' data settings (arguments replace them)."""
    from keras_medyate.comparison import runner

    return runner.load_data(
        dataset or values.dataset, resolution or values.resolution,
        batch_size=batch_size or values.batch_size,
        train_per_class=train_per_class or values.train_per_class,
        test_per_class=test_per_class or values.test_per_class,
        augment=settings.data_augmentation(values.augment, crop_scale(values)), seed=seed,
        validation_fraction=values.validation_fraction if values.eval_on == "validation"
        else 0.0)
