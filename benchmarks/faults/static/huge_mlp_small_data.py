"""A 4.3M-parameter MLP for 1,497 training digits (about 2,900 parameters per sample)."""

import sys
from pathlib import Path

from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["capacity-vs-data"]


def setup():
    train, val = digits(flat=True)
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Linear(64, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10)
        ),
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
