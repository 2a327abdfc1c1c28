"""A projection layer computed in forward but its result dropped: it gets no gradient."""

import sys
from pathlib import Path

from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["unused-parameters"]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU())
        self.project = nn.Linear(128, 128)
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        h = self.encoder(x)
        z = self.project(h)  # meant to feed the head; `h` is passed instead  # noqa: F841
        return self.head(h)


def setup():
    train, val = digits(flat=True)
    return tw.Setup(model=Net, train=train, val=val, loss=nn.CrossEntropyLoss())
