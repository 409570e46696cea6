"""Arguments that used to be accepted silently get a message: what was wrong, the
value seen, what to do. On a model of this file only."""

import warnings

import keras
import numpy as np
import pytest

import keras_medyate as kmd

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def validation_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="first")(inputs)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(6, 1, name="second")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x), name="validation")


def data(n=8):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), (np.arange(n) % 2).astype("int32")


@pytest.fixture
def model_and_plan():
    model = validation_model()
    return model, kmd.plan(model, budget=150)


@pytest.mark.parametrize("seed, shown", [(-1, "-1"), (1.7, "1.7"), ("3", "'3'"), (True, "True")])
def test_resampler_seed_must_be_a_non_negative_integer(model_and_plan, seed, shown):
    _, plan = model_and_plan
    with pytest.raises(ValueError, match=rf"`seed` must be an integer >= 0 .*got {shown}\. "
                                         r"Pass e\.g\. `seed=0`"):
        kmd.ChannelResampler(plan, seed=seed)
    assert kmd.ChannelResampler(plan, seed=np.int64(4)).seed == 4


@pytest.mark.parametrize("steps", [-2, 0, 1.5])
def test_probe_steps_must_be_a_positive_integer(model_and_plan, steps):
    _, plan = model_and_plan
    with pytest.raises(ValueError, match=rf"`probe_steps` must be an integer >= 1 .*got {steps}"):
        kmd.ChannelResampler(plan, strategy=kmd.strategies.DetRGN(probe_data=data(),
                                                                  probe_steps=steps))
    assert kmd.ChannelResampler(plan, strategy=kmd.strategies.DetRGN(
        probe_data=data(), probe_steps=None)).strategy.probe_steps is None


@pytest.mark.parametrize("rate", [-1, -1e-3, float("nan"), float("inf"), "0.1"])
def test_rank_layers_learning_rate_must_be_non_negative(rate):
    with pytest.raises(ValueError, match=r"`learning_rate` must be a finite number >= 0 .*got "
                                         + repr(rate).replace("(", r"\(").replace(")", r"\)")):
        kmd.rank_layers(validation_model(), data(), epochs=1, learning_rate=rate)


def test_set_selection_refuses_bad_indices_and_an_over_budget_selection(model_and_plan):
    model, plan = model_and_plan
    trainer = kmd.SubnetworkModel(model, plan)
    size = plan.pool.size
    with pytest.raises(ValueError, match=rf"must be in \[0, {size}\).*got \[-1\]\. Negative "
                                         "indices are not counted from the end"):
        trainer.set_selection([-1])
    with pytest.raises(ValueError, match=rf"got \[{size}\]"):
        trainer.set_selection([size])
    with pytest.raises(ValueError, match=r"must be integers, got dtype float64"):
        trainer.set_selection([0.5, 1.0])
    with pytest.raises(ValueError, match=r"must be distinct, got \[2\] more than once"):
        trainer.set_selection([2, 2])
    with pytest.raises(ValueError, match=r"1-D list of flat channel indices"):
        trainer.set_selection([[0, 1]])
    with pytest.raises(ValueError, match=rf"costs {plan.pool.total_units:,} units, over the "
                                         rf"plan's budget of 150 units.*allow_over_budget=True"):
        trainer.set_selection(np.arange(size))
    # The masks did not change; an accepted selection does change them.
    assert trainer.current_selection().tolist() == list(range(size))
    trainer.set_selection([1])
    assert trainer.current_selection().tolist() == [1]
    trainer.set_selection(np.arange(size), allow_over_budget=True)
    assert trainer.current_selection().size == size


def test_plan_checks_k_rule_and_k_without_a_ranking():
    model = validation_model()
    with pytest.raises(ValueError, match=r"`k_rule` must be one of \('alpha', 'cumulative'\), "
                                         r"got 'bogus'"):
        kmd.plan(model, budget=150, k_rule="bogus")
    with pytest.raises(ValueError, match=r"`k=3` keeps the top-k layers of a ranking, but no "
                                         r"`ranking` was given.*Pass `ranking=`"):
        kmd.plan(model, budget=150, k=3)
    ranking = kmd.rank_layers(model, data(), epochs=1)
    with pytest.raises(ValueError, match=r"`k` must be an integer number of layers, got 1.5"):
        kmd.plan(model, budget=150, ranking=ranking, k=1.5)
    assert kmd.plan(model, budget=150, ranking=ranking, k=1).layers == [ranking.order()[0]]


def test_fit_without_a_resampler_warns_once_and_says_what_to_pass(model_and_plan):
    model, plan = model_and_plan
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01), loss=LOSS)
    x, y = data()
    with pytest.warns(UserWarning, match=r"without a ChannelResampler in `callbacks`.*Pass "
                                         r"`callbacks=\[kmd\.ChannelResampler\(plan"):
        trainer.fit(x, y, epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(x, y, epochs=1, verbose=0)  # once per model
        # With a resampler, or after set_selection, there is nothing to warn about.
        other = kmd.SubnetworkModel(validation_model(), plan)
        other.compile(optimizer=keras.optimizers.SGD(0.01), loss=LOSS)
        other.fit(x, y, epochs=1, verbose=0, callbacks=[kmd.ChannelResampler(plan)])
        third = kmd.SubnetworkModel(validation_model(), plan)
        third.compile(optimizer=keras.optimizers.SGD(0.01), loss=LOSS)
        third.set_selection([0])
        third.fit(x, y, epochs=1, verbose=0)
