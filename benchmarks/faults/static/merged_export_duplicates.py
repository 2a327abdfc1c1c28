"""A training set padded by concatenating a third of it again (a merged export)."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["duplicate-samples"]


def setup():
    train, val = digits(flat=True)
    x, y = train.tensors
    x, y = torch.cat([x, x[:500]]), torch.cat([y, y[:500]])
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
        train=DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True),
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
