"""The Keras optimizer of the on-device `train` step: what it reads, how it updates.

`export_training_model(..., optimizer=...)` takes the optimizer the user
compiles `SubnetworkModel` with and reproduces its update in the exported
file, op for op as Keras 3 (TensorFlow backend) computes it:

1. the gradients of the trained weights (search-space kernels, masked to the
   selected input channels, and the classifier's kernel and bias) are clipped:
   `clipnorm` per variable (`tf.clip_by_norm`), else `global_clipnorm` over
   all of them, else `clipvalue` elementwise;
2. `weight_decay`: `w -= w * weight_decay * lr` on every weight Keras would
   decay (`exclude_from_weight_decay` is honoured);
3. SGD: `m = momentum * m - lr * g; w += m` (Nesterov: `w += momentum * m -
   lr * g`), or `w -= lr * g` without momentum;
4. the step counter advances; the learning rate is `schedule(step)`.

Only keras `SGD` is supported: its state (one momentum buffer per trained
weight) is what a phone can afford, and it is the recipe measured in
`benchmarks/RESULTS.md`. Adam/AdamW/RMSprop keep two buffers per weight and
need a square root per element; EMA, gradient accumulation and loss scaling
keep further copies of the weights: all are refused with a message.

The learning rate is a float or a `keras.optimizers.schedules.CosineDecay`
(with or without linear warm-up; a float is the same schedule with
`alpha=1`), held on the device as five numbers (`SCHEDULE_FIELDS`) so that
`set_learning_rate` and `set_schedule` can change it.

Momentum buffers exist for the trained weights only; a frozen slice of a
kernel keeps its value bit for bit (its buffer decays as Keras' does,
`SubnetworkModel` puts the weight back). A step with no selected channel
(head only) leaves the kernels' buffers untouched, as `SubnetworkModel`'s
head-only step does.

Example:

>>> import keras
>>> from tflite_export import optimizer
>>> spec = optimizer.OptimizerSpec.from_keras(
...     keras.optimizers.SGD(0.05, momentum=0.9, clipnorm=1.0), weights={})
>>> spec.momentum, spec.clipnorm, [round(v, 6) for v in spec.schedule]
(0.9, 1.0, [0.05, 1.0, 1.0, 0.05, 0.0])
"""

import dataclasses
import math

import numpy as np

#: The five numbers of the on-device learning-rate schedule (Keras `CosineDecay`).
SCHEDULE_FIELDS = ("initial_learning_rate", "decay_steps", "alpha", "warmup_target",
                   "warmup_steps")

SUPPORTED = (
    "keras.optimizers.SGD with momentum (and nesterov), clipnorm, global_clipnorm, clipvalue "
    "and weight_decay, and a float learning rate or a keras.optimizers.schedules.CosineDecay "
    "(warm-up optional)")


class UnsupportedOptimizerError(ValueError):
    """The optimizer (or one of its options) has no on-device form."""


def constant_schedule(learning_rate):
    """The schedule numbers of a constant learning rate (`CosineDecay` with alpha 1)."""
    rate = float(learning_rate)
    return (rate, 1.0, 1.0, rate, 0.0)


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """The on-device update, read from a Keras optimizer.

    Attributes:
        momentum: float in [0, 1].
        nesterov: bool.
        clipnorm, global_clipnorm, clipvalue: float or None (Keras applies the
            first one set, in this order).
        weight_decay: float or None.
        schedule: tuple of `SCHEDULE_FIELDS`.
        step: int, the optimizer's iterations so far (its schedule position).
        decayed: tuple of weight keys that take weight decay.
        recipe: dict or None: `{"peak_learning_rate", "warmup_epochs"}` when the
            schedule's length is set on the device by `OnDeviceTrainer.fit`
            (the recommended recipe of an export without `optimizer=`).
    """

    momentum: float = 0.0
    nesterov: bool = False
    clipnorm: float = None
    global_clipnorm: float = None
    clipvalue: float = None
    weight_decay: float = None
    schedule: tuple = constant_schedule(0.01)
    step: int = 0
    decayed: tuple = ()
    recipe: dict = None

    @classmethod
    def plain_sgd(cls, learning_rate):
        """`w -= learning_rate * g`: what `export_training_model(learning_rate=...)` runs."""
        return cls(schedule=constant_schedule(learning_rate))

    @classmethod
    def recommended(cls):
        """The recommended recipe (`keras_medyate.recipe`), its length set by `fit`.

        SGD with the per-variable clip; the schedule is constant at the peak
        rate until `OnDeviceTrainer.fit` (or `set_schedule`) gives it a length.
        """
        from keras_medyate import recipe  # noqa: PLC0415 - numpy-only module

        return cls(clipnorm=float(recipe.CLIPNORM),
                   schedule=constant_schedule(recipe.LEARNING_RATE),
                   recipe={"peak_learning_rate": float(recipe.LEARNING_RATE),
                           "warmup_epochs": int(recipe.WARMUP_EPOCHS)})

    @classmethod
    def from_keras(cls, optimizer, weights):
        """Reads a Keras optimizer; refuses what the device cannot reproduce.

        Args:
            optimizer: a `keras.optimizers.Optimizer`.
            weights: dict weight key → the Keras variable it comes from (to
                read `exclude_from_weight_decay`, and the step and momentum
                of an optimizer that already trained them).

        Raises:
            UnsupportedOptimizerError: anything but SGD, or an option of it
                with no on-device form (named, with what is supported).
        """
        import keras  # noqa: PLC0415

        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise UnsupportedOptimizerError(
                f"`optimizer` must be a Keras optimizer instance, got {type(optimizer).__name__}. "
                f"Supported: {SUPPORTED}.")
        if type(optimizer) is not keras.optimizers.SGD:
            raise UnsupportedOptimizerError(
                f"The device runs {SUPPORTED}; got {type(optimizer).__name__}. Adaptive "
                "optimizers (Adam, AdamW, RMSprop, ...) keep two buffers per weight and a "
                "square root per element, more than the budgeted update is meant to cost; "
                "train with keras.optimizers.SGD (the recommended recipe: "
                "keras_medyate.recommended_optimizer).")
        for option, value, why in (
                ("use_ema", optimizer.use_ema, "it keeps a second copy of every weight"),
                ("gradient_accumulation_steps", optimizer.gradient_accumulation_steps,
                 "it keeps a gradient accumulator per weight"),
                ("loss_scale_factor", optimizer.loss_scale_factor,
                 "the device trains in float32, where loss scaling is not needed")):
            if value:
                raise UnsupportedOptimizerError(
                    f"`{option}={value!r}` has no on-device form ({why}). Export with the same "
                    f"SGD without it. Supported: {SUPPORTED}.")
        schedule = _schedule_of(optimizer)
        decayed = ()
        if optimizer.weight_decay:
            decayed = tuple(key for key, variable in weights.items()
                            if optimizer._use_weight_decay(variable))  # noqa: SLF001 - Keras' own rule
        return cls(momentum=float(optimizer.momentum), nesterov=bool(optimizer.nesterov),
                   clipnorm=_positive(optimizer.clipnorm),
                   global_clipnorm=_positive(optimizer.global_clipnorm),
                   clipvalue=_positive(optimizer.clipvalue),
                   weight_decay=_positive(optimizer.weight_decay), schedule=schedule,
                   step=int(np.asarray(optimizer.iterations)) if optimizer.built else 0,
                   decayed=decayed)

    def initial_momentum(self, optimizer, key, variable, shape):
        """The starting momentum buffer of one weight: the optimizer's if it has one."""
        if optimizer is not None and optimizer.built and self.momentum:
            for index, known in enumerate(optimizer._trainable_variables):  # noqa: SLF001
                if known is variable:
                    return np.asarray(optimizer.momentums[index].numpy(), np.float32)
        del key
        return np.zeros(shape, np.float32)

    def to_config(self):
        """The `"optimizer"` entry of the file's metadata."""
        return {"name": "SGD", "momentum": self.momentum, "nesterov": self.nesterov,
                "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm,
                "clipvalue": self.clipvalue, "weight_decay": self.weight_decay,
                "schedule": dict(zip(SCHEDULE_FIELDS, self.schedule)),
                "decayed_weights": list(self.decayed), "recipe": self.recipe}


def _positive(value):
    return float(value) if value else None


def _schedule_of(optimizer):
    import keras  # noqa: PLC0415

    rate = optimizer._learning_rate  # noqa: SLF001 - the schedule object itself
    if isinstance(rate, keras.optimizers.schedules.CosineDecay):
        warmup = rate.warmup_target is not None
        initial = float(rate.initial_learning_rate)
        return (initial, float(rate.decay_steps), float(rate.alpha),
                float(rate.warmup_target) if warmup else initial,
                float(rate.warmup_steps) if warmup else 0.0)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) or callable(rate):
        raise UnsupportedOptimizerError(
            f"The learning-rate schedule {type(rate).__name__} has no on-device form yet. "
            f"Supported: {SUPPORTED}. keras_medyate.recipe.cosine_schedule gives the recommended "
            "warm-up + cosine.")
    value = float(np.asarray(rate))
    if not math.isfinite(value) or value <= 0:
        raise UnsupportedOptimizerError(f"The learning rate must be positive and finite, got {value}.")
    return constant_schedule(value)


def check_schedule(schedule):
    """The five schedule numbers as float32, checked (a sequence or a dict)."""
    if isinstance(schedule, dict):
        unknown = sorted(set(schedule) - set(SCHEDULE_FIELDS))
        missing = [f for f in SCHEDULE_FIELDS if f not in schedule]
        if unknown or missing:
            raise ValueError(f"A schedule dict needs exactly the keys {list(SCHEDULE_FIELDS)}; "
                             f"unknown {unknown}, missing {missing}.")
        schedule = [schedule[f] for f in SCHEDULE_FIELDS]
    numbers = np.asarray(schedule, np.float64)
    if numbers.shape != (len(SCHEDULE_FIELDS),) or not np.all(np.isfinite(numbers)):
        raise ValueError(f"A schedule is {len(SCHEDULE_FIELDS)} finite numbers "
                         f"{list(SCHEDULE_FIELDS)}, got {schedule!r}.")
    initial, decay_steps, alpha, target, warmup_steps = numbers
    if decay_steps < 1 or warmup_steps < 0 or initial < 0 or target < 0 or not 0 <= alpha <= 1:
        raise ValueError(
            "A schedule needs decay_steps >= 1, warmup_steps >= 0, non-negative rates and "
            f"alpha in [0, 1]; got {dict(zip(SCHEDULE_FIELDS, numbers.tolist()))}.")
    if max(initial, target) <= 0:
        raise ValueError(f"A schedule whose rates are all 0 trains nothing: {schedule!r}.")
    return numbers.astype(np.float32)


def numpy_learning_rate(schedule, step):
    """`learning_rate` in numpy (float32), for the app side: the rate of `step`."""
    initial, decay_steps, alpha, target, warmup_steps = np.asarray(schedule, np.float32)
    step = np.minimum(np.float32(step), decay_steps + warmup_steps)
    if step < warmup_steps:
        return float((target - initial) * (step / warmup_steps) + initial)
    fraction = (step - warmup_steps) / decay_steps
    cosine = np.float32(0.5) * (np.float32(1.0) + np.cos(np.float32(math.pi) * fraction))
    return float(target * ((np.float32(1.0) - alpha) * cosine + alpha))


# --- the update, in builtin-convertible TensorFlow ops ----------------------------------


def learning_rate(schedule, step):
    """Keras `CosineDecay.__call__(step)` in select/cos ops (no control flow).

    Args:
        schedule: float32 (5,) tensor of `SCHEDULE_FIELDS`.
        step: float32 scalar, the optimizer's iterations before this step.
    """
    import tensorflow as tf  # noqa: PLC0415

    initial, decay_steps, alpha, target, warmup_steps = tf.unstack(schedule)
    step = tf.minimum(step, decay_steps + warmup_steps)
    warmup = (target - initial) * (step / warmup_steps) + initial
    fraction = (step - warmup_steps) / decay_steps
    cosine = 0.5 * (1.0 + tf.cos(np.float32(math.pi) * fraction))
    decayed = target * ((1.0 - alpha) * cosine + alpha)
    # Both branches are computed; the select keeps the warm-up's 0/0 out.
    return tf.where(step < warmup_steps, warmup, decayed)


def clip(spec, gradients):
    """Keras' `_clip_gradients` on a dict key → gradient (TensorFlow backend)."""
    import tensorflow as tf  # noqa: PLC0415

    if spec.clipnorm:
        return {key: tf.clip_by_norm(g, spec.clipnorm) for key, g in gradients.items()}
    if spec.global_clipnorm:
        keys = list(gradients)
        squared = tf.reduce_sum(tf.stack([tf.reduce_sum(tf.square(gradients[k])) for k in keys]))
        norm = tf.sqrt(squared)
        scale = spec.global_clipnorm * tf.minimum(1.0 / norm, 1.0 / spec.global_clipnorm)
        scale = scale + (norm - norm)  # NaN for a non-finite norm, as Keras
        return {key: gradients[key] * scale for key in keys}
    if spec.clipvalue:
        return {key: tf.clip_by_value(g, -spec.clipvalue, spec.clipvalue)
                for key, g in gradients.items()}
    return dict(gradients)


def update(spec, key, weight, gradient, rate, momentum=None):
    """One weight's new value (and momentum buffer) after an SGD step.

    Args:
        spec: the `OptimizerSpec`.
        key: the weight key (for weight decay).
        weight: its current value.
        gradient: its clipped gradient (zero outside the selected slices).
        rate: float32 scalar, this step's learning rate.
        momentum: its momentum buffer, or None without momentum.

    Returns:
        (new weight, new momentum buffer or None).
    """
    if spec.weight_decay and key in spec.decayed:
        weight = weight - weight * np.float32(spec.weight_decay) * rate
    if momentum is None:
        return weight - gradient * rate, None
    factor = np.float32(spec.momentum)
    new_momentum = momentum * factor - gradient * rate
    if spec.nesterov:
        return weight + (new_momentum * factor - gradient * rate), new_momentum
    return weight + new_momentum, new_momentum
