"""`fit_classifier`: the model's head fitted to convergence on frozen features.

Before fine-tuning a pretrained network on a new task, train its fresh head
on the frozen backbone first ("linear probing, then fine-tuning", Kumar et
al., ICLR 2022; the two-stage recipe of Keras' transfer-learning guide). A
random head sends large, meaningless gradients into the backbone during the
first epochs; a fitted head does not. It costs no memory budget: the
classifier is always trained and never charged.

`fit_classifier` does it in one call:

1. one forward pass over the data caches the head's inputs (the pooled or
   flattened features), with a progress bar and a memory bound;
2. the features are standardised and an L2-regularised multinomial logistic
   regression is solved to convergence by L-BFGS (`scipy.optimize`);
3. the L2 strength is chosen on a stratified held-out part of the data, then
   the head is refitted on all of it with that strength;
4. the solution is written into the head's kernel and bias (the
   standardisation folded in), and a `ClassifierFit` report is returned.

Supported heads: a `Dense` layer on a feature vector (pooled or flattened),
or a 1×1 `Conv2D` on a 1×1 feature map (as in `keras.applications`'
MobileNetV3), with a linear or softmax activation, at the top level of a
functional or Sequential model whose backbone may be a nested model.

Example:

>>> import keras, numpy as np
>>> import keras_medyate as kmd
>>> model = keras.Sequential([keras.Input((8, 8, 3)),
...     keras.layers.Conv2D(8, 3, name="conv"), keras.layers.GlobalAveragePooling2D(),
...     keras.layers.Dense(2, activation="softmax", name="head")])
>>> x = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype("float32")
>>> y = (x[:, :, :, 0].mean(axis=(1, 2)) > 0).astype("int32")
>>> report = kmd.fit_classifier(model, (x, y), verbose=0)
>>> report.train_accuracy > 0.5
True
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Dict, Optional

import keras
import numpy as np

from keras_medyate import inventory as inventory_lib
from keras_medyate.data.batches import as_dataset

#: The L2 strengths tried by default (on standardised features, per example).
DEFAULT_L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: A feature whose standard deviation over the data is at most this is constant:
#: it is not rescaled, and the head cannot learn from it.
MIN_FEATURE_STD = 1e-6
#: Share of constant features above which `fit_classifier` warns.
DEGENERATE_SHARE = 0.9


@dataclasses.dataclass
class ClassifierFit:
    """What `fit_classifier` did.

    Attributes:
        classifier: str. Name of the head that was written.
        l2: float. The L2 strength chosen (and used for the final fit).
        train_accuracy: float. Accuracy of the final head on all the data given.
        validation_accuracy: float or None. Held-out accuracy of the chosen
            strength (None when the data was too small to hold any out).
        validation_accuracies: dict L2 strength → held-out accuracy.
        num_examples: int. Examples whose features were used.
        num_features: int. Size of the head's input.
        converged: bool. Whether L-BFGS met its tolerance in the final fit.
        feature_seconds: float. Time of the forward pass.
        solve_seconds: float. Time of the solver (every strength).
    """

    classifier: str
    l2: float
    train_accuracy: float
    validation_accuracy: Optional[float]
    validation_accuracies: Dict[float, float]
    num_examples: int
    num_features: int
    converged: bool
    feature_seconds: float
    solve_seconds: float

    @property
    def seconds(self):
        """Total time (features + solver)."""
        return self.feature_seconds + self.solve_seconds

    def summary(self):
        """One line for logs."""
        held_out = ("n/a" if self.validation_accuracy is None
                    else f"{100 * self.validation_accuracy:.1f} %")
        return (f"linear probe on {self.num_examples} examples x {self.num_features} features: "
                f"L2 {self.l2:g}, train {100 * self.train_accuracy:.1f} %, held-out "
                f"{held_out}, {self.seconds:.1f} s")


def fit_classifier(model, data, classifier=None, l2=DEFAULT_L2_GRID, validation_fraction=0.2,
                   max_iterations=1000, max_feature_bytes=4 * 2**30, seed=0, verbose=1):
    """Fits the model's classifier on frozen features and writes it into the head.

    Args:
        model: a built functional or Sequential `keras.Model`.
        data: `tf.data.Dataset` of `(x, y)` (or `(x, y, sample_weight)`)
            batches, or a tuple `(x, y)` of arrays. Labels are class ids or
            one-hot rows. Pass the training data *without* augmentation.
        classifier: str or None. Name of the head; default: the last Dense
            layer (as `kmd.plan` picks it), else the last updatable layer.
        l2: float or sequence of floats. L2 strength(s) on the standardised
            features; with several, the best on the held-out part is used.
            Defaults to `DEFAULT_L2_GRID`.
        validation_fraction: float in [0, 1). Share of each class held out
            to choose `l2`. Defaults to `0.2`.
        max_iterations: int. L-BFGS iterations per fit. Defaults to `1000`.
        max_feature_bytes: int. Bound on the cached features (float32); a
            larger dataset raises before it is exhausted. Defaults to 4 GiB.
        seed: int. Seed of the held-out split. Defaults to `0`.
        verbose: int. 1 shows a progress bar of the forward pass and the result
            line, 2 the result line only (for logs), 0 nothing. Defaults to `1`.

    Returns:
        A `ClassifierFit`.

    Raises:
        ValueError: the head is not a supported linear layer, a label does
            not fit the head, the data is empty, or the features exceed
            `max_feature_bytes`.
    """
    head = _find_head(model, classifier)
    grid = _l2_grid(l2)
    if not 0 <= validation_fraction < 1:
        raise ValueError(
            f"`validation_fraction` must be in [0, 1); received {validation_fraction!r}.")
    start = time.perf_counter()
    features, labels = _head_inputs(model, head, data, max_feature_bytes, verbose)
    feature_seconds = time.perf_counter() - start
    num_classes = head.units
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"Labels range over [{labels.min()}, {labels.max()}] but the head "
            f"{head.name!r} has {num_classes} outputs. Give the model a head with one output "
            "per class (e.g. `classes=` of `kmd.models.mcunet_5fps`).")
    use_bias = head.layer.use_bias
    mean = features.mean(axis=0) if use_bias else np.zeros(features.shape[1])
    scale = features.std(axis=0)
    _warn_if_degenerate(scale, head.name, len(labels))
    scale = np.where(scale > MIN_FEATURE_STD, scale, 1.0)
    standardised = (features - mean) / scale

    start = time.perf_counter()
    fit_part, held_out = _stratified_split(labels, validation_fraction, seed)
    accuracies = {}
    initial = None
    if len(held_out) and len(grid) > 1:
        for strength in grid:
            weights, _ = _solve(standardised[fit_part], labels[fit_part], num_classes, strength,
                                use_bias, max_iterations, initial)
            initial = weights
            accuracies[strength] = _accuracy(standardised[held_out], labels[held_out], weights)
        chosen = max(grid, key=lambda s: (accuracies[s], s))  # ties: the stronger L2
    else:
        chosen = grid[len(grid) // 2]
    weights, converged = _solve(standardised, labels, num_classes, chosen, use_bias,
                                max_iterations, initial)
    solve_seconds = time.perf_counter() - start

    kernel, bias = weights
    head_kernel = kernel / scale[:, None]
    head_bias = bias - mean @ head_kernel
    _write_head(head, head_kernel, head_bias)
    report = ClassifierFit(
        classifier=head.name, l2=float(chosen),
        train_accuracy=_accuracy(standardised, labels, weights),
        validation_accuracy=accuracies.get(chosen),
        validation_accuracies=accuracies, num_examples=len(labels),
        num_features=features.shape[1], converged=converged,
        feature_seconds=feature_seconds, solve_seconds=solve_seconds)
    if verbose:
        print(report.summary(), flush=True)
    return report


def _warn_if_degenerate(std, head_name, num_examples):
    """Warns when the head's inputs hardly vary: nothing can be learnt from them."""
    constant = std <= MIN_FEATURE_STD
    if num_examples < 2 or constant.mean() < DEGENERATE_SHARE:
        return
    warnings.warn(
        f"{int(constant.sum())} of the {len(std)} features feeding {head_name!r} are constant "
        f"over the {num_examples} examples (largest standard deviation {std.max():.1e}): the "
        "backbone's output does not depend on its input, so neither this head nor fine-tuning "
        "can learn (expect chance accuracy). Typical cause: a backbone with random weights "
        "whose BatchNorm layers are frozen (inference mode); load pretrained weights (e.g. "
        "`kmd.models.mcunet_5fps()`, `keras.applications.MobileNetV3Small(weights=\"imagenet\")`), "
        "and check that the images are preprocessed as the backbone expects.",
        UserWarning, stacklevel=3)


@dataclasses.dataclass
class _Head:
    name: str
    layer: object
    units: int


def _find_head(model, classifier):
    infos = inventory_lib.inventory(model)
    name = inventory_lib.find_classifier(infos, classifier)
    info = next(i for i in infos if i.name == name)
    layer = info.layer
    supported = ("Supported heads: a Dense layer on a feature vector, or a 1x1 Conv2D on a "
                 "1x1 feature map, with a linear or softmax activation, at the top level of "
                 "the model.")
    if "/" in name:
        raise ValueError(
            f"The classifier {name!r} sits inside a nested model; fit_classifier needs it at "
            f"the top level. {supported}")
    activation = getattr(layer.activation, "__name__", str(layer.activation))
    if activation not in ("linear", "softmax"):
        raise ValueError(
            f"The classifier {name!r} has activation {activation!r}; a linear probe fits "
            f"logits. {supported}")
    if info.kind == "dense":
        if len(layer.input.shape) != 2:
            raise ValueError(
                f"The classifier {name!r} is a Dense layer on an input of shape "
                f"{tuple(layer.input.shape)}, not on a feature vector. Pool or flatten the "
                f"features first. {supported}")
        return _Head(name, layer, int(info.kernel_shape[1]))
    if (info.kind == "conv" and info.kernel_shape[:2] == (1, 1) and info.input_hw == (1, 1)
            and layer.groups == 1):
        return _Head(name, layer, int(info.kernel_shape[3]))
    raise ValueError(
        f"The classifier {name!r} is a {type(layer).__name__} with kernel "
        f"{info.kernel_shape} on a {info.input_hw} input. {supported} Name another head "
        "with `classifier=`.")


def _l2_grid(l2):
    grid = (l2,) if np.isscalar(l2) else tuple(l2)
    if not grid or any(not np.isfinite(s) or s < 0 for s in grid):
        raise ValueError(
            f"`l2` must be a non-negative float or a non-empty sequence of them; received {l2!r}.")
    return tuple(float(s) for s in grid)


def _head_inputs(model, head, data, max_feature_bytes, verbose):
    """The head's inputs for every example, as float32 (N, D), and int labels."""
    extractor = keras.Model(model.inputs, head.layer.input)
    dataset = as_dataset(data)
    steps = int(dataset.cardinality()) if int(dataset.cardinality()) > 0 else None
    progress = keras.utils.Progbar(steps, unit_name="batch") if verbose == 1 else None
    chunks, labels, stored = [], [], 0
    for step, batch in enumerate(dataset):
        x, y = batch[0], batch[1]
        values = np.asarray(extractor.predict_on_batch(x), np.float32).reshape(len(y), -1)
        stored += values.nbytes
        if stored > max_feature_bytes:
            raise ValueError(
                f"The cached features of {head.name!r} exceed max_feature_bytes="
                f"{max_feature_bytes:,} after {step + 1} batches ({values.shape[1]} features "
                "per example). Pass fewer examples (e.g. `dataset.take(n)`) or raise "
                "`max_feature_bytes`.")
        chunks.append(values)
        y = np.asarray(y)
        labels.append(y.argmax(axis=-1) if y.ndim == 2 else y.reshape(-1))
        if progress is not None:
            progress.update(step + 1)
    if not chunks:
        raise ValueError("The data given to fit_classifier is empty.")
    return np.concatenate(chunks), np.concatenate(labels).astype(np.int64)


def _stratified_split(labels, fraction, seed):
    """Indices (fit, held out): `fraction` of each class held out, at least one
    example of every class that has two or more, none of a class of one."""
    if fraction == 0:
        return np.arange(len(labels)), np.array([], np.int64)
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) >= 2:
            held.append(members[:max(1, int(round(fraction * len(members))))])
    held = np.sort(np.concatenate(held)) if held else np.array([], np.int64)
    fit = np.setdiff1d(np.arange(len(labels)), held)
    return fit, held


def _solve(features, labels, num_classes, l2, use_bias, max_iterations, initial):
    """Multinomial logistic regression, mean cross-entropy + l2/2 ||W||^2, by L-BFGS."""
    from scipy import optimize  # noqa: PLC0415 - scipy is only needed here

    num_examples, num_features = features.shape
    x = features.astype(np.float64)
    onehot = np.zeros((num_examples, num_classes))
    onehot[np.arange(num_examples), labels] = 1.0
    kernel_size = num_features * num_classes

    def objective(params):
        kernel = params[:kernel_size].reshape(num_features, num_classes)
        logits = x @ kernel
        if use_bias:
            logits = logits + params[kernel_size:]
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1, keepdims=True))
        log_probs = logits - log_norm
        loss = -(onehot * log_probs).sum() / num_examples + 0.5 * l2 * (kernel**2).sum()
        residual = (np.exp(log_probs) - onehot) / num_examples
        grad_kernel = x.T @ residual + l2 * kernel
        grad = [grad_kernel.ravel()]
        if use_bias:
            grad.append(residual.sum(axis=0))
        return loss, np.concatenate(grad)

    if initial is None:
        start = np.zeros(kernel_size + (num_classes if use_bias else 0))
    else:
        start = np.concatenate([initial[0].ravel()] + ([initial[1]] if use_bias else []))
    result = optimize.minimize(objective, start, jac=True, method="L-BFGS-B",
                               options={"maxiter": max_iterations})
    kernel = result.x[:kernel_size].reshape(num_features, num_classes)
    bias = result.x[kernel_size:] if use_bias else np.zeros(num_classes)
    return (kernel, bias), bool(result.success)


def _accuracy(features, labels, weights):
    kernel, bias = weights
    return float(np.mean(np.argmax(features @ kernel + bias, axis=1) == labels))


def _write_head(head, kernel, bias):
    values = [kernel.reshape(head.layer.kernel.shape).astype(np.float32)]
    if head.layer.use_bias:
        values.append(bias.astype(np.float32))
    head.layer.set_weights(values)
