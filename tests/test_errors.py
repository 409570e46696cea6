"""Every bad input gets a message that says what was wrong and what to do."""

import keras
import numpy as np
import pytest

import keras_medyate as kmd
from tests.helpers import random_data, small_cnn, three_layer_net


def test_budget_below_the_cheapest_channel():
    with pytest.raises(ValueError, match=r"budget of 10 units is below the cheapest channel .*22 units, layer 'pointwise'"):
        kmd.plan(three_layer_net(), budget=10)


def test_budget_above_full_finetuning_warns_and_trains_everything():
    model = three_layer_net()
    with pytest.warns(UserWarning, match="covers the whole search space"):
        plan = kmd.plan(model, budget="1MB")
    trainer = kmd.SubnetworkModel(model, plan)
    trainer.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    resampler = kmd.ChannelResampler(plan, strategy="medyate")
    x, y = random_data(8, size=8)
    trainer.fit(x, y, epochs=1, verbose=0, callbacks=[resampler])
    assert resampler.history[0].cost_units == plan.search_space_units


def test_unparseable_budget():
    with pytest.raises(ValueError, match="Could not parse the budget 'a lot'"):
        kmd.plan(three_layer_net(), budget="a lot")


def test_model_without_updatable_layers():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="only")(inputs))
    with pytest.raises(ValueError, match="no updatable layer besides the classifier 'only'"):
        kmd.plan(model, budget=10)
    frozen = small_cnn()
    frozen.trainable = False
    with pytest.raises(ValueError, match="set.*trainable|unfreeze"):
        kmd.plan(frozen, budget=100)


def test_subclassed_model():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)
            self.head = keras.layers.Dense(2)

        def call(self, x):
            return self.head(keras.ops.mean(self.conv(x), axis=(1, 2)))

    net = Net()
    net(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed model .*Build it as a functional model"):
        kmd.plan(net, budget=100)


def test_unbuilt_model():
    model = keras.Sequential([keras.layers.Conv2D(4, 3), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="is not built.*keras.Input"):
        kmd.plan(model, budget=100)


def test_unknown_spatial_size():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="c")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match="unknown spatial input size .*fixed input size"):
        kmd.plan(model, budget=100)


def test_ranking_from_another_model():
    x, y = random_data(8, size=8)
    ranking = kmd.rank_layers(three_layer_net(), (x, y), epochs=1)
    with pytest.raises(ValueError, match="computed on another model.*not in the model: \\['conv'"):
        kmd.plan(small_cnn(), budget=500, ranking=ranking)


def test_plan_for_another_model():
    plan = kmd.plan(three_layer_net(), budget=100)
    with pytest.raises(ValueError, match="plan was made for another model"):
        kmd.SubnetworkModel(small_cnn(), plan)


def test_unknown_strategy():
    plan = kmd.plan(three_layer_net(), budget=100)
    with pytest.raises(ValueError, match="Unknown strategy 'random'. Accepted: medyate, trady, full_random"):
        kmd.ChannelResampler(plan, strategy="random")


def test_whole_network_strategy_needs_a_whole_network_plan():
    model = three_layer_net()
    plan = kmd.plan(model, budget=50, layers=["pointwise"])
    with pytest.raises(ValueError, match="samples the whole network.*kmd.plan\\(model, budget\\)"):
        kmd.ChannelResampler(plan, strategy="full_random")


def test_oracle_needs_probe_data():
    plan = kmd.plan(three_layer_net(), budget=100)
    with pytest.raises(ValueError, match="oracle.*Pass `probe_data=`"):
        kmd.ChannelResampler(plan, strategy="det_rgn")


def test_resampler_on_a_plain_model():
    model = three_layer_net()
    plan = kmd.plan(model, budget=100)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = random_data(4, size=8)
    with pytest.raises(ValueError, match="must be passed to the `fit` of a `kmd.SubnetworkModel`"):
        model.fit(x, y, verbose=0, callbacks=[kmd.ChannelResampler(plan)])


def test_resampler_with_another_plan():
    model = three_layer_net()
    trainer = kmd.SubnetworkModel(model, kmd.plan(model, budget=100))
    trainer.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = random_data(4, size=8)
    with pytest.raises(ValueError, match="resampler's plan differs"):
        trainer.fit(x, y, verbose=0, callbacks=[kmd.ChannelResampler(kmd.plan(model, budget=200))])


def test_bad_arguments():
    model = three_layer_net()
    plan = kmd.plan(model, budget=100)
    with pytest.raises(ValueError, match="`fill` must be one of"):
        kmd.ChannelResampler(plan, fill="greedy")
    with pytest.raises(ValueError, match="`norm_statistic` must be one of"):
        kmd.ChannelResampler(plan, norm_statistic="max")
    with pytest.raises(ValueError, match="`k_rule` must be one of"):
        kmd.plan(model, budget=100, ranking=kmd.rank_layers(model, random_data(4, size=8)), k_rule="best")
    with pytest.raises(ValueError, match="`layers` names \\['nope'\\]"):
        kmd.plan(model, budget=100, layers=["nope"])
    with pytest.raises(ValueError, match="`classifier='nope'` is not an updatable layer"):
        kmd.plan(model, budget=100, classifier="nope")
    with pytest.raises(ValueError, match="`batchnorm` must be one of"):
        kmd.SubnetworkModel(model, plan, batchnorm="maybe")
    with pytest.raises(ValueError, match="No ranking ships with keras-medyate for this architecture"):
        kmd.plan(model, budget=100, ranking="lara")
    with pytest.raises(ValueError, match="Could not read a layer ranking"):
        kmd.plan(model, budget=100, ranking="/nonexistent/ranking.json")
