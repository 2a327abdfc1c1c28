"""A layer frozen mid-training with requires_grad=False keeps changing: after the freeze its
gradients are zero tensors, not None (zero_grad(set_to_none=False), the default before PyTorch
2.0), so Adam still steps it with its momentum and AdamW still decays it.

Source: https://discuss.pytorch.org/t/why-there-is-still-a-small-change-in-frozen-layer-parameters/153740
(a layer frozen by setting requires_grad=False still changed slightly during training; the fix
was to also set its .grad to None).

Symptom (measured, seed 0): in the 60 steps after the freeze `0.weight` (the frozen layer) still
moves by 0.070 of its norm (0.28 in the 40 steps before): Adam's momentum and the decay.
Expected: NEW SLUG `frozen-weights-changing`: a tensor with requires_grad=False changed between
steps, naming it (issue 12, item 4).
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = ["frozen-weights-changing"]


def main(quick: bool = False, verbose: bool = False):
    x, y, _, _ = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    data = batches(x, y, 32)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        start = model[0].weight.detach().clone()
        for step in range(100):
            if step == 40:  # phase 2: train the head only
                for p in model[0].parameters():
                    p.requires_grad = False
                frozen = model[0].weight.detach().clone()
            xb, yb = next(data)
            optimizer.zero_grad(set_to_none=False)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
    if verbose:
        before = (frozen - start).norm() / start.norm()
        after = (model[0].weight.detach() - frozen).norm() / frozen.norm()
        print(f"`0.weight` moved {before:.3g} of its norm before the freeze, {after:.3g} after")
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
