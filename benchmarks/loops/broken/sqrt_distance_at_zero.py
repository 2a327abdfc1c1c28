"""A contrastive loss on pairwise distances that include each sample with itself: sqrt(0) has
an infinite derivative, so the loss is finite but the gradients are NaN."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = ["nonfinite-gradient"]


def main(quick: bool = False, verbose: bool = False):
    x, y, _, _ = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    data = batches(x, y, 32)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for _ in range(20):
            xb, yb = next(data)
            optimizer.zero_grad()
            z = model(xb)  # (B, 16)
            dist = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1).sqrt()  # (B, B), diagonal 0
            same = (yb[:, None] == yb[None, :]).float()
            loss = (same * dist + (1 - same) * F.relu(1.0 - dist)).mean()
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
