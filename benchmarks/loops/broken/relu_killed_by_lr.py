"""SGD with a learning rate copied from a tutorial on a different scale of data: a few large
steps push most ReLU units negative for every input, and they never come back."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = ["dead-relu"]


def main(quick: bool = False, verbose: bool = False):
    x, y, _, _ = digits(normalize=False)  # raw 0..16 pixels: large activations, large grads
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    data = batches(x, y, 32)
    with tw.watch(model, optimizer, every=5, verbose=verbose) as watch:
        for _ in range(60):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
