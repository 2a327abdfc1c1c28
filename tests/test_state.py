import random

import numpy as np
import torch
from torch import nn

from trainwise.state import preserved


def _model():
    return nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)
    )


def test_everything_is_restored_bit_for_bit_after_training_inside():
    torch.manual_seed(0)
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(16, 4)).sum().backward()
    opt.step()  # the optimizer has state (exp_avg ...) before the experiment
    model.eval()
    model[0].weight.requires_grad_(False)
    params = [id(p) for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    opt_before = {
        k: {kk: vv.clone() if torch.is_tensor(vv) else vv for kk, vv in s.items()}
        for k, s in opt.state_dict()["state"].items()
    }
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    expected = (torch.rand(2), np.random.rand(2), random.random())
    torch.manual_seed(1), np.random.seed(1), random.seed(1)

    with preserved(model, opt):
        model.train()
        for p in model.parameters():
            p.requires_grad_(True)
        for g in opt.param_groups:
            g["lr"] = 10.0
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(16, 4)).pow(2).sum().backward()
            opt.step()
        np.random.rand(5), random.random()

    assert [id(p) for p in model.parameters()] == params
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BN running stats
    for p, g in zip(model.parameters(), grads, strict=True):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert not model.training and not model[1].training
    assert not model[0].weight.requires_grad
    assert opt.param_groups[0]["lr"] == 1e-2
    for k, s in opt.state_dict()["state"].items():
        for kk, vv in s.items():
            assert torch.equal(torch.as_tensor(vv), torch.as_tensor(opt_before[k][kk]))
    got = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]
