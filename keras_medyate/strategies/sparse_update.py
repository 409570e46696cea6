"""Sparse Update (Lin et al., NeurIPS 2022), as a static channel scheme.

A scheme names layers and, for each, the ratio of its input channels to
update; the channels are those of largest per-input-channel weight L2 norm
(`"magnitude+"`, the paper's choice), smallest (`"magnitude-"`) or random.
The selection is made once, before training, and kept.

Scheme format (as the tiny-training configs, with 0-based conv indices counted
from the input over the plan's layers in topological order, or layer names):

    {"layers": [21, 24, 27, 30, 36, 39], "ratios": [1, 1, 1, 1, 0.125, 0.25]}

Without a scheme, one is built for the budget: the plan's layers are walked in
plan order (ranked order when the plan has a ranking) and each gets the
largest ratio among 1, 1/2, 1/4, 1/8 that still fits the budget.

Lin et al. also update the biases of the last layers; keras-medyate trains
kernels only (biases stay frozen), so this is the "SparseUpdate-style static"
baseline of TraDy's comparison, not a re-implementation of the search.

`SparseUpdate(scheme=..., criteria=...)` is the strategy as `ChannelResampler`
takes it; `SparseUpdateSelector` picks the channels.
"""

import numpy as np

from keras_medyate import channels as channels_lib
from keras_medyate.strategies import base
from keras_medyate.strategies import strategy as strategy_lib

CRITERIA = ("magnitude+", "magnitude-", "random")
AUTO_RATIOS = (1.0, 0.5, 0.25, 0.125)


def check_criteria(criteria):
    """Raises a clear `ValueError` unless `criteria` is one of `CRITERIA`."""
    if criteria not in CRITERIA:
        raise ValueError(
            f"`criteria` must be one of {CRITERIA} (how a scheme layer's channels are "
            f"chosen), got {criteria!r}. Pass e.g. `criteria='magnitude+'`, the paper's choice."
        )


def check_scheme(scheme):
    """Raises a clear `ValueError` unless `scheme` is None or has the scheme format.

    The layers it names are checked against a plan by `SparseUpdateSelector`.
    """
    if scheme is None:
        return
    if not isinstance(scheme, dict) or set(scheme) - {"layers", "ratios"} or \
            len(scheme.get("layers", [])) != len(scheme.get("ratios", [None])):
        raise ValueError(
            "`scheme` must be {'layers': [...], 'ratios': [...]} with one ratio "
            f"per layer, got {scheme!r}. Pass e.g. `{{'layers': [21, 24], 'ratios': "
            "[1, 0.5]}`, or None to build a scheme for the budget."
        )
    for ratio in scheme["ratios"]:
        number = isinstance(ratio, (int, float, np.integer, np.floating)) and not isinstance(
            ratio, (bool, np.bool_))
        if not number or not 0 < ratio <= 1:
            raise ValueError(
                f"Scheme ratios must be numbers in (0, 1] (the fraction of a layer's input "
                f"channels to update), got {ratio!r}."
            )


class SparseUpdateSelector(base.ChannelSelector):
    """Static layers + ratios, channels by weight magnitude.

    Args:
        pool: `ChannelPool`, the search space.
        budget_units: int, the budget; a given scheme must fit in it.
        fill: unused (kept for a uniform signature).
        scheme: dict with `layers` (indices or names) and `ratios`, or None
            to build one for the budget.
        criteria: `"magnitude+"`, `"magnitude-"` or `"random"`.
        layer_order: list of layer names, the topological order that scheme
            indices refer to. Defaults to the pool order.
        priority: list of layer names, the order in which a scheme built for
            the budget visits the layers. Defaults to the pool order.
    """

    name = "sparse_update"
    static = True

    def __init__(self, pool, budget_units, fill="stop", scheme=None,
                 criteria="magnitude+", layer_order=None, priority=None):
        super().__init__(pool, budget_units, fill)
        check_criteria(criteria)
        self.criteria = criteria
        self.layer_order = list(layer_order or pool.layer_names)
        self.priority = [n for n in (priority or pool.layer_names) if n in pool.layer_names]
        self.scheme = self._resolve(scheme) if scheme is not None else self._auto_scheme()

    @classmethod
    def from_plan(cls, plan, fill="stop", **options):
        """Scheme indices count over the plan's layers; a built scheme visits
        them in ranking order."""
        return super().from_plan(plan, fill, layer_order=plan.candidate_layers,
                                 priority=plan.ranked_layers, **options)

    def _resolve(self, scheme):
        check_scheme(scheme)
        resolved = {}
        for layer, ratio in zip(scheme["layers"], scheme["ratios"]):
            if isinstance(layer, (int, np.integer)):
                if not 0 <= layer < len(self.layer_order):
                    raise ValueError(
                        f"Scheme layer index {layer} is out of range: the plan has "
                        f"{len(self.layer_order)} layers (0-based, from the input)."
                    )
                layer = self.layer_order[layer]
            if layer not in self.pool.layer_names:
                raise ValueError(
                    f"Scheme layer {layer!r} is not in the plan's search space "
                    f"{list(self.pool.layer_names)}."
                )
            resolved[layer] = float(ratio)
        cost = self._scheme_cost(resolved)
        if cost > self.budget_units:
            raise ValueError(
                f"The sparse-update scheme costs {cost:,} units, more than the budget "
                f"of {self.budget_units:,} units; lower its ratios or raise the budget."
            )
        return resolved

    def _count(self, layer, ratio):
        k = self.pool.layer_names.index(layer)
        return max(1, int(self.pool.num_channels[k] * ratio))

    def _scheme_cost(self, scheme):
        return sum(
            self._count(layer, ratio) * int(self.pool.channel_costs[self.pool.layer_names.index(layer)])
            for layer, ratio in scheme.items()
        )

    def _auto_scheme(self):
        scheme, remaining = {}, self.budget_units
        for layer in self.priority:
            for ratio in AUTO_RATIOS:
                cost = self._scheme_cost({layer: ratio})
                if cost <= remaining:
                    scheme[layer] = ratio
                    remaining -= cost
                    break
        return scheme

    def propose(self, context):
        kernels = context.kernels() if (context.kernels and self.criteria != "random") else {}
        selected = []
        for layer, ratio in self.scheme.items():
            k = self.pool.layer_names.index(layer)
            count = self._count(layer, ratio)
            if self.criteria == "random":
                channels = context.rng.permutation(self.pool.num_channels[k])[:count]
            else:
                if layer not in kernels:
                    raise ValueError(
                        f"Strategy 'sparse_update' needs the kernel of {layer!r} to rank "
                        "its channels by magnitude."
                    )
                kernel = kernels[layer]
                magnitude = channels_lib.channel_norms(kernel, channels_lib.input_axis(kernel))
                ranked = np.argsort(-magnitude if self.criteria == "magnitude+" else magnitude,
                                    kind="stable")
                channels = ranked[:count]
            selected.append(np.asarray(channels, np.int64) + self.pool.offsets[k])
        return np.concatenate(selected) if selected else np.zeros(0, np.int64)


class SparseUpdate(strategy_lib.Strategy):
    """Sparse Update (Lin et al., NeurIPS 2022) as a static scheme: layers, ratios, magnitude.

    Args:
        scheme: dict `{"layers": [...], "ratios": [...]}` (0-based layer
            indices over the plan's layers from the input, or layer names;
            one ratio in (0, 1] per layer), or None to build one for the
            budget. Defaults to None.
        criteria: `"magnitude+"` (the channels of largest weight norm, the
            paper's choice; default), `"magnitude-"` (smallest) or `"random"`.

    Raises:
        ValueError: a scheme not in that format, or an unknown `criteria`.
            (Its layers and cost are checked against the plan when the
            resampler builds the selector.)

    Example:

    >>> import keras_medyate as kmd
    >>> kmd.strategies.SparseUpdate(scheme={"layers": [0, 2], "ratios": [1, 0.5]})
    SparseUpdate(scheme={'layers': [0, 2], 'ratios': [1, 0.5]}, criteria='magnitude+')
    """

    selector_class = SparseUpdateSelector
    option_names = ("scheme", "criteria")

    def __init__(self, scheme=None, criteria="magnitude+"):
        check_scheme(scheme)
        check_criteria(criteria)
        self.scheme = scheme
        self.criteria = criteria
        super().__init__(scheme=scheme, criteria=criteria)

