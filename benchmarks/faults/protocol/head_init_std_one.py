"""The output layer initialized with nn.init.normal_ (std 1): logits start huge, the loss at
init is many times log(10)."""

import sys
from pathlib import Path

from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["initial-loss-off"]


def model():
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    nn.init.normal_(net[2].weight)  # mistake: std=1.0 by default, PyTorch's own init is ~0.09
    return net


def setup():
    train, val = digits(flat=True)
    return tw.Setup(model=model, train=train, val=val, loss=nn.CrossEntropyLoss())
