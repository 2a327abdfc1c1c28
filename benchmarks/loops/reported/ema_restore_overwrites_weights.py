"""EMA weights swapped in for validation are never swapped out: the loop keeps
`backup = model.state_dict()` to restore the training weights after validating with the EMA
weights, but state_dict() returns references to the live tensors, so load_state_dict(ema) writes
the EMA values into the backup too and the "restore" restores nothing. After every validation the
training weights are silently replaced by the slow EMA average: written outside the optimizer.

Source: https://github.com/aqlaboratory/openfold/pull/90 (validation loaded the EMA parameters
and the cached training parameters, a reference rather than a copy, could not restore them, so
every epoch ended with the training weights replaced by the EMA ones; convergence slowed).

Symptom (measured, seed 0): the training loss jumps back up after every validation (epoch 2
ends at 0.31, epoch 3 starts at 1.50); the final EMA validation loss is 0.88. With a deep copy
as the backup the training loss falls to 0.03 and the final EMA validation loss is 0.29.
Expected: NEW SLUG `weights-changed-outside-optimizer`: a parameter the optimizer holds changed
between two optimizer steps (something else wrote it), naming the tensors and the step
(issue 12, item 4).
"""

import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits, validate  # noqa: E402

EXPECT = ["weights-changed-outside-optimizer"]


def main(quick: bool = False, verbose: bool = False):
    x, y, xv, yv = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    ema = copy.deepcopy(model)  # exponential moving average of the weights, decay 0.99
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    data = batches(x, y, 64)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for epoch in range(6):
            for i in range(21):  # one epoch of 21 steps
                xb, yb = next(data)
                optimizer.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                optimizer.step()
                watch.log(loss=loss)
                with torch.no_grad():
                    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                        e.lerp_(p, 0.01)
                if verbose and i in (0, 20):
                    print(f"epoch {epoch} step {i} loss {loss.item():.3f}")
            backup = model.state_dict()  # BUG: references, not a copy (copy.deepcopy needed)
            model.load_state_dict(ema.state_dict())  # validate with the EMA weights
            watch.log_val(loss=validate(model, xv, yv)[0])
            model.load_state_dict(backup)  # "restores" the EMA values just written
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
