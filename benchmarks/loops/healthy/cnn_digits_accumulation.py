"""Healthy: a small CNN (conv-BN-ReLU) on 8x8 digit images, SGD with momentum and a cosine
schedule over the whole run, gradients accumulated over 4 micro-batches per step."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))

from _data import batches, digits, validate  # noqa: E402

EXPECT = []


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 32, 4, 4)
        )
        self.head = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):  # (B, 64)
        return self.head(self.features(x.view(-1, 1, 8, 8)).flatten(1))


def main(quick: bool = False, verbose: bool = False):
    x, y, xv, yv = digits()
    model = SmallCNN()
    steps, accumulate = 100, 4
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    data = batches(x, y, 16)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for step in range(steps):
            optimizer.zero_grad()
            total = 0.0
            for _ in range(accumulate):
                xb, yb = next(data)
                loss = F.cross_entropy(model(xb), yb) / accumulate
                loss.backward()
                total += loss.detach()
            optimizer.step()
            scheduler.step()
            watch.log(loss=total)
            if step % 25 == 24:
                watch.log_val(loss=validate(model, xv, yv)[0])
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
