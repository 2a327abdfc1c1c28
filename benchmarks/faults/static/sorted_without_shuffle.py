"""Training data stored sorted by label and loaded without shuffle=True."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["unshuffled-train"]


def setup():
    train, val = digits(flat=True)
    x, y = train.tensors
    order = torch.argsort(y, stable=True)  # e.g. read class folder by class folder
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
        train=DataLoader(TensorDataset(x[order], y[order]), batch_size=32),
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
