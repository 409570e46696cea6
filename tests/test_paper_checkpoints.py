"""The cost model on the papers' own checkpoints."""

import pytest

import keras_medyate as kmd


@pytest.fixture(autouse=True)
def _weights_env(weights_dir, monkeypatch):
    """Every test here loads a checkpoint by preset name from `weights_dir` (conftest)."""
    monkeypatch.setenv("KERAS_MEDYATE_WEIGHTS_DIR", weights_dir)


def test_mcunet_full_finetuning_memory_matches_the_paper():
    from keras_medyate import models

    model = models.mcunet_5fps()
    plan = kmd.plan(model, budget=15936)
    # MeDyate / TraDy: full fine-tuning of MCUNet-in1 needs 1,309,808 units.
    assert plan.full_finetune_units == 1_309_808
    assert plan.classifier == "classifier"
    assert len(plan.candidate_layers) == 42
    assert 100 * plan.budget_units / plan.full_finetune_units == pytest.approx(1.22, abs=0.01)


def test_mobilenetv2_checkpoint_has_no_feature_mix():
    """The paper's 1,252,320 units include a 112→448 feature-mix conv at 4x4
    (50,176 weights + 1,792 inputs = 51,968 units) that this checkpoint lacks."""
    from keras_medyate import models

    plan = kmd.plan(models.mobilenetv2_w035(), budget=27946)
    assert plan.full_finetune_units == 1_252_320 - (112 * 448 + 112 * 4 * 4)


def test_shipped_rankings_are_picked_for_the_paper_models():
    from keras_medyate import models

    model = models.mcunet_5fps(classes=10, input_shape=(96, 96, 3))
    plan = kmd.plan(model, budget=15936, ranking="lara")
    assert plan.ranking_metric == "lara" and plan.k_rule == "alpha=0.2"
    assert 3 <= len(plan.layers) <= 15
    assert sum(plan.layer_info(n).layer_units for n in plan.ranked_layers) >= 15936 / 0.2
    trady = kmd.plan(model, budget=15936, ranking="rgn", k_rule="cumulative")
    # TraDy reports K = 27 for MCUNet with its 97 % rule; ours comes from
    # another proxy dataset and must land close to it.
    assert 22 <= len(trady.layers) <= 32
    assert trady.ranking_metric == "rgn"
