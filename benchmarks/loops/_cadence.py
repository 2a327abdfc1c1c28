"""One clean loop, validated at a chosen cadence: the healthy cases val_every_* call it.

A slowly but steadily improving run (an MLP on digits, SGD with momentum at a modest LR) whose
validation loss falls from start to end at every cadence: whatever fires on it fires because of
how often the user validates, not because of the training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from _data import batches, digits, validate
from torch import nn

import trainwise as tw

STEPS, BATCH = 420, 64  # 20 epochs of 21 steps


def cadence_loop(val_every: int | None, verbose: bool = False):
    """val_every: validate every that many steps on the whole validation set; 1 validates every
    step on a random validation batch of 64 (the tip "validate on a random batch every
    iteration"); None validates once per epoch."""
    x, y, xv, yv = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)
    data = batches(x, y, BATCH)
    val_batches = batches(xv, yv, BATCH, seed=1)
    steps_per_epoch = len(x) // BATCH
    with tw.watch(model, optimizer, verbose=verbose) as watch:  # val loss 2.20 -> 0.29, falling
        for step in range(STEPS):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
            if val_every == 1:
                watch.log_val(loss=validate(model, *next(val_batches))[0])
            elif (val_every and step % val_every == val_every - 1) or (
                val_every is None and step % steps_per_epoch == steps_per_epoch - 1
            ):
                val_loss = validate(model, xv, yv)[0]
                watch.log_val(loss=val_loss)
                if verbose:
                    print(f"step {step} val loss {val_loss.item():.3f}")
    return watch.findings
