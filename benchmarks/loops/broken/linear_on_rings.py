"""A linear classifier for two concentric rings: it cannot separate them however long it trains."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, validate  # noqa: E402

EXPECT = ["underfitting"]


def rings(n, g):
    r = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, 2.0)
    angle = torch.rand(n, generator=g) * 6.2832
    x = torch.stack([r * angle.cos(), r * angle.sin()], 1) + 0.1 * torch.randn(n, 2, generator=g)
    return x, (r > 1.5).long()


def main(quick: bool = False, verbose: bool = False):
    g = torch.Generator().manual_seed(0)
    x, y = rings(2000, g)
    xv, yv = rings(500, g)
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = batches(x, y, 64)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for step in range(200):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
            if step % 40 == 39:
                val_loss, val_acc = validate(model, xv, yv)
                watch.log_val(loss=val_loss, acc=val_acc)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
