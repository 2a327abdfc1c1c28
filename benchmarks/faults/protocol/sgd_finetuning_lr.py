"""SGD with the LR of a fine-tuning recipe (1e-5) on a model trained from scratch: it cannot
even memorize one batch, and a short training stays at chance."""

import sys
from pathlib import Path

import torch
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["cannot-overfit-batch", "cannot-overfit-few", "no-better-than-baseline"]


def setup():
    train, val = digits(flat=True)
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.SGD(p, lr=1e-5, momentum=0.9),  # mistake
    )
