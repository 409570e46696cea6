"""Layer ranking: LaRa (MeDyate) and RGN (TraDy), and the rules that pick K.

`rank_layers` runs a short full-gradient fine-tuning on a proxy dataset and
accumulates, per layer and per epoch:

- **LaRa** (MeDyate, arXiv 2510.20979, §2): `||dL/dW_i||_F / M_i`, the layer's
  gradient norm over the memory `M_i = C (C'D^2 + HW)` needed to update it;
- **RGN** (TraDy, arXiv 2510.19675, §3): `sum_c ||G_c|| / (C^W_c + C^A_c)`, the
  sum of the layer's reweighted channel gradient norms.

The per-epoch value is the mean over the epoch's steps; epochs are summed.
The user's weights are restored afterwards: ranking never changes the model.

Then K, the number of top-ranked layers forming the search space:

- `k_by_alpha` (MeDyate): the smallest K whose layers need at least
  `budget / alpha` units (alpha_opt = 0.2), all layers if none does;
- `k_by_cumulative` (TraDy): the smallest K holding 97 % of the total score.

Example:

>>> import keras, numpy as np
>>> import keras_medyate as kmd
>>> model = keras.Sequential([keras.Input((8, 8, 3)),
...     keras.layers.Conv2D(4, 3, name="c1"), keras.layers.Conv2D(4, 3, name="c2"),
...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="head")])
>>> data = (np.random.rand(8, 8, 8, 3).astype("float32"), np.arange(8) % 2)
>>> ranking = kmd.rank_layers(model, data, epochs=1, batch_size=4)
>>> sorted(ranking.order())
['c1', 'c2']
"""

import datetime
import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_medyate import channels as channels_lib
from keras_medyate import inventory as inventory_lib
from keras_medyate.data.batches import as_dataset

ALPHA_OPT = 0.2
METRICS = ("lara", "rgn")
FORMAT_VERSION = 1
#: `rank_layers`' SGD learning rate (see its docstring).
DEFAULT_LEARNING_RATE = 1e-3


class LayerRanking:
    """Cumulated LaRa and RGN scores of a model's layers.

    Args:
        scores: dict, metric name → {layer name: cumulated score}.
        layer_units: dict, layer name → memory units of the whole layer at the
            ranking resolution.
        fingerprint: str, `inventory.model_fingerprint` of the ranked layers
            (the classifier left out, so a ranking serves any head size).
        metadata: dict, how the ranking was made (epochs, steps, resolution…).
    """

    def __init__(self, scores, layer_units, fingerprint, metadata=None):
        unknown = sorted(set(scores) - set(METRICS))
        if unknown:
            raise ValueError(f"Unknown ranking metrics {unknown}; expected {METRICS}.")
        self.scores = {m: {k: float(v) for k, v in s.items()} for m, s in scores.items()}
        self.layer_units = {k: int(v) for k, v in layer_units.items()}
        self.fingerprint = fingerprint
        self.metadata = dict(metadata or {})

    @property
    def layer_names(self):
        """The ranked layers, in the model's topological order."""
        return list(self.layer_units)

    def order(self, metric="lara"):
        """Layer names sorted by descending cumulated score."""
        scores = self._metric(metric)
        return sorted(scores, key=lambda name: (-scores[name], self.layer_names.index(name)))

    def _metric(self, metric):
        if metric not in self.scores:
            raise ValueError(
                f"This ranking has no {metric!r} scores; it has {sorted(self.scores)}."
            )
        return self.scores[metric]

    def check_compatible(self, fingerprint, layer_names):
        """Raises if the ranking was computed on another architecture."""
        if fingerprint == self.fingerprint:
            return
        missing = sorted(set(self.layer_names) - set(layer_names))
        extra = sorted(set(layer_names) - set(self.layer_names))
        details = []
        if missing:
            details.append(f"layers in the ranking but not in the model: {missing[:5]}")
        if extra:
            details.append(f"layers in the model but not in the ranking: {extra[:5]}")
        if not details:
            details.append("same layer names but different kinds or kernel shapes")
        raise ValueError(
            "This ranking was computed on another model "
            f"(fingerprint {self.fingerprint}, the model's is {fingerprint}): "
            + "; ".join(details)
            + ". Rank this model with `kmd.rank_layers(model, proxy_ds)`."
        )

    def to_config(self):
        """JSON-serializable dict."""
        return {
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "layer_units": self.layer_units,
            "scores": self.scores,
            "metadata": self.metadata,
        }

    @classmethod
    def from_config(cls, config):
        """Inverse of `to_config`."""
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"Unsupported ranking format {config.get('format_version')!r}; "
                f"this version of keras-medyate reads format {FORMAT_VERSION}."
            )
        return cls(config["scores"], config["layer_units"], config["fingerprint"],
                   config.get("metadata"))

    def save(self, path):
        """Writes the ranking as JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_config(), f, indent=1)

    @classmethod
    def load(cls, path):
        """Reads a ranking written by `save`."""
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"Could not read a layer ranking from {path!r}: {error}") from error
        return cls.from_config(config)

    def __repr__(self):
        top = ", ".join(self.order()[:3]) if "lara" in self.scores else ""
        return f"<LayerRanking {len(self.layer_units)} layers, top LaRa: {top}…>"


def k_by_alpha(ordered_names, layer_units, budget_units, alpha=ALPHA_OPT):
    """MeDyate's rule: smallest K with `budget / M_K <= alpha` (all if none)."""
    if not 0 < alpha <= 1:
        raise ValueError(f"`alpha` must be in (0, 1], got {alpha!r}.")
    needed = budget_units / alpha
    total = 0
    for k, name in enumerate(ordered_names, start=1):
        total += layer_units[name]
        if total >= needed:
            return k
    return len(ordered_names)


def k_by_cumulative(ordered_scores, fraction=0.97):
    """TraDy's rule: smallest K whose top-K scores hold `fraction` of the total."""
    if not 0 < fraction <= 1:
        raise ValueError(f"`fraction` must be in (0, 1], got {fraction!r}.")
    scores = np.asarray(ordered_scores, np.float64)
    if scores.size == 0 or scores.sum() <= 0:
        return int(scores.size)
    cumulative = np.cumsum(scores) / scores.sum()
    return int(np.searchsorted(cumulative, fraction - 1e-12) + 1)


def rank_layers(model, dataset, epochs=2, steps_per_epoch=None,
                learning_rate=DEFAULT_LEARNING_RATE, loss=None, classifier=None, batch_size=32,
                verbose=0, metadata=None):
    """Ranks the layers of `model` by LaRa and RGN on a proxy dataset.

    Runs `epochs` of plain-SGD fine-tuning of every kernel (BatchNorm and
    dropout in inference mode), accumulating the scores, then restores the
    model's weights.

    Args:
        model: a built functional or Sequential `keras.Model`.
        dataset: a `tf.data.Dataset` of `(x, y)` batches, or a tuple of numpy
            arrays `(x, y)` (batched with `batch_size`). Labels are integer
            class ids that the model's head can predict.
        epochs: int, number of passes. Defaults to 2.
        steps_per_epoch: int or None (a full pass).
        learning_rate: float >= 0, SGD learning rate of the proxy run (0
            scores the given weights without moving them). Defaults to
            1e-3: the tiny-training checkpoints (BatchNorm folded into the
            convs) have weight gradients far larger than their weights in
            the first layers, and full fine-tuning diverges above ~3e-3.
        loss: a Keras loss; defaults to sparse categorical cross-entropy, from
            logits unless the model ends with a softmax.
        classifier: name of the head to leave out of the ranking (default:
            the last Dense layer).
        batch_size: int, only for numpy input.
        verbose: int, 1 prints one line per epoch.
        metadata: dict, extra entries stored with the ranking (for example
            the proxy dataset's name and the command that made it).

    Returns:
        A `LayerRanking`.

    Raises:
        ValueError: a model without layers to rank, `epochs` < 1, a
            `learning_rate` that is not a finite number >= 0, an empty
            dataset, or a proxy run that diverged.
    """
    infos = inventory_lib.inventory(model)
    head = inventory_lib.find_classifier(infos, classifier)
    ranked = [info for info in infos if info.name != head]
    if not ranked:
        raise ValueError(
            "The model has no updatable layer besides the classifier "
            f"{head!r}; there is nothing to rank."
        )
    if epochs < 1:
        raise ValueError(f"`epochs` must be at least 1, got {epochs!r}.")
    if (isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float, np.number))
            or not np.isfinite(learning_rate) or learning_rate < 0):
        raise ValueError(
            f"`learning_rate` must be a finite number >= 0 (the proxy run's SGD step; 0 "
            f"scores the current weights without moving them), got {learning_rate!r}. The "
            f"default, {DEFAULT_LEARNING_RATE:g}, suits the tiny-training checkpoints; lower "
            "it if the proxy run diverges."
        )
    dataset = as_dataset(dataset, batch_size)
    loss_fn = loss or default_loss(model)
    kernels = [info.kernel for info in ranked]
    head_info = next(info for info in infos if info.name == head)
    head_variables = [v for v in head_info.layer.trainable_weights]
    variables = kernels + head_variables
    axes = [info.channel_axis for info in ranked]
    rate = tf.constant(learning_rate, tf.float32)

    @tf.function
    def step(x, y):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in variables])
            y_pred = model(x, training=False)
            loss_value = loss_fn(y, y_pred)
        grads = tape.gradient(loss_value, variables)
        # Plain SGD written out (what `keras.optimizers.SGD` computes): it also
        # runs on a model built under a `tf.distribute` strategy, where this
        # cross-replica update writes every replica's copy.
        for variable, grad in zip(variables, grads):
            variable.assign_sub(grad * rate)
        channel_norms = [
            channels_lib.channel_norms(g, axis, tf) for g, axis in zip(grads[: len(kernels)], axes)
        ]
        layer_norms = [tf.norm(tf.reshape(g, [-1])) for g in grads[: len(kernels)]]
        return loss_value, layer_norms, channel_norms

    saved = [np.array(v.numpy()) for v in model.weights]
    lara = np.zeros(len(ranked))
    rgn = np.zeros(len(ranked))
    layer_units = np.array([info.layer_units for info in ranked], np.float64)
    channel_units = np.array([info.channel_units for info in ranked], np.float64)
    total_steps = 0
    try:
        for epoch in range(epochs):
            sum_layer = np.zeros(len(ranked))
            sum_channel = np.zeros(len(ranked))
            steps = 0
            for x, y in dataset.take(steps_per_epoch) if steps_per_epoch else dataset:
                loss_value, layer_norms, channel_norms = step(x, y)
                sum_layer += np.array([float(n) for n in layer_norms])
                sum_channel += np.array([float(tf.reduce_sum(n)) for n in channel_norms])
                steps += 1
            if steps == 0:
                raise ValueError("The proxy dataset is empty; `rank_layers` needs batches.")
            if not np.isfinite(float(loss_value)) or not np.all(np.isfinite(sum_layer)):
                raise ValueError(
                    f"The proxy fine-tuning diverged in epoch {epoch + 1} (loss "
                    f"{float(loss_value):.3g}) with learning_rate={learning_rate}; the "
                    "scores would be meaningless. Lower `learning_rate`."
                )
            lara += sum_layer / steps / layer_units
            rgn += sum_channel / steps / channel_units
            total_steps += steps
            if verbose:
                print(f"rank_layers: epoch {epoch + 1}/{epochs}, {steps} steps, "
                      f"last loss {float(loss_value):.4f}")
    finally:
        for variable, value in zip(model.weights, saved):
            variable.assign(value)
    names = [info.name for info in ranked]
    first = ranked[0]
    return LayerRanking(
        scores={"lara": dict(zip(names, lara)), "rgn": dict(zip(names, rgn))},
        layer_units={info.name: info.layer_units for info in ranked},
        fingerprint=inventory_lib.model_fingerprint(ranked),
        metadata={
            "epochs": int(epochs),
            "steps": int(total_steps),
            "learning_rate": float(learning_rate),
            "classifier": head,
            "input_shape": [int(d) for d in model.inputs[0].shape[1:]],
            "first_layer_input_hw": list(first.input_hw),
            "model_name": model.name,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "keras_version": keras.__version__,
            "tensorflow_version": tf.__version__,
            **(metadata or {}),
        },
    )


def default_loss(model):
    """Sparse categorical cross-entropy, from logits unless the output is softmax."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    from_probabilities = (
        isinstance(last, keras.layers.Softmax)
        or getattr(activation, "__name__", "") == "softmax"
        or (isinstance(last, keras.layers.Activation)
            and getattr(last.activation, "__name__", "") == "softmax")
    )
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not from_probabilities)


def shipped_ranking_path(fingerprint):
    """Path of the ranking shipped with the package for this architecture, or None."""
    folder = os.path.join(os.path.dirname(__file__), "rankings")
    if not os.path.isdir(folder):
        return None
    for file_name in sorted(os.listdir(folder)):
        if not file_name.endswith(".json"):
            continue
        path = os.path.join(folder, file_name)
        with open(path, encoding="utf-8") as f:
            if json.load(f).get("fingerprint") == fingerprint:
                return path
    return None


def shipped_rankings():
    """Names of the rankings shipped with the package."""
    folder = os.path.join(os.path.dirname(__file__), "rankings")
    if not os.path.isdir(folder):
        return []
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".json"))
