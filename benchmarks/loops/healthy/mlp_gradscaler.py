"""Healthy: mixed-precision style training with a GradScaler whose first scale is too large, so
its first steps overflow and are skipped while it calibrates (as it does on a GPU in fp16)."""

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
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    data = batches(x, y, 32)
    with tw.watch(model, optimizer, scaler=scaler, verbose=verbose) as watch:
        for step in range(150):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            scaler.step(optimizer)
            scaler.update()
            watch.log(loss=loss)
            if step % 50 == 49:
                watch.log_val(loss=validate(model, xv, yv)[0])
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
