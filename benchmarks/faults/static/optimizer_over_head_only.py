"""The optimizer factory ignores its argument and builds SGD over the head of the user's own
model object: the hidden layer never trains."""

import sys
from pathlib import Path

import torch
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["params-not-in-optimizer"]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(self.body(x))


def setup():
    train, val = digits(flat=True)
    model = Net()
    return tw.Setup(
        model=model,
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda params: torch.optim.SGD(model.head.parameters(), lr=0.05, momentum=0.9),
    )
