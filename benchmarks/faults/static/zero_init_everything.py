"""A custom init that zeroes every Linear weight 'to start from a clean slate'."""

import sys
from pathlib import Path

from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["constant-init"]


def model():
    net = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    for m in net.modules():
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def setup():
    train, val = digits(flat=True)
    return tw.Setup(model=model, train=train, val=val, loss=nn.CrossEntropyLoss())
