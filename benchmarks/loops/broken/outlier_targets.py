"""Regression on targets with a few data-entry errors (values 1000x too large): the batches
that hold one spike the gradient norm."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches  # noqa: E402

EXPECT = ["exploding-gradients"]


def main(quick: bool = False, verbose: bool = False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 16, generator=g)
    y = x @ torch.randn(16, 1, generator=g) + 0.1 * torch.randn(4000, 1, generator=g)
    y[torch.randperm(4000, generator=g)[:8]] *= 1000  # typos in the price column
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    data = batches(x, y, 32)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for _ in range(250):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.mse_loss(model(xb), yb)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
