"""A GRU built without batch_first=True fed (batch, time, feature) tensors: it runs its
recurrence across the batch, so each sample's output depends on the samples before it."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

EXPECT = ["batch-mixing"]


def sequences(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, 4, generator=g)  # (N, T, F)
    return x, x.sum(dim=1).argmax(dim=1)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(4, 32)  # mistake: expects (T, B, F) without batch_first=True
        self.head = nn.Linear(32, 4)

    def forward(self, x):  # x (B, T, F)
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def setup():
    return tw.Setup(
        model=Classifier,
        train=TensorDataset(*sequences(1000, 0)),
        val=TensorDataset(*sequences(200, 1)),
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3),
    )
