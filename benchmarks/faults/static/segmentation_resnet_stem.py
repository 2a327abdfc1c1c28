"""Segmentation with a classification stem (7x7 stride-2 conv, then pooling) and bilinear
upsampling at the end, without any skip connection."""

import sys
from pathlib import Path

from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _synthetic import shapes  # noqa: E402

EXPECT = ["segmentation-early-downsample"]


def model():
    return nn.Sequential(
        nn.Conv2d(1, 32, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 3, 1),
        nn.Upsample(scale_factor=4, mode="bilinear"),
    )  # fmt: skip


def setup():
    train, val = shapes()
    return tw.Setup(model=model, train=train, val=val, loss=nn.CrossEntropyLoss())
