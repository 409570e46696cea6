"""`plan()`: the search space, the classifier and the budget for one model.

A `Plan` says which layers' input channels may be trained (the *search
space*), which layer is the always-trained classifier, and the memory budget
in units. With a ranking, the search space is the top-K layers (MeDyate's
alpha rule by default, or TraDy's 97 % rule); without one it is every
updatable layer, which is what `full_random`, `static_random`, `det_rgn`,
`sparse_update` and full fine-tuning use.

Example:

>>> import keras
>>> import keras_medyate as kmd
>>> model = keras.applications.MobileNetV2(
...     input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10)
>>> plan = kmd.plan(model, budget="110KB")
>>> plan.classifier, plan.budget_units
('predictions', 28160)
"""

import dataclasses
import os
import warnings

import numpy as np

from keras_medyate import inventory as inventory_lib
from keras_medyate import memory
from keras_medyate import ranking as ranking_lib
from keras_medyate.channel_pool import ChannelPool
from keras_medyate.strategies import base as strategies_base

K_RULES = ("alpha", "cumulative")


@dataclasses.dataclass
class Plan:
    """What may be trained, and under which budget.

    Attributes:
        layers: list of str, the search-space layers in topological order
            (the classifier excluded).
        classifier: str, the always-trained head.
        budget_units: int, the memory budget in units.
        bytes_per_element: int, bytes of one unit (4 = float32).
        infos: list of `LayerInfo`, every updatable layer of the model.
        ranked_layers: list of str, the search space in ranking order (equal
            to `layers` without a ranking).
        ranking_metric: str or None, `"lara"` or `"rgn"`.
        k_rule: str or None, how K was chosen.
        fingerprint: str, the model's architecture fingerprint.
        ranking: the `LayerRanking` the search space came from, or None.
    """

    layers: list
    classifier: str
    budget_units: int
    bytes_per_element: int
    infos: list
    ranked_layers: list
    ranking_metric: str = None
    k_rule: str = None
    fingerprint: str = None
    ranking: object = dataclasses.field(default=None, repr=False, compare=False)

    def check_model(self, model, purpose="use"):
        """Raises unless this plan was made for `model`; returns its `LayerInfo`s.

        Args:
            model: the Keras model about to be trained or exported.
            purpose: what the caller does with it, for the message
                (`"train"`, `"export"`).
        """
        infos = inventory_lib.inventory(model)
        check_fingerprint(self.fingerprint, infos, purpose)
        return infos

    def layer_info(self, name):
        """The `LayerInfo` of a layer of the model."""
        for info in self.infos:
            if info.name == name:
                return info
        raise KeyError(f"No updatable layer named {name!r} in this plan's model.")

    @property
    def search_space(self):
        """`LayerInfo`s of the search space, in `layers` order."""
        return [self.layer_info(name) for name in self.layers]

    @property
    def candidate_layers(self):
        """Every updatable layer but the classifier, in topological order."""
        return [info.name for info in self.infos if info.name != self.classifier]

    @property
    def covers_whole_network(self):
        """True if the search space holds every updatable layer."""
        return set(self.layers) == set(self.candidate_layers)

    @property
    def pool(self):
        """The `ChannelPool` of the search space."""
        return ChannelPool.from_infos(self.search_space)

    @property
    def search_space_units(self):
        """Units to update every channel of the search space."""
        return inventory_lib.full_finetune_units(self.search_space)

    @property
    def full_finetune_units(self):
        """Units to update every layer but the classifier: the papers' full FT.

        The classifier is trained by every strategy and is not charged to the
        budget, so it is left out here too (as in the papers' reference).
        """
        return inventory_lib.full_finetune_units(
            [info for info in self.infos if info.name != self.classifier])

    @property
    def budget_bytes(self):
        return memory.units_to_bytes(self.budget_units, self.bytes_per_element)

    def summary(self):
        """A short human-readable description."""
        full = self.full_finetune_units
        lines = [
            f"Plan: {len(self.layers)} of {len(self.candidate_layers)} layers in the "
            f"search space ({self.pool.size} input channels), classifier {self.classifier!r}",
            f"  budget       {memory.format_units(self.budget_units, self.bytes_per_element)}"
            f" = {100 * self.budget_units / full:.2f} % of full fine-tuning",
            f"  search space {memory.format_units(self.search_space_units, self.bytes_per_element)}",
            f"  full FT      {memory.format_units(full, self.bytes_per_element)}",
        ]
        if self.ranking_metric:
            lines.append(f"  ranking      {self.ranking_metric}, K by {self.k_rule}: "
                         f"{', '.join(self.ranked_layers[:4])}…")
        return "\n".join(lines)

    def to_config(self):
        """JSON-serializable description (without the model)."""
        return {
            "layers": list(self.layers),
            "classifier": self.classifier,
            "budget_units": int(self.budget_units),
            "bytes_per_element": int(self.bytes_per_element),
            "ranked_layers": list(self.ranked_layers),
            "ranking_metric": self.ranking_metric,
            "k_rule": self.k_rule,
            "fingerprint": self.fingerprint,
            "infos": [info.to_config() for info in self.infos],
        }

    @classmethod
    def from_config(cls, config, model=None):
        """Rebuilds a plan; with `model`, its layers are re-attached."""
        if model is not None:
            infos = inventory_lib.inventory(model)
            check_fingerprint(config["fingerprint"], infos, "load it with")
        else:
            infos = [
                inventory_lib.LayerInfo(**{
                    **info,
                    "kernel_shape": tuple(info["kernel_shape"]),
                    "input_hw": tuple(info["input_hw"]),
                    "output_hw": tuple(info["output_hw"]),
                })
                for info in config["infos"]
            ]
        fields = {k: v for k, v in config.items() if k not in ("infos", "ranking")}
        return cls(infos=infos, **fields)

    def __repr__(self):
        return (f"<Plan {len(self.layers)} layers, budget {self.budget_units:,} units, "
                f"classifier {self.classifier!r}>")


def check_fingerprint(plan_fingerprint, infos, purpose="use"):
    """Raises a clear error unless `infos` (a model's inventory) has the plan's
    architecture fingerprint: the one check that a plan belongs to a model."""
    fingerprint = inventory_lib.model_fingerprint(infos)
    if fingerprint != plan_fingerprint:
        raise ValueError(
            f"The plan was made for another model (fingerprint {plan_fingerprint}, this "
            f"model's is {fingerprint}). Call `kmd.plan(model, budget, ...)` on the model "
            f"you {purpose}."
        )


def plan(model, budget, ranking=None, metric=None, k=None, k_rule="alpha",
         alpha=ranking_lib.ALPHA_OPT, fraction=0.97, layers=None, classifier=None,
         bytes_per_element=memory.DEFAULT_BYTES_PER_ELEMENT):
    """Builds the search space and budget for fine-tuning `model`.

    Args:
        model: a built functional or Sequential `keras.Model`.
        budget: int units (as in the papers) or a size string (`"110KB"`,
            `"0.5MB"`; 1 KB = 1024 B).
        ranking: None (search space = every updatable layer), a `LayerRanking`,
            a path to a saved ranking, or `"lara"`/`"rgn"` to use the ranking
            shipped with keras-medyate for this architecture.
        metric: `"lara"` or `"rgn"`; defaults to `"lara"` for the alpha rule
            and `"rgn"` for the cumulative rule.
        k: int, force the number of top layers (overrides `k_rule`); needs
            a `ranking`.
        k_rule: `"alpha"` (MeDyate: smallest K whose layers need at least
            budget/alpha units) or `"cumulative"` (TraDy: 97 % of the score);
            checked even without a ranking, where it has no effect.
        alpha: float, MeDyate's alpha_opt. Defaults to 0.2.
        fraction: float, TraDy's cumulative fraction. Defaults to 0.97.
        layers: list of layer names, an explicit search space (no ranking).
        classifier: name of the always-trained head (default: last Dense).
        bytes_per_element: int, bytes per unit. Defaults to 4.

    Returns:
        A `Plan`.

    Raises:
        ValueError: bad budget, model, ranking, rule or layer names, or `k`
            without a ranking. A budget that covers the whole search space
            only warns: every channel is then trained.
    """
    _check_plan_arguments(ranking, k, k_rule)
    budget_units = memory.parse_budget(budget, bytes_per_element)
    infos = inventory_lib.inventory(model)
    head = inventory_lib.find_classifier(infos, classifier)
    candidates = [info for info in infos if info.name != head]
    if not candidates:
        raise ValueError(
            f"The model has no updatable layer besides the classifier {head!r}: "
            "there is no channel to select. Use a model with Conv2D, "
            "DepthwiseConv2D or Dense layers before the head."
        )
    fingerprint = inventory_lib.model_fingerprint(infos)
    candidate_names = [info.name for info in candidates]
    units = {info.name: info.layer_units for info in candidates}
    ranking_metric = None
    used_rule = None

    if layers is not None and ranking is not None:
        raise ValueError("Pass either `layers=` (explicit search space) or `ranking=`, not both.")
    if layers is not None:
        unknown = [name for name in layers if name not in candidate_names]
        if unknown:
            raise ValueError(
                f"`layers` names {unknown} that are not updatable layers of the model "
                f"(or are the classifier {head!r}). Available: {candidate_names[:8]}…"
            )
        ranked = list(dict.fromkeys(layers))
    elif ranking is None:
        ranked = candidate_names
    else:
        if isinstance(ranking, str) and ranking in ranking_lib.METRICS and metric is None:
            metric = ranking
        backbone_fingerprint = inventory_lib.model_fingerprint(candidates)
        ranking = resolve_ranking(ranking, backbone_fingerprint)
        ranking.check_compatible(backbone_fingerprint, candidate_names)
        ranking_metric = metric or ("lara" if k_rule == "alpha" else "rgn")
        order = [name for name in ranking.order(ranking_metric) if name in units]
        if k is not None:
            if not 1 <= int(k) <= len(order):
                raise ValueError(f"`k` must be in [1, {len(order)}], got {k!r}.")
            count, used_rule = int(k), "fixed"
        elif k_rule == "alpha":
            count = ranking_lib.k_by_alpha(order, units, budget_units, alpha)
            used_rule = f"alpha={alpha}"
        else:
            scores = ranking.scores[ranking_metric]
            count = ranking_lib.k_by_cumulative([scores[n] for n in order], fraction)
            used_rule = f"cumulative={fraction}"
        ranked = order[:count]

    in_space = set(ranked)
    result = Plan(
        layers=[name for name in candidate_names if name in in_space],
        classifier=head,
        budget_units=budget_units,
        bytes_per_element=bytes_per_element,
        infos=infos,
        ranked_layers=ranked,
        ranking_metric=ranking_metric,
        k_rule=used_rule,
        fingerprint=fingerprint,
        ranking=ranking,
    )
    _check_budget(result)
    return result


def _check_plan_arguments(ranking, k, k_rule):
    """Raises for a `k_rule` that is not a rule, or a `k` that cannot apply."""
    if k_rule not in K_RULES:
        raise ValueError(f"`k_rule` must be one of {K_RULES}, got {k_rule!r}.")
    if k is None:
        return
    if ranking is None:
        raise ValueError(
            f"`k={k!r}` keeps the top-k layers of a ranking, but no `ranking` was given, so "
            "the search space is every layer and `k` would be ignored. Pass `ranking=` "
            "(`kmd.rank_layers(model, proxy_ds)`, a saved ranking, or 'lara'/'rgn'), or "
            "`layers=[...]` for an explicit search space, and drop `k`."
        )
    if not strategies_base.is_integer(k):
        raise ValueError(f"`k` must be an integer number of layers, got {k!r}.")


def _check_budget(result):
    costs = [info.channel_units for info in result.search_space]
    cheapest = min(costs)
    if result.budget_units < cheapest:
        cheapest_layer = result.layers[int(np.argmin(costs))]
        raise ValueError(
            f"The budget of {result.budget_units:,} units is below the cheapest channel of "
            f"the search space ({cheapest:,} units, layer {cheapest_layer!r}): no channel "
            "could ever be trained. Raise the budget or widen the search space."
        )
    if result.budget_units >= result.search_space_units:
        warnings.warn(
            f"The budget of {result.budget_units:,} units covers the whole search space "
            f"({result.search_space_units:,} units; full fine-tuning needs "
            f"{result.full_finetune_units:,}): every channel will be trained, i.e. full "
            "fine-tuning of the search space.",
            stacklevel=3,
        )


def resolve_ranking(ranking, fingerprint):
    """A `LayerRanking` from an object, a saved file or a shipped name."""
    if isinstance(ranking, ranking_lib.LayerRanking):
        return ranking
    if isinstance(ranking, (str, os.PathLike)):
        if str(ranking) in ranking_lib.METRICS:
            path = ranking_lib.shipped_ranking_path(fingerprint)
            if path is None:
                shipped = ranking_lib.shipped_rankings() or ["none yet"]
                raise ValueError(
                    f"No ranking ships with keras-medyate for this architecture "
                    f"(fingerprint {fingerprint}); shipped: {', '.join(shipped)}. "
                    "Compute one with `kmd.rank_layers(model, proxy_ds)`."
                )
            return ranking_lib.LayerRanking.load(path)
        return ranking_lib.LayerRanking.load(os.fspath(ranking))
    raise ValueError(
        "`ranking` must be a `LayerRanking`, a path to a saved ranking, 'lara' or 'rgn' "
        f"(shipped rankings), or None; got {type(ranking).__name__}."
    )
