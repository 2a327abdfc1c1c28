"""Healthy: a GRU classifier on synthetic sequences (is the running sum positive at the end?),
Adam with gradient clipping."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))

from _data import batches, validate  # noqa: E402

EXPECT = []


class GRUClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(1, 32, batch_first=True)
        self.head = nn.Linear(32, 2)

    def forward(self, x):  # (B, T)
        out, _ = self.gru(x.unsqueeze(-1))  # (B, T, 32)
        return self.head(out[:, -1])


def main(quick: bool = False, verbose: bool = False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 20, generator=g)
    y = (x.sum(1) > 0).long()
    model = GRUClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = batches(x[:2500], y[:2500], 32)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for step in range(200):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            watch.log(loss=loss)
            if step % 50 == 49:
                watch.log_val(loss=validate(model, x[2500:], y[2500:])[0])
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
