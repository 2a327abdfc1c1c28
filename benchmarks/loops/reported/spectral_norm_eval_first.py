"""A model evaluated before its first training forward: spectral_norm's power iteration starts on
the first forward in train mode, so an eval-mode forward before it divides the weights by a
sigma estimated from a random vector, and the first validation loss is absurd.

Source: https://github.com/pytorch/pytorch/issues/51800 (spectral_norm is not initialized when
the module's first forward runs in eval mode; layer outputs grow by orders of magnitude; the
workaround is one train-mode forward first). Here: a baseline validation before training, as
many loops do, on an MLP whose layers are wrapped in spectral_norm.

Symptom (measured, seed 0): the validation loss before training is 463 while the first
training loss at the same weights is 2.39 (~log 10); once training has run a forward, validation
is 1.18 at step 25 and 1.06 at step 75 (spectral norm bounds the logits, so it learns slowly).
Expected: `train-eval-mismatch` in flight, naming the spectral_norm layers (issue 12, item 4).
Caught at step 1: loss ratio 194x; the three spectral_norm Linears `2`, `0`, `4` scale their
input 15.2x, 12.8x and 9.4x more in the eval forward than in the first training forward, the
ReLUs between them 1.0x.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits, validate  # noqa: E402

EXPECT = ["train-eval-mismatch"]


def main(quick: bool = False, verbose: bool = False):
    x, y, xv, yv = digits()
    model = nn.Sequential(
        spectral_norm(nn.Linear(64, 256)),
        nn.ReLU(),
        spectral_norm(nn.Linear(256, 256)),
        nn.ReLU(),
        spectral_norm(nn.Linear(256, 10)),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = batches(x, y, 64)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        val_loss, _ = validate(model, xv, yv)  # the baseline: before any training forward
        watch.log_val(loss=val_loss)
        if verbose:
            print(f"validation before training: {val_loss.item():.4g}")
        for step in range(100):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
            if verbose and step == 0:
                print(f"first training loss: {loss.item():.4g}")
            if step % 25 == 24:
                watch.log_val(loss=validate(model, xv, yv)[0])
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
