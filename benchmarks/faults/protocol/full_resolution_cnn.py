"""A CNN that keeps 96 channels at the full 128x128 resolution (no strided stem): a training
step of 32 images costs ~250 GFLOP, seconds on a CPU (about 4x over the 1 s slow-step line on a
quiet 2-core machine, so a faster runner still crosses it)."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

EXPECT = ["slow-step"]


def setup():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(112, 3, 128, 128, generator=g), torch.arange(112) % 4
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Conv2d(3, 96, 3, padding=1),  # mistake: no downsampling before the wide layers
            nn.ReLU(),
            nn.Conv2d(96, 96, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(96, 96, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(96, 4),
        ),
        train=TensorDataset(x[:96], y[:96]),
        val=TensorDataset(x[96:], y[96:]),
        loss=nn.CrossEntropyLoss(),
        batch_size=32,
    )
