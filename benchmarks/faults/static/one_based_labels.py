"""Labels read 1-based (1..10) into a 10-way head: label 10 is out of range."""

import sys
from pathlib import Path

from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["labels-out-of-range"]


def setup():
    train, val = digits(flat=True)
    x, y = train.tensors
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
        train=TensorDataset(x, y + 1),
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
