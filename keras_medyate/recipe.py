"""The recommended fine-tuning recipe: one definition for Keras and the device.

Plain SGD (no momentum, as in the papers), a linear warm-up to the peak
learning rate, cosine decay to 0, and a per-variable gradient-norm clip.
`benchmarks/RESULTS.md` §1 chose the peak rates on a validation split of the
training images: 0.05 for the budgeted methods and the classifier, 0.01 for
full fine-tuning (every weight moves, so smaller steps). The same optimizer object is what
`SubnetworkModel.compile` takes and what `tflite_export.export_training_model
(optimizer=...)` bakes into the exported file, so the phone follows the
same schedule step for step.

Example:

>>> from keras_medyate import recipe
>>> optimizer = recipe.recommended_optimizer(steps_per_epoch=10, epochs=5)
>>> type(optimizer).__name__, optimizer.clipnorm
('SGD', 1.0)
>>> round(float(optimizer.learning_rate), 4)  # step 0 of the warm-up
0.0
"""

#: Peak learning rate of the budgeted methods (MeDyate, TraDy, ...) and the classifier.
LEARNING_RATE = 0.05
#: Peak learning rate of full fine-tuning.
FULL_FINETUNING_LEARNING_RATE = 0.01
#: Linear warm-up length, in epochs.
WARMUP_EPOCHS = 1
#: Per-variable gradient-norm clip (Keras `clipnorm`).
CLIPNORM = 1.0


def cosine_schedule(peak, steps_per_epoch, epochs, warmup_epochs=WARMUP_EPOCHS):
    """Linear warm-up from 0 to `peak`, then cosine decay to 0, as in the papers.

    The warm-up is shortened so that at least one epoch decays (a 1-epoch
    run has no warm-up).

    Args:
        peak: float, the learning rate at the end of the warm-up.
        steps_per_epoch: int, optimizer steps per epoch.
        epochs: int, epochs of the whole run.
        warmup_epochs: int, epochs of linear warm-up. Defaults to 1.

    Returns:
        A `keras.optimizers.schedules.CosineDecay`.
    """
    import keras

    initial, decay_steps, alpha, target, warmup = schedule_numbers(
        peak, steps_per_epoch, epochs, warmup_epochs)
    return keras.optimizers.schedules.CosineDecay(
        initial, decay_steps=int(decay_steps), alpha=alpha, warmup_target=target,
        warmup_steps=int(warmup))


def schedule_numbers(peak, steps_per_epoch, epochs, warmup_epochs=WARMUP_EPOCHS):
    """The recipe's schedule as the five numbers of a Keras `CosineDecay`.

    `(initial_learning_rate, decay_steps, alpha, warmup_target, warmup_steps)`:
    what `cosine_schedule` builds, and what the exported file's
    `set_schedule` takes (`tflite_export.optimizer.SCHEDULE_FIELDS`), so the
    device needs no Keras to follow the recipe.

    >>> schedule_numbers(0.05, steps_per_epoch=10, epochs=3)
    (0.0, 20.0, 0.0, 0.05, 10.0)
    """
    for name, value in (("steps_per_epoch", steps_per_epoch), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"`warmup_epochs` must be an int >= 0, got {warmup_epochs!r}.")
    if not isinstance(peak, (int, float)) or isinstance(peak, bool) or not peak > 0:
        raise ValueError(f"`peak` must be a positive learning rate, got {peak!r}.")
    warmup = min(warmup_epochs, max(epochs - 1, 0)) * steps_per_epoch
    return (0.0, float(max(epochs * steps_per_epoch - warmup, 1)), 0.0, float(peak),
            float(warmup))


def recommended_optimizer(steps_per_epoch, epochs, learning_rate=LEARNING_RATE,
                          warmup_epochs=WARMUP_EPOCHS, clipnorm=CLIPNORM):
    """A fresh `keras.optimizers.SGD` with the recommended schedule and clip.

    Args:
        steps_per_epoch: int, optimizer steps per epoch (`len(train_ds)` for a
            batched `tf.data` pipeline).
        epochs: int, epochs of the whole run.
        learning_rate: float, the peak learning rate. Defaults to 0.05 (use
            `FULL_FINETUNING_LEARNING_RATE`, 0.01, for full fine-tuning).
        warmup_epochs: int, linear warm-up epochs. Defaults to 1.
        clipnorm: float, per-variable gradient-norm clip; 0 or None for no
            clip. Defaults to 1.0.

    Returns:
        A new, unbuilt `keras.optimizers.SGD` (one per model: Keras optimizers
        hold per-variable state).
    """
    import keras

    return keras.optimizers.SGD(
        cosine_schedule(learning_rate, steps_per_epoch, epochs, warmup_epochs),
        clipnorm=clipnorm or None)
