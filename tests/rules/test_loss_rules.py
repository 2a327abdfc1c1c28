import pytest
import torch
from torch import nn

import trainwise as tw
from builders import blobs, mlp, setup, static
from helpers import assert_fires, assert_silent
from trainwise.stages.static import StaticStage

MULTILABEL = "multilabel-needs-sigmoid"
WRONG_LOSS = "wrong-loss-for-task"
OUTPUTS = "output-size-mismatch"


def multi_hot(n=256, labels=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, labels, generator=g) > 0.5).float()


@pytest.mark.fires(MULTILABEL)
def test_multi_hot_targets_with_cross_entropy():
    x, _ = blobs()
    y = multi_hot()
    finding = assert_fires(static(setup(mlp, x, y)), MULTILABEL, severity="error")
    several = int(((y > 0).sum(1) > 1).sum())
    assert finding.evidence["multi_hot_rows"] == several
    assert "BCEWithLogitsLoss" in finding.fix


@pytest.mark.silent(MULTILABEL)
def test_multi_hot_with_bce_and_soft_labels_with_ce_are_silent():
    x, y = blobs()
    assert_silent(static(setup(mlp, x, multi_hot(), loss=nn.BCEWithLogitsLoss())), MULTILABEL)
    soft = nn.functional.one_hot(y, 4).float() * 0.9 + 0.025  # label smoothing: rows sum to 1
    report = static(setup(mlp, x, soft))
    assert_silent(report, MULTILABEL)
    assert_silent(report, WRONG_LOSS)


@pytest.mark.fires(WRONG_LOSS)
def test_cross_entropy_on_a_continuous_target():
    x, _ = blobs()
    y = torch.randn(len(x), 1) * 3 + 10
    finding = assert_fires(static(setup(lambda: mlp(classes=1), x, y)), WRONG_LOSS)
    assert "always 0" in finding.message
    assert "MSELoss" in finding.fix


@pytest.mark.fires(WRONG_LOSS)
def test_mse_on_integer_class_labels():
    x, y = blobs()
    report = static(setup(lambda: mlp(classes=1), x, y.unsqueeze(1), loss=nn.MSELoss()))
    finding = assert_fires(report, WRONG_LOSS, severity="error")
    assert finding.evidence["distinct_targets"] == 4
    assert "CrossEntropyLoss" in finding.fix


@pytest.mark.fires(WRONG_LOSS)
def test_bce_on_targets_outside_unit_interval():
    x, _ = blobs()
    y = torch.randn(len(x), 4) * 5
    report = static(setup(mlp, x, y, loss=nn.BCEWithLogitsLoss()))
    assert_fires(report, WRONG_LOSS)


@pytest.mark.silent(WRONG_LOSS)
def test_matching_losses_are_silent():
    x, y = blobs()
    assert_silent(static(setup(mlp, x, y)), WRONG_LOSS)
    reg = torch.randn(len(x), 1)
    assert_silent(static(setup(lambda: mlp(classes=1), x, reg, loss=nn.MSELoss())), WRONG_LOSS)


@pytest.mark.fires(OUTPUTS)
def test_head_larger_than_the_classes():
    x, y = blobs(classes=4)
    finding = assert_fires(static(setup(lambda: mlp(classes=100), x, y)), OUTPUTS)
    assert finding.evidence == {"outputs": 100, "classes_in_labels": 4, "distinct_labels": 4}
    assert "4 outputs" in finding.message or "nn.Linear(model.fc.in_features, 4)" in finding.fix


@pytest.mark.fires(OUTPUTS)
def test_single_output_under_cross_entropy():
    x, y = blobs(classes=2)
    finding = assert_fires(static(setup(lambda: mlp(classes=1), x, y)), OUTPUTS)
    assert "BCEWithLogitsLoss" in finding.fix


@pytest.mark.fires(OUTPUTS)
def test_regression_output_and_target_broadcast():
    x, _ = blobs()
    y = torch.randn(len(x))  # (N,) while the model returns (N, 1)
    report = static(setup(lambda: mlp(classes=1), x, y, loss=nn.MSELoss(), task="regression"))
    finding = assert_fires(report, OUTPUTS, severity="error")
    assert finding.evidence["broadcast_shape"] == [32, 32]


@pytest.mark.silent(OUTPUTS)
def test_matching_head_and_shapes_are_silent():
    x, y = blobs()
    assert_silent(static(setup(mlp, x, y)), OUTPUTS)
    reg = torch.randn(len(x), 1)
    assert_silent(static(setup(lambda: mlp(classes=1), x, reg, loss=nn.MSELoss())), OUTPUTS)


@pytest.mark.silent(OUTPUTS)
def test_a_small_sample_of_a_larger_set_is_not_enough_to_call_a_mismatch():
    x, y = blobs(n=400, classes=4)
    # 40 of 400 samples for a 10-output head: too few to say classes 4..9 never occur.
    report = tw.check(setup(lambda: mlp(classes=10), x, y), sample=40, stages=[StaticStage()])
    assert_silent(report, OUTPUTS)
