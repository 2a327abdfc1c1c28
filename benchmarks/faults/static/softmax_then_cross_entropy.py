"""A classifier that ends in nn.Softmax, trained with CrossEntropyLoss (log-softmax twice)."""

import sys
from pathlib import Path

from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["softmax-before-loss"]


def setup():
    train, val = digits(flat=True)
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10), nn.Softmax(dim=1)
        ),
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
