"""StepLR(step_size=30) meant for epochs, stepped inside the batch loop: the learning rate is
divided by 10 every 30 batches and is ~0 after 100."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = ["lr-schedule-suspicious"]


def main(quick: bool = False, verbose: bool = False):
    x, y, _, _ = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)
    data = batches(x, y, 32)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for _ in range(200):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            scheduler.step()  # belongs after the epoch loop
            watch.log(loss=loss)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
