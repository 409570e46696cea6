"""Exact freezing under every optimizer option Keras has: EMA, weight decay, accumulation.

A channel that is not selected keeps its input-channel slice bit-identical
for the whole epoch, and after `fit` (Keras writes the EMA back then); the
selected ones do train. On a model of this file only.
"""

import keras
import numpy as np
import pytest

import keras_medyate as kmd

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
BATCH = 6
BATCHES_PER_EPOCH = 5  # odd: an accumulation group spans two epochs (two selections)


def freezing_model():
    """Stem with bias, a separable block with a hidden Dense, a logits head."""
    inputs = keras.Input((12, 12, 2))
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="stem")(inputs)
    x = keras.layers.Activation("tanh", name="stem_act")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.Conv2D(10, 1, name="pw")(x)
    x = keras.layers.ReLU(name="pw_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(9, name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x), name="freezing")


class SliceCheck(keras.callbacks.Callback):
    """Records every kernel at each epoch start; at each epoch end, the frozen
    slices must equal those values bit for bit."""

    def __init__(self, plan, resampler):
        super().__init__()
        self.plan, self.resampler = plan, resampler
        self.starts, self.moved_selected = [], 0

    def frozen(self, epoch, name):
        info = self.plan.layer_info(name)
        selected = self.resampler.history[epoch].channels[name]
        return np.setdiff1d(np.arange(info.num_channels), selected)

    def on_epoch_begin(self, epoch, logs=None):
        self.starts.append({n: self.plan.layer_info(n).kernel.numpy().copy()
                            for n in self.plan.layers})

    def on_epoch_end(self, epoch, logs=None):
        for name in self.plan.layers:
            info = self.plan.layer_info(name)
            after, before = info.kernel.numpy(), self.starts[epoch][name]
            frozen = self.frozen(epoch, name)
            np.testing.assert_array_equal(np.take(after, frozen, axis=info.channel_axis),
                                          np.take(before, frozen, axis=info.channel_axis),
                                          err_msg=f"epoch {epoch}: a frozen slice of {name} moved")
            self.moved_selected += int(not np.array_equal(after, before))


OPTIONS = {
    "adamw_ema": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1, use_ema=True,
                                                ema_momentum=0.9),
    "sgd_ema_overwrite": lambda: keras.optimizers.SGD(0.05, momentum=0.9, use_ema=True,
                                                      ema_momentum=0.8,
                                                      ema_overwrite_frequency=3),
    "sgd_weight_decay": lambda: keras.optimizers.SGD(0.05, momentum=0.9, weight_decay=0.2),
    "adamw_weight_decay": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.3),
    "rmsprop_weight_decay": lambda: keras.optimizers.RMSprop(0.01, weight_decay=0.1),
    "sgd_accumulation": lambda: keras.optimizers.SGD(0.05, momentum=0.9,
                                                     gradient_accumulation_steps=2),
    "adam_accumulation_ema_decay": lambda: keras.optimizers.Adam(
        0.01, gradient_accumulation_steps=3, use_ema=True, weight_decay=0.1),
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_frozen_slices_are_bit_identical_in_every_epoch_and_after_fit(option):
    keras.utils.set_random_seed(5)
    model = freezing_model()
    plan = kmd.plan(model, budget=400)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=OPTIONS[option](), loss=LOSS)
    resampler = kmd.ChannelResampler(plan, strategy="trady", seed=1)
    check = SliceCheck(plan, resampler)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(BATCH * BATCHES_PER_EPOCH, 12, 12, 2)).astype("float32")
    y = (np.arange(len(x)) % 4).astype("int32")
    initial = {n: plan.layer_info(n).kernel.numpy().copy() for n in plan.layers}
    head_before = plan.layer_info(plan.classifier).kernel.numpy().copy()
    epochs = 3
    trainer.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[resampler, check])
    assert len(check.starts) == epochs and check.moved_selected > 0
    # After fit (Keras has written the EMA back): the slices frozen in the last
    # epoch still hold their value from its start, and a channel never selected
    # holds its initial value.
    last = epochs - 1
    for name in plan.layers:
        info = plan.layer_info(name)
        final = info.kernel.numpy()
        frozen = check.frozen(last, name)
        np.testing.assert_array_equal(np.take(final, frozen, axis=info.channel_axis),
                                      np.take(check.starts[last][name], frozen,
                                              axis=info.channel_axis),
                                      err_msg=f"{name}: a slice frozen in the last epoch moved")
        ever = np.unique(np.concatenate([resampler.history[e].channels[name]
                                         for e in range(epochs)]))
        never = np.setdiff1d(np.arange(info.num_channels), ever)
        np.testing.assert_array_equal(np.take(final, never, axis=info.channel_axis),
                                      np.take(initial[name], never, axis=info.channel_axis),
                                      err_msg=f"{name}: a channel never selected moved")
    assert not np.array_equal(head_before, plan.layer_info(plan.classifier).kernel.numpy())


def test_an_empty_selection_under_ema_leaves_every_kernel_bit_identical():
    keras.utils.set_random_seed(5)
    model = freezing_model()
    plan = kmd.plan(model, budget=400)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.AdamW(0.01, weight_decay=0.2, use_ema=True,
                                                     ema_overwrite_frequency=2), loss=LOSS)
    before = trainer.kernel_values()
    head_before = plan.layer_info(plan.classifier).kernel.numpy().copy()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(24, 12, 12, 2)).astype("float32")
    y = (np.arange(24) % 4).astype("int32")
    trainer.fit(x, y, batch_size=BATCH, epochs=2, verbose=0,
                callbacks=[kmd.ChannelResampler(plan, strategy="classifier")])
    for name, values in trainer.kernel_values().items():
        np.testing.assert_array_equal(values, before[name], err_msg=name)
    assert not np.array_equal(head_before, plan.layer_info(plan.classifier).kernel.numpy())
