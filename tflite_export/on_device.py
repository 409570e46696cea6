"""`OnDeviceTrainer`: drives an exported model through the LiteRT interpreter.

This is the reference for what the Android app does: every method is one
`runSignature` call (or a loop of them, for `fit`), with the same signature
and tensor names. It imports numpy, `ai_edge_litert` and keras-medyate's
numpy-only `ChannelPool` (no TensorFlow, no Keras), so it runs in a lean
process.

Example:

```python
from tflite_export import OnDeviceTrainer

trainer = OnDeviceTrainer("medyate.tflite", num_threads=2)
selection = trainer.resample(seed=0)        # MeDyate, on the device
print(selection.cost_units, {k: len(v) for k, v in selection.channels.items()})
loss = trainer.train(x_batch, y_batch)      # one SGD step on the selected channels
trainer.set_weights(trainer.get_weights())  # persistence round trip
```
"""

import dataclasses
import os

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.interpreter import OpResolverType

from keras_medyate.strategies.base import ChannelPool
from tflite_export import flatbuffer
from tflite_export import memory_model
from tflite_export import metadata as metadata_lib

_UNUSED = {"unused": np.zeros(1, np.int32)}


@dataclasses.dataclass
class Selection:
    """The channels selected on the device.

    Attributes:
        channels: dict layer name → sorted int64 array of input-channel indices.
        cost_units: int, memory units of the selection (≤ the budget after
            `resample`).
        mask: float32 array over the flat pool (1 = selected).
        epoch: int, resamples done so far (after a `resample`), or None.
    """

    channels: dict
    cost_units: int
    mask: np.ndarray
    epoch: int = None

    @property
    def num_channels(self):
        """Number of selected channels."""
        return int(sum(len(v) for v in self.channels.values()))


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

    Attributes:
        metadata: dict, the JSON embedded in the file (layers, pool, shapes).
        pool: `keras_medyate.strategies.ChannelPool`, the search space's
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

    def __init__(self, path, num_threads=2, use_xnnpack=True):
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
            resolver = ({} if use_xnnpack else {"experimental_op_resolver_type":
                                                 OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES})
            self._interpreter = Interpreter(model_path=path, num_threads=int(num_threads),
                                            **resolver)
            available = set(self._interpreter.get_signature_list())
        except (ValueError, RuntimeError) as error:
            raise flatbuffer.CorruptModelError(
                f"{path!r} could not be loaded by the LiteRT interpreter ({error}). The file "
                "is damaged or truncated; re-export or re-download it."
            ) from error
        missing = [s for s in metadata_lib.SIGNATURES if s not in available]
        if missing:
            raise metadata_lib.MetadataError(
                f"{path!r} lacks the signatures {missing} (it has {sorted(available)}); it "
                "was not written by `tflite_export.export_training_model`."
            )
        self.path = path
        self._runners = {}
        try:
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
        self._mask = self.get_state()["mask"] if self._channel_inputs else None

    def _run(self, signature, **inputs):
        if signature not in self._runners:
            self._runners[signature] = self._interpreter.get_signature_runner(signature)
        return self._runners[signature](**inputs)

    # --- training and inference ---------------------------------------------------

    def train(self, x, y):
        """One SGD step on a batch of exactly `batch_size` samples; returns the loss.

        Args:
            x: float array (batch_size, H, W, C), preprocessed like the Keras input.
            y: int array (batch_size,) of class indices.
        """
        x = self._images(x, self.batch_size, "train")
        y = np.asarray(y)
        if y.shape != (self.batch_size,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"`y` must be an int array of shape ({self.batch_size},) (class indices), got "
                f"{y.dtype} {y.shape}."
            )
        if y.min() < 0 or y.max() >= self.num_classes:
            raise ValueError(f"Labels must be in [0, {self.num_classes}), got {y.min()}..{y.max()}.")
        return float(self._run("train", x=x, y=y.astype(np.int32),
                               **self._channel_lists())["loss"][0])

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
            mask = self._mask if self._mask is not None else self.get_state()["mask"]
        return memory_model.predict(self.metadata["memory_model"], mask)

    def _channel_lists(self):
        """`train`'s per-layer channel inputs for the current mask (or none)."""
        if not self._channel_inputs:
            return {}
        # Every channel with mask > 0 (what `train` and `resample` count as selected).
        channels = self.pool.to_dict(np.flatnonzero(self._mask > 0.0))
        return {tensor: channels[name].astype(np.int32)
                for tensor, name in zip(self._channel_inputs, self.layer_names)}

    def _remember_mask(self, mask):
        if self._channel_inputs:
            self._mask = np.asarray(mask, np.float32).copy()

    def infer(self, x, logits=False):
        """Class probabilities (or logits) for a batch of images.

        With a dynamic-batch export any batch size works; otherwise the batch
        must have the exported `infer_batch_size`.
        """
        expected = self.metadata.get("infer_batch_size")
        x = self._images(x, expected, "infer")
        outputs = self._run("infer", x=x)
        return outputs["logits" if logits else "probabilities"]

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
        """Sets the SGD learning rate used by `train`."""
        rate = float(learning_rate)
        if not np.isfinite(rate) or rate <= 0:
            raise ValueError(f"`learning_rate` must be a positive finite float, got {learning_rate!r}.")
        return float(self._run("set_learning_rate",
                               learning_rate=np.array([rate], np.float32))["learning_rate"][0])

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
        """dict name → ndarray of the sampler state (see README: state tensors)."""
        return dict(self._run("get_state", **_UNUSED))

    def set_state(self, state):
        """Restores a state from `get_state()` (all tensors required).

        Raises:
            ValueError: a missing or unknown name, or a wrong shape.
        """
        arrays = self._checked(state, {k: s["shape"] for k, s in self._state.items()},
                               "state tensor", "get_state()")
        missing = sorted(set(self._state) - set(arrays))
        if missing:
            raise ValueError(f"`set_state` needs every state tensor; missing {missing}.")
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

    # --- the training loop ------------------------------------------------------------

    def fit(self, dataset, epochs, seed=0, verbose=0):
        """What the app runs: per epoch, `resample(seed)` then `train` on every batch.

        Args:
            dataset: iterable of (x, y) batches (numpy arrays, a
                `tf.data.Dataset`, …) or a tuple (x, y) of arrays. Batches
                are regrouped into `batch_size` samples; a last partial batch
                is dropped (the `train` batch is static).
            epochs: int.
            seed: int, passed to every `resample`.
            verbose: int, 1 prints a line per epoch.

        Returns:
            list of dicts per epoch: `loss` (mean), `steps`, `selection`.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"`epochs` must be a positive int, got {epochs!r}.")
        history = []
        for epoch in range(epochs):
            selection = self.resample(seed)
            losses = [self.train(x, y) for x, y in self._batches(dataset)]
            if not losses:
                raise ValueError(f"The dataset holds fewer than batch_size={self.batch_size} "
                                 "samples: no training step ran.")
            record = {"epoch": epoch, "loss": float(np.mean(losses)), "steps": len(losses),
                      "selection": selection}
            history.append(record)
            if verbose:
                print(f"epoch {epoch + 1}: loss {record['loss']:.4f}, "
                      f"{selection.num_channels} channels, {selection.cost_units:,}/"
                      f"{self.budget_units:,} units")
        return history

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
