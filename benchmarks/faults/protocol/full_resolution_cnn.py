"""A CNN that keeps 64 channels at the full 128x128 resolution (no strided stem): a training
step takes seconds on a CPU."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

EXPECT = ["slow-step"]


def setup():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 3, 128, 128, generator=g), torch.arange(48) % 4
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1),  # mistake: no downsampling before the wide layers
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, 4),
        ),
        train=TensorDataset(x[:40], y[:40]),
        val=TensorDataset(x[40:], y[40:]),
        loss=nn.CrossEntropyLoss(),
        batch_size=16,
    )
