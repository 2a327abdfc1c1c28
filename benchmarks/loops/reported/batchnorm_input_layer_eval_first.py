"""A BatchNorm layer used to normalize raw tabular features, and a baseline validation before
training: in eval mode BatchNorm normalizes with its running statistics, which before any
training batch are mean 0 and variance 1, so the raw features (one of them in the hundreds)
pass through unnormalized and the first validation loss is absurd.

Sources: https://github.com/chemprop/chemprop/issues/607 (validation loss far above the training
loss; the maintainers trace it to BatchNorm1d's running estimates, initialized to mean 0 and
variance 1 and moved by momentum 0.1, which eval mode uses while training uses the batch's
statistics) and https://discuss.pytorch.org/t/use-batchnorm-directly-on-input/128762 (a
BatchNorm1d as the first layer instead of normalizing the data). This loop is constructed from
the two: a BatchNorm input layer on the raw wine features, evaluated before training, as loops
with a baseline validation do.

Symptom (measured, seed 0): the validation loss before training is 85.4 while the first training
loss at the same weights is 1.09 (ln 3 = 1.10); the BatchNorm layer's output is 223x larger, for
the same input scale, in eval mode. The gap closes as the running statistics follow the batches:
validation 0.857 vs training 0.066 at step 20, 0.018 vs 0.004 at step 60.
Expected: `train-eval-mismatch` in flight, naming the BatchNorm input layer (issue 12, item 4).
"""

import torch
import torch.nn.functional as F
from sklearn.datasets import load_wine
from torch import nn

import trainwise as tw

EXPECT = ["train-eval-mismatch"]


def wine():
    data = load_wine()
    x = torch.tensor(data.data, dtype=torch.float32)  # raw: proline 278..1680, magnesium ~100
    y = torch.tensor(data.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:140], y[:140], x[140:], y[140:]


def validate(model, x, y):
    model.eval()
    with torch.no_grad():
        loss = F.cross_entropy(model(x), y)
    model.train()
    return loss


def main(quick: bool = False, verbose: bool = False):
    torch.manual_seed(0)
    x, y, xv, yv = wine()
    model = nn.Sequential(
        nn.BatchNorm1d(13),  # "normalizes the inputs": only with batch statistics
        nn.Linear(13, 64),
        nn.ReLU(),
        nn.Linear(64, 3),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        val_loss = validate(model, xv, yv)  # the baseline: before any training batch
        watch.log_val(loss=val_loss)
        if verbose:
            print(f"validation before training: {val_loss.item():.4g}")
        for step in range(60):
            idx = torch.randperm(len(x), generator=g)[:32]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
            if verbose and step == 0:
                print(f"first training loss: {loss.item():.4g}")
            if step % 20 == 19:
                val_loss = validate(model, xv, yv)
                watch.log_val(loss=val_loss)
                if verbose:
                    print(f"step {step}: validation {val_loss.item():.4g}, train {loss.item():.4g}")
    return watch.findings


if __name__ == "__main__":
    for f in main(verbose=True):
        print(f.rule, f.severity, f.where, f.message, f.evidence, sep="\n  ")
