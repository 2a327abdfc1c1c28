"""Healthy: a tiny U-Net (3x3 stem, skip connections, kernel-2 stride-2 upsampling) segmenting
squares and discs pixel by pixel."""

import sys
from pathlib import Path

import torch
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _synthetic import shapes  # noqa: E402

EXPECT: list[str] = []


def conv(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class TinyUNet(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.enc1, self.enc2 = conv(1, 16), conv(16, 32)
        self.down = nn.MaxPool2d(2)
        self.mid = conv(32, 32)
        self.up = nn.ConvTranspose2d(32, 32, kernel_size=2, stride=2)
        self.dec = conv(32 + 16, 16)
        self.out = nn.Conv2d(16, classes, 1)

    def forward(self, x):  # (B, 1, H, W)
        e1 = self.enc1(x)  # (B, 16, H, W)
        m = self.mid(self.enc2(self.down(e1)))  # (B, 32, H/2, W/2)
        d = self.dec(torch.cat([self.up(m), e1], dim=1))  # (B, 16, H, W)
        return self.out(d)  # (B, classes, H, W)


def setup():
    train, val = shapes()
    return tw.Setup(
        model=TinyUNet,
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
    )
