"""`OnDeviceTrainer`: drives an exported model through LiteRT.

This is the reference for what the Android app does: every method is one
signature call (`runSignature` on the Interpreter, `run` on a CompiledModel)
or a loop of them, for `fit`, with the same signature and tensor names. It
runs on LiteRT's Interpreter or its 2.x CompiledModel API
(`tflite_export.runtimes`), and imports numpy, `ai_edge_litert` and
keras-medyate's numpy-only `ChannelPool` (no TensorFlow, no Keras), so it
runs in a lean process.

Example:

```python
from tflite_export import OnDeviceTrainer

trainer = OnDeviceTrainer("medyate.tflite", num_threads=2)   # or runtime="compiled_model"
selection = trainer.resample(seed=0)        # MeDyate, on the device
print(selection.cost_units, {k: len(v) for k, v in selection.channels.items()})
loss = trainer.train(x_batch, y_batch)      # one SGD step on the selected channels
trainer.set_weights(trainer.get_weights())  # persistence round trip
update = trainer.get_update()               # federated learning: the slices trained
print(update.num_bytes, update.channels)    # since the last sync, and the head
trainer.apply_update(update)                # a received update (e.g. the server's model)
```
"""

import dataclasses
import os
import time

import numpy as np

from keras_medyate import console
from keras_medyate.channel_pool import ChannelPool
from keras_medyate.selection import Selection
from tflite_export import flatbuffer
from tflite_export import memory_model
from tflite_export import metadata as metadata_lib
from tflite_export import runtimes

_UNUSED = {"unused": np.zeros(1, np.int32)}


class NonFiniteLossError(FloatingPointError):
    """`train` met a NaN/inf loss or gradient; the file skipped that update."""


#: Suffix of the wire keys of `SliceUpdate.arrays` that hold channel indices.
CHANNELS_SUFFIX = "/channels"


@dataclasses.dataclass
class SliceUpdate:
    """Trained input-channel slices of the search-space kernels, and the head.

    What a device uploads after local training (`OnDeviceTrainer.get_update`)
    and what it applies when it receives the server's model
    (`OnDeviceTrainer.apply_update`). A slice is one input channel of one
    search-space kernel: `kernel[..., c, :]` for a Conv2D or DepthwiseConv2D
    (input-channel axis 2), `kernel[c, :]` for a Dense (axis 0).

    Attributes:
        channels: dict layer name → sorted int32 array of input-channel
            indices (every search-space layer is present; an empty array
            when none of its channels is in the update).
        kernels: dict layer name → float32 array, the layer's kernel (Keras
            layout) restricted to those channels along its input-channel
            axis (`len(channels[layer])` long on that axis).
        head: dict weight key (`"<classifier>/kernel"`,
            `"<classifier>/bias"`) → float32 array, whole (the classifier is
            always trained).

    `num_bytes` is the exact payload: 4 bytes per channel index (int32) and
    per weight (float32). `arrays()` is the flat wire form (keys
    `"<layer>/channels"`, `"<layer>/kernel"` and the head's keys), which
    `from_arrays` reads back; a transport adds its own framing per array.
    """

    channels: dict
    kernels: dict
    head: dict

    @property
    def num_channels(self):
        """Number of slices (input channels) in the update, over every layer."""
        return int(sum(len(v) for v in self.channels.values()))

    @property
    def num_bytes(self):
        """Exact payload bytes: channel indices (int32), slice values and head (float32)."""
        return int(sum(a.nbytes for a in self.arrays().values()))

    def arrays(self):
        """The flat wire form: dict name → ndarray (int32 indices, float32 values)."""
        flat = {}
        for layer, channels in self.channels.items():
            flat[layer + CHANNELS_SUFFIX] = np.asarray(channels, np.int32)
            flat[f"{layer}/kernel"] = np.asarray(self.kernels[layer], np.float32)
        for key, value in self.head.items():
            flat[key] = np.asarray(value, np.float32)
        return flat

    @classmethod
    def from_arrays(cls, arrays):
        """Reads the wire form written by `arrays()`.

        Raises:
            ValueError: a `"<layer>/channels"` entry without its
                `"<layer>/kernel"`, or non-integer channel indices.
        """
        channels, kernels, head = {}, {}, {}
        layers = [k[:-len(CHANNELS_SUFFIX)] for k in arrays if k.endswith(CHANNELS_SUFFIX)]
        for layer in layers:
            indices = np.asarray(arrays[layer + CHANNELS_SUFFIX])
            if indices.ndim != 1 or not (np.issubdtype(indices.dtype, np.integer)
                                         or indices.size == 0):
                raise ValueError(
                    f"`{layer}{CHANNELS_SUFFIX}` must be a 1-D array of channel indices, got "
                    f"{indices.dtype} {indices.shape}.")
            if f"{layer}/kernel" not in arrays:
                raise ValueError(
                    f"The update has `{layer}{CHANNELS_SUFFIX}` but no `{layer}/kernel` (the "
                    "values of those channels).")
            channels[layer] = indices.astype(np.int32)
            kernels[layer] = np.asarray(arrays[f"{layer}/kernel"], np.float32)
        known = {layer + CHANNELS_SUFFIX for layer in layers} | {f"{l}/kernel" for l in layers}
        for key, value in arrays.items():
            if key not in known:
                head[key] = np.asarray(value, np.float32)
        return cls(channels=channels, kernels=kernels, head=head)


class OnDeviceTrainer:
    """Python driver of a model written by `export_training_model`.

    Args:
        path: str, the `.tflite` file.
        num_threads: int, interpreter threads. Defaults to 2.
        use_xnnpack: bool, apply LiteRT's default XNNPACK delegate (faster
            forward convolutions; it keeps its own copy of the forward
            working set and packed weights, measured in
            `tflite_export/README.md`). Android: `Interpreter.Options()
            .setUseXNNPACK(...)`. Defaults to True.
        runtime: `"interpreter"` (default: LiteRT's `Interpreter` and its
            signature runners, Android's `Interpreter.runSignature`) or
            `"compiled_model"` (LiteRT 2.x `CompiledModel` with tensor
            buffers, Android's Kotlin `CompiledModel`; needs ai-edge-litert
            >= 2.2). Both give the same results (`tests/test_runtimes.py`).

    Attributes:
        metadata: dict, the JSON embedded in the file (layers, pool, shapes).
        pool: `keras_medyate.channel_pool.ChannelPool`, the search space's
            channels, as the exported plan had them.
        layer_names: list of str, the search-space layers (pool order).
        pool_size: int, number of channels in the pool.
        batch_size: int, the static batch of `train`.
        budget_units: int.

    Raises:
        FileNotFoundError: no such file.
        flatbuffer.CorruptModelError: not a readable LiteRT model.
        metadata.MetadataError: a LiteRT model not exported by keras-medyate.
    """

    def __init__(self, path, num_threads=2, use_xnnpack=True, runtime="interpreter"):
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No model file at {path!r}.")
        with open(path, "rb") as f:
            head = f.read(8)
        if not flatbuffer.is_tflite(head):
            raise flatbuffer.CorruptModelError(
                f"{path!r} is not a LiteRT/TFLite model (no 'TFL3' file identifier). Pass "
                "the file written by `tflite_export.export_training_model`."
            )
        try:
            # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" and the like.
            with console.quiet_native_logs():
                self._model = runtimes.open_model(path, runtime=runtime,
                                                  num_threads=num_threads,
                                                  use_xnnpack=use_xnnpack)
                available = set(self._model.signature_names())
        except runtimes.InvalidOptionError:
            raise
        except (ValueError, RuntimeError) as error:
            raise flatbuffer.CorruptModelError(
                f"{path!r} could not be loaded by the LiteRT {runtime} ({error}). The file "
                "is damaged or truncated; re-export or re-download it."
            ) from error
        missing = [s for s in metadata_lib.SIGNATURES
                   if s not in available and s not in metadata_lib.SIGNATURES_SINCE]
        if missing:
            raise metadata_lib.MetadataError(
                f"{path!r} lacks the signatures {missing} (it has {sorted(available)}); it "
                "was not written by `tflite_export.export_training_model`."
            )
        self.path = path
        self.runtime = runtime
        self._signatures = available
        try:
            # The first call applies XNNPACK (LiteRT logs it): quietly.
            with console.quiet_native_logs():
                raw = self._run("metadata", **_UNUSED)["json"]
        except (KeyError, ValueError) as error:
            raise metadata_lib.MetadataError(
                f"The `metadata` signature of {path!r} does not take `unused` and return "
                f"`json` ({error}); the file was not written by `export_training_model`."
            ) from error
        self.metadata = metadata_lib.decode(raw, repr(path))
        self.pool = ChannelPool.from_config(self.metadata["pool"])
        self.layer_names = list(self.pool.layer_names)
        self.pool_size = self.pool.size
        self.batch_size = int(self.metadata["batch_size"])
        self.budget_units = int(self.metadata["budget_units"])
        self.input_shape = tuple(self.metadata["input_shape"])
        self.num_classes = int(self.metadata["num_classes"])
        self._weights = {w["key"]: w for w in self.metadata["weights"]}
        self._state = {s["tensor"]: s for s in self.metadata["state"]}
        # Files exported with kernel_gradients="selected" take, in `train`, the
        # selected channels of every layer, derived from the current mask.
        self._channel_inputs = [entry["tensor"] for entry
                                in self.metadata.get("train_channel_inputs", [])]
        # Static files give each list a fixed length (padded with -1).
        self._capacities = [entry.get("capacity") for entry
                            in self.metadata.get("train_channel_inputs", [])]
        # The current selection (every file: `train` records it for `get_update`).
        self._mask = self.get_state()["mask"]
        # Input channels `train` updated since the last sync (`get_update`).
        self._trained = np.zeros(self.pool_size, bool)
        #: The on-device optimizer (`tflite_export.optimizer.OptimizerSpec.to_config`);
        #: files older than format 3 ran plain SGD.
        self.optimizer = self.metadata.get("optimizer") or {
            "name": "SGD", "momentum": 0.0, "schedule": None, "recipe": None}

    def _run(self, signature, **inputs):
        # Every signature call goes through here (benchmarks/runtime_matrix.py records them).
        return self._model.run(signature, **inputs)

    # --- training and inference ---------------------------------------------------

    def train(self, x, y):
        """One optimizer step on a batch of exactly `batch_size` samples; returns the loss.

        The step is the exported optimizer's (`self.optimizer`: SGD with its
        momentum, clip, weight decay and learning-rate schedule).

        Args:
            x: float array (batch_size, H, W, C), preprocessed like the Keras input.
            y: int array (batch_size,) of class indices.

        Raises:
            ValueError: a wrong shape, NaN/inf pixels or labels out of range
                (nothing is run).
            NonFiniteLossError: the loss or a gradient was NaN/inf; the file
                skipped the update, so the weights and state are those before
                the batch.
        """
        x = self._images(x, self.batch_size, "train")
        y = np.asarray(y)
        if y.shape != (self.batch_size,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"`y` must be an int array of shape ({self.batch_size},) (class indices), got "
                f"{y.dtype} {y.shape}."
            )
        if y.min() < 0 or y.max() >= self.num_classes:
            bad = np.flatnonzero((y < 0) | (y >= self.num_classes))
            raise ValueError(
                f"Labels must be in [0, {self.num_classes}) (this model has {self.num_classes} "
                f"classes), got {y.min()}..{y.max()}: sample(s) {bad[:5].tolist()} of the batch.")
        if not np.all(np.isfinite(x)):
            bad = np.flatnonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1))
            raise ValueError(
                f"The batch holds NaN or infinite pixels in sample(s) {bad[:5].tolist()}; "
                "training on it would destroy the weights. Fix or drop those images.")
        loss = float(self._run("train", x=x, y=y.astype(np.int32),
                               **self._channel_lists())["loss"][0])
        if not np.isfinite(loss):
            raise NonFiniteLossError(
                f"The training loss became {loss} (learning rate {self.learning_rate():.4g}); "
                "the step was not applied. Lower the learning rate (export with a smaller "
                "one, or `set_learning_rate`), or check the inputs' preprocessing.")
        # The step updated the selected channels (mask > 0, as `train` reads it).
        self._trained |= self._mask > 0.0
        return loss

    def learning_rate(self):
        """The learning rate the next `train` step uses (from the file's schedule and step)."""
        state = self.get_state()
        if "learning_rate_schedule" not in state:
            return float(self.metadata["learning_rate"])
        from tflite_export import optimizer as optimizer_lib  # noqa: PLC0415 - numpy part only

        return optimizer_lib.numpy_learning_rate(state["learning_rate_schedule"],
                                                 int(state["step"][0]))

    def predicted_train_memory(self, mask=None):
        """What `train` keeps beyond `infer`, predicted in bytes (`memory_model`).

        Args:
            mask: 0/1 array over the pool; None (default) for the current
                selection.

        Returns:
            dict of bytes per part (`memory_model.PARTS`) and `"total_bytes"`.
        """
        if "memory_model" not in self.metadata:
            raise ValueError(
                f"{self.path!r} has no memory model (metadata format version "
                f"{self.metadata.get('format_version')}); re-export it with this keras-medyate.")
        if mask is None:
            mask = self._mask
        return memory_model.predict(self.metadata["memory_model"], mask)

    def _channel_lists(self):
        """`train`'s per-layer channel inputs for the current mask (or none)."""
        if not self._channel_inputs:
            return {}
        # Every channel with mask > 0 (what `train` and `resample` count as selected).
        channels = self.pool.to_dict(np.flatnonzero(self._mask > 0.0))
        lists = {}
        for tensor, name, capacity in zip(self._channel_inputs, self.layer_names,
                                          self._capacities):
            listed = channels[name].astype(np.int32)
            if capacity is not None:
                if len(listed) > capacity:
                    raise ValueError(
                        f"{len(listed)} channels of {name!r} are selected, but this file's "
                        f"static `train` takes at most {capacity} (what the budget of "
                        f"{self.budget_units:,} units admits). Select fewer, or export with "
                        "`static_shapes=False`.")
                listed = np.concatenate([listed, np.full(capacity - len(listed), -1, np.int32)])
            lists[tensor] = listed
        return lists

    def _remember_mask(self, mask):
        self._mask = np.asarray(mask, np.float32).copy()

    def infer(self, x, logits=False):
        """Class probabilities (or logits) for a batch of any size.

        A file with a fixed `infer_batch_size` is called on chunks of that
        size (the last one padded; the padding's outputs are dropped).
        """
        fixed = self.metadata.get("infer_batch_size")
        x = self._images(x, None, "infer")
        key = "logits" if logits else "probabilities"
        if not fixed:
            return self._run("infer", x=x)[key]
        outputs = []
        for start in range(0, len(x), fixed):
            chunk = x[start:start + fixed]
            count = len(chunk)
            if count < fixed:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - count, axis=0)])
            outputs.append(np.array(self._run("infer", x=chunk)[key][:count]))
        return np.concatenate(outputs)

    def _images(self, x, batch, signature):
        x = np.asarray(x)
        shape = (batch, *self.input_shape)
        ok = x.ndim == 4 and tuple(x.shape[1:]) == self.input_shape and (
            batch is None or x.shape[0] == batch) and x.shape[0] > 0
        if not ok:
            wanted = "(N" if batch is None else f"({batch}"
            raise ValueError(
                f"`x` for `{signature}` must have shape {wanted}, "
                f"{', '.join(str(d) for d in shape[1:])}), got {x.shape}."
                + (" The train batch size is static: drop or pad the last partial batch."
                   if signature == "train" else "")
            )
        return x.astype(np.float32, copy=False)

    # --- selection ------------------------------------------------------------------

    def resample(self, seed):
        """Runs the on-device MeDyate sampler; returns the new `Selection`.

        The random draw is a deterministic function of `seed`, the number of
        resamples done so far and the pool position, so passing the same seed
        every epoch still gives a new draw each epoch.
        """
        seed = int(seed)
        if not -2**31 <= seed < 2**31:
            raise ValueError(f"`seed` must fit in int32, got {seed}.")
        outputs = self._run("resample", seed=np.array([seed], np.int32))
        mask = outputs["mask"]
        self._remember_mask(mask)
        return Selection(channels=self._to_dict(mask), cost_units=int(outputs["cost_units"][0]),
                         mask=mask, epoch=int(outputs["epoch"][0]))

    def set_mask(self, selection, allow_over_budget=False):
        """Selects channels chosen by the app.

        Args:
            selection: flat 0/1 array over the pool, or dict layer name →
                channel indices.
            allow_over_budget: bool, accept a selection costing more than the
                budget. Defaults to False.

        Returns:
            `Selection` (its `epoch` is None).
        """
        mask = self._as_mask(selection)
        cost = self._cost(mask)
        if cost > self.budget_units and not allow_over_budget:
            raise ValueError(
                f"The selection costs {cost:,} units, over the budget of {self.budget_units:,}. "
                "Select fewer channels or pass `allow_over_budget=True`."
            )
        outputs = self._run("set_mask", mask=mask)
        self._remember_mask(mask)
        return Selection(channels=self._to_dict(mask), cost_units=int(outputs["cost_units"][0]),
                         mask=mask)

    def selection(self):
        """The current `Selection` (read from the state)."""
        mask = self.get_state()["mask"]
        return Selection(channels=self._to_dict(mask), cost_units=self._cost(mask),
                         mask=mask, epoch=int(self.get_state()["epoch"][0]))

    def _as_mask(self, selection):
        if isinstance(selection, dict):
            return self.pool.flat_mask(self.pool.from_dict(selection))
        mask = np.asarray(selection, np.float32)
        if mask.shape != (self.pool_size,):
            raise ValueError(
                f"A flat mask must have shape ({self.pool_size},) (the channel pool), got "
                f"{mask.shape}; or pass a dict layer name → channel indices."
            )
        return (mask > 0.5).astype(np.float32)

    def _to_dict(self, mask):
        return self.pool.to_dict(np.flatnonzero(np.asarray(mask) > 0.5))

    def _cost(self, mask):
        return self.pool.cost_of(np.flatnonzero(np.asarray(mask) > 0))

    def set_learning_rate(self, learning_rate):
        """Sets a constant learning rate for `train` (it replaces the schedule)."""
        rate = float(learning_rate)
        if not np.isfinite(rate) or rate <= 0:
            raise ValueError(f"`learning_rate` must be a positive finite float, got {learning_rate!r}.")
        return float(self._run("set_learning_rate",
                               learning_rate=np.array([rate], np.float32))["learning_rate"][0])

    def set_schedule(self, schedule, step=0):
        """Sets the learning-rate schedule and the step it starts from.

        Args:
            schedule: the five numbers of a Keras `CosineDecay`
                (`tflite_export.optimizer.SCHEDULE_FIELDS`, e.g.
                `keras_medyate.recipe.schedule_numbers(0.05, steps, epochs)`),
                as a sequence or a dict.
            step: int, the optimizer step to continue from. Defaults to 0.

        Returns:
            float, the learning rate of that step.
        """
        from tflite_export import optimizer as optimizer_lib  # noqa: PLC0415

        if "set_schedule" not in self._signatures:
            raise ValueError(
                f"{self.path!r} (metadata format {self.metadata.get('format_version')}) has no "
                "`set_schedule`; re-export it with this keras-medyate.")
        numbers = optimizer_lib.check_schedule(schedule)
        step = int(step)
        if not 0 <= step < 2**31:
            raise ValueError(f"`step` must be an int in [0, 2**31), got {step}.")
        outputs = self._run("set_schedule", schedule=numbers, step=np.array([step], np.int32))
        return float(outputs["learning_rate"][0])

    # --- persistence ----------------------------------------------------------------

    def get_weights(self):
        """dict `"<layer>/kernel"` / `"<layer>/bias"` → ndarray (Keras layout) of the
        trained tensors (search-space kernels, classifier kernel and bias)."""
        outputs = self._run("get_weights", **_UNUSED)
        return {key: outputs[info["tensor"]] for key, info in self._weights.items()}

    def set_weights(self, weights):
        """Writes trained tensors; keys missing from `weights` keep their value.

        Raises:
            ValueError: an unknown key, or an array of the wrong shape.
        """
        arrays = self._checked(weights, {k: w["shape"] for k, w in self._weights.items()},
                               "weight", "get_weights()")
        current = self.get_weights() if len(arrays) < len(self._weights) else {}
        inputs = {info["tensor"]: arrays.get(key, current.get(key)).astype(np.float32)
                  for key, info in self._weights.items()}
        self._run("set_weights", **inputs)

    def get_state(self):
        """dict name → ndarray of the sampler and optimizer state (README: state tensors)."""
        return dict(self._run("get_state", **_UNUSED))

    def set_state(self, state):
        """Restores a state from `get_state()`.

        Every sampler tensor is required; optimizer tensors (`step`, the
        schedule, momentum buffers) that `state` lacks keep their current
        value (so the sampler state of a `ChannelResampler` can be copied in).

        Raises:
            ValueError: a missing sampler tensor, an unknown name, or a wrong shape.
        """
        arrays = self._checked(state, {k: s["shape"] for k, s in self._state.items()},
                               "state tensor", "get_state()")
        sampler = {name for name, _, _ in metadata_lib.STATE_TENSORS}
        missing = sorted((set(self._state) & sampler) - set(arrays))
        if missing:
            raise ValueError(f"`set_state` needs every sampler state tensor; missing {missing}.")
        if set(self._state) - set(arrays):
            arrays = {**self.get_state(), **arrays}
        self._run("set_state", **{k: arrays[k].astype(self._state[k]["dtype"])
                                  for k in self._state})
        self._remember_mask(arrays["mask"])

    @staticmethod
    def _checked(values, shapes, what, source):
        if not isinstance(values, dict):
            raise ValueError(f"Expected a dict name → array (as returned by {source}), got "
                             f"{type(values).__name__}.")
        unknown = sorted(set(values) - set(shapes))
        if unknown:
            raise ValueError(f"Unknown {what} names {unknown}; expected some of {sorted(shapes)}.")
        arrays = {}
        for key, value in values.items():
            array = np.asarray(value)
            if list(array.shape) != list(shapes[key]):
                raise ValueError(
                    f"The {what} {key!r} must have shape {tuple(shapes[key])}, got "
                    f"{array.shape}."
                )
            if not np.all(np.isfinite(array)):
                raise ValueError(f"The {what} {key!r} holds NaN or infinite values.")
            arrays[key] = array
        return arrays

    # --- federated learning: sparse updates --------------------------------------------

    def trained_since_sync(self):
        """0/1 float32 mask over the pool: the input channels `train` updated since the
        last sync (`apply_update` or `mark_synced`).

        A step updates the channels selected when it runs (mask > 0); frozen
        channels are bit-identical (the file's `where(mask, …)`), so these
        are the only slices that can differ from the synced model. An app
        that restarts between two syncs saves this mask with its state and
        restores it with `mark_synced(trained=...)`.
        """
        return self._trained.astype(np.float32)

    def mark_synced(self, trained=None):
        """Forgets what was trained: the device now holds the server's model.

        Args:
            trained: optional 0/1 mask over the pool (a saved
                `trained_since_sync()`) to restore instead, after a restart.
        """
        if trained is None:
            self._trained = np.zeros(self.pool_size, bool)
            return
        mask = np.asarray(trained)
        if mask.shape != (self.pool_size,):
            raise ValueError(f"`trained` must have shape ({self.pool_size},) (the channel "
                             f"pool), got {mask.shape}.")
        self._trained = mask > 0.5

    def get_update(self, every_channel=False):
        """The slices trained since the last sync, and the head: what a client uploads.

        One `get_weights` call; nothing on the device changes (call
        `apply_update` with the server's answer, which syncs).

        Args:
            every_channel: bool, every input channel of the search space
                instead (dense federated averaging, or a whole model to
                broadcast). Defaults to False.

        Returns:
            `SliceUpdate`: per search-space layer the sorted indices of the
            channels trained since the sync and their kernel slices; the
            classifier's kernel and bias whole. `num_bytes` counts its
            payload exactly.
        """
        selected = np.ones(self.pool_size, bool) if every_channel else self._trained
        channels = self.pool.to_dict(np.flatnonzero(selected))
        weights = self.get_weights()
        kernels = {}
        for layer in self.layer_names:
            indices = np.asarray(channels[layer], np.int32)
            channels[layer] = indices
            axis = self._weights[f"{layer}/kernel"]["channel_axis"]
            kernels[layer] = np.take(weights[f"{layer}/kernel"], indices, axis=axis)
        layer_keys = {f"{layer}/kernel" for layer in self.layer_names}
        head = {key: np.asarray(value, np.float32) for key, value in weights.items()
                if key not in layer_keys}
        return SliceUpdate(channels=channels, kernels=kernels, head=head)

    def apply_update(self, update, sync=True):
        """Writes the slices and head of a received `SliceUpdate`; every other slice
        keeps its exact value.

        Args:
            update: a `SliceUpdate` (or its `arrays()` wire form) for this
                file: layers of the search space, channel indices in range,
                each once; slices shaped like the kernel with
                `len(channels)` on its input-channel axis; the head whole
                (or absent: it keeps its value).
            sync: bool, then forget what was trained (`mark_synced`): right
                when the update is the server's model. Defaults to True.

        Returns:
            int, the number of slices written.

        Raises:
            ValueError: an unknown layer or head key, indices out of range or
                repeated, or a slice of the wrong shape (nothing is written).
        """
        if isinstance(update, dict):
            update = SliceUpdate.from_arrays(update)
        weights = self.get_weights()
        unknown = sorted(set(update.channels) - set(self.layer_names))
        if unknown:
            raise ValueError(f"The update has slices of {unknown}, which are not search-space "
                             f"layers of {self.path!r} ({self.layer_names}).")
        layer_keys = {f"{layer}/kernel" for layer in self.layer_names}
        head_keys = set(weights) - layer_keys
        bad_head = sorted(set(update.head) - head_keys)
        if bad_head:
            raise ValueError(f"Unknown head weights {bad_head}; this file's head is "
                             f"{sorted(head_keys)}.")
        written = {}
        count = 0
        for layer, indices in update.channels.items():
            key = f"{layer}/kernel"
            indices = np.asarray(indices)
            axis = self._weights[key]["channel_axis"]
            size = weights[key].shape[axis]
            if indices.size and (indices.min() < 0 or indices.max() >= size
                                 or len(np.unique(indices)) != len(indices)):
                raise ValueError(
                    f"The channels of {layer!r} must be distinct indices in [0, {size}), got "
                    f"{indices.tolist()[:10]}{'…' if len(indices) > 10 else ''}.")
            values = np.asarray(update.kernels[layer], np.float32)
            shape = list(weights[key].shape)
            shape[axis] = len(indices)
            if list(values.shape) != shape:
                raise ValueError(f"The slices of {layer!r} must have shape {tuple(shape)} "
                                 f"({len(indices)} channels on axis {axis}), got {values.shape}.")
            if not np.all(np.isfinite(values)):
                raise ValueError(f"The slices of {layer!r} hold NaN or infinite values.")
            if len(indices):
                kernel = np.array(weights[key], np.float32)
                index = [slice(None)] * kernel.ndim
                index[axis] = indices.astype(np.int64)
                kernel[tuple(index)] = values
                written[key] = kernel
                count += len(indices)
        for key, value in update.head.items():
            written[key] = value
        if written:
            self.set_weights(written)  # checks the head's shapes and finiteness
        if sync:
            self.mark_synced()
        return count

    # --- the training loop ------------------------------------------------------------

    def fit(self, dataset, epochs, seed=0, verbose=0, validation_data=None, schedule="auto",
            initial_epoch=0):
        """What the app runs: per epoch, `resample(seed)` then `train` on every batch.

        A file exported without `optimizer=` runs the recommended recipe
        (`keras_medyate.recipe`: one warm-up epoch, then cosine decay to 0,
        per-variable clip 1): `fit` first sets its schedule over `epochs`
        epochs of this dataset (`set_schedule`), the step counter at 0 (at
        `initial_epoch` epochs in, as Keras' `fit(initial_epoch=...)`). A
        file exported with a Keras optimizer follows that optimizer's own
        schedule from its current step. Call `fit` once with every epoch
        (`validation_data` gives the per-epoch accuracy); after a restart
        (`set_weights` + `set_state`), continue with the same `epochs` and
        `initial_epoch` = the epochs done.

        Args:
            dataset: iterable of (x, y) batches (numpy arrays, a
                `tf.data.Dataset`, …) or a tuple (x, y) of arrays. Batches
                are regrouped into `batch_size` samples; a last partial batch
                is dropped (the `train` batch is static). Iterated once per
                epoch (and once more first, to count its batches, when the
                recipe's schedule is set and the dataset has no `len`).
            epochs: int, the last epoch (as in Keras: the total with
                `initial_epoch` = 0).
            seed: int, passed to every `resample`.
            verbose: int, 1 prints a line per epoch.
            validation_data: optional dataset as `dataset`: its accuracy
                (`evaluate`) is recorded after every epoch.
            schedule: `"auto"` (default: the recipe's schedule when the file
                was exported with it, else the file's own), `"recipe"` (set
                the recipe's schedule whatever the file) or `"file"` (never
                touch the file's schedule and step).
            initial_epoch: int, the epoch to start at (the recipe's schedule
                then starts at `initial_epoch * steps_per_epoch`). Defaults to 0.

        Returns:
            list of dicts per epoch: `loss` (mean), `steps`, `seconds` (of
            the training steps), `learning_rate` (at the epoch's end),
            `selection`, and `val_accuracy` with `validation_data`.

        Raises:
            NonFiniteLossError: the loss became NaN/inf; that step was not
                applied and `fit` stops (the message names the epoch and step).
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"`epochs` must be a positive int, got {epochs!r}.")
        if schedule not in ("auto", "recipe", "file"):
            raise ValueError(f"`schedule` must be 'auto', 'recipe' or 'file', got {schedule!r}.")
        if (isinstance(initial_epoch, bool) or not isinstance(initial_epoch, int)
                or not 0 <= initial_epoch < epochs):
            raise ValueError(f"`initial_epoch` must be an int in [0, epochs={epochs}), got "
                             f"{initial_epoch!r}.")
        recipe = self.optimizer.get("recipe")
        if schedule == "recipe" or (schedule == "auto" and recipe):
            from keras_medyate import recipe as recipe_lib  # noqa: PLC0415 - no TF

            recipe = recipe or {"peak_learning_rate": recipe_lib.LEARNING_RATE,
                                "warmup_epochs": recipe_lib.WARMUP_EPOCHS}
            steps = self.steps_per_epoch(dataset)
            self.set_schedule(recipe_lib.schedule_numbers(
                recipe["peak_learning_rate"], steps, epochs, recipe["warmup_epochs"]),
                step=initial_epoch * steps)
        history = []
        for epoch in range(initial_epoch, epochs):
            selection = self.resample(seed)
            losses = []
            start = time.perf_counter()
            for x, y in self._batches(dataset):
                try:
                    losses.append(self.train(x, y))
                except NonFiniteLossError as error:
                    raise NonFiniteLossError(
                        f"Epoch {epoch + 1}, step {len(losses) + 1}: {error}") from error
            seconds = time.perf_counter() - start
            if not losses:
                raise ValueError(f"The dataset holds fewer than batch_size={self.batch_size} "
                                 "samples: no training step ran.")
            record = {"epoch": epoch, "loss": float(np.mean(losses)), "steps": len(losses),
                      "seconds": seconds, "learning_rate": self.learning_rate(),
                      "selection": selection}
            if validation_data is not None:
                record["val_accuracy"] = self.evaluate(validation_data)
            history.append(record)
            if verbose:
                accuracy = (f", val accuracy {record['val_accuracy']:.4f}"
                            if "val_accuracy" in record else "")
                print(f"epoch {epoch + 1}: loss {record['loss']:.4f}{accuracy}, "
                      f"{selection.num_channels} channels, {selection.cost_units:,}/"
                      f"{self.budget_units:,} units, {seconds:.1f} s")
        return history

    def steps_per_epoch(self, dataset):
        """How many `train` steps one epoch of `dataset` makes (full batches only).

        Arrays are counted from their length; any other dataset is iterated
        once (its samples regrouped as `fit` regroups them).
        """
        if isinstance(dataset, tuple) and len(dataset) == 2 and hasattr(dataset[0], "shape"):
            return len(dataset[0]) // self.batch_size
        return sum(1 for _ in self._batches(dataset))

    def evaluate(self, dataset):
        """Top-1 accuracy (0..1) of `infer` over a dataset of (x, y) batches or a tuple (x, y)."""
        if isinstance(dataset, tuple) and len(dataset) == 2 and hasattr(dataset[0], "shape"):
            dataset = [dataset]
        correct = total = 0
        for x, y in dataset:
            logits = self.infer(np.asarray(x), logits=True)
            correct += int(np.sum(np.argmax(logits, axis=-1) == np.asarray(y).reshape(-1)))
            total += len(logits)
        if total == 0:
            raise ValueError("The evaluation dataset is empty.")
        return correct / total

    def _batches(self, dataset):
        if isinstance(dataset, tuple) and len(dataset) == 2 and hasattr(dataset[0], "shape"):
            dataset = [dataset]
        xs, ys, held = [], [], 0
        for x, y in dataset:
            x, y = np.asarray(x), np.asarray(y)
            xs.append(x)
            ys.append(y)
            held += len(x)
            while held >= self.batch_size:
                x_all, y_all = np.concatenate(xs), np.concatenate(ys)
                yield x_all[:self.batch_size], y_all[:self.batch_size]
                xs, ys = [x_all[self.batch_size:]], [y_all[self.batch_size:]]
                held -= self.batch_size
