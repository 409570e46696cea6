"""The `tf.Module` whose signatures become the exported model's entry points.

State lives in plain `tf.Variable`s owned by the module (not Keras
variables: those are not initialized by LiteRT's `CALL_ONCE` initializer),
so every signature of the `.tflite` shares it:

- one kernel variable per search-space layer, and the classifier's kernel and
  bias (the only weights that change on the device);
- the sampler state over the flat channel pool: `mask`, `memory`,
  `measured`, `seen`, `norm_sum` (float32 (P,)), `norm_steps`, `max_filled`
  (float32 (1,)), `epoch` (int32 (1,));
- the optimizer's state (`tflite_export.optimizer`): `step` (int32 (1,)),
  `learning_rate_schedule` (float32 (5,)) and, with momentum, one buffer
  per trained weight (`"<weight>_momentum"`).

Every scalar crosses the signature boundary as a rank-1 tensor of length 1,
and every signature has at least one input (Android's `runSignature` refuses
an empty input map): the read-only ones take `unused: int32[1]`.

Example (building the module is what `export_training_model` does):

>>> import keras
>>> import keras_medyate as kmd
>>> from tflite_export import signatures
>>> model = keras.Sequential([keras.Input((8, 8, 3)),
...     keras.layers.Conv2D(4, 3, name="c1"), keras.layers.GlobalAveragePooling2D(),
...     keras.layers.Dense(2, name="head")])
>>> plan = kmd.plan(model, budget=100)
>>> module = signatures.TrainingModule(model, plan, batch_size=2, infer_batch_size=None,
...                                    learning_rate=0.1, epsilon=1e-3, fill="stop")
>>> sorted(module.signatures())[:3]
['get_state', 'get_weights', 'infer']
"""

import numpy as np
import tensorflow as tf

from keras_medyate import channels as channels_lib
from keras_medyate.version import __version__
from tflite_export import graph as graph_lib
from tflite_export import memory_model
from tflite_export import metadata as metadata_lib
from tflite_export import optimizer as optimizer_lib
from tflite_export import sampler
from tflite_export import training_graph


def channel_capacities(pool, budget_units):
    """The fixed length of each layer's channel list: as many channels as the budget admits.

    A selection within the budget never lists more channels of a layer than
    `min(channels, budget // cheapest channel cost)`, so the static lists never
    truncate one.
    """
    capacities = []
    for index, count in enumerate(pool.num_channels):
        start = int(pool.offsets[index])
        cheapest = max(int(np.min(pool.costs[start:start + int(count)])), 1)
        capacities.append(int(max(1, min(int(count), int(budget_units) // cheapest))))
    return capacities


class TrainingModule(tf.Module):
    """Variables and signatures of the on-device training model.

    Args:
        model: the Keras model (its current weights are the initial values).
        plan: the `Plan` (search space, classifier, budget).
        batch_size: int, static batch of `train`.
        infer_batch_size: int or None (dynamic batch) for `infer`.
        learning_rate: float, the learning rate of plain SGD (used when
            `optimizer` is None).
        epsilon: float, MeDyate's relative weight floor.
        fill: `"stop"`, the budget fill mode.
        kernel_gradients: `"selected"` (`train` takes the selected channels
            of every search-space layer and computes only their kernel
            gradients) or `"dense"` (every channel's gradient, applied to the
            selected ones).
        optimizer: a `tflite_export.optimizer.OptimizerSpec`, or a Keras
            optimizer (read with `OptimizerSpec.from_keras`), or None for
            plain SGD at `learning_rate`.
        static_shapes: bool. With selected kernel gradients, `train`'s channel
            lists have a fixed length per layer (`channel_capacities`: as many
            channels of the layer as the budget admits), padded with -1;
            otherwise their length is dynamic.
    """

    def __init__(self, model, plan, batch_size, infer_batch_size, learning_rate, epsilon, fill,
                 kernel_gradients="selected", optimizer=None, static_shapes=False):
        super().__init__(name="medyate_training")
        layer_graph = graph_lib.build_graph(model)
        pool = plan.pool
        self._graph = layer_graph
        self._pool = pool
        self._budget = int(plan.budget_units)
        self._epsilon = float(epsilon)
        self._batch = int(batch_size)
        self._selected_gradients = kernel_gradients == "selected"
        self._infer_batch = None if infer_batch_size is None else int(infer_batch_size)
        self._costs = np.asarray(pool.costs, np.int32)
        self._capacities = (channel_capacities(pool, self._budget)
                            if static_shapes and self._selected_gradients else None)
        self._axes = {name: plan.layer_info(name).channel_axis for name in plan.layers}
        self._classifier = plan.classifier
        head = layer_graph.step_of_layer(plan.classifier)
        if layer_graph.logits_layer() != plan.classifier:
            raise graph_lib.UnsupportedLayerError(
                f"The classifier {plan.classifier!r} must produce the logits (its output, or "
                "the input of the final softmax), but other layers follow it. Make it the "
                "last layer or pass `classifier=` to `kmd.plan`."
            )

        weight_keys = [f"{name}/kernel" for name in plan.layers] + [f"{plan.classifier}/kernel"]
        if head.params.get("use_bias", True):
            weight_keys.append(f"{plan.classifier}/bias")
        self.weights = {}
        shapes = []
        for key in weight_keys:
            name, part = key.rsplit("/", 1)
            layer = layer_graph.step_of_layer(name).layer
            value = np.asarray(getattr(layer, part).numpy(), np.float32)
            self.weights[key] = tf.Variable(value, name=metadata_lib.tensor_name(key))
            axis = self._axes.get(name) if part == "kernel" else None
            shapes.append((key, value.shape, axis))
        self._weight_keys = weight_keys
        keras_optimizer = None
        if optimizer is None:
            optimizer = optimizer_lib.OptimizerSpec.plain_sgd(learning_rate)
        elif not isinstance(optimizer, optimizer_lib.OptimizerSpec):
            keras_optimizer = optimizer
            sources = {key: getattr(layer_graph.step_of_layer(key.rsplit("/", 1)[0]).layer,
                                    key.rsplit("/", 1)[1]) for key in weight_keys}
            optimizer = optimizer_lib.OptimizerSpec.from_keras(optimizer, sources)
        self._optimizer = optimizer
        self._optimizer_tensors = metadata_lib.optimizer_state(shapes, optimizer.momentum > 0)
        self.optimizer_state = {
            "step": tf.Variable(np.array([optimizer.step], np.int32), name="step"),
            "learning_rate_schedule": tf.Variable(np.asarray(optimizer.schedule, np.float32),
                                                  name="learning_rate_schedule"),
        }
        self.momentum = {}
        if optimizer.momentum > 0:
            for key, shape, _ in shapes:
                name, part = key.rsplit("/", 1)
                initial = optimizer.initial_momentum(
                    keras_optimizer, key, getattr(layer_graph.step_of_layer(name).layer, part),
                    shape)
                variable = tf.Variable(initial, name=metadata_lib.momentum_name(key))
                self.momentum[key] = variable
                self.optimizer_state[metadata_lib.momentum_name(key)] = variable
        self._trainer = training_graph.TrainingGraph(
            layer_graph, training_graph.WeightSource(layer_graph, self.weights),
            trained=plan.layers, classifier=plan.classifier)

        weight_elements = sum(int(np.prod(v.shape)) for v in self.weights.values())
        memory = memory_model.build(
            self._trainer, pool, batch_size, kernel_gradients, weight_elements=weight_elements,
            momentum_elements=weight_elements if self.momentum else 0,
            capacities=self._capacities)
        size = pool.size
        self.state = {}
        for name, dtype, kind in metadata_lib.STATE_TENSORS:
            shape = (size,) if kind == "pool" else (1,)
            self.state[name] = tf.Variable(np.zeros(shape, dtype), name=name)
        meta = metadata_lib.build(
            model_name=model.name, input_shape=layer_graph.input_shape,
            num_classes=layer_graph.num_classes, output_softmax=layer_graph.output_softmax,
            batch_size=batch_size, infer_batch_size=infer_batch_size,
            learning_rate=optimizer.schedule[3], epsilon=epsilon, fill=fill, plan=plan,
            weight_shapes=shapes, version=__version__, kernel_gradients=kernel_gradients,
            memory=memory, optimizer=optimizer.to_config(),
            optimizer_tensors=self._optimizer_tensors, capacities=self._capacities)
        # Stored encoded: tf.Module would wrap a dict attribute for tracking.
        self._meta_bytes = metadata_lib.encode(meta)

    @property
    def meta(self):
        """The metadata dict (a fresh copy)."""
        return metadata_lib.decode(self._meta_bytes, "the module")

    # --- signature builders -------------------------------------------------------

    def _input_spec(self, batch):
        return tf.TensorSpec([batch, *self._graph.input_shape], tf.float32, name="x")

    def signatures(self):
        """dict name → concrete function, one per entry of `metadata.SIGNATURES`."""
        unused = tf.TensorSpec([1], tf.int32, name="unused")
        size = self._pool.size
        weight_specs = [tf.TensorSpec(self.weights[k].shape, tf.float32,
                                      name=metadata_lib.tensor_name(k))
                        for k in self._weight_keys]
        state_specs = [tf.TensorSpec(v.shape, v.dtype, name=n) for n, v in self._state_items()]
        functions = {
            "infer": (self._infer, [self._input_spec(self._infer_batch)]),
            "train": (self._train, [self._input_spec(self._batch),
                                    tf.TensorSpec([self._batch], tf.int32, name="y"),
                                    *self._channel_specs()]),
            "resample": (self._resample, [tf.TensorSpec([1], tf.int32, name="seed")]),
            "set_mask": (self._set_mask, [tf.TensorSpec([size], tf.float32, name="mask")]),
            "get_weights": (self._get_weights, [unused]),
            "set_weights": (self._set_weights, weight_specs),
            "get_state": (self._get_state, [unused]),
            "set_state": (self._set_state, state_specs),
            "set_learning_rate": (self._set_learning_rate,
                                  [tf.TensorSpec([1], tf.float32, name="learning_rate")]),
            "set_schedule": (self._set_schedule,
                             [tf.TensorSpec([len(optimizer_lib.SCHEDULE_FIELDS)], tf.float32,
                                            name="schedule"),
                              tf.TensorSpec([1], tf.int32, name="step")]),
            "metadata": (self._metadata, [unused]),
        }
        assert tuple(sorted(functions)) == tuple(sorted(metadata_lib.SIGNATURES))
        return {name: tf.function(fn, input_signature=specs).get_concrete_function()
                for name, (fn, specs) in functions.items()}

    def _channel_specs(self):
        """The `train` inputs listing the selected channels of each layer."""
        if not self._selected_gradients:
            return []
        capacities = self._capacities or [None] * len(self._pool.layer_names)
        return [tf.TensorSpec([capacity], tf.int32, name=name) for name, capacity in zip(
            metadata_lib.channel_input_names(self._pool.layer_names), capacities)]

    # --- the signatures -----------------------------------------------------------

    def _infer(self, x):
        logits = self._trainer.logits(x)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    def _train(self, x, y, *channel_lists):
        weights = self._trainer.weights.read()
        schedule = tf.convert_to_tensor(self.optimizer_state["learning_rate_schedule"])
        step = tf.convert_to_tensor(self.optimizer_state["step"])
        rate = optimizer_lib.learning_rate(schedule, tf.cast(step[0], tf.float32))
        mask = tf.convert_to_tensor(self.state["mask"])
        selection, indices, valid, selected = {}, {}, {}, {}
        for index, name in enumerate(self._pool.layer_names):
            start = int(self._pool.offsets[index])
            count = int(self._pool.num_channels[index])
            layer_mask = mask[start:start + count]
            selected[name] = tf.greater(layer_mask, 0.0)
            if not self._selected_gradients:
                indices[name] = tf.range(count, dtype=tf.int32)
                valid[name] = selected[name]  # measure the trained channels only
                continue
            given = channel_lists[index]
            if self._capacities is not None:
                # A fixed-length list padded with -1: a padding slot reads
                # channel 0 and gets a zero update and no norm.
                listed = tf.greater_equal(given, 0)
                selection[name] = tf.maximum(given, 0)
                indices[name] = selection[name]
                valid[name] = tf.logical_and(
                    listed, tf.greater(tf.gather(layer_mask, selection[name]), 0.0))
                continue
            # One placeholder channel (index 0, zero update) keeps every
            # shape non-empty: XNNPACK cannot reshape to 0 channels.
            selection[name] = tf.concat([given, tf.zeros([1], tf.int32)], axis=0)
            indices[name] = selection[name]
            # A listed channel the mask does not select gets no update and no norm.
            valid[name] = tf.concat([tf.greater(tf.gather(layer_mask, given), 0.0),
                                     tf.zeros([1], tf.bool)], axis=0)
        loss, grads = self._trainer.gradients(x, y, weights, selection)
        norms, gradients, trained = [], {}, {}
        for name in self._pool.layer_names:
            key = f"{name}/kernel"
            axis = self._axes[name]
            kernel = weights[key]
            rank = len(kernel.shape)
            # Selected channels first: (k + 1, ...) with the placeholder zeroed.
            rows = tf.transpose(grads[key], [axis] + [a for a in range(rank) if a != axis])
            keep = tf.reshape(valid[name], [-1] + [1] * (rank - 1))
            rows = tf.where(keep, rows, tf.zeros_like(rows))
            rows_at = tf.reshape(indices[name], [-1, 1])
            count = int(kernel.shape[axis])
            norms.append(tf.scatter_nd(rows_at, channels_lib.channel_norms(rows, 0, tf),
                                       [count]))
            moved = [int(kernel.shape[axis])] + [int(kernel.shape[a]) for a in range(rank)
                                                 if a != axis]
            gradient = tf.scatter_nd(rows_at, rows, moved)
            back = list(range(1, rank))
            back.insert(axis, 0)
            # The kernel's gradient as `SubnetworkModel` hands it to the
            # optimizer: zero outside the selected input channels.
            gradients[key] = tf.transpose(gradient, back)
            shape = [1] * rank
            shape[axis] = count
            trained[key] = tf.reshape(selected[name], shape)
        for key in self._weight_keys[len(self._pool.layer_names):]:
            gradients[key] = grads[key]
        # A non-finite loss or gradient writes nothing (the caller sees the
        # loss): x * 0 is 0 for every finite x and NaN otherwise (builtin ops
        # have no IsFinite).
        poison = tf.add_n([tf.reduce_sum(g * 0.0) for g in gradients.values()]) + loss * 0.0
        finite = tf.equal(poison, 0.0)
        gradients = optimizer_lib.clip(self._optimizer, gradients)
        # With no channel selected, `SubnetworkModel` steps the head alone: the
        # kernels' momentum buffers are not touched.
        any_selected = tf.logical_and(tf.greater(tf.reduce_max(mask), 0.0), finite)
        for key in self._weight_keys:
            momentum = self.momentum.get(key)
            old_momentum = None if momentum is None else tf.convert_to_tensor(momentum)
            value, new_momentum = optimizer_lib.update(
                self._optimizer, key, weights[key], gradients[key], rate, old_momentum)
            if key in trained:
                # Frozen slices are copied, never recomputed: bit-identical.
                value = tf.where(tf.logical_and(trained[key], finite), value, weights[key])
                if new_momentum is not None:
                    new_momentum = tf.where(any_selected, new_momentum, old_momentum)
            else:
                value = tf.where(finite, value, weights[key])
                if new_momentum is not None:
                    new_momentum = tf.where(finite, new_momentum, old_momentum)
            self.weights[key].assign(value)
            if new_momentum is not None:
                momentum.assign(new_momentum)
        done = tf.cast(finite, tf.int32)
        self.optimizer_state["step"].assign(step + done)
        self.state["norm_sum"].assign_add(
            tf.where(finite, tf.concat(norms, axis=0), tf.zeros([self._pool.size], tf.float32)))
        self.state["norm_steps"].assign_add(tf.reshape(tf.cast(done, tf.float32), [1]))
        return {"loss": tf.reshape(loss, [1])}

    def _resample(self, seed):
        current = {name: tf.convert_to_tensor(v) for name, v in self.state.items()}
        new, selected, cost = sampler.resample(current, seed, self._costs, self._budget,
                                               self._epsilon)
        for name, value in new.items():
            self.state[name].assign(value)
        return {"mask": selected, "cost_units": cost,
                "num_selected": tf.reshape(tf.cast(tf.reduce_sum(selected), tf.int32), [1]),
                "epoch": new["epoch"]}

    def _set_mask(self, mask):
        selected = tf.cast(tf.greater(mask, 0.5), tf.float32)
        self.state["mask"].assign(selected)
        self.state["seen"].assign(tf.maximum(tf.convert_to_tensor(self.state["seen"]), selected))
        costs = tf.constant(self._costs, tf.int32)
        cost = tf.reduce_sum(tf.where(selected > 0, costs, tf.zeros_like(costs)), keepdims=True)
        return {"cost_units": cost,
                "num_selected": tf.reshape(tf.cast(tf.reduce_sum(selected), tf.int32), [1])}

    def _get_weights(self, unused):
        del unused
        return {metadata_lib.tensor_name(k): tf.convert_to_tensor(self.weights[k])
                for k in self._weight_keys}

    def _set_weights(self, *tensors):
        for key, value in zip(self._weight_keys, tensors):
            self.weights[key].assign(value)
        return {"num_tensors": tf.constant([len(tensors)], tf.int32)}

    def _state_items(self):
        """(name, variable) of every state tensor, in `get_state`/`set_state` order."""
        items = [(name, self.state[name]) for name, _, _ in metadata_lib.STATE_TENSORS]
        return items + [(name, self.optimizer_state[name])
                        for name, _, _ in self._optimizer_tensors]

    def _get_state(self, unused):
        del unused
        return {name: tf.convert_to_tensor(variable) for name, variable in self._state_items()}

    def _set_state(self, *tensors):
        for (_, variable), value in zip(self._state_items(), tensors):
            variable.assign(value)
        return {"num_tensors": tf.constant([len(tensors)], tf.int32)}

    def _set_learning_rate(self, learning_rate):
        # A constant rate: the schedule with alpha = 1 (`optimizer.constant_schedule`).
        rate = learning_rate[0]
        one = tf.ones([], tf.float32)
        self.optimizer_state["learning_rate_schedule"].assign(
            tf.stack([rate, one, one, rate, tf.zeros([], tf.float32)]))
        return {"learning_rate": tf.reshape(rate, [1])}

    def _set_schedule(self, schedule, step):
        self.optimizer_state["learning_rate_schedule"].assign(schedule)
        self.optimizer_state["step"].assign(step)
        rate = optimizer_lib.learning_rate(schedule, tf.cast(step[0], tf.float32))
        return {"learning_rate": tf.reshape(rate, [1])}

    def _metadata(self, unused):
        del unused
        return {"json": tf.constant(self._meta_bytes, tf.uint8)}
