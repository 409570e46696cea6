"""The MeDyate sampler running on the device (`resample` signature, LiteRT).

Compared with the Python sampler (`keras_medyate.strategies.medyate`) given
the same state: budget, first-epoch uniformity, the max-fill at the second
resample, and norm-proportional draws (chi-square tests); the stream and the
order compared element-wise with `random_stream` on adversarial inputs (the
same selections through whole training runs: `test_sampler_parity.py`).
"""

import math
import warnings

import keras
import numpy as np
import pytest

import keras_medyate as kmd

pytest.importorskip("ai_edge_litert", reason="needs the litert extra: pip install -e '.[litert]' "
                    "(included in '.[test]')")

from keras_medyate.strategies import base, medyate, random_stream  # noqa: E402
from tests.helpers import export, random_data, small_cnn  # noqa: E402
from tflite_export import sampler  # noqa: E402

DRAWS = 1500


def chi2_pvalue(statistic, dof):
    """Upper tail of the chi-square distribution (Wilson–Hilferty approximation)."""
    z = ((statistic / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


def weighted_state(device, memory, epoch=5):
    """A state where every channel is measured and the max-fill is done."""
    size = device.pool_size
    return {"mask": np.zeros(size, np.float32), "memory": np.asarray(memory, np.float32),
            "measured": np.ones(size, np.float32), "seen": np.ones(size, np.float32),
            "norm_sum": np.zeros(size, np.float32), "norm_steps": np.zeros(1, np.float32),
            "epoch": np.array([epoch], np.int32), "max_filled": np.ones(1, np.float32)}


def fresh_state(device):
    state = weighted_state(device, np.zeros(device.pool_size), epoch=0)
    state.update(measured=np.zeros(device.pool_size, np.float32),
                 seen=np.zeros(device.pool_size, np.float32),
                 max_filled=np.zeros(1, np.float32))
    return state


def python_selector(plan, memory=None, epsilon=1e-3):
    selector = medyate.MeDyateSelector(plan.pool, plan.budget_units, epsilon=epsilon)
    if memory is not None:
        selector.state["channel_memory"] = np.asarray(memory, np.float32).copy()
        selector.state["channel_measured"][:] = True
        selector.state["memory_max_filled"] = True
    return selector


def device_inclusions(device, draws, seed0=0):
    counts = np.zeros(device.pool_size)
    for seed in range(seed0, seed0 + draws):
        selection = device.resample(seed)
        assert selection.cost_units <= device.budget_units
        counts += selection.mask
    return counts


def python_inclusions(plan, selector, epoch, draws):
    counts = np.zeros(plan.pool.size)
    for seed in range(draws):
        ctx = base.SelectionContext(epoch=epoch, rng=np.random.default_rng([seed, 999]))
        counts[selector.select(ctx)] += 1
    return counts


@pytest.fixture(scope="module")
def one_channel(tmp_path_factory):
    """Search space = one layer of 12 equal-cost channels, budget = one channel:
    each resample returns exactly the first channel of the sampled order."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((4, 4, 3)),
        keras.layers.Conv2D(12, 1, name="c1"),
        keras.layers.Conv2D(5, 1, name="c2"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, name="head"),
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a budget covering the search space warns
        cost = kmd.plan(model, budget=10**4, layers=["c2"]).layer_info("c2").channel_units
    plan = kmd.plan(model, budget=cost, layers=["c2"])
    device, _ = export(model, plan, tmp_path_factory.mktemp("one"), batch_size=2)
    return model, plan, device


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """small_cnn: 5 layers of different channel costs, budget 600 units."""
    keras.utils.set_random_seed(0)
    model = small_cnn(size=16)
    plan = kmd.plan(model, budget=600)
    device, _ = export(model, plan, tmp_path_factory.mktemp("mixed"), batch_size=4,
                       learning_rate=0.05)
    return model, plan, device


def test_stream_is_exact_twins_and_uniform():
    """`sampler.words`/`exponentials` (TensorFlow ops) = `random_stream` (numpy)."""
    import tensorflow as tf  # noqa: PLC0415

    for seed, epoch in [(0, 0), (7, 3), (-5, 11), (2**31 - 1, 2**20)]:
        expected = random_stream.words(seed, epoch, 1000)
        got = sampler.words(tf.constant([seed], tf.int32), tf.constant([epoch], tf.int32),
                            1000).numpy()
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(sampler.exponentials(tf.constant(got)).numpy(),
                                      random_stream.exponentials(expected))
    e = random_stream.exponentials(random_stream.words(3, 0, 100_000))
    u = np.exp(-e.astype(np.float64))  # uniform on (0, 1) if E ~ Exp(1)
    counts = np.histogram(u, bins=50, range=(0, 1))[0]
    statistic = ((counts - 2000) ** 2 / 2000).sum()
    assert chi2_pvalue(statistic, 49) > 1e-4
    assert e.min() > 0 and np.isfinite(e).all()
    # Successive epochs and seeds are decorrelated.
    a = random_stream.exponentials(random_stream.words(3, 0, 10_000))
    b = random_stream.exponentials(random_stream.words(3, 1, 10_000))
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.05


def test_first_resample_is_the_uniform_draw_of_the_host_stream(mixed):
    """Bit-exact: the device's epoch-1 selection = `random_stream.medyate_order`
    (uniform) + "stop" budget fill, for several seeds."""
    _, plan, device = mixed
    for seed in (0, 1, 17, 123456):
        device.set_state(fresh_state(device))
        order = random_stream.medyate_order(seed, 0, np.zeros(plan.pool.size), 1e-3,
                                            uniform=True)
        expected = np.sort(base.fill_budget(order, plan.pool.costs, plan.budget_units, "stop"))
        selection = device.resample(seed)
        assert np.flatnonzero(selection.mask).tolist() == expected.tolist()
        assert selection.cost_units == plan.pool.cost_of(expected)
        assert selection.epoch == 1


def test_resample_never_exceeds_the_budget_and_is_deterministic(mixed):
    _, plan, device = mixed
    costs = plan.pool.costs
    rng = np.random.default_rng(0)
    memory = rng.exponential(size=plan.pool.size)
    for state in (fresh_state(device), weighted_state(device, memory)):
        device.set_state(state)
        for seed in range(300):
            selection = device.resample(seed)
            assert selection.cost_units == int(costs[selection.mask > 0].sum())
            assert 0 < selection.cost_units <= plan.budget_units
            # "stop" fill: the budget is nearly used (no channel costs more than 200).
            assert selection.cost_units > plan.budget_units - costs.max()
    device.set_state(weighted_state(device, memory))
    first = device.resample(42).mask
    device.set_state(weighted_state(device, memory))
    assert device.resample(42).mask.tolist() == first.tolist()
    device.set_state(weighted_state(device, memory))
    assert device.resample(43).mask.tolist() != first.tolist()


def test_first_epoch_first_draw_is_uniform(one_channel):
    _, plan, device = one_channel
    device.set_state(fresh_state(device))
    counts = device_inclusions(device, DRAWS)
    assert counts.sum() == DRAWS  # one channel per resample: the first draw
    expected = DRAWS / plan.pool.size
    statistic = ((counts - expected) ** 2 / expected).sum()
    assert chi2_pvalue(statistic, plan.pool.size - 1) > 1e-3


def test_first_draw_is_proportional_to_the_stored_norms(one_channel):
    _, plan, device = one_channel
    memory = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 40], np.float64)
    device.set_state(weighted_state(device, memory))
    counts = device_inclusions(device, DRAWS)
    weights = base.floored(memory, 1e-3)
    expected = DRAWS * weights / weights.sum()
    statistic = ((counts - expected) ** 2 / expected).sum()
    assert chi2_pvalue(statistic, plan.pool.size - 1) > 1e-3
    # Same distribution as the Python sampler (two-sample chi-square).
    python = python_inclusions(plan, python_selector(plan, memory), epoch=5, draws=DRAWS)
    both = counts + python
    keep = both > 0
    statistic = (((counts - python) ** 2)[keep] / both[keep]).sum()
    assert chi2_pvalue(statistic, keep.sum() - 1) > 1e-3


def test_inclusion_frequencies_match_the_python_sampler(mixed):
    _, plan, device = mixed
    memory = np.random.default_rng(1).exponential(size=plan.pool.size) ** 2
    for memory_or_none, epoch in ((None, 0), (memory, 5)):
        if memory_or_none is None:
            device.set_state(fresh_state(device))
        else:
            device.set_state(weighted_state(device, memory_or_none))
        draws = 800
        ours = device_inclusions(device, draws) / draws
        theirs = python_inclusions(plan, python_selector(plan, memory_or_none), epoch,
                                   draws) / draws
        sigma = np.sqrt(np.maximum(ours * (1 - ours) + theirs * (1 - theirs), 1e-4) / draws)
        assert np.all(np.abs(ours - theirs) < 5 * sigma + 1e-9), (epoch, ours, theirs)


def test_second_resample_max_fills_never_trained_channels(mixed):
    _, plan, device = mixed
    device.set_state(fresh_state(device))
    x, y = random_data(8, 16, seed=5)
    first = device.resample(seed=3)
    device.train(x[:4], y[:4])
    device.train(x[4:], y[4:])
    before = device.get_state()
    norms = before["norm_sum"] / before["norm_steps"][0]
    previous = np.flatnonzero(first.mask)

    second = device.resample(seed=3)
    state = device.get_state()
    trained = np.zeros(plan.pool.size, bool)
    trained[previous] = True
    np.testing.assert_allclose(state["memory"][trained], norms[trained], rtol=1e-6)
    np.testing.assert_allclose(state["memory"][~trained], norms[trained].max(), rtol=1e-6)
    assert state["measured"].tolist() == trained.astype(np.float32).tolist()
    assert state["max_filled"][0] == 1 and state["epoch"][0] == 2
    assert state["norm_steps"][0] == 0 and not state["norm_sum"].any()
    assert state["seen"].tolist() == np.maximum(first.mask, second.mask).tolist()

    # The Python sampler reaches the same memory from the same observation.
    selector = python_selector(plan)
    selector.select(base.SelectionContext(epoch=0, rng=np.random.default_rng(0)))
    full_norms = np.full(plan.pool.size, np.nan)
    full_norms[previous] = norms[previous]
    selector.select(base.SelectionContext(epoch=1, rng=np.random.default_rng(1),
                                          previous=previous, norms=full_norms))
    np.testing.assert_allclose(state["memory"], selector.state["channel_memory"], rtol=1e-6)

    # Third resample: only the channels of the second epoch are refreshed, the
    # max-fill is not repeated.
    device.train(x[:4], y[:4])
    fresh = device.get_state()["norm_sum"]
    device.resample(seed=3)
    third = device.get_state()
    chosen = second.mask > 0
    np.testing.assert_allclose(third["memory"][chosen], fresh[chosen], rtol=1e-6)
    np.testing.assert_array_equal(third["memory"][~chosen], state["memory"][~chosen])


def test_resample_without_training_keeps_the_memory(mixed):
    _, plan, device = mixed
    memory = np.linspace(1, 2, plan.pool.size)
    device.set_state(weighted_state(device, memory))
    device.resample(0)
    np.testing.assert_array_equal(device.get_state()["memory"], memory.astype(np.float32))


# --- the one definition: numpy `random_stream` vs LiteRT, element-wise ----------------

ADVERSARIAL_SIZE = 64
ADVERSARIAL_EPSILONS = (0.0, 1e-3, 0.5)


@pytest.fixture(scope="module")
def stream_model():
    """A LiteRT file of the sampler's stream, weights and order (builtin ops only)."""
    import tensorflow as tf  # noqa: PLC0415
    from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415

    from tflite_export import flatbuffer  # noqa: PLC0415

    size = ADVERSARIAL_SIZE
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([1], tf.int32, name="seed"),
                                  tf.TensorSpec([1], tf.int32, name="epoch")])
    def stream(seed, epoch):
        bits = sampler.words(seed, epoch, size)
        return {"words": tf.cast(bits, tf.int32), "variates": sampler.exponentials(bits)}

    functions = {"stream": stream.get_concrete_function()}
    for index, epsilon in enumerate(ADVERSARIAL_EPSILONS):
        def order(variates, memory, uniform, epsilon=epsilon):
            weights = sampler.sampling_weights(sampler.clean_norms(memory), epsilon,
                                               tf.greater(uniform, 0.5))
            return {"weights": weights, "order": sampler.draw_order(variates, weights)}

        order.__name__ = f"order{index}"  # the signature key
        functions[f"order{index}"] = tf.function(order, input_signature=[
            tf.TensorSpec([size], tf.float32, name="variates"),
            tf.TensorSpec([size], tf.float32, name="memory"),
            tf.TensorSpec([1], tf.float32, name="uniform")]).get_concrete_function()
    names = sorted(functions)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [functions[n] for n in names], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = converter.convert()
    flatbuffer.check_builtin_only(data, "stream test model")
    interpreter = Interpreter(model_content=data, num_threads=2)
    return {key: interpreter.get_signature_runner(key)
            for key in interpreter.get_signature_list()}, names


def _runner(stream_model, name):
    runners, names = stream_model
    return runners[name]


def adversarial_memories(rng, size):
    """Stored norms that stress the order: ties, zeros, huge/tiny/subnormal, NaN/inf."""
    f32 = np.finfo(np.float32)
    cases = {
        "all equal": np.full(size, 0.25),
        "all zero": np.zeros(size),
        "zeros and ties": np.where(np.arange(size) % 3 == 0, 0.0, 2.0),
        "one positive": np.eye(1, size, 7)[0],
        "huge": np.where(np.arange(size) % 2 == 0, f32.max, 1e38),
        "tiny": np.where(np.arange(size) % 2 == 0, 1e-45, 1e-38),
        "huge and tiny": np.where(np.arange(size) % 2 == 0, 3e38, 1e-40),
        "nan and inf": np.where(np.arange(size) % 4 == 0, np.nan,
                                np.where(np.arange(size) % 4 == 1, np.inf, 1.0)),
        "negative": -rng.exponential(size=size),
        "random": rng.exponential(size=size) ** 3,
        "few levels": rng.integers(0, 3, size=size) * 1e-3,
    }
    return {name: np.asarray(value, np.float32) for name, value in cases.items()}


def test_stream_in_litert_equals_numpy(stream_model):
    runner = _runner(stream_model, "stream")
    for seed, epoch in [(0, 0), (1, 1), (-1, 7), (2**31 - 1, 2**31 - 1), (-(2**31), 3)]:
        out = runner(seed=np.array([seed], np.int32), epoch=np.array([epoch], np.int32))
        bits = random_stream.words(seed, epoch, ADVERSARIAL_SIZE)
        np.testing.assert_array_equal(out["words"].view(np.uint32), bits)
        np.testing.assert_array_equal(out["variates"].view(np.int32),
                                      random_stream.exponentials(bits).view(np.int32))


def test_order_in_litert_equals_numpy_on_adversarial_inputs(stream_model):
    """Weights bit for bit and the same order, with ties in the variates (TOPK_V2
    and numpy's stable sort both put the lower index first), zero weights
    (epsilon 0: infinite keys), huge, tiny and subnormal norms, NaN and inf."""
    rng = np.random.default_rng(0)
    size = ADVERSARIAL_SIZE
    fresh = random_stream.exponentials(random_stream.words(5, 2, size))
    variate_cases = {
        "stream": fresh,
        "all tied": np.full(size, fresh[0]),
        "pairs tied": np.repeat(fresh[: size // 2], 2),
        "tiny and large": np.where(np.arange(size) % 2 == 0, np.float32(1e-7),
                                   np.float32(17.0)),
    }
    for index, epsilon in enumerate(ADVERSARIAL_EPSILONS):
        runner = _runner(stream_model, f"order{index}")
        for memory_name, memory in adversarial_memories(rng, size).items():
            for variates_name, variates in variate_cases.items():
                for uniform in (False, True):
                    out = runner(variates=np.asarray(variates, np.float32), memory=memory,
                                 uniform=np.array([float(uniform)], np.float32))
                    weights = random_stream.sampling_weights(
                        random_stream.clean_norms(memory), epsilon, uniform)
                    where = (epsilon, memory_name, variates_name, uniform)
                    np.testing.assert_array_equal(out["weights"].view(np.int32),
                                                  weights.view(np.int32), err_msg=str(where))
                    assert out["order"].tolist() == random_stream.draw_order(
                        variates, weights).tolist(), where
    # epsilon 0 does give zero weights, which go last in index order.
    weights = random_stream.sampling_weights(np.array([0, 2, 0, 1], np.float32), 0.0)
    assert weights.tolist() == [0.0, 1.0, 0.0, 0.5]
    assert random_stream.draw_order(np.ones(4, np.float32), weights).tolist() == [1, 3, 0, 2]
