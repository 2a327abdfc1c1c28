"""Nothing the user owns changes: the whole protocol, bit for bit, and crashes named clearly."""

import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import trainwise as tw
from builders import blobs, setup
from trainwise.errors import SetupError


def bn_dropout_mlp():
    return nn.Sequential(
        nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4)
    )


def snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        {n: m.training for n, m in model.named_modules()},
        {n: p.requires_grad for n, p in model.named_parameters()},
        [id(p) for p in model.parameters()],
    )


def assert_same(before, after):
    (s0, g0, m0, r0, i0), (s1, g1, m1, r1, i1) = before, after
    assert s0.keys() == s1.keys()
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k  # weights and BN running statistics, bit for bit
    for n in g0:
        assert (g0[n] is None and g1[n] is None) or torch.equal(g0[n], g1[n]), n
    assert m0 == m1 and r0 == r1 and i0 == i1


def rng_draws():
    return torch.rand(3), np.random.rand(3), random.random()


def user_module():
    torch.manual_seed(3)
    net = bn_dropout_mlp()
    x, y = blobs(n=64)
    nn.functional.cross_entropy(net(x), y).backward()  # the user's own grads and BN statistics
    net.eval()
    net[0].weight.requires_grad_(False)
    return net


@pytest.mark.parametrize("how", ["module", "factory-sharing-one-instance"])
def test_the_full_protocol_leaves_the_users_model_and_rng_untouched(how):
    net = user_module()
    before = snapshot(net)
    x, y = blobs(n=160)
    model = net if how == "module" else (lambda: net)  # a factory that hands out its instance
    s = setup(model, x[:128], y[:128], val=(x[128:], y[128:]))
    x_before, y_before = x.clone(), y.clone()

    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    expected = rng_draws()
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    report = tw.check(s, quick=True)
    got = rng_draws()

    assert len(report.stages) >= 9 and not [r for r in report.stages if r.status == "crashed"]
    assert_same(before, snapshot(net))
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    assert torch.equal(x, x_before) and torch.equal(y, y_before)  # the data too


def test_every_stage_builds_its_own_fresh_model_from_a_factory():
    built = []

    def factory():
        built.append(bn_dropout_mlp())
        return built[-1]

    x, y = blobs(n=160)
    tw.check(setup(factory, x, y), quick=True)
    # static, init-loss, speed, overfit-batch, overfit-few, batch-independence, baselines;
    # input-dependence and train-eval work on copies of models those trained.
    assert len(built) >= 7
    assert len({id(m) for m in built}) == len(built)


def test_the_same_check_gives_the_same_numbers():
    x, y = blobs(n=160)
    s = setup(bn_dropout_mlp, x, y)
    a, b = tw.check(s, quick=True), tw.check(s, quick=True)
    for sa, sb in zip(a.stages, b.stages, strict=True):
        if sa.name != "speed":  # timings differ; every experiment is seeded
            assert sa.summary == sb.summary, sa.name


class FailsInTraining(nn.Module):
    """Works in eval mode (the static stage passes) and raises in train mode."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        if self.training:
            x = x.view(-1, 3)  # (32, 16) cannot be viewed as rows of 3
        return self.fc(x)


def test_a_forward_crash_names_the_stage_the_layer_and_the_input_shape():
    x, y = blobs(n=64)
    s = setup(lambda: nn.Sequential(nn.Linear(16, 16), FailsInTraining()), x, y)
    with pytest.raises(SetupError) as err:
        tw.check(s, quick=True)
    message = str(err.value)
    assert message.startswith("[init-loss]")
    assert "layer '1' (FailsInTraining)" in message and "(32, 16)" in message


class _BrokenBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("custom backward not implemented for this dtype")


class CustomOp(nn.Module):
    def forward(self, x):
        return _BrokenBackward.apply(x)


def test_a_backward_crash_names_the_stage_and_the_layer():
    x, y = blobs(n=64)
    s = setup(lambda: nn.Sequential(nn.Linear(16, 8), CustomOp(), nn.Linear(8, 4)), x, y)
    with pytest.raises(SetupError) as err:
        tw.check(s, quick=True)
    message = str(err.value)
    assert "backward" in message and "layer '1' (CustomOp)" in message
    assert "(32, 16)" in message and message.startswith("[")


def test_a_stage_crashing_inside_trainwise_leaves_the_others_running(monkeypatch):
    from trainwise.stages import init_loss

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a trainwise bug")

    monkeypatch.setattr(init_loss, "StageOutcome", broken)  # used by this stage alone
    x, y = blobs(n=64)
    report = tw.check(setup(bn_dropout_mlp, x, y), quick=True)
    status = {s.name: s.status for s in report.stages}
    assert status["init-loss"] == "crashed"
    assert status["overfit-batch"] == "pass" and status["baselines"] == "pass"


def test_a_fresh_process_keeps_its_seeded_python_random_stream_through_trainwise():
    # rich draws from Python's global random when first imported; in the suite it is imported
    # long before this test, so only a fresh process shows whether trainwise moves the stream.
    script = """
import random
random.seed(0)
import torch
from torch import nn
import trainwise as tw
model = nn.Linear(4, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
with tw.watch(model, optimizer, record=False) as watch:  # findings printed (with rich)
    for step in range(3):
        optimizer.zero_grad()
        loss = model(torch.randn(8, 4)).pow(2).mean()
        loss.backward()
        optimizer.step()
        watch.log(loss=loss if step < 2 else torch.tensor(float("nan")))  # a finding to print
    assert watch.findings
print(random.random())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()  # fmt: skip
    assert float(out[-1]) == random.Random(0).random()  # as if trainwise were not there
