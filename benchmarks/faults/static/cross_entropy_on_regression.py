"""A regression target (N, 1) trained with CrossEntropyLoss, as if it were a classifier: a
softmax over one column is 1, so the loss is 0 whatever the model predicts."""

import sys
from pathlib import Path

from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _synthetic import friedman  # noqa: E402

EXPECT = ["wrong-loss-for-task"]


def setup():
    train, val = friedman()
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 1)),
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
