"""A Dataset that standardizes every item with statistics recomputed over the whole dataset in
__getitem__: loading, not the model, dominates the step."""

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import trainwise as tw

EXPECT = ["data-loader-bound"]


class Signals(Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 4
        self.x = torch.randn(n, 1, 32, 32, generator=g) + self.y.view(n, 1, 1, 1) * 0.5

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        # mistake: whole-dataset statistics for every item (compute them once in __init__)
        return (self.x[i] - self.x.mean()) / self.x.std(), self.y[i]


def setup():
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4)
        ),
        train=DataLoader(Signals(512, 0), batch_size=32, shuffle=True),
        val=Signals(128, 1),
        loss=nn.CrossEntropyLoss(),
    )
