"""The forward pass, the cross-entropy and the hand-written backward pass.

`TrainingGraph` evaluates a `graph.LayerGraph` step by step, each step with
its kind's forward and backward (`step_kinds`, in the builtin-convertible ops
of `layer_ops`); it names no kind. Weights come from a `WeightSource`: the
kernels of the search-space layers and the classifier's kernel and bias are
resource variables (read and updated on the device), every other weight is a
constant of the model file.

The backward pass only visits steps whose output depends on a trained weight
(`requires_grad`): everything below the earliest search-space layer has no
gradient op at all, and that layer computes its kernel gradient but no input
gradient. With a `selection` (input-channel indices per search-space layer,
as `train` passes them), the forward pass copies only the selected channels
of each search-space layer's input (`GATHER`, right where the input is
produced) and the backward pass computes the kernel gradient of those
channels only. What the backward pass reads from the forward pass is then:
the selected input channels, the (Leaky)ReLU masks (bool) of the backprop region,
what the other non-linear steps there need (an activation's mask, input or
output; the other operand of a multiply; a max pooling's input and output)
and the classifier's input; LiteRT's arena planner keeps exactly those alive
and reuses the rest.

Example:

>>> import keras, numpy as np, tensorflow as tf
>>> from tflite_export import graph, training_graph
>>> model = keras.Sequential([keras.Input((6, 6, 3)),
...     keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="head")])
>>> g = graph.build_graph(model)
>>> tg = training_graph.TrainingGraph(g, training_graph.WeightSource(g, {}), trained=[], classifier="head")
>>> logits = tg.logits(tf.constant(np.zeros((1, 6, 6, 3), np.float32)))
>>> tuple(logits.shape)
(1, 2)
"""

import keras
import numpy as np
import tensorflow as tf

from keras_medyate import layer_kinds
from tflite_export import layer_ops
from tflite_export import step_kinds

#: The kinds with a kernel (`StepKind.trains`): conv, depthwise, dense.
PARAMETRIC_KINDS = tuple(kind.name for kind in step_kinds.KINDS if kind.trains)


class WeightSource:
    """Kernels and biases of the parametric steps: variables or constants.

    Args:
        graph: the `LayerGraph`.
        variables: dict `"<layer>/kernel"` or `"<layer>/bias"` → `tf.Variable`;
            every other weight is read once from the Keras layer and embedded
            as a constant.
    """

    def __init__(self, graph, variables):
        self.variables = dict(variables)
        self._constants = {}
        for step in graph.steps:
            if not step.spec.trains:
                continue
            for part in ("kernel", "bias"):
                key = f"{step.name}/{part}"
                weight = getattr(step.layer, part, None)
                if key in self.variables or weight is None:
                    continue
                if part == "bias" and not step.params.get("use_bias", True):
                    continue
                self._constants[key] = np.asarray(keras.ops.convert_to_numpy(weight), np.float32)

    def read(self):
        """dict key → tensor: every variable read once, every constant embedded.

        Call it once per traced signature: each read of a variable is a
        `READ_VARIABLE` op whose output LiteRT allocates separately.
        """
        values = {key: tf.constant(value) for key, value in self._constants.items()}
        for key, variable in self.variables.items():
            values[key] = tf.convert_to_tensor(variable)
        return values


class TrainingGraph:
    """Forward, loss and backward of a `LayerGraph` in builtin-convertible ops.

    Args:
        graph: the `LayerGraph`.
        weights: a `WeightSource`.
        trained: list of layer names whose kernels are trained (the search space).
        classifier: name of the layer whose kernel and bias are trained.
    """

    def __init__(self, graph, weights, trained, classifier):
        self.graph = graph
        self.weights = weights
        self.trained = list(trained)
        self.classifier = classifier
        parametric = {s.name for s in graph.steps if s.spec.trains}
        missing = [n for n in [*self.trained, classifier] if n not in parametric]
        if missing:
            raise ValueError(
                f"Layers {missing} are not {'/'.join(k.class_name for k in layer_kinds.KINDS)} "
                "steps of the exported graph; was the plan made for this model?"
            )
        self.requires_grad = self._requires_grad()

    def _requires_grad(self):
        trained = set(self.trained) | {self.classifier}
        needs = set()
        for step in self.graph.steps:
            if (step.spec.trains and step.name in trained) or any(
                    t in needs for t in step.inputs):
                needs.add(step.output)
        return needs

    def _trains_kernel(self, step):
        return step.spec.trains and (step.name in self.trained or step.name == self.classifier)

    # --- forward ------------------------------------------------------------------

    def forward(self, x, weights=None, record=False, selection=None):
        """Runs every step.

        Args:
            x: float32 (B, H, W, C) input.
            weights: dict from `WeightSource.read()` (read now if None).
            record: bool, also keep what the backward pass needs: the ReLU
                masks and the inputs of the trained layers.
            selection: None (every input channel is trained) or dict layer
                name → int32 tensor of input-channel indices: only those
                channels of that layer's input are kept.

        Returns:
            (values dict tensor id → tensor, saved dict): `saved["inputs"]`
            layer name → the (selected channels of the) input of a trained
            layer, `saved["tensors"]` a step's output id → what its backward
            pass reads (`StepKind.record`: a ReLU's bool mask, an
            activation's mask, input or output, ...; see `saved_for_backward`).
        """
        weights = self.weights.read() if weights is None else weights
        selection = selection or {}
        values = {self.graph.input_id: x}
        saved = {"inputs": {}, "pads": {}, "input_hw": {}, "tensors": {}}
        for step in self.graph.steps:
            spec = step.spec
            inputs = [values[t] for t in step.inputs]
            if record and self._trains_kernel(step):
                source, pads = self.kept_input(step)
                kept = values[source]
                copied = False
                if step.name in selection:
                    kept = layer_ops.select_channels(kept, selection[step.name])
                    copied = True
                laid_out, input_hw = spec.keep_input(kept)
                if laid_out is not kept:
                    saved["input_hw"][step.name] = input_hw
                    kept, copied = laid_out, True
                if copied:
                    # The layer reads its input only after the copy exists, so
                    # the copy is made here, not after the whole forward pass
                    # (which would keep every full input alive until then).
                    inputs = [layer_ops.after(inputs[0], kept), *inputs[1:]]
                saved["inputs"][step.name] = kept
                saved["pads"][step.name] = pads
            values[step.output] = spec.forward(step, inputs, weights)
            if record and step.output in self.requires_grad:
                kept = spec.record(step, values, self.requires_grad)
                if kept:
                    saved["tensors"][step.output] = kept
        return values, saved

    def saved_for_backward(self, step):
        """What the backward pass of a step reads from the forward pass: dict name →
        (tensor id, bytes per element); empty if nothing (`StepKind.saved_for_backward`):
        a ReLU's or LeakyReLU's `mask` (bool, of its output), an activation's
        `saved` (`layer_ops.ACTIVATION_SAVES`: a bool mask of its input, its
        input or its output), a multiply's `other<i>` (the operand the gradient
        of input i is multiplied by, kept only if input i needs a gradient), a
        max pooling's `input` and `output`. `forward` keeps these and
        `memory_model` counts them (a tensor named twice, as in `x * x`, once)."""
        return step.spec.saved_for_backward(step, self.requires_grad)

    def kept_input(self, step):
        """(tensor id, pads) of what a trained step keeps for its kernel gradient.

        An explicit `ZeroPadding2D` in front of a conv is folded into the
        conv's padding: the unpadded tensor is kept, smaller than the padded
        one, which is freed after the conv. (`memory_model` counts the same.)
        """
        return step.spec.kept_input(step, self.graph.producer(step.inputs[0]))

    def parametric_step(self, name):
        """The conv/depthwise/dense step of layer `name`."""
        return next(s for s in self.graph.steps if s.name == name and s.spec.trains)

    def logits(self, x, weights=None):
        """The logits for an input batch."""
        values, _ = self.forward(x, weights)
        return values[self.graph.logits_id]

    # --- backward -----------------------------------------------------------------

    def gradients(self, x, labels, weights=None, selection=None):
        """Loss and gradients of the trained weights for one batch.

        Args:
            x: float32 (B, H, W, C), static batch.
            labels: int32 (B,).
            weights: dict from `WeightSource.read()` (read now if None).
            selection: as in `forward`: the kernel gradient of a selected
                layer holds only its selected input channels, in the order of
                the indices (on the kernel's channel axis).

        Returns:
            (loss scalar, dict `"<layer>/kernel"`/`"<classifier>/bias"` → gradient).
        """
        weights = self.weights.read() if weights is None else weights
        selection = selection or {}
        values, saved = self.forward(x, weights, record=True, selection=selection)
        loss, dlogits = layer_ops.cross_entropy(values[self.graph.logits_id], labels)
        context = step_kinds.Backward(self.graph.shapes, int(x.shape[0]), self.requires_grad,
                                      weights)
        grads = {self.graph.logits_id: dlogits}
        weight_grads = {}
        for step in reversed(self.graph.steps):
            if step.output not in self.requires_grad or step.output not in grads:
                continue
            dy = grads.pop(step.output)
            if self._trains_kernel(step):
                self._weight_grads(step, saved, dy, selection.get(step.name), weight_grads)
            kept = saved["tensors"].get(step.output, {})
            for tensor, dx in step.spec.backward(step, dy, kept, context):
                grads[tensor] = grads[tensor] + dx if tensor in grads else dx
        return loss, weight_grads

    def _weight_grads(self, step, saved, dz, indices, weight_grads):
        """dK from the kept input (its selected channels if `indices` is given), and
        the classifier's bias gradient."""
        weight_grads[f"{step.name}/kernel"] = step.spec.kernel_grad(
            step, saved["inputs"][step.name], saved["pads"][step.name], dz, indices,
            saved["input_hw"].get(step.name))
        if step.name == self.classifier and step.params.get("use_bias", True):
            weight_grads[f"{step.name}/bias"] = layer_ops.bias_grad(dz)
