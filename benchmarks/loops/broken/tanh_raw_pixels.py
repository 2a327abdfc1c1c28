"""A tanh network fed raw 0..16 pixel intensities: the pre-activations are large and most
tanh units sit at +-1."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = ["saturated-activations"]


def main(quick: bool = False, verbose: bool = False):
    x, y, _, _ = digits(normalize=False)
    model = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 10))
    nn.init.normal_(model[0].weight, std=1.0)  # "bigger init learns faster"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
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
