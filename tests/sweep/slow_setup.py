"""A setup file whose every forward pass sleeps 10 ms: a trial of 40 steps lasts a second or
more, so a test can kill its worker mid-trial (the blobs of blobs_setup.py otherwise)."""

import time

from blobs_setup import setup as blobs_setup
from torch import nn


class Slow(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 3))

    def forward(self, x):
        time.sleep(0.01)
        return self.net(x)


def setup(hp):
    base = blobs_setup(hp)
    base.model = lambda: Slow(hp.get("width", 16))
    return base
