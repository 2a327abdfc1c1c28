"""A setup file for the sweep tests: a tiny MLP on separable blobs whose width and dropout
come from the sweep (`setup(hp)`); trains in a fraction of a second per trial."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

SPACE = {"lr": "log:1e-3:3e-1", "width": "int:4:32"}


def setup(hp):
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 2
    y = torch.randint(0, 3, (320,), generator=g)
    x = centres[y] + torch.randn(320, 8, generator=g)
    width = hp.get("width", 16)
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 3)),
        train=TensorDataset(x[:256], y[:256]),
        val=TensorDataset(x[256:], y[256:]),
        loss=nn.CrossEntropyLoss(),
        batch_size=32,
    )
