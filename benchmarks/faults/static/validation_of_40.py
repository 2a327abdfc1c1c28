"""A validation set of 40 samples carved off the end."""

import sys
from pathlib import Path

from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["tiny-validation"]


def setup():
    train, val = digits(flat=True)
    vx, vy = val.tensors
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
        train=train,
        val=TensorDataset(vx[:40], vy[:40]),
        loss=nn.CrossEntropyLoss(),
    )
