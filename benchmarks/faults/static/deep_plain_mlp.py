"""A 14-layer plain MLP: no normalization, no residual connections."""

import sys
from pathlib import Path

from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["deep-without-skip"]


def model():
    layers = [nn.Linear(64, 128), nn.ReLU()]
    for _ in range(12):
        layers += [nn.Linear(128, 128), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(128, 10))


def setup():
    train, val = digits(flat=True)
    return tw.Setup(model=model, train=train, val=val, loss=nn.CrossEntropyLoss())
