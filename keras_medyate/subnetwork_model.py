"""`SubnetworkModel`: a Keras model whose `train_step` updates only selected channels.

The wrapper shares its layers (and therefore its weights) with the user's
model: what it trains is in the original model afterwards. Each step:

1. forward pass (BatchNormalization in inference mode unless
   `batchnorm="train"`);
2. the tape is asked only for the search-space layers and the classifier's
   weights, so TensorFlow prunes the backward pass below the earliest
   search-space layer (with an empty selection: below the classifier);
3. with selected kernel gradients (the default) a layer's kernel gradient is
   computed for its selected input channels only, from those channels of its
   input (gathered in the forward pass) and the gradient at its output
   (`keras_medyate.kernel_gradients`); the other channels' gradient is zero
   and their input is not kept for the backward pass. Layers that cannot
   (a fused activation, grouped or dilated convolutions, layers inside a
   nested model), dense kernel gradients and an XLA-compiled step
   (`jit_compile`) use TensorFlow's gradient of the whole kernel;
4. each search-space kernel gradient is multiplied by its input-channel mask,
   a non-trainable variable (a new selection is an `assign`, never a
   retrace);
5. if the batch's inputs, loss or gradients hold a NaN/inf, the update is
   skipped (no weight, optimizer slot or norm is written) and every later
   step of the `fit` is skipped too; `fit` then stops with a
   `NonFiniteTrainingError` naming the epoch and batch (raised by a
   `DivergenceGuard`, which `fit` adds when its callbacks hold none). Under a
   `LossScaleOptimizer` (mixed precision) non-finite gradients are its own
   signal to lower the loss scale: only inputs and loss are checked then;
6. the optimizer applies the update, then the non-selected slices are put
   back from a copy taken before the step: they stay bit-identical under
   every optimizer and option (momentum, Adam, weight decay — AdamW's
   decoupled one or `weight_decay=` of any optimizer —, gradient
   accumulation, and EMA: `use_ema=True` averages a slice only over the steps
   that train it; the average of a frozen slice is kept equal to the slice,
   so `ema_overwrite_frequency` and the write-back at the end of `fit` leave
   it bit-identical);
7. the per-input-channel gradient norms are accumulated in variables that the
   next epoch's draw reads (`selection_state.resample`; with selected kernel
   gradients, the norms of channels that did not train are 0: a resampler
   whose strategy reads them, an oracle, switches the model to dense kernel
   gradients).

A kernel regularizer (`kernel_regularizer=`) is honoured by both kernel
gradient paths: the selected path adds the penalty's gradient on the selected
channels (`kernel_gradients.regularizer_gradient`).

The selection lives in one object the model owns, `trainer.selection_state`
(`keras_medyate.selection.SelectionState`): the masks, the norm accumulators
and the state that must survive a restart (the explored set, the epoch
counter, and whatever state the strategy's selector declares,
`ChannelSelector.initial_state`), all non-trainable variables of the model.
`ChannelResampler` applies each epoch's draw to it in one call. The variables
are saved and restored with the weights by `keras.callbacks.BackupAndRestore`
and in `.keras` files.

Example:

>>> import keras, numpy as np
>>> import keras_medyate as kmd
>>> model = keras.Sequential([keras.Input((8, 8, 3)),
...     keras.layers.Conv2D(8, 3, name="c1"), keras.layers.Conv2D(8, 3, name="c2"),
...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="head")])
>>> plan = kmd.plan(model, budget=200)
>>> trainer = kmd.SubnetworkModel(model, plan)
>>> trainer.compile(optimizer=keras.optimizers.SGD(0.1),
...                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
>>> x, y = np.random.rand(16, 8, 8, 3), np.arange(16) % 2
>>> history = trainer.fit(x, y, epochs=2, verbose=0,
...                       callbacks=[kmd.ChannelResampler(plan, seed=0)])
"""

import math
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_medyate import channels as channels_lib
from keras_medyate import divergence
from keras_medyate import kernel_gradients as kernel_gradients_lib
from keras_medyate import planning
from keras_medyate import selection as selection_lib
from keras_medyate.data.batches import as_dataset

BATCHNORM_MODES = ("frozen", "train")
KERNEL_GRADIENTS = ("auto", "selected", "dense")
#: Position of `callbacks` among `keras.Model.fit`'s positional arguments.
FIT_CALLBACKS_POSITION = 5


@keras.saving.register_keras_serializable(package="keras_medyate")
class SubnetworkModel(keras.Model):
    """Trains only the selected input channels of a plan's layers.

    Args:
        model: the user's built functional or Sequential `keras.Model`.
            Its layers are shared: trained weights end up in `model`.
        plan: the `Plan` made for `model` by `kmd.plan`.
        batchnorm: `"frozen"` (default: BatchNormalization layers are set to
            `trainable=False`, which in Keras 3 runs them in inference mode;
            this changes `model`'s layers) or `"train"` (leave them as they
            are; their moving statistics then update on every step, but their
            gamma/beta are never trained).
        kernel_gradients: `"selected"` (kernel gradients of the selected
            channels only, where the layer allows it; the norms of the other
            channels read 0), `"dense"` (every channel's gradient and norm)
            or `"auto"` (default: selected, unless the attached
            `ChannelResampler`'s strategy reads the norms of channels it did
            not train, as the oracles do: then dense).
        name: str, the model name.
        selector_state: dict name → `(shape, dtype)` of selector state to
            hold from the start (what `selection_state.hold` recorded; the
            config of a saved model carries it). Defaults to none: the
            `ChannelResampler` adds its selector's state when it is attached
            (`fit` attaches it before `BackupAndRestore` restores anything).
            To `load_weights` saved by a trained model into a new one, pass
            `resampler.selector.state_spec()` here first.

    Attributes:
        plan: the plan.
        selection_state: `keras_medyate.selection.SelectionState`, the
            selection's variables and its per-epoch update (`resample`); also
            a mapping name → non-trainable variable: `channel_seen` (the
            explored set) and the state of the selectors held so far.
        masks: dict layer name → float32 variable over its input channels
            (`selection_state.masks`).

    Logs (visible in the progress bar): `budget_used` (fraction of the budget
    taken by the current selection; of the whole search space for full
    fine-tuning, which ignores the budget), `channels_selected` (count) and
    `explored` (fraction of the search space trained at least once).
    """

    def __init__(self, model, plan, batchnorm="frozen", name=None, selector_state=None,
                 kernel_gradients="auto"):
        if batchnorm not in BATCHNORM_MODES:
            raise ValueError(f"`batchnorm` must be one of {BATCHNORM_MODES}, got {batchnorm!r}.")
        if kernel_gradients not in KERNEL_GRADIENTS:
            raise ValueError(f"`kernel_gradients` must be one of {KERNEL_GRADIENTS}, "
                             f"got {kernel_gradients!r}.")
        infos = plan.check_model(model, purpose="train")
        if batchnorm == "frozen":
            freeze_batchnorm(model)
        super().__init__(inputs=model.inputs, outputs=model.outputs,
                         name=name or f"{model.name}_subnetwork")
        self.plan = plan
        self.batchnorm = batchnorm
        self.kernel_gradients = kernel_gradients
        by_name = {info.name: info for info in infos}
        self._space = [by_name[name] for name in plan.layers]
        self._head = by_name[plan.classifier]
        self.selection_state = selection_lib.SelectionState(
            plan, self._state_variable, on_head_only_change=self._retrace)
        self.selection_state.hold(selector_state or {})
        self._measure_function = None
        self._taps = _selected_gradient_taps(model, self._space, kernel_gradients)
        self._warned_no_resampler = False
        # What the last step found non-finite (`divergence.NONFINITE_CAUSES`; 0:
        # nothing). A plain TF variable, not a Keras weight: it is neither saved
        # nor restored with the model (a backup never resumes a stopped run).
        self._nonfinite = tf.Variable(
            0, dtype=tf.int32, trainable=False, name="nonfinite_status",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def get_config(self):
        """The wrapped model, the plan and the options (for `.keras` saving)."""
        model = keras.Model(self.inputs, self.outputs, name=self.name.removesuffix("_subnetwork"))
        return {
            "model": keras.saving.serialize_keras_object(model),
            "plan": self.plan.to_config(),
            "batchnorm": self.batchnorm,
            "kernel_gradients": self.kernel_gradients,
            "name": self.name,
            "selector_state": {name: {"shape": list(shape), "dtype": dtype} for name, (shape, dtype)
                               in self.selection_state.selector_spec.items()},
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        model = keras.saving.deserialize_keras_object(config["model"],
                                                      custom_objects=custom_objects)
        plan = planning.Plan.from_config(config["plan"], model=model)
        selector_state = {name: (tuple(spec["shape"]), spec["dtype"])
                          for name, spec in config.get("selector_state", {}).items()}
        return cls(model, plan, batchnorm=config["batchnorm"], name=config["name"],
                   selector_state=selector_state,
                   kernel_gradients=config.get("kernel_gradients", "auto"))

    def _state_variable(self, name, shape, value=0.0, dtype="float32"):
        return self.add_weight(
            name=name, shape=shape, dtype=dtype, trainable=False,
            initializer="zeros" if value == 0 else keras.initializers.Constant(value),
        )

    def _retrace(self):
        """Traces the training step again (the selection turned empty, or back)."""
        if getattr(self, "train_function", None) is not None:
            self.make_train_function(force=True)

    @property
    def masks(self):
        return self.selection_state.masks

    @property
    def _norm_sums(self):
        # Kept for tests/helpers.py; the accumulators are `selection_state.norm_sums`.
        return self.selection_state.norm_sums

    # The variables this model updates: the search-space kernels and the
    # classifier. Keras builds optimizer slots for these only.
    @property
    def trainable_weights(self):
        if not hasattr(self, "_space"):
            return super().trainable_weights
        return [info.kernel for info in self._space] + self._head_weights()

    @property
    def trainable_variables(self):
        return self.trainable_weights

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, with the checks of this model.

        Adds `DivergenceGuard(factor=math.inf)` to the callbacks unless they
        hold a `DivergenceGuard`: a batch whose inputs, loss or gradients are
        NaN/inf then stops `fit` with `NonFiniteTrainingError` (its update was
        skipped). Warns once when the callbacks hold no `ChannelResampler` and
        no selection was set with `set_selection`: the step would train every
        channel of the search space, ignoring the budget.

        Args:
            *args: `keras.Model.fit`'s arguments.
            **kwargs: `keras.Model.fit`'s keyword arguments.

        Returns:
            The `History` of `keras.Model.fit`.

        Raises:
            NonFiniteTrainingError: a batch's inputs, loss or gradients held a
                NaN/inf (the weights are those from before that batch).
        """
        args = list(args)
        positional = len(args) > FIT_CALLBACKS_POSITION  # `callbacks` given by position
        callbacks = args[FIT_CALLBACKS_POSITION] if positional else kwargs.get("callbacks")
        if isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks = callbacks.callbacks
        callbacks = list(callbacks) if callbacks is not None else []
        # A callback that writes the selection each epoch declares it with
        # `writes_selection = True` (`ChannelResampler` does; the resampler
        # module imports this one, not the other way round).
        if (not any(getattr(c, "writes_selection", False) for c in callbacks)
                and not self.selection_state.written and not self._warned_no_resampler):
            self._warned_no_resampler = True
            warnings.warn(
                "SubnetworkModel.fit was called without a ChannelResampler in `callbacks` "
                "and no `set_selection(...)`: no channel is selected per epoch, so every "
                f"channel of the search space ({self.plan.pool.size} channels, ignoring the "
                f"budget of {self.plan.budget_units:,} units) trains and the logs report "
                "channels_selected 0. Pass `callbacks=[kmd.ChannelResampler(plan, "
                "strategy='medyate', seed=0)]` to train a budgeted selection.",
                UserWarning, stacklevel=2)
        if not any(isinstance(c, divergence.DivergenceGuard) for c in callbacks):
            callbacks.append(divergence.DivergenceGuard(factor=math.inf))
        if positional:
            args[FIT_CALLBACKS_POSITION] = callbacks
        else:
            kwargs["callbacks"] = callbacks
        self._nonfinite.assign(0)
        return super().fit(*args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        """`keras.Model.train_on_batch`; raises if the batch was not finite.

        Raises:
            NonFiniteTrainingError: the batch's inputs, loss or gradients held
                a NaN/inf; its update was skipped.
        """
        self._nonfinite.assign(0)
        result = super().train_on_batch(*args, **kwargs)
        code = self.nonfinite_status()
        if code:
            raise divergence.NonFiniteTrainingError(divergence.nonfinite_message(code))
        return result

    def nonfinite_status(self):
        """What the training steps found non-finite since `fit` began.

        Returns:
            int, a key of `divergence.NONFINITE_CAUSES` (1 inputs, 2 loss,
            3 gradients), 0 if every batch was finite. Once non-zero, every
            later step of the same `fit` skips its update.
        """
        return int(self._nonfinite.numpy())

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        # Only the updated variables are watched: the tape then records no op
        # below the earliest search-space layer, and backprop stops there.
        # With an empty selection only the head is watched: the step costs a
        # forward pass and the head's gradient.
        head_only = self.selection_state.head_only
        variables = self._head_weights() if head_only else self.trainable_weights
        if not self.optimizer.built:
            # On every updated variable (an empty first selection would build it on
            # the head alone), and before the update, which runs in a `tf.cond`.
            with keras.name_scope(self.optimizer.name, caller=self.optimizer):
                self.optimizer.build(self.trainable_weights)
            self.optimizer.built = True
        # Under XLA (`jit_compile`, Keras' default on a GPU) a kernel gradient of
        # a run-time number of channels cannot be compiled: the dense path then.
        taps = None if head_only or getattr(self, "jit_compile", False) else self._taps
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in variables])
            if taps is None:
                y_pred = self(x, training=True)
            else:
                y_pred, layer_inputs, layer_outputs = taps(x)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred,
                                     sample_weight=sample_weight, training=True)
            scaled_loss = self.optimizer.scale_loss(loss)
        batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss, sample_weight=batch_size)
        if head_only:
            # No channel was differentiated: no norm step is counted, so
            # `channel_norms()` stays None and an oracle re-probes.
            gradients = tape.gradient(scaled_loss, variables)
            status = self._check_finite(x, loss, gradients)
            _run_if_zero(status, self._apply_head, gradients)
            return self._step_logs(x, y, y_pred, sample_weight)
        if taps is None:
            gradients = tape.gradient(scaled_loss, variables)
        else:
            gradients = self._selected_gradients(tape, scaled_loss, variables,
                                                 layer_inputs, layer_outputs)
        for info, gradient in zip(self._space, gradients):
            if gradient is None:
                raise ValueError(
                    f"Layer {info.name!r} received no gradient: is it connected to "
                    "the loss?"
                )
        measured = _global_gradients(gradients[: len(self._space)])
        status = self._check_finite(x, loss, gradients)
        _run_if_zero(status, self._apply, list(gradients), list(measured))
        return self._step_logs(x, y, y_pred, sample_weight)

    def _check_finite(self, x, loss, gradients):
        """The step's non-finite code (`divergence.NONFINITE_CAUSES`), recorded.

        The first non-finite finding of a `fit` sticks: later steps are
        skipped too. Under a tf.distribute strategy every replica gets the
        largest code of all replicas (they skip together).
        """
        def all_finite(tensors):
            checks = [tf.reduce_all(tf.math.is_finite(t)) for t in tensors]
            return tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)

        inputs = [t for t in (tf.convert_to_tensor(v) for v in tf.nest.flatten(x))
                  if t.dtype.is_floating]
        # A LossScaleOptimizer (mixed precision) expects non-finite gradients
        # now and then: they make it skip the step and lower its scale.
        checked = [] if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer) else [
            g for g in gradients if g is not None]
        code = tf.where(
            all_finite(inputs),
            tf.where(all_finite([loss]), tf.where(all_finite(checked), 0, 3), 2), 1)
        previous = self._nonfinite.read_value()
        code = tf.where(previous > 0, previous, tf.cast(code, tf.int32))
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            # The first cause any replica found (all-reduce has no MAX: a sum of
            # one-hot causes, then the first one present).
            found = replica.all_reduce(tf.distribute.ReduceOp.SUM,
                                       tf.one_hot(code - 1, len(divergence.NONFINITE_CAUSES)))
            code = tf.where(tf.reduce_any(found > 0),
                            tf.cast(tf.argmax(tf.cast(found > 0, tf.int32)), tf.int32) + 1, 0)
        self._nonfinite.assign(code)
        return code

    def _apply(self, gradients, measured):
        """Records the norms, applies the masked update, restores frozen slices."""
        kernels = [info.kernel for info in self._space]
        self.selection_state.record_norms([
            channels_lib.channel_norms(tf.convert_to_tensor(whole), info.channel_axis, tf)
            for info, whole in zip(self._space, measured)])
        masked, masks, previous = [], [], []
        for info, kernel, gradient in zip(self._space, kernels, gradients):
            mask = _broadcastable(self.masks[info.name], info)
            masks.append(mask)
            masked.append(gradient * tf.cast(mask, gradient.dtype))
            previous.append(tf.identity(kernel.value))
        self.optimizer.apply(masked + list(gradients[len(self._space):]),
                             self.trainable_weights)
        for kernel, mask, old in zip(kernels, masks, previous):
            kernel.assign(tf.where(mask > 0, kernel.value, old))
        self._freeze_moving_averages(kernels, masks)

    def _apply_head(self, gradients):
        """Applies the head's update (an empty selection: every kernel is frozen)."""
        self.optimizer.apply(gradients, self._head_weights())
        kernels = [info.kernel for info in self._space]
        self._freeze_moving_averages(kernels, [tf.zeros((), tf.float32)] * len(kernels))

    def _freeze_moving_averages(self, kernels, masks):
        """With `use_ema=True`: the average of a frozen slice is the slice itself.

        Keras updates the averages of every variable it was built with (from
        the values before the frozen slices are put back), overwrites the
        variables with them every `ema_overwrite_frequency` steps and at the
        end of `fit`. Keeping a frozen slice's average equal to the slice makes
        all of these leave it bit-identical; a slice averages over the steps
        that train it.
        """
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        if not getattr(optimizer, "use_ema", False):
            return
        averages = optimizer._model_variables_moving_average
        known = optimizer._trainable_variables_indices
        for kernel, mask in zip(kernels, masks):
            # (An optimizer built on the head alone keeps no average of kernels.)
            key = optimizer._var_key(kernel)
            average = averages[known[key]] if key in known else None
            if average is not None:
                average.assign(tf.where(mask > 0, average.value, kernel.value))

    def use_dense_kernel_gradients(self, reason):
        """Switches an `"auto"` model to whole-kernel gradients (every channel's norm).

        `ChannelResampler` calls it when its strategy reads the norms of
        channels it did not train. At most one retrace.

        Args:
            reason: str, who needs it (for the error message).

        Raises:
            ValueError: the model was built with `kernel_gradients="selected"`.
        """
        if self.kernel_gradients == "selected":
            raise ValueError(
                f"{reason} reads the gradient norms of channels it does not train, but this "
                "SubnetworkModel was built with kernel_gradients='selected' (the selected "
                "channels' only). Build it with kernel_gradients='auto' or 'dense'."
            )
        if self._taps is not None:
            self._taps = None
            if getattr(self, "train_function", None) is not None:
                self.make_train_function(force=True)

    def _selected_gradients(self, tape, scaled_loss, variables, layer_inputs, layer_outputs):
        """The step's gradients with selected-channel kernel gradients where tapped.

        The tapped layers' kernels are watched (their outputs are then on the
        tape) but their gradient is not asked for: TensorFlow prunes the
        whole-kernel gradient it would compute.
        """
        tapped = self._taps.layer_names
        asked = [v for info, v in zip(self._space, variables) if info.name not in tapped]
        asked += variables[len(self._space):]
        results = tape.gradient(scaled_loss, asked + list(layer_outputs))
        others = iter(results[: len(asked)])
        output_gradients = dict(zip(tapped, results[len(asked):]))
        inputs = dict(zip(tapped, layer_inputs))
        gradients = []
        for info in self._space:
            if info.name not in tapped:
                gradients.append(next(others))
                continue
            if output_gradients[info.name] is None:
                gradients.append(None)  # reported below, as for the dense path
                continue
            with tf.name_scope(f"selected_kernel_gradient/{info.name}"):
                mask = self.masks[info.name].value
                channels = kernel_gradients_lib.selected_channels(mask)
                gradient = kernel_gradients_lib.selected_kernel_gradient(
                    info.layer, kernel_gradients_lib.gather_channels(inputs[info.name], channels),
                    output_gradients[info.name], channels, mask)
                penalty = kernel_gradients_lib.regularizer_gradient(
                    info.kernel, self.optimizer.scale_loss)
                if penalty is not None:  # the selected channels' share only
                    gradient += penalty * tf.cast(_broadcastable(self.masks[info.name], info),
                                                  penalty.dtype)
                gradients.append(gradient)
        return gradients + list(others)

    def _step_logs(self, x, y, y_pred, sample_weight):
        logs = self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        logs.update(self.selection_state.logs())
        return logs

    def _head_weights(self):
        return [v for v in self._head.layer.weights if v.trainable]

    # --- The selection (`selection_state` holds it) -------------------------

    def set_selection(self, flat_indices, allow_over_budget=False):
        """Selects channels by hand: writes the masks of flat pool indices.

        An empty selection switches the step to the head alone (and a
        non-empty one back): at most two traces of the training step, however
        often the selection changes. (`ChannelResampler` writes its draws
        with `selection_state.resample`.)

        Args:
            flat_indices: 1-D integers in `[0, plan.pool.size)`, each at most
                once (`plan.pool.from_dict` makes them from a dict layer name
                → channel indices).
            allow_over_budget: bool, accept a selection costing more than the
                plan's budget (full fine-tuning of the search space, a parity
                test). Defaults to False.

        Raises:
            ValueError: an index that is not an integer, out of range or
                repeated, or a selection over the budget.
        """
        self.selection_state.write(flat_indices, allow_over_budget=allow_over_budget)

    def current_selection(self):
        """Flat pool indices of the channels whose mask is on."""
        return self.selection_state.current()

    def channel_norms(self, statistic="mean"):
        """Per-channel gradient norms since the last resample, flat over the pool.

        Returns None if no step ran. `"mean"` is the mean of the per-step
        norms, `"last"` the norm of the last step's gradient.
        """
        return self.selection_state.norms(statistic)

    def kernel_values(self):
        """{layer name: kernel ndarray} for the search space."""
        return {info.name: np.asarray(info.kernel.numpy()) for info in self._space}

    def measure_channel_norms(self, dataset, steps=None):
        """Mean per-step gradient norm of every search-space channel, no update.

        This is the full-gradient measurement the oracle strategies need
        before their first epoch.

        Args:
            dataset: `tf.data.Dataset` of (x, y) batches, or a tuple (x, y).
            steps: int or None, batches to use (None: all).

        Returns:
            float64 array over the flat pool.
        """
        if not getattr(self, "compiled", False):
            raise ValueError(
                "Compile the SubnetworkModel (`trainer.compile(optimizer, loss)`) "
                "before measuring gradient norms."
            )
        dataset = as_dataset(dataset)
        if self._measure_function is None:
            kernels = [info.kernel for info in self._space]

            @tf.function
            def measure(x, y):
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch([k.value for k in kernels])
                    y_pred = self(x, training=True)
                    loss = self.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
                gradients = tape.gradient(loss, kernels)
                return [channels_lib.channel_norms(g, info.channel_axis, tf)
                        for g, info in zip(gradients, self._space)]

            self._measure_function = measure
        totals, count = None, 0
        for x, y in dataset.take(steps) if steps else dataset:
            norms = [np.asarray(n, np.float64) for n in self._measure_function(x, y)]
            totals = norms if totals is None else [a + b for a, b in zip(totals, norms)]
            count += 1
        if count == 0:
            raise ValueError("`probe_data` is empty; the oracle needs at least one batch.")
        return np.concatenate(totals) / count


class _Taps:
    """The wrapped model with the inputs and outputs of the tapped layers as outputs.

    A plain object, not a Keras layer: the tap model shares every layer (and
    variable) of the wrapper, which must not track (and save) them twice.
    """

    def __init__(self, model, layer_names, num_outputs):
        self.model = model
        self.layer_names = layer_names
        self._num_outputs = num_outputs

    def __call__(self, x):
        """(y_pred, tapped layer inputs, tapped layer outputs) in training mode."""
        values = self.model(x, training=True)
        count, outputs = len(self.layer_names), self._num_outputs
        y_pred = values[0] if outputs == 1 else list(values[:outputs])
        return y_pred, values[outputs: outputs + count], values[outputs + count:]


def _selected_gradient_taps(model, space, kernel_gradients):
    """`_Taps` for the search-space layers whose kernel gradient can be selected.

    None with dense kernel gradients or if no layer qualifies: the layer
    must be one `kernel_gradients.supports` and be called once, in the wrapped
    model's own graph (the inputs of a nested model's layers are not tensors
    of that graph).
    """
    if kernel_gradients == "dense":
        return None
    own = {id(layer) for layer in model.layers}
    tapped = [info for info in space
              if id(info.layer) in own and len(info.layer._inbound_nodes) == 1
              and kernel_gradients_lib.supports(info.layer)]
    if not tapped:
        return None
    outputs = list(model.outputs)
    tap_model = keras.Model(model.inputs,
                            outputs + [info.layer.input for info in tapped]
                            + [info.layer.output for info in tapped],
                            name=f"{model.name}_taps")
    return _Taps(tap_model, [info.name for info in tapped], len(outputs))


def _run_if_zero(code, fn, *args):
    """Runs `fn(*args)` (the step's update) only if the step's `code` is 0.

    On one device, and under strategies that need no `merge_call`, a `tf.cond`
    in the step. Otherwise (`MirroredStrategy`) the optimizer's update calls
    `merge_call`, which a `cond` in a replica context may not: the `cond` runs
    in the cross-replica context and calls `fn` for every replica, as Keras'
    `LossScaleOptimizer` does. `code` is the same on every replica.
    """
    def run(*values):
        # Tensors of the branch's own graph: the optimizer's all-reduce (a
        # custom gradient) refuses captured ones.
        fn(*tf.nest.map_structure(tf.identity, values))
        return tf.constant(True)

    replica = tf.distribute.get_replica_context()
    if replica is None or tf.__internal__.distribute.strategy_supports_no_merge_call():
        tf.cond(tf.equal(code, 0), lambda: run(*args), lambda: tf.constant(False))
        return

    def cross_replica(distribution, code, *values):
        code = distribution.experimental_local_results(code)[0]

        def each_replica():
            distribution.extended.call_for_each_replica(fn, args=values)
            return tf.constant(True)

        tf.cond(tf.equal(code, 0), each_replica, lambda: tf.constant(False))

    replica.merge_call(cross_replica, args=(code, *args))


def _global_gradients(gradients):
    """The gradients of the whole batch.

    Under a `tf.distribute` strategy `train_step` runs once per replica on its
    share of the batch; the optimizer sums the replicas' gradients itself, but
    the channel norms must be those of that sum (as on one device), so they are
    measured on an all-reduced copy. On one device: the gradients unchanged.
    """
    replica = tf.distribute.get_replica_context()
    if replica is None or replica.num_replicas_in_sync == 1 or any(g is None for g in gradients):
        return gradients
    return replica.all_reduce(tf.distribute.ReduceOp.SUM, gradients)


def _broadcastable(mask, info):
    """Reshapes a (C,) mask to broadcast over the layer's kernel."""
    shape = [1] * len(info.kernel_shape)
    shape[info.channel_axis] = info.num_channels
    return tf.reshape(mask.value, shape)


def freeze_batchnorm(model):
    """Sets every BatchNormalization layer (nested ones too) to inference mode."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
