"""AdamW with weight decay 0.05 over model.parameters(): BatchNorm scales and biases decay
too."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["weight-decay-on-norm-and-bias"]


def setup():
    train, val = digits()
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(64, 10),
        ),  # fmt: skip
        train=DataLoader(train, batch_size=64, shuffle=True),
        val=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.05),
    )
