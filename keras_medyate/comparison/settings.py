"""What a comparison run is: methods, protocols, runtimes, CSV columns, `RunConfig`.

Importing this module imports neither TensorFlow nor Keras, so command-line
tools can parse and check their flags (and print `--help`) before the slow
import. `runner` re-exports every name.

The recipe's numbers (peak learning rates, warm-up, clip) come from
`keras_medyate.recipe`, their one definition.
"""

import dataclasses
from typing import Optional

from keras_medyate import recipe

#: method → (plan kind, strategy). Plan kinds: "lara" (LaRa + alpha rule),
#: "rgn97" (RGN + 97 % rule), "lara_all" (every layer, LaRa order), "all".
#: `full` trains every trainable variable of the model (biases included) with
#: plain Keras `fit`; its strategy name only describes the plan's selection.
METHODS = {
    "medyate": ("lara", "medyate"),
    "trady": ("rgn97", "trady"),
    "lara_trady": ("lara", "trady"),
    "full_random": ("all", "full_random"),
    "static_random": ("all", "static_random"),
    "sparse_update": ("lara_all", "sparse_update"),
    "det_rgn": ("all", "det_rgn"),
    "det_raw": ("lara", "det_raw"),
    "prob_raw": ("lara", "prob_raw"),
    "full": ("all", "full"),
    "classifier": ("all", "classifier"),
    "linear_probe": ("all", "classifier"),
}
#: Methods whose result does not depend on the budget (run once per seed).
BUDGET_FREE = ("full", "classifier", "linear_probe")
#: Where the head comes from before fine-tuning.
HEAD_INITS = ("linear_probe", "random")
#: Where a run trains: Keras (`SubnetworkModel`) or the exported LiteRT file
#: (`tflite_export.OnDeviceTrainer`). LiteRT runs exist for these methods only.
RUNTIMES = ("keras", "litert")
LITERT_METHODS = ("medyate",)
#: What `top1` is measured on: the test split, or a stratified part of the
#: training images held out from training (for choosing the recipe).
EVAL_ON = ("test", "validation")
#: Times a run whose `DivergenceGuard` fires is retried, each at half the
#: previous learning rate.
MAX_RETRIES = 2
#: TensorFlow threads per run (intra- and inter-op) unless told otherwise.
DEFAULT_THREADS = 2
#: TensorFlow keeps CPU allocator statistics (`peak_memory_mb`) only with its BFC
#: allocator, chosen when TensorFlow starts: benchmark programs set this in their
#: environment before importing it (a value the user set wins).
ALLOCATOR_ENV = {"TF_CPU_ALLOCATOR_USE_BFC": "true"}
#: Peak SGD learning rate per method under the recommended protocol
#: (`keras_medyate.recipe`; measured in benchmarks/RESULTS.md).
DEFAULT_LEARNING_RATES = {"full": recipe.FULL_FINETUNING_LEARNING_RATE,
                          "classifier": recipe.LEARNING_RATE}
DEFAULT_BUDGETED_LEARNING_RATE = recipe.LEARNING_RATE
#: Smallest share of the image area the random resized crop keeps under
#: `augment` unless told otherwise: the authors' (timm's) 0.08.
PAPER_CROP_SCALE = 0.08
#: The two protocols: our recommended recipe and the papers' settings.
PROTOCOLS = {
    "recommended": {"head_init": "linear_probe", "clipnorm": recipe.CLIPNORM,
                    "warmup_epochs": recipe.WARMUP_EPOCHS},
    "paper": {"head_init": "random", "clipnorm": 0.0, "warmup_epochs": 5,
              "learning_rate": 0.125, "full_learning_rate": 0.125},
}
CSV_COLUMNS = (
    "model", "dataset", "method", "runtime", "budget_units", "seed", "top1", "evaluated_on",
    "epochs", "train_seconds",
    "peak_memory_mb", "update_memory_kb", "epoch_seconds", "first_epoch_seconds",
    "resample_seconds_per_epoch",
    "explored", "search_space_layers", "channels_per_epoch", "full_memory_kb", "resolution",
    "train_images", "test_images", "learning_rate", "retries", "head_init", "augment",
    "crop_scale", "clipnorm", "warmup_epochs", "probe_l2", "probe_seconds", "threads", "batch_size",
    "epoch_top1", "epoch_eval_seconds",
)


@dataclasses.dataclass
class RunConfig:
    """Settings of one run (defaults: the recommended protocol, scaled down).

    `learning_rate` / `full_learning_rate` of None take the method's default
    (`DEFAULT_LEARNING_RATES`); `protocol_defaults("paper")` gives the papers'.
    With `backup_dir`, each epoch is backed up (`journal.RunJournal`: Keras'
    `BackupAndRestore`, selection state included, and the epochs' measurements)
    and an interrupted run resumes after its last finished epoch, its row
    covering every epoch.
    `batch_size` must be the batch size of the pipelines the run gets (the
    LiteRT runtime exports a file with that static batch). `epoch_eval`
    evaluates on the test (or validation) pipeline after every epoch
    (`epoch_top1`; its time is left out of the timing columns).
    `max_retries`: a run whose loss diverges restarts at half the learning
    rate, at most this many times.
    """

    model: str = "mcunet_5fps"
    method: str = "medyate"
    budget_units: int = 15936
    seed: int = 0
    epochs: int = 10
    warmup_epochs: int = recipe.WARMUP_EPOCHS
    resolution: int = 96
    learning_rate: Optional[float] = None
    full_learning_rate: Optional[float] = None
    clipnorm: float = recipe.CLIPNORM
    ranking: str = "lara"
    probe_steps: int = 4
    head_init: str = "linear_probe"
    augment: bool = False
    crop_scale: Optional[float] = PAPER_CROP_SCALE
    backup_dir: Optional[str] = None
    runtime: str = "keras"
    batch_size: int = 32
    epoch_eval: bool = True
    max_retries: int = MAX_RETRIES
    evaluated_on: str = "test"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(
                f"Unknown method {self.method!r}. Accepted: {', '.join(METHODS)}.")
        if self.head_init not in HEAD_INITS:
            raise ValueError(
                f"Unknown head_init {self.head_init!r}. Accepted: {', '.join(HEAD_INITS)}.")
        if self.method == "linear_probe" and self.head_init != "linear_probe":
            raise ValueError("method='linear_probe' needs head_init='linear_probe'.")
        if self.runtime not in RUNTIMES:
            raise ValueError(
                f"Unknown runtime {self.runtime!r}. Accepted: {', '.join(RUNTIMES)}.")
        if self.runtime != "keras" and self.method not in LITERT_METHODS:
            raise ValueError(
                f"runtime={self.runtime!r} is implemented for {', '.join(LITERT_METHODS)} "
                f"only, not {self.method!r}; run {self.method!r} with runtime='keras'.")
        check_crop_scale(self.crop_scale)
        if self.evaluated_on not in EVAL_ON:
            raise ValueError(
                f"Unknown evaluated_on {self.evaluated_on!r}. Accepted: {', '.join(EVAL_ON)}.")

    def peak_learning_rate(self):
        """The peak SGD learning rate this run starts with (before any retry)."""
        if self.method == "full":
            return self.full_learning_rate or DEFAULT_LEARNING_RATES["full"]
        if self.learning_rate:
            return self.learning_rate
        return DEFAULT_LEARNING_RATES.get(self.method, DEFAULT_BUDGETED_LEARNING_RATE)


def check_crop_scale(crop_scale):
    """Raises ValueError unless `crop_scale` is None or in (0, 1]."""
    if crop_scale is not None and not 0 < crop_scale <= 1:
        raise ValueError(
            f"`crop_scale` must be None (no crop: flip only) or in (0, 1], the smallest share "
            f"of the image area a random crop keeps; received {crop_scale!r}.")


def augmentation_label(augment, crop_scale):
    """The `crop_scale` CSV value: '' without augmentation, 'none' for flip
    only, else the smallest area share of the crop (e.g. '0.08')."""
    if not augment:
        return ""
    return "none" if crop_scale is None else f"{crop_scale:g}"


def data_augmentation(augment, crop_scale):
    """What `data.load` gets: False, or a `data.Augmentation` with a random
    resized crop keeping `crop_scale`–100 % of the area (None: no crop) and a
    horizontal flip. Imports TensorFlow."""
    check_crop_scale(crop_scale)
    if not augment:
        return False
    from keras_medyate.data import augmentation  # noqa: PLC0415 (TensorFlow)

    return augmentation.Augmentation(
        crop_scale=None if crop_scale is None else (crop_scale, 1.0))


def protocol_defaults(protocol):
    """The `RunConfig` settings of a protocol ("recommended" or "paper")."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}. Accepted: {', '.join(PROTOCOLS)}.")
    return dict(PROTOCOLS[protocol])
