"""Healthy: a GRU classifying standardized multivariate sequences by their last hidden state."""

import sys
from pathlib import Path

import torch
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _synthetic import sequences  # noqa: E402

EXPECT: list[str] = []


class GRUClassifier(nn.Module):
    def __init__(self, features=4, hidden=64, classes=3):
        super().__init__()
        self.gru = nn.GRU(features, hidden, num_layers=2, batch_first=True, dropout=0.1)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):  # (B, T, F)
        _, h = self.gru(x)  # h: (layers, B, H)
        return self.head(h[-1])  # (B, classes)


def setup():
    train, val = sequences()
    return tw.Setup(
        model=GRUClassifier,
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.Adam(p, lr=2e-3),
    )
