"""A CNN whose second conv uses a 7x7 kernel where three 3x3 convs would do."""

import sys
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["large-kernel"]


def setup():
    train, val = digits()
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 7, padding=3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 10),
        ),  # fmt: skip
        train=DataLoader(train, batch_size=64, shuffle=True),
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
