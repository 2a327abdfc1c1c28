"""The activation statistics finished on the host and the one read-out of a step: the same
numbers as computing them directly in torch, whatever the layer kind, shape and dtype."""

import math
import types

import pytest
import torch
from torch import nn

from trainwise.probes.activations import ActivationProbe, act_stats, output_sums
from trainwise.probes.pending import Pending
from trainwise.signals import ACT_SAT_FRAC, ACT_ZERO_FRAC, Signals


def _direct(module: nn.Module, y: torch.Tensor) -> list[float]:
    """ACT_STATS computed the obvious way (torch.std, comparisons) on the first 8 rows."""
    x = (y[:8] if y.dim() >= 2 else y).double()
    n = x.numel()
    zero = float((x == 0).sum()) / n if isinstance(module, (nn.ReLU, nn.ReLU6, nn.Dropout)) else math.nan
    if isinstance(module, nn.Sigmoid):
        sat = float(((x < 0.01) | (x > 0.99)).sum()) / n
    elif isinstance(module, nn.Tanh):
        sat = float((x.abs() > 0.99).sum()) / n
    elif isinstance(module, nn.ReLU6):  # at its top only (its zeros are the zero share)
        sat = float((x == 6).sum()) / n
    elif isinstance(module, nn.Hardtanh):  # at either limit
        sat = float(((x == module.min_val) | (x == module.max_val)).sum()) / n
    else:
        sat = math.nan
    dead = math.nan
    if isinstance(module, (nn.ReLU, nn.ReLU6)) and x.dim() >= 2:
        unit = 1 if x.dim() == 4 else x.dim() - 1
        per_unit = x.amax(dim=tuple(d for d in range(x.dim()) if d != unit))
        dead = float((per_unit <= 0).sum()) / per_unit.numel()
    return [float(x.mean()), float(x.std()), zero, sat, dead]


CASES = [
    (nn.ReLU(), (32, 64)),  # (B, F)
    (nn.ReLU(), (16, 8, 10, 10)),  # (B, C, H, W): units are channels
    (nn.ReLU6(), (4, 12, 20)),  # (B, T, F): units are the last dim
    (nn.Sigmoid(), (32, 10)),
    (nn.Tanh(), (32, 10)),
    (nn.Hardtanh(-2.0, 0.5), (32, 10)),
    (nn.Dropout(0.5), (32, 64)),
    (nn.Linear(3, 3), (32, 3)),  # none of the counts
    (nn.ReLU(), (50,)),  # 1-d: no units, every element
]


@pytest.mark.parametrize(("module", "shape"), CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_host_statistics_match_torch(module, shape):
    torch.manual_seed(0)
    x = torch.randn(shape) * 3
    if isinstance(module, nn.ReLU) and len(shape) >= 2:
        x[..., 0] = -1.0  # a dead unit: the last dim's first (a column of each map on 4-d)
        if len(shape) == 4:
            x[:, 1] = -1.0  # a dead channel (the units of a map)
    y = module.train()(x)
    sums, counted = output_sums(module, y)
    assert sums.dtype == torch.float32 and sums.dim() == 1
    got, want = act_stats(sums.tolist(), counted), _direct(module, y)
    for g, w in zip(got, want, strict=True):
        assert (math.isnan(g) and math.isnan(w)) or g == pytest.approx(w, rel=1e-4, abs=1e-6)


def test_a_constant_output_has_zero_std_not_nan():
    sums, counted = output_sums(nn.ReLU(), torch.full((8, 4), 2.0))
    mean, std, zero, _, dead = act_stats(sums.tolist(), counted)
    assert (mean, std, zero, dead) == (2.0, 0.0, 0.0, 0.0)


def test_half_precision_outputs_are_measured_in_float32():
    y = torch.randn(8, 16).relu().to(torch.bfloat16)
    sums, counted = output_sums(nn.ReLU(), y)
    got, want = act_stats(sums.tolist(), counted), _direct(nn.ReLU(), y.float())
    assert got[0] == pytest.approx(want[0], rel=1e-3) and got[2] == pytest.approx(want[2])


def test_read_out_keeps_slot_order_across_dtypes_and_shapes():
    """Runs of 0-d float32 losses are stacked together; other tensors keep their place."""
    pending = Pending()
    tensors = [
        torch.tensor(1.5), torch.tensor(2.5), torch.tensor(3.0, dtype=torch.float64),
        torch.tensor(4.5), torch.tensor([5.0, 6.0]), torch.tensor(7, dtype=torch.int64),
        torch.tensor([[8.0, 9.0]], dtype=torch.bfloat16), torch.tensor(10.5),
        torch.tensor(11.5, requires_grad=True) * 1,
    ]  # fmt: skip
    slots = [pending.add(t) for t in tensors]
    rows = pending.add(torch.tensor([1.0, 2.0, 3.0]), as_tensor=True)
    values = pending.read()
    assert [values[s] for s in slots] == [
        [1.5], [2.5], [3.0], [4.5], [5.0, 6.0], [7.0], [8.0, 9.0], [10.5], [11.5]
    ]
    assert torch.equal(values[rows], torch.tensor([1.0, 2.0, 3.0]))
    assert not pending and pending.read() == []


def test_read_out_of_losses_only():
    pending = Pending()
    slots = [pending.add(torch.tensor(float(i))) for i in range(25)]
    values = pending.read()
    assert [values[s][0] for s in slots] == [float(i) for i in range(25)]


def test_relu6_outputs_between_its_limits_are_not_saturated():
    """ReLU6 (MobileNet's) passes the whole gradient on (0, 6): outputs of 1 to 5 used to read
    as saturated (a tanh's margin, |x| > 0.99), ~15-30% of a healthy BN-ReLU6 net's outputs."""
    y = nn.ReLU6()(torch.cat([torch.linspace(1, 5, 30), torch.full((10,), 9.0)]).reshape(8, 5))
    sums, counted = output_sums(nn.ReLU6(), y)
    assert act_stats(sums.tolist(), counted)[3] == pytest.approx(10 / 40)


class _Returns(nn.Module):
    """A hidden sigmoid and an output sigmoid; forward returns the output as `shape` says."""

    def __init__(self, shape: str):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(4, 6), nn.Sigmoid(), nn.Linear(6, 6), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(6, 6), nn.Sigmoid())
        self.shape = shape

    def forward(self, x):
        h = self.hidden(x)
        out = self.head(h)
        if self.shape == "tuple":  # a VAE's (reconstruction, mu, logvar)
            return out.view(-1, 2, 3), h, x
        if self.shape == "dict":  # a Hugging Face output
            return {"logits": out, "hidden": h}
        return out


def _sampled_step(model: nn.Module, x: torch.Tensor) -> Signals:
    probe = ActivationProbe(model)
    probe.attach()
    probe.begin_step(sample=True)
    model(x)
    pending = Pending()
    probe.collect(pending)
    signals = Signals()
    probe.write(pending.read(), 0, signals)
    probe.detach()
    return signals


@pytest.mark.parametrize("shape", ["tensor", "tuple", "dict"])
def test_the_output_layer_reports_no_saturation_a_hidden_one_does(shape):
    """A decoder's output sigmoid predicting black pixels at ~0 is the model being sure (BCE
    gives its logits p - y); the same share in a hidden layer stalls it."""
    model = _Returns(shape)
    with torch.no_grad():
        model.hidden[0].weight.fill_(5.0)  # hidden sigmoid pinned at 1
        model.head[0].bias.fill_(-20.0)  # output sigmoid pinned at 0
    signals = _sampled_step(model, torch.ones(8, 4))
    assert list(signals.get(ACT_SAT_FRAC.at("hidden.1")).values) == [1.0]
    assert math.isnan(signals.get(ACT_SAT_FRAC.at("head.1")).values[0])
    assert signals.get(ACT_ZERO_FRAC.at("hidden.3")).values  # the other statistics as before


class _OwnOutput(nn.Module):
    """Returns an object of its own (not a tensor, tuple or dict): its sigmoid is judged."""

    def __init__(self):
        super().__init__()
        self.head = nn.Sequential(nn.Linear(4, 6), nn.Sigmoid())

    def forward(self, x):
        return types.SimpleNamespace(probs=self.head(x))


def test_a_model_returning_its_own_object_keeps_the_probe_on():
    model = _OwnOutput()
    with torch.no_grad():
        model.head[0].bias.fill_(-20.0)
    signals = _sampled_step(model, torch.ones(8, 4))  # with no guard, a raise would fail here
    assert list(signals.get(ACT_SAT_FRAC.at("head.1")).values) == [1.0]
