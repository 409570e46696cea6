"""The selection's one owner (`SelectionState.resample`), its one record, and configured strategies."""

import re
import warnings

import keras
import numpy as np
import pytest

import keras_medyate as kmd
from keras_medyate import selection
from keras_medyate.strategies import medyate, random
from tests.helpers import random_data, small_cnn

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def trainer_and_plan(budget=600):
    keras.utils.set_random_seed(0)
    model = small_cnn()
    plan = kmd.plan(model, budget=budget)
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS)
    return trainer, plan


def selections_by_hooks(strategy, epochs=4, seed=3, **deprecated):
    """The flat selections of `epochs` epochs, the resampler driven through its
    hooks, with made-up gradient norms recorded between epochs (no training)."""
    trainer, plan = trainer_and_plan()
    resampler = kmd.ChannelResampler(plan, strategy=strategy, seed=seed, **deprecated)
    resampler.set_model(trainer)
    resampler.on_train_begin()
    rng = np.random.default_rng(7)
    flat = []
    for epoch in range(epochs):
        resampler.on_epoch_begin(epoch)
        flat.append(plan.pool.from_dict(resampler.history[epoch].channels).tolist())
        trainer.selection_state.record_norms(
            [rng.gamma(1.0, size=count).astype(np.float32) for count in plan.pool.num_channels])
    return flat


# --- the owner ----------------------------------------------------------------------


def test_resample_applies_a_whole_draw_in_one_call():
    trainer, plan = trainer_and_plan()
    state = trainer.selection_state
    selector = kmd.strategies.MeDyate().build(plan)
    state.hold(selector.state_spec())
    first = state.resample(selector, seed=3)
    assert isinstance(first, selection.Selection)
    flat = plan.pool.from_dict(first.channels)
    np.testing.assert_array_equal(trainer.current_selection(), flat)
    np.testing.assert_array_equal(first.mask, plan.pool.flat_mask(flat))
    assert first.epoch == 0 and first.cost_units == plan.pool.cost_of(flat) <= 600
    assert int(state.epochs_selected.numpy()) == 1
    np.testing.assert_array_equal(state[selection.SEEN].numpy() > 0, first.mask > 0)
    assert first.explored == pytest.approx(first.mask.mean())
    assert first.seconds >= 0
    logs = {k: float(v.numpy()) for k, v in state.logs().items()}
    assert logs == pytest.approx({"budget_used": first.cost_units / 600,
                                  "channels_selected": first.num_channels,
                                  "explored": first.explored})

    # A step's norms, then the next draw observes them and zeroes the accumulators.
    norms = [np.arange(1, n + 1, dtype=np.float32) for n in plan.pool.num_channels]
    state.record_norms(norms)
    np.testing.assert_allclose(state.norms("mean"), np.concatenate(norms))
    second = state.resample(selector, seed=3, epoch=7)
    assert second.epoch == 7 and int(state.epochs_selected.numpy()) == 2
    assert state.norms() is None
    memory = state["channel_memory"].numpy()
    np.testing.assert_array_equal(memory[flat], np.concatenate(norms)[flat])
    assert state["memory_max_filled"].numpy()


def test_state_mapping_and_variables_keep_their_names_and_order():
    trainer, plan = trainer_and_plan()
    expected = []
    for k, name in enumerate(plan.layers):
        expected += [f"mask_{k}_{name}", f"norm_sum_{k}_{name}", f"norm_last_{k}_{name}"]
    expected += ["norm_steps", "channel_seen", "epochs_selected", "budget_used",
                 "channels_selected", "explored"]
    own = [v.path.split("/", 1)[1] for v in trainer.non_trainable_weights
           if v.path.startswith(trainer.name + "/")]
    assert own == expected
    assert list(trainer.selection_state) == ["channel_seen"]
    kmd.ChannelResampler(plan, strategy="medyate").set_model(trainer)
    assert list(trainer.selection_state) == ["channel_seen", "channel_memory",
                                             "channel_measured", "memory_max_filled"]
    assert trainer.masks is trainer.selection_state.masks


def test_host_and_device_share_one_record_type():
    assert kmd.EpochSelection is selection.Selection
    # As `tflite_export.on_device` builds it.
    record = selection.Selection(channels={"a": np.array([1])}, cost_units=3,
                                 mask=np.array([0, 1], np.float32), epoch=2)
    assert record.num_channels == 1 and record.seconds is None


# --- configured strategies ----------------------------------------------------------


@pytest.mark.parametrize("configured, name, options", [
    (lambda: kmd.strategies.MeDyate(epsilon=0.3), "medyate", {"epsilon": 0.3}),
    (lambda: kmd.strategies.SparseUpdate(criteria="magnitude-"), "sparse_update",
     {"criteria": "magnitude-"}),
    (lambda: kmd.strategies.DetRaw(probe_data=random_data(8), probe_steps=1), "det_raw",
     {"probe_data": random_data(8), "probe_steps": 1}),
])
def test_a_configured_strategy_selects_as_the_name_and_keywords(configured, name, options):
    expected = selections_by_hooks(configured())
    with pytest.warns(DeprecationWarning):
        assert selections_by_hooks(name, **options) == expected


def test_a_name_gives_the_default_options():
    _, plan = trainer_and_plan()
    resampler = kmd.ChannelResampler(plan, strategy="medyate")
    assert isinstance(resampler.strategy, kmd.strategies.MeDyate)
    assert resampler.strategy.epsilon == 1e-3
    assert selections_by_hooks("medyate") == selections_by_hooks(kmd.strategies.MeDyate())
    assert selections_by_hooks("trady") == selections_by_hooks(kmd.strategies.TraDy())
    # A selector class: the built-in strategy of that class, or `Strategy` around one's own.
    assert isinstance(kmd.ChannelResampler(plan, medyate.MeDyateSelector).strategy,
                      kmd.strategies.MeDyate)

    class Mine(random.UniformSelector):
        name = "mine"

    assert repr(kmd.ChannelResampler(plan, Mine).strategy) == "Strategy(Mine)"


def test_old_keywords_warn_and_name_the_replacement():
    _, plan = trainer_and_plan()
    with pytest.warns(DeprecationWarning, match=r"`epsilon` is deprecated.*"
                      r"`strategy=kmd\.strategies\.MeDyate\(epsilon=\.\.\.\)`"):
        resampler = kmd.ChannelResampler(plan, strategy="medyate", epsilon=0.2)
    assert resampler.strategy.epsilon == 0.2
    with pytest.warns(DeprecationWarning, match=r"kmd\.strategies\.TraDy\(\)` instead "
                      r"\(epsilon: no option of 'trady', ignored\)"):
        kmd.ChannelResampler(plan, strategy="trady", epsilon=0.2)
    with pytest.warns(DeprecationWarning, match=r"DetRGN\(probe_data=\.\.\., probe_steps=\.\.\.\)"):
        kmd.ChannelResampler(plan, strategy="det_rgn", probe_data=random_data(8), probe_steps=2)
    with pytest.raises(ValueError, match=r"`epsilon` given both.*drop them"):
        kmd.ChannelResampler(plan, strategy=kmd.strategies.MeDyate(), epsilon=0.2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epsilom'"):
        kmd.ChannelResampler(plan, epsilom=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kmd.ChannelResampler(plan, strategy=kmd.strategies.MeDyate(epsilon=0.2), seed=1)


@pytest.mark.parametrize("epsilon", [-0.1, 1, 1.5, float("nan"), "0.1", True, None])
def test_epsilon_must_be_a_number_in_zero_one(epsilon):
    message = rf"`epsilon` must be a number in \[0, 1\) .*got {re.escape(repr(epsilon))}\. Pass"
    for make in (kmd.strategies.MeDyate,
                 lambda epsilon: kmd.strategies.ProbRaw(probe_data=random_data(8), epsilon=epsilon)):
        with pytest.raises(ValueError, match=message):
            make(epsilon=epsilon)


def test_strategy_options_are_checked_when_the_strategy_is_made():
    with pytest.raises(ValueError, match=r"`criteria` must be one of .*got 'largest'\. Pass "
                                         r"e\.g\. `criteria='magnitude\+'`"):
        kmd.strategies.SparseUpdate(criteria="largest")
    with pytest.raises(ValueError, match=r"`scheme` must be .*with one ratio per layer, got "):
        kmd.strategies.SparseUpdate(scheme={"layers": [0, 1], "ratios": [1]})
    with pytest.raises(ValueError, match=r"ratios must be numbers in \(0, 1\] .*got 2"):
        kmd.strategies.SparseUpdate(scheme={"layers": [0], "ratios": [2]})
    with pytest.raises(ValueError, match=r"'det_rgn' is an oracle.*Pass `probe_data=`.*"
                                         r"`strategy=kmd\.strategies\.DetRGN\(probe_data=train_ds\)`"):
        kmd.strategies.DetRGN()
    with pytest.raises(ValueError, match=r"`probe_steps` must be an integer >= 1 .*got 0"):
        kmd.strategies.DetRaw(probe_data=random_data(8), probe_steps=0)
    with pytest.raises(TypeError):
        kmd.strategies.TraDy(epsilon=0.1)  # a strategy without that option
    with pytest.raises(ValueError, match=r"'trady' reads only the norms .*takes no `probe_data`"):
        kmd.strategies.Strategy(random.UniformSelector, probe_data=random_data(8))
    with pytest.raises(ValueError, match=r"`selector_class` must be a `ChannelSelector` subclass"):
        kmd.strategies.Strategy(object)
    with pytest.raises(ValueError, match=r"`strategy` must be a name .*got 42"):
        kmd.strategies.create(42)
    with pytest.raises(ValueError, match=r"Options \['epsilon'\] were given with the configured"):
        kmd.strategies.create(kmd.strategies.MeDyate(), epsilon=0.1)


def test_strategy_config_round_trip():
    for strategy in (kmd.strategies.MeDyate(epsilon=0.25), kmd.strategies.TraDy(),
                     kmd.strategies.SparseUpdate(scheme={"layers": [0], "ratios": [0.5]})):
        clone = kmd.strategies.create(strategy.get_config())
        assert type(clone) is type(strategy) and clone.get_config() == strategy.get_config()
    oracle = kmd.strategies.create({"name": "prob_raw", "probe_steps": 2, "epsilon": 0.1},
                                   probe_data=random_data(8))
    assert oracle.probe_steps == 2 and oracle.epsilon == 0.1


def test_no_strategy_option_is_left_on_the_callback():
    import inspect  # noqa: PLC0415

    parameters = inspect.signature(kmd.ChannelResampler).parameters
    assert not {"epsilon", "scheme", "criteria", "probe_data", "probe_steps"} & set(parameters)
