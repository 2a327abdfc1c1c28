"""The training set is sorted by label and the loader does not shuffle: every batch is one
class, each step pulls the model toward it, and the loss swings from batch to batch."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = ["loss-oscillating"]


def main(quick: bool = False, verbose: bool = False):
    x, y, _, _ = digits()
    order = torch.argsort(y, stable=True)
    x, y = x[order], y[order]
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = batches(x, y, 32, shuffle=False)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for _ in range(200):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
