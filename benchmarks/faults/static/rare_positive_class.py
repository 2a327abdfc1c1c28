"""'Is it a zero?' detector where only 15 zeros were kept against 1,300+ other digits; plain
cross-entropy."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["class-imbalance"]


def setup():
    train, val = digits(flat=True)
    x, y = train.tensors
    keep = (y != 0) | (torch.cumsum((y == 0).long(), 0) <= 15)
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)),
        train=TensorDataset(x[keep], (y[keep] == 0).long()),
        val=TensorDataset(val.tensors[0], (val.tensors[1] == 0).long()),
        loss=nn.CrossEntropyLoss(),
    )
