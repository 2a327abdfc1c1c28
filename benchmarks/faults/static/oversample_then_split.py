"""Oversampling by copying every sample twice, then a random split: copies land in both
train and validation."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["train-val-overlap"]


def setup():
    train, val = digits(flat=True)
    x = torch.cat([train.tensors[0], val.tensors[0]])
    y = torch.cat([train.tensors[1], val.tensors[1]])
    x, y = torch.cat([x, x]), torch.cat([y, y])  # "more data"
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
        train=DataLoader(TensorDataset(x[600:], y[600:]), batch_size=64, shuffle=True),
        val=TensorDataset(x[:600], y[:600]),
        loss=nn.CrossEntropyLoss(),
    )
