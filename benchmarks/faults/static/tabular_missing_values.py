"""Tabular data read with missing cells left as NaN."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["nonfinite-inputs"]


def setup():
    train, val = digits(flat=True)
    x, y = train.tensors
    x = x.clone()
    g = torch.Generator().manual_seed(1)
    x[torch.rand(x.shape, generator=g) < 0.02] = float("nan")  # ~2% empty cells
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
        train=TensorDataset(x, y),
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
