import pytest
import torch
from torch import nn

import trainwise as tw
from builders import blobs, images, mlp, setup, static
from helpers import assert_fires, assert_silent

FROZEN = "frozen-parameters"
MISSING = "params-not-in-optimizer"
UNUSED = "unused-parameters"
RANGE = "hyperparameter-range"
DECAY = "weight-decay-on-norm-and-bias"


def frozen_body():
    net = mlp()
    for p in net[0].parameters():
        p.requires_grad_(False)
    return net


@pytest.mark.fires(FROZEN)
def test_nothing_trainable():
    x, y = blobs()

    def model():
        net = mlp()
        net.requires_grad_(False)
        return net

    finding = assert_fires(static(setup(model, x, y)), FROZEN, where="model", severity="error")
    assert finding.evidence["trainable"] == 0


@pytest.mark.fires(FROZEN)
def test_optimizer_holding_frozen_parameters():
    x, y = blobs()
    report = static(setup(frozen_body, x, y, optimizer=lambda p: torch.optim.SGD(p, lr=0.1)))
    finding = assert_fires(report, FROZEN, severity="warning")
    assert finding.evidence["frozen_held"] == ["0.weight", "0.bias"]
    assert finding.evidence["values"] == 16 * 32 + 32


@pytest.mark.silent(FROZEN)
def test_frozen_backbone_with_an_optimizer_over_the_trainable_part_is_silent():
    x, y = blobs()
    trainable = lambda ps: torch.optim.SGD([p for p in ps if p.requires_grad], lr=0.1)  # noqa: E731
    assert_silent(static(setup(frozen_body, x, y, optimizer=trainable)), FROZEN)
    assert_silent(static(setup(mlp, x, y)), FROZEN)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(16, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


@pytest.mark.fires(MISSING)
def test_factory_closing_over_the_users_module_head():
    x, y = blobs()
    model = Net()
    report = static(
        setup(model, x, y, optimizer=lambda p: torch.optim.SGD(model.head.parameters(), lr=0.1))
    )
    finding = assert_fires(report, MISSING, where="body.weight", severity="error")
    assert finding.evidence["missing"] == ["body.weight", "body.bias"]
    assert finding.evidence["missing_values"] == 16 * 32 + 32
    assert finding.evidence["foreign_tensors"] == 0  # mapped onto the copy by name


@pytest.mark.fires(MISSING)
def test_factory_over_a_different_model_object():
    x, y = blobs()
    other = Net()
    report = static(setup(Net, x, y, optimizer=lambda p: torch.optim.Adam(other.parameters())))
    finding = assert_fires(report, MISSING)
    assert finding.evidence["foreign_tensors"] == 4
    assert len(finding.evidence["missing"]) == 4


@pytest.mark.silent(MISSING)
def test_optimizer_over_all_parameters_and_over_param_groups_is_silent():
    x, y = blobs()
    model = Net()
    assert_silent(static(setup(model, x, y)), MISSING)
    groups = lambda p: torch.optim.AdamW(tw.param_groups(p, weight_decay=0.05))  # noqa: E731
    assert_silent(static(setup(model, x, y, optimizer=groups)), MISSING)
    frozen = lambda ps: torch.optim.SGD([p for p in ps if p.requires_grad], lr=0.1)  # noqa: E731
    assert_silent(static(setup(frozen_body, x, y, optimizer=frozen)), MISSING)


class Dropped(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.extra, self.head = nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 4)

    def forward(self, x):
        h = torch.relu(self.body(x))
        self.extra(h)  # result dropped
        return self.head(h)


@pytest.mark.fires(UNUSED)
def test_layer_whose_output_is_dropped():
    x, y = blobs()
    finding = assert_fires(static(setup(Dropped, x, y)), UNUSED, where="extra.weight")
    assert finding.evidence["unused"] == ["extra.weight", "extra.bias"]
    assert "extra" in finding.fix


@pytest.mark.silent(UNUSED)
def test_every_parameter_used_and_state_restored():
    x, y = blobs()
    s = setup(lambda: nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.Linear(32, 4)), x, y)
    assert_silent(static(s), UNUSED)
    assert_silent(static(setup(Net, x, y)), UNUSED)


@pytest.mark.fires(RANGE)
def test_adam_with_an_sgd_learning_rate():
    x, y = blobs()
    report = static(setup(mlp, x, y, optimizer=lambda p: torch.optim.Adam(p, lr=0.1)))
    finding = assert_fires(report, RANGE, where="optimizer", severity="warning")
    assert finding.evidence["lr"] == 0.1 and finding.evidence["range"] == [1e-6, 1e-2]


@pytest.mark.fires(RANGE)
def test_sgd_momentum_and_l2_decay_out_of_range():
    x, y = blobs()
    opt = lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, weight_decay=0.1)  # noqa: E731
    report = static(setup(mlp, x, y, optimizer=opt))
    messages = [f.message for f in report.findings if f.rule == RANGE]
    assert any("momentum=0.5" in m for m in messages)
    assert any("weight_decay=0.1" in m for m in messages)


@pytest.mark.silent(RANGE)
def test_usual_settings_are_silent():
    x, y = blobs()
    usual = [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
        lambda p: torch.optim.AdamW(p, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1),
        lambda p: torch.optim.Adam(p, lr=1e-3),
        lambda p: torch.optim.RMSprop(p, lr=1e-3),
    ]
    for opt in usual:
        found = [f for f in static(setup(mlp, x, y, optimizer=opt)).findings if f.rule == RANGE]
        assert all(f.severity == "info" for f in found), [f.message for f in found]


@pytest.mark.fires(DECAY)
def test_adamw_decay_over_norms_and_biases():
    x, y = images()

    def model():
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
        )  # fmt: skip

    opt = lambda p: torch.optim.AdamW(p, weight_decay=0.05)  # noqa: E731
    finding = assert_fires(static(setup(model, x, y, optimizer=opt)), DECAY, severity="info")
    assert finding.evidence["decayed"] == ["1.weight", "1.bias", "5.bias"]
    assert "tw.param_groups(params, weight_decay=0.05)" in finding.fix


@pytest.mark.silent(DECAY)
def test_param_groups_and_the_default_optimizer_are_silent():
    x, y = blobs()
    groups = lambda p: torch.optim.AdamW(tw.param_groups(p, weight_decay=0.05))  # noqa: E731
    assert_silent(static(setup(mlp, x, y, optimizer=groups)), DECAY)
    assert_silent(static(setup(mlp, x, y)), DECAY)  # trainwise's own default


def test_the_backward_pass_leaves_the_traced_model_as_it_was():
    from trainwise.context import StaticContext
    from trainwise.rules import CATALOGUE

    x, y = blobs()
    model = lambda: nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.Linear(32, 4))  # noqa: E731
    ctx = StaticContext(setup(model, x, y))
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    list(CATALOGUE[UNUSED].check(ctx))
    after = ctx.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included
    assert all(p.grad is None for p in ctx.model.parameters())
    assert not ctx.model.training


def test_nothing_trainable_with_a_filtering_factory_is_reported_not_a_crash():
    x, y = blobs()

    def model():
        return mlp().requires_grad_(False)

    trainable_only = lambda ps: torch.optim.SGD([p for p in ps if p.requires_grad], lr=0.1)  # noqa: E731
    report = static(setup(model, x, y, optimizer=trainable_only))  # SGD([]) would raise
    assert_fires(report, FROZEN, where="model")
    assert not report.stages[0].notes
