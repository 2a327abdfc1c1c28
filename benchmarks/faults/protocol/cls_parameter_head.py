"""A ViT-style classifier whose head reads the CLS *parameter* instead of the encoder output at
the CLS position: every sample gets the same prediction."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

EXPECT = ["input-independent"]


def tokens(n, seed):
    """(N, 12) tokens from a vocabulary of 8; the label is the most frequent of tokens 0..3."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 8, (n, 12), generator=g)
    return x, torch.stack([(x == t).sum(dim=1) for t in range(4)], dim=1).argmax(dim=1)


class Classifier(nn.Module):
    def __init__(self, dim=32):
        super().__init__()
        self.embed = nn.Embedding(8, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        layer = nn.TransformerEncoderLayer(dim, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 4)

    def forward(self, x):  # (B, T)
        h = self.embed(x)
        h = torch.cat([self.cls_token.expand(len(h), -1, -1), h], dim=1)  # (B, 1 + T, D)
        h = self.encoder(h)
        cls = self.cls_token.expand(len(h), -1, -1)  # mistake: should be h
        return self.head(cls[:, 0])


def setup():
    return tw.Setup(
        model=Classifier,
        train=TensorDataset(*tokens(800, 0)),
        val=TensorDataset(*tokens(200, 1)),
        loss=nn.CrossEntropyLoss(),
    )
