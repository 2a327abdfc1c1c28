"""The forward pass hoisted out of the loop, and the error this causes silenced with
retain_graph=True: every step backpropagates the same graph, built at the initial weights, so the
optimizer applies bit-identical gradients while the weights move, and the loss it reports is the
initial loss forever.

Source: https://discuss.pytorch.org/t/runtimeerror-trying-to-backward-through-the-graph-a-second-time-but-the-buffers-have-already-been-freed-specify-retain-graph-true-when-calling-backward-the-first-time/6795
(the "backward through the graph a second time" error, whose message and most-liked answer say to
pass retain_graph=True; applied to a loop that reuses one forward's output, it turns a crash into
a silent bug).

Symptom (measured, seed 0, torch 2.13 CPU): the loss is 2.356243 and the gradient norm 1.493365
at every step, while the weight norm grows 1.85 -> 4.12 -> 7.65 (steps 0, 50, 100): one stale
direction. (An earlier measurement read 2.463794, 1.515281 and 1.81 -> 4.10 -> 7.68.)
Expected: `stale-gradients`: gradients bit-identical across steps while the weights change, a
detached or stale graph (issue 12, item 4). It fires at the first judging round (step 10), on
`weight` and `bias`, noting that the logged loss is identical too.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import digits  # noqa: E402

EXPECT = ["stale-gradients"]


def main(quick: bool = False, verbose: bool = False):
    x, y, _, _ = digits()
    x, y = x[:256], y[:256]  # full-batch training on a subset
    # Softmax regression: its graph saves only the inputs, not the weights, so the in-place
    # optimizer step does not trip autograd's version check (a hidden layer would: its weight
    # is saved for the backward, and the second backward would raise instead of going silent).
    model = nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    output = model(x)  # BUG: computed once, outside the loop
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for step in range(150):
            optimizer.zero_grad()
            loss = F.cross_entropy(output, y)
            loss.backward(retain_graph=True)  # the "fix" for the second-backward error
            optimizer.step()
            watch.log(loss=loss)
            if verbose and step % 50 == 0:
                g, w = model.weight.grad.norm().item(), model.weight.norm().item()
                print(f"step {step} loss {loss.item():.6f} grad norm {g:.6f} weight norm {w:.4f}")
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
