"""Healthy: an MLP on digits with AdamW, validation every 50 steps in eval mode."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))

from _data import batches, digits, validate  # noqa: E402

EXPECT = []


def main(quick: bool = False, verbose: bool = False):
    x, y, xv, yv = digits()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    data = batches(x, y, 32)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for step in range(300):
            xb, yb = next(data)
            optimizer.zero_grad()
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss, acc=(out.argmax(1) == yb).float().mean())
            if step % 50 == 49:
                val_loss, val_acc = validate(model, xv, yv)
                watch.log_val(loss=val_loss, acc=val_acc)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
