"""Healthy: a small causal transformer LM on a synthetic token stream, AdamW with warmup and
cosine decay, CPU autocast in bfloat16, 2 micro-batches per step."""

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))

from _data import lm_batches, tokens  # noqa: E402

EXPECT = []


class TinyLM(nn.Module):
    def __init__(self, vocab=32, dim=64, block=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(block, dim)
        layer = nn.TransformerEncoderLayer(
            dim, 4, 4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx):  # (B, T)
        T = idx.shape[1]
        h = self.embed(idx) + self.pos(torch.arange(T))  # (B, T, C)
        mask = nn.Transformer.generate_square_subsequent_mask(T)
        return self.head(self.norm(self.blocks(h, mask=mask, is_causal=True)))  # (B, T, V)


def main(quick: bool = False, verbose: bool = False):
    stream = tokens()
    model = TinyLM()
    steps, warmup = 120, 10
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)

    def schedule(s):  # linear warmup, then cosine decay to 0 at the last step
        return min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    data = lm_batches(stream, 16, 32)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for _ in range(steps):
            optimizer.zero_grad()
            for _ in range(2):
                xb, yb = next(data)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    logits = model(xb)
                loss = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten()) / 2
                loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            watch.log(loss=loss.detach() * 2)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
