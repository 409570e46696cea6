"""Every registered step kind against Keras and TensorFlow's autodiff (issue 24).

One generic test runs every `Example` of every kind of `step_kinds.KINDS`: a
tiny model `input → "pre" (1×1 conv or Dense) → the example → [Flatten] →
Dense "head"` becomes a training graph whose logits must equal Keras' and
whose loss gradients must equal `tf.GradientTape`'s on the Keras model for
every kernel (the "pre" kernel's gradient is what the example's backward
passes back, times the pre layer's input) and the head's bias. A trainable
kind's kernel gradient is checked on selected channels too. A new kind is
tested here by being registered with its examples; nothing else to add.

The shared classification of updatable layers (`keras_medyate.layer_kinds`)
is checked to be the one the inventory, the selected kernel gradients and
the exporter read.
"""


import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medyate import inventory, kernel_gradients, layer_kinds
from tests.helpers import samples_away_from_kinks
from tflite_export import graph, step_kinds, training_graph

#: (kind name, example index) of every example of every registered kind.
CASES = [(kind.name, index) for kind in step_kinds.KINDS for index in range(len(kind.examples()))]

#: Relative margin every pre-activation keeps from a kink (see `helpers.kink_margins`).
KINK_MARGIN = 1e-3


def _example_model(kind, example):
    """input → pre → the example → [Flatten] → head (→ the example, for a final kind)."""
    shape = example.input_shape
    inputs = keras.Input(shape)
    if len(shape) == 1:
        x = keras.layers.Dense(shape[-1], name="pre")(inputs)
    else:
        x = keras.layers.Conv2D(shape[-1], 1, name="pre")(inputs)
    if not kind.final:
        x = example.build(x)
    if len(x.shape) > 2:
        x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    if kind.final:
        outputs = example.build(outputs)
    return keras.Model(inputs, outputs, name=f"{kind.name}_example")


def _autodiff(model, keys, x, y, from_logits):
    """Loss and the gradient of each `"<layer>/<kernel|bias>"` by `tf.GradientTape`."""
    variables = [getattr(model.get_layer(key.rsplit("/", 1)[0]), key.rsplit("/", 1)[1])
                 for key in keys]
    with tf.GradientTape() as tape:
        tape.watch([v.value for v in variables])
        outputs = model(x, training=False)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)(y, outputs)
    gradients = tape.gradient(loss, [v.value for v in variables])
    return float(loss), {key: g.numpy() for key, g in zip(keys, gradients)}


def _assert_close(ours, expected, what):
    scale = max(float(np.abs(expected).max()), 1e-12)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5 * scale, err_msg=what)


@pytest.mark.parametrize("kind_name,index", CASES)
def test_every_kind_matches_keras_and_autodiff(kind_name, index):
    keras.utils.set_random_seed(index)
    kind = step_kinds.get(kind_name)
    example = kind.examples()[index]
    model = _example_model(kind, example)
    layer_graph = graph.build_graph(model)
    built = {step.kind for step in layer_graph.steps}
    assert kind.name in built or (kind.final and layer_graph.output_softmax), (
        f"example {index} of {kind.name!r} builds no such step: {sorted(built)}")

    rng = np.random.default_rng(index)
    candidates = rng.normal(size=(24, *example.input_shape)).astype(np.float32)
    x = candidates[samples_away_from_kinks(model, candidates, 2, KINK_MARGIN)]
    y = np.array([0, 2], np.int32)
    names = [step.name for step in layer_graph.steps if step.spec.trains]
    trainer = training_graph.TrainingGraph(
        layer_graph, training_graph.WeightSource(layer_graph, {}),
        trained=[n for n in names if n != "head"], classifier="head")
    logits = trainer.logits(tf.constant(x)).numpy()
    keras_logits = model(x, training=False)
    if kind.final:  # the model outputs the final kind's result; the graph, the logits
        keras_logits = keras.Model(model.input, model.get_layer("head").output)(x)
    _assert_close(logits, np.asarray(keras_logits), "logits")

    loss, grads = trainer.gradients(tf.constant(x), tf.constant(y))
    keys = sorted(grads)
    assert keys == sorted([f"{n}/kernel" for n in names] + ["head/bias"])
    expected_loss, expected = _autodiff(model, keys, x, y, from_logits=not kind.final)
    assert float(loss) == pytest.approx(expected_loss, rel=1e-5)
    for key in keys:
        _assert_close(grads[key].numpy(), expected[key], key)

    if kind.trains:  # the kernel gradient of selected input channels, in their order
        for step in layer_graph.steps:
            if step.kind != kind.name or step.name in ("pre", "head"):
                continue
            axis = layer_kinds.by_name(kind.name).channel_axis
            key = f"{step.name}/kernel"
            picked = [expected[key].shape[axis] - 1, 0]
            _, selected = trainer.gradients(
                tf.constant(x), tf.constant(y),
                selection={step.name: tf.constant(picked, tf.int32)})
            _assert_close(selected[key].numpy(), np.take(expected[key], picked, axis=axis),
                          f"{key}, channels {picked}")


def test_every_kind_is_registered_once_with_examples():
    assert graph.STEP_KINDS == step_kinds.names()
    assert len(set(step_kinds.names())) == len(step_kinds.KINDS)
    for kind in step_kinds.KINDS:
        assert kind.examples(), f"step kind {kind.name!r} has no examples to test it with"
        assert step_kinds.get(kind.name) is kind
    # The trained kinds are exactly the updatable layer kinds the host side reads.
    assert [k.name for k in step_kinds.KINDS if k.trains] == [k.name for k in layer_kinds.KINDS]
    with pytest.raises(KeyError, match="the kinds are"):
        step_kinds.get("gelu")


def test_one_classification_of_updatable_layers_for_host_and_exporter():
    class Conv2DVariant(keras.layers.Conv2D):
        pass

    class DepthwiseVariant(keras.layers.DepthwiseConv2D):
        pass

    layers = {
        "conv": keras.layers.Conv2D(4, 3, name="conv"),
        "depthwise": keras.layers.DepthwiseConv2D(3, name="depthwise"),
        "dense": keras.layers.Dense(4, name="dense"),
        "conv_variant": Conv2DVariant(4, 3, name="conv_variant"),
        "depthwise_variant": DepthwiseVariant(3, name="depthwise_variant"),
        "separable": keras.layers.SeparableConv2D(4, 3, name="separable"),
        "relu": keras.layers.ReLU(name="relu"),
    }
    for layer in layers.values():
        layer.build((None, 8, 8, 3) if layer.name != "dense" else (None, 3))
    kinds = {name: layer_kinds.kind_of(layer) for name, layer in layers.items()}
    assert {n: k.name for n, k in kinds.items() if k is not None} == {
        "conv": "conv", "depthwise": "depthwise", "dense": "dense",
        "conv_variant": "conv", "depthwise_variant": "depthwise"}
    # Readers that re-implement the layer take a Conv2D subclass as nothing (it may
    # compute something else), a DepthwiseConv2D subclass as depthwise (as before).
    exact = {n: getattr(layer_kinds.kind_of(layer, exact=True), "name", None)
             for n, layer in layers.items()}
    assert exact["conv_variant"] is None and exact["depthwise_variant"] == "depthwise"
    for name, layer in layers.items():
        assert kernel_gradients.supports(layer) == (exact[name] is not None), name
        reader = step_kinds.kind_for_layer(layer)
        assert (reader.name if reader is not None and reader.trains else None) == exact[name]
    assert set(inventory.supported_layer_types()) == {
        keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense}
    assert [layer_kinds.channel_axis_of_rank(r) for r in (4, 2, 3)] == [2, 0, 0]


def test_a_conv2d_subclass_is_planned_but_not_exported():
    class Conv2DVariant(keras.layers.Conv2D):
        pass

    model = keras.Sequential([keras.Input((8, 8, 3)), Conv2DVariant(4, 3, name="variant"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, name="head")])
    assert [(i.name, i.kind) for i in inventory.inventory(model)] == [
        ("variant", "conv"), ("head", "dense")]
    with pytest.raises(graph.UnsupportedLayerError,
                       match=r"'variant' of class Conv2DVariant is not supported"):
        graph.build_graph(model)
