"""Selector behaviour on synthetic channel pools (numpy only, no TensorFlow)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_medyate.strategies import STRATEGIES, base, get, medyate, oracles, sparse_update
from tests.helpers import make_pool


def context(epoch, previous=None, norms=None, seed=0, kernels=None):
    return base.SelectionContext(epoch=epoch, rng=np.random.default_rng([seed, epoch]),
                                 previous=previous, norms=norms, kernels=kernels)


def test_fill_stop_ends_at_first_overflow_and_skip_goes_on():
    costs = np.array([5, 5, 8, 1, 1])
    order = np.arange(5)
    assert base.fill_budget(order, costs, 12, "stop").tolist() == [0, 1]
    assert base.fill_budget(order, costs, 12, "skip").tolist() == [0, 1, 3, 4]
    assert base.fill_budget(order, costs, 11, "skip").tolist() == [0, 1, 3]
    assert base.fill_budget(order, costs, 4, "stop").tolist() == []
    assert base.fill_budget(order, costs, 100, "stop").tolist() == [0, 1, 2, 3, 4]


def test_pool_dict_and_mask_roundtrip():
    pool = make_pool([3, 2], [10, 7])
    flat = np.array([4, 0, 2])
    assert {k: v.tolist() for k, v in pool.to_dict(flat).items()} == {"layer0": [0, 2], "layer1": [1]}
    assert pool.from_dict(pool.to_dict(flat)).tolist() == [0, 2, 4]
    assert pool.cost_of(flat) == 27
    masks = pool.to_masks(flat)
    assert masks["layer0"].tolist() == [1, 0, 1] and masks["layer1"].tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"must be in \[0, 2\), got \[5\]"):
        pool.from_dict({"layer1": [5]})


def test_medyate_epoch1_uniform_then_max_fill_of_unseen_channels():
    pool = make_pool([10], [1])
    selector = medyate.MeDyateSelector(pool, budget_units=3)
    first = selector.select(context(0))
    assert len(first) == 3
    norms = np.full(10, np.nan)
    norms[first] = [0.5, 2.0, 1.0]
    selector.select(context(1, previous=first, norms=norms))
    memory = selector.state["channel_memory"]
    np.testing.assert_allclose(memory[first], [0.5, 2.0, 1.0])
    unseen = np.setdiff1d(np.arange(10), first)
    np.testing.assert_allclose(memory[unseen], 2.0)  # the maximum observed norm
    assert selector.state["memory_max_filled"]
    # From epoch 3 on, only the trained channels are refreshed; the max-fill
    # is not repeated (unseen channels keep their stale value).
    second = np.sort(np.setdiff1d(np.arange(10), first))[:3]
    norms2 = np.full(10, np.nan)
    norms2[second] = 0.1
    selector.select(context(2, previous=second, norms=norms2))
    memory = selector.state["channel_memory"]
    np.testing.assert_allclose(memory[second], 0.1)
    np.testing.assert_allclose(memory[first], [0.5, 2.0, 1.0])
    rest = np.setdiff1d(unseen, second)
    np.testing.assert_allclose(memory[rest], 2.0)


def test_medyate_never_uses_norms_of_untrained_channels():
    pool = make_pool([6], [1])
    selector = medyate.MeDyateSelector(pool, budget_units=2)
    first = selector.select(context(0))
    norms = np.arange(6, dtype=float) + 1.0  # the model measures them all
    selector.select(context(1, previous=first, norms=norms))
    memory = selector.state["channel_memory"]
    np.testing.assert_allclose(memory[first], norms[first])
    unseen = np.setdiff1d(np.arange(6), first)
    np.testing.assert_allclose(memory[unseen], norms[first].max())


def test_first_draw_frequencies_are_proportional_to_norms():
    """The first channel drawn is channel c with probability N_c / sum N."""
    weights = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    rng = np.random.default_rng(123)
    trials = 20000
    counts = np.bincount([base.weighted_order(weights, rng)[0] for _ in range(trials)],
                         minlength=5)
    expected = weights / weights.sum() * trials
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 18.47, (counts, expected)  # chi2, 4 dof, p = 0.001


def test_medyate_selection_frequencies_follow_stored_norms():
    pool = make_pool([5], [1])
    selector = medyate.MeDyateSelector(pool, budget_units=1, epsilon=0.0)
    selector.state["channel_memory"][:] = [1.0, 2.0, 3.0, 4.0, 10.0]
    selector.state["channel_measured"][:] = True
    selector.state["memory_max_filled"] = True
    counts = np.zeros(5)
    for seed in range(8000):
        counts[selector.propose(context(5, seed=seed))] += 1
    expected = np.array([1, 2, 3, 4, 10]) / 20 * 8000
    assert (((counts - expected) ** 2) / expected).sum() < 18.47


def test_epsilon_floor_keeps_zero_norm_channels_reachable():
    weights = base.floored([0.0, 0.0, 5.0, np.nan], epsilon=0.1)
    np.testing.assert_allclose(weights, [0.5, 0.5, 5.0, 0.5])


def test_trady_is_uniform_over_the_pool():
    pool = make_pool([4, 4], [1, 1])
    selector = get("trady")(pool, budget_units=1)
    counts = np.bincount([selector.select(context(0, seed=s))[0] for s in range(8000)], minlength=8)
    assert (((counts - 1000) ** 2) / 1000).sum() < 24.32  # chi2, 7 dof, p = 0.001


def test_static_strategies_keep_their_first_selection():
    pool = make_pool([8, 8], [3, 5])
    selector = get("static_random")(pool, budget_units=20)
    first = selector.select(context(0))
    assert selector.select(context(1, previous=first)).tolist() == first.tolist()
    assert selector.select(context(7, previous=first)).tolist() == first.tolist()


def test_oracles_rank_by_full_norms():
    pool = make_pool([2, 2], [1, 10])
    norms = np.array([1.0, 2.0, 3.0, 4.0])
    det_raw = oracles.DetRawSelector(pool, budget_units=11)
    assert det_raw.select(context(0, norms=norms)).tolist() == [3]  # 4.0 costs 10, then 3.0 (10) overflows
    det_raw_skip = oracles.DetRawSelector(pool, budget_units=11, fill="skip")
    assert det_raw_skip.select(context(0, norms=norms)).tolist() == [1, 3]
    det_rgn = oracles.DetRGNSelector(pool, budget_units=11)
    # RGN = norm / cost: [1, 2, 0.3, 0.4] -> channels 1, 0, then 3 (cost 10) overflows.
    assert det_rgn.select(context(0, norms=norms)).tolist() == [0, 1]
    with pytest.raises(ValueError, match="probe_data"):
        det_rgn.select(context(0, norms=None))


def test_sparse_update_scheme_picks_largest_magnitude_channels():
    pool = make_pool([4, 8], [5, 2])
    kernels = {"layer0": np.ones((1, 1, 4, 3)) * np.array([1, 4, 2, 3])[None, None, :, None],
               "layer1": np.arange(8.0)[:, None] * np.ones((8, 2))}
    selector = sparse_update.SparseUpdateSelector(
        pool, budget_units=100, scheme={"layers": [0, "layer1"], "ratios": [0.5, 0.25]})
    chosen = pool.to_dict(selector.select(context(0, kernels=lambda: kernels)))
    assert chosen["layer0"].tolist() == [1, 3]
    assert chosen["layer1"].tolist() == [6, 7]
    with pytest.raises(ValueError, match="costs 28 units, more than the budget of 20 units"):
        sparse_update.SparseUpdateSelector(pool, 20, scheme={"layers": [0, 1], "ratios": [1, 0.5]})
    with pytest.raises(ValueError, match="index 5 is out of range"):
        sparse_update.SparseUpdateSelector(pool, 100, scheme={"layers": [5], "ratios": [1]})


def test_sparse_update_auto_scheme_fits_budget():
    pool = make_pool([8, 8, 8], [10, 10, 10])
    selector = sparse_update.SparseUpdateSelector(pool, budget_units=125, priority=["layer2", "layer0", "layer1"])
    assert selector.scheme == {"layer2": 1.0, "layer0": 0.5}
    kernels = {n: np.random.default_rng(0).normal(size=(8, 4)) for n in pool.layer_names}
    assert pool.cost_of(selector.select(context(0, kernels=lambda: kernels))) == 120


def test_unknown_strategy_lists_the_accepted_names():
    with pytest.raises(ValueError, match="Unknown strategy 'medyat'. Accepted: medyate, trady"):
        get("medyat")


BUDGETED = [s for s in STRATEGIES if not get(s).ignores_budget]


@settings(max_examples=1200, deadline=None)
@given(
    num_channels=st.lists(st.integers(1, 24), min_size=1, max_size=6),
    costs=st.lists(st.integers(1, 500), min_size=6, max_size=6),
    budget_fraction=st.floats(0.0, 1.2),
    strategy=st.sampled_from(BUDGETED),
    fill=st.sampled_from(["stop", "skip"]),
    seed=st.integers(0, 2**16),
)
def test_budget_is_never_exceeded(num_channels, costs, budget_fraction, strategy, fill, seed):
    pool = make_pool(num_channels, costs[: len(num_channels)])
    budget = max(int(pool.total_units * budget_fraction), int(pool.channel_costs.min()))
    cls = get(strategy)
    selector = cls(pool, budget, fill)
    rng = np.random.default_rng(seed)
    norms = rng.gamma(1.0, size=pool.size)
    kernels = {name: rng.normal(size=(3, 3, n, 2))
               for name, n in zip(pool.layer_names, pool.num_channels)}
    previous = None
    for epoch in range(3):
        selected = selector.select(context(epoch, previous=previous, norms=norms, seed=seed,
                                           kernels=lambda: kernels))
        assert pool.cost_of(selected) <= budget
        assert len(np.unique(selected)) == len(selected)
        assert selected.size == 0 or (selected.min() >= 0 and selected.max() < pool.size)
        previous = selected
        norms = rng.gamma(1.0, size=pool.size)
