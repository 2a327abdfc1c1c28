"""An ImageNet-style 1000-way head kept on a 10-class problem."""

import sys
from pathlib import Path

from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["output-size-mismatch"]


def setup():
    train, val = digits(flat=True)
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 1000)),
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
