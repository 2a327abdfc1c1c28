"""A textbook MLP with four sigmoid hidden layers."""

import sys
from pathlib import Path

from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["saturating-activations"]


def setup():
    train, val = digits(flat=True)
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Linear(64, 128),
            nn.Sigmoid(),
            nn.Linear(128, 128),
            nn.Sigmoid(),
            nn.Linear(128, 128),
            nn.Sigmoid(),
            nn.Linear(128, 64),
            nn.Sigmoid(),
            nn.Linear(64, 10),
        ),  # fmt: skip
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
