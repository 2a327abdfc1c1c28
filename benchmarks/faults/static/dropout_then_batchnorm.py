"""An MLP block ordered Linear -> Dropout -> BatchNorm1d -> ReLU."""

import sys
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["dropout-before-batchnorm"]


def setup():
    train, val = digits(flat=True)
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Linear(64, 128, bias=False),
            nn.Dropout(0.3),
            nn.BatchNorm1d(128),
            nn.ReLU(),
            nn.Linear(128, 10),
        ),  # fmt: skip
        train=DataLoader(train, batch_size=64, shuffle=True),
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
