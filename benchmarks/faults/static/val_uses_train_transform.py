"""The validation set reuses the training transform (random shifts and noise)."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _digits import digits  # noqa: E402

EXPECT = ["val-augmented"]


class Augmented(torch.utils.data.Dataset):
    def __init__(self, base, transform):
        self.base, self.transform = base, transform

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return self.transform(x), y


def train_transform(x):  # (1, 8, 8): random shift by up to one pixel, plus noise
    dx, dy = torch.randint(-1, 2, (2,)).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(1, 2)) + 0.1 * torch.randn_like(x)


def setup():
    train, val = digits()
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 10)
        ),
        train=DataLoader(Augmented(train, train_transform), batch_size=64, shuffle=True),
        val=Augmented(val, train_transform),
        loss=nn.CrossEntropyLoss(),
    )
