"""A BatchNorm CNN trained with batches of 4 (batch size lowered to fit memory)."""

import sys
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["batchnorm-small-batch"]


def setup():
    train, val = digits()
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 10),
        ),  # fmt: skip
        train=DataLoader(train, batch_size=4, shuffle=True),
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
