"""The forward pass, the cross-entropy and the hand-written backward pass.

`TrainingGraph` evaluates a `graph.LayerGraph` with the builtin-convertible
ops of `layer_ops`. Weights come from a `WeightSource`: the kernels of the
search-space layers and the classifier's kernel and bias are resource
variables (read and updated on the device), every other weight is a constant
of the model file.

The backward pass only visits steps whose output depends on a trained weight
(`requires_grad`): everything below the earliest search-space layer has no
gradient op at all, and that layer computes its kernel gradient but no input
gradient. With a `selection` (input-channel indices per search-space layer,
as `train` passes them), the forward pass copies only the selected channels
of each search-space layer's input (`GATHER`, right where the input is
produced) and the backward pass computes the kernel gradient of those
channels only. What the backward pass reads from the forward pass is then:
the selected input channels, the ReLU masks (bool) of the backprop region,
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

from tflite_export import layer_ops

PARAMETRIC_KINDS = ("conv", "depthwise", "dense")


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
            if step.kind not in PARAMETRIC_KINDS:
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
        parametric = {s.name for s in graph.steps if s.kind in PARAMETRIC_KINDS}
        missing = [n for n in [*self.trained, classifier] if n not in parametric]
        if missing:
            raise ValueError(
                f"Layers {missing} are not Conv2D/DepthwiseConv2D/Dense steps of the "
                "exported graph; was the plan made for this model?"
            )
        self.requires_grad = self._requires_grad()

    def _requires_grad(self):
        trained = set(self.trained) | {self.classifier}
        needs = set()
        for step in self.graph.steps:
            if (step.kind in PARAMETRIC_KINDS and step.name in trained) or any(
                    t in needs for t in step.inputs):
                needs.add(step.output)
        return needs

    def _trains_kernel(self, step):
        return step.kind in PARAMETRIC_KINDS and (
            step.name in self.trained or step.name == self.classifier)

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
            (values dict tensor id → tensor, saved dict): `saved["masks"]`
            maps tensor id → bool mask, `saved["inputs"]` layer name → the
            (selected channels of the) input of a trained layer,
            `saved["tensors"]` a step's output id → what its backward pass
            reads (see `saved_for_backward`).
        """
        weights = self.weights.read() if weights is None else weights
        selection = selection or {}
        values = {self.graph.input_id: x}
        saved = {"masks": {}, "inputs": {}, "pads": {}, "input_hw": {}, "tensors": {}}
        for step in self.graph.steps:
            inputs = [values[t] for t in step.inputs]
            if record and self._trains_kernel(step):
                source, pads = self.kept_input(step)
                kept = values[source]
                copied = False
                if step.name in selection:
                    kept = layer_ops.select_channels(kept, selection[step.name])
                    copied = True
                if step.kind == "conv":
                    # Kept in the matmul layout of dK (B·H·W, C): a RESHAPE is
                    # a copy in LiteRT, made once here instead of keeping both.
                    batch, height, width = (int(d) for d in kept.shape[:3])
                    saved["input_hw"][step.name] = (height, width)
                    kept = tf.reshape(kept, [batch * height * width, -1])
                    copied = True
                if copied:
                    # The layer reads its input only after the copy exists, so
                    # the copy is made here, not after the whole forward pass
                    # (which would keep every full input alive until then).
                    inputs = [layer_ops.after(inputs[0], kept), *inputs[1:]]
                saved["inputs"][step.name] = kept
                saved["pads"][step.name] = pads
            values[step.output] = self._step_forward(step, inputs, weights)
            if record and step.kind == "relu" and step.output in self.requires_grad:
                saved["masks"][step.output] = layer_ops.relu_mask(values[step.output],
                                                                  step.params["max_value"])
            elif record and step.output in self.requires_grad:
                kept = {name: values[tensor]
                        for name, (tensor, _) in self.saved_for_backward(step).items()}
                if step.kind == "activation":
                    kept["saved"] = layer_ops.activation_saved(
                        inputs[0], values[step.output], step.params["function"])
                if kept:
                    saved["tensors"][step.output] = kept
        return values, saved

    def saved_for_backward(self, step):
        """What the backward pass of a non-parametric step reads: dict name →
        (tensor id, bytes per element); empty if nothing. An activation's
        `saved` (`layer_ops.ACTIVATION_SAVES`: a bool mask of its input, its
        input or its output), a multiply's `other<i>` (the operand the gradient
        of input i is multiplied by, kept only if input i needs a gradient), a
        max pooling's `input` and `output`. `forward` keeps these and
        `memory_model` counts them (a tensor named twice, as in `x * x`, once)."""
        if step.kind == "activation":
            saves = layer_ops.ACTIVATION_SAVES[step.params["function"]]
            tensor = step.output if saves == "output" else step.inputs[0]
            return {"saved": (tensor, 1 if saves == "input_mask" else 4)}
        if step.kind == "multiply":
            return {f"other{i}": (step.inputs[1 - i], 4) for i in range(2)
                    if step.inputs[i] in self.requires_grad}
        if step.kind == "max_pool":
            return {"input": (step.inputs[0], 4), "output": (step.output, 4)}
        return {}

    def kept_input(self, step):
        """(tensor id, pads) of what a trained step keeps for its kernel gradient.

        An explicit `ZeroPadding2D` in front of a conv is folded into the
        conv's padding: the unpadded tensor is kept, smaller than the padded
        one, which is freed after the conv. (`memory_model` counts the same.)
        """
        pads = step.params.get("pads")
        producer = self.graph.producer(step.inputs[0])
        if step.kind in ("conv", "depthwise") and producer is not None and producer.kind == "pad":
            (top, bottom), (left, right) = producer.params["pads"]
            (s_top, s_bottom), (s_left, s_right) = pads
            return producer.inputs[0], ((top + s_top, bottom + s_bottom),
                                        (left + s_left, right + s_right))
        return step.inputs[0], pads

    def parametric_step(self, name):
        """The conv/depthwise/dense step of layer `name`."""
        return next(s for s in self.graph.steps if s.name == name and s.kind in PARAMETRIC_KINDS)

    def logits(self, x, weights=None):
        """The logits for an input batch."""
        values, _ = self.forward(x, weights)
        return values[self.graph.logits_id]

    def _step_forward(self, step, inputs, weights):
        kind, params = step.kind, step.params
        x = inputs[0]
        if kind == "conv":
            return layer_ops.conv_forward(x, weights.get(f"{step.name}/kernel"),
                                          weights.get(f"{step.name}/bias"),
                                          params["strides"], params["padding"])
        if kind == "depthwise":
            return layer_ops.depthwise_forward(x, weights.get(f"{step.name}/kernel"),
                                               weights.get(f"{step.name}/bias"),
                                               params["strides"], params["padding"])
        if kind == "dense":
            return layer_ops.dense_forward(x, weights.get(f"{step.name}/kernel"),
                                           weights.get(f"{step.name}/bias"))
        if kind == "pad":
            return layer_ops.pad_nhwc(x, params["pads"])
        if kind == "add":
            total = inputs[0]
            for other in inputs[1:]:
                total = total + other
            return total
        if kind == "relu":
            return layer_ops.relu_forward(x, params["max_value"])
        if kind == "affine":
            if params["scale"] is not None:
                x = x * tf.constant(params["scale"])
            if params["shift"] is not None:
                x = x + tf.constant(params["shift"])
            return x
        if kind == "multiply":
            return inputs[0] * inputs[1]
        if kind == "activation":
            return layer_ops.activation_forward(x, params["function"])
        if kind in ("avg_pool", "max_pool"):
            return layer_ops.pool_forward(x, kind, params["pool_size"], params["strides"],
                                          params["padding"])
        if kind == "gap":
            return tf.reduce_mean(x, axis=[1, 2], keepdims=params["keepdims"])
        if kind == "reshape":
            target = self.graph.shapes[step.output][1:]
            return tf.reshape(x, [-1, *[int(d) for d in target]])
        if kind == "identity":
            return x
        raise AssertionError(f"unknown step kind {kind!r}")

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
        batch = int(x.shape[0])
        grads = {self.graph.logits_id: dlogits}
        weight_grads = {}
        for step in reversed(self.graph.steps):
            if step.output not in self.requires_grad or step.output not in grads:
                continue
            dy = grads.pop(step.output)
            for tensor, dx in self._step_backward(step, saved, dy, batch, weights,
                                                  weight_grads, selection.get(step.name)):
                grads[tensor] = grads[tensor] + dx if tensor in grads else dx
        return loss, weight_grads

    def _shape(self, tensor, batch):
        return (batch, *[int(d) for d in self.graph.shapes[tensor][1:]])

    def _step_backward(self, step, saved, dy, batch, weights, weight_grads, indices):
        """Yields (input tensor id, gradient) for inputs that require a gradient."""
        kind, params = step.kind, step.params
        src = step.inputs[0]
        wants_input = src in self.requires_grad
        if kind in PARAMETRIC_KINDS:
            kernel = weights.get(f"{step.name}/kernel")
            if self._trains_kernel(step):
                weight_grads[f"{step.name}/kernel"] = self._kernel_grad(
                    step, saved, dy, indices)
                if step.name == self.classifier and params.get("use_bias", True):
                    weight_grads[f"{step.name}/bias"] = layer_ops.bias_grad(dy)
            if wants_input:
                yield src, self._input_grad(step, dy, kernel, self._shape(src, batch))
            return
        if not wants_input and kind not in ("add", "multiply"):
            return
        kept = saved["tensors"].get(step.output, {})
        if kind == "relu":
            yield src, tf.where(saved["masks"][step.output], dy, tf.zeros_like(dy))
        elif kind == "activation":
            yield src, layer_ops.activation_input_grad(dy, kept["saved"], params["function"])
        elif kind == "multiply":
            for i, tensor in enumerate(step.inputs):
                if tensor in self.requires_grad:
                    yield tensor, layer_ops.multiply_input_grad(dy, kept[f"other{i}"],
                                                                self._shape(tensor, batch))
        elif kind == "avg_pool":
            yield src, layer_ops.avg_pool_input_grad(dy, self._shape(src, batch),
                                                     params["pool_size"], params["strides"],
                                                     params["pads"])
        elif kind == "max_pool":
            yield src, layer_ops.max_pool_input_grad(kept["input"], kept["output"], dy,
                                                     params["pool_size"], params["strides"],
                                                     params["pads"])
        elif kind == "affine":
            yield src, dy if params["scale"] is None else dy * tf.constant(params["scale"])
        elif kind == "pad":
            shape = self._shape(src, batch)
            yield src, layer_ops.crop_nhwc(dy, params["pads"], shape[1], shape[2])
        elif kind == "gap":
            yield src, layer_ops.gap_input_grad(dy, self._shape(src, batch))
        elif kind == "reshape":
            yield src, tf.reshape(dy, self._shape(src, batch))
        elif kind == "identity":
            yield src, dy
        elif kind == "add":
            for tensor in step.inputs:
                if tensor in self.requires_grad:
                    yield tensor, dy
        else:
            raise AssertionError(f"unknown step kind {kind!r}")

    def _kernel_grad(self, step, saved, dz, indices):
        """dK from the kept input (its selected channels if `indices` is given)."""
        params = step.params
        x, pads = saved["inputs"][step.name], saved["pads"][step.name]
        if step.kind == "conv":
            return layer_ops.conv_kernel_grad(x, dz, params["kernel_size"], params["strides"],
                                              pads, input_hw=saved["input_hw"][step.name])
        if step.kind == "depthwise":
            if indices is not None:
                dz = layer_ops.select_channels(dz, indices, params["depth_multiplier"])
            return layer_ops.depthwise_kernel_grad(x, dz, params["kernel_size"],
                                                   params["strides"], pads,
                                                   params["depth_multiplier"])
        return layer_ops.dense_kernel_grad(x, dz)

    def _input_grad(self, step, dz, kernel, input_shape):
        params = step.params
        if step.kind == "conv":
            return layer_ops.conv_input_grad(dz, kernel, input_shape, params["strides"],
                                             params["pads"])
        if step.kind == "depthwise":
            return layer_ops.depthwise_input_grad(dz, kernel, input_shape, params["strides"],
                                                  params["pads"])
        return layer_ops.dense_input_grad(dz, kernel, input_shape)
