import pytest
import torch
from torch import nn
from torch.nn import functional as F

from builders import blobs, mlp, setup, static
from helpers import assert_fires, assert_silent

SLUG = "softmax-before-loss"


@pytest.mark.fires(SLUG)
def test_softmax_module_before_cross_entropy():
    x, y = blobs()
    report = static(setup(lambda: mlp(tail=nn.Softmax(dim=1)), x, y))
    finding = assert_fires(report, SLUG, where="3 (Softmax)", severity="error")
    assert finding.evidence["loss_floor"] == pytest.approx(0.7437, abs=1e-3)  # log(1 + 3/e)
    assert "softmax" in finding.fix.lower()


class FunctionalSoftmaxNet(nn.Module):
    """The softmax hides inside forward as a function call, not a module."""

    def __init__(self):
        super().__init__()
        self.body = mlp()

    def forward(self, x):
        return F.softmax(self.body(x), dim=1)


@pytest.mark.fires(SLUG)
def test_functional_softmax_inside_forward_is_found():
    x, y = blobs()
    report = static(setup(FunctionalSoftmaxNet, x, y))
    assert_fires(report, SLUG, where="FunctionalSoftmaxNet.forward (softmax)")


@pytest.mark.fires(SLUG)
def test_custom_loss_function_is_recognized_by_value():
    x, y = blobs()
    report = static(
        setup(
            lambda: mlp(tail=nn.Softmax(dim=1)), x, y, loss=lambda out, t: F.cross_entropy(out, t)
        )
    )
    assert_fires(report, SLUG)


@pytest.mark.fires(SLUG)
def test_sigmoid_before_bce_with_logits():
    x, _ = blobs()
    y = (torch.rand(len(x), 4) > 0.5).float()
    report = static(setup(lambda: mlp(tail=nn.Sigmoid()), x, y, loss=nn.BCEWithLogitsLoss()))
    assert_fires(report, SLUG, where="3 (Sigmoid)", severity="error")


@pytest.mark.fires(SLUG)
def test_raw_logits_into_nll_loss():
    x, y = blobs()
    report = static(setup(mlp, x, y, loss=nn.NLLLoss()))
    finding = assert_fires(report, SLUG, severity="error")
    assert "raw logits" in finding.message


@pytest.mark.fires(SLUG)
def test_log_softmax_before_cross_entropy_is_only_info():
    x, y = blobs()
    report = static(setup(lambda: mlp(tail=nn.LogSoftmax(dim=1)), x, y))
    assert_fires(report, SLUG, severity="info")


@pytest.mark.silent(SLUG)
@pytest.mark.parametrize(
    "tail, loss",
    [(None, nn.CrossEntropyLoss()), (nn.LogSoftmax(dim=1), nn.NLLLoss())],
    ids=["logits+CE", "logsoftmax+NLL"],
)
def test_matching_output_and_loss_is_silent(tail, loss):
    x, y = blobs()
    assert_silent(static(setup(lambda: mlp(tail=tail), x, y, loss=loss)), SLUG)


@pytest.mark.silent(SLUG)
def test_logits_with_bce_with_logits_is_silent():
    x, _ = blobs()
    y = (torch.rand(len(x), 4) > 0.5).float()
    assert_silent(static(setup(mlp, x, y, loss=nn.BCEWithLogitsLoss())), SLUG)


@pytest.mark.silent(SLUG)
def test_regression_output_in_unit_interval_is_silent():
    # A regression head that happens to output values in [0, 1] is not a softmax.
    x, _ = blobs()
    y = torch.rand(len(x), 1)
    report = static(setup(lambda: mlp(classes=1, tail=nn.Sigmoid()), x, y, loss=nn.MSELoss()))
    assert_silent(report, SLUG)
