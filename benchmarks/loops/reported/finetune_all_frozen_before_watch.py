"""Fine-tuning where every tensor the optimizer holds is frozen: the script builds the optimizer
over the pretrained model, then freezes the whole model, then swaps in a new head for the new
task. The optimizer holds the old (frozen) tensors; the new head trains in no optimizer; nothing
learns. `tw.watch` is created after the freeze, where a user adds it.

Source: https://github.com/zjunlp/HVPNeT/issues/5 (a head's parameters never reached the
optimizer, so it could not train) combined with the freeze-then-replace-head recipe of fine-tuning
tutorials, where the order of freezing, replacing and building the optimizer decides what trains.

Symptom (measured, seed 0): the loss stays near log(10) = 2.30 for 60 steps (2.46, 2.36, 2.42
at steps 0, 25, 50); no tensor the optimizer holds changes, the new head gets gradients unused.
Expected: `frozen-parameters` in flight, at once: the optimizer holds only requires_grad=False
tensors, named (issue 12, item 2). Today the watch drops frozen tensors when it starts and its
update probe, given none, is switched off, so `weights-not-updating` cannot fire either.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = ["frozen-parameters"]


def main(quick: bool = False, verbose: bool = False):
    x, y, _, _ = digits()
    # "pretrained": a backbone and a 5-class head from an earlier task
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for p in model.parameters():  # meant: freeze the backbone
        p.requires_grad = False
    model[2] = nn.Linear(128, 10)  # the new head: trainable, but not in the optimizer
    data = batches(x, y, 32)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for _ in range(60):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
