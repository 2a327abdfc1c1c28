"""BatchNorm built with momentum=0 ("no momentum", as for SGD): in PyTorch that freezes the
running statistics at their initial values, so eval mode normalizes with the wrong ones."""

import sys
from pathlib import Path

from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["train-eval-mismatch"]


def model():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32, momentum=0.0),  # mistake
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32, momentum=0.0),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 64, 10),
    )


def setup():
    train, val = digits()
    return tw.Setup(model=model, train=train, val=val, loss=nn.CrossEntropyLoss())
