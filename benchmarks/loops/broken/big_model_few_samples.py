"""A wide MLP trained for many epochs on 100 samples, no regularization: it memorizes."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits, validate  # noqa: E402

EXPECT = ["overfitting"]


def main(quick: bool = False, verbose: bool = False):
    x, y, xv, yv = digits()
    x, y = x[:100], y[:100]
    model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = batches(x, y, 20)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for step in range(300):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
            if step % 20 == 19:
                val_loss, val_acc = validate(model, xv, yv)
                watch.log_val(loss=val_loss, acc=val_acc)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
