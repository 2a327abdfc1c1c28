"""A ResNet-style block whose convs (main path and shortcut) keep their default bias before
BatchNorm."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["bias-before-batchnorm"]


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout),
        )  # fmt: skip
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.main(x) + self.shortcut(x))


def setup():
    train, val = digits()
    return tw.Setup(
        model=lambda: nn.Sequential(
            Block(1, 16), Block(16, 32), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)
        ),
        train=DataLoader(train, batch_size=64, shuffle=True),
        val=val,
        loss=nn.CrossEntropyLoss(),
    )
