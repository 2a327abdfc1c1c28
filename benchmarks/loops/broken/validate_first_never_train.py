"""Validation runs at the start of each epoch and calls model.eval(); model.train() is never
called again, so dropout stays off and BatchNorm uses its frozen running statistics."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = ["eval-mode-during-training"]


def main(quick: bool = False, verbose: bool = False):
    x, y, xv, yv = digits()
    model = nn.Sequential(
        nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = batches(x, y, 32)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for _epoch in range(3):
            model.eval()
            with torch.no_grad():
                watch.log_val(loss=F.cross_entropy(model(xv), yv))
            for _ in range(15):
                xb, yb = next(data)
                optimizer.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                optimizer.step()
                watch.log(loss=loss)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
