"""Healthy: a small pre-norm transformer encoder over token ids, mean-pooled into a classifier."""

import sys
from pathlib import Path

import torch
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _synthetic import tokens  # noqa: E402

EXPECT: list[str] = []


class TinyTransformer(nn.Module):
    def __init__(self, vocab=32, length=16, d=64, heads=4, layers=2, classes=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(1, length, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, heads, dim_feedforward=4 * d, dropout=0.1, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, ids):  # (B, T)
        h = self.embed(ids) + self.pos  # (B, T, d)
        h = self.norm(self.encoder(h))
        return self.head(h.mean(dim=1))  # (B, classes)


def setup():
    train, val = tokens()
    return tw.Setup(
        model=TinyTransformer,
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.AdamW(
            tw.param_groups(p, weight_decay=0.05), lr=5e-4, betas=(0.9, 0.98)
        ),
    )
