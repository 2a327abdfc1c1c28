"""Switching from SGD to Adam but keeping SGD's learning rate of 0.5."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = ["update-ratio-high"]


def main(quick: bool = False, verbose: bool = False):
    x, y, _, _ = digits()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.5)
    data = batches(x, y, 32)
    with tw.watch(model, optimizer, every=5, verbose=verbose) as watch:
        for _ in range(40):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
