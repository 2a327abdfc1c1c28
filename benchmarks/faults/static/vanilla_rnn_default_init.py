"""Sequence classification with a vanilla nn.RNN left at PyTorch's default init."""

import sys
from pathlib import Path

from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _synthetic import sequences  # noqa: E402

EXPECT = ["vanilla-rnn", "rnn-hidden-init"]


class RNNClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(4, 64, batch_first=True)
        self.head = nn.Linear(64, 3)

    def forward(self, x):  # (B, T, F)
        _, h = self.rnn(x)
        return self.head(h[-1])


def setup():
    train, val = sequences()
    return tw.Setup(model=RNNClassifier, train=train, val=val, loss=nn.CrossEntropyLoss())
