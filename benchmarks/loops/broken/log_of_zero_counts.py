"""Log-transforming count features without +1: the zero counts become -inf in the first layer."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = ["nonfinite-loss"]


class LogCounts(nn.Module):
    def forward(self, x):
        return torch.log(x)  # pixel counts 0..16; log(0) = -inf


def main(quick: bool = False, verbose: bool = False):
    x, y, xv, yv = digits(normalize=False)
    model = nn.Sequential(LogCounts(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = batches(x, y, 32)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for _ in range(30):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
